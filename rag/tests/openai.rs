//! The OpenAI-compatible clients against a real local HTTP server (hyper on
//! `127.0.0.1:0`, spawned per test) that records every request and answers from a
//! script: ordering, batching, auth, retries, error text, JSON repair and timeouts.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_rag::embed::{EmbedError, Embedder};
use switchboard_rag::openai::{ChatRequest, Endpoint, LlmClient, LlmError, OpenAiEmbedder};
use tokio::net::TcpListener;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// What the server answers.
struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self::status(200, body)
    }

    fn status(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

/// Answers request number `n` (from 0), given what it contained.
type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

struct Server {
    base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            base_url: self.base_url.clone(),
            api_key: None,
            timeout: Duration::from_secs(2),
            retries: 2,
        }
    }
}

async fn start_server(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script: Arc<Script> = Arc::new(script);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (log, script) = (log.clone(), script.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (log, script) = (log.clone(), script.clone());
                    async move { Ok::<_, hyper::Error>(answer(req, &log, &*script).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { base_url, seen }
}

async fn answer(
    req: Request<Incoming>,
    log: &Mutex<Vec<Seen>>,
    script: &Script,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let authorization = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let seen = Seen {
        path,
        authorization,
        body: serde_json::from_slice(&body).unwrap(),
    };
    let n = {
        let mut log = log.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    let reply = script(n, &seen);
    tokio::time::sleep(reply.delay).await;
    let mut response = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap())
        .header("content-type", "application/json");
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Full::new(Bytes::from(reply.body.to_string())))
        .unwrap()
}

// === embeddings ===

/// A deterministic, unnormalised vector for `text`: `[len, 1, 0, …]`.
fn fake_vector(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0.0; dims];
    v[0] = text.len() as f32;
    v[1] = 1.0;
    v
}

/// An `/embeddings` server returning `dims`-long vectors in reversed order.
fn embeddings_script(dims: usize) -> impl Fn(usize, &Seen) -> Reply + Send + Sync {
    move |_, seen| {
        let inputs = seen.body["input"].as_array().unwrap();
        let mut data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                json!({
                    "object": "embedding",
                    "index": i,
                    "embedding": fake_vector(text.as_str().unwrap(), dims),
                })
            })
            .collect();
        data.reverse();
        Reply::ok(json!({ "object": "list", "data": data, "model": "m" }))
    }
}

fn assert_unit_and_parallel(vector: &[f32], raw: &[f32]) {
    let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "unit length, got {norm}");
    let raw_norm: f32 = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    for (a, b) in vector.iter().zip(raw) {
        assert!((a - b / raw_norm).abs() < 1e-6);
    }
}

#[tokio::test]
async fn embeddings_are_ordered_by_index_normalised_and_batched() {
    let server = start_server(embeddings_script(8)).await;
    let embedder = OpenAiEmbedder::new(server.endpoint(), "nomic".into(), 8).unwrap();
    assert_eq!(embedder.model_id(), "openai:nomic");
    assert_eq!(embedder.dimensions(), 8);

    // Distinct lengths, so each vector says which text it belongs to.
    let texts: Vec<String> = (0..150).map(|i| "x".repeat(i + 1)).collect();
    let vectors = embedder.embed(texts.clone()).await.unwrap();
    assert_eq!(vectors.len(), 150);
    for (text, vector) in texts.iter().zip(&vectors) {
        assert_unit_and_parallel(vector, &fake_vector(text, 8));
    }

    let seen = server.seen();
    let sizes: Vec<usize> = seen
        .iter()
        .map(|s| s.body["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![64, 64, 22]);
    for request in &seen {
        assert_eq!(request.path, "/v1/embeddings");
        assert_eq!(request.body["model"], "nomic");
        assert_eq!(request.authorization, None);
    }

    assert!(embedder.embed(Vec::new()).await.unwrap().is_empty());
    assert_eq!(server.seen().len(), 3, "no request for no texts");
}

#[tokio::test]
async fn bearer_key_is_sent() {
    let server = start_server(embeddings_script(4)).await;
    let endpoint = Endpoint {
        api_key: Some("sk-test".into()),
        ..server.endpoint()
    };
    let embedder = OpenAiEmbedder::new(endpoint, "m".into(), 4).unwrap();
    embedder.embed(vec!["hello".into()]).await.unwrap();
    assert_eq!(
        server.seen()[0].authorization.as_deref(),
        Some("Bearer sk-test")
    );
}

#[tokio::test]
async fn probe_reports_the_dimension() {
    let server = start_server(embeddings_script(12)).await;
    let dims = OpenAiEmbedder::probe(server.endpoint(), "m".into())
        .await
        .unwrap();
    assert_eq!(dims, 12);
    assert_eq!(server.seen()[0].body["input"], json!(["probe"]));
}

#[tokio::test]
async fn server_error_is_retried() {
    let ok = embeddings_script(4);
    let server = start_server(move |n, seen| {
        if n == 0 {
            Reply::status(500, json!({ "error": { "message": "overloaded" } }))
        } else {
            ok(n, seen)
        }
    })
    .await;
    let embedder = OpenAiEmbedder::new(server.endpoint(), "m".into(), 4).unwrap();
    let vectors = embedder.embed(vec!["a".into(), "bb".into()]).await.unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn client_error_is_not_retried_and_carries_the_servers_message() {
    let server = start_server(|_, _| {
        Reply::status(
            400,
            json!({ "error": { "message": "model 'nope' not found", "type": "invalid_request_error" } }),
        )
    })
    .await;
    let embedder = OpenAiEmbedder::new(server.endpoint(), "nope".into(), 4).unwrap();
    let err = embedder.embed(vec!["a".into()]).await.unwrap_err();
    assert!(matches!(err, EmbedError::Remote(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("400"), "{text}");
    assert!(text.contains("model 'nope' not found"), "{text}");
    assert_eq!(server.seen().len(), 1, "4xx is not retried");
}

#[tokio::test]
async fn dimension_mismatch_is_an_error() {
    let server = start_server(embeddings_script(5)).await;
    let embedder = OpenAiEmbedder::new(server.endpoint(), "m".into(), 4).unwrap();
    let err = embedder.embed(vec!["a".into()]).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("5-dimensional") && text.contains("expected 4"),
        "{text}"
    );
}

#[tokio::test]
async fn refused_connection_is_a_transport_error() {
    // A port nobody listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let endpoint = Endpoint {
        base_url: format!("http://{addr}/v1"),
        api_key: None,
        timeout: Duration::from_secs(1),
        retries: 0,
    };
    let client = LlmClient::new(endpoint, "m".into()).unwrap();
    let err = client
        .complete(&ChatRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Transport(_)), "{err:?}");
}

// === chat ===

fn chat_reply(content: &str) -> Reply {
    Reply::ok(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop",
        }],
    }))
}

#[derive(Debug, Deserialize, PartialEq)]
struct Verdict {
    answer: String,
    confident: bool,
}

#[tokio::test]
async fn plain_completion() {
    let server = start_server(|_, _| chat_reply("Hello there.")).await;
    let client = LlmClient::new(server.endpoint(), "llama3".into()).unwrap();
    assert_eq!(client.model(), "llama3");
    let req = ChatRequest {
        temperature: 0.5,
        max_tokens: 64,
        ..ChatRequest::new("Be brief.", "Greet me.")
    };
    assert_eq!(client.complete(&req).await.unwrap(), "Hello there.");

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    let body = &seen[0].body;
    assert_eq!(body["model"], "llama3");
    assert_eq!(
        body["messages"],
        json!([
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Greet me." },
        ])
    );
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["max_tokens"], 64);
    assert!(body.get("response_format").is_none());

    // A request's own model wins over the default.
    let req = ChatRequest {
        model: Some("qwen".into()),
        ..req
    };
    client.complete(&req).await.unwrap();
    assert_eq!(server.seen()[1].body["model"], "qwen");
}

#[tokio::test]
async fn rate_limit_is_retried() {
    let server = start_server(|n, _| {
        if n == 0 {
            let mut reply = Reply::status(429, json!({ "error": { "message": "slow down" } }));
            reply.headers.push(("retry-after", "0".into()));
            reply
        } else {
            chat_reply("ok")
        }
    })
    .await;
    let client = LlmClient::new(server.endpoint(), "m".into()).unwrap();
    let answer = client.complete(&ChatRequest::new("", "hi")).await.unwrap();
    assert_eq!(answer, "ok");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn empty_answer_is_an_error() {
    let server = start_server(|_, _| chat_reply("  ")).await;
    let client = LlmClient::new(server.endpoint(), "m".into()).unwrap();
    let err = client
        .complete(&ChatRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Empty), "{err:?}");
}

#[tokio::test]
async fn json_answer_in_fences_is_parsed() {
    let server = start_server(|_, _| {
        chat_reply("Here you go:\n```json\n{\"answer\": \"yes\", \"confident\": true}\n```")
    })
    .await;
    let client = LlmClient::new(server.endpoint(), "m".into()).unwrap();
    let verdict: Verdict = client
        .complete_json(&ChatRequest::new("Answer in JSON.", "Is it?"))
        .await
        .unwrap();
    assert_eq!(
        verdict,
        Verdict {
            answer: "yes".into(),
            confident: true
        }
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body["response_format"],
        json!({ "type": "json_object" })
    );
}

#[tokio::test]
async fn bad_json_is_repaired_once() {
    let server = start_server(|n, _| {
        if n == 0 {
            chat_reply(r#"{"answer": "yes"}"#)
        } else {
            chat_reply(r#"{"answer": "yes", "confident": false}"#)
        }
    })
    .await;
    let client = LlmClient::new(server.endpoint(), "m".into()).unwrap();
    let verdict: Verdict = client
        .complete_json(&ChatRequest::new("Answer in JSON.", "Is it?"))
        .await
        .unwrap();
    assert!(!verdict.confident);

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let messages = seen[1].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], r#"{"answer": "yes"}"#);
    assert_eq!(messages[3]["role"], "user");
    let repair = messages[3]["content"].as_str().unwrap();
    assert!(
        repair.starts_with("Your previous answer was not valid JSON for the required shape:"),
        "{repair}"
    );
    assert!(
        repair.contains("confident"),
        "names the serde error: {repair}"
    );
    assert!(repair.ends_with("Answer again with only the JSON object."));
}

#[tokio::test]
async fn bad_json_twice_is_invalid_json() {
    let server = start_server(|_, _| chat_reply("I think the answer is yes.")).await;
    let client = LlmClient::new(server.endpoint(), "m".into()).unwrap();
    let err = client
        .complete_json::<Verdict>(&ChatRequest::new("Answer in JSON.", "Is it?"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidJson(_)), "{err:?}");
    assert_eq!(server.seen().len(), 2, "one repair attempt, no more");
}

#[tokio::test]
async fn slow_server_times_out() {
    let server = start_server(|_, _| Reply {
        delay: Duration::from_secs(2),
        ..chat_reply("too late")
    })
    .await;
    let endpoint = Endpoint {
        timeout: Duration::from_millis(300),
        retries: 0,
        ..server.endpoint()
    };
    let client = LlmClient::new(endpoint, "m".into()).unwrap();
    let started = std::time::Instant::now();
    let err = client
        .complete(&ChatRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.seen().len(), 1);
}
