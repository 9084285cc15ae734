//! The knowledge base and the RAG actor through the real binary: documents in and
//! out, tenant-scoped search, auto-replies under the tenant's send limit, drafts,
//! validation, and a knowledge base that survives a restart. The model is the real
//! all-MiniLM-L6-v2 (`scripts/models.sh`); the store is the embedded qdrant-edge.

use super::messages::{events, wait_sent, working_session};
use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn options() -> Options {
    Options {
        env: vec![("SWITCHBOARD_SESSIONS_RESTART_BASE".into(), "100ms".into())],
        ..Default::default()
    }
}

const HOURS: &str = "# Opening hours\n\nOur shop is open Monday to Friday from 9am to 6pm. \
On Saturdays we open from 10am to 2pm. We are closed on Sundays and public holidays.";
const SHIPPING: &str = "Orders ship within two business days. Delivery inside the EU takes \
three to five days; express delivery arrives the next working day.";
const RETURNS: &str = "You can return any unused item within 30 days of delivery for a full \
refund. Print the return label from your account and drop the parcel at any post office.";
const VAULT: &str = "The vault combination is 4711-0815. Only the night manager may open it.";

async fn add_document(gw: &Gateway, key: &str, title: &str, text: &str) -> String {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/kb/documents",
            Some(json!({ "title": title, "text": text })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.json["chunks"].as_i64().unwrap() >= 1, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

async fn search(gw: &Gateway, key: &str, query: &str) -> Vec<Value> {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/kb/search",
            Some(json!({ "query": query, "limit": 3 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["results"].as_array().unwrap().clone()
}

async fn ask(gw: &Gateway, key: &str, session: &str, from: &str, text: &str) {
    let r = gw
        .tenant(
            key,
            Method::POST,
            &format!("/v1/sessions/{session}/sim/inbound"),
            Some(json!({ "from": from, "text": text })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

async fn set_replies(gw: &Gateway, key: &str, session: &str, settings: Value) {
    let r = gw
        .tenant(
            key,
            Method::PUT,
            &format!("/v1/sessions/{session}/reply-settings"),
            Some(settings),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Waits until the tenant has `n` events of type `ty`.
async fn wait_events(gw: &Gateway, key: &str, ty: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = events(gw, key, ty).await;
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "only {} {ty} events: {found:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn questions_are_answered_from_the_tenants_own_documents_under_its_send_limit() {
    let gw = Gateway::start_with(options()).await;
    let (tenant_a, a) = gw.create_tenant("shop").await;
    let (_, b) = gw.create_tenant("bank").await;
    let r = gw
        .admin(
            Method::PATCH,
            &format!("/v1/tenants/{tenant_a}"),
            Some(json!({ "limits": { "sends_per_second": 1, "send_burst": 1 } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let hours = add_document(&gw, &a, "Opening hours", HOURS).await;
    let shipping = add_document(&gw, &a, "Shipping", SHIPPING).await;
    let returns = add_document(&gw, &a, "Returns", RETURNS).await;
    let vault = add_document(&gw, &b, "Vault", VAULT).await;

    let docs = gw.tenant(&a, Method::GET, "/v1/kb/documents", None).await;
    let ids: Vec<&str> = docs.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{}", docs.text);
    assert!(!ids.contains(&vault.as_str()));
    assert_eq!(docs.json["data"][0]["format"], "markdown");

    // Paraphrased questions find the right document; never another tenant's.
    for (question, want) in [
        ("when can I come to the store on a saturday?", &hours),
        ("how long until my parcel arrives?", &shipping),
        ("can I get my money back for something I bought?", &returns),
        ("what is the vault combination?", &hours),
    ] {
        let results = search(&gw, &a, question).await;
        assert!(results.iter().all(|r| r["document_id"] != vault.as_str()));
        if question.contains("vault") {
            continue;
        }
        assert_eq!(
            results[0]["document_id"],
            want.as_str(),
            "{question}: {results:?}"
        );
        let scores: Vec<f64> = results
            .iter()
            .map(|r| r["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
    let theirs = search(&gw, &b, "opening hours on saturday").await;
    assert!(
        theirs.iter().all(|r| r["document_id"] == vault.as_str()),
        "{theirs:?}"
    );

    // Auto-replies, through the outbound queue at the tenant's 1/s.
    let session = working_session(&gw, &a).await;
    set_replies(&gw, &a, &session, json!({ "mode": "auto" })).await;
    let questions = [
        "What time do you open on Saturday?",
        "How many days does delivery inside the EU take?",
        "What is your policy on returning unused items?",
    ];
    for q in questions {
        ask(&gw, &a, &session, "+15550100", q).await;
    }
    let replies = wait_events(&gw, &a, "rag.reply", 3).await;
    for reply in &replies {
        let data = &reply["data"];
        let q = data["question"].as_str().unwrap();
        let doc = [&hours, &shipping, &returns][questions.iter().position(|x| *x == q).unwrap()];
        assert_eq!(data["source"], "retrieval", "{reply}");
        assert_eq!(data["intent"], "response", "{reply}");
        assert_eq!(data["to"], "+15550100");
        assert_eq!(data["passages"][0]["document_id"], doc.as_str(), "{reply}");
        assert!(data["text"].as_str().unwrap().contains("knowledge base"));
        assert!(data["message_id"].as_str().unwrap().starts_with("msg_"));
    }
    let sent = wait_sent(&gw, &a, 3, Duration::from_secs(30)).await;
    let mut times: Vec<i64> = sent
        .iter()
        .map(|e| {
            switchboard_actors::clock::parse_rfc3339(e["created_at"].as_str().unwrap()).unwrap()
        })
        .collect();
    times.sort_unstable();
    // Burst 1 at 1/s: the third reply cannot go out before ~2 s after the first.
    assert!(
        times[2] - times[0] >= 1_500,
        "replies were not held to the tenant's rate: {times:?}"
    );
    let saturday = replies
        .iter()
        .find(|r| r["data"]["question"] == questions[0])
        .unwrap();
    let message = gw
        .tenant(
            &a,
            Method::GET,
            &format!(
                "/v1/messages/{}",
                saturday["data"]["message_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(message.json["peer"], "+15550100");
    assert!(
        message.json["text"]
            .as_str()
            .unwrap()
            .contains("10am to 2pm"),
        "{}",
        message.text
    );

    // A request for a person, and a question about another tenant's secret: no reply
    // quotes tenant B.
    ask(
        &gw,
        &a,
        &session,
        "+15550100",
        "Can I speak to a real person please?",
    )
    .await;
    ask(
        &gw,
        &a,
        &session,
        "+15550100",
        "What is the vault combination?",
    )
    .await;
    let handoffs = wait_events(&gw, &a, "rag.handoff", 1).await;
    assert_eq!(handoffs[0]["data"]["intent"], "human_handoff");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let everything = gw
        .tenant(&a, Method::GET, "/v1/events?limit=200", None)
        .await;
    assert!(
        !everything.text.contains("4711"),
        "tenant B's passage leaked"
    );
    assert!(
        !everything.text.contains(&vault),
        "tenant B's document leaked"
    );
}

#[tokio::test]
async fn drafts_wait_for_a_person_and_the_knowledge_base_survives_a_restart() {
    let gw = Gateway::start_with(options()).await;
    let (_, key) = gw.create_tenant("shop").await;
    let doc = add_document(&gw, &key, "Opening hours", HOURS).await;
    let session = working_session(&gw, &key).await;
    set_replies(
        &gw,
        &key,
        &session,
        json!({ "mode": "draft", "temperature": 0.5 }),
    )
    .await;
    let settings = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{session}/reply-settings"),
            None,
        )
        .await;
    assert_eq!(settings.json["mode"], "draft");
    assert_eq!(settings.json["writer"], "retrieval");

    ask(&gw, &key, &session, "+15550100", "Are you open on Sundays?").await;
    let drafted = wait_events(&gw, &key, "rag.draft", 1).await;
    let draft_id = drafted[0]["data"]["draft_id"].as_str().unwrap().to_owned();
    let pending = gw
        .tenant(&key, Method::GET, "/v1/drafts?status=pending", None)
        .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.text);
    let draft = &pending.json["data"][0];
    assert_eq!(draft["id"], draft_id.as_str());
    assert_eq!(draft["question"], "Are you open on Sundays?");
    assert!(
        draft["text"]
            .as_str()
            .unwrap()
            .contains("closed on Sundays")
    );
    assert!(
        events(&gw, &key, "message.queued").await.is_empty(),
        "a draft was sent"
    );

    let approve = |text: Option<&str>| {
        let body = text.map(|t| json!({ "text": t }));
        let path = format!("/v1/drafts/{draft_id}/approve");
        let (gw, key) = (&gw, &key);
        async move { gw.tenant(key, Method::POST, &path, body).await }
    };
    let r = approve(Some("We're closed on Sundays, see you Monday!")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "approved");
    assert_eq!(r.json["text"], "We're closed on Sundays, see you Monday!");
    let sent = wait_sent(&gw, &key, 1, Duration::from_secs(20)).await;
    assert_eq!(sent[0]["data"]["message_id"], r.json["message_id"]);
    let replies = wait_events(&gw, &key, "rag.reply", 1).await;
    assert_eq!(replies[0]["data"]["edited"], true);
    assert_eq!(replies[0]["data"]["draft_id"], draft_id.as_str());
    // Decided drafts stay decided.
    assert_eq!(approve(None).await.code(), "draft_not_pending");
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/drafts/{draft_id}/reject"),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "draft_not_pending")
    );

    // Auto, but only for one contact: someone else's question waits as a draft.
    set_replies(
        &gw,
        &key,
        &session,
        json!({ "mode": "auto", "allowed_contacts": ["+15559999"] }),
    )
    .await;
    ask(
        &gw,
        &key,
        &session,
        "+15550100",
        "When do you open on Saturday?",
    )
    .await;
    let drafted = wait_events(&gw, &key, "rag.draft", 2).await;
    assert_eq!(drafted[1]["data"]["reason"], "contact_not_allowed");
    let second = drafted[1]["data"]["draft_id"].as_str().unwrap();
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/drafts/{second}/reject"),
            None,
        )
        .await;
    assert_eq!(r.json["status"], "rejected", "{}", r.text);

    // The knowledge base is on disk: a new process finds the document and its vectors.
    let gw = gw.restart().await;
    let docs = gw.tenant(&key, Method::GET, "/v1/kb/documents", None).await;
    assert_eq!(docs.json["data"][0]["id"], doc.as_str(), "{}", docs.text);
    let found = search(&gw, &key, "what are your hours on saturday").await;
    assert_eq!(found[0]["document_id"], doc.as_str());
    // Deleting removes its vectors.
    let r = gw
        .tenant(
            &key,
            Method::DELETE,
            &format!("/v1/kb/documents/{doc}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(
        search(&gw, &key, "what are your hours on saturday")
            .await
            .is_empty()
    );
    let r = gw
        .tenant(
            &key,
            Method::DELETE,
            &format!("/v1/kb/documents/{doc}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn knowledge_base_requests_are_validated_and_change_nothing() {
    let gw = Gateway::start_with(options()).await;
    let (_, key) = gw.create_tenant("shop").await;
    let (_, other) = gw.create_tenant("other").await;
    let theirs = add_document(&gw, &other, "Vault", VAULT).await;
    for (body, status, code) in [
        (
            json!({ "title": "", "text": "x" }),
            422,
            "validation_failed",
        ),
        (
            json!({ "title": "t", "text": "   " }),
            422,
            "empty_document",
        ),
        (
            json!({ "title": "t", "text": "x", "colour": 1 }),
            422,
            "unknown_field",
        ),
        (
            json!({ "title": "t", "text": "x", "format": "pdf" }),
            422,
            "validation_failed",
        ),
        (json!({ "title": "t" }), 422, "invalid_field"),
    ] {
        let r = gw
            .tenant(&key, Method::POST, "/v1/kb/documents", Some(body.clone()))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code),
            "{body}: {}",
            r.text
        );
    }
    // Uploads: Markdown accepted, PDF refused.
    let upload = |name: &str, ct: &str, data: &str| {
        let body = format!(
            "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n{data}\r\n--XX--\r\n"
        );
        let gw = &gw;
        let key = key.clone();
        async move {
            gw.request(
                Method::POST,
                "/v1/kb/documents",
                &[
                    ("x-api-key", key.as_str()),
                    ("content-type", "multipart/form-data; boundary=XX"),
                ],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    let r = upload("returns.pdf", "application/pdf", "%PDF-1.7").await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (415, "unsupported_document_type"),
        "{}",
        r.text
    );
    let r = upload("returns.md", "text/markdown", RETURNS).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["title"], "returns");
    assert_eq!(r.json["format"], "markdown");
    let docs = gw.tenant(&key, Method::GET, "/v1/kb/documents", None).await;
    assert_eq!(
        docs.json["data"].as_array().unwrap().len(),
        1,
        "{}",
        docs.text
    );

    for body in [
        json!({ "query": "" }),
        json!({ "query": "x", "limit": 0 }),
        json!({ "query": "x", "limit": 51 }),
    ] {
        let r = gw
            .tenant(&key, Method::POST, "/v1/kb/search", Some(body))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    }
    // Another tenant's document is not there for us.
    let r = gw
        .tenant(
            &key,
            Method::DELETE,
            &format!("/v1/kb/documents/{theirs}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        search(&gw, &other, "vault combination").await[0]["document_id"],
        theirs.as_str()
    );

    let session = working_session(&gw, &key).await;
    let path = format!("/v1/sessions/{session}/reply-settings");
    for body in [
        json!({ "mode": "sometimes" }),
        json!({ "mode": "auto", "temperature": 5 }),
        json!({ "mode": "auto", "allowed_contacts": [""] }),
        json!({ "mode": "auto", "colour": "red" }),
    ] {
        let r = gw
            .tenant(&key, Method::PUT, &path, Some(body.clone()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
    }
    assert_eq!(
        gw.tenant(&key, Method::GET, &path, None).await.json["mode"],
        "off"
    );
    let r = gw
        .tenant(&key, Method::POST, "/v1/drafts/dft_nope/approve", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = gw
        .tenant(&key, Method::GET, "/v1/drafts?status=maybe", None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{session}/sim/inbound"),
            Some(json!({ "from": "", "text": "hi" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// A contact on the suppression list gets no auto-reply and no approved draft: the
/// reply is written and queued, and its send ends `failed` with
/// `recipient_suppressed`; another contact's reply goes out.
#[tokio::test]
async fn a_suppressed_contact_gets_neither_an_auto_reply_nor_an_approved_draft() {
    use super::suppressions::settled;
    let gw = Gateway::start_with(options()).await;
    let (_, key) = gw.create_tenant("careful shop").await;
    add_document(&gw, &key, "Opening hours", HOURS).await;
    let session = working_session(&gw, &key).await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/suppressions",
            Some(json!({ "channel": "sim", "address": "+15550100", "reason": "said STOP" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    set_replies(&gw, &key, &session, json!({ "mode": "auto" })).await;
    ask(&gw, &key, &session, "+15550100", "Are you open on Sundays?").await;
    ask(&gw, &key, &session, "+15550111", "Are you open on Sundays?").await;
    let replies = wait_events(&gw, &key, "rag.reply", 2).await;
    for reply in &replies {
        let to = reply["data"]["to"].as_str().unwrap();
        let m = settled(&gw, &key, reply["data"]["message_id"].as_str().unwrap()).await;
        if to == "+15550100" {
            assert_eq!(m["status"], "failed", "{m}");
            assert!(
                m["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("recipient_suppressed"),
                "{m}"
            );
        } else {
            assert_ne!(m["status"], "failed", "{m}");
        }
    }

    set_replies(&gw, &key, &session, json!({ "mode": "draft" })).await;
    ask(
        &gw,
        &key,
        &session,
        "+15550100",
        "When are you open on Saturdays?",
    )
    .await;
    let drafted = wait_events(&gw, &key, "rag.draft", 1).await;
    let draft_id = drafted[0]["data"]["draft_id"].as_str().unwrap();
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/drafts/{draft_id}/approve"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let m = settled(&gw, &key, r.json["message_id"].as_str().unwrap()).await;
    assert_eq!(m["status"], "failed", "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .starts_with("recipient_suppressed"),
        "{m}"
    );
}

/// Waits for the `rag.reply` to `question` and the message it queued, settled.
async fn reply_to(gw: &Gateway, key: &str, question: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = events(gw, key, "rag.reply")
            .await
            .into_iter()
            .find(|e| e["data"]["question"] == question)
        {
            let id = r["data"]["message_id"].as_str().unwrap().to_owned();
            return super::suppressions::settled(gw, key, &id).await;
        }
        assert!(Instant::now() < deadline, "no reply to `{question}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stop_from_a_contact_blocks_the_next_auto_reply_to_them() {
    let gw = Gateway::start_with(options()).await;
    let (_, key) = gw.create_tenant("polite shop").await;
    add_document(&gw, &key, "Opening hours", HOURS).await;
    let session = working_session(&gw, &key).await;
    set_replies(&gw, &key, &session, json!({ "mode": "auto" })).await;

    // The defaults, until the tenant sets its own.
    let r = gw.tenant(&key, Method::GET, "/v1/consent", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["opt_out_keywords"],
        json!(["STOP", "UNSUBSCRIBE", "STOPP", "ARRET", "BAJA"])
    );

    let ada = "+15550100";
    ask(&gw, &key, &session, ada, "Are you open on Sundays?").await;
    let m = reply_to(&gw, &key, "Are you open on Sundays?").await;
    assert_ne!(m["status"], "failed", "answered before she opts out: {m}");

    // `Stop!` (any case, punctuation ignored) opts her out, once however often she
    // says it; a sentence that merely contains the word does not.
    ask(&gw, &key, &session, ada, "Stop!").await;
    ask(&gw, &key, &session, ada, "STOP").await;
    ask(
        &gw,
        &key,
        &session,
        "+15550111",
        "Please don't stop the offers",
    )
    .await;
    let opted = wait_events(&gw, &key, "contact.opted_out", 1).await;
    assert_eq!(opted[0]["data"]["address"], ada, "{}", opted[0]);
    assert_eq!(opted[0]["data"]["channel"], "sim");
    assert_eq!(opted[0]["data"]["keyword"], "STOP");
    let r = gw.tenant(&key, Method::GET, "/v1/suppressions", None).await;
    let entries = r.json["data"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{}", r.text);
    assert_eq!(entries[0]["address"], ada);
    assert_eq!(entries[0]["source"], "opt_out");
    assert_eq!(entries[0]["id"], opted[0]["data"]["suppression_id"]);

    // Her next question gets no reply that leaves the gateway.
    ask(&gw, &key, &session, ada, "When are you open on Saturdays?").await;
    let m = reply_to(&gw, &key, "When are you open on Saturdays?").await;
    assert_eq!(m["status"], "failed", "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .starts_with("recipient_suppressed"),
        "{m}"
    );
    let sent = events(&gw, &key, "message.sent").await;
    assert!(
        !sent.iter().any(|e| e["data"]["message_id"] == m["id"]),
        "never sent"
    );

    // The tenant's own keywords replace the defaults; bad settings change nothing.
    for (bad, field) in [
        (json!({ "opt_out_keywords": [""] }), "opt_out_keywords"),
        (
            json!({ "retention": { "events": "soon" } }),
            "retention.events",
        ),
        (
            json!({ "list_unsubscribe": { "enabled": true, "mailto": "x" } }),
            "mailto",
        ),
    ] {
        let r = gw
            .tenant(&key, Method::PUT, "/v1/consent", Some(bad.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{bad}: {}",
            r.text
        );
        assert!(r.text.contains(field), "{}", r.text);
    }
    let r = gw
        .tenant(
            &key,
            Method::PUT,
            "/v1/consent",
            Some(json!({ "opt_out_keywords": ["alto", "basta"], "colour": "red" })),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_field"),
        "{}",
        r.text
    );
    let r = gw
        .tenant(
            &key,
            Method::PUT,
            "/v1/consent",
            Some(json!({ "opt_out_keywords": ["alto", "basta"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    ask(&gw, &key, &session, "+15550122", "STOP").await;
    ask(&gw, &key, &session, "+15550133", "Alto.").await;
    let opted = wait_events(&gw, &key, "contact.opted_out", 2).await;
    let addresses: Vec<&str> = opted
        .iter()
        .map(|e| e["data"]["address"].as_str().unwrap())
        .collect();
    assert!(addresses.contains(&"+15550133"), "{addresses:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opted = events(&gw, &key, "contact.opted_out").await;
    assert_eq!(opted.len(), 2, "STOP is no longer a keyword: {opted:?}");
}
