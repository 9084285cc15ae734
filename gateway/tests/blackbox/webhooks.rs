//! Webhooks end to end: a real receiver on loopback verifies every delivery with the
//! Standard Webhooks algorithm; retries, dead letters, replay, 410, rotation, SSRF,
//! and a SIGKILL in the middle of delivery.

use super::receiver::{Behaviour, Receiver};
use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SECRET2: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn options(schedule: &str) -> Options {
    Options {
        env: vec![
            ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS".into(), "true".into()),
            (
                "SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE".into(),
                schedule.into(),
            ),
            ("SWITCHBOARD_WEBHOOKS_TIMEOUT".into(), "3s".into()),
        ],
        ..Default::default()
    }
}

async fn endpoint(gw: &Gateway, key: &str, url: &str, extra: serde_json::Value) -> String {
    let mut body = json!({ "url": url, "secret": SECRET });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = gw
        .tenant(key, Method::POST, "/v1/webhooks", Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["secret"], SECRET);
    r.json["id"].as_str().unwrap().to_owned()
}

/// Queues `n` test events for an endpoint; returns their ids.
async fn test_events(gw: &Gateway, key: &str, endpoint: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = gw
            .tenant(
                key,
                Method::POST,
                &format!("/v1/webhooks/{endpoint}/test"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        ids.push(r.json["event_id"].as_str().unwrap().to_owned());
    }
    ids
}

#[tokio::test]
async fn every_event_arrives_signed_with_the_standard_webhooks_scheme() {
    let gw = Gateway::start_with(options("0,100ms")).await;
    let (tenant_id, key) = gw.create_tenant("hooks").await;
    let rx = Receiver::start(Behaviour::default()).await;
    let ep = endpoint(&gw, &key, &rx.url, json!({ "description": "main" })).await;

    let ids = test_events(&gw, &key, &ep, 20).await;
    rx.wait_for(Duration::from_secs(30), "20 deliveries", |d| d.len() >= 20)
        .await;
    let deliveries = rx.deliveries();
    let got: BTreeSet<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    assert_eq!(got, ids.iter().cloned().collect::<BTreeSet<_>>());
    for d in &deliveries {
        assert!(
            d.verifies_with(SECRET),
            "signature of {} does not verify",
            d.id
        );
        assert!(!d.verifies_with(SECRET2));
        let body = d.json();
        assert_eq!(body["id"], d.id.as_str());
        assert_eq!(body["type"], "webhook.test");
        assert_eq!(body["tenant_id"], tenant_id.as_str());
        assert_eq!(body["data"]["endpoint_id"], ep.as_str());
        for field in ["session_id", "channel", "created_at"] {
            assert!(body.get(field).is_some(), "envelope lacks {field}");
        }
    }

    // The event API shows the same envelope and its delivery.
    let ev = gw
        .tenant(&key, Method::GET, &format!("/v1/events/{}", ids[0]), None)
        .await;
    assert_eq!(ev.status, StatusCode::OK, "{}", ev.text);
    assert_eq!(ev.json["event"]["id"], ids[0].as_str());
    rx.wait_for(Duration::from_secs(5), "recorded", |_| true)
        .await;
    let listed = gw
        .tenant(
            &key,
            Method::GET,
            "/v1/events?type=webhook.test&limit=5",
            None,
        )
        .await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 5);
    assert!(listed.json["next_cursor"].is_string());

    // Bodies are encrypted at rest: the database does not hold the envelope in clear.
    assert_eq!(gw.db.count("events").await, 20);
}

#[tokio::test]
async fn failures_are_retried_on_schedule_until_delivered_with_a_stable_id() {
    let gw = Gateway::start_with(options("0,300ms,300ms,300ms,300ms,300ms")).await;
    let (_, key) = gw.create_tenant("retry").await;
    let rx = Receiver::start(Behaviour {
        fail_first: 3,
        ..Default::default()
    })
    .await;
    let ep = endpoint(&gw, &key, &rx.url, json!({})).await;
    let id = test_events(&gw, &key, &ep, 1).await.remove(0);
    rx.wait_for(Duration::from_secs(30), "success after 3 failures", |d| {
        d.iter().any(|x| x.answered == 200)
    })
    .await;
    let d = rx.deliveries();
    assert_eq!(d.len(), 4);
    assert!(
        d.iter().all(|x| x.id == id),
        "webhook-id changed across retries"
    );
    assert!(d.iter().all(|x| x.verifies_with(SECRET)));
    assert_eq!(
        d.iter().map(|x| x.answered).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    for pair in d.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(200),
            "retried after {gap:?}, schedule says ~300ms"
        );
    }

    // Every attempt is recorded (poll: results are committed in batches).
    let path = format!("/v1/events/{id}/attempts");
    let mut attempts = serde_json::Value::Null;
    for _ in 0..100 {
        attempts = gw.tenant(&key, Method::GET, &path, None).await.json;
        if attempts["data"].as_array().is_some_and(|a| a.len() == 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let codes: Vec<i64> = attempts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    let ev = gw
        .tenant(&key, Method::GET, &format!("/v1/events/{id}"), None)
        .await;
    assert_eq!(ev.json["deliveries"][0]["status"], "delivered");
    assert_eq!(ev.json["deliveries"][0]["attempts"], 4);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let gw = Gateway::start_with(options("0,50ms,50ms")).await;
    let (_, key) = gw.create_tenant("slow-down").await;
    let rx = Receiver::start(Behaviour {
        fail_first: 1,
        fail_status: 429,
        retry_after: Some(2),
        ..Default::default()
    })
    .await;
    let ep = endpoint(&gw, &key, &rx.url, json!({})).await;
    test_events(&gw, &key, &ep, 1).await;
    rx.wait_for(Duration::from_secs(30), "the retry", |d| d.len() >= 2)
        .await;
    let d = rx.deliveries();
    let gap = d[1].at - d[0].at;
    assert!(
        gap >= Duration::from_millis(1500),
        "Retry-After: 2 ignored (retried after {gap:?})"
    );
}

#[tokio::test]
async fn exhausted_deliveries_stay_as_dead_letters_and_can_be_replayed() {
    let gw = Gateway::start_with(options("0,100ms,100ms")).await;
    let (_, key) = gw.create_tenant("dead").await;
    let rx = Receiver::start(Behaviour {
        fail_first: usize::MAX,
        fail_status: 503,
        ..Default::default()
    })
    .await;
    let ep = endpoint(&gw, &key, &rx.url, json!({})).await;
    let id = test_events(&gw, &key, &ep, 1).await.remove(0);
    rx.wait_for(Duration::from_secs(30), "3 attempts", |d| d.len() >= 3)
        .await;
    let path = format!("/v1/events/{id}");
    let mut status = String::new();
    for _ in 0..100 {
        let ev = gw.tenant(&key, Method::GET, &path, None).await;
        status = ev.json["deliveries"][0]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status == "dead" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "dead");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.deliveries().len(), 3, "attempted past the schedule");

    // The receiver recovers; replaying the event delivers it.
    rx.set(Behaviour::default());
    let r = gw
        .tenant(&key, Method::POST, &format!("/v1/events/{id}/replay"), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    rx.wait_for(Duration::from_secs(30), "the replay", |d| {
        d.iter().any(|x| x.answered == 200)
    })
    .await;
    assert!(rx.deliveries().iter().all(|d| d.id == id));

    // Replay by time range re-sends everything in the window to that endpoint.
    let since = "2000-01-01T00:00:00Z";
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/webhooks/{ep}/replay"),
            Some(json!({ "since": since })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["queued"], 1);
    rx.wait_for(Duration::from_secs(30), "the range replay", |d| {
        d.iter().filter(|x| x.answered == 200).count() >= 2
    })
    .await;
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_tells_the_others() {
    let gw = Gateway::start_with(options("0,100ms,100ms")).await;
    let (_, key) = gw.create_tenant("gone").await;
    let gone = Receiver::start(Behaviour {
        fail_first: usize::MAX,
        fail_status: 410,
        ..Default::default()
    })
    .await;
    let ops = Receiver::start(Behaviour::default()).await;
    let gone_ep = endpoint(&gw, &key, &gone.url, json!({})).await;
    endpoint(&gw, &key, &ops.url, json!({ "events": ["webhook.*"] })).await;

    test_events(&gw, &key, &gone_ep, 1).await;
    ops.wait_for(Duration::from_secs(30), "webhook.endpoint_disabled", |d| {
        d.iter()
            .any(|x| x.json()["type"] == "webhook.endpoint_disabled")
    })
    .await;
    let ev = ops
        .deliveries()
        .into_iter()
        .find(|x| x.json()["type"] == "webhook.endpoint_disabled")
        .unwrap();
    assert_eq!(ev.json()["data"]["endpoint_id"], gone_ep.as_str());
    let r = gw
        .tenant(&key, Method::GET, &format!("/v1/webhooks/{gone_ep}"), None)
        .await;
    assert_eq!(r.json["status"], "disabled");
    assert!(r.json["disabled_reason"].as_str().unwrap().contains("410"));

    // No further attempts, even for new events.
    test_events(&gw, &key, &gone_ep, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(gone.deliveries().len(), 1);
}

#[tokio::test]
async fn during_rotation_either_secret_verifies() {
    let gw = Gateway::start_with(options("0,100ms")).await;
    let (_, key) = gw.create_tenant("rotate").await;
    let rx = Receiver::start(Behaviour::default()).await;
    let ep = endpoint(&gw, &key, &rx.url, json!({})).await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/webhooks/{ep}/rotate-secret"),
            Some(json!({ "secret": SECRET2, "grace_secs": 2 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["secret"], SECRET2);

    test_events(&gw, &key, &ep, 1).await;
    rx.wait_for(Duration::from_secs(30), "delivery", |d| !d.is_empty())
        .await;
    let d = rx.deliveries().remove(0);
    assert_eq!(d.signature.split(' ').count(), 2);
    assert!(
        d.verifies_with(SECRET),
        "old secret must verify during the grace period"
    );
    assert!(d.verifies_with(SECRET2), "new secret must verify");

    // After the grace period only the new secret signs.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    test_events(&gw, &key, &ep, 1).await;
    rx.wait_for(Duration::from_secs(30), "second delivery", |d| d.len() >= 2)
        .await;
    let d = rx.deliveries().remove(1);
    assert!(d.verifies_with(SECRET2));
    assert!(!d.verifies_with(SECRET));
}

#[tokio::test]
async fn webhook_urls_are_checked_against_ssrf_and_tenants_are_isolated() {
    let gw = Gateway::start().await;
    let (_, key) = gw.create_tenant("a").await;
    let (_, other) = gw.create_tenant("b").await;
    let before = gw.db.count("webhook_endpoints").await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.0.0.1/",
        "http://[::1]/",
        "ftp://example.com/",
        "http://169.254.169.254/latest",
    ] {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                "/v1/webhooks",
                Some(json!({ "url": url })),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            r.text
        );
        assert_eq!(r.code(), "url_not_allowed", "{url}");
    }
    for (body, code) in [
        (
            json!({ "url": "https://example.com", "secret": "whsec_short" }),
            "validation_failed",
        ),
        (
            json!({ "url": "https://example.com", "events": ["Bad Type"] }),
            "validation_failed",
        ),
        (
            json!({ "url": "https://example.com", "max_in_flight": 0 }),
            "validation_failed",
        ),
        (
            json!({ "url": "https://example.com", "colour": 1 }),
            "unknown_field",
        ),
    ] {
        let r = gw
            .tenant(&key, Method::POST, "/v1/webhooks", Some(body))
            .await;
        assert_eq!(r.code(), code, "{}", r.text);
    }
    assert_eq!(gw.db.count("webhook_endpoints").await, before);

    // Another tenant's endpoint and events are 404.
    let gw2 = Gateway::start_with(options("0")).await;
    let (_, a) = gw2.create_tenant("a").await;
    let (_, b) = gw2.create_tenant("b").await;
    let rx = Receiver::start(Behaviour::default()).await;
    let ep = endpoint(&gw2, &a, &rx.url, json!({})).await;
    let ev = test_events(&gw2, &a, &ep, 1).await.remove(0);
    for path in [
        format!("/v1/webhooks/{ep}"),
        format!("/v1/events/{ev}"),
        format!("/v1/events/{ev}/attempts"),
    ] {
        let r = gw2.tenant(&b, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = gw2
        .tenant(&b, Method::POST, &format!("/v1/webhooks/{ep}/test"), None)
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    // A test event for an endpoint the tenant does not have stores nothing.
    let none = switchboard_actors::ids::new_id("whk");
    let r = gw2
        .tenant(&a, Method::POST, &format!("/v1/webhooks/{none}/test"), None)
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    for k in [&a, &b] {
        let listed = gw2.tenant(k, Method::GET, "/v1/events", None).await;
        let n = if k == &a { 1 } else { 0 };
        assert_eq!(
            listed.json["data"].as_array().unwrap().len(),
            n,
            "{}",
            listed.text
        );
    }
    let r = gw2
        .tenant(&b, Method::DELETE, &format!("/v1/webhooks/{ep}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let _ = other;
}

#[tokio::test]
async fn sigkill_mid_delivery_loses_nothing() {
    let mut gw = Gateway::start_with(options("0,200ms,500ms,1s,1s,1s,1s,1s")).await;
    let (_, key) = gw.create_tenant("crash").await;
    let rx = Receiver::start(Behaviour {
        delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let ep = endpoint(&gw, &key, &rx.url, json!({ "max_in_flight": 4 })).await;
    // Every id here was acknowledged (202) before the kill.
    let ids: BTreeSet<String> = test_events(&gw, &key, &ep, 60).await.into_iter().collect();
    rx.wait_for(Duration::from_secs(30), "some deliveries", |d| d.len() >= 5)
        .await;
    gw.kill();
    let before_restart = rx.delivered_ids().len();
    assert!(
        before_restart < ids.len(),
        "everything was delivered before the kill; the test proves nothing"
    );

    let gw = gw.restart().await;
    rx.wait_for(Duration::from_secs(60), "every acknowledged event", |_| {
        rx.delivered_ids().is_superset(&ids)
    })
    .await;
    // Duplicates are allowed only as repeats of the same webhook-id with the same body.
    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
    for d in rx.deliveries() {
        assert!(ids.contains(&d.id), "unknown event {}", d.id);
        assert!(d.verifies_with(SECRET));
        let prev = bodies.entry(d.id.clone()).or_insert_with(|| d.body.clone());
        assert_eq!(prev, &d.body, "a redelivery changed the body");
    }
    drop(gw);
}

#[tokio::test]
async fn fifo_endpoints_deliver_in_order_one_at_a_time() {
    let gw = Gateway::start_with(options("0,200ms,200ms,200ms,200ms")).await;
    let (_, key) = gw.create_tenant("fifo").await;
    let rx = Receiver::start(Behaviour {
        fail_first: 2,
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let ep = endpoint(&gw, &key, &rx.url, json!({ "fifo": true })).await;
    let r = gw
        .tenant(&key, Method::GET, &format!("/v1/webhooks/{ep}"), None)
        .await;
    assert_eq!(
        (r.json["fifo"].as_bool(), r.json["max_in_flight"].as_i64()),
        (Some(true), Some(1))
    );
    let ids = test_events(&gw, &key, &ep, 6).await;
    rx.wait_for(Duration::from_secs(30), "all six", |_| {
        rx.delivered_ids().len() == 6
    })
    .await;
    let d = rx.deliveries();
    // The first event failed twice and everything else waited behind it.
    assert_eq!(d[0].id, ids[0]);
    assert_eq!(d[1].id, ids[0]);
    let order: Vec<&str> = d
        .iter()
        .filter(|x| x.answered == 200)
        .map(|x| x.id.as_str())
        .collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn master_key_rotation_reencrypts_everything_and_keeps_it_readable() {
    let mut gw = Gateway::start_with(options("0")).await;
    let (_, key) = gw.create_tenant("rotating").await;
    let rx = Receiver::start(Behaviour::default()).await;
    let ep = endpoint(&gw, &key, &rx.url, json!({})).await;
    let old_event = test_events(&gw, &key, &ep, 3).await.remove(0);
    rx.wait_for(Duration::from_secs(30), "3 deliveries", |d| d.len() >= 3)
        .await;
    let key_file = gw.data_dir.join("master.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    assert!(gw.stop().success());

    let out = gw.admin_command(&["admin", "rotate-master-key"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    // 4 events (3 tests + none else) and 1 endpoint secret were re-sealed.
    assert_eq!(report["resealed"], 4, "{report}");
    let retired = report["retired_key_id"].as_str().unwrap().to_owned();
    assert_ne!(report["current_key_id"], retired.as_str());
    assert_ne!(std::fs::read_to_string(&key_file).unwrap(), old_key);
    assert!(
        gw.data_dir
            .join("retired-keys")
            .join(format!("{retired}.key"))
            .exists()
    );
    // Rotating again moves everything once more, under the newest key.
    let again: serde_json::Value =
        serde_json::from_str(&gw.admin_command(&["admin", "rotate-master-key"])).unwrap();
    assert_eq!(again["resealed"], 4, "{again}");

    let gw = gw.restart().await;
    let ev = gw
        .tenant(&key, Method::GET, &format!("/v1/events/{old_event}"), None)
        .await;
    assert_eq!(ev.status, StatusCode::OK, "{}", ev.text);
    assert_eq!(ev.json["event"]["id"], old_event.as_str());
    test_events(&gw, &key, &ep, 1).await;
    rx.wait_for(Duration::from_secs(30), "delivery after rotation", |d| {
        d.len() >= 4
    })
    .await;
    assert!(
        rx.deliveries()[3].verifies_with(SECRET),
        "endpoint secret unreadable after rotation"
    );
}
