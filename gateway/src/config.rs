//! Typed configuration: built-in defaults, then an optional TOML file
//! (`--config` / `SWITCHBOARD_CONFIG`), then environment variables, validated as a
//! whole before anything is opened or bound.
//!
//! Config is read from an injected [`Env`] (tests pass a map; nothing here calls
//! `set_var`). Every error names the key it is about (and the variable or file it
//! came from); `main` prints it and exits with code 64.
//!
//! | key                              | environment                                 | default               |
//! |----------------------------------|---------------------------------------------|-----------------------|
//! | `listen`                         | `SWITCHBOARD_LISTEN`                        | `127.0.0.1:8080`      |
//! | `data_dir`                       | `SWITCHBOARD_DATA_DIR`                      | `./data`              |
//! | `database_url`                   | `DATABASE_URL`                              | SQLite in `data_dir`  |
//! | `admin_token`                    | `SWITCHBOARD_ADMIN_TOKEN`                   | generated, saved      |
//! | `master_key`                     | `SWITCHBOARD_MASTER_KEY`                    | generated, saved      |
//! | `log.format`                     | `SWITCHBOARD_LOG_FORMAT`                    | `text` (or `json`)    |
//! | `http.max_body_bytes`            | `SWITCHBOARD_HTTP_MAX_BODY_BYTES`           | 1 MiB                 |
//! | `http.shutdown_grace_secs`       | `SWITCHBOARD_HTTP_SHUTDOWN_GRACE_SECS`      | 10                    |
//! | `limits.api_requests_per_second` | `SWITCHBOARD_LIMITS_API_REQUESTS_PER_SECOND`| 50                    |
//! | `limits.api_burst`               | `SWITCHBOARD_LIMITS_API_BURST`              | 100                   |
//! | `limits.sends_per_second`        | `SWITCHBOARD_LIMITS_SENDS_PER_SECOND`       | 10 (per tenant)       |
//! | `limits.send_burst`              | `SWITCHBOARD_LIMITS_SEND_BURST`             | 20                    |
//! | `limits.max_queued_sends`        | `SWITCHBOARD_LIMITS_MAX_QUEUED_SENDS`       | 10000                 |
//! | `previous_master_keys`           | `SWITCHBOARD_PREVIOUS_MASTER_KEYS` (a,b)    | none (still decrypt)  |
//! | `webhooks.allow_private`         | `SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS`        | false                 |
//! | `webhooks.timeout`               | `SWITCHBOARD_WEBHOOKS_TIMEOUT`              | `15s`                 |
//! | `webhooks.retry_schedule`        | `SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE`       | `0,5s,5m,30m,2h,5h,10h,10h` |
//! | `webhooks.disable_after`         | `SWITCHBOARD_WEBHOOKS_DISABLE_AFTER`        | `5d`                  |
//! | `webhooks.rotation_grace`        | `SWITCHBOARD_WEBHOOKS_ROTATION_GRACE`       | `24h`                 |
//! | `webhooks.max_in_flight`         | `SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT`        | 256                   |
//! | `sessions.restart_base`          | `SWITCHBOARD_SESSIONS_RESTART_BASE`         | `500ms`               |
//! | `sessions.restart_max`           | `SWITCHBOARD_SESSIONS_RESTART_MAX`          | `60s`                 |
//! | `sessions.max_restarts`          | `SWITCHBOARD_SESSIONS_MAX_RESTARTS`         | 5 (per window)        |
//! | `sessions.restart_window`        | `SWITCHBOARD_SESSIONS_RESTART_WINDOW`       | `5m`                  |
//! | `sessions.watchdog_interval`     | `SWITCHBOARD_SESSIONS_WATCHDOG_INTERVAL`    | `10s`                 |
//! | `sessions.watchdog_timeout`      | `SWITCHBOARD_SESSIONS_WATCHDOG_TIMEOUT`     | `5s`                  |
//! | `sessions.send_interval`         | `SWITCHBOARD_SESSIONS_SEND_INTERVAL`        | `0ms` (no pacing)     |
//! | `cluster.replica_id`             | `SWITCHBOARD_REPLICA_ID`                    | kept in `data_dir/replica.id` |
//! | `cluster.lease_ttl`              | `SWITCHBOARD_CLUSTER_LEASE_TTL`             | `15s` (a silent replica's sessions move after it) |
//! | `cluster.max_sessions`           | `SWITCHBOARD_CLUSTER_MAX_SESSIONS`          | 1000 (per replica)    |
//! | `browser.chromium_path`          | `SWITCHBOARD_CHROMIUM_PATH`                 | found on `PATH`       |
//! | `browser.args`                   | `SWITCHBOARD_BROWSER_ARGS` (space-separated)| none                  |
//! | `whatsapp.url`                   | `SWITCHBOARD_WHATSAPP_URL`                  | `https://web.whatsapp.com/` |
//! | `whatsapp.max_qr_refreshes`      | `SWITCHBOARD_WHATSAPP_MAX_QR_REFRESHES`     | 5 (then `FAILED`/`qr_timeout`) |
//! | `whatsapp.load_timeout`          | `SWITCHBOARD_WHATSAPP_LOAD_TIMEOUT`         | `60s`                 |
//! | `whatsapp.heartbeat`             | `SWITCHBOARD_WHATSAPP_HEARTBEAT`            | `15s`                 |
//! | `whatsapp.humanise`              | `SWITCHBOARD_WHATSAPP_HUMANISE`             | `true` (typing, gaps, per-contact cap, warm-up; sessions may override) |
//! | `linkedin.url`                   | `SWITCHBOARD_LINKEDIN_URL`                  | `https://www.linkedin.com/` |
//! | `linkedin.cool_down`             | `SWITCHBOARD_LINKEDIN_COOL_DOWN`            | `30m` (after a 999 or 429) |
//! | `linkedin.catch_up_every`        | `SWITCHBOARD_LINKEDIN_CATCH_UP_EVERY`       | `3m`                  |
//! | `email.idle_renew`               | `SWITCHBOARD_EMAIL_IDLE_RENEW`              | `10m` (under 29m)     |
//! | `email.poll_interval`            | `SWITCHBOARD_EMAIL_POLL_INTERVAL`           | `60s`                 |
//! | `email.connects_per_second_per_host` | `SWITCHBOARD_EMAIL_CONNECTS_PER_SECOND_PER_HOST` | 10       |
//! | `email.max_message_bytes`        | `SWITCHBOARD_EMAIL_MAX_MESSAGE_BYTES`       | 52428800 (50 MiB; larger: headers only) |
//! | `retention.sweep_interval`       | `SWITCHBOARD_RETENTION_SWEEP_INTERVAL`      | `60s` (tenants' retention applied) |
//! | `public_url`                     | `SWITCHBOARD_PUBLIC_URL`                    | none (e-mail carries no one-click unsubscribe URL) |
//! | `browser.open_timeout`           | `SWITCHBOARD_BROWSER_OPEN_TIMEOUT`          | `45s`                 |
//! | `browser.isolation`              | `SWITCHBOARD_BROWSER_ISOLATION`             | `process` (or `context`) |
//! | `browser.single_process`         | `SWITCHBOARD_BROWSER_SINGLE_PROCESS`        | true (own browsers)   |
//! | `media.max_file_bytes`           | `SWITCHBOARD_MEDIA_MAX_FILE_BYTES`          | 104857600 (100 MiB)   |
//! | `media.max_tenant_bytes`         | `SWITCHBOARD_MEDIA_MAX_TENANT_BYTES`        | 10737418240 (10 GiB)  |
//! | `media.retention`                | `SWITCHBOARD_MEDIA_RETENTION`               | `30d` (older media is deleted) |
//! | `media.download`                 | `SWITCHBOARD_MEDIA_DOWNLOAD`                | `eager` (or `lazy`: on first read) |
//! | `media.backend`                  | `SWITCHBOARD_MEDIA_BACKEND`                 | `local` (`data_dir/media`; or `s3`) |
//! | `media.s3_endpoint`              | `SWITCHBOARD_MEDIA_S3_ENDPOINT`             | none (AWS); e.g. `http://rgw:7480` |
//! | `media.s3_bucket`                | `SWITCHBOARD_MEDIA_S3_BUCKET`               | none (required with `s3`) |
//! | `media.s3_region`                | `SWITCHBOARD_MEDIA_S3_REGION`               | `us-east-1`           |
//! | `media.s3_access_key_id`         | `SWITCHBOARD_MEDIA_S3_ACCESS_KEY_ID`        | none (required with `s3`) |
//! | `media.s3_secret_access_key`     | `SWITCHBOARD_MEDIA_S3_SECRET_ACCESS_KEY`    | none (required with `s3`) |
//! | `media.s3_prefix`                | `SWITCHBOARD_MEDIA_S3_PREFIX`               | `media/` (object key prefix) |
//! | `rag.model_dir`                  | `SWITCHBOARD_MODEL_DIR`                     | `models/all-MiniLM-L6-v2` |
//! | `rag.embeddings_url`             | `SWITCHBOARD_EMBEDDINGS_URL`                | none (local model)    |
//! | `rag.embeddings_model`           | `SWITCHBOARD_EMBEDDINGS_MODEL`              | `text-embedding-3-small` |
//! | `rag.embeddings_api_key`         | `SWITCHBOARD_EMBEDDINGS_API_KEY`            | none                  |
//! | `rag.llm_url`                    | `SWITCHBOARD_LLM_URL`                       | none (retrieval-only replies) |
//! | `rag.llm_model`                  | `SWITCHBOARD_LLM_MODEL`                     | `gpt-4o-mini`         |
//! | `rag.llm_api_key`                | `SWITCHBOARD_LLM_API_KEY`                   | none                  |
//! | `rag.llm_timeout`                | `SWITCHBOARD_LLM_TIMEOUT`                   | `30s`                 |
//! | `rag.qdrant_url`                 | `QDRANT_URL`                                | none (embedded qdrant-edge in `data_dir/qdrant`) |
//! | `rag.qdrant_api_key`             | `QDRANT_API_KEY`                            | none                  |
//! | `rag.concurrency`                | `SWITCHBOARD_RAG_CONCURRENCY`               | 2 (answers at once)   |
//!
//! Log filtering follows `RUST_LOG` (default `info`).

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use switchboard_actors::browser::Isolation;
use switchboard_actors::channels::email::Settings as EmailSettings;
use switchboard_actors::channels::{
    self, linkedin, linkedin::Settings as LinkedInSettings, whatsapp,
    whatsapp::Settings as WhatsAppSettings,
};
use switchboard_actors::media::Download;
use switchboard_actors::media::s3::S3Settings;
use switchboard_actors::storage::DatabaseTarget;
use switchboard_actors::webhooks::schedule;
use switchboard_crypto::{MasterKey, Secret};

/// Where configuration values come from besides the file.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
    /// Every variable name, to catch misspelt `SWITCHBOARD_*` ones.
    fn names(&self) -> Vec<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn names(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// A configuration error, naming the offending key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}`{source_note}: {message}")]
pub struct ConfigError {
    pub key: String,
    source_note: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, origin: Origin, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            source_note: origin.note(),
            message: message.into(),
        }
    }
}

/// Where a value was read from, for error messages.
#[derive(Debug, Clone)]
enum Origin {
    Default,
    File(PathBuf),
    Env(&'static str),
}

impl Origin {
    fn note(&self) -> String {
        match self {
            Origin::Default => String::new(),
            Origin::File(p) => format!(" (in {})", p.display()),
            Origin::Env(v) => format!(" (from {v})"),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

/// Default limits for tenants without overrides (`limits.*`): the send path's own type.
pub use switchboard_actors::outbound::DefaultLimits;

/// Webhook delivery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// Allow endpoints on loopback/private networks (tests, on-premise receivers).
    pub allow_private: bool,
    /// Per-attempt HTTP timeout.
    pub timeout: Duration,
    /// Waits before each attempt; its length is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    /// An endpoint whose every delivery fails for this long is disabled.
    pub disable_after: Duration,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace: Duration,
    /// Deliveries in flight at once across all endpoints.
    pub max_in_flight: usize,
}

/// Session supervision settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// First restart delay (doubles per restart in the window, with jitter).
    pub restart_base: Duration,
    pub restart_max: Duration,
    /// Restarts allowed per window before the session is `FAILED`.
    pub max_restarts: usize,
    pub restart_window: Duration,
    pub watchdog_interval: Duration,
    pub watchdog_timeout: Duration,
    /// Least time between two sends of one session (pacing); zero = none.
    pub send_interval: Duration,
}

/// Replicas sharing one database (see `switchboard_actors::cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This replica's id; `None`: the one kept in `data_dir/replica.id`.
    pub replica_id: Option<String>,
    pub lease_ttl: Duration,
    pub max_sessions: usize,
}

/// The shared Chromium.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BrowserConfig {
    /// Chromium's executable; detected on `PATH` when unset.
    pub chromium_path: Option<PathBuf>,
    /// Extra Chromium flags.
    pub args: Vec<String>,
    /// A context that takes longer than this means a stuck browser (restarted).
    pub open_timeout: Duration,
    /// A Chromium per session (`process`) or contexts of one shared Chromium.
    pub isolation: Isolation,
    /// Run a session's own Chromium as one process (`process` isolation).
    pub single_process: bool,
}

/// The knowledge base and the RAG actor.
#[derive(Debug, Clone, PartialEq)]
pub struct RagConfig {
    /// all-MiniLM-L6-v2's files (used unless `embeddings_url` is set).
    pub model_dir: PathBuf,
    /// An OpenAI-compatible API base (`…/v1`) for embeddings.
    pub embeddings_url: Option<String>,
    pub embeddings_model: String,
    pub embeddings_api_key: Option<String>,
    /// An OpenAI-compatible API base (`…/v1`) for chat completions.
    pub llm_url: Option<String>,
    pub llm_model: String,
    pub llm_api_key: Option<String>,
    pub llm_timeout: Duration,
    /// A Qdrant server instead of the embedded engine.
    pub qdrant_url: Option<String>,
    pub qdrant_api_key: Option<String>,
    /// Answers in progress at once.
    pub concurrency: usize,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP API binds.
    pub listen: SocketAddr,
    /// Holds the SQLite database, the generated master key and admin token.
    pub data_dir: PathBuf,
    pub database: DatabaseTarget,
    /// Admin bearer token; generated into the data directory when absent.
    pub admin_token: Option<Secret<String>>,
    /// Master encryption key; generated into the data directory when absent.
    pub master_key: Option<MasterKey>,
    pub log_format: LogFormat,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    pub limits: DefaultLimits,
    /// Retired master keys: still decrypt, never encrypt.
    pub previous_master_keys: Vec<MasterKey>,
    pub webhooks: WebhookSettings,
    pub sessions: SessionConfig,
    pub cluster: ClusterConfig,
    pub browser: BrowserConfig,
    /// Every channel's settings, each the channel's own type (`whatsapp.*`, …).
    pub channels: channels::Settings,
    pub rag: RagConfig,
    pub media: MediaConfig,
    /// How often tenants' retention settings are applied (`retention.sweep_interval`).
    pub retention_sweep_interval: Duration,
}

/// The media store (`data_dir/media`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    pub max_file_bytes: u64,
    pub max_tenant_bytes: u64,
    /// Media older than this is deleted with its rows.
    pub retention: Duration,
    /// When received files are fetched from their channel.
    pub download: Download,
    /// Where the sealed bytes live.
    pub backend: MediaBackendConfig,
}

/// `media.backend`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MediaBackendConfig {
    /// Files under `data_dir/media`.
    #[default]
    Local,
    /// An S3-compatible bucket (shared by replicas).
    S3(S3Settings),
}

/// The file's shape. Every key optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    admin_token: Option<String>,
    master_key: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    limits: FileLimits,
    previous_master_keys: Option<Vec<String>>,
    #[serde(default)]
    webhooks: FileWebhooks,
    #[serde(default)]
    sessions: FileSessions,
    #[serde(default)]
    cluster: FileCluster,
    #[serde(default)]
    browser: FileBrowser,
    #[serde(default)]
    whatsapp: FileWhatsApp,
    #[serde(default)]
    email: FileEmail,
    #[serde(default)]
    linkedin: FileLinkedIn,
    #[serde(default)]
    rag: FileRag,
    #[serde(default)]
    media: FileMedia,
    #[serde(default)]
    retention: FileRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMedia {
    max_file_bytes: Option<u64>,
    max_tenant_bytes: Option<u64>,
    retention: Option<String>,
    download: Option<String>,
    backend: Option<String>,
    s3_endpoint: Option<String>,
    s3_bucket: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLinkedIn {
    url: Option<String>,
    cool_down: Option<String>,
    catch_up_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetention {
    sweep_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEmail {
    idle_renew: Option<String>,
    poll_interval: Option<String>,
    connects_per_second_per_host: Option<u64>,
    max_message_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRag {
    model_dir: Option<PathBuf>,
    embeddings_url: Option<String>,
    embeddings_model: Option<String>,
    embeddings_api_key: Option<String>,
    llm_url: Option<String>,
    llm_model: Option<String>,
    llm_api_key: Option<String>,
    llm_timeout: Option<String>,
    qdrant_url: Option<String>,
    qdrant_api_key: Option<String>,
    concurrency: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBrowser {
    chromium_path: Option<PathBuf>,
    args: Option<Vec<String>>,
    open_timeout: Option<String>,
    isolation: Option<String>,
    single_process: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWhatsApp {
    url: Option<String>,
    max_qr_refreshes: Option<u64>,
    load_timeout: Option<String>,
    heartbeat: Option<String>,
    humanise: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSessions {
    restart_base: Option<String>,
    restart_max: Option<String>,
    max_restarts: Option<u64>,
    restart_window: Option<String>,
    watchdog_interval: Option<String>,
    watchdog_timeout: Option<String>,
    send_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    replica_id: Option<String>,
    lease_ttl: Option<String>,
    max_sessions: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhooks {
    allow_private: Option<bool>,
    timeout: Option<String>,
    retry_schedule: Option<String>,
    disable_after: Option<String>,
    rotation_grace: Option<String>,
    max_in_flight: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    max_body_bytes: Option<u64>,
    shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    api_requests_per_second: Option<u32>,
    api_burst: Option<u32>,
    sends_per_second: Option<u32>,
    send_burst: Option<u32>,
    max_queued_sends: Option<u32>,
}

/// Environment variables this binary reads (anything else `SWITCHBOARD_*` is a typo).
const KNOWN_ENV: &[&str] = &[
    "SWITCHBOARD_CONFIG",
    "SWITCHBOARD_LISTEN",
    "SWITCHBOARD_DATA_DIR",
    "SWITCHBOARD_ADMIN_TOKEN",
    "SWITCHBOARD_MASTER_KEY",
    "SWITCHBOARD_LOG_FORMAT",
    "SWITCHBOARD_HTTP_MAX_BODY_BYTES",
    "SWITCHBOARD_HTTP_SHUTDOWN_GRACE_SECS",
    "SWITCHBOARD_LIMITS_API_REQUESTS_PER_SECOND",
    "SWITCHBOARD_LIMITS_API_BURST",
    "SWITCHBOARD_LIMITS_SENDS_PER_SECOND",
    "SWITCHBOARD_LIMITS_SEND_BURST",
    "SWITCHBOARD_LIMITS_MAX_QUEUED_SENDS",
    "SWITCHBOARD_PREVIOUS_MASTER_KEYS",
    "SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS",
    "SWITCHBOARD_WEBHOOKS_TIMEOUT",
    "SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE",
    "SWITCHBOARD_WEBHOOKS_DISABLE_AFTER",
    "SWITCHBOARD_WEBHOOKS_ROTATION_GRACE",
    "SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT",
    "SWITCHBOARD_REPLICA_ID",
    "SWITCHBOARD_CLUSTER_LEASE_TTL",
    "SWITCHBOARD_CLUSTER_MAX_SESSIONS",
    "SWITCHBOARD_SESSIONS_RESTART_BASE",
    "SWITCHBOARD_SESSIONS_RESTART_MAX",
    "SWITCHBOARD_SESSIONS_MAX_RESTARTS",
    "SWITCHBOARD_SESSIONS_RESTART_WINDOW",
    "SWITCHBOARD_SESSIONS_WATCHDOG_INTERVAL",
    "SWITCHBOARD_SESSIONS_WATCHDOG_TIMEOUT",
    "SWITCHBOARD_SESSIONS_SEND_INTERVAL",
    "SWITCHBOARD_CHROMIUM_PATH",
    "SWITCHBOARD_BROWSER_ARGS",
    "SWITCHBOARD_WHATSAPP_URL",
    "SWITCHBOARD_WHATSAPP_MAX_QR_REFRESHES",
    "SWITCHBOARD_WHATSAPP_LOAD_TIMEOUT",
    "SWITCHBOARD_WHATSAPP_HEARTBEAT",
    "SWITCHBOARD_WHATSAPP_HUMANISE",
    "SWITCHBOARD_LINKEDIN_URL",
    "SWITCHBOARD_LINKEDIN_COOL_DOWN",
    "SWITCHBOARD_LINKEDIN_CATCH_UP_EVERY",
    "SWITCHBOARD_EMAIL_IDLE_RENEW",
    "SWITCHBOARD_EMAIL_POLL_INTERVAL",
    "SWITCHBOARD_EMAIL_CONNECTS_PER_SECOND_PER_HOST",
    "SWITCHBOARD_EMAIL_MAX_MESSAGE_BYTES",
    "SWITCHBOARD_PUBLIC_URL",
    "SWITCHBOARD_RETENTION_SWEEP_INTERVAL",
    "SWITCHBOARD_MEDIA_MAX_FILE_BYTES",
    "SWITCHBOARD_MEDIA_MAX_TENANT_BYTES",
    "SWITCHBOARD_MEDIA_RETENTION",
    "SWITCHBOARD_MEDIA_DOWNLOAD",
    "SWITCHBOARD_MEDIA_BACKEND",
    "SWITCHBOARD_MEDIA_S3_ENDPOINT",
    "SWITCHBOARD_MEDIA_S3_BUCKET",
    "SWITCHBOARD_MEDIA_S3_REGION",
    "SWITCHBOARD_MEDIA_S3_ACCESS_KEY_ID",
    "SWITCHBOARD_MEDIA_S3_SECRET_ACCESS_KEY",
    "SWITCHBOARD_MEDIA_S3_PREFIX",
    "SWITCHBOARD_BROWSER_OPEN_TIMEOUT",
    "SWITCHBOARD_BROWSER_ISOLATION",
    "SWITCHBOARD_BROWSER_SINGLE_PROCESS",
    "SWITCHBOARD_MODEL_DIR",
    "SWITCHBOARD_EMBEDDINGS_URL",
    "SWITCHBOARD_EMBEDDINGS_MODEL",
    "SWITCHBOARD_EMBEDDINGS_API_KEY",
    "SWITCHBOARD_LLM_URL",
    "SWITCHBOARD_LLM_MODEL",
    "SWITCHBOARD_LLM_API_KEY",
    "SWITCHBOARD_LLM_TIMEOUT",
    "SWITCHBOARD_RAG_CONCURRENCY",
];

/// One setting being resolved: the value so far and where it came from.
struct Layer<T> {
    value: Option<T>,
    origin: Origin,
}

impl<T> Layer<T> {
    fn file(value: Option<T>, path: Option<&Path>) -> Self {
        match (value, path) {
            (Some(v), Some(p)) => Self {
                value: Some(v),
                origin: Origin::File(p.to_owned()),
            },
            _ => Self {
                value: None,
                origin: Origin::Default,
            },
        }
    }

    /// Overrides with the environment variable `var`, if set, parsed by `parse`.
    fn env(
        mut self,
        env: &dyn Env,
        key: &str,
        var: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Self, ConfigError> {
        if let Some(raw) = env.get(var) {
            let v = parse(raw.trim()).map_err(|m| ConfigError::new(key, Origin::Env(var), m))?;
            self.value = Some(v);
            self.origin = Origin::Env(var);
        }
        Ok(self)
    }

    fn or(self, default: T) -> (T, Origin) {
        match self.value {
            Some(v) => (v, self.origin),
            None => (default, Origin::Default),
        }
    }
}

fn parse_from_str<T: FromStr>(what: &'static str) -> impl FnOnce(&str) -> Result<T, String> {
    move |s| {
        s.parse::<T>()
            .map_err(|_| format!("expected {what}, got `{s}`"))
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got `{s}`")),
    }
}

fn check_range(key: &str, origin: &Origin, v: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::new(
            key,
            origin.clone(),
            format!("must be between {min} and {max}, got {v}"),
        ))
    }
}

impl Config {
    /// Loads and validates. `config_path` (from `--config`) wins over `SWITCHBOARD_CONFIG`.
    pub fn load(env: &dyn Env, config_path: Option<&Path>) -> Result<Self, ConfigError> {
        for name in env.names() {
            if name.starts_with("SWITCHBOARD_") && !KNOWN_ENV.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    &name,
                    Origin::Default,
                    format!(
                        "unknown environment variable (known: {})",
                        KNOWN_ENV.join(", ")
                    ),
                ));
            }
        }
        let path = config_path.map(Path::to_path_buf).or_else(|| {
            env.get("SWITCHBOARD_CONFIG")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        });
        let file = match &path {
            None => FileConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError::new(
                        "config",
                        Origin::Env("SWITCHBOARD_CONFIG or --config"),
                        format!("cannot read {}: {e}", p.display()),
                    )
                })?;
                toml::from_str(&text).map_err(|e| {
                    let key = e
                        .span()
                        .map(|s| key_at(&text, s.start))
                        .unwrap_or_else(|| "config".to_owned());
                    ConfigError::new(&key, Origin::File(p.clone()), e.message().to_owned())
                })?
            }
        };
        let p = path.as_deref();

        let (listen, listen_origin) = Layer::file(file.listen, p)
            .env(env, "listen", "SWITCHBOARD_LISTEN", |s| Ok(s.to_owned()))?
            .or("127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen.parse().map_err(|_| {
            ConfigError::new(
                "listen",
                listen_origin,
                format!("expected address:port like 127.0.0.1:8080, got `{listen}`"),
            )
        })?;

        let (data_dir, _) = Layer::file(file.data_dir, p)
            .env(env, "data_dir", "SWITCHBOARD_DATA_DIR", |s| {
                if s.is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(PathBuf::from(s))
                }
            })?
            .or(PathBuf::from("./data"));

        let (database_url, db_origin) = Layer::file(file.database_url.map(Some), p)
            .env(env, "database_url", "DATABASE_URL", |s| {
                Ok((!s.is_empty()).then(|| s.to_owned()))
            })?
            .or(None);
        let database = match database_url {
            None => DatabaseTarget::Sqlite(data_dir.join("switchboard.db")),
            Some(url) => DatabaseTarget::from_url(&url)
                .map_err(|e| ConfigError::new("database_url", db_origin, e.to_string()))?,
        };

        let (admin_token, token_origin) = Layer::file(file.admin_token.map(Some), p)
            .env(env, "admin_token", "SWITCHBOARD_ADMIN_TOKEN", |s| {
                Ok(Some(s.to_owned()))
            })?
            .or(None);
        if let Some(t) = &admin_token
            && t.len() < 16
        {
            return Err(ConfigError::new(
                "admin_token",
                token_origin,
                "must be at least 16 characters",
            ));
        }
        let admin_token = admin_token.map(Secret::new);

        let (master_key, key_origin) = Layer::file(file.master_key.map(Some), p)
            .env(env, "master_key", "SWITCHBOARD_MASTER_KEY", |s| {
                Ok(Some(s.to_owned()))
            })?
            .or(None);
        let master_key = master_key
            .map(|text| {
                let text = Secret::new(text);
                MasterKey::from_base64(text.expose()).map_err(|e| {
                    ConfigError::new(
                        "master_key",
                        key_origin,
                        format!("expected 32 bytes in standard base64: {e}"),
                    )
                })
            })
            .transpose()?;

        let (log_format, _) = Layer::file(file.log.format, p)
            .env(env, "log.format", "SWITCHBOARD_LOG_FORMAT", |s| s.parse())?
            .or(LogFormat::Text);

        let (max_body, origin) = Layer::file(file.http.max_body_bytes, p)
            .env(
                env,
                "http.max_body_bytes",
                "SWITCHBOARD_HTTP_MAX_BODY_BYTES",
                parse_from_str("a byte count"),
            )?
            .or(1024 * 1024);
        let max_body_bytes =
            check_range("http.max_body_bytes", &origin, max_body, 1024, 1 << 30)? as usize;

        let (grace, origin) = Layer::file(file.http.shutdown_grace_secs, p)
            .env(
                env,
                "http.shutdown_grace_secs",
                "SWITCHBOARD_HTTP_SHUTDOWN_GRACE_SECS",
                parse_from_str("seconds"),
            )?
            .or(10);
        let shutdown_grace = Duration::from_secs(check_range(
            "http.shutdown_grace_secs",
            &origin,
            grace,
            0,
            3600,
        )?);

        let (rps, origin) = Layer::file(file.limits.api_requests_per_second, p)
            .env(
                env,
                "limits.api_requests_per_second",
                "SWITCHBOARD_LIMITS_API_REQUESTS_PER_SECOND",
                parse_from_str("a whole number"),
            )?
            .or(50);
        check_range(
            "limits.api_requests_per_second",
            &origin,
            rps.into(),
            1,
            1_000_000,
        )?;
        let (burst, origin) = Layer::file(file.limits.api_burst, p)
            .env(
                env,
                "limits.api_burst",
                "SWITCHBOARD_LIMITS_API_BURST",
                parse_from_str("a whole number"),
            )?
            .or(100);
        check_range("limits.api_burst", &origin, burst.into(), 1, 1_000_000)?;

        let limit = |key: &str,
                     v: Option<u32>,
                     var: &'static str,
                     default: u32|
         -> Result<u32, ConfigError> {
            let (n, origin) = Layer::file(v, p)
                .env(env, key, var, parse_from_str("a whole number"))?
                .or(default);
            Ok(check_range(key, &origin, n.into(), 1, 1_000_000)? as u32)
        };
        let sends_per_second = limit(
            "limits.sends_per_second",
            file.limits.sends_per_second,
            "SWITCHBOARD_LIMITS_SENDS_PER_SECOND",
            10,
        )?;
        let send_burst = limit(
            "limits.send_burst",
            file.limits.send_burst,
            "SWITCHBOARD_LIMITS_SEND_BURST",
            20,
        )?;
        let max_queued_sends = limit(
            "limits.max_queued_sends",
            file.limits.max_queued_sends,
            "SWITCHBOARD_LIMITS_MAX_QUEUED_SENDS",
            10_000,
        )?;

        let (previous, origin) = Layer::file(file.previous_master_keys, p)
            .env(
                env,
                "previous_master_keys",
                "SWITCHBOARD_PREVIOUS_MASTER_KEYS",
                |s| {
                    Ok(s.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect())
                },
            )?
            .or(Vec::new());
        let previous_master_keys = previous
            .iter()
            .map(|k| {
                let k = Secret::new(k.clone());
                MasterKey::from_base64(k.expose()).map_err(|e| {
                    ConfigError::new(
                        "previous_master_keys",
                        origin.clone(),
                        format!("expected 32-byte base64 keys: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let (allow_private, _) = Layer::file(file.webhooks.allow_private, p)
            .env(
                env,
                "webhooks.allow_private",
                "SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS",
                parse_bool,
            )?
            .or(false);
        let duration = |key: &str,
                        v: Option<String>,
                        var: &'static str,
                        default: &str|
         -> Result<Duration, ConfigError> {
            let (text, origin) = Layer::file(v, p)
                .env(env, key, var, |s| Ok(s.to_owned()))?
                .or(default.to_owned());
            schedule::parse_duration(&text).map_err(|m| ConfigError::new(key, origin, m))
        };
        let timeout = duration(
            "webhooks.timeout",
            file.webhooks.timeout,
            "SWITCHBOARD_WEBHOOKS_TIMEOUT",
            "15s",
        )?;
        if timeout.is_zero() || timeout > Duration::from_secs(300) {
            return Err(ConfigError::new(
                "webhooks.timeout",
                Origin::Default,
                "must be between 1ms and 5m",
            ));
        }
        let (sched, origin) = Layer::file(file.webhooks.retry_schedule, p)
            .env(
                env,
                "webhooks.retry_schedule",
                "SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE",
                |s| Ok(s.to_owned()),
            )?
            .or("0,5s,5m,30m,2h,5h,10h,10h".to_owned());
        let retry_schedule = schedule::parse(&sched)
            .map_err(|m| ConfigError::new("webhooks.retry_schedule", origin, m))?;
        let disable_after = duration(
            "webhooks.disable_after",
            file.webhooks.disable_after,
            "SWITCHBOARD_WEBHOOKS_DISABLE_AFTER",
            "5d",
        )?;
        let rotation_grace = duration(
            "webhooks.rotation_grace",
            file.webhooks.rotation_grace,
            "SWITCHBOARD_WEBHOOKS_ROTATION_GRACE",
            "24h",
        )?;
        let (in_flight, origin) = Layer::file(file.webhooks.max_in_flight, p)
            .env(
                env,
                "webhooks.max_in_flight",
                "SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT",
                parse_from_str("a whole number"),
            )?
            .or(256);
        let max_in_flight =
            check_range("webhooks.max_in_flight", &origin, in_flight, 1, 10_000)? as usize;

        let fs = file.sessions;
        let positive = |key: &str, d: Duration| -> Result<Duration, ConfigError> {
            if d.is_zero() {
                Err(ConfigError::new(
                    key,
                    Origin::Default,
                    "must be greater than zero",
                ))
            } else {
                Ok(d)
            }
        };
        let restart_base = positive(
            "sessions.restart_base",
            duration(
                "sessions.restart_base",
                fs.restart_base,
                "SWITCHBOARD_SESSIONS_RESTART_BASE",
                "500ms",
            )?,
        )?;
        let restart_max = duration(
            "sessions.restart_max",
            fs.restart_max,
            "SWITCHBOARD_SESSIONS_RESTART_MAX",
            "60s",
        )?;
        let restart_window = positive(
            "sessions.restart_window",
            duration(
                "sessions.restart_window",
                fs.restart_window,
                "SWITCHBOARD_SESSIONS_RESTART_WINDOW",
                "5m",
            )?,
        )?;
        let watchdog_interval = positive(
            "sessions.watchdog_interval",
            duration(
                "sessions.watchdog_interval",
                fs.watchdog_interval,
                "SWITCHBOARD_SESSIONS_WATCHDOG_INTERVAL",
                "10s",
            )?,
        )?;
        let watchdog_timeout = positive(
            "sessions.watchdog_timeout",
            duration(
                "sessions.watchdog_timeout",
                fs.watchdog_timeout,
                "SWITCHBOARD_SESSIONS_WATCHDOG_TIMEOUT",
                "5s",
            )?,
        )?;
        let send_interval = duration(
            "sessions.send_interval",
            fs.send_interval,
            "SWITCHBOARD_SESSIONS_SEND_INTERVAL",
            "0ms",
        )?;
        let (max_restarts, origin) = Layer::file(fs.max_restarts, p)
            .env(
                env,
                "sessions.max_restarts",
                "SWITCHBOARD_SESSIONS_MAX_RESTARTS",
                parse_from_str("a whole number"),
            )?
            .or(5);
        let max_restarts =
            check_range("sessions.max_restarts", &origin, max_restarts, 0, 1000)? as usize;

        let fc = file.cluster;
        let (replica_id, origin) = Layer::file(fc.replica_id, p)
            .env(env, "cluster.replica_id", "SWITCHBOARD_REPLICA_ID", |s| {
                Ok(s.to_owned())
            })?
            .or(String::new());
        if !replica_id.is_empty()
            && (replica_id.len() > 64
                || !replica_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(ConfigError::new(
                "cluster.replica_id",
                origin,
                "at most 64 letters, digits, `-`, `_` or `.`",
            ));
        }
        let lease_ttl = duration(
            "cluster.lease_ttl",
            fc.lease_ttl,
            "SWITCHBOARD_CLUSTER_LEASE_TTL",
            "15s",
        )?;
        if lease_ttl < Duration::from_secs(3) {
            return Err(ConfigError::new(
                "cluster.lease_ttl",
                Origin::Default,
                "must be at least 3s (replicas renew every third of it)",
            ));
        }
        let (max_sessions, origin) = Layer::file(fc.max_sessions, p)
            .env(
                env,
                "cluster.max_sessions",
                "SWITCHBOARD_CLUSTER_MAX_SESSIONS",
                parse_from_str("a whole number"),
            )?
            .or(1000);
        let cluster = ClusterConfig {
            replica_id: Some(replica_id).filter(|r| !r.is_empty()),
            lease_ttl,
            max_sessions: check_range("cluster.max_sessions", &origin, max_sessions, 1, 1_000_000)?
                as usize,
        };

        let (chromium_path, _) = Layer::file(file.browser.chromium_path.map(Some), p)
            .env(
                env,
                "browser.chromium_path",
                "SWITCHBOARD_CHROMIUM_PATH",
                |s| Ok(Some(PathBuf::from(s))),
            )?
            .or(None);
        if let Some(path) = &chromium_path
            && !path.is_file()
        {
            return Err(ConfigError::new(
                "browser.chromium_path",
                Origin::Default,
                format!("{} is not a file", path.display()),
            ));
        }
        let (browser_args, _) = Layer::file(file.browser.args, p)
            .env(env, "browser.args", "SWITCHBOARD_BROWSER_ARGS", |s| {
                Ok(s.split_whitespace().map(str::to_owned).collect())
            })?
            .or(Vec::new());
        if let Some(bad) = browser_args.iter().find(|a| !a.starts_with("--")) {
            return Err(ConfigError::new(
                "browser.args",
                Origin::Default,
                format!("`{bad}` is not a flag (flags start with --)"),
            ));
        }
        let open_timeout = positive(
            "browser.open_timeout",
            duration(
                "browser.open_timeout",
                file.browser.open_timeout,
                "SWITCHBOARD_BROWSER_OPEN_TIMEOUT",
                "45s",
            )?,
        )?;
        let (isolation, origin) = Layer::file(file.browser.isolation, p)
            .env(
                env,
                "browser.isolation",
                "SWITCHBOARD_BROWSER_ISOLATION",
                |s| Ok(s.to_owned()),
            )?
            .or(Isolation::default().as_str().to_owned());
        let isolation = Isolation::parse(&isolation).ok_or_else(|| {
            ConfigError::new(
                "browser.isolation",
                origin,
                format!("`{isolation}` is not `process` or `context`"),
            )
        })?;
        let (single_process, _) = Layer::file(file.browser.single_process, p)
            .env(
                env,
                "browser.single_process",
                "SWITCHBOARD_BROWSER_SINGLE_PROCESS",
                parse_bool,
            )?
            .or(true);
        let fw = file.whatsapp;
        let (wa_url, origin) = Layer::file(fw.url, p)
            .env(env, "whatsapp.url", "SWITCHBOARD_WHATSAPP_URL", |s| {
                Ok(s.to_owned())
            })?
            .or(whatsapp::contract::DEFAULT_URL.to_owned());
        match url::Url::parse(&wa_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(ConfigError::new(
                    "whatsapp.url",
                    origin,
                    "must be an http(s) URL",
                ));
            }
        }
        let (qr_refreshes, origin) = Layer::file(fw.max_qr_refreshes, p)
            .env(
                env,
                "whatsapp.max_qr_refreshes",
                "SWITCHBOARD_WHATSAPP_MAX_QR_REFRESHES",
                parse_from_str("a whole number"),
            )?
            .or(u64::from(WhatsAppSettings::default().max_qr_refreshes));
        let max_qr_refreshes =
            check_range("whatsapp.max_qr_refreshes", &origin, qr_refreshes, 0, 1000)? as u32;
        let load_timeout = positive(
            "whatsapp.load_timeout",
            duration(
                "whatsapp.load_timeout",
                fw.load_timeout,
                "SWITCHBOARD_WHATSAPP_LOAD_TIMEOUT",
                "60s",
            )?,
        )?;

        let heartbeat = positive(
            "whatsapp.heartbeat",
            duration(
                "whatsapp.heartbeat",
                fw.heartbeat,
                "SWITCHBOARD_WHATSAPP_HEARTBEAT",
                "15s",
            )?,
        )?;

        let (humanise, _) = Layer::file(fw.humanise, p)
            .env(
                env,
                "whatsapp.humanise",
                "SWITCHBOARD_WHATSAPP_HUMANISE",
                parse_bool,
            )?
            .or(true);

        let fl = file.linkedin;
        let (li_url, origin) = Layer::file(fl.url, p)
            .env(env, "linkedin.url", "SWITCHBOARD_LINKEDIN_URL", |s| {
                Ok(s.to_owned())
            })?
            .or(linkedin::contract::DEFAULT_URL.to_owned());
        match url::Url::parse(&li_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(ConfigError::new(
                    "linkedin.url",
                    origin,
                    "must be an http(s) URL",
                ));
            }
        }
        let li_cool_down = positive(
            "linkedin.cool_down",
            duration(
                "linkedin.cool_down",
                fl.cool_down,
                "SWITCHBOARD_LINKEDIN_COOL_DOWN",
                "30m",
            )?,
        )?;
        let li_catch_up = positive(
            "linkedin.catch_up_every",
            duration(
                "linkedin.catch_up_every",
                fl.catch_up_every,
                "SWITCHBOARD_LINKEDIN_CATCH_UP_EVERY",
                "3m",
            )?,
        )?;

        let fe = file.email;
        let idle_renew = positive(
            "email.idle_renew",
            duration(
                "email.idle_renew",
                fe.idle_renew,
                "SWITCHBOARD_EMAIL_IDLE_RENEW",
                "10m",
            )?,
        )?;
        if idle_renew > Duration::from_secs(29 * 60) {
            return Err(ConfigError::new(
                "email.idle_renew",
                Origin::Default,
                "must be under 29m (servers end an IDLE after 30 minutes)",
            ));
        }
        let poll_interval = positive(
            "email.poll_interval",
            duration(
                "email.poll_interval",
                fe.poll_interval,
                "SWITCHBOARD_EMAIL_POLL_INTERVAL",
                "60s",
            )?,
        )?;
        let (connects, origin) = Layer::file(fe.connects_per_second_per_host, p)
            .env(
                env,
                "email.connects_per_second_per_host",
                "SWITCHBOARD_EMAIL_CONNECTS_PER_SECOND_PER_HOST",
                parse_from_str("a whole number"),
            )?
            .or(u64::from(
                EmailSettings::default().connects_per_second_per_host,
            ));
        let connects_per_second_per_host = check_range(
            "email.connects_per_second_per_host",
            &origin,
            connects,
            1,
            100_000,
        )? as u32;
        let (max_message_bytes, origin) = Layer::file(fe.max_message_bytes, p)
            .env(
                env,
                "email.max_message_bytes",
                "SWITCHBOARD_EMAIL_MAX_MESSAGE_BYTES",
                parse_from_str("a whole number of bytes"),
            )?
            .or(EmailSettings::default().max_message_bytes);
        let max_message_bytes = check_range(
            "email.max_message_bytes",
            &origin,
            max_message_bytes,
            1024,
            1 << 30,
        )?;

        let fm = file.media;
        let media_bytes = |key: &str, v: Option<u64>, var: &'static str, default: u64, max: u64| {
            let (n, origin) = Layer::file(v, p)
                .env(env, key, var, parse_from_str("a whole number of bytes"))?
                .or(default);
            check_range(key, &origin, n, 1024, max)
        };
        let max_file_bytes = media_bytes(
            "media.max_file_bytes",
            fm.max_file_bytes,
            "SWITCHBOARD_MEDIA_MAX_FILE_BYTES",
            100 << 20,
            4 << 30,
        )?;
        let max_tenant_bytes = media_bytes(
            "media.max_tenant_bytes",
            fm.max_tenant_bytes,
            "SWITCHBOARD_MEDIA_MAX_TENANT_BYTES",
            10 << 30,
            1 << 50,
        )?;
        let media_text = |key: &str,
                          v: Option<String>,
                          var: &'static str|
         -> Result<(Option<String>, Origin), ConfigError> {
            let (v, origin) = Layer::file(v, p)
                .env(env, key, var, |s| Ok(s.to_owned()))?
                .or(String::new());
            Ok((Some(v).filter(|v| !v.is_empty()), origin))
        };
        let (download, origin) =
            media_text("media.download", fm.download, "SWITCHBOARD_MEDIA_DOWNLOAD")?;
        let download = match download {
            None => Download::Eager,
            Some(d) => d
                .parse()
                .map_err(|m| ConfigError::new("media.download", origin, m))?,
        };
        let (backend, origin) =
            media_text("media.backend", fm.backend, "SWITCHBOARD_MEDIA_BACKEND")?;
        let backend = match backend.as_deref() {
            None | Some("local") => MediaBackendConfig::Local,
            Some("s3") => {
                let required = |key: &str, v: Option<String>, var: &'static str| {
                    media_text(key, v, var)?.0.ok_or_else(|| {
                        ConfigError::new(
                            key,
                            Origin::Default,
                            format!("is required with media.backend = \"s3\" (or set {var})"),
                        )
                    })
                };
                let (endpoint, origin) = media_text(
                    "media.s3_endpoint",
                    fm.s3_endpoint,
                    "SWITCHBOARD_MEDIA_S3_ENDPOINT",
                )?;
                if let Some(e) = &endpoint
                    && !url::Url::parse(e)
                        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                {
                    return Err(ConfigError::new(
                        "media.s3_endpoint",
                        origin,
                        "must be an http(s) URL",
                    ));
                }
                MediaBackendConfig::S3(S3Settings {
                    endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
                    bucket: required(
                        "media.s3_bucket",
                        fm.s3_bucket,
                        "SWITCHBOARD_MEDIA_S3_BUCKET",
                    )?,
                    region: media_text(
                        "media.s3_region",
                        fm.s3_region,
                        "SWITCHBOARD_MEDIA_S3_REGION",
                    )?
                    .0
                    .unwrap_or_else(|| "us-east-1".into()),
                    access_key_id: required(
                        "media.s3_access_key_id",
                        fm.s3_access_key_id,
                        "SWITCHBOARD_MEDIA_S3_ACCESS_KEY_ID",
                    )?,
                    secret_access_key: required(
                        "media.s3_secret_access_key",
                        fm.s3_secret_access_key,
                        "SWITCHBOARD_MEDIA_S3_SECRET_ACCESS_KEY",
                    )?,
                    prefix: media_text(
                        "media.s3_prefix",
                        fm.s3_prefix,
                        "SWITCHBOARD_MEDIA_S3_PREFIX",
                    )?
                    .0
                    .unwrap_or_else(|| "media/".into()),
                })
            }
            Some(other) => {
                return Err(ConfigError::new(
                    "media.backend",
                    origin,
                    format!("`{other}` is not `local` or `s3`"),
                ));
            }
        };
        let media = MediaConfig {
            download,
            backend,
            max_file_bytes,
            max_tenant_bytes,
            retention: positive(
                "media.retention",
                duration(
                    "media.retention",
                    fm.retention,
                    "SWITCHBOARD_MEDIA_RETENTION",
                    "30d",
                )?,
            )?,
        };

        let fr = file.rag;
        let text = |key: &str,
                    v: Option<String>,
                    var: &'static str|
         -> Result<Option<String>, ConfigError> {
            let (v, _) = Layer::file(v, p)
                .env(env, key, var, |s| Ok(s.to_owned()))?
                .or(String::new());
            Ok(Some(v).filter(|v| !v.is_empty()))
        };
        let api_url = |key: &str,
                       v: Option<String>,
                       var: &'static str|
         -> Result<Option<String>, ConfigError> {
            let Some(v) = text(key, v, var)? else {
                return Ok(None);
            };
            match url::Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    Ok(Some(v.trim_end_matches('/').to_owned()))
                }
                _ => Err(ConfigError::new(
                    key,
                    Origin::Env(var),
                    "must be an http(s) URL",
                )),
            }
        };
        // Where this gateway is reached from outside: links it hands out (one-click
        // unsubscribe in e-mail) start with it.
        let public_url = api_url("public_url", file.public_url, "SWITCHBOARD_PUBLIC_URL")?;
        let (model_dir, _) = Layer::file(fr.model_dir, p)
            .env(env, "rag.model_dir", "SWITCHBOARD_MODEL_DIR", |s| {
                Ok(PathBuf::from(s))
            })?
            .or(PathBuf::from("models").join("all-MiniLM-L6-v2"));
        let (concurrency, origin) = Layer::file(fr.concurrency, p)
            .env(
                env,
                "rag.concurrency",
                "SWITCHBOARD_RAG_CONCURRENCY",
                parse_from_str("a whole number"),
            )?
            .or(2);
        let rag = RagConfig {
            model_dir,
            embeddings_url: api_url(
                "rag.embeddings_url",
                fr.embeddings_url,
                "SWITCHBOARD_EMBEDDINGS_URL",
            )?,
            embeddings_model: text(
                "rag.embeddings_model",
                fr.embeddings_model,
                "SWITCHBOARD_EMBEDDINGS_MODEL",
            )?
            .unwrap_or_else(|| "text-embedding-3-small".into()),
            embeddings_api_key: text(
                "rag.embeddings_api_key",
                fr.embeddings_api_key,
                "SWITCHBOARD_EMBEDDINGS_API_KEY",
            )?,
            llm_url: api_url("rag.llm_url", fr.llm_url, "SWITCHBOARD_LLM_URL")?,
            llm_model: text("rag.llm_model", fr.llm_model, "SWITCHBOARD_LLM_MODEL")?
                .unwrap_or_else(|| "gpt-4o-mini".into()),
            llm_api_key: text("rag.llm_api_key", fr.llm_api_key, "SWITCHBOARD_LLM_API_KEY")?,
            llm_timeout: positive(
                "rag.llm_timeout",
                duration(
                    "rag.llm_timeout",
                    fr.llm_timeout,
                    "SWITCHBOARD_LLM_TIMEOUT",
                    "30s",
                )?,
            )?,
            qdrant_url: api_url("rag.qdrant_url", fr.qdrant_url, "QDRANT_URL")?,
            qdrant_api_key: text("rag.qdrant_api_key", fr.qdrant_api_key, "QDRANT_API_KEY")?,
            concurrency: check_range("rag.concurrency", &origin, concurrency, 1, 64)? as usize,
        };

        let retention_sweep_interval = positive(
            "retention.sweep_interval",
            duration(
                "retention.sweep_interval",
                file.retention.sweep_interval,
                "SWITCHBOARD_RETENTION_SWEEP_INTERVAL",
                "60s",
            )?,
        )?;
        Ok(Config {
            retention_sweep_interval,
            cluster,
            rag,
            media,
            browser: BrowserConfig {
                chromium_path,
                args: browser_args,
                open_timeout,
                isolation,
                single_process,
            },
            channels: channels::Settings {
                whatsapp: WhatsAppSettings {
                    url: wa_url,
                    max_qr_refreshes,
                    load_timeout,
                    heartbeat,
                    humanise,
                },
                email: EmailSettings {
                    idle_renew,
                    poll_interval,
                    connects_per_second_per_host,
                    max_message_bytes,
                    public_url,
                },
                linkedin: LinkedInSettings {
                    url: li_url,
                    load_timeout,
                    cool_down: li_cool_down,
                    catch_up_every: li_catch_up,
                },
            },
            sessions: SessionConfig {
                restart_base,
                restart_max: restart_max.max(restart_base),
                max_restarts,
                restart_window,
                watchdog_interval,
                watchdog_timeout,
                send_interval,
            },
            previous_master_keys,
            webhooks: WebhookSettings {
                allow_private,
                timeout,
                retry_schedule,
                disable_after,
                rotation_grace,
                max_in_flight,
            },
            listen,
            data_dir,
            database,
            admin_token,
            master_key,
            log_format,
            max_body_bytes,
            shutdown_grace,
            limits: DefaultLimits {
                api_requests_per_second: rps,
                api_burst: burst,
                sends_per_second,
                send_burst,
                max_queued_sends,
            },
        })
    }
}

/// The dotted key whose line holds byte `offset` of a TOML text (`http.max_body_bytes`).
fn key_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    let key = line
        .split('=')
        .next()
        .unwrap_or_default()
        .trim()
        .trim_matches('"');
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match (section, key.is_empty()) {
        (_, true) => "config".to_owned(),
        (Some(sec), false) => format!("{sec}.{key}"),
        (None, false) => key.to_owned(),
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_configuration_at_all_gives_laptop_defaults() {
        let c = Config::load(&env(&[]), None).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(
            c.database,
            DatabaseTarget::Sqlite("./data/switchboard.db".into())
        );
        assert!(c.admin_token.is_none() && c.master_key.is_none());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert!(!c.webhooks.allow_private);
        assert_eq!(c.webhooks.retry_schedule.len(), 8);
        assert_eq!(c.webhooks.disable_after, Duration::from_secs(5 * 86_400));
    }

    #[test]
    fn environment_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[http]\nmax_body_bytes = 4096\n",
        )
        .unwrap();
        let c = Config::load(
            &env(&[("SWITCHBOARD_LISTEN", "127.0.0.1:9001")]),
            Some(&file),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.max_body_bytes, 4096);
        let c = Config::load(
            &env(&[("SWITCHBOARD_CONFIG", file.to_str().unwrap())]),
            None,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
    }

    #[test]
    fn browser_isolation_is_process_unless_told() {
        let c = Config::load(&env(&[]), None).unwrap();
        assert_eq!(c.browser.isolation, Isolation::Process);
        assert!(c.browser.single_process);
        let c = Config::load(
            &env(&[("SWITCHBOARD_BROWSER_SINGLE_PROCESS", "false")]),
            None,
        )
        .unwrap();
        assert!(!c.browser.single_process);
        let c = Config::load(&env(&[("SWITCHBOARD_BROWSER_ISOLATION", "context")]), None).unwrap();
        assert_eq!(c.browser.isolation, Isolation::Context);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[browser]\nisolation = \"context\"\n").unwrap();
        let c = Config::load(&env(&[]), Some(&file)).unwrap();
        assert_eq!(c.browser.isolation, Isolation::Context);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("SWITCHBOARD_LISTEN", "nope")],
                "`listen` (from SWITCHBOARD_LISTEN)",
            ),
            (
                &[("SWITCHBOARD_HTTP_MAX_BODY_BYTES", "x")],
                "`http.max_body_bytes`",
            ),
            (
                &[("SWITCHBOARD_HTTP_MAX_BODY_BYTES", "10")],
                "must be between",
            ),
            (&[("SWITCHBOARD_MASTER_KEY", "short")], "`master_key`"),
            (&[("SWITCHBOARD_ADMIN_TOKEN", "short")], "`admin_token`"),
            (
                &[("DATABASE_URL", "mysql://x")],
                "`database_url` (from DATABASE_URL)",
            ),
            (&[("SWITCHBOARD_LOG_FORMAT", "xml")], "`log.format`"),
            (
                &[("SWITCHBOARD_BROWSER_ISOLATION", "thread")],
                "`browser.isolation` (from SWITCHBOARD_BROWSER_ISOLATION)",
            ),
            (
                &[("SWITCHBOARD_LISTN", "127.0.0.1:1")],
                "`SWITCHBOARD_LISTN`",
            ),
        ];
        for (vars, expected) in cases {
            let err = Config::load(&env(vars), None).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }

    #[test]
    fn file_errors_name_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[http]\nmax_body_byte = 4096\n").unwrap();
        let err = Config::load(&env(&[]), Some(&file))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`http.max_body_byte`"), "{err}");
        assert!(err.contains("c.toml"), "{err}");
        std::fs::write(&file, "listen = 5\n").unwrap();
        let err = Config::load(&env(&[]), Some(&file))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let c = Config::load(
            &env(&[
                ("SWITCHBOARD_ADMIN_TOKEN", "admin-token-secret-value"),
                ("SWITCHBOARD_MASTER_KEY", key),
                ("DATABASE_URL", "postgres://u:dbpassword@127.0.0.1/x"),
            ]),
            None,
        )
        .unwrap();
        let dbg = format!("{c:?}");
        for secret in ["admin-token-secret-value", key, "dbpassword"] {
            assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
        }
    }
}
