//! The gateway run in-process through [`switchboard_gateway::start`] on
//! `127.0.0.1:0`, stopped by a future the test owns; and, through it, what the
//! channel seam gives every channel: sends with a subject and a reply, acks up to
//! `message.read`, login challenges answered over the API, fields a channel cannot
//! carry refused by name.
//!
//! SQLite by default; a fresh database on the server named by `TEST_DATABASE_URL`
//! when it is set (as the black-box tests do).

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard_gateway::config::Config;

const ADMIN: &str = "in-process-admin-token-0123456789";

/// A gateway running in this process, and what stops it.
struct Gateway {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), switchboard_gateway::StartError>>,
    _dir: tempfile::TempDir,
}

async fn database_url() -> Option<String> {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))?;
    let name = format!("sbinproc_{}", ulid::Ulid::new().to_string().to_lowercase());
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

impl Gateway {
    async fn start() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut env: HashMap<String, String> = HashMap::from([
            (
                "SWITCHBOARD_DATA_DIR".into(),
                dir.path().display().to_string(),
            ),
            ("SWITCHBOARD_ADMIN_TOKEN".into(), ADMIN.into()),
            ("SWITCHBOARD_HTTP_SHUTDOWN_GRACE_SECS".into(), "2".into()),
        ]);
        if let Some(url) = database_url().await {
            env.insert("DATABASE_URL".into(), url);
        }
        let config = Config::load(&env, None).expect("valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(switchboard_gateway::start(config, listener, async move {
            let _ = stopped.await;
        }));
        let gw = Self {
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
            done,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while gw.get("/healthz", "").await.0 != StatusCode::OK {
            assert!(Instant::now() < deadline, "the gateway never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gw
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if key == ADMIN {
            req = req.bearer_auth(key);
        } else if !key.is_empty() {
            req = req.header("x-api-key", key);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        match req.send().await {
            Ok(res) => {
                let status = res.status();
                let text = res.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
        }
    }

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, key, None).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }

    /// A new tenant's API key.
    async fn tenant(&self) -> String {
        let (status, body) = self
            .post("/v1/tenants", ADMIN, json!({ "name": "Acme" }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["api_key"]["key"].as_str().unwrap().to_owned()
    }

    /// Polls `path` until `done` holds for its body.
    async fn wait_for(
        &self,
        path: &str,
        key: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = self.get(path, key).await;
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{what}: last {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Event types of a session, oldest first.
    async fn event_types(&self, key: &str, session_id: &str) -> Vec<String> {
        let (_, body) = self.get("/v1/events?limit=200", key).await;
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["session_id"] == session_id)
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let ended = tokio::time::timeout(Duration::from_secs(30), &mut self.done)
            .await
            .expect("the gateway stops when its shutdown future resolves");
        ended.unwrap().expect("a clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_in_process_and_stops_on_its_shutdown_future() {
    let gw = Gateway::start().await;
    let key = gw.tenant().await;
    let (status, me) = gw.get("/v1/me", &key).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let base = gw.base.clone();
    gw.stop().await;
    // Nothing listens any more.
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_carry_a_subject_and_a_reply_and_acks_go_up_to_read() {
    let gw = Gateway::start().await;
    let key = gw.tenant().await;
    let (status, session) = gw
        .post(
            "/v1/sessions",
            &key,
            json!({ "channel": "sim", "config": { "read_receipts": true } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let sid = session["id"].as_str().unwrap().to_owned();
    gw.wait_for(&format!("/v1/sessions/{sid}"), &key, "working", |s| {
        s["status"] == "WORKING"
    })
    .await;
    let (status, _) = gw
        .post(
            &format!("/v1/sessions/{sid}/sim/inbound"),
            &key,
            json!({ "from": "+15550001", "text": "Where is my parcel?" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let listed = gw
        .wait_for(
            &format!("/v1/sessions/{sid}/messages"),
            &key,
            "inbound stored",
            |b| b["data"].as_array().is_some_and(|d| !d.is_empty()),
        )
        .await;
    let inbound = listed["data"][0]["id"].as_str().unwrap().to_owned();

    // A reply naming no message of this session changes nothing.
    let (status, body) = gw
        .post(
            &format!("/v1/sessions/{sid}/messages"),
            &key,
            json!({ "to": "+15550001", "text": "x", "reply_to": "msg_01JD0000000000000000000000" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "reply_to_not_found");
    let (status, body) = gw
        .post(
            &format!("/v1/sessions/{sid}/messages"),
            &key,
            json!({ "to": "+15550001", "text": "x", "subject": "  " }),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("validation_failed")
        )
    );

    let (status, sent) = gw
        .post(
            &format!("/v1/sessions/{sid}/messages"),
            &key,
            json!({ "to": "+15550001", "text": "It left today.", "subject": "Your parcel", "reply_to": inbound }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["subject"], "Your parcel");
    assert_eq!(sent["reply_to"], inbound.as_str());
    let id = sent["id"].as_str().unwrap();
    let read = gw
        .wait_for(&format!("/v1/messages/{id}"), &key, "read", |m| {
            m["status"] == "read"
        })
        .await;
    assert_eq!(read["text"], "It left today.");
    assert_eq!(read["subject"], "Your parcel");
    let types = gw.event_types(&key, &sid).await;
    let acks: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("message.") && *t != "message.received")
        .collect();
    assert_eq!(
        acks,
        [
            "message.queued",
            "message.sent",
            "message.delivered",
            "message.read"
        ],
        "{types:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_challenge_is_relayed_and_answered_over_the_api() {
    let gw = Gateway::start().await;
    let key = gw.tenant().await;
    let (status, session) = gw
        .post(
            "/v1/sessions",
            &key,
            json!({ "channel": "sim", "config": { "login_code": "424242" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let sid = session["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/sessions/{sid}");
    gw.wait_for(&path, &key, "challenge", |s| s["status"] == "CHALLENGE")
        .await;
    let (_, events) = gw.get("/v1/events?type=session.challenge", &key).await;
    let challenge = &events["data"][0]["data"];
    assert_eq!(challenge["kind"], "sms", "{events}");
    assert!(
        challenge["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let answer = format!("{path}/challenge");
    let (status, body) = gw.post(&answer, &key, json!({ "code": "" })).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_field"))
    );
    let (status, body) = gw.post(&answer, &key, json!({ "code": "000000" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "rejected_by_network");
    let (status, body) = gw.post(&answer, &key, json!({ "code": "424242" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    gw.wait_for(&path, &key, "working", |s| s["status"] == "WORKING")
        .await;
    let (status, body) = gw.post(&answer, &key, json!({ "code": "424242" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "no_challenge");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_a_channel_cannot_carry_are_refused_and_nothing_is_queued() {
    let gw = Gateway::start().await;
    let key = gw.tenant().await;
    let (status, session) = gw
        .post(
            "/v1/sessions",
            &key,
            json!({ "channel": "whatsapp", "start": false }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let sid = session["id"].as_str().unwrap().to_owned();
    let (status, body) = gw
        .post(
            &format!("/v1/sessions/{sid}/messages"),
            &key,
            json!({ "to": "15550001", "text": "hi", "subject": "Hello" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "not_supported");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`subject`")
    );
    // Plain text reaches the running check instead.
    let (status, body) = gw
        .post(
            &format!("/v1/sessions/{sid}/messages"),
            &key,
            json!({ "to": "15550001", "text": "hi" }),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("session_not_working"))
    );
    let (_, listed) = gw.get(&format!("/v1/sessions/{sid}/messages"), &key).await;
    assert_eq!(listed["data"], json!([]));
    assert!(
        gw.event_types(&key, &sid)
            .await
            .iter()
            .all(|t| !t.starts_with("message."))
    );
    let (status, body) = gw
        .post("/v1/sessions", &key, json!({ "channel": "telegram" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "unknown_channel");
    assert_eq!(
        body["error"]["message"],
        "unknown channel `telegram` (known: sim, whatsapp, email, linkedin)"
    );
    gw.stop().await;
}
