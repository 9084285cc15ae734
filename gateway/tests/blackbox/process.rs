//! The process: zero-config start, restart on the same data directory, secrets kept
//! out of logs, configuration errors, the admin CLI, JSON logs.

use super::support::{Gateway, Options, TestDb, command};
use http::{Method, StatusCode};
use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn restart_keeps_tenants_keys_master_key_and_admin_token() {
    let gw = Gateway::start_with(Options {
        generated_admin_token: true,
        ..Default::default()
    })
    .await;
    let token = gw.admin_token.clone();
    assert!(token.starts_with("sba_"));
    // The generated token is printed once, on stdout.
    assert_eq!(gw.output.stdout().matches(&token).count(), 1);
    let key_file = gw.data_dir.join("master.key");
    let master_key = std::fs::read_to_string(&key_file).unwrap();
    for f in ["master.key", "admin.token"] {
        let mode = std::fs::metadata(gw.data_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let (tenant_id, key) = gw.create_tenant("durable").await;

    let gw = gw.restart().await;
    assert_eq!(gw.admin_token, token, "admin token regenerated");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        master_key,
        "master key regenerated"
    );
    assert!(!gw.output.stdout().contains(&token), "token printed again");
    let me = gw.tenant(&key, Method::GET, "/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["id"], tenant_id.as_str());
    let listed = gw.admin(Method::GET, "/v1/tenants", None).await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sigterm_stops_gracefully_with_exit_code_zero() {
    let mut gw = Gateway::start().await;
    gw.create_tenant("x").await;
    let status = gw.stop();
    assert!(status.success(), "{status}");
    let logs = gw.output.stderr();
    assert!(logs.contains("shutdown requested"), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let master_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let mut gw = Gateway::start_with(Options {
        env: vec![
            ("SWITCHBOARD_MASTER_KEY".into(), master_key.into()),
            ("RUST_LOG".into(), "trace".into()),
        ],
        ..Default::default()
    })
    .await;
    let (tenant_id, key) = gw.create_tenant("secretive").await;
    gw.tenant(&key, Method::GET, "/v1/me", None).await;
    gw.tenant(&key, Method::GET, "/v1/keys", None).await;
    let second = gw
        .admin(Method::POST, &format!("/v1/tenants/{tenant_id}/keys"), None)
        .await;
    let second_key = second.json["key"].as_str().unwrap().to_owned();
    gw.request(
        Method::GET,
        "/v1/me",
        &[("authorization", &format!("Bearer {second_key}"))],
        None,
    )
    .await;
    gw.tenant(
        "sbk_wrong-key-that-is-also-secret",
        Method::GET,
        "/v1/me",
        None,
    )
    .await;
    gw.stop();

    let logs = gw.output.stderr();
    assert!(
        logs.len() > 1000,
        "expected trace logs, got {} bytes",
        logs.len()
    );
    for secret in [
        key.as_str(),
        second_key.as_str(),
        gw.admin_token.as_str(),
        master_key,
        "sbk_wrong-key-that-is-also-secret",
    ] {
        assert!(!logs.contains(secret), "secret leaked into logs");
    }
    // The master key is not in the data directory either when it came from the environment.
    assert!(!gw.data_dir.join("master.key").exists());
}

#[tokio::test]
async fn json_logs_carry_request_ids() {
    let gw = Gateway::start_with(Options {
        env: vec![("SWITCHBOARD_LOG_FORMAT".into(), "json".into())],
        ..Default::default()
    })
    .await;
    let r = gw
        .request(
            Method::GET,
            "/healthz",
            &[("x-request-id", "rid-json-1")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let logs = gw.output.stderr();
        let lines: Vec<serde_json::Value> = logs
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if lines
            .iter()
            .any(|l| l["span"]["request_id"] == "rid-json-1" && l["status"] == 200)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request log line: {logs}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_configuration_exits_64_naming_the_key_before_binding() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("never-created");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let base = vec![
        (
            "SWITCHBOARD_DATA_DIR".to_string(),
            data_dir.display().to_string(),
        ),
        (
            "SWITCHBOARD_LISTEN".to_string(),
            format!("127.0.0.1:{port}"),
        ),
    ];
    let cases: &[(&str, &str, &str)] = &[
        ("SWITCHBOARD_LISTEN", "localhost", "`listen`"),
        (
            "SWITCHBOARD_HTTP_MAX_BODY_BYTES",
            "lots",
            "`http.max_body_bytes`",
        ),
        ("SWITCHBOARD_MASTER_KEY", "c2hvcnQ=", "`master_key`"),
        ("DATABASE_URL", "mysql://db", "`database_url`"),
        ("SWITCHBOARD_LOG_FORMAT", "yaml", "`log.format`"),
        ("SWITCHBOARD_MEDIA_BACKEND", "s4", "`media.backend`"),
        ("SWITCHBOARD_MEDIA_BACKEND", "s3", "`media.s3_bucket`"),
        (
            "SWITCHBOARD_MEDIA_DOWNLOAD",
            "sometimes",
            "`media.download`",
        ),
        (
            "SWITCHBOARD_LIMTS_API_BURST",
            "5",
            "`SWITCHBOARD_LIMTS_API_BURST`",
        ),
    ];
    for (var, value, expected) in cases {
        let mut env = base.clone();
        env.retain(|(k, _)| k != var);
        env.push((var.to_string(), value.to_string()));
        let out = command(&env).arg("serve").output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{var}: {stderr}");
        assert!(
            !data_dir.exists(),
            "data directory created despite bad config"
        );
    }

    let file = tmp.path().join("bad.toml");
    std::fs::write(&file, "[http]\nmax_body_bytes = \"big\"\n").unwrap();
    let out = command(&base)
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`http.max_body_bytes`"));

    let out = command(&base).arg("config").arg("check").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn admin_cli_creates_tenants_and_keys_the_server_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let db = TestDb::fresh(&data_dir).await;
    let mut env = vec![(
        "SWITCHBOARD_DATA_DIR".to_string(),
        data_dir.display().to_string(),
    )];
    if let TestDb::Postgres(url) = &db {
        env.push(("DATABASE_URL".into(), url.clone()));
    }
    let run = |args: &[&str]| {
        let out = command(&env).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let created = run(&["admin", "tenant", "create", "From CLI"]);
    let tenant_id = created["tenant"]["id"].as_str().unwrap().to_owned();
    let first_key = created["api_key"]["key"].as_str().unwrap().to_owned();
    let second = run(&["admin", "key", "create", &tenant_id, "--name", "deploy"]);
    let second_key = second["key"].as_str().unwrap().to_owned();
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_eq!(
        run(&["admin", "tenant", "list"]).as_array().unwrap().len(),
        1
    );
    run(&["admin", "key", "revoke", &tenant_id, &second_id]);
    let keys = run(&["admin", "key", "list", &tenant_id]);
    assert_eq!(keys[1]["status"], "revoked");
    // A scoped key; a name that is no scope is refused.
    let reader = run(&[
        "admin",
        "key",
        "create",
        &tenant_id,
        "--name",
        "reader",
        "--scopes",
        "sessions:read,audit:read",
    ]);
    assert_eq!(
        reader["scopes"],
        serde_json::json!(["sessions:read", "audit:read"])
    );
    let reader_key = reader["key"].as_str().unwrap().to_owned();
    let out = command(&env)
        .args(["admin", "key", "create", &tenant_id, "--scopes", "root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`root` is not a scope"));

    // Unknown tenant: non-zero exit with a message.
    let out = command(&env)
        .args(["admin", "key", "create", "ten_01JD0000000000000000000000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // A server on the same storage accepts the CLI's key and refuses the revoked one.
    let mut server_env = env.clone();
    server_env.push(("SWITCHBOARD_LISTEN".into(), "127.0.0.1:0".into()));
    let gw = Gateway::start_on(data_dir.clone(), db, Options::default(), tmp).await;
    assert_eq!(
        gw.tenant(&first_key, Method::GET, "/v1/me", None)
            .await
            .json["name"],
        "From CLI"
    );
    assert_eq!(
        gw.tenant(&second_key, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let listed = gw
        .tenant(&reader_key, Method::GET, "/v1/sessions", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let refused = gw
        .tenant(
            &reader_key,
            Method::POST,
            "/v1/sessions",
            Some(serde_json::json!({ "channel": "sim" })),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.json["error"]["required_scope"], "sessions:write");
}
