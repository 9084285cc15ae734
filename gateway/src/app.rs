//! [`App`]: what every request handler needs, built once at start-up (by
//! [`crate::start`]) and shared.

use crate::api::rate_limit::KeyLimiters;
use crate::config::Config;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use switchboard_actors::Store;
use switchboard_actors::events::Events;
use switchboard_actors::outbound::SendQueue;
use switchboard_actors::sessions::Sessions;
use switchboard_crypto::{Keyring, Secret};

#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    pub admin_token: Secret<String>,
    /// Seals and opens data at rest (webhook secrets, event bodies).
    pub keyring: Arc<Keyring>,
    /// Publishes events durably (webhook tests, operational events).
    pub events: Events,
    /// Fires when the gateway starts shutting down (ends long-lived streams).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The send path: every send (API, approved drafts) is queued through it.
    pub sends: SendQueue,
    /// The session actor tree.
    pub sessions: Sessions,
    /// This replica's share of the sessions (leases).
    pub cluster: switchboard_actors::cluster::Cluster,
    /// Session commands (start, stop, queries…), run wherever the session runs.
    pub commands: switchboard_actors::cluster::commands::Commands,
    /// Bumped when events are committed on any replica (event streams read on).
    pub commits: tokio::sync::watch::Receiver<u64>,
    /// The shared Chromium of browser sessions.
    pub browser: Option<switchboard_actors::browser::BrowserPool>,
    /// Wakes the webhook dispatcher (after replays).
    pub dispatch_wakeup: Arc<tokio::sync::Notify>,
    pub limiters: KeyLimiters,
    /// Records every authenticated call in the audit log.
    pub trail: crate::api::trail::Trail,
    /// Renders `/metrics`; `None` when no recorder is installed (e.g. in unit tests).
    pub metrics: Option<PrometheusHandle>,
    /// Files tenants send and receive (`data_dir/media`).
    pub media: switchboard_actors::media::MediaStore,
    /// The tenants' knowledge bases (opened on first use).
    pub knowledge: Arc<switchboard_rag::kb::Knowledge>,
    /// The RAG actor's counters.
    pub rag_stats: Arc<switchboard_rag::actor::RagStats>,
    /// Whether replies are written by an LLM (else retrieval-only).
    pub llm_configured: bool,
}
