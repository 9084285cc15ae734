//! The RAG actor: signed events only, tenant isolation in what it answers, and the
//! reply modes — with a real embedded store and a small deterministic embedder
//! (the model itself is tested in `parity.rs` and `retrieval.rs`).

use futures::future::BoxFuture;
use ractor::Actor;
use std::sync::{Arc, Mutex};
use switchboard_rag::actor::{
    Host, HostError, Mode, Outcome, RagActor, RagArgs, RagMsg, RagStats, Reply, ReplySettings,
};
use switchboard_rag::chunk::{ChunkConfig, Format};
use switchboard_rag::embed::{EmbedError, Embedder};
use switchboard_rag::kb::{EmbedderConfig, KbConfig, Knowledge, KnowledgeBase, StoreConfig};
use switchboard_rag::signed::{InternalKey, SignedEvent};
use switchboard_rag::store::EdgeStore;

/// Bag-of-words vectors: texts sharing words are near each other.
#[derive(Debug)]
struct Words;

const DIMS: usize = 64;

impl Embedder for Words {
    fn model_id(&self) -> &str {
        "test-words"
    }
    fn dimensions(&self) -> usize {
        DIMS
    }
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0f32; DIMS];
                    for w in t
                        .to_lowercase()
                        .split(|c: char| !c.is_alphanumeric())
                        .filter(|w| w.len() > 3)
                    {
                        let h = w
                            .bytes()
                            .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
                        v[(h % DIMS as u64) as usize] += 1.0;
                    }
                    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                    v.iter().map(|x| x / n).collect()
                })
                .collect())
        })
    }
}

#[derive(Debug, Default)]
struct FakeHost {
    settings: Mutex<Option<ReplySettings>>,
    sent: Mutex<Vec<Reply>>,
    drafts: Mutex<Vec<(Reply, String)>>,
    events: Mutex<Vec<(String, serde_json::Value)>>,
}

impl Host for FakeHost {
    fn settings<'a>(
        &'a self,
        _tenant_id: &'a str,
        _session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReplySettings>, HostError>> {
        Box::pin(async move { Ok(self.settings.lock().unwrap().clone()) })
    }
    fn send(&self, reply: &Reply) -> BoxFuture<'_, Result<String, HostError>> {
        self.sent.lock().unwrap().push(reply.clone());
        Box::pin(async { Ok("msg_1".to_owned()) })
    }
    fn draft(&self, reply: &Reply, reason: &str) -> BoxFuture<'_, Result<String, HostError>> {
        self.drafts
            .lock()
            .unwrap()
            .push((reply.clone(), reason.to_owned()));
        Box::pin(async { Ok("dft_1".to_owned()) })
    }
    fn publish(
        &self,
        _tenant_id: &str,
        _session_id: &str,
        _channel: Option<&str>,
        event_type: &str,
        data: serde_json::Value,
    ) -> BoxFuture<'_, Result<(), HostError>> {
        self.events
            .lock()
            .unwrap()
            .push((event_type.to_owned(), data));
        Box::pin(async { Ok(()) })
    }
}

fn envelope(id: &str, tenant: &str, from: &str, chat: Option<&str>, text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "type": "message.received", "tenant_id": tenant, "session_id": "ses_1",
        "channel": "sim", "created_at": "2026-11-23T00:00:00Z",
        "data": { "from": from, "chat": chat, "text": text, "external_id": "x", "sent_at": "2026-11-23T00:00:00Z" }
    }))
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Setup {
    actor: ractor::ActorRef<RagMsg>,
    host: Arc<FakeHost>,
    stats: Arc<RagStats>,
    key: Arc<InternalKey>,
    _dir: tempfile::TempDir,
}

/// A one-route OpenAI-compatible chat server on loopback answering `reply` (or 500
/// when `None`); returns its base URL and the request bodies it saw.
async fn chat_server(reply: Option<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            let body = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break String::new();
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break text[end + 4..].to_owned();
                    }
                }
            };
            log.lock().unwrap().push(body);
            let (status, payload) = match reply {
                Some(content) => (
                    "200 OK",
                    serde_json::json!({ "choices": [{ "message": { "role": "assistant", "content": content } }] })
                        .to_string(),
                ),
                None => ("500 Internal Server Error", r#"{"error":{"message":"down"}}"#.to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            );
            let _ = sock.write_all(response.as_bytes()).await;
        }
    });
    (format!("http://{addr}/v1"), seen)
}

async fn setup() -> Setup {
    setup_with(None).await
}

async fn setup_with(llm: Option<switchboard_rag::openai::LlmClient>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path(), "test-words", DIMS).unwrap();
    let kb = KnowledgeBase::new(Arc::new(Words), Arc::new(store)).with_chunking(ChunkConfig {
        max_tokens: 60,
        overlap_tokens: 0,
    });
    kb.ingest(
        "ten_a",
        "doc_hours",
        "Opening hours",
        "Our shop opening hours: weekdays from nine until five, Saturdays from ten until two.",
        Format::Text,
    )
    .await
    .unwrap();
    kb.ingest(
        "ten_b",
        "doc_vault",
        "Vault",
        "The vault combination code is 4711; the vault opening hours are around the clock.",
        Format::Text,
    )
    .await
    .unwrap();
    let config = KbConfig {
        embedder: EmbedderConfig::Local {
            model_dir: dir.path().into(),
        },
        store: StoreConfig::Edge {
            dir: dir.path().into(),
        },
        chunking: ChunkConfig::default(),
    };
    let host = Arc::new(FakeHost::default());
    let stats = Arc::new(RagStats::default());
    let key = Arc::new(InternalKey::generate().unwrap());
    let args = RagArgs {
        knowledge: Arc::new(Knowledge::ready(config, kb)),
        llm: llm.map(Arc::new),
        host: host.clone(),
        key: key.clone(),
        concurrency: 2,
        stats: stats.clone(),
    };
    let (actor, _) = Actor::spawn(None, RagActor, args).await.unwrap();
    Setup {
        actor,
        host,
        stats,
        key,
        _dir: dir,
    }
}

async fn deliver(actor: &ractor::ActorRef<RagMsg>, event: SignedEvent) -> Outcome {
    ractor::call_t!(
        actor,
        |port| RagMsg::Event(Box::new(event), Some(port)),
        10_000
    )
    .unwrap()
    .unwrap()
}

fn set_mode(host: &FakeHost, mode: Mode, allowed: &[&str]) {
    *host.settings.lock().unwrap() = Some(ReplySettings {
        mode,
        allowed_contacts: allowed.iter().map(|s| (*s).to_owned()).collect(),
        ..ReplySettings::default()
    });
}

#[tokio::test]
async fn tampered_unsigned_and_foreign_events_are_rejected_and_counted() {
    let s = setup().await;
    set_mode(&s.host, Mode::Auto, &[]);
    let body = envelope(
        "evt_1",
        "ten_a",
        "+1555",
        None,
        "What are the shop opening hours on Saturdays?",
    );
    let good = SignedEvent::sign(&s.key, "evt_1", body.clone(), now());

    let mut tampered = good.clone();
    tampered.body = envelope(
        "evt_1",
        "ten_b",
        "+1555",
        None,
        "What are the shop opening hours on Saturdays?",
    );
    let mut unsigned = good.clone();
    unsigned.signature = String::new();
    let foreign = SignedEvent::sign(&InternalKey::generate().unwrap(), "evt_1", body, now());
    let mut stale = good.clone();
    stale.timestamp -= 3_600;

    for (event, reason) in [
        (tampered, "bad_signature"),
        (unsigned, "unsigned"),
        (foreign, "bad_signature"),
        (stale, "stale"),
    ] {
        assert_eq!(
            deliver(&s.actor, event).await,
            Outcome::Rejected {
                reason: reason.into()
            }
        );
    }
    assert_eq!(
        s.stats.rejected.load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    // Nothing was acted on.
    assert!(s.host.sent.lock().unwrap().is_empty());
    assert!(s.host.events.lock().unwrap().is_empty());

    // The genuine event is answered.
    assert_eq!(
        deliver(&s.actor, good).await,
        Outcome::Replied {
            message_id: "msg_1".into()
        }
    );
    let sent = s.host.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].text.contains("Saturdays"), "{}", sent[0].text);
    assert_eq!(sent[0].to, "+1555");
    let events = s.host.events.lock().unwrap().clone();
    assert_eq!(events[0].0, "rag.reply");
    assert_eq!(events[0].1["source"], "retrieval");
    assert_eq!(events[0].1["intent"], "response");
}

#[tokio::test]
async fn answers_use_only_the_tenants_own_documents() {
    let s = setup().await;
    set_mode(&s.host, Mode::Auto, &[]);
    // Tenant A asks about B's vault: A has nothing on it → a person takes over; B's
    // passage is never retrieved, quoted or sent.
    let body = envelope(
        "evt_2",
        "ten_a",
        "+1555",
        None,
        "What is the vault combination code?",
    );
    let outcome = deliver(&s.actor, SignedEvent::sign(&s.key, "evt_2", body, now())).await;
    let events = s.host.events.lock().unwrap().clone();
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("4711") && !text.contains("doc_vault"),
        "{text}"
    );
    assert!(
        s.host
            .sent
            .lock()
            .unwrap()
            .iter()
            .all(|r| !r.text.contains("4711"))
    );
    assert_eq!(outcome, Outcome::HandedOff, "{text}");

    // B asking the same gets B's answer.
    let body = envelope(
        "evt_3",
        "ten_b",
        "+1666",
        None,
        "What is the vault combination code?",
    );
    deliver(&s.actor, SignedEvent::sign(&s.key, "evt_3", body, now())).await;
    let sent = s.host.sent.lock().unwrap().clone();
    assert!(
        sent.iter()
            .any(|r| r.tenant_id == "ten_b" && r.text.contains("4711"))
    );
}

#[tokio::test]
async fn modes_decide_between_sending_drafting_and_nothing() {
    let s = setup().await;
    let ask = |id: &str, from: &str, chat: Option<&str>| {
        let body = envelope(
            id,
            "ten_a",
            from,
            chat,
            "What are the shop opening hours on Saturdays?",
        );
        SignedEvent::sign(&s.key, id, body, now())
    };
    set_mode(&s.host, Mode::Off, &[]);
    assert_eq!(
        deliver(&s.actor, ask("evt_a", "+1555", None)).await,
        Outcome::Skipped {
            reason: "mode_off".into()
        }
    );
    set_mode(&s.host, Mode::Draft, &[]);
    assert!(matches!(
        deliver(&s.actor, ask("evt_b", "+1555", None)).await,
        Outcome::Drafted { .. }
    ));
    // Auto, but only for an allowed contact: others get a draft.
    set_mode(&s.host, Mode::Auto, &["+1999"]);
    assert!(matches!(
        deliver(&s.actor, ask("evt_c", "+1555", None)).await,
        Outcome::Drafted { .. }
    ));
    assert!(matches!(
        deliver(&s.actor, ask("evt_d", "+1999", None)).await,
        Outcome::Replied { .. }
    ));
    // Groups are off by default.
    set_mode(&s.host, Mode::Auto, &[]);
    assert_eq!(
        deliver(&s.actor, ask("evt_e", "+1555", Some("1203@g.us"))).await,
        Outcome::Skipped {
            reason: "group".into()
        }
    );
    // A request for a person is handed off, not answered.
    let body = envelope("evt_f", "ten_a", "+1555", None, "I want to talk to a human");
    assert_eq!(
        deliver(&s.actor, SignedEvent::sign(&s.key, "evt_f", body, now())).await,
        Outcome::HandedOff
    );
    let drafts = s.host.drafts.lock().unwrap().clone();
    assert_eq!(
        drafts.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(),
        ["draft_mode", "contact_not_allowed"]
    );
    let types: Vec<String> = s
        .host
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(
        types,
        ["rag.draft", "rag.draft", "rag.reply", "rag.handoff"]
    );
}

#[tokio::test]
async fn an_llm_writes_the_reply_and_a_failing_one_falls_back_to_a_labelled_passage() {
    use switchboard_rag::openai::{Endpoint, LlmClient};
    let (url, seen) = chat_server(Some(
        r#"{"intent":"response","reply":"We open at ten on Saturdays."}"#,
    ))
    .await;
    let llm = LlmClient::new(Endpoint::new(url), "test-model".into()).unwrap();
    let s = setup_with(Some(llm)).await;
    *s.host.settings.lock().unwrap() = Some(ReplySettings {
        mode: Mode::Auto,
        system_prompt: Some("You are the shop's assistant.".into()),
        ..ReplySettings::default()
    });
    let body = envelope(
        "evt_l",
        "ten_a",
        "+1555",
        None,
        "What are the shop opening hours on Saturdays?",
    );
    deliver(&s.actor, SignedEvent::sign(&s.key, "evt_l", body, now())).await;
    let sent = s.host.sent.lock().unwrap().clone();
    assert_eq!(sent[0].text, "We open at ten on Saturdays.");
    assert_eq!(s.host.events.lock().unwrap()[0].1["source"], "llm");
    // The model saw the session's prompt and the tenant's passage.
    let request = seen.lock().unwrap()[0].clone();
    assert!(request.contains("the shop's assistant"), "{request}");
    assert!(
        request.contains("Saturdays from ten until two"),
        "{request}"
    );

    let (url, _) = chat_server(None).await;
    let llm = LlmClient::new(
        Endpoint {
            retries: 0,
            ..Endpoint::new(url)
        },
        "test-model".into(),
    )
    .unwrap();
    let s = setup_with(Some(llm)).await;
    set_mode(&s.host, Mode::Auto, &[]);
    let body = envelope(
        "evt_m",
        "ten_a",
        "+1555",
        None,
        "What are the shop opening hours on Saturdays?",
    );
    deliver(&s.actor, SignedEvent::sign(&s.key, "evt_m", body, now())).await;
    let events = s.host.events.lock().unwrap().clone();
    assert_eq!(events[0].1["source"], "retrieval");
    assert!(
        events[0].1["llm_error"].as_str().unwrap().contains("500"),
        "{:?}",
        events[0]
    );
    assert!(
        s.host.sent.lock().unwrap()[0]
            .text
            .contains("knowledge base")
    );
}
