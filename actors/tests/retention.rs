//! Retention: with a tenant's `retention.events = 1h` (and messages) and the clock
//! moved forward, old rows go in batches while what is still needed stays —
//! undelivered webhook deliveries and their events, queued sends. On SQLite, and on
//! Postgres when `TEST_DATABASE_URL` names a server.

use std::sync::Arc;
use switchboard_actors::consent::{ConsentSettings, Retention};
use switchboard_actors::events::{Events, Publish};
use switchboard_actors::storage::{
    AttemptResult, AuditEntry, EventQuery, LimitOverrides, MessageExtras, MessageRow, MessageWrite,
    Outcome, SessionRow,
};
use switchboard_actors::{Store, clock, ids, retention};
use switchboard_crypto::{ApiKeyHash, Keyring, MasterKey};
use tokio_util::sync::CancellationToken;

const HOUR: i64 = 3_600_000;

async fn tenant_and_session(store: &Store) -> SessionRow {
    let (tenant, _) = store
        .create_tenant(
            "Keeper",
            &LimitOverrides::default(),
            None,
            &ApiKeyHash::of(&format!("sbk_{}", ulid::Ulid::new())),
            "sbk_re",
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

async fn endpoint(store: &Store, keyring: &Keyring, tenant: &str, url: &str) -> String {
    let e = switchboard_actors::testkit::endpoint(keyring, tenant, url);
    store
        .create_endpoint(&e, &AuditEntry::new("test", "webhook.create"))
        .await
        .unwrap();
    e.id
}

/// Every event id of the tenant, oldest first.
async fn event_ids(store: &Store, tenant: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut q = EventQuery {
        event_type: None,
        since: None,
        after: None,
        limit: 500,
    };
    loop {
        let page = store.list_events(tenant, &q).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        q.after = Some(last.id.clone());
        out.extend(page.into_iter().map(|e| e.id));
    }
}

#[tokio::test]
async fn old_rows_go_and_undelivered_deliveries_and_queued_sends_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = switchboard_actors::testkit::fresh_store(dir.path(), "sbret").await;
    let keyring = Arc::new(Keyring::new(MasterKey::generate().unwrap(), []));
    let cancel = CancellationToken::new();
    let (events, _writer) = Events::spawn(
        store.clone(),
        keyring.clone(),
        Arc::new(tokio::sync::Notify::new()),
        cancel.clone(),
    );
    let s = tenant_and_session(&store).await;
    let t = s.tenant_id.clone();
    let up = endpoint(&store, &keyring, &t, "https://up.example/hook").await;
    let down = endpoint(&store, &keyring, &t, "https://down.example/hook").await;

    // 1,200 received messages (more than two sweep batches), each with its event,
    // and a queued send.
    let mut received = Vec::new();
    for i in 0..1_200 {
        let row = MessageRow::inbound(&keyring, &s, "+15550100", &format!("x{i}"), "hi").unwrap();
        received.push(row.id.clone());
        let mut p = Publish::new(&t, "message.received", serde_json::json!({ "i": i }));
        p.session_id = Some(s.id.clone());
        p.message = Some(MessageWrite::Insert(Box::new(row)));
        events.publish(p).await.unwrap();
    }
    let queued = MessageRow::outbound(
        &keyring,
        &s,
        "+15550111",
        "later",
        &MessageExtras::default(),
    )
    .unwrap();
    let mut p = Publish::new(&t, "message.queued", serde_json::json!({}));
    p.message = Some(MessageWrite::Enqueue {
        row: Box::new(queued.clone()),
        max_queued: 10_000,
    });
    events.publish(p).await.unwrap();

    // The `up` endpoint took every event; `down` took none, except that its
    // deliveries of the first 10 events are dead letters (given up on).
    let mut dead = 0;
    loop {
        let claimed = store
            .claim_deliveries(clock::now_ms() + 60_000, 500, &[])
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        let results: Vec<AttemptResult> = claimed
            .iter()
            .map(|c| {
                let outcome = if c.endpoint_id == up {
                    Outcome::Delivered
                } else if dead < 10 {
                    dead += 1;
                    Outcome::Dead
                } else {
                    Outcome::Retry {
                        at: clock::now_ms() + 10 * HOUR,
                    }
                };
                AttemptResult {
                    outbox_id: c.id,
                    tenant_id: c.tenant_id.clone(),
                    event_id: c.event_id.clone(),
                    endpoint_id: c.endpoint_id.clone(),
                    attempted_at: clock::now_ms(),
                    status_code: Some(if outcome == Outcome::Delivered {
                        200
                    } else {
                        503
                    }),
                    latency_ms: 1,
                    error: None,
                    response_snippet: None,
                    outcome,
                }
            })
            .collect();
        store.record_attempts(&results).await.unwrap();
    }
    assert_eq!(event_ids(&store, &t).await.len(), 1_201);

    let settings = ConsentSettings {
        retention: Retention {
            events: Some("1h".into()),
            messages: Some("1h".into()),
            media: None,
        },
        ..Default::default()
    };
    store
        .put_consent(&t, &settings, &AuditEntry::new("test", "consent.update"))
        .await
        .unwrap();

    // 59 minutes on: nothing is old enough.
    let now = clock::now_ms();
    let swept = retention::sweep(&store, None, now + 59 * 60_000)
        .await
        .unwrap();
    assert_eq!(swept, retention::Swept::default());

    // Two hours on: every message but the queued send goes; no event goes while a
    // delivery of it is pending or dead.
    let swept = retention::sweep(&store, None, now + 2 * HOUR)
        .await
        .unwrap();
    assert_eq!(swept.messages, 1_200, "{swept:?}");
    assert_eq!(
        swept.events, 0,
        "every event still has an undelivered delivery"
    );
    assert!(store.get_message(&t, &received[0]).await.unwrap().is_none());
    let q = store
        .get_message(&t, &queued.id)
        .await
        .unwrap()
        .expect("queued send kept");
    assert_eq!(q.status, "queued");

    // The pending `down` deliveries arrive (the dead ones stay dead): their events go,
    // with their outbox rows and attempts; the ten dead letters keep theirs.
    let mut due = Vec::new();
    for e in event_ids(&store, &t).await {
        let pending = store
            .event_deliveries(&e)
            .await
            .unwrap()
            .iter()
            .any(|d| d.endpoint_id == down && d.status == "pending");
        if pending {
            due.push((e, down.clone()));
        }
    }
    assert_eq!(due.len(), 1_201 - 10);
    store.requeue(&t, &due).await.unwrap();
    loop {
        let claimed = store
            .claim_deliveries(clock::now_ms() + 60_000, 500, &[])
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        let results: Vec<AttemptResult> = claimed
            .iter()
            .map(|c| AttemptResult {
                outbox_id: c.id,
                tenant_id: c.tenant_id.clone(),
                event_id: c.event_id.clone(),
                endpoint_id: c.endpoint_id.clone(),
                attempted_at: clock::now_ms(),
                status_code: Some(200),
                latency_ms: 1,
                error: None,
                response_snippet: None,
                outcome: Outcome::Delivered,
            })
            .collect();
        store.record_attempts(&results).await.unwrap();
    }
    let swept = retention::sweep(&store, None, now + 2 * HOUR)
        .await
        .unwrap();
    assert_eq!(swept.events, 1_201 - 10, "{swept:?}");
    let left = event_ids(&store, &t).await;
    assert_eq!(left.len(), 10, "the dead letters' events");
    for e in &left {
        let deliveries = store.event_deliveries(e).await.unwrap();
        assert!(
            deliveries.iter().any(|d| d.status == "dead"),
            "{deliveries:?}"
        );
        assert!(!store.event_attempts(e).await.unwrap().is_empty());
    }
    assert!(store.get_message(&t, &queued.id).await.unwrap().is_some());
    cancel.cancel();
}
