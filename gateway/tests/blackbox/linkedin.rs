//! The LinkedIn channel end to end: the real gateway binary drives real headless
//! Chromium against the stand-in LinkedIn (reached only through the page: Voyager
//! API calls with csrf, the realtime stream, the login and checkpoint pages), with
//! webhooks checked by a verifying receiver.

use super::receiver::{Behaviour, Delivery, Receiver};
use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchboard_actors::testkit::linkedin::{LinkedInStandin, StandinConfig};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The member's own desktop browser (the cookies are bound to it).
const MEMBER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
const USER: &str = "ada@example.com";

async fn standin(config: StandinConfig) -> LinkedInStandin {
    LinkedInStandin::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn options(standin: &LinkedInStandin) -> Options {
    Options {
        env: vec![
            ("SWITCHBOARD_LINKEDIN_URL".into(), standin.url()),
            ("SWITCHBOARD_WHATSAPP_LOAD_TIMEOUT".into(), "20s".into()),
            ("SWITCHBOARD_LINKEDIN_COOL_DOWN".into(), "10m".into()),
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

/// Caps that let a test run at any hour without waiting a minute between actions.
fn test_caps() -> Value {
    json!({ "working_hours": "00:00-24:00", "action_spacing": "2s-3s", "message_spacing": "10s-11s" })
}

fn verified(rx: &Receiver, ty: &str) -> Vec<Value> {
    rx.deliveries()
        .iter()
        .filter(|d: &&Delivery| d.verifies_with(SECRET))
        .map(Delivery::json)
        .filter(|j| j["type"] == ty)
        .map(|j| j["data"].clone())
        .collect()
}

async fn wait_verified(
    rx: &Receiver,
    gw: &Gateway,
    ty: &str,
    what: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        if let Some(v) = verified(rx, ty).into_iter().find(|v| what(v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no matching {ty} webhook\n--- gateway log ---\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn webhook(gw: &Gateway, key: &str, rx: &Receiver) {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": rx.url, "secret": SECRET, "events": ["message.*", "session.*", "invitation.*"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn create(gw: &Gateway, key: &str, config: Value) -> String {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "linkedin", "config": config })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(
        !r.text.contains("AQEDA"),
        "cookies are never shown: {}",
        r.text
    );
    r.json["id"].as_str().unwrap().to_owned()
}

fn cookie_config(standin: &LinkedInStandin, user: &str, caps: Value) -> Value {
    let (li_at, jsessionid) = standin.cookies(user, MEMBER_UA).unwrap();
    json!({ "login": "cookies", "li_at": li_at, "jsessionid": jsessionid, "user_agent": MEMBER_UA, "caps": caps })
}

async fn post(gw: &Gateway, key: &str, path: &str, body: Value) -> super::support::Resp {
    gw.tenant(key, Method::POST, path, Some(body)).await
}

async fn until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A profile lookup: profile views are spaced like any other action, so a 429
/// `cap_reached` is waited out for as long as its Retry-After says.
async fn lookup(gw: &Gateway, key: &str, id: &str, who: &str) -> super::support::Resp {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = gw
            .tenant(
                key,
                Method::GET,
                &format!("/v1/sessions/{id}/profiles/{who}"),
                None,
            )
            .await;
        if r.status != StatusCode::TOO_MANY_REQUESTS || Instant::now() > deadline {
            return r;
        }
        assert_eq!(r.code(), "cap_reached", "{}", r.text);
        let secs: u64 = r.headers[http::header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(secs <= 5, "spacing is 2-3 s in these caps: {}", r.text);
        tokio::time::sleep(Duration::from_millis(secs * 1000 + 100)).await;
    }
}

async fn received_count(gw: &Gateway, key: &str, text: &str) -> usize {
    gw.events_of(key, "message.received")
        .await
        .iter()
        .filter(|e| e["data"]["text"] == text)
        .count()
}

#[tokio::test]
async fn linkedin_cookie_login_carries_messages_and_invitations_and_catches_up() {
    let standin = standin(StandinConfig {
        heartbeat: Duration::from_secs(2),
        ..StandinConfig::default()
    })
    .await;
    standin.add_account(USER, "pw", "ada-lovelace", None);
    standin.add_member("linus-t", "Linus", "Torvalds");
    let gw = Gateway::start_with(options(&standin)).await;
    let (_, key) = gw.create_tenant("linkedin").await;
    let rx = Receiver::start(Behaviour::default()).await;
    webhook(&gw, &key, &rx).await;
    let id = create(&gw, &key, cookie_config(&standin, USER, test_caps())).await;
    let s = gw
        .wait_status(&key, &id, "WORKING", Duration::from_secs(60))
        .await;
    assert_eq!(s["network"]["me"]["public_id"], "ada-lovelace", "{s}");

    // Inbound: a verified webhook with the sender's URN, public id and name.
    let urn = standin.inbound(USER, "grace-hopper", "Hello Ada").unwrap();
    let m = wait_verified(&rx, &gw, "message.received", |v| v["text"] == "Hello Ada").await;
    assert_eq!(m["external_id"], urn);
    assert!(
        m["from"]
            .as_str()
            .unwrap()
            .starts_with("urn:li:fsd_profile:"),
        "{m}"
    );
    assert!(
        m["chat"]
            .as_str()
            .unwrap()
            .starts_with("urn:li:msg_conversation:"),
        "{m}"
    );
    assert_eq!(m["meta"]["sender"]["public_id"], "grace-hopper", "{m}");
    assert_eq!(m["meta"]["sender"]["name"], "Grace Hopper", "{m}");
    assert_eq!(m["meta"]["group"], false, "a 1:1 conversation: {m}");
    let chat = m["chat"].as_str().unwrap().to_owned();

    // Invitation received → webhook; accepted through the queue.
    standin
        .invite(USER, "alan-turing", Some("Let's connect"))
        .unwrap();
    let inv = wait_verified(&rx, &gw, "invitation.received", |v| {
        v["from_public_id"] == "alan-turing"
    })
    .await;
    assert_eq!(inv["message"], "Let's connect");
    let inv_id = inv["invitation_id"].as_str().unwrap().to_owned();
    let r = post(
        &gw,
        &key,
        &format!("/v1/sessions/{id}/invitations/{inv_id}/accept"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    until(
        "the accept reaches LinkedIn",
        Duration::from_secs(30),
        || standin.accepted_by_account(USER, &inv_id),
    )
    .await;

    // A reply into the conversation, then a message to a member by profile URL: the
    // second waits out the message spacing (never under 10 s).
    let r = post(
        &gw,
        &key,
        &format!("/v1/sessions/{id}/messages"),
        json!({ "to": chat, "text": "Hi Grace" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let profile_url = format!("{}in/linus-t/", standin.url());
    let r = post(
        &gw,
        &key,
        &format!("/v1/sessions/{id}/messages"),
        json!({ "to": profile_url, "text": "Hi Linus" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    until(
        "both messages reach LinkedIn",
        Duration::from_secs(40),
        || standin.sent(USER).len() == 2,
    )
    .await;
    let sent = standin.sent(USER);
    assert_eq!(sent[0].text, "Hi Grace");
    assert_eq!(sent[0].conversation, chat);
    assert_eq!(
        (sent[1].text.as_str(), sent[1].to.as_str()),
        ("Hi Linus", "linus-t")
    );
    assert!(
        sent[1].at_ms - sent[0].at_ms >= 10_000,
        "messages {} ms apart",
        sent[1].at_ms - sent[0].at_ms
    );
    wait_verified(&rx, &gw, "message.sent", |v| v["status"] == "sent").await;

    // An invitation with a note, then its acceptance → webhook.
    let r = post(
        &gw,
        &key,
        &format!("/v1/sessions/{id}/invitations"),
        json!({ "to": profile_url, "note": "Kernel talk?" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    until(
        "the invitation reaches LinkedIn",
        Duration::from_secs(30),
        || !standin.invitations(USER).is_empty(),
    )
    .await;
    let sent_inv = standin.invitations(USER);
    assert_eq!(
        (sent_inv[0].to.as_str(), sent_inv[0].note.as_deref()),
        ("linus-t", Some("Kernel talk?"))
    );
    assert!(standin.accept(USER, "linus-t"));
    let acc = wait_verified(&rx, &gw, "invitation.accepted", |v| {
        v["public_id"] == "linus-t"
    })
    .await;
    assert_eq!(acc["invitation_id"], sent_inv[0].urn.as_str());

    // Profile lookups, by public id and by (encoded) URL.
    let r = lookup(&gw, &key, &id, "grace-hopper").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["first_name"], "Grace");
    let encoded: String = form_urlencoded::byte_serialize(profile_url.as_bytes()).collect();
    let r = lookup(&gw, &key, &id, &encoded).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["public_id"], "linus-t");
    let r = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/limits"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["caps"]["messages_per_day"]["used"], 2, "{}", r.text);
    assert_eq!(
        r.json["caps"]["invitations_per_day"]["used"], 1,
        "{}",
        r.text
    );
    // Two lookups, and resolving `linus-t` for the first message to him (LinkedIn
    // counts that as a view too; the invitation reused it).
    assert_eq!(
        r.json["caps"]["profile_views_per_day"]["used"], 3,
        "{}",
        r.text
    );

    // Bad input changes nothing.
    let before = standin.invitations(USER).len();
    let long = "x".repeat(301);
    let r = post(
        &gw,
        &key,
        &format!("/v1/sessions/{id}/invitations"),
        json!({ "to": "grace-hopper", "note": long }),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "note_too_long"),
        "{}",
        r.text
    );
    for bad in [
        "https://www.linkedin.com/company/acme/",
        "https://evil.example/in/grace-hopper/",
        "not a profile",
        "urn:li:member:1",
    ] {
        let r = post(
            &gw,
            &key,
            &format!("/v1/sessions/{id}/invitations"),
            json!({ "to": bad }),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_profile"),
            "{bad}: {}",
            r.text
        );
    }
    let (_, other) = gw.create_tenant("someone else").await;
    for (m, path) in [
        (Method::POST, format!("/v1/sessions/{id}/invitations")),
        (Method::GET, format!("/v1/sessions/{id}/limits")),
        (
            Method::GET,
            format!("/v1/sessions/{id}/profiles/grace-hopper"),
        ),
    ] {
        let r = gw
            .tenant(&other, m, &path, Some(json!({ "to": "grace-hopper" })))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
    }
    assert_eq!(standin.invitations(USER).len(), before);

    // A stalled stream (no frame, not even a heartbeat) after a new build of the
    // app (new query ids): what arrives meanwhile is caught up, exactly once.
    let (new_conversations, _) = standin.new_build();
    standin.stall(USER, Duration::from_secs(26));
    tokio::time::sleep(Duration::from_millis(500)).await;
    standin
        .inbound(USER, "grace-hopper", "Sent while the stream was stalled")
        .unwrap();
    let caught = wait_verified(&rx, &gw, "message.received", |v| {
        v["text"] == "Sent while the stream was stalled"
    })
    .await;
    assert_eq!(caught["meta"]["sender"]["public_id"], "grace-hopper");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        received_count(&gw, &key, "Sent while the stream was stalled").await,
        1
    );
    let s = gw
        .tenant(&key, Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(s.json["status"], "WORKING", "{}", s.text);
    assert!(
        gw.output.stderr().contains(&new_conversations),
        "the new query id was picked up from the page\n{}",
        gw.output.stderr()
    );

    // Cookies LinkedIn rejects: FAILED with invalid_credentials, one status event.
    let bad = create(
        &gw,
        &key,
        json!({ "login": "cookies", "li_at": "AQEDAnot-a-cookie", "jsessionid": "ajax:1", "user_agent": MEMBER_UA }),
    )
    .await;
    let s = gw
        .wait_status(&key, &bad, "FAILED", Duration::from_secs(60))
        .await;
    assert!(
        s["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid_credentials"),
        "{s}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed: Vec<Value> = gw
        .events_of(&key, "session.status")
        .await
        .into_iter()
        .filter(|e| e["session_id"] == bad.as_str() && e["data"]["status"] == "FAILED")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        standin
            .refused()
            .iter()
            .all(|r| !r.contains("webdriver") && !r.contains("user agent")),
        "{:?}",
        standin.refused()
    );
}

#[tokio::test]
async fn linkedin_password_login_relays_each_checkpoint_and_restores_without_login() {
    let standin = standin(StandinConfig {
        challenge_ttl: Duration::from_secs(15),
        approval_poll: Duration::from_secs(1),
        ..StandinConfig::default()
    })
    .await;
    let gw = Gateway::start_with(options(&standin)).await;
    let (_, key) = gw.create_tenant("linkedin-login").await;
    let rx = Receiver::start(Behaviour::default()).await;
    webhook(&gw, &key, &rx).await;

    // Wrong password: FAILED, named.
    standin.add_account("wrong@example.com", "right", "wrong-pw", None);
    let id = create(
        &gw,
        &key,
        json!({ "login": "password", "username": "wrong@example.com", "password": "nope" }),
    )
    .await;
    let s = gw
        .wait_status(&key, &id, "FAILED", Duration::from_secs(60))
        .await;
    assert!(
        s["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid_credentials"),
        "{s}"
    );

    // Authenticator code and e-mail PIN: the challenge is relayed, a wrong code is
    // refused, the right one lets the login through.
    let mut mfa_session = String::new();
    for (user, kind) in [
        ("totp@example.com", "two_factor"),
        ("mail@example.com", "email"),
    ] {
        standin.add_account(
            user,
            "s3cret",
            &user.replace(['@', '.'], "-"),
            Some(if kind == "email" {
                "email"
            } else {
                "two_factor"
            }),
        );
        let id = create(&gw, &key, json!({ "login": "password", "username": user, "password": "s3cret", "caps": test_caps() })).await;
        gw.wait_status(&key, &id, "CHALLENGE", Duration::from_secs(60))
            .await;
        let c = wait_verified(&rx, &gw, "session.challenge", |v| v["kind"] == kind).await;
        assert!(c["expires_at"].as_str().is_some(), "{c}");
        let r = post(
            &gw,
            &key,
            &format!("/v1/sessions/{id}/challenge"),
            json!({ "code": "000000" }),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "rejected_by_network"),
            "{}",
            r.text
        );
        let code = standin.code(user).unwrap();
        let r = post(
            &gw,
            &key,
            &format!("/v1/sessions/{id}/challenge"),
            json!({ "code": code }),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        gw.wait_status(&key, &id, "WORKING", Duration::from_secs(30))
            .await;
        if kind == "two_factor" {
            mfa_session = id;
        } else {
            let r = gw
                .tenant(&key, Method::DELETE, &format!("/v1/sessions/{id}"), None)
                .await;
            assert!(r.status.is_success(), "{}", r.text);
        }
    }

    // In-app approval: waited for, no code.
    standin.add_account("app@example.com", "s3cret", "app-user", Some("app"));
    let id = create(
        &gw,
        &key,
        json!({ "login": "password", "username": "app@example.com", "password": "s3cret" }),
    )
    .await;
    wait_verified(&rx, &gw, "session.challenge", |v| {
        v["kind"] == "app_approval"
    })
    .await;
    assert_eq!(
        gw.wait_status(&key, &id, "CHALLENGE", Duration::from_secs(10))
            .await["status"],
        "CHALLENGE"
    );
    assert!(standin.approve("app@example.com"));
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(30))
        .await;
    let r = gw
        .tenant(&key, Method::DELETE, &format!("/v1/sessions/{id}"), None)
        .await;
    assert!(r.status.is_success(), "{}", r.text);

    // An SMS code typed after it lapsed: FAILED, challenge_expired.
    standin.add_account("sms@example.com", "s3cret", "sms-user", Some("sms"));
    let id = create(
        &gw,
        &key,
        json!({ "login": "password", "username": "sms@example.com", "password": "s3cret" }),
    )
    .await;
    gw.wait_status(&key, &id, "CHALLENGE", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    let code = standin.code("sms@example.com").unwrap();
    let r = post(
        &gw,
        &key,
        &format!("/v1/sessions/{id}/challenge"),
        json!({ "code": code }),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let s = gw
        .wait_status(&key, &id, "FAILED", Duration::from_secs(30))
        .await;
    assert!(
        s["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("challenge_expired"),
        "{s}"
    );

    // A restart brings the 2FA session back from its sealed cookies: no new login,
    // no new challenge; it still receives.
    let challenges = verified(&rx, "session.challenge").len();
    let gw = gw.restart().await;
    gw.wait_status(&key, &mfa_session, "WORKING", Duration::from_secs(60))
        .await;
    standin
        .inbound("totp@example.com", "grace-hopper", "After the restart")
        .unwrap();
    wait_verified(&rx, &gw, "message.received", |v| {
        v["text"] == "After the restart"
    })
    .await;
    assert_eq!(verified(&rx, "session.challenge").len(), challenges);

    // The RAG actor answers a 1:1 conversation here too: to the sender, through the
    // queue and the caps.
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/kb/documents",
            Some(json!({ "title": "Hours", "text": "Our shop is open Monday to Friday from 9am to 6pm. On Saturdays we open from 10am to 2pm." })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = gw
        .tenant(
            &key,
            Method::PUT,
            &format!("/v1/sessions/{mfa_session}/reply-settings"),
            Some(json!({ "mode": "auto" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    standin
        .inbound(
            "totp@example.com",
            "grace-hopper",
            "What time do you open on Saturday?",
        )
        .unwrap();
    until(
        "the answer reaches LinkedIn",
        Duration::from_secs(60),
        || !standin.sent("totp@example.com").is_empty(),
    )
    .await;
    let answer = &standin.sent("totp@example.com")[0];
    assert_eq!(answer.to, "grace-hopper");
    assert!(answer.text.contains("10am"), "{}", answer.text);
    assert!(standin.refused().is_empty(), "{:?}", standin.refused());
}

#[tokio::test]
async fn linkedin_caps_hold_back_invitations_across_a_sigkill_and_999_pauses_the_account() {
    let standin = standin(StandinConfig::default()).await;
    standin.add_account(USER, "pw", "ada-lovelace", None);
    for i in 0..40 {
        standin.add_member(&format!("member-{i:02}"), "Member", &format!("{i:02}"));
    }
    let mut gw = Gateway::start_with(options(&standin)).await;
    let (_, key) = gw.create_tenant("linkedin-caps").await;
    let id = create(&gw, &key, cookie_config(&standin, USER, test_caps())).await;
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(60))
        .await;

    // Forty invitations in one day: fifteen go (the default cap), the rest wait.
    for i in 0..40 {
        let r = post(
            &gw,
            &key,
            &format!("/v1/sessions/{id}/invitations"),
            json!({ "to": format!("member-{i:02}") }),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    }
    // SIGKILL while they go out.
    until("some invitations go out", Duration::from_secs(60), || {
        standin.invitations(USER).len() >= 4
    })
    .await;
    gw.kill();
    let mut gw = gw.restart().await;
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(60))
        .await;
    until("fifteen invitations", Duration::from_secs(120), || {
        standin.invitations(USER).len() >= 15
    })
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let sent = standin.invitations(USER);
    assert_eq!(sent.len(), 15, "the cap holds");
    let mut to: Vec<&str> = sent.iter().map(|i| i.to.as_str()).collect();
    to.sort_unstable();
    to.dedup();
    assert_eq!(to.len(), 15, "no invitation twice");
    assert_eq!(standin.denied(USER), 0, "LinkedIn never had to push back");
    let r = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/limits"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let l = &r.json;
    assert_eq!(
        l["caps"]["invitations_per_day"],
        json!({"limit": 15, "used": 15, "remaining": 0}),
        "{l}"
    );
    assert!(
        l["next_slot"]["invitation"]["reason"]
            .as_str()
            .unwrap()
            .contains("cap reached"),
        "{l}"
    );
    assert!(l["next_slot"]["invitation"]["at"].as_str().is_some(), "{l}");
    assert_eq!(l["queued"], 25, "{l}");
    let r = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/messages?limit=100"),
            None,
        )
        .await;
    let rows = r.json["data"].as_array().unwrap();
    let count = |s: &str| rows.iter().filter(|m| m["status"] == s).count();
    assert_eq!(
        (count("sent"), count("queued"), count("failed")),
        (15, 25, 0),
        "{}",
        r.text
    );

    // A 999 from LinkedIn: the account rests, the session says so, the send waits.
    standin.throttle(USER, 999, Duration::from_secs(600));
    let r = post(
        &gw,
        &key,
        &format!("/v1/sessions/{id}/messages"),
        json!({ "to": "member-00", "text": "Paused?" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let msg = r.json["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = gw
            .tenant(&key, Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        if s.json["status_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("throttled_by_network"))
        {
            assert_eq!(s.json["status"], "WORKING");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never throttled: {}\n{}",
            s.text,
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = gw
        .tenant(&key, Method::GET, &format!("/v1/messages/{msg}"), None)
        .await;
    assert_eq!(m.json["status"], "queued", "{}", m.text);
    assert!(standin.sent(USER).is_empty());
    let statuses = gw.events_of(&key, "session.status").await;
    assert!(
        statuses.iter().any(|e| e["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("throttled_by_network"))),
        "{statuses:?}"
    );
    let _ = gw.stop();
}

#[tokio::test]
async fn a_suppressed_member_is_never_invited_or_messaged() {
    let standin = standin(StandinConfig::default()).await;
    standin.add_account(USER, "pw", "ada-lovelace", None);
    for (who, first, last) in [
        ("linus-t", "Linus", "Torvalds"),
        ("grace-hopper", "Grace", "Hopper"),
        ("alan-t", "Alan", "Turing"),
    ] {
        standin.add_member(who, first, last);
    }
    let gw = Gateway::start_with(options(&standin)).await;
    let (_, key) = gw.create_tenant("linkedin consent").await;
    let id = create(&gw, &key, cookie_config(&standin, USER, test_caps())).await;
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(60))
        .await;

    // Linus suppressed by member URN, Grace by profile URL (kept as her public id).
    let linus = format!(
        "urn:li:fsd_profile:{}",
        switchboard_actors::testkit::linkedin::member_id("linus-t")
    );
    for (address, reason) in [
        (linus.as_str(), "asked not to be contacted"),
        ("https://www.linkedin.com/in/Grace-Hopper/", "opted out"),
    ] {
        let r = post(
            &gw,
            &key,
            "/v1/suppressions",
            json!({ "channel": "linkedin", "address": address, "reason": reason }),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }

    // Invitations by URL, public id and URN, and a message by URL: each fails
    // `recipient_suppressed` (Linus by URL after his URN is looked up, before anything
    // is sent to him); Alan's invitation goes.
    let site = standin.url().trim_end_matches('/').to_owned();
    let mut refused = vec![];
    for (path, to) in [
        ("invitations", format!("{site}/in/linus-t/")),
        ("invitations", linus.clone()),
        ("invitations", "grace-hopper".to_owned()),
        ("messages", format!("{site}/in/linus-t/")),
        (
            "messages",
            "https://www.linkedin.com/in/grace-hopper/".to_owned(),
        ),
    ] {
        let r = post(
            &gw,
            &key,
            &format!("/v1/sessions/{id}/{path}"),
            if path == "invitations" {
                json!({ "to": to, "note": "Hello" })
            } else {
                json!({ "to": to, "text": "Hello" })
            },
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{to}: {}", r.text);
        refused.push((to, r.json["id"].as_str().unwrap().to_owned()));
    }
    let r = post(
        &gw,
        &key,
        &format!("/v1/sessions/{id}/invitations"),
        json!({ "to": "alan-t" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let alan = r.json["id"].as_str().unwrap().to_owned();
    for (to, m) in &refused {
        let m = super::suppressions::settled(&gw, &key, m).await;
        assert_eq!(m["status"], "failed", "{to}: {m}");
        assert!(
            m["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("recipient_suppressed:"),
            "{to}: {m}"
        );
    }
    gw.wait_message_status(&key, &alan, "sent").await;
    let invited: Vec<String> = standin
        .invitations(USER)
        .into_iter()
        .map(|i| i.to)
        .collect();
    assert_eq!(invited, ["alan-t"], "only Alan is invited");
    assert!(standin.sent(USER).is_empty(), "no message went out");
    let failed = gw.events_of(&key, "message.failed").await;
    for (to, m) in &refused {
        assert!(
            failed.iter().any(|e| e["data"]["message_id"] == m.as_str()),
            "a message.failed for {to}"
        );
    }
}
