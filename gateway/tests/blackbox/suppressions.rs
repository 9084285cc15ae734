//! The suppression list: entries in their normal form, cursor paging, all-or-nothing
//! imports, bad input refused with nothing changed; a suppressed recipient is never
//! sent to (the send ends `failed` with `recipient_suppressed`), on the sim and on
//! the WhatsApp stand-in. On SQLite, and on Postgres when `TEST_DATABASE_URL` is set.

use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

async fn entries(gw: &Gateway, key: &str) -> Vec<Value> {
    let r = gw
        .tenant(key, Method::GET, "/v1/suppressions?limit=200", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["data"].as_array().unwrap().clone()
}

async fn import(gw: &Gateway, key: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let r = gw
        .request(
            Method::POST,
            "/v1/suppressions/import",
            &[("x-api-key", key), ("content-type", content_type)],
            Some(body.as_bytes().to_vec()),
        )
        .await;
    (r.status, r.json)
}

#[tokio::test]
async fn the_list_keeps_normal_forms_pages_and_refuses_bad_input() {
    let gw = Gateway::start_with(Options::default()).await;
    let (_, key) = gw.create_tenant("consent").await;
    let (_, other) = gw.create_tenant("someone else").await;
    let add = |body: Value| {
        let (gw, key) = (&gw, key.clone());
        async move {
            gw.tenant(&key, Method::POST, "/v1/suppressions", Some(body))
                .await
        }
    };
    let r = add(json!({ "channel": "whatsapp", "address": "+49 151 1234-5678", "reason": "asked by phone" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["address"], "+4915112345678");
    assert_eq!(r.json["source"], "api");
    let first = r.json["id"].as_str().unwrap().to_owned();
    // The same person written another way is the same entry.
    let r = add(json!({ "channel": "whatsapp", "address": "4915112345678@c.us" })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["id"], first.as_str());
    let r = add(json!({ "channel": "email", "address": "Ada Lovelace <Ada@Example.COM>" })).await;
    assert_eq!(r.json["address"], "ada@example.com", "{}", r.text);
    let r = add(json!({ "channel": "*", "address": "+1 202 555 0100" })).await;
    assert_eq!(r.json["address"], "+12025550100", "{}", r.text);

    // Bad input: a clear 4xx with a stable code, and nothing added.
    for (body, status, code) in [
        (
            json!({ "channel": "fax", "address": "1" }),
            422,
            "invalid_field",
        ),
        (
            json!({ "channel": "whatsapp", "address": "not a number" }),
            422,
            "invalid_address",
        ),
        (
            json!({ "channel": "email", "address": "nobody" }),
            422,
            "invalid_address",
        ),
        (
            json!({ "channel": "sim", "address": "   " }),
            422,
            "invalid_address",
        ),
        (json!({ "channel": "sim" }), 422, "invalid_field"),
        (
            json!({ "channel": "sim", "address": "x", "colour": "red" }),
            422,
            "unknown_field",
        ),
    ] {
        let r = add(body.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.text);
        assert_eq!(r.json["error"]["code"], code, "{body}: {}", r.text);
    }
    assert_eq!(entries(&gw, &key).await.len(), 3);

    // Cursor paging, oldest first.
    let page = gw
        .tenant(&key, Method::GET, "/v1/suppressions?limit=2", None)
        .await;
    assert_eq!(page.json["data"].as_array().unwrap().len(), 2);
    assert_eq!(page.json["data"][0]["id"], first.as_str());
    let next = page.json["next_cursor"].as_str().unwrap();
    let rest = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/suppressions?limit=2&after={next}"),
            None,
        )
        .await;
    assert_eq!(rest.json["data"].as_array().unwrap().len(), 1);
    assert!(rest.json["next_cursor"].is_null());
    let r = gw
        .tenant(&key, Method::GET, "/v1/suppressions?after=nonsense", None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // Imports: CSV (a header row, quoted fields) and JSON; all or nothing.
    let (status, body) = import(
        &gw,
        &key,
        "text/csv",
        "channel,address,reason\nemail,bob@example.org,\"bounced, twice\"\nwhatsapp,+4915112345678,again\nsim,\"sim-person\",\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["added"].as_u64(), body["existing"].as_u64()),
        (Some(2), Some(1))
    );
    let before = entries(&gw, &key).await.len();
    let (status, body) = import(
        &gw,
        &key,
        "application/json",
        &json!([
            { "channel": "email", "address": "carol@example.org" },
            { "channel": "whatsapp", "address": "call me maybe" },
            { "channel": "teletype", "address": "x" }
        ])
        .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_import");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("line 3"),
        "{message}"
    );
    assert_eq!(entries(&gw, &key).await.len(), before, "nothing was added");
    let (status, body) = import(&gw, &key, "text/plain", "sim,x").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = import(&gw, &key, "text/csv", "sim,a,b,c\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "malformed_csv");

    // Another tenant sees none of it and cannot delete it.
    assert!(entries(&gw, &other).await.is_empty());
    let r = gw
        .tenant(
            &other,
            Method::DELETE,
            &format!("/v1/suppressions/{first}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = gw
        .tenant(
            &key,
            Method::DELETE,
            &format!("/v1/suppressions/{first}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = gw
        .tenant(
            &key,
            Method::DELETE,
            &format!("/v1/suppressions/{first}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

/// Sends `text` to `to` through `session`; the message id.
async fn send(gw: &Gateway, key: &str, session: &str, to: &str, text: &str) -> String {
    let r = gw
        .tenant(
            key,
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({ "to": to, "text": text })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

/// Waits until message `id` is `failed` or `sent`; its view.
pub(super) async fn settled(gw: &Gateway, key: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = gw
            .tenant(key, Method::GET, &format!("/v1/messages/{id}"), None)
            .await;
        if ["failed", "sent", "delivered", "read"]
            .contains(&r.json["status"].as_str().unwrap_or(""))
        {
            return r.json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never settled: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_suppressed_recipient_is_never_sent_to() {
    let standin = super::whatsapp::standin(Duration::from_secs(30)).await;
    let gw = Gateway::start_with(super::whatsapp::options(&standin, 5)).await;
    let (_, key) = gw.create_tenant("careful").await;

    // The sim: an entry for the sim channel, and one for every channel.
    let sim = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "sim" })),
        )
        .await;
    let sim = sim.json["id"].as_str().unwrap().to_owned();
    gw.wait_status(&key, &sim, "WORKING", Duration::from_secs(20))
        .await;
    for (channel, address) in [("sim", "blocked-one"), ("*", "blocked-everywhere")] {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                "/v1/suppressions",
                Some(json!({ "channel": channel, "address": address, "reason": "opted out" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let blocked = send(&gw, &key, &sim, "blocked-one", "never").await;
    let everywhere = send(&gw, &key, &sim, "blocked-everywhere", "never either").await;
    let fine = send(&gw, &key, &sim, "welcome", "hello").await;
    for id in [&blocked, &everywhere] {
        let m = settled(&gw, &key, id).await;
        assert_eq!(m["status"], "failed", "{m}");
        assert!(
            m["error"]
                .as_str()
                .unwrap()
                .starts_with("recipient_suppressed"),
            "{m}"
        );
    }
    assert_ne!(settled(&gw, &key, &fine).await["status"], "failed");
    let failed = gw.events_of(&key, "message.failed").await;
    for id in [&blocked, &everywhere] {
        let e = failed
            .iter()
            .find(|e| e["data"]["message_id"] == id.as_str())
            .expect("a message.failed event");
        assert!(
            e["data"]["error"]
                .as_str()
                .unwrap()
                .starts_with("recipient_suppressed")
        );
    }
    let sent = gw.events_of(&key, "message.sent").await;
    assert!(
        sent.iter()
            .all(|e| e["data"]["message_id"] != blocked.as_str()
                && e["data"]["message_id"] != everywhere.as_str()),
        "a suppressed send was sent: {sent:?}"
    );

    // WhatsApp: the number suppressed as +E.164, sent to as a WhatsApp id.
    let wa = super::whatsapp::paired_session(&gw, &key, &standin).await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/suppressions",
            Some(json!({ "channel": "whatsapp", "address": "+1 555 010 0001" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let never = send(&gw, &key, &wa, "15550100001@c.us", "you asked us to stop").await;
    let ok = send(&gw, &key, &wa, "15550100002", "for someone else").await;
    assert_eq!(settled(&gw, &key, &never).await["status"], "failed");
    assert_ne!(settled(&gw, &key, &ok).await["status"], "failed");
    let reached = standin.sent(super::whatsapp::PHONE);
    assert!(
        reached.iter().any(|s| s.text == "for someone else"),
        "the other send reached the stand-in: {reached:?}"
    );
    assert!(
        reached.iter().all(|s| s.text != "you asked us to stop"),
        "the suppressed send reached the stand-in"
    );
}

/// Every entry of an audit listing at `path` (`?limit=…` included), page by page.
async fn audit_pages(gw: &Gateway, key: Option<&str>, path: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let p = match &next {
            Some(c) => format!("{path}&after={c}"),
            None => path.to_owned(),
        };
        let r = match key {
            Some(k) => gw.tenant(k, Method::GET, &p, None).await,
            None => gw.admin(Method::GET, &p, None).await,
        };
        assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.text);
        out.extend(r.json["data"].as_array().unwrap().iter().cloned());
        match r.json["next_cursor"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn the_audit_log_reads_back_who_did_what_paged_and_per_tenant() {
    let gw = Gateway::start_with(Options::default()).await;
    let (a, key_a) = gw.create_tenant("audited").await;
    let (b, key_b) = gw.create_tenant("other").await;
    let keys = gw.tenant(&key_a, Method::GET, "/v1/keys", None).await;
    let key_id = keys.json["data"][0]["id"].as_str().unwrap().to_owned();

    let r = gw
        .tenant(
            &key_a,
            Method::POST,
            "/v1/suppressions",
            Some(json!({ "channel": "email", "address": "x@y.org" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let created_request = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let entry = r.json["id"].as_str().unwrap().to_owned();
    let r = gw
        .tenant(
            &key_a,
            Method::DELETE,
            &format!("/v1/suppressions/{entry}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = gw
        .tenant(
            &key_a,
            Method::PUT,
            "/v1/consent",
            Some(json!({ "opt_out_keywords": ["STOP"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = gw
        .tenant(
            &key_b,
            Method::POST,
            "/v1/suppressions",
            Some(json!({ "channel": "sim", "address": "+15550100" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // Two at a time, oldest first, each entry once.
    let mine = audit_pages(&gw, Some(&key_a), "/v1/audit?limit=2").await;
    let actions: Vec<&str> = mine.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for want in ["suppression.create", "suppression.delete", "consent.update"] {
        assert!(actions.contains(&want), "{want}: {actions:?}");
    }
    let mut ids: Vec<i64> = mine
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted, "oldest first");
    ids.dedup();
    assert_eq!(ids.len(), mine.len(), "no entry twice");
    assert!(
        mine.iter().all(|e| e["tenant_id"] == a.as_str()),
        "only mine: {mine:?}"
    );
    let created = mine
        .iter()
        .find(|e| e["action"] == "suppression.create")
        .unwrap();
    assert_eq!(created["actor"], key_id.as_str(), "{created}");
    assert_eq!(created["target"], entry.as_str());
    assert_eq!(created["request_id"], created_request.as_str());
    assert!(created["at"].as_str().unwrap().ends_with('Z'));

    // Operators read everyone's, or one tenant's; a tenant key cannot.
    let all = audit_pages(&gw, None, "/v1/admin/audit?limit=50").await;
    assert!(all.iter().any(|e| e["tenant_id"] == b.as_str()));
    assert!(
        all.iter().any(|e| e["action"] == "tenant.create"),
        "{all:?}"
    );
    let only_a = audit_pages(
        &gw,
        None,
        &format!("/v1/admin/audit?limit=50&tenant_id={a}"),
    )
    .await;
    // The same entries (and the calls made since, reading the log included).
    assert!(only_a.iter().all(|e| e["tenant_id"] == a.as_str()));
    for e in &mine {
        assert!(only_a.iter().any(|o| o["id"] == e["id"]), "{e}");
    }
    let r = gw
        .tenant(&key_a, Method::GET, "/v1/admin/audit", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    for bad in [
        "/v1/audit?after=yesterday",
        "/v1/audit?limit=0",
        "/v1/audit?colour=red",
    ] {
        let r = gw.tenant(&key_a, Method::GET, bad, None).await;
        assert!(r.status.is_client_error(), "{bad}: {}", r.text);
    }
}
