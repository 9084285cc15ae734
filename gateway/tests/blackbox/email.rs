//! The e-mail channel end to end: the gateway binary against real Dovecot (IMAP with
//! IDLE, CONDSTORE, QRESYNC) and a real SMTP server (aiosmtpd delivering into
//! Dovecot's maildirs), with webhooks checked by a verifying receiver. Sent mail is
//! checked by reading the other mailbox over IMAP, as its owner would.

use super::receiver::{Behaviour, Delivery, Receiver};
use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use switchboard_actors::testkit::mail::MailServers;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ALICE_PW: &str = "alice-Secret-pw-7";

fn options() -> Options {
    Options {
        env: vec![
            ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS".into(), "true".into()),
            ("SWITCHBOARD_SESSIONS_RESTART_BASE".into(), "200ms".into()),
            ("SWITCHBOARD_SESSIONS_RESTART_MAX".into(), "1s".into()),
            (
                "SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE".into(),
                "0,200ms,500ms,1s".into(),
            ),
        ],
        ..Default::default()
    }
}

fn servers() -> MailServers {
    let servers = MailServers::start().expect("dovecot and aiosmtpd (scripts/test installs them)");
    servers.add_user("alice", ALICE_PW).unwrap();
    servers.add_user("bob", "bob-pw").unwrap();
    servers
}

fn config(servers: &MailServers, password: &str, folders: &[&str]) -> Value {
    let imap = servers.imap_addr();
    let smtp = servers.smtp_addr();
    json!({
        "imap": { "host": "127.0.0.1", "port": imap.port(), "security": "none",
                  "username": "alice", "password": password },
        "smtp": { "host": "127.0.0.1", "port": smtp.port(), "security": "none",
                  "username": "alice", "password": password },
        "from": { "address": "alice@example.test", "name": "Alice" },
        "folders": folders,
        "sent_folder": "Sent",
        "backfill": "none",
    })
}

/// A plain message from bob to alice.
fn mail(message_id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\
Message-ID: <{message_id}>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

async fn setup(gw: &Gateway) -> (String, Receiver) {
    let (_, key) = gw.create_tenant("mail").await;
    let rx = Receiver::start(Behaviour::default()).await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": rx.url, "secret": SECRET,
                         "events": ["message.*", "session.*", "mailbox.*"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (key, rx)
}

async fn create(gw: &Gateway, key: &str, config: Value) -> String {
    let r = gw
        .tenant(
            key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "email", "name": "inbox", "config": config })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(
        !r.text.contains(ALICE_PW),
        "a password was echoed: {}",
        r.text
    );
    r.json["id"].as_str().unwrap().to_owned()
}

async fn wait_status(gw: &Gateway, key: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
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

/// Verified deliveries of one event type, their data by delivery order.
fn verified(rx: &Receiver, ty: &str) -> Vec<Value> {
    rx.deliveries()
        .iter()
        .filter(|d: &&Delivery| d.verifies_with(SECRET))
        .map(Delivery::json)
        .filter(|j| j["type"] == ty)
        .map(|j| j["data"].clone())
        .collect()
}

/// `message.received` deliveries counted by the mail's Message-ID (redeliveries of
/// one event are one).
fn received_by_message_id(rx: &Receiver) -> BTreeMap<String, usize> {
    let mut events = BTreeMap::new();
    for d in rx.deliveries().iter().filter(|d| d.verifies_with(SECRET)) {
        let j = d.json();
        if j["type"] == "message.received" {
            events.insert(
                d.id.clone(),
                j["data"]["meta"]["message_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    let mut counts = BTreeMap::new();
    for mid in events.into_values() {
        *counts.entry(mid).or_default() += 1;
    }
    counts
}

async fn wait_received(rx: &Receiver, gw: &Gateway, message_ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = received_by_message_id(rx);
        if message_ids.iter().all(|m| got.contains_key(*m)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never received {message_ids:?}; got {got:?}\n--- gateway log ---\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[tokio::test]
async fn mail_is_received_with_its_parts_and_replies_go_out_threaded_and_into_sent() {
    let servers = servers();
    let gw = Gateway::start_with(options()).await;
    let (key, rx) = setup(&gw).await;
    let id = create(&gw, &key, config(&servers, ALICE_PW, &["INBOX"])).await;
    let view = wait_status(&gw, &key, &id, "WORKING").await;
    assert_eq!(view["config"]["imap"]["password_set"], true, "{view}");
    assert!(!view.to_string().contains(ALICE_PW));

    // The connection test logs in to both servers with the sealed secrets.
    let t = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/test-connection"),
            None,
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(t.json["ok"], true, "{}", t.text);
    assert_eq!(t.json["imap"]["idle"], true, "{}", t.text);

    // A message with an attachment.
    let with_file = b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\n\
Subject: Quote for March\r\nMessage-ID: <quote-1@example.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
Here is the quote.\r\n--b\r\nContent-Type: application/pdf; name=\"q.pdf\"\r\n\
Content-Disposition: attachment; filename=\"q.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
JVBERi0xLjQK\r\n--b--\r\n";
    servers.deliver("alice", with_file).unwrap();
    // An HTML-only one.
    servers
        .deliver(
            "alice",
            b"From: shop@example.test\r\nTo: alice@example.test\r\nSubject: Your order\r\n\
Message-ID: <html-1@example.test>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><h1>Order 77</h1><p>Total: <b>42 EUR</b></p></body></html>\r\n",
        )
        .unwrap();
    wait_received(&rx, &gw, &["quote-1@example.test", "html-1@example.test"]).await;
    let received = verified(&rx, "message.received");
    let quote = received
        .iter()
        .find(|d| d["meta"]["message_id"] == "quote-1@example.test")
        .unwrap();
    assert_eq!(quote["subject"], "Quote for March");
    assert_eq!(quote["from"], "bob@example.test");
    assert_eq!(quote["text"].as_str().unwrap().trim(), "Here is the quote.");
    assert!(quote["thread_id"].as_str().unwrap().starts_with("thr_"));
    assert_eq!(quote["attachments"][0]["filename"], "q.pdf");
    assert_eq!(quote["attachments"][0]["mime_type"], "application/pdf");
    assert_eq!(quote["attachments"][0]["size"], 9);
    // Kept in the media store too: the same bytes from GET /v1/media/{id}.
    let kept = quote["attachments"][0]["media_id"].as_str().unwrap();
    assert_eq!(
        quote["attachments"][0]["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"%PDF-1.4\n"))
    );
    let stored = gw
        .request(
            Method::GET,
            &format!("/v1/media/{kept}"),
            &[("x-api-key", &key)],
            None,
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    assert_eq!(stored.text, "%PDF-1.4\n");
    assert_eq!(stored.headers["content-type"], "application/pdf");
    let html = received
        .iter()
        .find(|d| d["meta"]["message_id"] == "html-1@example.test")
        .unwrap();
    let text = html["text"].as_str().unwrap();
    assert!(
        text.contains("Order 77") && text.contains("Total: 42 EUR"),
        "{text}"
    );
    assert!(!text.contains('<'), "{text}");

    // Reply to the quote through the gateway.
    let list = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/messages?limit=50"),
            None,
        )
        .await;
    let original = list.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["external_id"]
                .as_str()
                .is_some_and(|e| e.starts_with("INBOX/"))
                && m["text"].as_str().is_some_and(|t| t.contains("quote"))
        })
        .unwrap_or_else(|| panic!("the quote is not listed: {}", list.text))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = gw
        .request(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            &[("x-api-key", &key), ("content-type", "application/json")],
            Some(
                json!({ "to": "bob@example.test", "text": "Thanks, accepted.", "reply_to": original,
                        "html": "<p>Thanks, <b>accepted</b>.</p>" })
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let sent_id = r.json["id"].as_str().unwrap().to_owned();

    // The quote's attachment, fetched from the mailbox by its index.
    let file = gw
        .request(
            Method::GET,
            &format!("/v1/messages/{original}/attachments/0"),
            &[("x-api-key", &key)],
            None,
        )
        .await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.text);
    assert_eq!(file.text, "%PDF-1.4\n");
    assert_eq!(file.headers["content-type"], "application/pdf");
    assert_eq!(
        file.headers["content-disposition"],
        "attachment; filename=\"q.pdf\""
    );
    let missing = gw
        .request(
            Method::GET,
            &format!("/v1/messages/{original}/attachments/1"),
            &[("x-api-key", &key)],
            None,
        )
        .await;
    assert_eq!(
        missing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        missing.text
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !verified(&rx, "message.sent")
        .iter()
        .any(|d| d["message_id"] == sent_id.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "never sent: {:?}\n{}",
            verified(&rx, "message.failed"),
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        verified(&rx, "message.delivered").is_empty(),
        "no delivery claim for e-mail"
    );

    // In bob's mailbox, threaded under the quote.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let inbox = servers.read_folder("bob", "INBOX").await.unwrap();
        if let Some(m) = inbox
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .find(|m| m.contains("Thanks, accepted."))
        {
            break m;
        }
        assert!(Instant::now() < deadline, "the reply never reached bob");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        header(&reply, "In-Reply-To"),
        Some("<quote-1@example.test>"),
        "{reply}"
    );
    assert!(
        header(&reply, "References")
            .unwrap()
            .contains("<quote-1@example.test>"),
        "{reply}"
    );
    assert_eq!(
        header(&reply, "Subject"),
        Some("Re: Quote for March"),
        "{reply}"
    );
    assert!(
        reply.contains("multipart/alternative") && reply.contains("<b>accepted</b>"),
        "{reply}"
    );
    let reply_id = header(&reply, "Message-ID").unwrap().to_owned();
    assert!(reply_id.contains(&sent_id), "{reply_id}");
    // And a copy in alice's Sent.
    let sent = servers.read_folder("alice", "Sent").await.unwrap();
    assert!(
        sent.iter()
            .any(|m| String::from_utf8_lossy(m).contains(&reply_id)),
        "no copy in Sent"
    );
}

#[tokio::test]
async fn nothing_is_missed_or_doubled_across_stops_restarts_kills_and_a_uidvalidity_reset() {
    let servers = servers();
    let mut gw = Gateway::start_with(options()).await;
    let (key, rx) = setup(&gw).await;
    let id = create(&gw, &key, config(&servers, ALICE_PW, &["INBOX", "Support"])).await;
    servers.recreate_folder("alice", "Support").unwrap();
    wait_status(&gw, &key, &id, "WORKING").await;
    servers
        .deliver("alice", &mail("a1@x", "one", "first"))
        .unwrap();
    wait_received(&rx, &gw, &["a1@x"]).await;

    // Delivered while the gateway is stopped.
    gw.stop();
    servers
        .deliver("alice", &mail("a2@x", "two", "while stopped"))
        .unwrap();
    servers
        .deliver_to(
            "alice",
            "Support",
            &mail("s1@x", "s", "support while stopped"),
        )
        .unwrap();
    let mut gw = gw.restart().await;
    wait_received(&rx, &gw, &["a2@x", "s1@x"]).await;

    // Dovecot restarted mid-IDLE: the session reconnects and catches up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    servers.restart_imap().unwrap();
    servers
        .deliver("alice", &mail("a3@x", "three", "after the IMAP restart"))
        .unwrap();
    wait_received(&rx, &gw, &["a3@x"]).await;

    // Killed (SIGKILL) with mail arriving around it.
    servers
        .deliver("alice", &mail("a4@x", "four", "before the kill"))
        .unwrap();
    gw.kill();
    servers
        .deliver("alice", &mail("a5@x", "five", "after the kill"))
        .unwrap();
    let gw = gw.restart().await;
    wait_received(&rx, &gw, &["a4@x", "a5@x"]).await;

    // The Support folder is recreated: one reset, its old mail not reported again.
    servers.recreate_folder("alice", "Support").unwrap();
    servers
        .deliver("alice", &mail("a6@x", "six", "poke"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while verified(&rx, "mailbox.reset").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no mailbox.reset\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    servers
        .deliver_to("alice", "Support", &mail("s2@x", "s", "after the reset"))
        .unwrap();
    servers
        .deliver("alice", &mail("a7@x", "seven", "poke again"))
        .unwrap();
    wait_received(&rx, &gw, &["a6@x", "a7@x", "s2@x"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let counts = received_by_message_id(&rx);
    let want = [
        "a1@x", "a2@x", "a3@x", "a4@x", "a5@x", "a6@x", "a7@x", "s1@x", "s2@x",
    ];
    for m in want {
        assert_eq!(
            counts.get(m),
            Some(&1),
            "{m} arrived {:?} times: {counts:?}",
            counts.get(m)
        );
    }
    assert_eq!(counts.len(), want.len(), "{counts:?}");
    let resets = verified(&rx, "mailbox.reset");
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!(resets[0]["folder"], "Support");
    assert_ne!(
        resets[0]["uid_validity"],
        resets[0]["previous_uid_validity"]
    );
}

#[tokio::test]
async fn a_wrong_password_fails_once_and_never_tries_again() {
    let servers = servers();
    let gw = Gateway::start_with(options()).await;
    let (key, rx) = setup(&gw).await;
    let id = create(&gw, &key, config(&servers, "wrong-password", &["INBOX"])).await;
    let view = wait_status(&gw, &key, &id, "FAILED").await;
    assert_eq!(view["status_reason"], "auth_failed", "{view}");
    let attempts = |log: &str| log.lines().filter(|l| l.contains("auth failed")).count();
    let before = servers.dovecot_log();
    let logins_before = attempts(&before);
    assert!(logins_before >= 1, "{before}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = servers.dovecot_log();
    assert_eq!(
        attempts(&after),
        logins_before,
        "logins were retried:\n{after}"
    );
    let failed: Vec<Value> = verified(&rx, "session.status")
        .into_iter()
        .filter(|d| d["status"] == "FAILED")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["reason"], "auth_failed");

    // The connection test says the same, by server.
    let t = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/test-connection"),
            None,
        )
        .await;
    assert_eq!(t.json["ok"], false, "{}", t.text);
    assert_eq!(t.json["imap"]["error"], "auth_failed", "{}", t.text);
    assert_eq!(t.json["smtp"]["ok"], false, "{}", t.text);
}

#[tokio::test]
async fn bad_mail_is_stored_or_refused_with_a_reason_and_flag_changes_and_deletes_are_reported() {
    let servers = servers();
    let gw = Gateway::start_with(options()).await;
    let (key, rx) = setup(&gw).await;
    let id = create(&gw, &key, config(&servers, ALICE_PW, &["INBOX"])).await;
    wait_status(&gw, &key, &id, "WORKING").await;

    // Broken MIME: a boundary that never closes, in a charset nobody knows.
    servers
        .deliver(
            "alice",
            b"From: bob@example.test\r\nSubject: broken\r\nMessage-ID: <broken@x>\r\n\
Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain; charset=x-nope\r\n\r\n\
still readable\r\n",
        )
        .unwrap();
    // 8-bit bytes in the headers, undeclared.
    servers
        .deliver(
            "alice",
            b"From: Ren\xe9 <rene@example.test>\r\nSubject: caf\xe9 \xff\r\nMessage-ID: <eight@x>\r\n\r\nbonjour\r\n",
        )
        .unwrap();
    // No Message-ID at all.
    servers
        .deliver(
            "alice",
            b"From: bob@example.test\r\nSubject: no id\r\n\r\nwho am I\r\n",
        )
        .unwrap();
    // A 25 MB attachment.
    let mut big = String::from(
        "From: bob@example.test\r\nSubject: big\r\nMessage-ID: <big@x>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nthe scan\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"scan.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n";
    // 76 base64 characters carry 57 bytes.
    for _ in 0..(25 * 1024 * 1024 / 57 + 1) {
        big.push_str(line);
    }
    big.push_str("--b--\r\n");
    servers.deliver("alice", big.as_bytes()).unwrap();
    servers
        .deliver("alice", &mail("after@x", "after", "the session kept going"))
        .unwrap();
    wait_received(&rx, &gw, &["broken@x", "eight@x", "big@x", "after@x"]).await;
    let received = verified(&rx, "message.received");
    let by = |mid: &str| {
        received
            .iter()
            .find(|d| d["meta"]["message_id"] == mid)
            .unwrap_or_else(|| panic!("{mid} not received"))
            .clone()
    };
    assert!(
        by("broken@x")["text"]
            .as_str()
            .unwrap()
            .contains("still readable")
    );
    assert!(
        by("eight@x")["subject"]
            .as_str()
            .unwrap()
            .starts_with("caf")
    );
    assert_eq!(by("eight@x")["from"], "rene@example.test");
    let big = by("big@x");
    assert_eq!(big["attachments"][0]["filename"], "scan.bin");
    assert!(big["attachments"][0]["size"].as_u64().unwrap() >= 25 * 1024 * 1024);
    let anonymous = received
        .iter()
        .find(|d| d["subject"] == "no id")
        .expect("the message without Message-ID was received");
    assert_eq!(anonymous["meta"]["message_id_missing"], true);
    assert!(
        anonymous["meta"]["message_id"]
            .as_str()
            .unwrap()
            .ends_with("@no-message-id.invalid")
    );
    // The session never restarted for any of it.
    let starts = verified(&rx, "session.status")
        .iter()
        .filter(|d| d["status"] == "WORKING")
        .count();
    assert_eq!(starts, 1);

    // Read in a mail client: message.updated; deleted there: message.deleted.
    servers
        .mark("alice", "INBOX", "after@x", false)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !verified(&rx, "message.updated")
        .iter()
        .any(|d| d["seen"] == true)
    {
        assert!(
            Instant::now() < deadline,
            "no message.updated\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after_id = by("after@x")["external_id"].clone();
    let updated = verified(&rx, "message.updated");
    assert_eq!(updated[0]["external_id"], after_id);
    assert!(
        updated[0]["message_id"]
            .as_str()
            .unwrap()
            .starts_with("msg_")
    );
    servers
        .mark("alice", "INBOX", "after@x", true)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while verified(&rx, "message.deleted").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no message.deleted\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(verified(&rx, "message.deleted")[0]["external_id"], after_id);
}

#[tokio::test]
async fn xoauth2_logs_in_refreshes_expired_tokens_and_sends() {
    use switchboard_actors::testkit::oauth::OAuthServer;
    let servers = servers();
    let oauth = OAuthServer::start("alice", "1//refresh-alice", servers.oauth_tokens_file())
        .await
        .unwrap();
    servers.enable_oauth(&oauth.introspection_url()).unwrap();
    let grant = json!({ "token_url": oauth.token_url(), "client_id": "switchboard-test",
                        "client_secret": "client-Secret-9", "refresh_token": "1//refresh-alice",
                        "access_token": "ya29.stale-from-the-caller" });
    let mut config = config(&servers, ALICE_PW, &["INBOX"]);
    for server in ["imap", "smtp"] {
        let s = config[server].as_object_mut().unwrap();
        s.remove("password");
        s.insert("oauth2".into(), grant.clone());
    }
    let gw = Gateway::start_with(options()).await;
    let (key, rx) = setup(&gw).await;
    let id = create(&gw, &key, config).await;
    let view = wait_status(&gw, &key, &id, "WORKING").await;
    for secret in ["client-Secret-9", "1//refresh-alice", "ya29."] {
        assert!(!view.to_string().contains(secret), "{view}");
    }
    // The caller's stale token was refused, so it was refreshed.
    assert!(oauth.refreshes() >= 1);
    assert!(
        oauth.introspections() >= 2,
        "Dovecot asked about the tokens"
    );
    servers
        .deliver("alice", &mail("o1@x", "oauth", "over xoauth2"))
        .unwrap();
    wait_received(&rx, &gw, &["o1@x"]).await;

    let send = |text: &'static str| {
        let (gw, key, id) = (&gw, key.clone(), id.clone());
        async move {
            let r = gw
                .request(
                    Method::POST,
                    &format!("/v1/sessions/{id}/messages"),
                    &[("x-api-key", &key), ("content-type", "application/json")],
                    Some(
                        json!({ "to": "bob@example.test", "subject": "hello", "text": text })
                            .to_string()
                            .into_bytes(),
                    ),
                )
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        }
    };
    let in_bob = |text: &'static str| {
        let servers = &servers;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let inbox = servers.read_folder("bob", "INBOX").await.unwrap();
                if inbox
                    .iter()
                    .any(|m| String::from_utf8_lossy(m).contains(text))
                {
                    return;
                }
                assert!(Instant::now() < deadline, "`{text}` never reached bob");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    send("first over xoauth2").await;
    in_bob("first over xoauth2").await;

    // An hour later: every token expired. The IMAP reconnect and the next send
    // refresh it.
    let before = oauth.refreshes();
    oauth.expire_all();
    servers.restart_imap().unwrap();
    servers
        .deliver("alice", &mail("o2@x", "oauth", "after expiry"))
        .unwrap();
    wait_received(&rx, &gw, &["o2@x"]).await;
    send("second after expiry").await;
    in_bob("second after expiry").await;
    assert!(oauth.refreshes() > before);
    assert!(
        verified(&rx, "message.failed").is_empty(),
        "{:?}",
        verified(&rx, "message.failed")
    );
}

#[tokio::test]
async fn the_rag_actor_answers_mail_in_its_thread_with_the_subject_kept() {
    let servers = servers();
    let gw = Gateway::start_with(options()).await;
    let (key, _rx) = setup(&gw).await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/kb/documents",
            Some(json!({ "title": "Opening hours", "text": "# Opening hours\n\nOur shop is open Monday to Friday from 9am to 6pm. On Saturdays we open from 10am to 2pm. We are closed on Sundays." })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = create(&gw, &key, config(&servers, ALICE_PW, &["INBOX"])).await;
    let r = gw
        .tenant(
            &key,
            Method::PUT,
            &format!("/v1/sessions/{id}/reply-settings"),
            Some(json!({ "mode": "auto" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_status(&gw, &key, &id, "WORKING").await;
    servers
        .deliver(
            "alice",
            &mail(
                "question-1@example.test",
                "Saturday visit",
                "When are you open on Saturdays?",
            ),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let answer = loop {
        let inbox = servers.read_folder("bob", "INBOX").await.unwrap();
        if let Some(m) = inbox.into_iter().next() {
            break String::from_utf8_lossy(&m).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no answer reached bob\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        header(&answer, "Subject"),
        Some("Re: Saturday visit"),
        "{answer}"
    );
    assert_eq!(
        header(&answer, "In-Reply-To"),
        Some("<question-1@example.test>"),
        "{answer}"
    );
    assert!(answer.contains("10am"), "{answer}");
}

#[tokio::test]
async fn a_server_without_idle_is_polled() {
    use switchboard_actors::testkit::mail::MailOptions;
    let servers = MailServers::start_with(MailOptions {
        no_idle: true,
        ..MailOptions::default()
    })
    .unwrap();
    servers.add_user("alice", ALICE_PW).unwrap();
    let mut opts = options();
    opts.env
        .push(("SWITCHBOARD_EMAIL_POLL_INTERVAL".into(), "1s".into()));
    let gw = Gateway::start_with(opts).await;
    let (key, rx) = setup(&gw).await;
    let id = create(&gw, &key, config(&servers, ALICE_PW, &["INBOX"])).await;
    let view = wait_status(&gw, &key, &id, "WORKING").await;
    assert_eq!(view["network"]["imap"]["idle"], false, "{view}");
    servers
        .deliver("alice", &mail("p1@x", "polled", "found by polling"))
        .unwrap();
    servers
        .deliver("alice", &mail("p2@x", "polled", "and another"))
        .unwrap();
    wait_received(&rx, &gw, &["p1@x", "p2@x"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = received_by_message_id(&rx);
    assert_eq!(counts.get("p1@x"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("p2@x"), Some(&1), "{counts:?}");
}

/// Serves `body` as `content_type` to every request on a loopback port: its URL.
async fn file_server(body: Vec<u8>, content_type: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}/files/price%20list.pdf")
}

/// The decoded bytes of the attachment named `filename` in a raw mail.
fn attachment_bytes(raw: &str, filename: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let at = raw.find(&format!("filename=\"{filename}\""))?;
    let rest = &raw[at..];
    let start = rest.find("\r\n\r\n")? + 4;
    let end = rest[start..].find("\r\n--")? + start;
    let b64: String = rest[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[tokio::test]
async fn stored_and_fetched_files_go_out_as_attachments_byte_for_byte() {
    use sha2::{Digest, Sha256};
    let servers = servers();
    let gw = Gateway::start_with(options()).await;
    let (key, _rx) = setup(&gw).await;
    let id = create(&gw, &key, config(&servers, ALICE_PW, &["INBOX"])).await;
    wait_status(&gw, &key, &id, "WORKING").await;

    // A stored file (several segments of the store), and one fetched from a URL.
    let stored: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let r = gw
        .request(
            Method::POST,
            "/v1/media?filename=report.bin",
            &[
                ("x-api-key", &key),
                ("content-type", "application/octet-stream"),
            ],
            Some(stored.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let media_id = r.json["id"].as_str().unwrap().to_owned();
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend((0..3000u32).map(|i| (i % 251) as u8));
    let url = file_server(pdf.clone(), "application/pdf").await;
    for body in [
        json!({ "to": "bob@example.test", "subject": "Your report", "media": { "id": media_id }, "caption": "Attached: the report" }),
        json!({ "to": "bob@example.test", "subject": "Prices", "media": { "url": url }, "caption": "Attached: prices" }),
    ] {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                &format!("/v1/sessions/{id}/messages"),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (report, prices) = loop {
        let inbox: Vec<String> = servers
            .read_folder("bob", "INBOX")
            .await
            .unwrap()
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        let find = |t: &str| inbox.iter().find(|m| m.contains(t)).cloned();
        if let (Some(a), Some(b)) = (find("Attached: the report"), find("Attached: prices")) {
            break (a, b);
        }
        assert!(
            Instant::now() < deadline,
            "the mails never reached bob\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = attachment_bytes(&report, "report.bin").expect("report.bin attached");
    assert_eq!(Sha256::digest(&got), Sha256::digest(&stored));
    assert!(report.contains("application/octet-stream"), "{report}");
    let got = attachment_bytes(&prices, "price list.pdf")
        .expect("the fetched file attached, named from its URL");
    assert_eq!(Sha256::digest(&got), Sha256::digest(&pdf));
    assert!(prices.contains("application/pdf"), "{prices}");
}

/// Sends `text` to `to` from session `id`; the message's id.
async fn send_mail(gw: &Gateway, key: &str, id: &str, to: &str, text: &str) -> String {
    let r = gw
        .tenant(
            key,
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({ "to": to, "subject": "News", "text": text })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

/// Waits for message `id` to settle; its error when it failed.
async fn failure(gw: &Gateway, key: &str, id: &str) -> Option<String> {
    let m = super::suppressions::settled(gw, key, id).await;
    (m["status"] == "failed").then(|| m["error"].as_str().unwrap_or_default().to_owned())
}

async fn suppressed(gw: &Gateway, key: &str) -> Vec<Value> {
    let r = gw.tenant(key, Method::GET, "/v1/suppressions", None).await;
    r.json["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn bounces_and_one_click_unsubscribes_stop_further_mail() {
    let servers = servers();
    servers.add_user("carol", "carol-pw").unwrap();
    let mut opts = options();
    opts.env.push((
        "SWITCHBOARD_PUBLIC_URL".into(),
        "https://gw.example.test".into(),
    ));
    let gw = Gateway::start_with(opts).await;
    let (key, _rx) = setup(&gw).await;
    let id = create(&gw, &key, config(&servers, ALICE_PW, &["INBOX"])).await;
    wait_status(&gw, &key, &id, "WORKING").await;
    let r = gw
        .tenant(
            &key,
            Method::PUT,
            "/v1/consent",
            Some(json!({ "list_unsubscribe": { "enabled": true, "mailto": "unsubscribe@example.test" } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // A hard bounce at the SMTP server (550 5.1.1: no such user): the send fails and
    // the address goes on the list; the next send to it never reaches the server.
    let first = send_mail(&gw, &key, &id, "ghost@example.test", "Hello").await;
    let why = failure(&gw, &key, &first).await.expect("a bounce fails");
    assert!(
        why.starts_with("recipient_bounced: ghost@example.test"),
        "{why}"
    );
    let bounced = gw.events_of(&key, "contact.bounced").await;
    assert_eq!(bounced.len(), 1, "{bounced:?}");
    assert_eq!(bounced[0]["data"]["via"], "smtp");
    assert_eq!(bounced[0]["data"]["message_id"], first.as_str());
    let list = suppressed(&gw, &key).await;
    assert_eq!(
        (&list[0]["address"], &list[0]["reason"], &list[0]["source"]),
        (
            &json!("ghost@example.test"),
            &json!("bounced"),
            &json!("bounce")
        )
    );
    let again = send_mail(&gw, &key, &id, "Ghost <GHOST@example.test>", "Hello?").await;
    let why = failure(&gw, &key, &again).await.expect("suppressed");
    assert!(why.starts_with("recipient_suppressed"), "{why}");

    // A bounce reported later, as a delivery status notification in the mailbox.
    let dsn = b"From: MAILER-DAEMON@mx.example.test\r\nTo: alice@example.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.example.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n\
--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\n\
Final-Recipient: rfc822; carol@example.test\r\nAction: failed\r\nStatus: 5.2.1\r\n\
Diagnostic-Code: smtp; 550 5.2.1 mailbox disabled\r\n\r\n--r--\r\n";
    servers.deliver("alice", dsn).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.events_of(&key, "contact.bounced").await.len() < 2 {
        assert!(Instant::now() < deadline, "no bounce from the DSN");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bounced = gw.events_of(&key, "contact.bounced").await;
    let carol = bounced
        .iter()
        .find(|e| e["data"]["address"] == "carol@example.test")
        .unwrap();
    assert_eq!(carol["data"]["via"], "dsn", "{carol}");
    let to_carol = send_mail(&gw, &key, &id, "carol@example.test", "Hello").await;
    let why = failure(&gw, &key, &to_carol).await.expect("suppressed");
    assert!(why.starts_with("recipient_suppressed"), "{why}");
    assert!(
        servers
            .read_folder("carol", "INBOX")
            .await
            .unwrap_or_default()
            .is_empty()
    );

    // Mail to Bob carries the unsubscribe headers; the one-click link (POST) puts
    // him on the list, once; fetching it (GET) only shows a button.
    let to_bob = send_mail(&gw, &key, &id, "bob@example.test", "Our news").await;
    assert_eq!(failure(&gw, &key, &to_bob).await, None);
    let inbox = servers.read_folder("bob", "INBOX").await.unwrap();
    assert_eq!(inbox.len(), 1);
    let raw = String::from_utf8_lossy(&inbox[0]).replace("\r\n ", " ");
    assert_eq!(
        header(&raw, "List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click"),
        "{raw}"
    );
    let links = header(&raw, "List-Unsubscribe")
        .expect("List-Unsubscribe")
        .to_owned();
    assert!(
        links.ends_with("<mailto:unsubscribe@example.test?subject=unsubscribe>"),
        "{links}"
    );
    let path = links
        .strip_prefix("<https://gw.example.test")
        .and_then(|l| l.split_once('>'))
        .map(|(p, _)| p.to_owned())
        .expect("a one-click link of this gateway first");
    let page = gw.request(Method::GET, &path, &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("bob@example.test") && page.text.contains("method=post"));
    assert_eq!(
        suppressed(&gw, &key).await.len(),
        2,
        "a GET unsubscribes nobody"
    );
    for _ in 0..2 {
        let r = gw
            .request(
                Method::POST,
                &path,
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(b"List-Unsubscribe=One-Click".to_vec()),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let opted = gw.events_of(&key, "contact.opted_out").await;
    assert_eq!(opted.len(), 1, "once: {opted:?}");
    assert_eq!(opted[0]["data"]["address"], "bob@example.test");
    assert_eq!(opted[0]["data"]["via"], "list_unsubscribe");
    let bob = suppressed(&gw, &key)
        .await
        .into_iter()
        .find(|e| e["address"] == "bob@example.test")
        .expect("bob is listed");
    assert_eq!(bob["source"], "list_unsubscribe");
    // Nothing more reaches him, alone or among others.
    for to in [
        "bob@example.test",
        "carol@example.test, Bob <bob@example.test>",
    ] {
        let m = send_mail(&gw, &key, &id, to, "More news").await;
        let why = failure(&gw, &key, &m).await.expect("suppressed");
        assert!(why.starts_with("recipient_suppressed"), "{to}: {why}");
    }
    assert_eq!(servers.read_folder("bob", "INBOX").await.unwrap().len(), 1);

    // A link this gateway did not make (or changed by a byte) leads nowhere.
    let mut forged = path.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for p in [forged.as_str(), "/v1/unsubscribe/nonsense"] {
        let r = gw.request(Method::POST, p, &[], None).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "unknown_link"),
            "{p}: {}",
            r.text
        );
    }
    assert_eq!(suppressed(&gw, &key).await.len(), 3);
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// On SQLite: which of the database's files (with its write-ahead log) hold `what`.
fn in_database(gw: &Gateway, what: &str) -> Option<Vec<std::path::PathBuf>> {
    let super::support::TestDb::Sqlite(path) = &gw.db else {
        return None;
    };
    let dir = path.parent().unwrap();
    Some(
        files_under(dir)
            .into_iter()
            .filter(|(p, b)| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(".db"))
                    && contains(b, what)
            })
            .map(|(p, _)| p)
            .collect(),
    )
}

async fn export(gw: &Gateway, key: &str, who: &str) -> Value {
    let r = gw
        .tenant(
            key,
            Method::GET,
            &format!("/v1/contacts/{who}/export"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json
}

#[tokio::test]
async fn a_contact_is_exported_whole_and_erased_everywhere() {
    let servers = servers();
    servers.add_user("carol", "carol-pw").unwrap();
    let gw = Gateway::start_with(options()).await;
    let (key, rx) = setup(&gw).await;
    let id = create(&gw, &key, config(&servers, ALICE_PW, &["INBOX"])).await;
    wait_status(&gw, &key, &id, "WORKING").await;

    // Bob writes with a payslip attached, Carol writes, Alice answers Bob.
    let from_bob = b"From: Bob <Bob@example.test>\r\nTo: alice@example.test\r\nSubject: My loan\r\n\
Message-ID: <bob-1@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nBOB-WORDS-7731 about my loan\r\n\
--b\r\nContent-Type: text/plain; name=\"payslip.txt\"\r\nContent-Disposition: attachment; filename=\"payslip.txt\"\r\n\r\n\
BOB-FILE-5512\r\n--b--\r\n";
    servers.deliver("alice", from_bob).unwrap();
    servers
        .deliver(
            "alice",
            b"From: carol@example.test\r\nTo: alice@example.test\r\nSubject: Hi\r\n\
Message-ID: <carol-1@example.test>\r\n\r\nCAROL-WORDS-4410\r\n",
        )
        .unwrap();
    wait_received(&rx, &gw, &["bob-1@example.test", "carol-1@example.test"]).await;
    let reply = send_mail(&gw, &key, &id, "bob@example.test", "BOB-REPLY-9921").await;
    assert_eq!(failure(&gw, &key, &reply).await, None);

    // Export: all of Bob, nothing of Carol (and the other way round).
    let bob = export(&gw, &key, "Bob%40Example.test").await;
    assert_eq!(bob["address"], "bob@example.test");
    let texts: Vec<&str> = bob["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts.len(), 2, "{bob}");
    assert!(
        texts.iter().any(|t| t.contains("BOB-WORDS-7731")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("BOB-REPLY-9921")),
        "{texts:?}"
    );
    let types: Vec<&str> = bob["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"message.received") && types.contains(&"message.sent"),
        "{types:?}"
    );
    let media = bob["media"].as_array().unwrap().clone();
    assert_eq!(media.len(), 1, "{bob}");
    let file_id = media[0].as_str().unwrap().to_owned();
    let file = gw
        .request(
            Method::GET,
            &format!("/v1/media/{file_id}"),
            &[("x-api-key", &key)],
            None,
        )
        .await;
    assert_eq!(file.text.trim(), "BOB-FILE-5512");
    let doc = bob.to_string();
    assert!(!doc.contains("carol") && !doc.contains("CAROL"), "{doc}");
    let carol = export(&gw, &key, "carol@example.test").await;
    assert_eq!(carol["messages"].as_array().unwrap().len(), 1);
    assert!(!carol.to_string().to_lowercase().contains("bob"), "{carol}");
    let (_, stranger) = gw.create_tenant("someone else").await;
    let theirs = export(&gw, &stranger, "bob@example.test").await;
    assert!(
        theirs["messages"].as_array().unwrap().is_empty(),
        "{theirs}"
    );

    // The database holds Bob's address in plain text before (the scan sees it)…
    if let Some(found) = in_database(&gw, "bob@example.test") {
        assert!(!found.is_empty(), "the scan reads the database");
    }
    let files_before = files_under(&gw.data_dir.join("media")).len();

    // Bad input changes nothing.
    for (m, path) in [
        (Method::GET, "/v1/contacts/%20/export"),
        (
            Method::DELETE,
            "/v1/contacts/bob%40example.test?suppress=maybe",
        ),
    ] {
        let r = gw.tenant(&key, m, path, None).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            r.text
        );
    }
    assert_eq!(
        export(&gw, &key, "bob@example.test").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Erasure (kept off the suppression list, so no row needs the address).
    let r = gw
        .tenant(
            &key,
            Method::DELETE,
            "/v1/contacts/bob%40example.test?suppress=false",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["messages"], 2, "{}", r.text);
    assert_eq!(r.json["media"], 1, "{}", r.text);
    assert!(r.json["events"].as_u64().unwrap() >= 2, "{}", r.text);
    assert!(r.json["suppressed"].as_array().unwrap().is_empty());

    let after = export(&gw, &key, "bob@example.test").await;
    for part in ["messages", "events", "drafts", "media"] {
        assert!(
            after[part].as_array().unwrap().is_empty(),
            "{part}: {after}"
        );
    }
    // The rows stay, emptied: the message has no text, the event keeps its id and
    // type with the personal fields erased.
    let m = gw
        .tenant(&key, Method::GET, &format!("/v1/messages/{reply}"), None)
        .await;
    assert_eq!(
        (m.json["text"].clone(), m.json["peer"].clone()),
        (Value::Null, json!("[erased]")),
        "{}",
        m.text
    );
    let received = gw.events_of(&key, "message.received").await;
    let bobs = received
        .iter()
        .find(|e| e["data"]["erased"] == true)
        .expect("Bob's message.received, erased");
    assert_eq!(bobs["data"]["text"], "[erased]");
    assert_eq!(bobs["data"]["from"], "[erased]");
    assert!(bobs["id"].as_str().unwrap().starts_with("evt_"));
    assert!(received.iter().any(|e| {
        e["data"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("CAROL-WORDS"))
    }));
    let file = gw
        .request(
            Method::GET,
            &format!("/v1/media/{file_id}"),
            &[("x-api-key", &key)],
            None,
        )
        .await;
    assert_eq!(file.status, StatusCode::NOT_FOUND);
    assert_eq!(
        files_under(&gw.data_dir.join("media")).len(),
        files_before - 1
    );
    // …and nothing of Bob after: no row, free page or log frame holds his address
    // (bodies and files are sealed at rest, so their text is checked through the
    // API above; the media directory lost his file).
    if let Some(found) = in_database(&gw, "bob@example.test") {
        assert!(found.is_empty(), "still in {found:?}");
    }
    for (p, bytes) in files_under(&gw.data_dir.join("media")) {
        assert!(!contains(&bytes, "BOB-FILE-5512"), "{p:?}");
    }
    // Carol is untouched; erased without `suppress=false`, she is on the list.
    assert_eq!(
        export(&gw, &key, "carol@example.test").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = gw
        .tenant(
            &key,
            Method::DELETE,
            "/v1/contacts/carol%40example.test",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["suppressed"][0]["source"], "erasure", "{}", r.text);
    assert_eq!(r.json["suppressed"][0]["channel"], "email", "{}", r.text);
    let m = send_mail(&gw, &key, &id, "carol@example.test", "Still there?").await;
    assert!(
        failure(&gw, &key, &m)
            .await
            .unwrap()
            .starts_with("recipient_suppressed")
    );
    // Both requests are in the audit log, the address only as a hash.
    if let Some(found) = in_database(&gw, "contact.erase") {
        assert!(!found.is_empty(), "audited");
    }
}
