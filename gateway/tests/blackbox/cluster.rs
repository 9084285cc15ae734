//! Replicas on one database: sessions spread by lease over three gateway processes
//! on one real Postgres, taken over when a replica is SIGKILLed (within the lease
//! TTL and ten seconds), handed over at once on a graceful stop; on SQLite the one
//! process holds every session.

use super::receiver::{Behaviour, Receiver};
use super::support::{Gateway, Options, TestDb};
use http::{Method, StatusCode};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn options() -> Options {
    Options {
        env: vec![
            ("SWITCHBOARD_MASTER_KEY".into(), MASTER_KEY.into()),
            ("SWITCHBOARD_CLUSTER_LEASE_TTL".into(), "3s".into()),
            ("SWITCHBOARD_SESSIONS_RESTART_BASE".into(), "200ms".into()),
        ],
        ..Default::default()
    }
}

/// Replica id → the sessions it holds, from `GET /v1/cluster`.
async fn cluster(gw: &Gateway) -> HashMap<String, Vec<String>> {
    let r = gw.admin(Method::GET, "/v1/cluster", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rep| {
            let sessions = rep["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            (rep["id"].as_str().unwrap().to_owned(), sessions)
        })
        .collect()
}

/// Waits until `check` holds for the cluster view (and every session is WORKING).
async fn wait_until(
    gw: &Gateway,
    key: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&HashMap<String, Vec<String>>) -> bool,
) -> HashMap<String, Vec<String>> {
    let deadline = Instant::now() + within;
    loop {
        let view = cluster(gw).await;
        if check(&view) && all_working(gw, key).await {
            return view;
        }
        if Instant::now() > deadline {
            let list = gw.tenant(key, Method::GET, "/v1/sessions", None).await;
            panic!(
                "{what} not within {within:?}: {view:?}\n{}\n{}",
                list.text,
                gw.output.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn all_working(gw: &Gateway, key: &str) -> bool {
    let r = gw.tenant(key, Method::GET, "/v1/sessions", None).await;
    r.json["data"]
        .as_array()
        .is_some_and(|s| s.iter().all(|s| s["status"] == "WORKING"))
}

fn held(view: &HashMap<String, Vec<String>>) -> usize {
    view.values().map(Vec::len).sum()
}

fn distinct(view: &HashMap<String, Vec<String>>) -> usize {
    view.values().flatten().collect::<HashSet<_>>().len()
}

#[tokio::test]
async fn one_process_holds_every_session() {
    let gw = Gateway::start_with(options()).await;
    let (_, key) = gw.create_tenant("solo").await;
    for _ in 0..3 {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                "/v1/sessions",
                Some(json!({ "channel": "sim" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let view = wait_until(
        &gw,
        &key,
        Duration::from_secs(20),
        "three sessions here",
        |v| v.len() == 1 && held(v) == 3,
    )
    .await;
    let me = view.keys().next().unwrap().clone();
    // Killed and started again, the same replica (its id kept in the data
    // directory) takes them straight back, not after their leases run out.
    let mut gw = gw;
    gw.kill();
    let gw = gw.restart().await;
    let again = wait_until(
        &gw,
        &key,
        Duration::from_secs(20),
        "the same three back",
        |v| held(v) == 3,
    )
    .await;
    assert_eq!(again.keys().collect::<Vec<_>>(), vec![&me]);
}

/// The replica id kept in a gateway's data directory.
fn replica_of(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.data_dir.join("replica.id"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Polls session `id` through `gw` until it is `status` (and, when `held`, held
/// by exactly one replica; else by none).
async fn wait_session(gw: &Gateway, key: &str, id: &str, status: &str, held: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = gw
            .tenant(key, Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        let holders = cluster(gw)
            .await
            .values()
            .filter(|v| v.iter().any(|s| s == id))
            .count();
        if s.json["status"] == status && holders == usize::from(held) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} not {status} (held by {holders}): {}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first event of type `ty` that `matches` (waits up to ten seconds for it to
/// be stored).
async fn find_event(
    gw: &Gateway,
    key: &str,
    ty: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = find_all(gw, key, &format!("type={ty}")).await;
        if let Some(e) = all.into_iter().find(|e| matches(e)) {
            return e;
        }
        assert!(Instant::now() < deadline, "no such {ty} event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event `query` selects (`type=…`, `after=…`), oldest first, all pages.
async fn find_all(gw: &Gateway, key: &str, query: &str) -> Vec<serde_json::Value> {
    let (mut out, mut after) = (Vec::new(), String::new());
    loop {
        let page = gw
            .tenant(
                key,
                Method::GET,
                &format!("/v1/events?{query}&limit=200{after}"),
                None,
            )
            .await;
        out.extend(page.json["data"].as_array().unwrap().iter().cloned());
        match page.json["next_cursor"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return out,
        }
    }
}

/// Three gateway processes on one fresh Postgres database.
async fn three_replicas() -> (tempfile::TempDir, Vec<Gateway>) {
    three_replicas_with(options()).await
}

async fn three_replicas_with(opts: Options) -> (tempfile::TempDir, Vec<Gateway>) {
    let probe = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(probe.path()).await;
    assert!(
        matches!(db, TestDb::Postgres(_)),
        "replicas share a Postgres database: run with TEST_DATABASE_URL=postgres://…"
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        replicas.push(Gateway::start_on(data_dir, db.clone(), opts.clone(), tmp).await);
    }
    (probe, replicas)
}

/// Three replicas on one Postgres: 30 sessions spread ten each; commands through
/// any replica are run by the one holding the session; an event stream on any
/// replica sees every event, also across the owner's death; SIGKILL one and its
/// sessions run on the other two within the TTL (3 s) and ten seconds; stop
/// another gracefully and the last one runs all of them within five seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_sessions_and_take_over_from_a_dead_one() {
    let mut opts = options();
    // A delivery a killed replica had claimed goes out again once its claim runs
    // out (twice the timeout and 5 s).
    opts.env.extend([
        ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS".into(), "true".into()),
        ("SWITCHBOARD_WEBHOOKS_TIMEOUT".into(), "2s".into()),
    ]);
    let (_probe, mut replicas) = three_replicas_with(opts).await;
    let (tenant, key) = replicas[0].create_tenant("shared").await;
    let rx = Receiver::start(Behaviour::default()).await;
    let r = replicas[2]
        .tenant(
            &key,
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": rx.url, "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "events": ["message.received"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Sessions created through every replica; the first one talks (10 messages/s).
    let mut talker = String::new();
    for n in 0..30 {
        let config = if n == 0 {
            json!({ "inbound_per_second": 10 })
        } else {
            json!({})
        };
        let r = replicas[n % 3]
            .tenant(
                &key,
                Method::POST,
                "/v1/sessions",
                Some(json!({ "channel": "sim", "name": format!("s{n}"), "config": config })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        if n == 0 {
            talker = r.json["id"].as_str().unwrap().to_owned();
        }
    }
    let view = wait_until(
        &replicas[1],
        &key,
        Duration::from_secs(30),
        "ten sessions on each replica",
        |v| v.len() == 3 && v.values().all(|s| s.len() == 10) && distinct(v) == 30,
    )
    .await;
    let owner_index = |view: &HashMap<String, Vec<String>>, session: &str| {
        (0..3)
            .find(|i| {
                view[&replica_of(&replicas[*i])]
                    .iter()
                    .any(|s| s == session)
            })
            .unwrap()
    };
    // The talker's owner dies later; `a` and `b` are the others.
    let victim = owner_index(&view, &talker);
    let (a, b) = match victim {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let on_b = view[&replica_of(&replicas[b])].clone();

    // A send queued through one replica goes out once, from the replica running its
    // session (woken at once, not on its next tick).
    let r = replicas[a]
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{}/messages", on_b[0]),
            Some(json!({ "to": "x", "text": "through another replica" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let msg = r.json["id"].as_str().unwrap().to_owned();
    replicas[a].wait_message_status(&key, &msg, "sent").await;
    let sent = replicas[a].events_of(&key, "message.sent").await;
    assert_eq!(
        sent.iter()
            .filter(|e| e["data"]["message_id"] == msg.as_str())
            .count(),
        1,
        "sent once: {sent:?}"
    );

    // Commands through a replica that does not run the session are run by the one
    // that does, with the answers of one node.
    let path = |what: &str| format!("/v1/sessions/{}/{what}", on_b[1]);
    let r = replicas[a]
        .tenant(
            &key,
            Method::POST,
            &path("sim/inbound"),
            Some(json!({ "from": "+15550001", "text": "routed in" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let injected = find_event(&replicas[a], &key, "message.received", |e| {
        e["data"]["text"] == "routed in"
    })
    .await;
    assert_eq!(injected["session_id"], on_b[1].as_str());
    let r = replicas[a]
        .tenant(
            &key,
            Method::POST,
            &path("fault"),
            Some(json!({ "fault": "disconnect" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = replicas[a]
        .tenant(
            &key,
            Method::POST,
            &path("pairing-code"),
            Some(json!({ "phone": "+4915112345678" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "not_pairing");
    wait_session(&replicas[a], &key, &on_b[1], "WORKING", true).await;
    let r = replicas[a]
        .tenant(&key, Method::POST, &path("restart"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_session(&replicas[a], &key, &on_b[1], "WORKING", true).await;
    let r = replicas[a]
        .tenant(&key, Method::POST, &path("stop"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["status"], "STOPPED",
        "stopped before the answer: {}",
        r.text
    );
    wait_session(&replicas[a], &key, &on_b[1], "STOPPED", false).await;
    let r = replicas[a]
        .tenant(&key, Method::POST, &path("start"), None)
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let view = wait_until(
        &replicas[a],
        &key,
        Duration::from_secs(10),
        "the stopped session running again",
        |v| distinct(v) == 30 && held(v) == 30,
    )
    .await;

    // An event stream on `a` follows the talker running on the victim, and goes on
    // when the victim is SIGKILLed and another replica takes the talker over.
    let first = replicas[a]
        .tenant(&key, Method::GET, "/v1/events?limit=1", None)
        .await
        .json["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader = {
        let (base, key, talker, first) = (
            replicas[a].base.clone(),
            key.clone(),
            talker.clone(),
            first.clone(),
        );
        tokio::spawn(async move {
            super::sessions::sse_read_at(&base, &key, &talker, Some(&first), 80).await
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Sends queued on the victim's sessions (5/s, so most still wait when it dies).
    let dead_sessions = view[&replica_of(&replicas[victim])].clone();
    let r = replicas[a]
        .admin(
            Method::PATCH,
            &format!("/v1/tenants/{tenant}"),
            Some(json!({ "limits": { "sends_per_second": 5, "send_burst": 1 } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut queued = Vec::new();
    for i in 0..20 {
        let r = replicas[(a + i) % 3]
            .tenant(
                &key,
                Method::POST,
                &format!(
                    "/v1/sessions/{}/messages",
                    dead_sessions[i % dead_sessions.len()]
                ),
                Some(json!({ "to": "x", "text": format!("across the kill {i}") })),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        queued.push(r.json["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    // SIGKILL the victim: its sessions go to the other two.
    replicas[victim].kill();
    let killed = Instant::now();
    let after = wait_until(
        &replicas[a],
        &key,
        Duration::from_secs(3 + 10),
        "the dead replica's sessions taken over",
        |v| v.len() == 2 && held(v) == 30 && distinct(v) == 30,
    )
    .await;
    let moved = killed.elapsed();
    for s in &dead_sessions {
        assert!(after.values().any(|v| v.contains(s)), "{s} not taken over");
    }
    assert!(
        after.values().all(|v| v.len() == 15),
        "spread over the two: {after:?}"
    );
    eprintln!("taken over in {moved:?}");
    // Each queued send went out exactly once, from whichever replica ran its session.
    for id in &queued {
        replicas[a].wait_message_status(&key, id, "sent").await;
    }
    let sent = find_all(&replicas[a], &key, "type=message.sent").await;
    for id in &queued {
        assert_eq!(
            sent.iter()
                .filter(|e| e["data"]["message_id"] == id.as_str())
                .count(),
            1,
            "{id} sent once"
        );
    }
    let mut seen = reader.await.unwrap();
    // And a client resuming on `b` with Last-Event-ID carries on without a gap.
    let resume = seen.last().unwrap().0.clone();
    seen.extend(
        super::sessions::sse_read_at(&replicas[b].base, &key, &talker, Some(&resume), 20).await,
    );
    let stored: Vec<(String, String)> = find_all(&replicas[b], &key, &format!("after={first}"))
        .await
        .iter()
        .filter(|e| e["session_id"] == talker.as_str())
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        stored.len() >= seen.len(),
        "{} stored, {} seen",
        stored.len(),
        seen.len()
    );
    assert_eq!(
        seen,
        stored[..seen.len()].to_vec(),
        "the stream is the stored sequence"
    );
    assert!(
        seen.iter().filter(|(_, t)| t == "message.received").count() >= 80,
        "messages before and after the takeover: {seen:?}"
    );

    // Graceful stop of another: its sessions move at once.
    let status = replicas[b].stop();
    assert!(status.success());
    let stopped = Instant::now();
    wait_until(
        &replicas[a],
        &key,
        Duration::from_secs(5),
        "handed over on a graceful stop",
        |v| v.len() == 1 && held(v) == 30,
    )
    .await;
    eprintln!("handed over in {:?}", stopped.elapsed());

    // Every message stored through all of it was delivered as a webhook: none lost
    // (what the killed replica had claimed went out again), a repeat only under the
    // same webhook-id.
    let r = replicas[a]
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{talker}/stop"),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let stored: std::collections::BTreeSet<String> =
        find_all(&replicas[a], &key, "type=message.received")
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
    rx.wait_for(
        Duration::from_secs(30),
        "every stored message delivered",
        |_| rx.delivered_ids().is_superset(&stored),
    )
    .await;
    let deliveries = rx.deliveries();
    assert!(
        deliveries.iter().all(|d| stored.contains(&d.id)),
        "only stored events were delivered"
    );
    eprintln!(
        "{} messages stored, all delivered ({} deliveries)",
        stored.len(),
        deliveries.len()
    );
}

/// A tenant limited to 20 sends/s (burst 1) with a session on each of three
/// replicas and its sends posted to all three: 19 to 21 sends/s go out, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_tenant_send_limit() {
    let (_probe, replicas) = three_replicas().await;
    let (tenant, key) = replicas[0].create_tenant("limited").await;
    let r = replicas[1]
        .admin(
            Method::PATCH,
            &format!("/v1/tenants/{tenant}"),
            Some(json!({ "limits": { "sends_per_second": 20, "send_burst": 1, "api_requests_per_second": 10000, "api_burst": 10000, "max_queued_sends": 1000 } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut sessions = Vec::new();
    for gw in &replicas {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                "/v1/sessions",
                Some(json!({ "channel": "sim" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        sessions.push(r.json["id"].as_str().unwrap().to_owned());
    }
    wait_until(
        &replicas[0],
        &key,
        Duration::from_secs(20),
        "a session on each replica",
        |v| v.len() == 3 && v.values().all(|s| s.len() == 1),
    )
    .await;
    const SENDS: usize = 120;
    for i in 0..SENDS {
        let r = replicas[i % 3]
            .tenant(
                &key,
                Method::POST,
                &format!("/v1/sessions/{}/messages", sessions[(i / 3) % 3]),
                Some(json!({ "to": "x", "text": format!("m{i}") })),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent = loop {
        let sent = replicas[2].events_of(&key, "message.sent").await;
        if sent.len() >= SENDS {
            break sent;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {SENDS} sent in time",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let once: HashSet<&str> = sent
        .iter()
        .map(|e| e["data"]["message_id"].as_str().unwrap())
        .collect();
    assert_eq!((once.len(), sent.len()), (SENDS, SENDS), "each sent once");
    let mut times: Vec<i64> = sent
        .iter()
        .map(|e| {
            switchboard_actors::clock::parse_rfc3339(e["created_at"].as_str().unwrap()).unwrap()
        })
        .collect();
    times.sort_unstable();
    let steady = &times[5..];
    let secs = (steady[steady.len() - 1] - steady[0]) as f64 / 1000.0;
    let rate = (steady.len() - 1) as f64 / secs;
    eprintln!("observed {rate:.2} sends/s for a limit of 20/s over three replicas");
    assert!(
        (19.0..=21.0).contains(&rate),
        "observed {rate:.2} sends/s for a limit of 20/s"
    );
}

/// Three WhatsApp sessions (three phones) on the stand-in, one per replica; the
/// replica running one is SIGKILLed: it runs again on another within the TTL and
/// ten seconds, its login restored from the database (no new QR code), every
/// message arrives once, and no phone ever had two pages of its login open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_run_each_whatsapp_login_on_one_page() {
    let standin = super::whatsapp::standin(Duration::from_secs(30)).await;
    let mut opts = options();
    opts.env.extend(super::whatsapp::options(&standin, 5).env);
    let (_probe, mut replicas) = three_replicas_with(opts).await;
    let (_, key) = replicas[0].create_tenant("phones").await;
    const PHONES: [&str; 3] = ["15550101", "15550102", "15550103"];
    let mut sessions = Vec::new();
    for gw in &replicas {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                "/v1/sessions",
                Some(json!({ "channel": "whatsapp" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        sessions.push(r.json["id"].as_str().unwrap().to_owned());
    }
    // Each is paired with its own phone, its QR read through any replica.
    for (i, (session, phone)) in sessions.iter().zip(PHONES).enumerate() {
        let gw = &replicas[(i + 1) % 3];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let raw = gw
                .tenant(
                    &key,
                    Method::GET,
                    &format!("/v1/sessions/{session}/qr?format=raw"),
                    None,
                )
                .await;
            if raw.status == StatusCode::OK && standin.scan(&raw.text, phone).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no QR for {session}: {}",
                raw.text
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let view = wait_until(
        &replicas[0],
        &key,
        Duration::from_secs(60),
        "three logins, one per replica",
        |v| v.len() == 3 && v.values().all(|s| s.len() == 1),
    )
    .await;
    // Logins are saved to the database at once and again once Chromium has
    // written them to disk (8 s): a replica dying after that loses no login.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let qrs_before = replicas[0].events_of(&key, "session.qr").await.len();
    let victim = (0..3)
        .find(|i| view[&replica_of(&replicas[*i])].contains(&sessions[0]))
        .unwrap();
    let observer = (victim + 1) % 3;
    replicas[victim].kill();
    let killed = Instant::now();
    wait_until(
        &replicas[observer],
        &key,
        Duration::from_secs(3 + 10),
        "the dead replica's login running on another",
        |v| v.len() == 2 && held(v) == 3,
    )
    .await;
    eprintln!("WhatsApp session taken over in {:?}", killed.elapsed());
    assert_eq!(
        replicas[observer].events_of(&key, "session.qr").await.len(),
        qrs_before,
        "the login came back from the database, without a new QR code"
    );
    for phone in PHONES {
        let text = format!("hello {phone}");
        standin.inbound(phone, "15559999", &text, None).unwrap();
        let got = find_event(&replicas[observer], &key, "message.received", |e| {
            e["data"]["text"] == text.as_str()
        })
        .await;
        assert!(got["id"].is_string());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = replicas[observer].events_of(&key, "message.received").await;
    for phone in PHONES {
        let text = format!("hello {phone}");
        assert_eq!(
            received
                .iter()
                .filter(|e| e["data"]["text"] == text.as_str())
                .count(),
            1,
            "`{text}` once"
        );
        assert_eq!(
            standin.max_open_pages(phone),
            1,
            "{phone} had two pages of its login open at once"
        );
    }
}
