//! A [`Sequence`] keeps its events in the order given while many are in flight, also
//! across failed commits: a trigger makes every commit fail for a while (twice),
//! other producers publish beside it, and afterwards the session's events are stored
//! exactly once each, in the order pushed, with their message rows.
//!
//! SQLite only: the failure is a trigger the test adds through a second connection
//! to the same file (the Postgres suites cover the writer's other paths).

use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::events::{Events, Publish, Sequence, body_binding};
use switchboard_actors::storage::{
    AuditEntry, DatabaseTarget, LimitOverrides, MessageRow, MessageWrite, SessionRow,
};
use switchboard_actors::{Store, ids};
use switchboard_crypto::{ApiKeyHash, Keyring, MasterKey};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 3_000;

async fn tenant_and_session(store: &Store) -> SessionRow {
    let (tenant, _) = store
        .create_tenant(
            "Ordered",
            &LimitOverrides::default(),
            None,
            &ApiKeyHash::of(&format!("sbk_{}", ulid::Ulid::new())),
            "sbk_or",
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
        desired_state: "stopped".into(),
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

fn received(keyring: &Keyring, s: &SessionRow, i: usize) -> Publish {
    let mut row = MessageRow::inbound(keyring, s, "+15550100", &format!("m{i}"), "hi").unwrap();
    row.external_id = Some(format!("m{i}"));
    let mut p = Publish::new(
        &s.tenant_id,
        "message.received",
        serde_json::json!({ "i": i }),
    );
    p.session_id = Some(s.id.clone());
    p.message = Some(MessageWrite::Insert(Box::new(row)));
    p
}

#[tokio::test]
async fn a_sequence_commits_in_the_order_given_through_failed_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sequence.db");
    let store = Store::connect(&DatabaseTarget::Sqlite(path.clone()))
        .await
        .unwrap();
    let keyring = Arc::new(Keyring::new(MasterKey::generate().unwrap(), []));
    let cancel = CancellationToken::new();
    let (events, writer) = Events::spawn(
        store.clone(),
        keyring.clone(),
        Arc::new(tokio::sync::Notify::new()),
        cancel.clone(),
    );
    let s = tenant_and_session(&store).await;
    let other = tenant_and_session(&store).await;

    // A switch that, while on, fails one event insert in 150 (and so the whole
    // batch holding it): failed batches between successful ones, the case where a
    // later event could overtake an earlier one that has to be retried.
    let side = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE test_fail (armed INTEGER NOT NULL)",
        "INSERT INTO test_fail VALUES (1)",
        "CREATE TRIGGER test_fail_events BEFORE INSERT ON events \
         WHEN (SELECT armed FROM test_fail) = 1 AND abs(random()) % 150 = 0 \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    ] {
        sqlx::query(sql).execute(&side).await.unwrap();
    }

    let (sequence, task) = Sequence::spawn(events.clone());
    let producer = {
        let (sequence, keyring, s) = (sequence.clone(), keyring.clone(), s.clone());
        tokio::spawn(async move {
            for i in 0..EVENTS {
                sequence.push(received(&keyring, &s, i)).await.unwrap();
                // A repeat of an earlier message (a channel catching up) is dropped.
                if i % 500 == 499 {
                    sequence.push(received(&keyring, &s, i - 10)).await.unwrap();
                }
                // Paced, so that commits interleave with pushes.
                if i % 4 == 3 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    // Someone else publishing beside it, one commit at a time, counting failures.
    let beside = {
        let (events, other, producer_done) =
            (events.clone(), other.clone(), producer.abort_handle());
        tokio::spawn(async move {
            let (mut stored, mut failed) = (0, 0);
            while !producer_done.is_finished() || stored < 100 {
                let mut p = Publish::new(&other.tenant_id, "test.event", serde_json::json!({}));
                p.session_id = Some(other.id.clone());
                match events.publish(p).await {
                    Ok(_) => stored += 1,
                    Err(_) => failed += 1,
                }
            }
            failed
        })
    };
    producer.await.unwrap();
    let failed_beside = beside.await.unwrap();
    sqlx::query("UPDATE test_fail SET armed = 0")
        .execute(&side)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), sequence.flush())
        .await
        .expect("the sequence catches up")
        .unwrap();
    assert!(
        failed_beside > 0,
        "no commit failed: the test proves nothing"
    );

    // The session's events in commit order: each message once, in the order pushed.
    let mut order = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .session_events_after(&s.tenant_id, &s.id, after.as_deref(), 500)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for e in &page {
            let body = keyring
                .open(&e.body_key_id, &e.body, body_binding(&e.tenant_id, &e.id))
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            order.push(v["data"]["i"].as_u64().unwrap() as usize);
        }
    }
    assert_eq!(order.len(), EVENTS, "every event stored once");
    assert!(
        order.iter().enumerate().all(|(k, i)| k == *i),
        "events out of order: first misplaced at {:?}",
        order.iter().enumerate().find(|(k, i)| *k != **i)
    );
    let mut messages = 0;
    for i in 0..EVENTS {
        if store
            .message_by_external_id(&s.id, &format!("m{i}"))
            .await
            .unwrap()
            .is_some()
        {
            messages += 1;
        }
    }
    assert_eq!(messages, EVENTS, "each message row stored with its event");

    drop(sequence);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the sequence ends once dropped and committed")
        .unwrap();
    cancel.cancel();
    writer.await.unwrap();
}
