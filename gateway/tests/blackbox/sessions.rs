//! Sessions: supervision of every failure mode, the restart cap, sim traffic through
//! signed webhooks, restore after SIGKILL, validation and isolation.

use super::receiver::{Behaviour, Receiver};
use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn options(max_restarts: u32) -> Options {
    Options {
        env: vec![
            ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS".into(), "true".into()),
            ("SWITCHBOARD_SESSIONS_RESTART_BASE".into(), "100ms".into()),
            ("SWITCHBOARD_SESSIONS_RESTART_MAX".into(), "400ms".into()),
            (
                "SWITCHBOARD_SESSIONS_MAX_RESTARTS".into(),
                max_restarts.to_string(),
            ),
            (
                "SWITCHBOARD_SESSIONS_WATCHDOG_INTERVAL".into(),
                "200ms".into(),
            ),
            (
                "SWITCHBOARD_SESSIONS_WATCHDOG_TIMEOUT".into(),
                "300ms".into(),
            ),
            (
                "SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE".into(),
                "0,200ms,500ms,1s,1s,1s".into(),
            ),
        ],
        ..Default::default()
    }
}

async fn create_session(gw: &Gateway, key: &str, config: Value) -> String {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "sim", "name": "sim one", "config": config })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

async fn wait_status(gw: &Gateway, key: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = gw
            .tenant(key, Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        if r.json["status"] == want {
            return r.json;
        }
        assert!(
            Instant::now() < deadline,
            "session never reached {want}: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `session.status` events of a session, oldest first, as (status, reason).
async fn status_events(gw: &Gateway, key: &str, id: &str) -> Vec<(String, String)> {
    let r = gw
        .tenant(
            key,
            Method::GET,
            "/v1/events?type=session.status&limit=200",
            None,
        )
        .await;
    r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["session_id"] == id)
        .map(|e| {
            (
                e["data"]["status"].as_str().unwrap().to_owned(),
                e["data"]["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn metric(gw: &Gateway, line_prefix: &str) -> f64 {
    gw.metrics()
        .await
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn fault(gw: &Gateway, key: &str, id: &str, kind: &str) {
    let r = gw
        .tenant(
            key,
            Method::POST,
            &format!("/v1/sessions/{id}/fault"),
            Some(json!({ "fault": kind })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

async fn restarted_after(kind: &str) {
    let gw = Gateway::start_with(options(5)).await;
    let (_, key) = gw.create_tenant("faults").await;
    let id = create_session(&gw, &key, json!({})).await;
    wait_status(&gw, &key, &id, "WORKING").await;
    fault(&gw, &key, &id, kind).await;
    let reason = format!("restarting after {kind}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = status_events(&gw, &key, &id).await;
        let i = events
            .iter()
            .position(|(s, r)| s == "STARTING" && *r == reason);
        if let Some(i) = i
            && events[i + 1..].iter().any(|(s, _)| s == "WORKING")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no restart after {kind}: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_status(&gw, &key, &id, "WORKING").await;
    let failures = metric(
        &gw,
        &format!("switchboard_session_failures_total{{kind=\"{kind}\"}}"),
    )
    .await;
    let restarts = metric(
        &gw,
        &format!("switchboard_session_restarts_total{{kind=\"{kind}\"}}"),
    )
    .await;
    assert_eq!((failures, restarts), (1.0, 1.0), "counters for {kind}");
    if kind == "hang" {
        assert_eq!(metric(&gw, "switchboard_session_kills_total").await, 1.0);
    }
}

#[tokio::test]
async fn a_panicking_session_is_restarted() {
    restarted_after("panic").await;
}

#[tokio::test]
async fn a_session_returning_an_error_is_restarted() {
    restarted_after("error").await;
}

#[tokio::test]
async fn a_hung_session_is_killed_by_the_watchdog_and_restarted() {
    restarted_after("hang").await;
}

#[tokio::test]
async fn a_disconnected_session_reconnects() {
    restarted_after("disconnect").await;
}

#[tokio::test]
async fn past_the_restart_cap_a_session_is_failed_until_started() {
    let gw = Gateway::start_with(options(2)).await;
    let (_, key) = gw.create_tenant("cap").await;
    let id = create_session(&gw, &key, json!({})).await;
    for _ in 0..2 {
        wait_status(&gw, &key, &id, "WORKING").await;
        fault(&gw, &key, &id, "error").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_status(&gw, &key, &id, "WORKING").await;
    fault(&gw, &key, &id, "panic").await;
    let s = wait_status(&gw, &key, &id, "FAILED").await;
    assert!(
        s["status_reason"]
            .as_str()
            .unwrap()
            .contains("restart limit"),
        "{s}"
    );
    assert_eq!(s["running"], false);
    // It stays failed: nothing restarts it behind the operator's back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        wait_status(&gw, &key, &id, "FAILED").await["status"],
        "FAILED"
    );
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/fault"),
            Some(json!({ "fault": "panic" })),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "session_not_running")
    );
    let events = status_events(&gw, &key, &id).await;
    assert_eq!(events.last().unwrap().0, "FAILED");
    // Starting it again gives it a fresh restart budget.
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/start"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_status(&gw, &key, &id, "WORKING").await;
    assert_eq!(
        metric(&gw, "switchboard_sessions_given_up_total").await,
        1.0
    );
}

#[tokio::test]
async fn lifecycle_actions_are_idempotent() {
    let gw = Gateway::start_with(options(5)).await;
    let (_, key) = gw.create_tenant("life").await;
    let id = create_session(&gw, &key, json!({})).await;
    wait_status(&gw, &key, &id, "WORKING").await;
    for _ in 0..2 {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                &format!("/v1/sessions/{id}/start"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    for _ in 0..2 {
        let r = gw
            .tenant(&key, Method::POST, &format!("/v1/sessions/{id}/stop"), None)
            .await;
        assert_eq!(
            (r.status, r.json["status"].as_str()),
            (StatusCode::OK, Some("STOPPED"))
        );
    }
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/restart"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    wait_status(&gw, &key, &id, "WORKING").await;
    for _ in 0..2 {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                &format!("/v1/sessions/{id}/logout"),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.json["status"].as_str()),
            (StatusCode::OK, Some("LOGGED_OUT"))
        );
    }
    let r = gw
        .tenant(&key, Method::DELETE, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = gw
        .tenant(&key, Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sim_traffic_arrives_as_signed_webhooks_none_lost() {
    let gw = Gateway::start_with(options(5)).await;
    let (_, key) = gw.create_tenant("traffic").await;
    let rx = Receiver::start(Behaviour::default()).await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": rx.url, "secret": SECRET, "events": ["message.received"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = create_session(
        &gw,
        &key,
        json!({ "inbound_per_second": 100, "payload_bytes": 32 }),
    )
    .await;
    wait_status(&gw, &key, &id, "WORKING").await;
    rx.wait_for(Duration::from_secs(30), "150 messages", |d| d.len() >= 150)
        .await;
    gw.tenant(&key, Method::POST, &format!("/v1/sessions/{id}/stop"), None)
        .await;

    // Everything the gateway stored arrives, each once (retries only reuse an id).
    let mut stored = BTreeSet::new();
    let mut path = "/v1/events?type=message.received&limit=200".to_owned();
    loop {
        let page = gw.tenant(&key, Method::GET, &path, None).await;
        for e in page.json["data"].as_array().unwrap() {
            assert_eq!(e["session_id"], id.as_str());
            assert_eq!(e["channel"], "sim");
            assert_eq!(e["data"]["text"].as_str().unwrap().len(), 32);
            stored.insert(e["id"].as_str().unwrap().to_owned());
        }
        match page.json["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/events?type=message.received&limit=200&after={c}"),
            None => break,
        }
    }
    rx.wait_for(Duration::from_secs(30), "every stored message", |_| {
        rx.delivered_ids() == stored
    })
    .await;
    let deliveries = rx.deliveries();
    assert_eq!(deliveries.len(), stored.len(), "duplicates without retries");
    assert!(deliveries.iter().all(|d| d.verifies_with(SECRET)));
    // The external ids are distinct: the channel produced no duplicates either.
    let external: BTreeSet<String> = deliveries
        .iter()
        .map(|d| d.json()["data"]["external_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(external.len(), stored.len());
}

/// Sessions fast enough to have many events in flight at once (the session's
/// sequence does not wait for each commit) still store each session's messages
/// exactly in the order the channel produced them: the sim numbers its messages,
/// and the events, listed in commit order, follow those numbers without a gap.
#[tokio::test]
async fn fast_sessions_store_their_messages_in_the_order_produced() {
    let gw = Gateway::start_with(options(5)).await;
    let (_, key) = gw.create_tenant("ordered").await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let id = create_session(
            &gw,
            &key,
            json!({ "inbound_per_second": 2500, "payload_bytes": 16 }),
        )
        .await;
        sessions.push(id);
    }
    for id in &sessions {
        wait_status(&gw, &key, id, "WORKING").await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&gw, "switchboard_inbound_messages_total{channel=\"sim\"}").await < 4000.0 {
        assert!(
            Instant::now() < deadline,
            "4,000 messages not stored within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &sessions {
        gw.tenant(&key, Method::POST, &format!("/v1/sessions/{id}/stop"), None)
            .await;
    }
    // `sim-{session}-{ms}-{n}`: n counts the session's messages from 1.
    let mut numbers: std::collections::HashMap<String, Vec<u64>> = Default::default();
    let mut path = "/v1/events?type=message.received&limit=200".to_owned();
    loop {
        let page = gw.tenant(&key, Method::GET, &path, None).await;
        for e in page.json["data"].as_array().unwrap() {
            let external = e["data"]["external_id"].as_str().unwrap();
            let n = external.rsplit('-').next().unwrap().parse().unwrap();
            numbers
                .entry(e["session_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(n);
        }
        match page.json["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/events?type=message.received&limit=200&after={c}"),
            None => break,
        }
    }
    assert_eq!(numbers.len(), 2);
    for (session, ns) in &numbers {
        assert!(ns.len() > 500, "{session}: only {} messages", ns.len());
        let expected: Vec<u64> = (1..=ns.len() as u64).collect();
        assert!(
            *ns == expected,
            "{session}: messages stored out of order or with a gap, first at {:?}",
            ns.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
}

#[tokio::test]
async fn running_sessions_come_back_after_sigkill() {
    let mut gw = Gateway::start_with(options(5)).await;
    let (_, key) = gw.create_tenant("restore").await;
    let running = create_session(&gw, &key, json!({})).await;
    let stopped = create_session(&gw, &key, json!({})).await;
    wait_status(&gw, &key, &running, "WORKING").await;
    gw.tenant(
        &key,
        Method::POST,
        &format!("/v1/sessions/{stopped}/stop"),
        None,
    )
    .await;
    gw.kill();
    let gw = gw.restart().await;
    wait_status(&gw, &key, &running, "WORKING").await;
    let s = gw
        .tenant(&key, Method::GET, &format!("/v1/sessions/{stopped}"), None)
        .await;
    assert_eq!(s.json["status"], "STOPPED");
}

#[tokio::test]
async fn bad_session_input_is_refused_and_sessions_are_isolated() {
    let gw = Gateway::start_with(options(5)).await;
    let (_, a) = gw.create_tenant("a").await;
    let (_, b) = gw.create_tenant("b").await;
    let before = gw.db.count("sessions").await;
    for (body, code) in [
        (json!({ "channel": "telegram" }), "unknown_channel"),
        (
            json!({ "channel": "sim", "config": { "inbound_per_second": -5 } }),
            "invalid_session_config",
        ),
        (
            json!({ "channel": "sim", "config": { "payload_bytes": 0 } }),
            "invalid_session_config",
        ),
        (
            json!({ "channel": "sim", "config": { "colour": 1 } }),
            "invalid_session_config",
        ),
        (json!({ "channel": "sim", "name": "" }), "validation_failed"),
        (json!({ "channel": "sim", "extra": 1 }), "unknown_field"),
        (json!({ "channel": 5 }), "invalid_field"),
    ] {
        let r = gw
            .tenant(&a, Method::POST, "/v1/sessions", Some(body.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}: {}",
            r.text
        );
    }
    assert_eq!(gw.db.count("sessions").await, before);

    let id = create_session(&gw, &a, json!({})).await;
    for (method, path) in [
        (Method::GET, format!("/v1/sessions/{id}")),
        (Method::DELETE, format!("/v1/sessions/{id}")),
        (Method::POST, format!("/v1/sessions/{id}/stop")),
        (Method::POST, format!("/v1/sessions/{id}/start")),
        (Method::POST, format!("/v1/sessions/{id}/logout")),
    ] {
        let r = gw.tenant(&b, method.clone(), &path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let listed = gw.tenant(&b, Method::GET, "/v1/sessions", None).await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 0);
    // A's session was not touched by B.
    wait_status(&gw, &a, &id, "WORKING").await;
    let r = gw
        .tenant(
            &a,
            Method::POST,
            &format!("/v1/sessions/{id}/fault"),
            Some(json!({ "fault": "explode" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Reads `n` events from the session's SSE stream, resuming after `last_id`.
async fn sse_read(
    gw: &Gateway,
    key: &str,
    session: &str,
    last_id: Option<&str>,
    n: usize,
) -> Vec<(String, String)> {
    sse_read_at(&gw.base, key, session, last_id, n).await
}

/// [`sse_read`] from the gateway at `base`: `(event id, type)` in stream order.
pub(crate) async fn sse_read_at(
    base: &str,
    key: &str,
    session: &str,
    last_id: Option<&str>,
    n: usize,
) -> Vec<(String, String)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let mut req =
        http::Request::get(format!("{base}/v1/sessions/{session}/events")).header("x-api-key", key);
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let res = client
        .request(req.body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        let frame = tokio::time::timeout_at(deadline.into(), body.frame())
            .await
            .expect("SSE stalled")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::to_owned)
            };
            if let (Some(id), Some(ty)) = (field("id: "), field("event: ")) {
                out.push((id, ty));
            }
        }
    }
    out.truncate(n);
    out
}

#[tokio::test]
async fn sse_clients_resuming_with_last_event_id_miss_nothing() {
    let gw = Gateway::start_with(options(5)).await;
    let (_, key) = gw.create_tenant("sse").await;
    let id = create_session(&gw, &key, json!({ "inbound_per_second": 50 })).await;
    wait_status(&gw, &key, &id, "WORKING").await;
    let first = gw
        .tenant(&key, Method::GET, "/v1/events?limit=1", None)
        .await
        .json["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut seen = sse_read(&gw, &key, &id, Some(&first), 20).await;
    let resume = seen.last().unwrap().0.clone();
    tokio::time::sleep(Duration::from_millis(500)).await; // events keep coming while disconnected
    seen.extend(sse_read(&gw, &key, &id, Some(&resume), 40).await);
    gw.tenant(&key, Method::POST, &format!("/v1/sessions/{id}/stop"), None)
        .await;

    // The stream equals the stored sequence after `first`, without gaps or repeats.
    let stored = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/events?limit=200&after={first}"),
            None,
        )
        .await;
    let stored: Vec<(String, String)> = stored.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["session_id"] == id.as_str())
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(seen, stored[..seen.len()].to_vec());
    assert!(seen.iter().any(|(_, t)| t == "message.received"));
}

#[tokio::test]
async fn reconnect_loops_do_not_flood_webhooks() {
    let gw = Gateway::start_with(options(10)).await;
    let (_, key) = gw.create_tenant("flaky").await;
    let id = create_session(&gw, &key, json!({})).await;
    for _ in 0..4 {
        wait_status(&gw, &key, &id, "WORKING").await;
        fault(&gw, &key, &id, "disconnect").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_status(&gw, &key, &id, "WORKING").await;
    assert_eq!(
        metric(
            &gw,
            "switchboard_session_restarts_total{kind=\"disconnect\"}"
        )
        .await,
        4.0
    );
    // Four identical reconnect cycles, one published cycle.
    let events = status_events(&gw, &key, &id).await;
    let restarting = events
        .iter()
        .filter(|(s, r)| s == "STARTING" && r == "restarting after disconnect")
        .count();
    assert_eq!(restarting, 1, "{events:?}");
    assert!(metric(&gw, "switchboard_session_status_coalesced_total").await >= 6.0);
}

#[tokio::test]
async fn message_and_stream_routes_are_tenant_isolated() {
    let gw = Gateway::start_with(options(5)).await;
    let (_, a) = gw.create_tenant("a").await;
    let (_, b) = gw.create_tenant("b").await;
    let id = create_session(&gw, &a, json!({})).await;
    wait_status(&gw, &a, &id, "WORKING").await;
    let r = gw
        .tenant(
            &a,
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({ "to": "x", "text": "hi" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let msg = r.json["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/v1/messages/{msg}"),
        format!("/v1/sessions/{id}/messages"),
        format!("/v1/sessions/{id}/events"),
    ] {
        let r = gw.tenant(&b, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        gw.tenant(&a, Method::GET, &format!("/v1/messages/{msg}"), None)
            .await
            .status,
        StatusCode::OK
    );
}

/// A channel producing faster than the database stores is slowed by the session's
/// bounded buffer instead of piling messages up in the actor's mailbox: the
/// watchdog's ping is answered between two commits, so a busy session is never
/// mistaken for a hung one, and a message injected into a full buffer gets a clear
/// `503 session_busy` rather than a stuck session.
#[tokio::test]
async fn a_flooding_channel_is_slowed_not_killed_by_the_watchdog() {
    let mut opts = options(5);
    opts.env.retain(|(k, _)| !k.contains("WATCHDOG"));
    opts.env.extend([
        (
            "SWITCHBOARD_SESSIONS_WATCHDOG_INTERVAL".into(),
            "200ms".into(),
        ),
        ("SWITCHBOARD_SESSIONS_WATCHDOG_TIMEOUT".into(), "2s".into()),
    ]);
    let gw = Gateway::start_with(opts).await;
    let (_, key) = gw.create_tenant("flood").await;
    let id = create_session(&gw, &key, json!({ "inbound_per_second": 10000.0 })).await;
    wait_status(&gw, &key, &id, "WORKING").await;
    let (mut accepted, mut busy) = (0, 0);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                &format!("/v1/sessions/{id}/sim/inbound"),
                Some(json!({ "from": "sim:flood", "text": "during the flood" })),
            )
            .await;
        match r.status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE if r.code() == "session_busy" => busy += 1,
            _ => panic!("unexpected answer while flooding: {} {}", r.status, r.text),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted + busy > 0);
    assert_eq!(
        metric(&gw, "switchboard_session_kills_total").await,
        0.0,
        "a session busy storing was killed as hung"
    );
    let stored = metric(&gw, "switchboard_inbound_messages_total{channel=\"sim\"}").await;
    assert!(stored > 0.0, "nothing stored during the flood");
    let session = wait_status(&gw, &key, &id, "WORKING").await;
    assert_eq!(session["status"], "WORKING");
}
