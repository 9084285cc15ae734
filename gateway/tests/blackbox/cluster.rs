//! Replicas on one database: sessions spread by lease over three gateway processes
//! on one real Postgres, taken over when a replica is SIGKILLed (within the lease
//! TTL and ten seconds), handed over at once on a graceful stop; on SQLite the one
//! process holds every session.

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

fn distinct_has(view: &HashMap<String, Vec<String>>, id: &str) -> bool {
    view.values().flatten().any(|s| s == id)
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

/// Three replicas on one Postgres: 30 sessions spread ten each; SIGKILL one and its
/// sessions run on the other two within the TTL (3 s) and ten seconds; stop another
/// gracefully and the last one runs all of them within five seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_sessions_and_take_over_from_a_dead_one() {
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
        replicas.push(Gateway::start_on(data_dir, db.clone(), options(), tmp).await);
    }
    let (_, key) = replicas[0].create_tenant("shared").await;
    // Sessions created through every replica.
    for n in 0..30 {
        let r = replicas[n % 3]
            .tenant(
                &key,
                Method::POST,
                "/v1/sessions",
                Some(json!({ "channel": "sim", "name": format!("s{n}") })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let view = wait_until(
        &replicas[1],
        &key,
        Duration::from_secs(30),
        "ten sessions on each replica",
        |v| v.len() == 3 && v.values().all(|s| s.len() == 10) && distinct(v) == 30,
    )
    .await;

    let owner_of = |view: &HashMap<String, Vec<String>>, dir: &std::path::Path| {
        let id = std::fs::read_to_string(dir.join("replica.id")).unwrap();
        view[id.trim()].clone()
    };
    // A send queued through one replica goes out once, from the replica running its
    // session.
    let on_c = owner_of(&view, &replicas[2].data_dir);
    let r = replicas[0]
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{}/messages", on_c[0]),
            Some(json!({ "to": "x", "text": "through another replica" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let msg = r.json["id"].as_str().unwrap().to_owned();
    replicas[0].wait_message_status(&key, &msg, "sent").await;
    let sent = replicas[0].events_of(&key, "message.sent").await;
    assert_eq!(
        sent.iter()
            .filter(|e| e["data"]["message_id"] == msg.as_str())
            .count(),
        1,
        "sent once: {sent:?}"
    );
    // What only the owner can do is refused elsewhere, saying where it runs; a stop
    // through another replica is carried out by the owner.
    let r = replicas[0]
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{}/restart", on_c[1]),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "session_elsewhere");
    let r = replicas[0]
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{}/stop", on_c[1]),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = replicas[0]
            .tenant(
                &key,
                Method::GET,
                &format!("/v1/sessions/{}", on_c[1]),
                None,
            )
            .await;
        if s.json["status"] == "STOPPED" && !distinct_has(&cluster(&replicas[0]).await, &on_c[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not stopped by its owner: {}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = replicas[0]
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{}/start", on_c[1]),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let view = wait_until(
        &replicas[0],
        &key,
        Duration::from_secs(10),
        "the stopped session running again",
        |v| distinct(v) == 30,
    )
    .await;

    // SIGKILL one replica: its sessions go to the other two.
    let victim = std::fs::read_to_string(replicas[1].data_dir.join("replica.id")).unwrap();
    let dead_sessions = view[victim.trim()].clone();
    replicas[1].kill();
    let killed = Instant::now();
    let after = wait_until(
        &replicas[0],
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

    // Graceful stop of another: its sessions move at once.
    let status = replicas[2].stop();
    assert!(status.success());
    let stopped = Instant::now();
    wait_until(
        &replicas[0],
        &key,
        Duration::from_secs(5),
        "handed over on a graceful stop",
        |v| v.len() == 1 && held(v) == 30,
    )
    .await;
    eprintln!("handed over in {:?}", stopped.elapsed());
}
