//! The WhatsApp channel: WhatsApp Web in a browser of the [`BrowserPool`].
//!
//! Connect (in a task beside the session actor, so a browser launch or a slow page
//! never blocks its mailbox; a failure arrives as a disconnection): lease a page, give
//! back the saved login, install the observer from the [`contract`] (run in every new
//! document, so it survives navigations) and open the page. Where the login lives
//! depends on the pool's isolation: with `process` it is the session's own browser
//! profile on disk (WhatsApp Web's keys are non-extractable WebCrypto keys, which only
//! a browser profile keeps); with `context` it is a JSON snapshot of the page's
//! storage, sealed on the session row, which brings back only what it could capture.
//! The pump then turns what the observer reports into [`ChannelEvent`]s:
//!
//! - a QR value → `Qr` (a QR on a page that was logged in means the login is gone →
//!   `LoggedOut`, and the saved login is wiped);
//! - synced → `Ready`; then what arrived while no page listened is caught up from
//!   the page's messages (the session stores each WhatsApp id once);
//! - a new message → `Inbound` (system and status messages skipped, captions as
//!   text, the phone number beside the LID); an ack → `Ack`;
//! - a passkey step → `Challenge` (`app_approval`): a person must act on the phone;
//! - `TIMEOUT` → `Reconnecting` while the page gets its connection back itself, and
//!   `Disconnected` if that takes longer than the load timeout;
//! - `CONFLICT`, `DEPRECATED_VERSION`, `TOS_BLOCK`, or an essential module missing →
//!   `Failed`, with the reason: reconnecting would not help;
//! - logout from the phone → the saved login is wiped, then `LoggedOut`;
//! - a lost connection, a crashed page, a dead browser, a page that stops answering
//!   or whose message listener went deaf (the heartbeat sees messages the observer
//!   never reported) → `Disconnected` (the supervisor reconnects with backoff);
//! - nothing at all within the load timeout → `Disconnected` (never a zombie).
//!
//! Media: a received file is downloaded from the page (which decrypts it, as
//! whatsapp-web.js's `downloadMedia` does) into the media store before the message
//! is reported, so `message.received` carries its `media` id; a file gone from
//! WhatsApp's servers is reported with `media.error`. A file to send is staged on the
//! page from the store and sent beside the session actor (it may take seconds).
//! Quotes, reactions, edits, deletes for everyone and read marks go through the
//! page's own modules (see the [`contract`]).
//!
//! Sends return once the page has taken the message (it queues and retries by
//! itself); `delivered` and `read` come from acks. Each send carries a WhatsApp
//! message id derived from our id ([`contract::message_key_id`]), so a send retried
//! after a crash is found in the chat and not sent twice.

pub mod contract;
mod media;
pub mod pacing;

use super::{
    Challenge, ChallengeKind, Channel, ChannelError, ChannelEvent, ChannelKind, Context,
    InboundMessage, OutboundMessage, Party, QrPolicy, ReceivedMedia,
};
use crate::browser::{BrowserPool, Isolation, Lease, profile};
use crate::storage::SESSION_STATE_PURPOSE;
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, EventRequestPaused, FulfillRequestParams, HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
use chromiumoxide::cdp::js_protocol::runtime::{AddBindingParams, EventBindingCalled};
use chromiumoxide::page::Page;
use contract::{PageEvent, PageMessage, StateMeaning};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_crypto::Binding;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often a working session's login state is captured again.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(600);
/// How often it is saved when replicas share the database (another replica takes
/// the session over from what was saved last).
pub const SHARED_SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
/// How long after logging in the login is saved again (Chromium has written its
/// Local Storage to disk by then).
const STORAGE_SETTLE: Duration = Duration::from_secs(8);
/// How long a page call made from the session actor (send, lists, pairing code) may
/// take: below the watchdog's patience, so a stuck page is a failed call, not a hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the connection task's page calls (restore, snapshot) may take.
const SLOW_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How far before the newest stored message a catch-up looks (clocks differ).
const CATCH_UP_MARGIN: Duration = Duration::from_secs(120);
/// The file in a session's profile that says it holds a login.
const PAIRED_MARKER: &str = "switchboard-paired";
/// Beside the marker: the page's own capture of its storage at the last save
/// ([`contract::SNAPSHOT_JS`]), packed with the profile so a replica that unpacks
/// it can fill in what Chromium had not yet written to disk.
const SNAPSHOT_FILE: &str = "switchboard-snapshot.json";
/// Message ids remembered as reported (for the liveness check).
const SEEN_LIMIT: usize = 2_000;

/// Gateway-wide WhatsApp settings (the gateway's `whatsapp.*` config).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// WhatsApp Web's address (a stand-in's in tests).
    pub url: String,
    /// QR refreshes without a scan before the session fails with `qr_timeout`.
    pub max_qr_refreshes: u32,
    /// How long the page may take to show a QR code or log in.
    pub load_timeout: Duration,
    /// How often a connected page is probed; a page that does not answer within
    /// the same time is treated as disconnected (no "connected but dead" sessions).
    pub heartbeat: Duration,
    /// Humanised sending ([`pacing`]) for sessions that do not say.
    pub humanise: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url: contract::DEFAULT_URL.into(),
            max_qr_refreshes: 5,
            load_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            humanise: true,
        }
    }
}

/// Per-session configuration (`config` of the session); unknown fields are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// Humanised sending ([`pacing`]).
    #[serde(default)]
    pub pacing: pacing::PacingConfig,
}

impl WhatsAppConfig {
    pub fn parse(v: &serde_json::Value) -> Result<Self, ChannelError> {
        if v.is_null() {
            return Ok(Self::default());
        }
        let c: Self =
            serde_json::from_value(v.clone()).map_err(|e| ChannelError::Config(e.to_string()))?;
        pacing::Pacing::from_config(&c.pacing, true, 0).map_err(ChannelError::Config)?;
        Ok(c)
    }
}

/// The humanised sending a session's sends get, and what it used: the limits view.
pub async fn limits(
    row: &crate::storage::SessionRow,
    config: &serde_json::Value,
    store: &crate::storage::Store,
    settings: &Settings,
) -> Result<serde_json::Value, String> {
    let c = WhatsAppConfig::parse(config).map_err(|e| e.to_string())?;
    let p = pacing::Pacing::from_config(&c.pacing, settings.humanise, row.created_at)?;
    let now = crate::clock::now_ms();
    let sends = sends_of(store, &row.id, now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(serde_json::json!({ "session_id": row.id, "pacing": p.view(now, &sends) }))
}

/// What `account_actions` calls a WhatsApp send.
const SEND_ACTION: &str = "wa_send";

/// The account's sends of the last day (unix ms, oldest first).
async fn sends_of(
    store: &crate::storage::Store,
    session_id: &str,
    now: i64,
) -> Result<Vec<i64>, crate::storage::StoreError> {
    Ok(store
        .account_actions(session_id, now - 24 * 3600 * 1000)
        .await?
        .into_iter()
        .filter(|(k, _)| k == SEND_ACTION)
        .map(|(_, at)| at)
        .collect())
}

/// How long a lazy file's first read waits for a (re)connecting session's page.
const FETCH_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct WhatsApp {
    tenant_id: String,
    session_id: String,
    ctx: Context,
    pacing: pacing::Pacing,
    /// The browser context, once the connection task has it.
    lease: Arc<Mutex<Option<Lease>>>,
    /// The page is logged in and connected (its messages synced): what a lazy
    /// file's download needs, which a page still loading or restoring cannot do.
    page_ready: Arc<AtomicBool>,
    /// Connects, then pumps the page's reports (off the actor, so a slow page
    /// never blocks the session's mailbox).
    task: Option<JoinHandle<()>>,
}

impl Drop for WhatsApp {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(pool) = &self.ctx.browser {
            pool.close(&self.session_id);
        }
    }
}

/// Saved login state: what it is bound to, for sealing.
fn state_binding<'a>(tenant_id: &'a str, session_id: &'a str) -> Binding<'a> {
    Binding {
        tenant_id,
        record_id: session_id,
        purpose: SESSION_STATE_PURPOSE,
    }
}

/// Everything the pump needs, detached from the channel.
#[derive(Debug, Clone)]
struct Saver {
    tenant_id: String,
    session_id: String,
    ctx: Context,
}

impl Saver {
    /// The saved login, opened: a JSON snapshot, or a packed profile
    /// ([`profile::is_packed`]).
    async fn load(&self) -> Option<Vec<u8>> {
        let (key_id, data) = match self.ctx.store.session_state(&self.session_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "saved login not readable; pairing afresh");
                return None;
            }
        };
        let binding = state_binding(&self.tenant_id, &self.session_id);
        match self.ctx.keyring.open(&key_id, &data, binding) {
            Ok(bytes) => Some(bytes.to_vec()),
            Err(e) => {
                tracing::warn!(error = %e, "saved login cannot be decrypted; pairing afresh");
                None
            }
        }
    }

    /// Whether replicas share this session's database: then its login must be
    /// in the database while it runs, for another replica to take it over.
    fn shared(&self) -> bool {
        self.ctx.cluster.is_some() && self.ctx.store.backend() == crate::storage::Backend::Postgres
    }

    /// Packs the session's live profile (its login's storage) and seals it into
    /// the database.
    async fn seal_profile(&self) -> Result<usize, String> {
        let Some(pool) = &self.ctx.browser else {
            return Err("no browser pool".into());
        };
        let src = pool.profile_dir(&self.session_id);
        let bytes = tokio::task::spawn_blocking(move || {
            profile::pack(&src, &[PAIRED_MARKER, SNAPSHOT_FILE])
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.store_state(&bytes).await?;
        Ok(bytes.len())
    }

    async fn save(&self, page: &Page, isolation: Isolation) -> Result<(), String> {
        let local_only = isolation == Isolation::Process;
        if local_only {
            // The login is the profile on disk; remember that there is one.
            let marker = self.paired_marker();
            std::fs::write(&marker, b"paired\n")
                .map_err(|e| format!("{}: {e}", marker.display()))?;
        }
        let snapshot = call(
            page,
            contract::SNAPSHOT_JS,
            &[local_only.into()],
            SLOW_CALL_TIMEOUT,
        )
        .await?;
        if local_only && self.shared() {
            // Replicas share the database: the profile itself goes there, with the
            // page's capture beside it (a replica that takes the session over
            // unpacks both).
            let file = self.paired_marker().with_file_name(SNAPSHOT_FILE);
            std::fs::write(&file, snapshot.as_bytes())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let bytes = self.seal_profile().await?;
            tracing::debug!(bytes, "browser profile sealed into the database");
            return Ok(());
        }
        if !local_only && snapshot.contains("\"complete\":false") {
            tracing::warn!(
                "this login keeps keys no snapshot can capture; with browser.isolation=context \
                 it will not survive a restart (use process isolation)"
            );
        }
        self.store_state(snapshot.as_bytes()).await?;
        tracing::debug!(bytes = snapshot.len(), "login state saved");
        Ok(())
    }

    /// Seals `bytes` as the session's saved login.
    async fn store_state(&self, bytes: &[u8]) -> Result<(), String> {
        let binding = state_binding(&self.tenant_id, &self.session_id);
        let sealed = self
            .ctx
            .keyring
            .seal(bytes, binding)
            .map_err(|e| e.to_string())?;
        let fence = self.ctx.fence(&self.session_id);
        let saved = self
            .ctx
            .store
            .set_session_state(
                &self.session_id,
                Some((&sealed.key_id, &sealed.data)),
                fence.as_ref(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if !saved {
            crate::sessions::session::fenced(&self.session_id, "saved login");
            return Err("another replica holds this session now".into());
        }
        Ok(())
    }

    /// After the session's browser closed (`process` isolation): a session stopped for
    /// good has its profile packed, sealed into the database and removed from disk; a
    /// deleted one just removed. A session that will run again (a reconnect, a gateway
    /// restart) keeps its profile where it is.
    async fn put_to_rest(&self) {
        let Some(pool) = &self.ctx.browser else {
            return;
        };
        let dir = pool.profile_dir(&self.session_id);
        if !dir.is_dir() {
            return;
        }
        let row = match self.ctx.store.session_by_id(&self.session_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "session not readable; its profile stays on disk");
                return;
            }
        };
        // Handed over to another replica (or its lease lost): the login goes to the
        // database (refused there if another replica holds it already) and leaves
        // this disk.
        let moving = self.shared()
            && self
                .ctx
                .cluster
                .as_ref()
                .is_some_and(|c| c.holds(&self.session_id).is_none());
        match row {
            Some(r) if r.desired_state == "running" && !moving => return,
            Some(_) if self.paired_marker().is_file() => match self.seal_profile().await {
                Ok(bytes) => tracing::info!(bytes, "browser profile sealed into the database"),
                Err(e) => {
                    tracing::error!(error = %e, "browser profile not sealed; it stays on disk");
                    return;
                }
            },
            _ => {}
        }
        // Removed here, not by the pool, so a start right after cannot race it.
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(error = %e, "browser profile not removed");
        }
    }

    /// Gives back a profile sealed at the last stop, unless the profile is on disk.
    async fn unpack_profile(&self, saved: &[u8]) -> Result<(), String> {
        let Some(pool) = &self.ctx.browser else {
            return Ok(());
        };
        if self.paired_marker().is_file() {
            return Ok(());
        }
        let (dir, bytes) = (pool.profile_dir(&self.session_id), saved.to_vec());
        tokio::task::spawn_blocking(move || profile::unpack(&bytes, &dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        tracing::info!("browser profile unpacked from the database");
        Ok(())
    }

    /// Marks a profile that holds a login (`process` isolation).
    fn paired_marker(&self) -> std::path::PathBuf {
        self.ctx
            .browser
            .as_ref()
            .map(|p| p.profile_dir(&self.session_id))
            .unwrap_or_default()
            .join(PAIRED_MARKER)
    }

    /// Since when (seconds) messages the page holds may be new to us: a little before
    /// the newest one stored, and never before the session existed.
    async fn catch_up_since(&self) -> i64 {
        let created = self
            .ctx
            .store
            .session_by_id(&self.session_id)
            .await
            .ok()
            .flatten()
            .map_or(0, |s| s.created_at);
        let newest = self
            .ctx
            .store
            .latest_inbound_at(&self.session_id)
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        (created.max(newest - CATCH_UP_MARGIN.as_millis() as i64)) / 1000
    }

    /// Forgets the login: saved state and profile directory.
    async fn wipe(&self) {
        let fence = self.ctx.fence(&self.session_id);
        match self
            .ctx
            .store
            .set_session_state(&self.session_id, None, fence.as_ref())
            .await
        {
            Ok(true) => {}
            Ok(false) => crate::sessions::session::fenced(&self.session_id, "wiped login"),
            Err(e) => tracing::error!(error = %e, "saved login not wiped"),
        }
        if let Some(pool) = &self.ctx.browser {
            pool.wipe(&self.session_id);
        }
    }
}

impl WhatsApp {
    pub fn new(
        row: &crate::storage::SessionRow,
        config: WhatsAppConfig,
        ctx: Context,
    ) -> Result<Self, ChannelError> {
        let pacing = pacing::Pacing::from_config(
            &config.pacing,
            ctx.settings.whatsapp.humanise,
            row.created_at,
        )
        .map_err(ChannelError::Config)?;
        Ok(Self {
            tenant_id: row.tenant_id.clone(),
            session_id: row.id.clone(),
            pacing,
            ctx,
            lease: Arc::default(),
            page_ready: Arc::default(),
            task: None,
        })
    }

    fn sending(&self) -> Sending {
        Sending {
            tenant_id: self.tenant_id.clone(),
            session_id: self.session_id.clone(),
            store: self.ctx.store.clone(),
            media: self.ctx.media.clone(),
            pacing: self.pacing.clone(),
        }
    }

    fn saver(&self) -> Saver {
        Saver {
            tenant_id: self.tenant_id.clone(),
            session_id: self.session_id.clone(),
            ctx: self.ctx.clone(),
        }
    }

    fn page(&self) -> Result<Page, ChannelError> {
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|l| !l.lost.is_cancelled())
            .map(|l| l.page.clone())
            .ok_or(ChannelError::NotConnected)
    }

    async fn release(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.page_ready.store(false, Ordering::Release);
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pool) = &self.ctx.browser {
            pool.close(&self.session_id);
        }
    }
}

/// Leases a context, restores the saved login, installs the observer, opens the
/// page, then pumps what the page reports until the connection ends.
async fn connect_and_pump(
    saver: Saver,
    slot: Arc<Mutex<Option<Lease>>>,
    page_ready: Arc<AtomicBool>,
    events: mpsc::Sender<ChannelEvent>,
) -> Result<(), ChannelError> {
    let pool: BrowserPool = saver
        .ctx
        .browser
        .clone()
        .ok_or_else(|| ChannelError::Failed("the browser pool is not running".into()))?;
    let settings = saver.ctx.settings.whatsapp.clone();
    let saved = saver.load().await;
    if pool.isolation() == Isolation::Process
        && let Some(bytes) = saved.as_deref().filter(|b| profile::is_packed(b))
    {
        saver
            .unpack_profile(bytes)
            .await
            .map_err(|e| ChannelError::Failed(format!("unpacking the browser profile: {e}")))?;
    }
    let lease = pool
        .open(&saver.session_id)
        .await
        .map_err(ChannelError::Failed)?;
    let page = lease.page.clone();
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease.clone());
    let isolation = lease.isolation;
    let snapshot = match saved {
        // A packed profile carries the page's capture from its last save.
        Some(b) if profile::is_packed(&b) => {
            std::fs::read_to_string(saver.paired_marker().with_file_name(SNAPSHOT_FILE)).ok()
        }
        other => other.and_then(|b| String::from_utf8(b).ok()),
    };
    let restored = match snapshot {
        // With a profile on disk, the saved copy only fills what Chromium had not
        // written yet when it was killed.
        Some(snapshot) => {
            let fill_only = isolation == Isolation::Process;
            restore(&page, &settings.url, &snapshot, fill_only)
                .await
                .map_err(|e| ChannelError::Failed(format!("restoring the login: {e}")))?;
            !fill_only || saver.paired_marker().is_file()
        }
        None => isolation == Isolation::Process && saver.paired_marker().is_file(),
    };
    let setup = async {
        page.execute(AddBindingParams::new(contract::BINDING))
            .await?;
        page.execute(AddScriptToEvaluateOnNewDocumentParams::new(
            contract::OBSERVER_JS,
        ))
        .await?;
        let bindings = page.event_listener::<EventBindingCalled>().await?;
        let crashes = page.event_listener::<EventTargetCrashed>().await?;
        Ok::<_, chromiumoxide::error::CdpError>((bindings, crashes))
    };
    let (bindings, crashes) = tokio::time::timeout(SLOW_CALL_TIMEOUT, setup)
        .await
        .map_err(|_| ChannelError::Failed("the browser did not answer".into()))?
        .map_err(cdp)?;
    tokio::time::timeout(settings.load_timeout, page.goto(settings.url.as_str()))
        .await
        .map_err(|_| ChannelError::Failed("WhatsApp Web did not load in time".into()))?
        .map_err(|e| ChannelError::Failed(format!("cannot open WhatsApp Web: {e}")))?;
    let pump = Pump {
        page,
        saver,
        events,
        lost: lease.lost.clone(),
        isolation,
        restored,
        ready: false,
        page_ready,
        saw_qr: false,
        reconnecting_since: None,
        seen: Seen::default(),
        version: None,
        suspects: HashSet::new(),
        load_timeout: settings.load_timeout,
        heartbeat: settings.heartbeat,
    };
    pump.run(bindings, crashes).await;
    Ok(())
}

fn cdp(e: chromiumoxide::error::CdpError) -> ChannelError {
    ChannelError::Failed(format!("browser: {e}"))
}

/// Calls one of the contract's functions with JSON arguments; returns its string result.
async fn call(
    page: &Page,
    function: &str,
    args: &[serde_json::Value],
    timeout: Duration,
) -> Result<String, String> {
    crate::browser::call_function(page, function, args, timeout).await
}

/// Writes a saved login back on the page's origin before WhatsApp Web loads: the
/// page navigates to [`contract::RESTORE_PATH`], which the driver answers itself.
async fn restore(page: &Page, url: &str, snapshot: &str, fill_only: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let origin = parsed.origin().ascii_serialization();
    let restore_url = format!("{origin}{}", contract::RESTORE_PATH);
    let mut paused = page
        .event_listener::<EventRequestPaused>()
        .await
        .map_err(|e| e.to_string())?;
    page.execute(fetch::EnableParams {
        patterns: Some(vec![RequestPattern {
            url_pattern: Some(format!("{restore_url}*")),
            resource_type: None,
            request_stage: Some(RequestStage::Request),
        }]),
        handle_auth_requests: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    let p = page.clone();
    let answer = tokio::spawn(async move {
        if let Some(ev) = paused.next().await {
            let mut ok = FulfillRequestParams::new(ev.request_id.clone(), 200);
            ok.response_headers = Some(vec![HeaderEntry::new(
                "Content-Type",
                "text/html; charset=utf-8",
            )]);
            ok.body = Some(
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    "<!doctype html><title>restoring</title>",
                )
                .into(),
            );
            let _ = p.execute(ok).await;
        }
    });
    let nav = tokio::time::timeout(SLOW_CALL_TIMEOUT, page.goto(restore_url.as_str())).await;
    answer.abort();
    let _ = page.execute(fetch::DisableParams::default()).await;
    nav.map_err(|_| "restore page did not load".to_owned())?
        .map_err(|e| e.to_string())?;
    let r = call(
        page,
        contract::RESTORE_JS,
        &[serde_json::Value::from(snapshot), fill_only.into()],
        SLOW_CALL_TIMEOUT,
    )
    .await?;
    if r != "ok" {
        return Err(format!("restore script said {r}"));
    }
    tracing::debug!("saved login written back");
    Ok(())
}

/// Message ids the observer reported, newest last (bounded).
#[derive(Default)]
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            if self.order.len() > SEEN_LIMIT
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

/// What the heartbeat reads from the page.
#[derive(Debug, Deserialize)]
struct Beat {
    state: String,
    #[serde(default)]
    recent: Vec<String>,
}

struct Pump {
    page: Page,
    saver: Saver,
    events: mpsc::Sender<ChannelEvent>,
    lost: tokio_util::sync::CancellationToken,
    isolation: Isolation,
    /// The page was given a saved login (a QR code then means it is gone).
    restored: bool,
    ready: bool,
    /// Shared with the channel: logged in and connected right now.
    page_ready: Arc<AtomicBool>,
    /// A QR code was shown on this connection (a `Ready` after it is a new pairing).
    saw_qr: bool,
    /// Since when the page has been getting its connection back by itself.
    reconnecting_since: Option<tokio::time::Instant>,
    seen: Seen,
    /// The WhatsApp Web version the page reported.
    version: Option<String>,
    /// Messages the page holds that the observer did not report at the last beat.
    suspects: HashSet<String>,
    load_timeout: Duration,
    heartbeat: Duration,
}

impl Pump {
    async fn run(
        mut self,
        mut bindings: chromiumoxide::listeners::EventStream<EventBindingCalled>,
        mut crashes: chromiumoxide::listeners::EventStream<EventTargetCrashed>,
    ) {
        let mut loaded = false;
        let deadline = tokio::time::sleep(self.load_timeout);
        tokio::pin!(deadline);
        let mut snapshot = tokio::time::interval(if self.saver.shared() {
            SHARED_SNAPSHOT_EVERY
        } else {
            SNAPSHOT_EVERY
        });
        snapshot.reset();
        // Chromium writes Local Storage to disk a few seconds after the page does:
        // a login is saved again once that has happened.
        let settle = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(settle);
        let (mut was_ready, mut settling) = (false, false);
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.reset();
        let end = loop {
            if self.ready && !was_ready {
                was_ready = true;
                settling = true;
                settle
                    .as_mut()
                    .reset(tokio::time::Instant::now() + STORAGE_SETTLE);
            }
            tokio::select! {
                _ = self.lost.cancelled() => break ChannelEvent::Disconnected("the browser exited".into()),
                () = &mut settle, if settling => {
                    settling = false;
                    if let Err(e) = self.saver.save(&self.page, self.isolation).await {
                        tracing::warn!(error = %e, "login state not saved");
                    }
                }
                _ = crashes.next() => break ChannelEvent::Disconnected("the page crashed".into()),
                () = &mut deadline, if !loaded => {
                    break ChannelEvent::Disconnected(format!(
                        "WhatsApp Web showed neither a QR code nor a login within {} s",
                        self.load_timeout.as_secs()
                    ));
                }
                _ = heartbeat.tick() => {
                    if let Some(end) = self.beat().await {
                        break end;
                    }
                }
                _ = snapshot.tick(), if self.ready => {
                    if let Err(e) = self.saver.save(&self.page, self.isolation).await {
                        tracing::warn!(error = %e, "login state not saved");
                    }
                }
                ev = bindings.next() => {
                    let Some(ev) = ev else {
                        break ChannelEvent::Disconnected("the page closed".into());
                    };
                    if ev.name != contract::BINDING {
                        continue;
                    }
                    let parsed: PageEvent = match serde_json::from_str(&ev.payload) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable report from the page");
                            continue;
                        }
                    };
                    if matches!(parsed, PageEvent::Qr { .. } | PageEvent::Ready { .. }) {
                        loaded = true;
                    }
                    let flows = self.on_page_event(parsed).await;
                    let mut ended = None;
                    for flow in flows {
                        match flow {
                            Flow::End(e) => { ended = Some(e); break; }
                            Flow::Emit(e) => {
                                if self.events.send(e).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    if let Some(e) = ended {
                        break e;
                    }
                }
            }
        };
        self.page_ready.store(false, Ordering::Release);
        let _ = self.events.send(end).await;
    }

    /// Probes the page: it must answer, must not stay in `TIMEOUT` for longer than
    /// the load timeout, and its listener must have reported the messages it holds.
    async fn beat(&mut self) -> Option<ChannelEvent> {
        let out = match call(&self.page, contract::HEARTBEAT_JS, &[], self.heartbeat).await {
            Ok(o) => o,
            Err(e) => {
                return Some(ChannelEvent::Disconnected(format!(
                    "the page stopped answering: {e}"
                )));
            }
        };
        let beat: Beat = serde_json::from_str(&out).unwrap_or(Beat {
            state: "loading".into(),
            recent: Vec::new(),
        });
        if let Some(since) = self.reconnecting_since
            && since.elapsed() > self.load_timeout
        {
            return Some(ChannelEvent::Disconnected(format!(
                "WhatsApp Web stayed in {} for {} s",
                beat.state,
                since.elapsed().as_secs()
            )));
        }
        if !self.ready {
            return None;
        }
        let unseen: HashSet<String> = beat
            .recent
            .into_iter()
            .filter(|id| !self.seen.contains(id))
            .collect();
        // Missing at two beats in a row: the listener is deaf, not just late.
        let deaf = unseen.iter().any(|id| self.suspects.contains(id));
        self.suspects = unseen;
        if deaf {
            metrics::counter!("switchboard_whatsapp_deaf_listeners_total").increment(1);
            return Some(ChannelEvent::Disconnected(
                "the page holds messages its listener never reported; reconnecting".into(),
            ));
        }
        None
    }

    async fn inbound(&mut self, m: PageMessage) -> Option<ChannelEvent> {
        self.seen.insert(&m.id);
        let received = match (&self.saver.ctx.media, m.from_me) {
            (Some(store), false) if media::carries_file(&m.msg_type) || m.vcard.is_some() => {
                Some(self.media_of(store, &m).await)
            }
            _ => None,
        };
        let phone = |p: &Option<String>| {
            p.as_deref()
                .and_then(|p| p.strip_suffix("@c.us"))
                .map(str::to_owned)
        };
        if m.from_me {
            // Written on the phone itself: a message sent, not one to answer.
            return Some(ChannelEvent::SentElsewhere(InboundMessage {
                text: m.text(),
                external_id: m.id,
                from_phone: None,
                chat_phone: phone(&m.chat_phone),
                from: m.from,
                chat: Some(m.chat),
                sent_at: if m.t > 0 {
                    m.t * 1000
                } else {
                    crate::clock::now_ms()
                },
                meta: serde_json::Value::Null,
                ..Default::default()
            }));
        }
        let mut meta = serde_json::json!({
            "type": m.msg_type,
            "is_group": m.is_group,
            "author": m.author,
            "notify_name": m.notify_name,
            "has_media": m.has_media,
            "mimetype": m.mimetype,
            "caption": m.caption,
        });
        if m.is_view_once {
            meta["view_once"] = true.into();
        }
        if m.msg_type == "location" {
            meta["location"] = serde_json::json!({ "lat": m.lat, "lng": m.lng, "name": m.loc });
        }
        if let Some(card) = &m.vcard {
            meta["contact"] = serde_json::json!({ "name": m.vcard_name, "vcard": card });
        }
        Some(ChannelEvent::Inbound(InboundMessage {
            media: received,
            reply_to: m.quoted.clone(),
            text: m.text(),
            external_id: m.id,
            from_phone: phone(&m.from_phone),
            chat_phone: phone(&m.chat_phone),
            from: m.from,
            chat: Some(m.chat),
            sent_at: if m.t > 0 {
                m.t * 1000
            } else {
                crate::clock::now_ms()
            },
            meta,
            ..Default::default()
        }))
    }

    /// A received message's file, in the store: media downloaded from the page, a
    /// contact card kept as a `.vcf` file.
    async fn media_of(&self, store: &crate::media::MediaStore, m: &PageMessage) -> ReceivedMedia {
        let tenant = &self.saver.tenant_id;
        let Some(card) = m
            .vcard
            .as_ref()
            .filter(|_| !media::carries_file(&m.msg_type))
        else {
            if store.download() == crate::media::Download::Lazy
                && let Some(pending) = media::pend(store, tenant, &self.saver.session_id, m).await
            {
                return pending;
            }
            return media::download(&self.page, store, tenant, &m.id, media::describe(m)).await;
        };
        let name = m.vcard_name.clone().unwrap_or_else(|| "contact".into());
        let new = crate::media::NewMedia {
            filename: Some(format!("{name}.vcf")),
            mimetype: Some("text/vcard".into()),
        };
        let bytes = bytes::Bytes::from(card.clone().into_bytes());
        let one = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        match store.ingest(tenant, new.clone(), one).await {
            Ok(row) => ReceivedMedia {
                id: Some(row.id),
                mimetype: row.mimetype,
                size: u64::try_from(row.size).unwrap_or(0),
                filename: new.filename,
                sha256: Some(row.sha256),
                error: None,
            },
            Err(e) => ReceivedMedia {
                mimetype: "text/vcard".into(),
                size: card.len() as u64,
                filename: new.filename,
                error: Some(e.to_string()),
                ..Default::default()
            },
        }
    }

    /// What arrived while no listener heard it (a restored login's first sync, a
    /// reconnect), from the messages the page holds.
    async fn catch_up(&mut self) -> Vec<Flow> {
        let since = self.saver.catch_up_since().await;
        let out = match call(
            &self.page,
            contract::CATCH_UP_JS,
            &[since.into()],
            SLOW_CALL_TIMEOUT,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "messages not caught up");
                return Vec::new();
            }
        };
        let messages: Vec<PageMessage> = serde_json::from_str(&out).unwrap_or_default();
        let mut flows = Vec::new();
        for m in messages {
            if !self.seen.contains(&m.id)
                && let Some(e) = self.inbound(m).await
            {
                flows.push(Flow::Emit(e));
            }
        }
        if !flows.is_empty() {
            tracing::info!(messages = flows.len(), "caught up messages the page held");
        }
        flows
    }

    async fn on_page_event(&mut self, ev: PageEvent) -> Vec<Flow> {
        let one = |f: Flow| vec![f];
        match ev {
            PageEvent::Version { version } => {
                tracing::info!(%version, "WhatsApp Web version");
                self.version = Some(version);
                Vec::new()
            }
            PageEvent::Qr { value } => {
                if self.restored || self.ready {
                    // A QR code on a page that was logged in: the login is gone.
                    self.saver.wipe().await;
                    return one(Flow::End(ChannelEvent::LoggedOut(
                        "the saved login is no longer valid; pair again".into(),
                    )));
                }
                self.saw_qr = true;
                one(Flow::Emit(ChannelEvent::Qr(value)))
            }
            PageEvent::State { state } => {
                let meaning = contract::state_meaning(&state);
                if meaning != StateMeaning::Reconnecting {
                    self.reconnecting_since = None;
                }
                match meaning {
                    StateMeaning::Lost => one(Flow::End(ChannelEvent::Disconnected(format!(
                        "WhatsApp Web state {state}"
                    )))),
                    StateMeaning::Blocked => one(Flow::End(ChannelEvent::Failed(
                        contract::blocked_reason(&state),
                    ))),
                    StateMeaning::Reconnecting => {
                        self.page_ready.store(false, Ordering::Release);
                        self.reconnecting_since
                            .get_or_insert_with(tokio::time::Instant::now);
                        one(Flow::Emit(ChannelEvent::Reconnecting(format!(
                            "WhatsApp Web is reconnecting ({state})"
                        ))))
                    }
                    StateMeaning::Connected if self.ready => {
                        // Back from TIMEOUT: working again.
                        self.page_ready.store(true, Ordering::Release);
                        one(Flow::Emit(ChannelEvent::Ready))
                    }
                    StateMeaning::Idle => {
                        tracing::debug!("QR went idle; the page asks for a new one");
                        Vec::new()
                    }
                    StateMeaning::Waiting | StateMeaning::Connected => Vec::new(),
                }
            }
            PageEvent::Ready { me } => {
                if self.ready {
                    return Vec::new();
                }
                self.ready = true;
                if let Err(e) = self.saver.save(&self.page, self.isolation).await {
                    tracing::warn!(error = %e, "login state not saved; a restart will need a new scan");
                }
                tracing::info!(me = ?me, "WhatsApp Web logged in");
                let about = serde_json::json!({ "version": self.version, "me": me });
                let mut flows = vec![
                    Flow::Emit(ChannelEvent::About(about)),
                    Flow::Emit(ChannelEvent::Ready),
                ];
                if !self.saw_qr {
                    flows.extend(self.catch_up().await);
                }
                self.page_ready.store(true, Ordering::Release);
                flows
            }
            PageEvent::Logout { via } => {
                tracing::info!(via = ?via, "logged out from the phone");
                self.saver.wipe().await;
                one(Flow::End(ChannelEvent::LoggedOut(
                    "logged out from the phone".into(),
                )))
            }
            PageEvent::Message(m) => self.inbound(*m).await.map(Flow::Emit).into_iter().collect(),
            PageEvent::Reaction {
                parent,
                emoji,
                from,
                from_phone,
                t,
            } => {
                let phone = from_phone.as_deref().and_then(|p| p.strip_suffix("@c.us"));
                let change = serde_json::json!({
                    "emoji": emoji,
                    "removed": emoji.is_empty(),
                    "from": from,
                    "from_phone": phone,
                    "reacted_at": crate::clock::rfc3339(if t > 0 { t } else { crate::clock::now_ms() }),
                });
                one(Flow::Emit(ChannelEvent::Changed {
                    event: crate::sessions::MESSAGE_REACTION,
                    external_id: parent,
                    change,
                }))
            }
            PageEvent::Edited { id, text } => one(Flow::Emit(ChannelEvent::Changed {
                event: crate::sessions::MESSAGE_EDITED,
                external_id: id,
                change: serde_json::json!({ "text": text }),
            })),
            PageEvent::Revoked { id } => one(Flow::Emit(ChannelEvent::Changed {
                event: crate::sessions::MESSAGE_REVOKED,
                external_id: id,
                change: serde_json::json!({}),
            })),
            PageEvent::Ack { id, ack } => contract::ack_level(ack)
                .map(|level| Flow::Emit(ChannelEvent::Ack { id, level }))
                .into_iter()
                .collect(),
            PageEvent::Passkey => one(Flow::Emit(ChannelEvent::Challenge(Challenge {
                kind: ChallengeKind::AppApproval,
                hint: Some(
                    "WhatsApp asks for the account's passkey to link this device: confirm on \
                     the phone, or remove the passkey requirement there and scan again"
                        .into(),
                ),
                expires_at: crate::clock::now_ms() + 60_000,
            }))),
            PageEvent::Missing { modules } => {
                for m in &modules {
                    metrics::counter!("switchboard_whatsapp_missing_modules_total", "module" => m.clone())
                        .increment(1);
                }
                one(Flow::End(ChannelEvent::Failed(format!(
                    "whatsapp_web_changed: WhatsApp Web has no module {} (the page contract needs an update)",
                    modules.join(", ")
                ))))
            }
            PageEvent::Error { message } => {
                tracing::warn!(%message, "WhatsApp Web observer error");
                Vec::new()
            }
        }
    }
}

enum Flow {
    Emit(ChannelEvent),
    End(ChannelEvent),
}

#[derive(Debug, Deserialize)]
struct SendResult {
    id: Option<String>,
    error: Option<String>,
    #[serde(default)]
    already: bool,
}

/// What a page call that answers `{"ok"}` or `{"error"}` said.
fn page_done(out: &str, not_found: &str) -> Result<(), ChannelError> {
    let v: serde_json::Value =
        serde_json::from_str(out).map_err(|e| ChannelError::Failed(e.to_string()))?;
    match v["error"].as_str() {
        None => Ok(()),
        Some("not_found") => Err(ChannelError::Rejected(not_found.into())),
        Some(e) => Err(ChannelError::Failed(e.to_owned())),
    }
}

/// What a send needs besides the page.
struct Sending {
    tenant_id: String,
    session_id: String,
    store: crate::storage::Store,
    media: Option<crate::media::MediaStore>,
    pacing: pacing::Pacing,
}

/// Waits for the send's slot ([`pacing`]): `Later` when the account must not send
/// yet. A send already let through once (a retry after a crash) keeps its slot.
async fn paced(
    page: &Page,
    with: &Sending,
    to: &str,
    message: &OutboundMessage,
) -> Result<(), ChannelError> {
    let p = &with.pacing;
    if !p.enabled {
        return Ok(());
    }
    let store_err = |e: crate::storage::StoreError| ChannelError::Failed(format!("pacing: {e}"));
    if with
        .store
        .account_action_at(&with.session_id, &message.id)
        .await
        .map_err(store_err)?
        .is_some()
    {
        return Ok(());
    }
    let now = crate::clock::now_ms();
    let sends = sends_of(&with.store, &with.session_id, now)
        .await
        .map_err(store_err)?;
    let unanswered: Vec<i64> = if p.per_contact_per_hour > 0 {
        let out = call(page, contract::UNANSWERED_JS, &[to.into()], CALL_TIMEOUT)
            .await
            .map_err(ChannelError::Failed)?;
        serde_json::from_str(&out).unwrap_or_default()
    } else {
        Vec::new()
    };
    match p.next_slot(now, &sends, &unanswered, &with.session_id) {
        pacing::Slot::Later(at, why) => {
            tracing::debug!(message = %message.id, why, wait_ms = at - now, "send paced");
            metrics::counter!("switchboard_whatsapp_paced_sends_total", "why" => why).increment(1);
            Err(ChannelError::Later(at))
        }
        pacing::Slot::Now => {
            with.store
                .record_account_action(&with.session_id, SEND_ACTION, Some(&message.id), now)
                .await
                .map_err(store_err)?;
            Ok(())
        }
    }
}

/// Sends `message` from `page`: paced, typed, its file (at most one) staged from the
/// store first.
async fn send_message(
    page: Page,
    with: Sending,
    message: OutboundMessage,
) -> Result<String, ChannelError> {
    let (store, tenant_id) = (with.media.clone(), with.tenant_id.clone());
    let kind = ChannelKind::WhatsApp;
    kind.capabilities().check(kind, &message)?;
    if message.attachments.len() > 1 {
        return Err(ChannelError::Unsupported(
            "a WhatsApp message carries one file; send them one message each".into(),
        ));
    }
    let to = contract::jid(&message.to).ok_or_else(|| {
        ChannelError::Rejected(format!("`{}` is not a WhatsApp address", message.to))
    })?;
    let key_id = contract::message_key_id(&message.id);
    paced(&page, &with, &to, &message).await?;
    if message.mark_read {
        // Read first, then answer, as a person would.
        if let Err(e) = call(&page, contract::SEEN_JS, &[to.clone().into()], CALL_TIMEOUT).await {
            tracing::debug!(error = %e, "chat not marked read before the answer");
        }
    }
    let mut options = serde_json::json!({});
    if let Some(q) = &message.reply_to {
        options["quoted"] = q.as_str().into();
    }
    let timeout = match message.attachments.first() {
        Some(a) => {
            let handle = media::stage(&page, store.as_ref(), &tenant_id, a).await?;
            options["media"] = media::send_options(a, &handle, &message.text);
            SLOW_CALL_TIMEOUT
        }
        None => CALL_TIMEOUT,
    };
    let voice = message.attachments.first().is_some_and(|a| a.as_voice);
    let typing = with
        .pacing
        .typing_time(message.text.chars().count().max(20));
    if !typing.is_zero() {
        let state = if voice { "recording" } else { "composing" };
        if let Err(e) = call(
            &page,
            contract::CHAT_STATE_JS,
            &[to.clone().into(), state.into()],
            CALL_TIMEOUT,
        )
        .await
        {
            tracing::debug!(error = %e, "typing not shown");
        }
        tokio::time::sleep(typing).await;
    }
    let out = call(
        &page,
        contract::SEND_JS,
        &[
            to.clone().into(),
            message.text.into(),
            key_id.into(),
            options,
        ],
        timeout,
    )
    .await
    .map_err(ChannelError::Failed)?;
    if !typing.is_zero() {
        let _ = call(
            &page,
            contract::CHAT_STATE_JS,
            &[to.clone().into(), "paused".into()],
            CALL_TIMEOUT,
        )
        .await;
    }
    let r: SendResult =
        serde_json::from_str(&out).map_err(|e| ChannelError::Failed(e.to_string()))?;
    match (r.id, r.error) {
        (Some(id), None) => {
            if r.already {
                tracing::info!(%id, "already in the chat (sent before a crash); not sent again");
            }
            Ok(id)
        }
        (_, Some(e)) if e == "not_on_whatsapp" => Err(ChannelError::Rejected(format!(
            "not_on_whatsapp: {to} is not on WhatsApp"
        ))),
        (_, Some(e)) if e == "quoted_not_found" => Err(ChannelError::Rejected(
            "quoted_message_not_found: the message to quote is not on WhatsApp Web any more".into(),
        )),
        (_, Some(e)) => Err(ChannelError::Failed(e)),
        _ => Err(ChannelError::Failed(
            "the page returned no message id".into(),
        )),
    }
}

impl Channel for WhatsApp {
    fn connect(
        &mut self,
        events: mpsc::Sender<ChannelEvent>,
    ) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            self.release().await;
            if self.ctx.browser.is_none() {
                return Err(ChannelError::Failed(
                    "the browser pool is not running".into(),
                ));
            }
            let (saver, slot, ready) = (self.saver(), self.lease.clone(), self.page_ready.clone());
            // Connecting can take a while (a browser launch, a slow page): it runs
            // beside the actor, and a failure arrives as a disconnection.
            self.task = Some(tokio::spawn(async move {
                if let Err(e) = connect_and_pump(saver, slot, ready, events.clone()).await {
                    let _ = events
                        .send(ChannelEvent::Disconnected(format!("connect failed: {e}")))
                        .await;
                }
            }));
            Ok(())
        })
    }

    fn send(&mut self, message: OutboundMessage) -> BoxFuture<'_, Result<String, ChannelError>> {
        let (page, with) = (self.page(), self.sending());
        Box::pin(async move { send_message(page?, with, message).await })
    }

    /// Every send runs beside the actor: it may show typing for seconds, or carry a
    /// large file.
    fn send_beside(
        &mut self,
        message: Box<OutboundMessage>,
    ) -> Result<BoxFuture<'static, Result<String, ChannelError>>, Box<OutboundMessage>> {
        let (page, with) = (self.page(), self.sending());
        Ok(Box::pin(async move {
            send_message(page?, with, *message).await
        }))
    }

    fn react(
        &mut self,
        external_id: String,
        emoji: String,
    ) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let page = self.page()?;
            let out = call(
                &page,
                contract::REACT_JS,
                &[external_id.into(), emoji.into()],
                CALL_TIMEOUT,
            )
            .await
            .map_err(ChannelError::Failed)?;
            page_done(&out, "the message is not on the page any more")
        })
    }

    fn fetch_media(
        &mut self,
        external_id: String,
        described: ReceivedMedia,
    ) -> BoxFuture<'static, Result<ReceivedMedia, ChannelError>> {
        let (lease, ready, store, tenant) = (
            self.lease.clone(),
            self.page_ready.clone(),
            self.ctx.media.clone(),
            self.tenant_id.clone(),
        );
        Box::pin(async move {
            let store = store
                .ok_or_else(|| ChannelError::Failed("the media store is not running".into()))?;
            // A session that is (re)connecting gets a while to open its page and
            // log in: a page still restoring or loading would navigate away under
            // the download, or not hold the message yet.
            let deadline = tokio::time::Instant::now() + FETCH_WAIT;
            let page = loop {
                let page = lease
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .filter(|l| !l.lost.is_cancelled() && ready.load(Ordering::Acquire))
                    .map(|l| l.page.clone());
                match page {
                    Some(p) => break p,
                    None if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => return Err(ChannelError::NotConnected),
                }
            };
            let got = media::download(&page, &store, &tenant, &external_id, described).await;
            match got.error {
                None => Ok(got),
                Some(e) if e == "media_unavailable" => Err(ChannelError::Rejected(
                    "media_unavailable: the file is gone from WhatsApp's servers".into(),
                )),
                Some(e) => Err(ChannelError::Failed(e)),
            }
        })
    }

    fn mark_read(&mut self, chat: String) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let to = contract::jid(&chat).ok_or_else(|| {
                ChannelError::Rejected(format!("`{chat}` is not a WhatsApp chat"))
            })?;
            let page = self.page()?;
            let out = call(&page, contract::SEEN_JS, &[to.into()], CALL_TIMEOUT)
                .await
                .map_err(ChannelError::Failed)?;
            page_done(&out, "no such chat on this account")
        })
    }

    fn logout(&mut self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let result = match self.page() {
                Ok(page) => call(&page, contract::LOGOUT_JS, &[], CALL_TIMEOUT)
                    .await
                    .map(|_| ())
                    .map_err(ChannelError::Failed),
                Err(e) => Err(e),
            };
            // Whatever the page said, this gateway forgets the login.
            self.saver().wipe().await;
            self.release().await;
            result
        })
    }

    fn disconnect(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(t) = self.task.take() {
                t.abort();
            }
            self.page_ready.store(false, Ordering::Release);
            self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(pool) = self.ctx.browser.clone() {
                // Closed gracefully, so the profile on disk is complete.
                pool.close_and_wait(&self.session_id).await;
                if pool.isolation() == Isolation::Process {
                    self.saver().put_to_rest().await;
                }
            }
        })
    }

    fn qr_policy(&self) -> QrPolicy {
        QrPolicy {
            lifetime: contract::QR_LIFETIME,
            max_refreshes: self.ctx.settings.whatsapp.max_qr_refreshes,
        }
    }

    fn groups(&mut self) -> BoxFuture<'_, Result<Vec<Party>, ChannelError>> {
        Box::pin(self.parties("groups"))
    }

    fn contacts(&mut self) -> BoxFuture<'_, Result<Vec<Party>, ChannelError>> {
        Box::pin(self.parties("contacts"))
    }

    fn pairing_code(&mut self, phone: String) -> BoxFuture<'_, Result<String, ChannelError>> {
        Box::pin(async move {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            if !(5..=20).contains(&digits.len()) {
                return Err(ChannelError::Rejected(format!(
                    "`{phone}` is not a phone number"
                )));
            }
            let page = self.page()?;
            let out = call(
                &page,
                contract::PAIRING_CODE_JS,
                &[digits.into()],
                CALL_TIMEOUT,
            )
            .await
            .map_err(ChannelError::Failed)?;
            #[derive(Deserialize)]
            struct Code {
                code: Option<String>,
                error: Option<String>,
            }
            let c: Code =
                serde_json::from_str(&out).map_err(|e| ChannelError::Failed(e.to_string()))?;
            match (c.code, c.error) {
                (Some(code), None) => Ok(code),
                (_, e) => Err(ChannelError::Unsupported(
                    e.unwrap_or_else(|| "pairing by code is not offered".into()),
                )),
            }
        })
    }

    fn memory(&mut self) -> BoxFuture<'_, Option<serde_json::Value>> {
        Box::pin(async move {
            let page = self.page().ok()?;
            let metrics = tokio::time::timeout(Duration::from_secs(2), page.metrics())
                .await
                .ok()?
                .ok()?;
            let get = |name: &str| {
                metrics
                    .iter()
                    .find(|m| m.name == name)
                    .map(|m| m.value as u64)
            };
            Some(serde_json::json!({
                "js_heap_used_bytes": get("JSHeapUsedSize"),
                "js_heap_total_bytes": get("JSHeapTotalSize"),
                "dom_nodes": get("Nodes"),
            }))
        })
    }
}

impl WhatsApp {
    async fn parties(&mut self, kind: &str) -> Result<Vec<Party>, ChannelError> {
        let page = self.page()?;
        let out = call(&page, contract::PARTIES_JS, &[kind.into()], CALL_TIMEOUT)
            .await
            .map_err(ChannelError::Failed)?;
        serde_json::from_str(&out).map_err(|e| ChannelError::Failed(e.to_string()))
    }
}
