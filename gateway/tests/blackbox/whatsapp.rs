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
use switchboard_actors::testkit::whatsapp::{Inbound, StandinConfig, WhatsAppStandin, lid_of};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub(super) const PHONE: &str = "15550001";

pub(super) async fn standin(qr_interval: Duration) -> WhatsAppStandin {
    let config = StandinConfig {
        qr_interval,
        ..StandinConfig::default()
    };
    WhatsAppStandin::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

pub(super) fn options(standin: &WhatsAppStandin, max_qr_refreshes: u32) -> Options {
    Options {
        env: vec![
            ("SWITCHBOARD_WHATSAPP_URL".into(), standin.url()),
            (
                "SWITCHBOARD_WHATSAPP_MAX_QR_REFRESHES".into(),
                max_qr_refreshes.to_string(),
            ),
            ("SWITCHBOARD_WHATSAPP_LOAD_TIMEOUT".into(), "20s".into()),
            // Humanised sending is tested on its own (whatsapp_media.rs).
            ("SWITCHBOARD_WHATSAPP_HUMANISE".into(), "false".into()),
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

/// Scans whatever QR the gateway shows now (retrying if it rotates in between).
pub(super) async fn scan_current(gw: &Gateway, key: &str, id: &str, standin: &WhatsAppStandin) {
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

pub(super) async fn wait_sent(standin: &WhatsAppStandin, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !standin.sent(PHONE).iter().any(|s| s.text == text) {
        assert!(
            Instant::now() < deadline,
            "`{text}` never reached the stand-in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pid of a session's own Chromium (`process` isolation), once it runs.
fn chromium_pid(gw: &Gateway, session: &str) -> u32 {
    let file = gw.data_dir.join(format!("browser/profiles/{session}.pid"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no {}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many `message.received` events carry `text`.
async fn received_count(gw: &Gateway, key: &str, text: &str) -> usize {
    gw.events_of(key, "message.received")
        .await
        .iter()
        .filter(|e| e["data"]["text"] == text)
        .count()
}

/// Waits until exactly one `message.received` carries `text` (and checks no second
/// one follows for a moment).
async fn received_once(gw: &Gateway, key: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while received_count(gw, key, text).await == 0 {
        assert!(
            Instant::now() < deadline,
            "`{text}` never arrived\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        received_count(gw, key, text).await,
        1,
        "`{text}` exactly once"
    );
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
    gw.wait_status(&key, &id, "SCAN_QR", Duration::from_secs(10))
        .await;
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
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(20))
        .await;
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
    // Senders arrive by LID; the phone number the page resolved rides beside it.
    assert_eq!(
        received["data"]["from"],
        format!("{}@lid", lid_of("15550100"))
    );
    assert_eq!(received["data"]["from_phone"], "15550100");
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
            // The recipient opens it: the read receipt (ack 3) arrives as `read`.
            let page_id = m.json["external_id"].as_str().unwrap().to_owned();
            assert!(page_id.starts_with("true_"), "{}", m.text);
            assert!(standin.read(PHONE, &page_id));
            break;
        }
        assert!(Instant::now() < deadline, "never delivered: {}", m.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.events_of(&key, "message.read").await.is_empty() {
        assert!(Instant::now() < deadline, "no message.read");
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
    // Contact fields sit behind the page's getter modules; ids are phone numbers.
    assert_eq!(
        contacts.json["data"],
        json!([{ "id": "15550100@c.us", "name": "Alice" }, { "id": "15550101@c.us", "name": "Bob" }]),
        "{}",
        contacts.text
    );
    // A number that is no contact is resolved before the send; one not on WhatsApp
    // fails with `not_on_whatsapp`.
    send(&gw, &key, &id, "+1 555 0199", "to a stranger").await;
    wait_sent(&standin, "to a stranger").await;
    let to_stranger = standin
        .sent(PHONE)
        .into_iter()
        .find(|s| s.text == "to a stranger")
        .unwrap();
    assert_eq!(to_stranger.to, format!("{}@lid", lid_of("15550199")));
    assert_eq!(to_stranger.to_phone.as_deref(), Some("15550199"));
    standin.unregister("15550404");
    let nowhere = send(&gw, &key, &id, "15550404", "to nobody").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = gw
            .tenant(&key, Method::GET, &format!("/v1/messages/{nowhere}"), None)
            .await;
        if m.json["status"] == "failed" {
            assert!(
                m.text.contains("not_on_whatsapp"),
                "the reason names it: {}",
                m.text
            );
            break;
        }
        assert!(Instant::now() < deadline, "never failed: {}", m.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The page saw a desktop browser, never a robot.
    assert!(standin.refused().is_empty(), "{:?}", standin.refused());
    // Session details report memory.
    let details = gw
        .wait_status(&key, &id, "WORKING", Duration::from_secs(5))
        .await;
    assert!(
        details["memory"]["browser_pss_bytes"].as_u64().unwrap() > 0,
        "{details}"
    );

    // SIGKILL the gateway: Chromium dies with it; the restart restores the login
    // from the database without a scan.
    let old_browser = chromium_pid(&gw, &id);
    let qrs_before = gw.events_of(&key, "session.qr").await.len();
    gw.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(old_browser) {
        assert!(
            Instant::now() < deadline,
            "chromium outlived the killed gateway"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A customer writes while the gateway is down: the restored page syncs it as
    // history, and the catch-up delivers it once.
    standin
        .inbound(PHONE, "15550100", "written while you were down", None)
        .expect("the phone still has the device");
    let gw = gw.restart().await;
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(30))
        .await;
    received_once(&gw, &key, "written while you were down").await;
    assert_eq!(
        gw.events_of(&key, "session.qr").await.len(),
        qrs_before,
        "no new QR code after the restart"
    );
    send(&gw, &key, &id, "15550100", "after restart").await;
    wait_sent(&standin, "after restart").await;

    // Chromium killed: the pool starts a new one and the session comes back, its
    // login kept in the profile on disk.
    let browser = chromium_pid(&gw, &id);
    std::process::Command::new("kill")
        .args(["-9", &browser.to_string()])
        .status()
        .unwrap();
    standin
        .inbound(
            PHONE,
            "15550100",
            "written while the browser was dead",
            None,
        )
        .expect("linked");
    let pid_file = gw.data_dir.join(format!("browser/profiles/{id}.pid"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let restarted =
            std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() != browser.to_string());
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
    received_once(&gw, &key, "written while the browser was dead").await;
    assert_eq!(
        gw.events_of(&key, "session.qr").await.len(),
        qrs_before,
        "no new QR code after the browser crash"
    );
    let m = gw.request(Method::GET, "/metrics", &[], None).await;
    assert!(
        m.text
            .lines()
            .any(|l| l.starts_with("switchboard_browser_restarts_total") && !l.ends_with(" 0")),
        "browser restart counted"
    );

    // The phone goes offline for 10 s: the page says TIMEOUT and gets its connection
    // back by itself; the session waits (STARTING, reconnecting) instead of tearing
    // the page down, and what arrived meanwhile is delivered once.
    let qrs_before = gw.events_of(&key, "session.qr").await.len();
    standin.offline(PHONE, 10);
    gw.wait_status(&key, &id, "STARTING", Duration::from_secs(20))
        .await;
    standin
        .inbound(
            PHONE,
            "15550100",
            "written while the phone was offline",
            None,
        )
        .expect("linked");
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(40))
        .await;
    received_once(&gw, &key, "written while the phone was offline").await;
    send(&gw, &key, &id, "15550100", "after going offline").await;
    wait_sent(&standin, "after going offline").await;
    assert_eq!(
        gw.events_of(&key, "session.qr").await.len(),
        qrs_before,
        "no new QR code after the phone was offline"
    );

    // Stopped, the session's login is sealed into the database and its profile leaves
    // the disk; started again, it comes back without a scan.
    let profile = gw.data_dir.join(format!("browser/profiles/{id}"));
    assert!(profile.is_dir());
    let r = gw
        .tenant(&key, Method::POST, &format!("/v1/sessions/{id}/stop"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(20);
    while profile.exists() {
        assert!(
            Instant::now() < deadline,
            "the stopped session's profile stayed on disk\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/start"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(30))
        .await;
    assert_eq!(
        gw.events_of(&key, "session.qr").await.len(),
        qrs_before,
        "no new QR code after a stop and start"
    );

    // The phone unlinks the device: LOGGED_OUT, and the saved login is gone
    // (starting again asks for a new scan).
    assert_eq!(standin.logout_phone(PHONE), 1);
    let out = gw
        .wait_status(&key, &id, "LOGGED_OUT", Duration::from_secs(20))
        .await;
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
    gw.wait_status(&key, &id, "SCAN_QR", Duration::from_secs(20))
        .await;
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
    let failed = gw
        .wait_status(&key, &id, "FAILED", Duration::from_secs(30))
        .await;
    assert_eq!(failed["status_reason"], "qr_timeout");
    assert_eq!(
        failed["running"], false,
        "never a zombie: it stops wanting to run"
    );
    // The first code and two refreshes were shown, no more.
    assert_eq!(gw.events_of(&key, "session.qr").await.len(), 3);
    let statuses: Vec<Value> = gw
        .events_of(&key, "session.status")
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
    gw.wait_status(&key, &id, "SCAN_QR", Duration::from_secs(20))
        .await;
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
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(20))
        .await;
    assert_eq!(gw.events_of(&key, "session.pairing_code").await.len(), 1);
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
    gw.wait_status(&key, &id, "SCAN_QR", Duration::from_secs(20))
        .await;
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
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(20))
        .await;
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
    gw.wait_status(&key, &id, "SCAN_QR", Duration::from_secs(20))
        .await;
    scan_current(&gw, &key, &id, &standin).await;
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(20))
        .await;

    // The browser stops answering but does not exit: the heartbeat notices, the
    // pool gives up on it, kills it and starts a new one; the session comes back.
    let frozen = chromium_pid(&gw, &id);
    std::process::Command::new("kill")
        .args(["-STOP", &frozen.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replaced = chromium_pid(&gw, &id) != frozen;
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

/// Pairs one session against `standin` and waits for `WORKING`.
pub(super) async fn paired_session(gw: &Gateway, key: &str, standin: &WhatsAppStandin) -> String {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    gw.wait_status(key, &id, "SCAN_QR", Duration::from_secs(30))
        .await;
    scan_current(gw, key, &id, standin).await;
    gw.wait_status(key, &id, "WORKING", Duration::from_secs(30))
        .await;
    id
}

#[tokio::test]
async fn the_real_pages_traps_are_handled() {
    let standin = standin(Duration::from_secs(5)).await;
    let mut opts = options(&standin, 20);
    opts.env
        .push(("SWITCHBOARD_WHATSAPP_HEARTBEAT".into(), "1s".into()));
    let gw = Gateway::start_with(opts).await;
    let (_, key) = gw.create_tenant("traps").await;
    let id = paired_session(&gw, &key, &standin).await;
    // The "what's new" modal of the first logged-in view is clicked away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while standin.modals_dismissed() == 0 {
        assert!(Instant::now() < deadline, "the modal stayed open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The session records which WhatsApp Web it runs and who it is.
    let details = gw
        .tenant(&key, Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(
        details.json["network"]["version"], "2.3000.1029100000",
        "{}",
        details.text
    );
    assert_eq!(details.json["network"]["me"], format!("{PHONE}@c.us"));

    // Written on the phone itself: a `message.sent` with `origin: device`.
    standin
        .phone_send(PHONE, "15550100", "typed on the phone")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let sent = loop {
        let found = gw
            .events_of(&key, "message.sent")
            .await
            .into_iter()
            .find(|e| e["data"]["text"] == "typed on the phone");
        if let Some(e) = found {
            break e;
        }
        assert!(Instant::now() < deadline, "no message.sent from the device");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sent["data"]["origin"], "device");
    assert_eq!(sent["data"]["to_phone"], "15550100");
    assert_eq!(
        received_count(&gw, &key, "typed on the phone").await,
        0,
        "not an inbound message"
    );

    // A group takes its id; in a LID-addressed group we write as our LID.
    send(&gw, &key, &id, "120363000000000001@g.us", "hello team").await;
    wait_sent(&standin, "hello team").await;
    let to_group = standin
        .sent(PHONE)
        .into_iter()
        .find(|s| s.text == "hello team")
        .unwrap();
    assert_eq!(to_group.to, "120363000000000001@g.us");
    // A LID taken as it is.
    let alice = format!("{}@lid", lid_of("15550100"));
    send(&gw, &key, &id, &alice, "hello by lid").await;
    wait_sent(&standin, "hello by lid").await;

    // Still encrypted when it arrives: forwarded once decrypted, with its text.
    standin
        .deliver(
            PHONE,
            Inbound {
                from: "15550100".into(),
                text: "sealed at first".into(),
                ciphertext: true,
                ..Inbound::default()
            },
        )
        .unwrap();
    received_once(&gw, &key, "sealed at first").await;
    // System and status messages are not messages; a photo's text is its caption.
    for (ty, status) in [("gp2", false), ("e2e_notification", false), ("chat", true)] {
        standin
            .deliver(
                PHONE,
                Inbound {
                    from: "15550100".into(),
                    text: format!("not a message: {ty} {status}"),
                    msg_type: Some(ty.into()),
                    status,
                    ..Inbound::default()
                },
            )
            .unwrap();
    }
    standin
        .deliver(
            PHONE,
            Inbound {
                from: "15550777".into(),
                text: String::new(),
                msg_type: Some("image".into()),
                caption: Some("the receipt".into()),
                mimetype: Some("image/jpeg".into()),
                hide_phone: true,
                ..Inbound::default()
            },
        )
        .unwrap();
    received_once(&gw, &key, "the receipt").await;
    let all = gw.events_of(&key, "message.received").await;
    assert!(
        all.iter().all(|e| !e["data"]["text"]
            .as_str()
            .unwrap()
            .starts_with("not a message")),
        "system and status messages were forwarded: {all:?}"
    );
    let photo = all
        .iter()
        .find(|e| e["data"]["text"] == "the receipt")
        .unwrap();
    assert_eq!(photo["data"]["meta"]["has_media"], true);
    assert!(
        photo["data"].get("from_phone").is_none(),
        "a hidden number is not made up: {photo}"
    );

    // The message listener goes deaf while the page stays connected: the heartbeat
    // sees messages the observer never reported, the session reconnects, and they
    // arrive once.
    assert!(standin.detach(PHONE));
    tokio::time::sleep(Duration::from_millis(500)).await;
    standin
        .inbound(PHONE, "15550100", "said to a deaf listener", None)
        .unwrap();
    received_once(&gw, &key, "said to a deaf listener").await;
    let m = gw.request(Method::GET, "/metrics", &[], None).await;
    assert!(
        m.text.lines().any(
            |l| l.starts_with("switchboard_whatsapp_deaf_listeners_total") && !l.ends_with(" 0")
        ),
        "the deaf listener is counted"
    );
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(30))
        .await;

    // TIMEOUT is waited out, not treated as a lost page.
    assert!(standin.set_state(PHONE, "TIMEOUT", Some(3)));
    let waiting = gw
        .wait_status(&key, &id, "STARTING", Duration::from_secs(10))
        .await;
    assert!(
        waiting["status_reason"]
            .as_str()
            .unwrap()
            .contains("TIMEOUT"),
        "{waiting}"
    );
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(20))
        .await;

    // CONFLICT (WhatsApp Web opened elsewhere) needs a person: FAILED, no reconnect loop.
    assert!(standin.set_state(PHONE, "CONFLICT", None));
    let failed = gw
        .wait_status(&key, &id, "FAILED", Duration::from_secs(20))
        .await;
    assert!(
        failed["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("conflict"),
        "{failed}"
    );
    assert_eq!(failed["running"], false);

    // Logging out from the phone may arrive as `logout_from_bridge`.
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/start"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(30))
        .await;
    assert_eq!(standin.logout_phone_via(PHONE, true), 1);
    gw.wait_status(&key, &id, "LOGGED_OUT", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_missing_module_is_named_and_optional_ones_fall_back() {
    // WhatsApp Web renamed the message collections: the session fails once, naming it.
    let broken = WhatsAppStandin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig {
            missing_modules: vec!["WAWebCollections".into()],
            ..StandinConfig::default()
        },
    )
    .await
    .unwrap();
    let gw = Gateway::start_with(options(&broken, 20)).await;
    let (_, key) = gw.create_tenant("renamed").await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp" })),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    let failed = gw
        .wait_status(&key, &id, "FAILED", Duration::from_secs(40))
        .await;
    assert!(
        failed["status_reason"]
            .as_str()
            .unwrap()
            .contains("WAWebCollections"),
        "{failed}"
    );
    assert!(
        gw.metrics()
            .await
            .contains("switchboard_whatsapp_missing_modules_total{module=\"WAWebCollections\"}"),
        "counted by name"
    );
    drop(gw);

    // Without one of the QR-key modules, the QR is read from the page's DOM and
    // pairing still works.
    let partial = WhatsAppStandin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig {
            missing_modules: vec!["WAWebUserPrefsMultiDevice".into()],
            ..StandinConfig::default()
        },
    )
    .await
    .unwrap();
    let gw = Gateway::start_with(options(&partial, 20)).await;
    let (_, key) = gw.create_tenant("partial").await;
    paired_session(&gw, &key, &partial).await;
}

#[tokio::test]
async fn the_stand_in_turns_robots_away() {
    let standin = standin(Duration::from_secs(20)).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let get = |agent: &'static str| {
        http::Request::get(standin.url())
            .header("user-agent", agent)
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    let page = |res: http::Response<hyper::body::Incoming>| async move {
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    let robot = page(
        client
            .request(get(
                "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0.0.0 Safari/537.36",
            ))
            .await
            .unwrap(),
    )
    .await;
    assert!(robot.contains("update Chrome") && !robot.contains("window.require"));
    let person = page(
        client
            .request(get(
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36",
            ))
            .await
            .unwrap(),
    )
    .await;
    assert!(person.contains("Requiring unknown module"));
    assert_eq!(standin.refused(), vec!["user agent header".to_owned()]);
}

#[tokio::test]
async fn a_passkey_step_is_reported_as_a_challenge() {
    let standin = standin(Duration::from_secs(5)).await;
    standin.require_passkey(PHONE, true);
    let gw = Gateway::start_with(options(&standin, 20)).await;
    let (_, key) = gw.create_tenant("passkey").await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp" })),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    gw.wait_status(&key, &id, "SCAN_QR", Duration::from_secs(30))
        .await;
    scan_current(&gw, &key, &id, &standin).await;
    let waiting = gw
        .wait_status(&key, &id, "CHALLENGE", Duration::from_secs(20))
        .await;
    assert_eq!(waiting["running"], true, "{waiting}");
    let challenges = gw.events_of(&key, "session.challenge").await;
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert_eq!(challenges[0]["data"]["kind"], "app_approval");
    assert!(
        challenges[0]["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("passkey")
    );
    // This headless browser has no passkey: the link fails and a new QR code follows.
    gw.wait_status(&key, &id, "SCAN_QR", Duration::from_secs(30))
        .await;
}
