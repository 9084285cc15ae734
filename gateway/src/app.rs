//! [`App`]: what every request handler needs, built once at start-up and shared.

use crate::api::rate_limit::KeyLimiters;
use crate::config::Config;
use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_actors::Store;
use switchboard_crypto::{MasterKey, Secret};

#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    pub admin_token: Secret<String>,
    /// Encrypts data at rest (used by the components that store secrets and bodies).
    pub master_key: MasterKey,
    pub limiters: KeyLimiters,
    /// Renders `/metrics`; `None` when no recorder is installed (e.g. in unit tests).
    pub metrics: Option<PrometheusHandle>,
}
