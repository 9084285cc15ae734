//! Every outbox row goes out exactly once, whether the event writer hands it to the
//! dispatcher as it commits or a claim finds it: 2,000 events published from many
//! tasks at once reach a plain endpoint (a small in-flight cap, so many rows are
//! left to the claim) and a FIFO one (only ever claimed, in order), through real
//! HTTP on loopback. On SQLite, where the dispatcher keeps its claims in memory and
//! takes the handoff, and on Postgres when `TEST_DATABASE_URL` names a server, where
//! every row is claimed under a lease.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_actors::Store;
use switchboard_actors::events::{Events, Publish};
use switchboard_actors::storage::{AuditEntry, Backend, Endpoint, LimitOverrides};
use switchboard_actors::webhooks::{Dispatcher, DispatcherConfig};
use switchboard_crypto::{ApiKeyHash, Keyring, MasterKey};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 2_000;
const PUBLISHERS: usize = 50;

/// Received `webhook-id`s, per request path, in arrival order.
type Received = Arc<Mutex<HashMap<String, Vec<String>>>>;

async fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let id = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        seen.lock()
                            .unwrap()
                            .entry(req.uri().path().to_owned())
                            .or_default()
                            .push(id);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (base, received)
}

async fn endpoint(store: &Store, keyring: &Keyring, tenant: &str, url: String, fifo: bool) {
    let e = Endpoint {
        fifo,
        max_in_flight: 2,
        ..switchboard_actors::testkit::endpoint(keyring, tenant, &url)
    };
    store
        .create_endpoint(&e, &AuditEntry::new("test", "webhook.create"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_goes_out_once_whether_handed_over_or_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let store = switchboard_actors::testkit::fresh_store(dir.path(), "sbhand").await;
    let keyring = Arc::new(Keyring::new(MasterKey::generate().unwrap(), []));
    let cancel = CancellationToken::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let (events, writer) =
        Events::spawn(store.clone(), keyring.clone(), wake.clone(), cancel.clone());
    let single_process = store.backend() == Backend::Sqlite;
    let dispatcher = Dispatcher::spawn(
        store.clone(),
        keyring.clone(),
        events.clone(),
        DispatcherConfig {
            allow_private: true,
            single_process,
            max_in_flight: 16,
            poll: Duration::from_millis(100),
            ..DispatcherConfig::default()
        },
        wake,
        cancel.clone(),
    )
    .unwrap();
    let (tenant, _) = store
        .create_tenant(
            "Handed",
            &LimitOverrides::default(),
            None,
            &ApiKeyHash::of(&format!("sbk_{}", ulid::Ulid::new())),
            "sbk_ha",
            &AuditEntry::new("test", "tenant.create"),
        )
        .await
        .unwrap();
    let (base, received) = receiver().await;
    endpoint(&store, &keyring, &tenant.id, format!("{base}/plain"), false).await;
    endpoint(&store, &keyring, &tenant.id, format!("{base}/fifo"), true).await;

    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (events, tenant) = (events.clone(), tenant.id.clone());
        publishers.push(tokio::spawn(async move {
            for i in (p..EVENTS).step_by(PUBLISHERS) {
                let e = Publish::new(&tenant, "message.received", serde_json::json!({ "i": i }));
                events.publish(e).await.unwrap();
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let count = |path: &str| received.lock().unwrap().get(path).map_or(0, Vec::len);
    while (count("/plain") < EVENTS || count("/fifo") < EVENTS) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for a second delivery of anything to arrive too.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // In the order the events were stored.
    let mut stored: Vec<String> = Vec::new();
    let mut q = switchboard_actors::storage::EventQuery {
        event_type: None,
        since: None,
        after: None,
        limit: 500,
    };
    loop {
        let page = store.list_events(&tenant.id, &q).await.unwrap();
        let Some(last) = page.last() else { break };
        q.after = Some(last.id.clone());
        stored.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(stored.len(), EVENTS);
    let got = received.lock().unwrap().clone();
    let mut plain = got["/plain"].clone();
    plain.sort_unstable();
    let mut expected = stored.clone();
    expected.sort_unstable();
    assert_eq!(plain.len(), EVENTS, "each event once at the plain endpoint");
    assert_eq!(
        plain, expected,
        "the plain endpoint got every event, none twice"
    );
    assert_eq!(
        got["/fifo"], stored,
        "the FIFO endpoint got every event once, in order"
    );

    let handed = events.handoff().taken();
    if single_process {
        assert!(handed > 0, "the writer handed rows over");
    } else {
        assert_eq!(
            handed, 0,
            "a dispatcher with leases in the database claims every row"
        );
    }
    cancel.cancel();
    drop(events);
    let _ = writer.await;
    let _ = dispatcher.await;
}
