//! What replicas share in the database: fenced session writes, routed commands
//! taken once, and the shared send limit; on SQLite, and on Postgres when
//! `TEST_DATABASE_URL` names a server (a fresh database each run).

use switchboard_actors::storage::{AuditEntry, Fence, FolderPosition, LimitOverrides, SessionRow};
use switchboard_actors::{Store, ids};
use switchboard_crypto::ApiKeyHash;

async fn store(dir: &tempfile::TempDir) -> Store {
    switchboard_actors::testkit::fresh_store(dir.path(), "sbclus").await
}

async fn session(store: &Store) -> SessionRow {
    let (tenant, _) = store
        .create_tenant(
            "Acme",
            &LimitOverrides::default(),
            None,
            &ApiKeyHash::of(&format!("sbk_{}", ulid::Ulid::new())),
            "sbk_cl",
            &AuditEntry::new("test", "tenant.create"),
        )
        .await
        .unwrap();
    let row = SessionRow {
        id: ids::new_id("ses"),
        tenant_id: tenant.id.clone(),
        channel: "sim".into(),
        name: None,
        status: "STOPPED".into(),
        status_reason: None,
        desired_state: "running".into(),
        config: "{}".into(),
        network: None,
        created_at: 0,
        updated_at: 0,
    };
    store
        .create_session(&row, &AuditEntry::new("test", "session.create"))
        .await
        .unwrap();
    row
}

fn fence(replica: &str, epoch: i64, now: i64) -> Fence {
    Fence {
        replica: replica.into(),
        epoch,
        now,
    }
}

#[tokio::test]
async fn a_replica_that_lost_a_lease_cannot_write_over_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let s = session(&store).await;
    let now = 1_000_000;
    // Nobody holds it: any replica's write lands (a stop of an unowned session).
    assert!(
        store
            .set_session_status(&s.id, "STARTING", None, None, Some(&fence("a", -1, now)))
            .await
            .unwrap()
    );
    // `a` takes it (epoch 1), pauses past the TTL; `b` takes it over (epoch 2).
    let a = store
        .take_session(&s.id, "rep_a", now, now + 3_000)
        .await
        .unwrap()
        .unwrap();
    let later = now + 5_000;
    let b = store
        .take_session(&s.id, "rep_b", later, later + 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    let stale = fence("rep_a", a.epoch, later);
    let current = fence("rep_b", b.epoch, later);
    assert!(
        store
            .set_session_status(&s.id, "WORKING", Some("b"), None, Some(&current))
            .await
            .unwrap()
    );
    // Every write `a` still makes is refused and changes nothing.
    assert!(
        !store
            .set_session_status(&s.id, "FAILED", Some("a"), Some("stopped"), Some(&stale))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_session_state(&s.id, Some(("k", b"stale login")), Some(&stale))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_session_network(&s.id, &serde_json::json!({"me": "a"}), Some(&stale))
            .await
            .unwrap()
    );
    let position = FolderPosition {
        folder: "INBOX".into(),
        uid_validity: 7,
        last_uid: 99,
        highest_modseq: None,
    };
    assert!(
        !store
            .set_folder_position(&s.id, &position, Some(&stale))
            .await
            .unwrap()
    );
    assert_eq!(store.folder_position(&s.id, "INBOX").await.unwrap(), None);
    // Not held by `a` at all (epoch -1) while `b`'s lease is live: refused too.
    assert!(
        !store
            .set_session_status(
                &s.id,
                "STOPPED",
                None,
                None,
                Some(&fence("rep_a", -1, later))
            )
            .await
            .unwrap()
    );
    let row = store.session_by_id(&s.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.desired_state.as_str()),
        ("WORKING", "running")
    );
    assert_eq!(row.network, None);
    // `b`'s own writes land, also once it no longer runs the session here (a
    // graceful stop saving on the way out, epoch -1); so do unfenced ones.
    assert!(
        store
            .set_session_status(
                &s.id,
                "WORKING",
                Some("b"),
                None,
                Some(&fence("rep_b", -1, later))
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .set_folder_position(&s.id, &position, Some(&current))
            .await
            .unwrap()
    );
    assert_eq!(
        store.folder_position(&s.id, "INBOX").await.unwrap(),
        Some(position)
    );
    assert!(
        store
            .set_session_network(&s.id, &serde_json::json!({"me": "b"}), None)
            .await
            .unwrap()
    );
    // Once `b`'s lease has run out, nobody holds it and writes land again.
    let expired = fence("rep_a", a.epoch, later + 10_000);
    assert!(
        store
            .set_session_state(&s.id, None, Some(&expired))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_routed_command_is_taken_once_and_answered_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let s = session(&store).await;
    store
        .push_command("cmd_1", &s.id, "rep_b", "\"stop\"", 10)
        .await
        .unwrap();
    store
        .push_command("cmd_2", &s.id, "rep_c", "\"logout\"", 11)
        .await
        .unwrap();
    assert!(
        store
            .take_commands("rep_a", 20, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = store.take_commands("rep_b", 20, 10).await.unwrap();
    assert_eq!(
        taken.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["cmd_1"]
    );
    assert_eq!(taken[0].request, "\"stop\"");
    assert!(
        store
            .take_commands("rep_b", 21, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.command_answer("cmd_1").await.unwrap(), Some(None));
    // A taken command is not withdrawn by an asker giving up; an untaken one is.
    assert!(!store.drop_command("cmd_1", true).await.unwrap());
    assert!(store.drop_command("cmd_2", true).await.unwrap());
    assert!(
        store
            .take_commands("rep_c", 22, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .answer_command("cmd_1", "{\"ok\":1}", 30)
        .await
        .unwrap();
    assert_eq!(
        store.command_answer("cmd_1").await.unwrap(),
        Some(Some("{\"ok\":1}".into()))
    );
    assert!(store.drop_command("cmd_1", false).await.unwrap());
    assert_eq!(store.command_answer("cmd_1").await.unwrap(), None);
    store
        .push_command("cmd_3", &s.id, "rep_b", "\"stop\"", 40)
        .await
        .unwrap();
    assert_eq!(store.sweep_commands(41).await.unwrap(), 1);
}

#[tokio::test]
async fn the_shared_send_limit_gives_out_its_rate_and_burst_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let t0: i64 = 1_700_000_000_000_000;
    let interval = 50_000; // 20/s
    // A burst of 3 goes at once; the fourth waits about one interval.
    for _ in 0..3 {
        assert_eq!(
            store
                .take_send_slot("ten_a", t0, interval, 3)
                .await
                .unwrap(),
            None
        );
    }
    let wait = store
        .take_send_slot("ten_a", t0, interval, 3)
        .await
        .unwrap()
        .expect("over the burst");
    assert!(
        (interval - 10_000..=interval).contains(&wait),
        "waits {wait} µs"
    );
    // Another tenant is not held up.
    assert_eq!(
        store
            .take_send_slot("ten_b", t0, interval, 1)
            .await
            .unwrap(),
        None
    );
    // Taking slots as fast as they come over 10 s gives 20/s.
    let mut now = t0 + wait;
    let mut sent = 0;
    while now < t0 + 10_000_000 {
        match store
            .take_send_slot("ten_a", now, interval, 3)
            .await
            .unwrap()
        {
            None => sent += 1,
            Some(w) => now += w,
        }
    }
    assert!((199..=201).contains(&sent), "{sent} slots in 10 s");
}

#[tokio::test]
async fn a_key_revoked_by_another_process_is_not_served_from_a_replicas_cache() {
    use switchboard_actors::cluster::bus::{Bus, Signal};
    use switchboard_actors::storage::{Backend, KEYS_TTL};
    use tokio_util::sync::CancellationToken;

    let dir = tempfile::tempdir().unwrap();
    let target = switchboard_actors::testkit::fresh_target(dir.path(), "sbkeys").await;
    let replica = Store::connect(&target).await.unwrap();
    // Another process on the same database (the `admin` CLI, another replica).
    let other = Store::connect(&target).await.unwrap();
    let hash = ApiKeyHash::of("sbk_cached_key_for_the_test");
    let (tenant, key) = other
        .create_tenant(
            "Acme",
            &LimitOverrides::default(),
            None,
            &hash,
            "sbk_ca",
            &AuditEntry::new("test", "tenant.create"),
        )
        .await
        .unwrap();

    // The replica listens, as a serving gateway does; a signal from the other
    // process shows the listener is up before the change.
    let cancel = CancellationToken::new();
    let bus = Bus::new(replica.clone(), "rep_cache".into());
    let listening = bus.spawn(cancel.clone());
    if replica.backend() == Backend::Postgres {
        let mut signals = bus.subscribe();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            other.notify("rep_other lease").await.unwrap();
            let got = tokio::time::timeout(std::time::Duration::from_millis(200), signals.recv());
            if let Ok(Ok(Signal::Leases)) = got.await {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "listener never up");
        }
    }

    // Looked up once, then served from the cache.
    assert_eq!(
        replica.authenticate(&hash).await.unwrap().unwrap().key_id,
        key.id
    );
    let seen = replica.key_changes_seen();
    assert!(
        other
            .revoke_api_key(
                &tenant.id,
                &key.id,
                &AuditEntry::new("test", "api_key.revoke")
            )
            .await
            .unwrap()
    );

    if replica.backend() == Backend::Postgres {
        // The signal makes the replica forget its keys (not the cache's time bound).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while replica.key_changes_seen() == seen {
            assert!(
                std::time::Instant::now() < deadline,
                "the key change was not signalled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(replica.authenticate(&hash).await.unwrap().is_none());
    } else {
        // SQLite: no signal between processes; the cache's bound holds.
        assert_eq!(replica.key_changes_seen(), seen);
        tokio::time::sleep(KEYS_TTL).await;
        assert!(replica.authenticate(&hash).await.unwrap().is_none());
    }
    // A change made through the store itself is seen at once, without waiting.
    let second = ApiKeyHash::of("sbk_second_key_for_the_test");
    let key2 = replica
        .create_api_key(
            &tenant.id,
            None,
            &second,
            "sbk_se",
            switchboard_actors::scopes::Scopes::all(),
            &AuditEntry::new("test", "api_key.create"),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(replica.authenticate(&second).await.unwrap().is_some());
    replica
        .revoke_api_key(
            &tenant.id,
            &key2.id,
            &AuditEntry::new("test", "api_key.revoke"),
        )
        .await
        .unwrap();
    assert!(replica.authenticate(&second).await.unwrap().is_none());

    cancel.cancel();
    if let Some(l) = listening {
        l.await.unwrap();
    }
}
