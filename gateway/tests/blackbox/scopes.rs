//! Scoped API keys, checked over every tenant route of the OpenAPI document: a key
//! holding every scope but the route's is refused (403 `insufficient_scope` naming
//! it), a key holding only that scope gets through, and the audit log shows each of
//! those calls. Keys cannot make keys beyond their own scopes. On SQLite, and on
//! Postgres when `TEST_DATABASE_URL` is set.

use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const SCOPES: [&str; 12] = [
    "sessions:read",
    "sessions:write",
    "messages:send",
    "messages:read",
    "events:read",
    "webhooks:manage",
    "kb:read",
    "kb:write",
    "drafts:approve",
    "contacts:manage",
    "audit:read",
    "keys:manage",
];

async fn make_key(gw: &Gateway, key: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/keys",
            Some(json!({ "name": name, "scopes": scopes })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut listed: Vec<&str> = r.json["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let mut asked = scopes.to_vec();
    listed.sort();
    asked.sort();
    assert_eq!(listed, asked, "{}", r.text);
    (
        r.json["id"].as_str().unwrap().to_owned(),
        r.json["key"].as_str().unwrap().to_owned(),
    )
}

/// A concrete path for a template: ids that name nothing of this tenant (the
/// handler answers 404 or refuses the input; what matters is that it ran).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{address}" => "nobody%40example.org",
            "{index}" => "0",
            s if s.starts_with('{') => "x_00000000000000000000000000",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

struct Call {
    request_id: String,
    actor: String,
    action: String,
    status: u16,
}

async fn call(
    gw: &Gateway,
    key: &str,
    method: &Method,
    path: &str,
    request_id: &str,
) -> (StatusCode, Value, http::HeaderMap) {
    let r = gw
        .request(
            method.clone(),
            path,
            &[("x-api-key", key), ("x-request-id", request_id)],
            None,
        )
        .await;
    (r.status, r.json, r.headers)
}

#[tokio::test]
async fn every_route_refuses_a_key_without_its_scope_and_serves_one_with_it_and_the_audit_log_shows_each_call()
 {
    let gw = Gateway::start_with(Options::default()).await;
    let (tenant, root) = gw.create_tenant("scoped").await;

    // The first key was made without a list: it holds every scope.
    let keys = gw.tenant(&root, Method::GET, "/v1/keys", None).await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.text);
    let first = &keys.json["data"][0];
    assert_eq!(
        first["scopes"].as_array().unwrap().len(),
        SCOPES.len(),
        "{first}"
    );

    // For each scope: a key with only it, and one with all the others.
    let mut only: HashMap<&str, (String, String)> = HashMap::new();
    let mut without: HashMap<&str, (String, String)> = HashMap::new();
    for scope in SCOPES {
        only.insert(
            scope,
            make_key(&gw, &root, &format!("only {scope}"), &[scope]).await,
        );
        let rest: Vec<&str> = SCOPES.iter().copied().filter(|s| *s != scope).collect();
        without.insert(
            scope,
            make_key(&gw, &root, &format!("all but {scope}"), &rest).await,
        );
    }

    let doc = gw.request(Method::GET, "/v1/openapi.json", &[], None).await;
    let paths = doc.json["paths"].as_object().unwrap();
    let mut calls: Vec<Call> = Vec::new();
    let mut covered: BTreeMap<&str, usize> = BTreeMap::new();
    for (template, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let security = op["security"].to_string();
            if !security.contains("apiKey") {
                continue; // public and admin routes
            }
            let Some(scope) = op["x-required-scope"].as_str() else {
                assert_eq!(
                    template, "/v1/me",
                    "a tenant route without a scope: {method} {template}"
                );
                continue;
            };
            assert!(SCOPES.contains(&scope), "{method} {template}: {scope}");
            assert!(
                security.contains(&format!("\"{scope}\"")),
                "{method} {template}: the scope is in `security`: {security}"
            );
            *covered.entry(scope).or_default() += 1;
            let method: Method = method.to_ascii_uppercase().parse().unwrap();
            let path = concrete(template);
            let action = format!("{method} {template}");

            let (key_id, key) = &without[scope];
            let rid = format!("denied-{}", calls.len());
            let (status, body, headers) = call(&gw, key, &method, &path, &rid).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{action} without {scope}: {body}"
            );
            assert_eq!(
                body["error"]["code"], "insufficient_scope",
                "{action}: {body}"
            );
            assert_eq!(body["error"]["required_scope"], scope, "{action}: {body}");
            assert!(body["error"]["message"].as_str().unwrap().contains(scope));
            assert_eq!(
                headers["www-authenticate"],
                format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"").as_str()
            );
            calls.push(Call {
                request_id: rid,
                actor: key_id.clone(),
                action: action.clone(),
                status: 403,
            });

            let (key_id, key) = &only[scope];
            let rid = format!("allowed-{}", calls.len());
            let (status, body, _) = call(&gw, key, &method, &path, &rid).await;
            assert_ne!(
                body["error"]["code"], "insufficient_scope",
                "{action} with {scope}: {body}"
            );
            assert!(
                status != StatusCode::FORBIDDEN
                    && status != StatusCode::UNAUTHORIZED
                    && !status.is_server_error(),
                "{action} with {scope}: {status} {body}"
            );
            calls.push(Call {
                request_id: rid,
                actor: key_id.clone(),
                action,
                status: status.as_u16(),
            });
        }
    }
    // Every scope guards something, and the table is the whole API (60-odd routes).
    assert_eq!(covered.len(), SCOPES.len(), "{covered:?}");
    assert!(calls.len() >= 2 * 60, "{} calls", calls.len());

    // Each of those calls is in the tenant's audit log: who, what, how it ended.
    let deadline = Instant::now() + Duration::from_secs(20);
    let by_request = loop {
        let mut seen: HashMap<String, Value> = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let p = match &after {
                Some(c) => format!("/v1/audit?limit=200&after={c}"),
                None => "/v1/audit?limit=200".to_owned(),
            };
            let r = gw
                .tenant(&only["audit:read"].1, Method::GET, &p, None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            for e in r.json["data"].as_array().unwrap() {
                assert_eq!(e["tenant_id"], tenant.as_str());
                if let Some(rid) = e["request_id"].as_str()
                    && e["action"].as_str().is_some_and(|a| a.contains(' '))
                {
                    seen.insert(rid.to_owned(), e.clone());
                }
            }
            match r.json["next_cursor"].as_str() {
                Some(c) => after = Some(c.to_owned()),
                None => break,
            }
        }
        if calls.iter().all(|c| seen.contains_key(&c.request_id)) || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for c in &calls {
        let e = by_request
            .get(&c.request_id)
            .unwrap_or_else(|| panic!("{} ({}) is not in the audit log", c.action, c.request_id));
        assert_eq!(e["actor"], c.actor.as_str(), "{e}");
        assert_eq!(e["action"], c.action.as_str(), "{e}");
        let details: Value = match &e["details"] {
            Value::String(s) => serde_json::from_str(s).unwrap(),
            other => other.clone(),
        };
        assert_eq!(details["status"], c.status, "{e}");
        if c.status == 403 {
            assert_eq!(details["error"], "insufficient_scope", "{e}");
        }
    }
    // A contact's address is recorded only as its hash.
    let contact = by_request
        .values()
        .find(|e| e["action"] == "GET /v1/contacts/{address}/export")
        .unwrap();
    assert!(
        contact["target"].as_str().unwrap().starts_with("sha256:"),
        "{contact}"
    );
    assert!(!contact.to_string().contains("nobody"), "{contact}");
}

#[tokio::test]
async fn a_key_makes_keys_only_within_its_own_scopes() {
    let gw = Gateway::start_with(Options::default()).await;
    let (_, root) = gw.create_tenant("makers").await;
    let (_, maker) = make_key(&gw, &root, "maker", &["keys:manage", "messages:send"]).await;

    // Beyond its own: refused, naming what it lacks, and no key is made.
    let before = gw.tenant(&root, Method::GET, "/v1/keys", None).await.json["data"]
        .as_array()
        .unwrap()
        .len();
    let r = gw
        .tenant(
            &maker,
            Method::POST,
            "/v1/keys",
            Some(json!({ "scopes": ["messages:send", "sessions:write"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "insufficient_scope");
    assert_eq!(r.json["error"]["required_scope"], "sessions:write");
    // A name that is no scope: 422, naming it.
    let r = gw
        .tenant(
            &maker,
            Method::POST,
            "/v1/keys",
            Some(json!({ "scopes": ["messages:delete"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "unknown_scope");
    assert!(r.text.contains("messages:delete"), "{}", r.text);
    let after = gw.tenant(&root, Method::GET, "/v1/keys", None).await.json["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing made");

    // Within: a narrower key; without a list, the maker's own scopes.
    make_key(&gw, &maker, "narrow", &["messages:send"]).await;
    let r = gw
        .tenant(&maker, Method::POST, "/v1/keys", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["scopes"], json!(["messages:send", "keys:manage"]));

    // The admin grants any scopes to a tenant's key; an empty list grants none but `/v1/me`.
    let tenant = gw.tenant(&root, Method::GET, "/v1/me", None).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = gw
        .admin(
            Method::POST,
            &format!("/v1/tenants/{tenant}/keys"),
            Some(json!({ "scopes": [] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["scopes"], json!([]));
    let bare = r.json["key"].as_str().unwrap().to_owned();
    let me = gw.tenant(&bare, Method::GET, "/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.json["key"]["id"], r.json["id"], "{}", me.text);
    assert_eq!(me.json["key"]["scopes"], json!([]), "{}", me.text);
    let r = gw.tenant(&bare, Method::GET, "/v1/sessions", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["error"]["required_scope"], "sessions:read");
}

#[tokio::test]
async fn a_graceful_stop_writes_every_call_it_answered() {
    let mut gw = Gateway::start_with(Options {
        env: vec![
            (
                "SWITCHBOARD_LIMITS_API_REQUESTS_PER_SECOND".into(),
                "100000".into(),
            ),
            ("SWITCHBOARD_LIMITS_API_BURST".into(), "100000".into()),
        ],
        ..Options::default()
    })
    .await;
    let (_, key) = gw.create_tenant("stopping").await;
    // Calls from 16 connections at once, then SIGTERM straight after the last answer:
    // whatever the writer still held is written before the process exits.
    let gw_ref = &gw;
    let answered: usize = futures::future::join_all((0..16).map(|c| {
        let key = key.clone();
        async move {
            let mut n = 0;
            for i in 0..40 {
                let rid = format!("stop-{c}-{i}");
                let r = gw_ref
                    .request(
                        Method::GET,
                        "/v1/me",
                        &[("x-api-key", &key), ("x-request-id", &rid)],
                        None,
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                n += 1;
            }
            n
        }
    }))
    .await
    .into_iter()
    .sum();
    let status = gw.stop();
    assert!(status.success(), "{status}");
    assert_eq!(
        gw.db
            .count("audit_log WHERE request_id LIKE 'stop-%'")
            .await,
        answered as i64
    );
}
