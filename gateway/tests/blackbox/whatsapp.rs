//! The WhatsApp channel end to end: the real gateway binary drives real headless
//! Chromium against the stand-in WhatsApp Web (which it reaches only through the
//! page), with webhooks checked by a verifying receiver.

use super::receiver::{Behaviour, Receiver};
use super::support::{Gateway, Options};
use base64::Engine;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchboard_actors::testkit::whatsapp::{StandinConfig, WhatsAppStandin};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PHONE: &str = "15550001";

async fn standin(qr_interval: Duration) -> WhatsAppStandin {
    let config = StandinConfig {
        qr_interval,
        ..StandinConfig::default()
    };
    WhatsAppStandin::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn options(standin: &WhatsAppStandin, max_qr_refreshes: u32) -> Options {
    Options {
        env: vec![
            ("SWITCHBOARD_WHATSAPP_URL".into(), standin.url()),
            (
                "SWITCHBOARD_WHATSAPP_MAX_QR_REFRESHES".into(),
                max_qr_refreshes.to_string(),
            ),
            ("SWITCHBOARD_WHATSAPP_LOAD_TIMEOUT".into(), "20s".into()),
            ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS".into(), "true".into()),
            ("SWITCHBOARD_SESSIONS_RESTART_BASE".into(), "200ms".into()),
            ("SWITCHBOARD_SESSIONS_RESTART_MAX".into(), "1s".into()),
            ("SWITCHBOARD_SESSIONS_MAX_RESTARTS".into(), "10".into()),
            (
                "SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE".into(),
                "0,200ms,500ms,1s".into(),
            ),
        ],
        ..Default::default()
    }
}

/// An open SSE stream of one session.
struct Sse {
    body: hyper::body::Incoming,
    buf: String,
}

impl Sse {
    async fn open(gw: &Gateway, key: &str, session: &str) -> Self {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
        let req = http::Request::get(format!("{}/v1/sessions/{session}/events", gw.base))
            .header("x-api-key", key)
            .body(http_body_util::Empty::new())
            .unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        Self {
            body: res.into_body(),
            buf: String::new(),
        }
    }

    /// The next event of type `ty` (its `data`), skipping others.
    async fn next_of(&mut self, ty: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name));
                if field("event: ") == Some(ty) {
                    let envelope: Value = serde_json::from_str(field("data: ").unwrap()).unwrap();
                    return envelope["data"].clone();
                }
            }
            let frame = tokio::time::timeout_at(deadline.into(), self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no {ty} event within 30 s"))
                .unwrap()
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

fn decode_qr_png(png: &[u8]) -> String {
    let img = image::load_from_memory(png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the PNG");
    grids[0].decode().unwrap().1
}

async fn wait_status(gw: &Gateway, key: &str, id: &str, want: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = gw
            .tenant(key, Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        if r.json["status"] == want {
            return r.json;
        }
        assert!(
            Instant::now() < deadline,
            "session never reached {want}: {}\n--- gateway log ---\n{}",
            r.text,
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn events_of(gw: &Gateway, key: &str, ty: &str) -> Vec<Value> {
    let r = gw
        .tenant(
            key,
            Method::GET,
            &format!("/v1/events?type={ty}&limit=200"),
            None,
        )
        .await;
    r.json["data"].as_array().unwrap().clone()
}

/// Scans whatever QR the gateway shows now (retrying if it rotates in between).
async fn scan_current(gw: &Gateway, key: &str, id: &str, standin: &WhatsAppStandin) {
    for _ in 0..10 {
        let raw = gw
            .tenant(
                key,
                Method::GET,
                &format!("/v1/sessions/{id}/qr?format=raw"),
                None,
            )
            .await;
        if raw.status == StatusCode::OK && standin.scan(&raw.text, PHONE).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not scan the QR code shown by the gateway");
}

async fn send(gw: &Gateway, key: &str, id: &str, to: &str, text: &str) -> String {
    let r = gw
        .request(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            &[
                ("x-api-key", key),
                ("content-type", "application/json"),
                ("idempotency-key", text),
            ],
            Some(json!({ "to": to, "text": text }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

async fn wait_sent(standin: &WhatsAppStandin, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !standin.sent(PHONE).iter().any(|s| s.text == text) {
        assert!(
            Instant::now() < deadline,
            "`{text}` never reached the stand-in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn chromium_pid(gw: &Gateway) -> u32 {
    std::fs::read_to_string(gw.data_dir.join("browser/chromium.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

#[tokio::test]
async fn whatsapp_pairs_by_qr_works_survives_restarts_and_logs_out() {
    let standin = standin(Duration::from_millis(1500)).await;
    let mut gw = Gateway::start_with(options(&standin, 100)).await;
    let (_, key) = gw.create_tenant("whatsapp").await;
    let rx = Receiver::start(Behaviour::default()).await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": rx.url, "secret": SECRET, "events": ["message.*", "session.*"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp", "name": "support line" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();

    // The QR arrives over SSE; its PNG decodes back to its value.
    let mut sse = Sse::open(&gw, &key, &id).await;
    let first = sse.next_of("session.qr").await;
    let value = first["value"].as_str().unwrap().to_owned();
    assert_eq!(
        value.split(',').count(),
        5,
        "ref,noise,identity,adv,platform: {value}"
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(first["png_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decode_qr_png(&png), value);
    assert!(first["svg"].as_str().unwrap().contains("<svg"));
    assert!(first["expires_at"].as_str().is_some());

    // The QR rotates; the route serves the current one as PNG, JSON and raw.
    let second = sse.next_of("session.qr").await;
    let rotated = second["value"].as_str().unwrap().to_owned();
    assert_ne!(rotated, value, "the QR code rotates");
    wait_status(&gw, &key, &id, "SCAN_QR", Duration::from_secs(10)).await;
    let png = gw
        .request(
            Method::GET,
            &format!("/v1/sessions/{id}/qr"),
            &[("x-api-key", &key)],
            None,
        )
        .await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(png.headers["content-type"], "image/png");
    let as_json = gw
        .request(
            Method::GET,
            &format!("/v1/sessions/{id}/qr"),
            &[("x-api-key", &key), ("accept", "application/json")],
            None,
        )
        .await;
    assert_eq!(as_json.status, StatusCode::OK, "{}", as_json.text);
    let current = as_json.json["value"].as_str().unwrap();
    assert!(current.starts_with("2@"));
    let png = base64::engine::general_purpose::STANDARD
        .decode(as_json.json["png_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decode_qr_png(&png), current);
    let bad = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/qr?format=gif"),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "invalid_query");

    // A stale QR is refused, as a phone would; the current one links.
    assert!(
        standin.scan(&value, PHONE).is_err(),
        "a stale QR must not link"
    );
    scan_current(&gw, &key, &id, &standin).await;
    wait_status(&gw, &key, &id, "WORKING", Duration::from_secs(20)).await;
    let no_qr = gw
        .tenant(&key, Method::GET, &format!("/v1/sessions/{id}/qr"), None)
        .await;
    assert_eq!(no_qr.status, StatusCode::CONFLICT);
    assert_eq!(no_qr.code(), "no_qr");

    // Inbound: the stand-in delivers to the page; a signed webhook arrives.
    standin
        .inbound(PHONE, "15550100", "Do you open on Sundays?", None)
        .expect("linked");
    rx.wait_for(Duration::from_secs(20), "message.received", |d| {
        d.iter().any(|x| {
            x.json()["type"] == "message.received"
                && x.json()["data"]["text"] == "Do you open on Sundays?"
        })
    })
    .await;
    for d in rx.deliveries() {
        assert!(d.verifies_with(SECRET), "every delivery verifies");
    }
    let received = rx
        .deliveries()
        .into_iter()
        .map(|d| d.json())
        .find(|j| j["type"] == "message.received")
        .unwrap();
    assert_eq!(received["data"]["from"], "15550100@c.us");
    assert_eq!(received["data"]["meta"]["type"], "chat");

    // Outbound from the queue appears in the stand-in, then is delivered.
    let msg = send(&gw, &key, &id, "15550100", "Yes, 10 to 4.").await;
    wait_sent(&standin, "Yes, 10 to 4.").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = gw
            .tenant(&key, Method::GET, &format!("/v1/messages/{msg}"), None)
            .await;
        if m.json["status"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "never delivered: {}", m.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Groups and contacts come from the page.
    let groups = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/groups"),
            None,
        )
        .await;
    assert_eq!(
        groups.json["data"][0]["id"], "120363000000000001@g.us",
        "{}",
        groups.text
    );
    let contacts = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/contacts"),
            None,
        )
        .await;
    assert_eq!(
        contacts.json["data"].as_array().unwrap().len(),
        2,
        "{}",
        contacts.text
    );
    // Session details report memory.
    let details = wait_status(&gw, &key, &id, "WORKING", Duration::from_secs(5)).await;
    assert!(
        details["memory"]["browser_pss_bytes"].as_u64().unwrap() > 0,
        "{details}"
    );

    // SIGKILL the gateway: Chromium dies with it; the restart restores the login
    // from the database without a scan.
    let old_browser = chromium_pid(&gw);
    let qrs_before = events_of(&gw, &key, "session.qr").await.len();
    gw.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(old_browser) {
        assert!(
            Instant::now() < deadline,
            "chromium outlived the killed gateway"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gw = gw.restart().await;
    wait_status(&gw, &key, &id, "WORKING", Duration::from_secs(30)).await;
    assert_eq!(
        events_of(&gw, &key, "session.qr").await.len(),
        qrs_before,
        "no new QR code after the restart"
    );
    send(&gw, &key, &id, "15550100", "after restart").await;
    wait_sent(&standin, "after restart").await;

    // Chromium killed: the pool starts a new one and the session comes back.
    let browser = chromium_pid(&gw);
    std::process::Command::new("kill")
        .args(["-9", &browser.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let restarted = std::fs::read_to_string(gw.data_dir.join("browser/chromium.pid"))
            .is_ok_and(|p| p.trim() != browser.to_string());
        let r = gw
            .tenant(&key, Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        if restarted && r.json["status"] == "WORKING" && r.json["status_reason"] == "connected" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session did not recover from the browser crash: {}\n{}",
            r.text,
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&gw, &key, &id, "15550100", "after browser crash").await;
    wait_sent(&standin, "after browser crash").await;
    let m = gw.request(Method::GET, "/metrics", &[], None).await;
    assert!(
        m.text
            .lines()
            .any(|l| l.starts_with("switchboard_browser_restarts_total") && !l.ends_with(" 0")),
        "browser restart counted"
    );

    // The page loses its connection (the phone goes offline): the session reconnects
    // with backoff and works again.
    let restarts = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("switchboard_session_restarts_total{kind=\"disconnect\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let before = restarts(&gw.request(Method::GET, "/metrics", &[], None).await.text);
    standin.offline(PHONE, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = gw.request(Method::GET, "/metrics", &[], None).await;
        let r = gw
            .tenant(&key, Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        if restarts(&m.text) > before && r.json["status"] == "WORKING" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reconnect after going offline: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&gw, &key, &id, "15550100", "after going offline").await;
    wait_sent(&standin, "after going offline").await;

    // The phone unlinks the device: LOGGED_OUT, and the saved login is gone
    // (starting again asks for a new scan).
    assert_eq!(standin.logout_phone(PHONE), 1);
    let out = wait_status(&gw, &key, &id, "LOGGED_OUT", Duration::from_secs(20)).await;
    assert_eq!(out["running"], false);
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/start"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_status(&gw, &key, &id, "SCAN_QR", Duration::from_secs(20)).await;
    let r = gw
        .tenant(&key, Method::POST, &format!("/v1/sessions/{id}/stop"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_unscanned_session_fails_with_qr_timeout() {
    let standin = standin(Duration::from_millis(300)).await;
    let gw = Gateway::start_with(options(&standin, 2)).await;
    let (_, key) = gw.create_tenant("nobody scans").await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let failed = wait_status(&gw, &key, &id, "FAILED", Duration::from_secs(30)).await;
    assert_eq!(failed["status_reason"], "qr_timeout");
    assert_eq!(
        failed["running"], false,
        "never a zombie: it stops wanting to run"
    );
    // The first code and two refreshes were shown, no more.
    assert_eq!(events_of(&gw, &key, "session.qr").await.len(), 3);
    let statuses: Vec<Value> = events_of(&gw, &key, "session.status")
        .await
        .into_iter()
        .map(|e| e["data"]["reason"].clone())
        .collect();
    assert!(statuses.contains(&json!("qr_timeout")), "{statuses:?}");
}

#[tokio::test]
async fn whatsapp_requests_are_validated() {
    let standin = standin(Duration::from_secs(20)).await;
    let gw = Gateway::start_with(options(&standin, 5)).await;
    let (_, key) = gw.create_tenant("validation").await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp", "config": { "colour": "green" } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "invalid_session_config");
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp", "start": false })),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    let qr = gw
        .tenant(&key, Method::GET, &format!("/v1/sessions/{id}/qr"), None)
        .await;
    assert_eq!(qr.status, StatusCode::CONFLICT);
    assert_eq!(qr.code(), "no_qr");
    for body in [
        json!({ "phone": "12ab" }),
        json!({ "phone": "1" }),
        json!({}),
    ] {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                &format!("/v1/sessions/{id}/pairing-code"),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    }
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/pairing-code"),
            Some(json!({ "phone": "+15550001" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "not pairing: {}", r.text);
    assert_eq!(r.code(), "not_pairing");
    let r = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/groups"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "session_not_running");

    // Pairing by phone number: the page asks for a code, the phone enters it.
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/start"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_status(&gw, &key, &id, "SCAN_QR", Duration::from_secs(20)).await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/pairing-code"),
            Some(json!({ "phone": "+15550002" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let code = r.json["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 9, "ABCD-EFGH: {code}");
    assert!(standin.scan_code("WRNG-CODE", "15550002").is_err());
    standin.scan_code(&code, "15550002").unwrap();
    wait_status(&gw, &key, &id, "WORKING", Duration::from_secs(20)).await;
    assert_eq!(events_of(&gw, &key, "session.pairing_code").await.len(), 1);
}

#[tokio::test]
async fn older_pages_are_read_through_the_dom_markers() {
    let standin = WhatsAppStandin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig {
            qr_interval: Duration::from_secs(5),
            legacy_dom: true,
            ..StandinConfig::default()
        },
    )
    .await
    .unwrap();
    let gw = Gateway::start_with(options(&standin, 20)).await;
    let (_, key) = gw.create_tenant("legacy").await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp" })),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    wait_status(&gw, &key, &id, "SCAN_QR", Duration::from_secs(20)).await;
    let raw = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/qr?format=raw"),
            None,
        )
        .await;
    assert!(
        raw.text.starts_with("2@") && !raw.text.contains(','),
        "the bare ref from div[data-ref]: {}",
        raw.text
    );
    scan_current(&gw, &key, &id, &standin).await;
    wait_status(&gw, &key, &id, "WORKING", Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_frozen_browser_is_replaced_and_its_sessions_come_back() {
    let standin = standin(Duration::from_secs(5)).await;
    let mut opts = options(&standin, 20);
    opts.env.extend([
        ("SWITCHBOARD_WHATSAPP_HEARTBEAT".into(), "1s".into()),
        ("SWITCHBOARD_BROWSER_OPEN_TIMEOUT".into(), "5s".into()),
    ]);
    let gw = Gateway::start_with(opts).await;
    let (_, key) = gw.create_tenant("frozen").await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp" })),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    wait_status(&gw, &key, &id, "SCAN_QR", Duration::from_secs(20)).await;
    scan_current(&gw, &key, &id, &standin).await;
    wait_status(&gw, &key, &id, "WORKING", Duration::from_secs(20)).await;

    // The browser stops answering but does not exit: the heartbeat notices, the
    // pool gives up on it, kills it and starts a new one; the session comes back.
    let frozen = chromium_pid(&gw);
    std::process::Command::new("kill")
        .args(["-STOP", &frozen.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replaced = chromium_pid(&gw) != frozen;
        let r = gw
            .tenant(&key, Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        if replaced && r.json["status"] == "WORKING" && !alive(frozen) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the frozen browser was not replaced: {}\n{}",
            r.text,
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    send(&gw, &key, &id, "15550100", "after a frozen browser").await;
    wait_sent(&standin, "after a frozen browser").await;
}
