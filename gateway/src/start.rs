//! [`start`]: the whole gateway, from a validated config and a bound listener to a
//! clean stop.
//!
//! It prepares the data directory (master key, admin token), opens storage, starts
//! the event writer, the webhook dispatcher, the browser pool, the session tree, the
//! send queue's senders and the RAG actor, then serves HTTP until `shutdown`
//! resolves. Stopping runs in the reverse order, each part within the grace period:
//! HTTP drains, sessions stop (their rows keep wanting to run, so they come back on
//! the next start), the browser closes, the event pipeline commits what it holds.
//!
//! The binary's `serve` calls it with the configured address and SIGTERM/SIGINT; a
//! test can call it with `127.0.0.1:0` and a future of its own, in-process.

use crate::api::rate_limit::KeyLimiters;
use crate::api::trail::Trail;
use crate::app::App;
use crate::config::{Config, MediaBackendConfig};
use crate::{bootstrap, rag, server, telemetry};
use std::error::Error as StdError;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::Store;
use switchboard_actors::browser::{BrowserPool, BrowserSettings};
use switchboard_actors::cluster::commands::Commands;
use switchboard_actors::cluster::{Cluster, ClusterSettings};
use switchboard_actors::events::Events;
use switchboard_actors::media::s3::S3Backend;
use switchboard_actors::media::{LocalBackend, MediaBackend, MediaLimits, MediaStore};
use switchboard_actors::outbound::{Outbound, SendQueue};
use switchboard_actors::rag_host::RagHost;
use switchboard_actors::sessions::{Deps, SessionSettings, Sessions};
use switchboard_actors::storage::Backend;
use switchboard_actors::supervision::RestartPolicy;
use switchboard_actors::webhooks::{Dispatcher, DispatcherConfig};
use switchboard_crypto::Keyring;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The gateway could not start: which step failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
pub struct StartError {
    pub step: &'static str,
    #[source]
    pub source: Box<dyn StdError + Send + Sync>,
}

/// Names the start-up step a failure belongs to.
trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, StartError>;
}

impl<T, E: Into<Box<dyn StdError + Send + Sync>>> Step<T> for Result<T, E> {
    fn step(self, step: &'static str) -> Result<T, StartError> {
        self.map_err(|e| StartError {
            step,
            source: e.into(),
        })
    }
}

/// Runs the gateway on `listener` until `shutdown` resolves, then stops it.
pub async fn start(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let secrets = bootstrap::prepare(&config).step("preparing the data directory")?;
    if secrets.new_admin_token {
        // Standard output, never the log: the token is shown exactly once.
        println!(
            "admin token (shown once; also saved to {}): {}",
            config.data_dir.join("admin.token").display(),
            secrets.admin_token.expose()
        );
    }
    let store = Store::connect(&config.database)
        .await
        .step("opening storage")?;
    let replica_id = replica_id(&config).step("reading this replica's id")?;
    let metrics = telemetry::init_metrics(store.backend().as_str(), &replica_id)
        .step("installing metrics")?;
    let addr = listener
        .local_addr()
        .step("reading the listener's address")?;
    tracing::info!(
        %addr,
        storage = store.backend().as_str(),
        data_dir = %config.data_dir.display(),
        master_key_id = %secrets.master_key.key_id(),
        "listening"
    );
    println!("switchboard listening on http://{addr}");
    std::io::stdout()
        .flush()
        .step("writing to standard output")?;
    let keyring = Arc::new(secrets.keyring);
    let cancel = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let (events, writer) =
        Events::spawn(store.clone(), keyring.clone(), wake.clone(), cancel.clone());
    let webhooks = &config.webhooks;
    let dispatcher_config = DispatcherConfig {
        timeout: webhooks.timeout,
        schedule: webhooks.retry_schedule.clone(),
        disable_after: webhooks.disable_after,
        max_in_flight: webhooks.max_in_flight,
        allow_private: webhooks.allow_private,
        single_process: store.backend() == Backend::Sqlite,
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::spawn(
        store.clone(),
        keyring.clone(),
        events.clone(),
        dispatcher_config,
        wake.clone(),
        cancel.clone(),
    )
    .step("starting the webhook dispatcher")?;
    let s = &config.sessions;
    let session_settings = SessionSettings {
        restart: RestartPolicy {
            base: s.restart_base,
            max: s.restart_max,
            max_restarts: s.max_restarts,
            window: s.restart_window,
        },
        watchdog_interval: s.watchdog_interval,
        watchdog_timeout: s.watchdog_timeout,
        ..SessionSettings::default()
    };
    // Chromium itself starts with the first browser session.
    let browser = BrowserPool::spawn(BrowserSettings {
        executable: config.browser.chromium_path.clone(),
        extra_args: config.browser.args.clone(),
        open_timeout: config.browser.open_timeout,
        isolation: config.browser.isolation,
        single_process: config.browser.single_process,
        ..BrowserSettings::new(config.data_dir.join("browser"))
    })
    .await
    .step("starting the browser pool")?;
    let media = media_store(&config, &store, &keyring)
        .await
        .step("opening the media store")?;
    let cluster = Cluster::join(
        store.clone(),
        replica_id.clone(),
        ClusterSettings {
            lease_ttl: config.cluster.lease_ttl,
            max_sessions: config.cluster.max_sessions,
        },
    )
    .await
    .step("joining the cluster")?;
    tracing::info!(replica = %replica_id, sessions = cluster.load(), "joined the cluster");
    let (sessions, session_tree) = Sessions::spawn(Deps {
        cluster: Some(cluster.clone()),
        store: store.clone(),
        events: events.clone(),
        keyring: keyring.clone(),
        settings: session_settings,
        browser: Some(browser.clone()),
        channels: Arc::new(config.channels.clone()),
        media: Some(media.clone()),
    })
    .await
    .step("starting the session actors")?;
    let grace = config.shutdown_grace.max(Duration::from_secs(1));
    let senders = Outbound::new(
        store.clone(),
        events.clone(),
        sessions.clone(),
        keyring.clone(),
        s.send_interval,
        cancel.clone(),
        Some(cluster.id().to_owned()),
    );
    let sends = SendQueue::new(
        store.clone(),
        events.clone(),
        keyring.clone(),
        senders,
        config.limits,
        Some(cluster.clone()),
    );
    // Tenants with queued sends resume at once, each under its own limits.
    sends.recover().await.step("recovering the send queue")?;
    // The knowledge base opens on first use; the RAG actor answers inbound messages
    // of sessions whose replies are on.
    let knowledge = Arc::new(rag::knowledge(&config));
    let llm = rag::llm(&config)
        .step("configuring the LLM client")?
        .map(Arc::new);
    let rag_host = RagHost {
        store: store.clone(),
        events: events.clone(),
        keyring: keyring.clone(),
        sends: sends.clone(),
    };
    if let Err(e) = rag::clean_unfinished(&store, &knowledge).await {
        tracing::error!(error = %e, "could not clean up half-indexed documents");
    }
    let rag_stats = Arc::new(switchboard_rag::actor::RagStats::default());
    let llm_configured = llm.is_some();
    sessions
        .start_rag(switchboard_rag::actor::RagArgs {
            knowledge: knowledge.clone(),
            llm,
            host: Arc::new(rag_host),
            key: Arc::new(switchboard_rag::signed::InternalKey::derive(&keyring)),
            concurrency: config.rag.concurrency,
            stats: rag_stats.clone(),
        })
        .step("starting the RAG actor")?;
    spawn_media_retention(media.clone(), config.media.retention, cancel.clone());
    switchboard_actors::retention::spawn(
        store.clone(),
        Some(media.clone()),
        config.retention_sweep_interval,
        cancel.clone(),
    );
    {
        let sends = sends.clone();
        cluster.on_sends_waiting(Box::new(move |tenant| {
            let sends = sends.clone();
            tokio::spawn(async move {
                if let Err(e) = sends.resume(&tenant).await {
                    tracing::warn!(tenant_id = %tenant, error = %e, "could not resume a tenant's sends");
                }
            });
        }));
    }
    let leases = CancellationToken::new();
    let lease_loop = cluster.spawn(sessions.clone(), leases.clone());
    let commands = Commands::new(cluster.clone(), sessions.clone(), store.clone());
    let routed = commands.spawn(leases.clone());
    let commits = cluster
        .bus()
        .commits_anywhere(events.commits(), cancel.clone());
    let stopping = CancellationToken::new();
    let trail_stop = CancellationToken::new();
    let (trail, trail_writer) = Trail::spawn(store.clone(), trail_stop.clone());
    let app = Arc::new(App {
        trail,
        media,
        knowledge,
        rag_stats,
        llm_configured,
        sends,
        shutdown: stopping.clone(),
        sessions: sessions.clone(),
        cluster: cluster.clone(),
        commands,
        commits,
        browser: Some(browser.clone()),
        config,
        store: store.clone(),
        admin_token: secrets.admin_token,
        keyring,
        events,
        dispatch_wakeup: wake,
        limiters: KeyLimiters::default(),
        metrics: Some(metrics),
    });
    let stop = async move {
        shutdown.await;
        stopping.cancel();
    };
    server::serve(listener, app, stop).await;
    // No call comes any more: the last ones reach the audit log.
    trail_stop.cancel();
    if tokio::time::timeout(grace, trail_writer).await.is_err() {
        tracing::warn!("the audit writer did not finish within the grace period");
    }
    // HTTP is drained; hand the sessions over (stopped here, leases released: the
    // other replicas, or this one's next start, take them at once), then stop the
    // tree and the pipeline.
    leases.cancel();
    let _ = lease_loop.await;
    let _ = routed.await;
    if let Err(e) = cluster.leave(&sessions).await {
        tracing::warn!(error = %e, "could not leave the cluster cleanly; its leases run out");
    }
    sessions.shutdown();
    if tokio::time::timeout(grace, session_tree).await.is_err() {
        tracing::warn!("session actors did not stop within the grace period");
    }
    browser.shutdown();
    // Unfinished deliveries keep their outbox rows and go out after the next start.
    cancel.cancel();
    if tokio::time::timeout(grace, async {
        let _ = writer.await;
        let _ = dispatcher.await;
    })
    .await
    .is_err()
    {
        tracing::warn!("event pipeline did not stop within the grace period");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// This replica's id: configured, or kept in `data_dir/replica.id` (made on the
/// first start), so a restarted process takes its own sessions straight back.
fn replica_id(config: &Config) -> std::io::Result<String> {
    if let Some(id) = &config.cluster.replica_id {
        return Ok(id.clone());
    }
    let path = config.data_dir.join("replica.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => {
            let id = switchboard_actors::ids::new_id("rep");
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}

/// The media store: its backend as configured (files under `data_dir/media`, or an
/// S3-compatible bucket, checked writable here), sealing under `data_dir/media/tmp`;
/// what an upload cut short by a crash left half-written there is removed.
async fn media_store(
    config: &Config,
    store: &Store,
    keyring: &Arc<Keyring>,
) -> std::io::Result<MediaStore> {
    let root = config.data_dir.join("media");
    let tmp = root.join("tmp");
    tokio::fs::create_dir_all(&tmp).await?;
    let mut leftovers = tokio::fs::read_dir(&tmp).await?;
    while let Some(e) = leftovers.next_entry().await? {
        let _ = tokio::fs::remove_file(e.path()).await;
    }
    let backend: Arc<dyn MediaBackend> = match &config.media.backend {
        MediaBackendConfig::Local => Arc::new(LocalBackend::new(&root)),
        MediaBackendConfig::S3(settings) => {
            let s3 = S3Backend::new(settings).map_err(std::io::Error::other)?;
            s3.check().await.map_err(std::io::Error::other)?;
            tracing::info!(
                bucket = %settings.bucket,
                endpoint = settings.endpoint.as_deref().unwrap_or("AWS"),
                "media in an S3 bucket"
            );
            Arc::new(s3)
        }
    };
    Ok(MediaStore::new(
        backend,
        store.clone(),
        keyring.clone(),
        tmp,
        MediaLimits {
            max_file_bytes: config.media.max_file_bytes,
            max_tenant_bytes: config.media.max_tenant_bytes,
        },
    )
    .with_download(config.media.download))
}

/// Deletes media older than the retention, at start and then every hour (or a
/// tenth of the retention, when that is shorter).
fn spawn_media_retention(media: MediaStore, retention: Duration, cancel: CancellationToken) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    tokio::spawn(async move {
        loop {
            let before = switchboard_actors::clock::now_ms()
                - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            match media.sweep(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "media past the retention deleted"),
                Err(e) => {
                    tracing::warn!(error = %e, "media retention sweep failed; trying again later")
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    });
}
