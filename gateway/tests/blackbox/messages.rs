//! Outbound messages: the durable queue, idempotency, per-tenant limits and
//! fairness, crash recovery, and the errors for bad sends.

use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn options() -> Options {
    Options {
        env: vec![
            ("SWITCHBOARD_SESSIONS_RESTART_BASE".into(), "100ms".into()),
            ("SWITCHBOARD_HTTP_MAX_BODY_BYTES".into(), "8192".into()),
        ],
        ..Default::default()
    }
}

pub(crate) async fn working_session(gw: &Gateway, key: &str) -> String {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "sim" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw
        .tenant(key, Method::GET, &format!("/v1/sessions/{id}"), None)
        .await
        .json["status"]
        != "WORKING"
    {
        assert!(Instant::now() < deadline, "session never WORKING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    id
}

async fn send(
    gw: &Gateway,
    key: &str,
    session: &str,
    text: &str,
    idem: Option<&str>,
) -> (StatusCode, Value, http::HeaderMap) {
    let mut headers = vec![("x-api-key", key), ("content-type", "application/json")];
    if let Some(k) = idem {
        headers.push(("idempotency-key", k));
    }
    let body = json!({ "to": "+15550001", "text": text })
        .to_string()
        .into_bytes();
    let r = gw
        .request(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            &headers,
            Some(body),
        )
        .await;
    (r.status, r.json, r.headers)
}

/// All events of a type, oldest first.
pub(crate) async fn events(gw: &Gateway, key: &str, ty: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/v1/events?type={ty}&limit=200");
    loop {
        let page = gw.tenant(key, Method::GET, &path, None).await;
        out.extend(page.json["data"].as_array().unwrap().iter().cloned());
        match page.json["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/events?type={ty}&limit=200&after={c}"),
            None => return out,
        }
    }
}

pub(crate) async fn wait_sent(gw: &Gateway, key: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let sent = events(gw, key, "message.sent").await;
        if sent.len() >= n {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} sends happened",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_send_is_queued_sent_and_delivered_once_per_idempotency_key() {
    let gw = Gateway::start_with(options()).await;
    let (_, key) = gw.create_tenant("sender").await;
    let session = working_session(&gw, &key).await;
    let (status, msg, _) = send(&gw, &key, &session, "hello", Some("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{msg}");
    assert_eq!(msg["status"], "queued");
    let id = msg["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msg_"));

    // Same key, same request: the first message again, not a second send.
    let (status, again, headers) = send(&gw, &key, &session, "hello", Some("order-1")).await;
    assert_eq!(
        (status, again["id"].as_str()),
        (StatusCode::ACCEPTED, Some(id.as_str()))
    );
    assert_eq!(headers["idempotent-replayed"], "true");
    // Same key, other request: refused.
    let (status, err, _) = send(&gw, &key, &session, "goodbye", Some("order-1")).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        )
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = gw
            .tenant(&key, Method::GET, &format!("/v1/messages/{id}"), None)
            .await;
        if m.json["status"] == "delivered" {
            assert_eq!(m.json["text"], "hello");
            assert_eq!(m.json["external_id"], format!("sim-out-{id}"));
            break;
        }
        assert!(Instant::now() < deadline, "never delivered: {}", m.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One message, one event per status: the replayed and refused requests stored nothing.
    assert_eq!(events(&gw, &key, "message.queued").await.len(), 1);
    assert_eq!(events(&gw, &key, "message.sent").await.len(), 1);
    let delivered = events(&gw, &key, "message.delivered").await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["data"]["message_id"], id.as_str());
    let listed = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{session}/messages"),
            None,
        )
        .await;
    assert!(
        listed.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == id.as_str() && m["direction"] == "outbound")
    );
}

#[tokio::test]
async fn bad_sends_are_refused_and_write_nothing() {
    let gw = Gateway::start_with(options()).await;
    let (_, key) = gw.create_tenant("bad").await;
    let (_, other) = gw.create_tenant("other").await;
    let session = working_session(&gw, &key).await;
    let before = gw.db.count("messages").await;
    for (text, status, code) in [
        ("", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("   ", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (
            &*"x".repeat(4097),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            &*"x".repeat(9000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ] {
        let (s, body, _) = send(&gw, &key, &session, text, None).await;
        assert_eq!(
            (s, body["error"]["code"].as_str().unwrap()),
            (status, code),
            "text of {} chars",
            text.len()
        );
    }
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({ "text": "no recipient" })),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
    );
    // Another tenant's session is 404.
    let (s, _, _) = send(&gw, &other, &session, "hi", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A stopped session refuses sends.
    gw.tenant(
        &key,
        Method::POST,
        &format!("/v1/sessions/{session}/stop"),
        None,
    )
    .await;
    let (s, body, _) = send(&gw, &key, &session, "hi", None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("session_not_working"))
    );
    assert_eq!(gw.db.count("messages").await, before);
    assert!(events(&gw, &key, "message.queued").await.is_empty());
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let gw = Gateway::start_with(options()).await;
    let (tenant, key) = gw.create_tenant("full").await;
    gw.admin(
        Method::PATCH,
        &format!("/v1/tenants/{tenant}"),
        Some(
            json!({ "limits": { "sends_per_second": 1, "send_burst": 1, "max_queued_sends": 3 } }),
        ),
    )
    .await;
    let session = working_session(&gw, &key).await;
    let mut codes = Vec::new();
    for i in 0..8 {
        let (s, body, headers) = send(&gw, &key, &session, &format!("m{i}"), None).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "send_queue_full");
            assert!(
                headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
        }
        codes.push(s.as_u16());
    }
    assert!(codes.contains(&429), "{codes:?}");
    let accepted = codes.iter().filter(|c| **c == 202).count();
    // Every accepted send is sent eventually; nothing was dropped silently.
    wait_sent(&gw, &key, accepted, Duration::from_secs(30)).await;
    // The queue's count (kept by triggers) went down as they went out: the queue
    // takes three again, and the count agrees with the rows.
    assert_eq!(gw.db.count("queued_sends WHERE queued <> 0").await, 0);
    for i in 0..3 {
        let (s, body, _) = send(&gw, &key, &session, &format!("again{i}"), None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    }
    let waiting = gw
        .db
        .count("messages WHERE direction = 'outbound' AND status IN ('queued', 'sending')")
        .await;
    let counted = gw
        .db
        .count("queued_sends WHERE queued = (SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND status IN ('queued', 'sending'))")
        .await;
    assert!(
        waiting > 0 && counted == 1,
        "{waiting} waiting, count agrees: {counted}"
    );
}

#[tokio::test]
async fn tenant_send_rate_follows_its_limit_without_slowing_others() {
    let gw = Gateway::start_with(options()).await;
    let (slow_tenant, slow) = gw.create_tenant("slow").await;
    let (fast_tenant, fast) = gw.create_tenant("fast").await;
    for (t, rate, burst) in [(&slow_tenant, 20, 5), (&fast_tenant, 200, 50)] {
        let r = gw
            .admin(Method::PATCH, &format!("/v1/tenants/{t}"), Some(json!({ "limits": { "sends_per_second": rate, "send_burst": burst, "api_requests_per_second": 10000, "api_burst": 10000 } })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let slow_session = working_session(&gw, &slow).await;
    let fast_session = working_session(&gw, &fast).await;
    for i in 0..85 {
        assert_eq!(
            send(&gw, &slow, &slow_session, &format!("s{i}"), None)
                .await
                .0,
            StatusCode::ACCEPTED
        );
    }
    let fast_started = Instant::now();
    for i in 0..40 {
        assert_eq!(
            send(&gw, &fast, &fast_session, &format!("f{i}"), None)
                .await
                .0,
            StatusCode::ACCEPTED
        );
    }
    wait_sent(&gw, &fast, 40, Duration::from_secs(30)).await;
    let fast_took = fast_started.elapsed();
    let sent = wait_sent(&gw, &slow, 85, Duration::from_secs(60)).await;
    assert!(
        fast_took < Duration::from_secs(2),
        "the fast tenant waited behind the slow one: {fast_took:?}"
    );

    // After the burst, the slow tenant's sends follow 20/s.
    let mut times: Vec<i64> = sent
        .iter()
        .map(|e| {
            switchboard_actors::clock::parse_rfc3339(e["created_at"].as_str().unwrap()).unwrap()
        })
        .collect();
    times.sort_unstable();
    let after_burst = &times[10..];
    let secs = (after_burst[after_burst.len() - 1] - after_burst[0]) as f64 / 1000.0;
    let rate = (after_burst.len() - 1) as f64 / secs;
    eprintln!("observed send rate {rate:.2}/s for a limit of 20/s");
    assert!(
        (rate - 20.0).abs() / 20.0 < 0.15,
        "observed {rate:.2}/s for a limit of 20/s"
    );
    let per_message: HashMap<&str, usize> = sent.iter().fold(HashMap::new(), |mut m, e| {
        *m.entry(e["data"]["message_id"].as_str().unwrap())
            .or_default() += 1;
        m
    });
    assert!(per_message.values().all(|n| *n == 1));
}

#[tokio::test]
async fn queued_sends_survive_sigkill_and_go_out_exactly_once() {
    let mut gw = Gateway::start_with(options()).await;
    let (tenant, key) = gw.create_tenant("crash").await;
    gw.admin(
        Method::PATCH,
        &format!("/v1/tenants/{tenant}"),
        Some(json!({ "limits": { "sends_per_second": 10, "send_burst": 1 } })),
    )
    .await;
    let session = working_session(&gw, &key).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let (s, m, _) = send(
            &gw,
            &key,
            &session,
            &format!("c{i}"),
            Some(&format!("k{i}")),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    gw.kill();
    let gw = gw.restart().await;
    let sent = wait_sent(&gw, &key, 30, Duration::from_secs(60)).await;
    // Retried requests after the restart do not queue again.
    for (i, id) in ids.iter().enumerate() {
        let (_, m, _) = send(
            &gw,
            &key,
            &session,
            &format!("c{i}"),
            Some(&format!("k{i}")),
        )
        .await;
        assert_eq!(m["id"], id.as_str());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_again = events(&gw, &key, "message.sent").await;
    assert_eq!(sent_again.len(), sent.len());
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for e in &sent_again {
        *per_message
            .entry(e["data"]["message_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_message.len(), 30);
    assert!(per_message.values().all(|n| *n == 1), "{per_message:?}");
    let s = gw
        .tenant(&key, Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(s.json["status"], "WORKING");
}

#[tokio::test]
async fn each_session_is_paced_without_holding_up_the_others() {
    let mut opts = options();
    opts.env
        .push(("SWITCHBOARD_SESSIONS_SEND_INTERVAL".into(), "250ms".into()));
    let gw = Gateway::start_with(opts).await;
    let (tenant, key) = gw.create_tenant("paced").await;
    gw.admin(
        Method::PATCH,
        &format!("/v1/tenants/{tenant}"),
        Some(json!({ "limits": { "sends_per_second": 100, "send_burst": 100 } })),
    )
    .await;
    let one = working_session(&gw, &key).await;
    let two = working_session(&gw, &key).await;
    for i in 0..4 {
        for s in [&one, &two] {
            assert_eq!(
                send(&gw, &key, s, &format!("p{i}"), None).await.0,
                StatusCode::ACCEPTED
            );
        }
    }
    let sent = wait_sent(&gw, &key, 8, Duration::from_secs(30)).await;
    let mut by_session: HashMap<String, Vec<i64>> = HashMap::new();
    for e in &sent {
        let at =
            switchboard_actors::clock::parse_rfc3339(e["created_at"].as_str().unwrap()).unwrap();
        by_session
            .entry(e["session_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(at);
    }
    let mut spans = Vec::new();
    for times in by_session.values_mut() {
        times.sort_unstable();
        assert_eq!(times.len(), 4);
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= 200,
                "a session sent twice within {} ms",
                w[1] - w[0]
            );
        }
        spans.push((times[0], times[3]));
    }
    // The two sessions' sends overlap in time: pacing one does not queue the other behind it.
    let (a, b) = (spans[0], spans[1]);
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "sessions were served one after the other: {spans:?}"
    );
}
