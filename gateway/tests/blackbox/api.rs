//! The HTTP API: tenants, keys, auth, isolation, errors, limits, operations routes.

use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn tenant_create_key_then_authenticated_calls() {
    let gw = Gateway::start().await;
    let (tenant_id, key) = gw.create_tenant("Acme Ltd").await;
    assert!(tenant_id.starts_with("ten_"));
    assert!(key.starts_with("sbk_"));

    let me = gw.tenant(&key, Method::GET, "/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.json["id"], tenant_id.as_str());
    assert_eq!(me.json["name"], "Acme Ltd");
    assert_eq!(me.json["limits"]["api_requests_per_second"], 50);
    assert_eq!(me.json["limits"]["api_burst"], 100);

    // Bearer works as well as X-API-Key.
    let bearer = format!("Bearer {key}");
    let me = gw
        .request(Method::GET, "/v1/me", &[("authorization", &bearer)], None)
        .await;
    assert_eq!(me.status, StatusCode::OK);

    // The admin sees the tenant, and a second key works too.
    let got = gw
        .admin(Method::GET, &format!("/v1/tenants/{tenant_id}"), None)
        .await;
    assert_eq!(got.json["name"], "Acme Ltd");
    let second = gw
        .admin(
            Method::POST,
            &format!("/v1/tenants/{tenant_id}/keys"),
            Some(json!({ "name": "ci" })),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let second_key = second.json["key"].as_str().unwrap().to_owned();
    let second_id = second.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        gw.tenant(&second_key, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::OK
    );

    // Keys are listed without their secret; keys are stored hashed.
    let keys = gw
        .admin(Method::GET, &format!("/v1/tenants/{tenant_id}/keys"), None)
        .await;
    assert_eq!(keys.json["data"].as_array().unwrap().len(), 2);
    assert!(!keys.text.contains(&key) && !keys.text.contains(&second_key));

    // Revoked key → 401; the other key still works.
    let revoked = gw
        .admin(
            Method::DELETE,
            &format!("/v1/tenants/{tenant_id}/keys/{second_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let denied = gw.tenant(&second_key, Method::GET, "/v1/me", None).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.code(), "invalid_credentials");
    assert_eq!(
        gw.tenant(&key, Method::GET, "/v1/me", None).await.status,
        StatusCode::OK
    );
    // Revoking again is a 404 (no active key by that id).
    let again = gw
        .admin(
            Method::DELETE,
            &format!("/v1/tenants/{tenant_id}/keys/{second_id}"),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // A tenant can manage its own keys.
    let own = gw.tenant(&key, Method::POST, "/v1/keys", None).await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.text);
    let own_keys = gw.tenant(&key, Method::GET, "/v1/keys", None).await;
    assert_eq!(own_keys.json["data"].as_array().unwrap().len(), 3);

    // Every change is in the audit log: tenant.create, 2 × api_key.create, api_key.revoke
    // (beside the record of each call, whose action is its method and route).
    assert_eq!(
        gw.db.count("audit_log WHERE action NOT LIKE '% %'").await,
        4
    );
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_resources() {
    let gw = Gateway::start().await;
    let (a_id, a_key) = gw.create_tenant("A").await;
    let (b_id, b_key) = gw.create_tenant("B").await;
    let b_keys = gw
        .admin(Method::GET, &format!("/v1/tenants/{b_id}/keys"), None)
        .await;
    let b_key_id = b_keys.json["data"][0]["id"].as_str().unwrap().to_owned();

    // A cannot revoke B's key: 404, as if it did not exist, and B's key still works.
    let r = gw
        .tenant(
            &a_key,
            Method::DELETE,
            &format!("/v1/keys/{b_key_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    assert_eq!(
        gw.tenant(&b_key, Method::GET, "/v1/me", None).await.json["id"],
        b_id.as_str()
    );

    // A's listing holds only A's keys.
    let listed = gw.tenant(&a_key, Method::GET, "/v1/keys", None).await;
    assert!(
        listed.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["tenant_id"] == a_id.as_str())
    );
    assert!(!listed.text.contains(&b_key_id));

    // Tenant keys do not open admin routes.
    let r = gw
        .tenant(&a_key, Method::GET, &format!("/v1/tenants/{b_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Unknown and malformed ids are 404.
    for id in ["ten_01JD0000000000000000000000", "not-an-id"] {
        let r = gw
            .admin(Method::GET, &format!("/v1/tenants/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}");
    }

    // Deleting B removes its keys.
    assert_eq!(
        gw.admin(Method::DELETE, &format!("/v1/tenants/{b_id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        gw.tenant(&b_key, Method::GET, "/v1/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gw.db.count("api_keys").await, 1);
}

#[tokio::test]
async fn bad_requests_get_documented_errors_and_write_nothing() {
    let gw = Gateway::start_with(Options {
        env: vec![("SWITCHBOARD_HTTP_MAX_BODY_BYTES".into(), "4096".into())],
        ..Default::default()
    })
    .await;
    let (tenant_id, key) = gw.create_tenant("existing").await;
    let before = gw.db.snapshot().await;
    let auth = format!("Bearer {}", gw.admin_token);
    let json_admin = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];

    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            b"{\"name\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "empty body",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "wrong type",
            br#"{"name": 42}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "missing field",
            br#"{}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "unknown field",
            br#"{"name":"x","plan":"gold"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
        ),
        (
            "blank name",
            br#"{"name":"   "}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "zero limit",
            br#"{"name":"x","limits":{"api_burst":0}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "oversize body",
            format!(r#"{{"name":"{}"}}"#, "x".repeat(5000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (what, body, status, code) in cases {
        let r = gw
            .request(Method::POST, "/v1/tenants", &json_admin, Some(body))
            .await;
        assert_eq!((r.status, r.code()), (status, code), "{what}: {}", r.text);
        assert!(
            r.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }

    let r = gw
        .request(
            Method::POST,
            "/v1/tenants",
            &[("authorization", &auth), ("content-type", "text/plain")],
            Some(b"name=x".to_vec()),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    let r = gw
        .request(
            Method::POST,
            "/v1/tenants",
            &[("content-type", "application/json")],
            Some(br#"{"name":"x"}"#.to_vec()),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = gw
        .request(
            Method::POST,
            "/v1/tenants",
            &[
                ("authorization", "Bearer wrong-token-value"),
                ("content-type", "application/json"),
            ],
            Some(br#"{"name":"x"}"#.to_vec()),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let r = gw.request(Method::GET, "/v1/me", &[], None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let r = gw
        .tenant("sbk_not-a-real-key", Method::GET, "/v1/me", None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );

    // A bad PATCH changes nothing.
    let path = format!("/v1/tenants/{tenant_id}");
    for body in [
        json!({ "limits": { "api_burst": -1 } }),
        json!({ "status": "paused" }),
        json!({ "name": "" }),
        json!({ "colour": "red" }),
    ] {
        let r = gw.admin(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
    }
    let t = gw.admin(Method::GET, &path, None).await;
    assert_eq!(t.json["name"], "existing");
    assert_eq!(t.json["limit_overrides"], json!({}));

    // Bad tenant-key requests change nothing either.
    let r = gw
        .tenant(&key, Method::POST, "/v1/keys", Some(json!({ "name": 7 })))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
    );

    // Oversize body without Content-Length (chunked) is cut off at the limit too.
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nhost: {addr}\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = "x".repeat(3000);
    for _ in 0..3 {
        if sock
            .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut raw = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_string(&mut raw)).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("payload_too_large"), "{raw}");

    assert_eq!(
        gw.db.snapshot().await,
        before,
        "a rejected request wrote to the database"
    );
}

#[tokio::test]
async fn errors_share_one_shape_and_carry_request_ids() {
    let gw = Gateway::start().await;
    let r = gw.request(Method::GET, "/v1/nowhere", &[], None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "route_not_found")
    );
    assert!(
        r.headers["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );

    let r = gw.request(Method::PUT, "/v1/tenants", &[], None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    assert_eq!(r.headers["allow"], "POST, GET");

    let r = gw
        .request(
            Method::GET,
            "/healthz",
            &[("x-request-id", "trace-123")],
            None,
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "trace-123");

    let auth = format!("Bearer {}", gw.admin_token);
    let r = gw
        .request(
            Method::GET,
            "/v1/tenants?limit=0",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    let r = gw
        .request(
            Method::GET,
            "/v1/tenants?offset=2",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
}

#[tokio::test]
async fn tenant_listing_pages_with_a_cursor() {
    let gw = Gateway::start().await;
    for i in 0..5 {
        gw.create_tenant(&format!("t{i}")).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/tenants?limit=2".to_owned();
    loop {
        let page = gw.admin(Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for t in page.json["data"].as_array().unwrap() {
            seen.push(t["name"].as_str().unwrap().to_owned());
        }
        match page.json["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/tenants?limit=2&after={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);
}

#[tokio::test]
async fn per_key_rate_limit_answers_429_with_retry_after() {
    let gw = Gateway::start().await;
    let (tenant_id, key) = gw.create_tenant("limited").await;
    let r = gw
        .admin(
            Method::PATCH,
            &format!("/v1/tenants/{tenant_id}"),
            Some(json!({ "limits": { "api_requests_per_second": 1, "api_burst": 2 } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["limits"]["api_burst"], 2);

    let mut limited = None;
    for _ in 0..10 {
        let r = gw.tenant(&key, Method::GET, "/v1/me", None).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("never rate limited");
    assert_eq!(r.code(), "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");

    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        gw.tenant(&key, Method::GET, "/v1/me", None).await.status,
        StatusCode::OK
    );

    // Resetting the override (null) restores the default limits.
    let r = gw
        .admin(
            Method::PATCH,
            &format!("/v1/tenants/{tenant_id}"),
            Some(json!({ "limits": { "api_burst": null, "api_requests_per_second": null } })),
        )
        .await;
    assert_eq!(r.json["limits"]["api_burst"], 100);
    assert_eq!(r.json["limit_overrides"], json!({}));
}

#[tokio::test]
async fn disabled_tenant_is_refused_until_enabled() {
    let gw = Gateway::start().await;
    let (tenant_id, key) = gw.create_tenant("sleepy").await;
    let path = format!("/v1/tenants/{tenant_id}");
    gw.admin(Method::PATCH, &path, Some(json!({ "status": "disabled" })))
        .await;
    let r = gw.tenant(&key, Method::GET, "/v1/me", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "tenant_disabled")
    );
    gw.admin(Method::PATCH, &path, Some(json!({ "status": "active" })))
        .await;
    assert_eq!(
        gw.tenant(&key, Method::GET, "/v1/me", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let gw = Gateway::start().await;
    let (_, key) = gw.create_tenant("m").await;
    gw.tenant(&key, Method::GET, "/v1/me", None).await;

    assert_eq!(
        gw.request(Method::GET, "/healthz", &[], None).await.status,
        StatusCode::OK
    );
    let ready = gw.request(Method::GET, "/readyz", &[], None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let backend = if gw.db.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(ready.json["storage"], backend);

    let m = gw.request(Method::GET, "/metrics", &[], None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // Every series names the replica (the id kept in the data directory).
    let replica = std::fs::read_to_string(gw.data_dir.join("replica.id")).unwrap();
    assert!(
        m.text
            .lines()
            .filter(|l| l.starts_with("switchboard_"))
            .all(|l| l.contains(&format!("replica=\"{}\"", replica.trim()))),
        "{}",
        m.text
    );
    let text = super::support::without_replica_label(&m.text);
    assert!(
        text.contains(
            r#"switchboard_http_requests_total{route="/v1/me",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("switchboard_http_request_duration_seconds_bucket{route=\"/v1/me\""));
    assert!(text.contains(&format!(
        "switchboard_build_info{{version=\"{}\",storage=\"{backend}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));

    let doc = gw.request(Method::GET, "/v1/openapi.json", &[], None).await;
    assert_eq!(doc.json["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/tenants", "post"),
        ("/v1/tenants", "get"),
        ("/v1/tenants/{id}", "patch"),
        ("/v1/tenants/{id}", "delete"),
        ("/v1/tenants/{id}/keys", "post"),
        ("/v1/tenants/{id}/keys/{key_id}", "delete"),
        ("/v1/me", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            doc.json["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
}
