//! `BrowserPool`: the Chromium processes behind browser-driven sessions.
//!
//! Two ways to keep sessions apart ([`Isolation`], the `browser.isolation` setting):
//!
//! - **`process`** (the default): a Chromium per session, its user-data directory
//!   the session's profile directory under the data directory. Storage lives on disk
//!   as in a person's browser, so logins whose keys cannot leave the browser
//!   (WhatsApp Web's non-extractable WebCrypto keys in IndexedDB) survive a browser
//!   crash and a gateway restart. Closing a session closes its browser gracefully, so
//!   its storage is flushed before the channel archives it.
//! - **`context`**: one shared Chromium, each session in its own isolated (in-memory)
//!   browser context. Much lighter per session, but storage dies with the browser:
//!   only logins a JSON snapshot can capture come back after a restart.
//!
//! Every page gets a desktop-browser [`Identity`] (user agent, client hints,
//! `navigator.webdriver` false). Chromium is killed with the gateway (parent-death
//! signal where `setpriv` exists, and a pid file so a stale one from a crashed
//! gateway is cleaned up) and comes back when it dies: every lease on the dead
//! browser is cancelled, the sessions holding them fail as disconnected and their
//! supervisors bring them back on a new one, restoring their saved login.
//!
//! Memory is read the way it is paid: the sum of PSS over the Chromium process trees
//! (`/proc/<pid>/smaps_rollup`), exported as metrics and per session.

pub mod identity;
pub mod profile;

pub use identity::Identity;

use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::page::Page;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

/// Chromium flags that work on a headless server (see `docs/` and ENVIRONMENT notes):
/// no GPU, no sandbox (we often run as root), and no background traffic to Google.
pub const BASE_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--remote-debugging-port=0",
];

/// Flags for a session's own browser when it runs as one process: it has one page,
/// so nothing is gained by a renderer, a GPU and a network process apart, and
/// each would cost its own memory (measured: ~81 MiB per added session instead of
/// ~145 at 50 sessions).
pub const SINGLE_PROCESS_ARGS: &[&str] = &["--single-process", "--no-zygote"];

/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing a context or a browser may take before it counts as stuck.
const DISPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a lease request waits for the pool.
const CALL_TIMEOUT_MS: u64 = 60_000;
/// The files a Chromium killed mid-run leaves in its user-data directory; a new one
/// refuses the directory while they point at a dead process.
const SINGLETON_FILES: &[&str] = &["SingletonLock", "SingletonSocket", "SingletonCookie"];

/// How sessions are kept apart (the `browser.isolation` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A Chromium per session with an on-disk profile.
    #[default]
    Process,
    /// One shared Chromium, an in-memory browser context per session.
    Context,
}

impl Isolation {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "process" => Some(Self::Process),
            "context" => Some(Self::Context),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Context => "context",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BrowserSettings {
    /// Chromium's executable; detected on `PATH` when unset.
    pub executable: Option<PathBuf>,
    /// Where Chromium's own profile and the sessions' profile directories live.
    pub dir: PathBuf,
    /// Extra command-line flags (e.g. process-sharing experiments).
    pub extra_args: Vec<String>,
    /// A shared browser with no sessions for this long is shut down (it starts again
    /// with the next session); this also returns whatever memory it gathered.
    pub idle_shutdown: Duration,
    /// A lease that takes longer than this (a launch included) means the browser is
    /// stuck: it is killed and started again.
    pub open_timeout: Duration,
    pub isolation: Isolation,
    /// A session's own browser runs as one process ([`SINGLE_PROCESS_ARGS`]).
    pub single_process: bool,
}

impl BrowserSettings {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            executable: None,
            dir,
            extra_args: Vec::new(),
            idle_shutdown: Duration::from_secs(120),
            open_timeout: Duration::from_secs(45),
            isolation: Isolation::default(),
            single_process: true,
        }
    }
}

/// Where a session's profile lives: with `process` isolation it is the session's
/// Chromium user-data directory.
pub fn profile_dir(browser_dir: &Path, session_id: &str) -> PathBuf {
    browser_dir.join("profiles").join(session_id)
}

/// Calls `function` (JavaScript source of a function) on `page` with JSON
/// arguments and returns its string result (a promise is awaited).
///
/// The call goes to the page's current main-world context, named by Chromium
/// itself: chromiumoxide's `evaluate_expression` names the context it last saw,
/// which is stale for a moment after a navigation ("Cannot find context with
/// specified id": seen in CI right after a restored login reloaded the page).
pub async fn call_function(
    page: &Page,
    function: &str,
    args: &[serde_json::Value],
    timeout: Duration,
) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let expression = format!("({})({})", function.trim(), args.join(", "));
    let params = EvaluateParams::builder()
        .expression(expression)
        .await_promise(true)
        .return_by_value(true)
        .build()
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(timeout, page.execute(params))
        .await
        .map_err(|_| "the page did not answer in time".to_owned())?
        .map_err(|e| e.to_string())?
        .result;
    if let Some(e) = answer.exception_details {
        let detail = e
            .exception
            .as_ref()
            .and_then(|x| x.description.clone())
            .unwrap_or(e.text);
        return Err(format!("the page threw: {detail}"));
    }
    let value = answer
        .result
        .value
        .ok_or_else(|| "the page gave no value".to_owned())?;
    serde_json::from_value::<String>(value).map_err(|e| e.to_string())
}

/// A session's share of the browser: its page (and context, when shared).
#[derive(Debug, Clone)]
pub struct Lease {
    pub page: Page,
    /// The browser context (`context` isolation); `None` in a browser of its own.
    pub context: Option<BrowserContextId>,
    /// The session's profile directory.
    pub profile_dir: PathBuf,
    pub isolation: Isolation,
    /// Cancelled when the browser this lease lives in dies.
    pub lost: CancellationToken,
}

/// What the pool reports about itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolStats {
    pub running: bool,
    /// How many Chromium processes trees run (1 when shared).
    pub browsers: usize,
    /// The shared browser's pid (`context` isolation).
    pub pid: Option<u32>,
    /// Sessions holding a lease.
    pub contexts: usize,
    /// Sum of PSS over every Chromium process tree.
    pub pss_bytes: u64,
    pub processes: usize,
    pub restarts: u64,
    pub isolation: &'static str,
}

/// One session's share of the browsers' memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionMemory {
    /// PSS of the browser the session runs in (all of it when shared).
    pub browser_pss_bytes: u64,
    /// Sessions in that browser.
    pub sessions_in_browser: usize,
    /// What the session costs: its own browser's PSS, or an even share of the shared one.
    pub pss_share_bytes: u64,
}

#[derive(Debug)]
pub enum PoolMsg {
    Open {
        session_id: String,
        reply: RpcReplyPort<Result<Lease, String>>,
    },
    /// Gives a session's lease back; with a reply, once its browser has exited
    /// (`process` isolation), so its profile is complete on disk.
    Close {
        session_id: String,
        reply: Option<RpcReplyPort<()>>,
    },
    Exited {
        generation: u64,
        status: String,
    },
    Stats(RpcReplyPort<PoolStats>),
    SessionStats {
        session_id: String,
        reply: RpcReplyPort<Option<SessionMemory>>,
    },
    /// Ends a session's lease and deletes its profile directory (after a logout).
    Wipe {
        session_id: String,
    },
    /// Shuts the shared browser down if it still has no sessions.
    IdleCheck {
        generation: u64,
    },
}

/// Which browser a session runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Shared,
    Own(String),
}

#[derive(Debug)]
struct Running {
    browser: Browser,
    pid: u32,
    generation: u64,
    lost: CancellationToken,
    /// Cancelled once the process has exited.
    exited: CancellationToken,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// Kills the process (the exit is reported as usual, then ignored).
    fn kill(&mut self) {
        self.lost.cancel();
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }

    /// Closes the browser the way a person does (storage flushed to disk), killing
    /// it if it does not exit in time. Returns once the process is gone.
    async fn close(mut self) {
        self.lost.cancel();
        let _ = tokio::time::timeout(DISPOSE_TIMEOUT, self.browser.close()).await;
        if tokio::time::timeout(DISPOSE_TIMEOUT, self.exited.cancelled())
            .await
            .is_err()
        {
            tracing::warn!(pid = self.pid, "chromium did not close in time; killed");
        }
        self.kill();
        let _ = tokio::time::timeout(DISPOSE_TIMEOUT, self.exited.cancelled()).await;
    }
}

#[derive(Debug)]
pub struct PoolState {
    settings: BrowserSettings,
    identity: Option<Arc<Identity>>,
    browsers: HashMap<Slot, Running>,
    generation: u64,
    restarts: u64,
    /// Sessions holding a lease, and their context in the shared browser.
    leases: HashMap<String, Option<BrowserContextId>>,
}

#[derive(Debug)]
pub struct BrowserPoolActor;

/// The handle sessions use.
#[derive(Debug, Clone)]
pub struct BrowserPool {
    actor: ActorRef<PoolMsg>,
    open_timeout_ms: u64,
    dir: PathBuf,
    isolation: Isolation,
}

impl BrowserPool {
    pub async fn spawn(settings: BrowserSettings) -> Result<Self, ractor::SpawnErr> {
        let open_timeout_ms = settings.open_timeout.as_millis() as u64;
        let (dir, isolation) = (settings.dir.clone(), settings.isolation);
        let (actor, _) = Actor::spawn(None, BrowserPoolActor, settings).await?;
        Ok(Self {
            actor,
            open_timeout_ms,
            dir,
            isolation,
        })
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The session's profile directory (it exists once the session has run).
    pub fn profile_dir(&self, session_id: &str) -> PathBuf {
        profile_dir(&self.dir, session_id)
    }

    /// One page for `session_id`, in its own browser or a fresh isolated context of
    /// the shared one (replacing whatever the session had).
    pub async fn open(&self, session_id: &str) -> Result<Lease, String> {
        let session_id = session_id.to_owned();
        match ractor::call_t!(
            self.actor,
            |reply| PoolMsg::Open { session_id, reply },
            CALL_TIMEOUT_MS.max(self.open_timeout_ms + 5_000)
        ) {
            Ok(r) => r,
            Err(e) => Err(format!("browser pool did not answer: {e}")),
        }
    }

    /// Gives a session's lease back (its page closes) without waiting.
    pub fn close(&self, session_id: &str) {
        let _ = self.actor.cast(PoolMsg::Close {
            session_id: session_id.to_owned(),
            reply: None,
        });
    }

    /// Gives a session's lease back and waits until its browser has exited.
    pub async fn close_and_wait(&self, session_id: &str) {
        let session_id = session_id.to_owned();
        let _ = ractor::call_t!(
            self.actor,
            |reply| PoolMsg::Close {
                session_id,
                reply: Some(reply)
            },
            3 * DISPOSE_TIMEOUT.as_millis() as u64 + 1_000
        );
    }

    /// Ends a session's lease and removes its profile directory.
    pub fn wipe(&self, session_id: &str) {
        let _ = self.actor.cast(PoolMsg::Wipe {
            session_id: session_id.to_owned(),
        });
    }

    pub async fn stats(&self) -> PoolStats {
        ractor::call_t!(self.actor, PoolMsg::Stats, 2_000).unwrap_or_default()
    }

    /// What one session's browser costs; `None` when it holds no lease.
    pub async fn session_memory(&self, session_id: &str) -> Option<SessionMemory> {
        let session_id = session_id.to_owned();
        ractor::call_t!(
            self.actor,
            |reply| PoolMsg::SessionStats { session_id, reply },
            2_000
        )
        .ok()
        .flatten()
    }

    pub fn shutdown(&self) {
        self.actor.stop(Some("gateway shutting down".into()));
    }
}

impl PoolState {
    fn slot(&self, session_id: &str) -> Slot {
        match self.settings.isolation {
            Isolation::Process => Slot::Own(session_id.to_owned()),
            Isolation::Context => Slot::Shared,
        }
    }

    fn identity(&mut self) -> Option<Arc<Identity>> {
        if self.identity.is_none() {
            let exe = self.settings.executable.clone().or_else(detect_chromium)?;
            self.identity = Identity::probe(&exe).map(Arc::new);
            if self.identity.is_none() {
                tracing::warn!(exe = %exe.display(), "chromium's version unknown; pages keep its own user agent");
            }
        }
        self.identity.clone()
    }

    async fn ensure_running(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        slot: &Slot,
    ) -> Result<(), String> {
        if self.browsers.contains_key(slot) {
            return Ok(());
        }
        self.generation += 1;
        let user_data = match slot {
            Slot::Shared => {
                // A fresh profile each launch: sessions live in their own contexts, and
                // a profile left by a killed browser may hold locks.
                let dir = self.settings.dir.join("chromium");
                let _ = std::fs::remove_dir_all(&dir);
                dir
            }
            Slot::Own(session_id) => profile_dir(&self.settings.dir, session_id),
        };
        let identity = self.identity();
        let launch = Launch {
            settings: &self.settings,
            user_data: &user_data,
            identity: identity.as_deref(),
            generation: self.generation,
            single_process: self.settings.single_process && matches!(slot, Slot::Own(_)),
        };
        let running = launch.run(myself.clone()).await?;
        tracing::info!(
            pid = running.pid,
            generation = running.generation,
            isolation = self.settings.isolation.as_str(),
            "chromium started"
        );
        self.browsers.insert(slot.clone(), running);
        Ok(())
    }

    async fn open(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        session_id: &str,
    ) -> Result<Lease, String> {
        self.release(session_id).await;
        let slot = self.slot(session_id);
        let profile_dir = profile_dir(&self.settings.dir, session_id);
        std::fs::create_dir_all(profile_dir.join("downloads"))
            .map_err(|e| format!("cannot create {}: {e}", profile_dir.display()))?;
        self.ensure_running(myself, &slot).await?;
        let identity = self.identity.clone();
        let running = self.browsers.get(&slot).ok_or("browser not running")?;
        let context = match slot {
            Slot::Shared => {
                let params = CreateBrowserContextParams {
                    dispose_on_detach: Some(false),
                    proxy_server: None,
                    proxy_bypass_list: None,
                    origins_with_universal_network_access: None,
                };
                Some(
                    running
                        .browser
                        .create_browser_context(params)
                        .await
                        .map_err(|e| format!("cannot create a browser context: {e}"))?,
                )
            }
            Slot::Own(_) => None,
        };
        let downloads = SetDownloadBehaviorParams {
            behavior: SetDownloadBehaviorBehavior::Allow,
            browser_context_id: context.clone(),
            download_path: Some(profile_dir.join("downloads").display().to_string()),
            events_enabled: None,
        };
        if let Err(e) = running.browser.execute(downloads).await {
            tracing::debug!(error = %e, "download directory not set");
        }
        let mut target = CreateTargetParams::new("about:blank");
        target.browser_context_id = context.clone();
        let page = match running.browser.new_page(target).await {
            Ok(p) => p,
            Err(e) => {
                if let Some(c) = context {
                    let _ = running.browser.dispose_browser_context(c).await;
                }
                return Err(format!("cannot open a page: {e}"));
            }
        };
        if let Some(identity) = identity
            && let Err(e) = page.execute(identity.page_override()).await
        {
            tracing::warn!(error = %e, "user agent not overridden on the page");
        }
        if matches!(slot, Slot::Own(_)) {
            // The tab Chromium opened at launch is of no use: close it.
            if let Ok(pages) = running.browser.pages().await {
                for p in pages
                    .into_iter()
                    .filter(|p| p.target_id() != page.target_id())
                {
                    let _ = p.close().await;
                }
            }
        }
        let lost = running.lost.child_token();
        self.leases.insert(session_id.to_owned(), context.clone());
        metrics::gauge!("switchboard_browser_contexts").set(self.leases.len() as f64);
        Ok(Lease {
            page,
            context,
            profile_dir,
            isolation: self.settings.isolation,
            lost,
        })
    }

    /// Ends a session's lease: disposes of its context in the shared browser, or
    /// closes its own browser (waiting until it has exited).
    async fn release(&mut self, session_id: &str) {
        let Some(context) = self.leases.remove(session_id) else {
            return;
        };
        metrics::gauge!("switchboard_browser_contexts").set(self.leases.len() as f64);
        match self.slot(session_id) {
            Slot::Own(_) => {
                if let Some(r) = self.browsers.remove(&Slot::Own(session_id.to_owned())) {
                    r.close().await;
                }
            }
            Slot::Shared => {
                if let Some(c) = context {
                    self.dispose(c).await;
                }
            }
        }
    }

    /// Closes a context of the shared browser; a browser that does not answer is
    /// declared dead.
    async fn dispose(&mut self, context: BrowserContextId) {
        let Some(r) = self.browsers.get(&Slot::Shared) else {
            return;
        };
        match tokio::time::timeout(DISPOSE_TIMEOUT, r.browser.dispose_browser_context(context))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "browser context not disposed"),
            Err(_) => {
                tracing::error!("chromium did not answer in time; restarting it");
                metrics::counter!("switchboard_browser_restarts_total").increment(1);
                self.restarts += 1;
                self.declare_dead(&Slot::Shared);
            }
        }
    }

    /// Forgets a browser (killing what is left of it) and cancels every lease on it:
    /// their sessions fail as disconnected and come back on a new one.
    fn declare_dead(&mut self, slot: &Slot) {
        if let Some(mut r) = self.browsers.remove(slot) {
            r.kill();
        }
        match slot {
            Slot::Shared => self.leases.retain(|_, c| c.is_none()),
            Slot::Own(session_id) => {
                self.leases.remove(session_id);
            }
        }
        metrics::gauge!("switchboard_browser_contexts").set(self.leases.len() as f64);
    }

    /// Stuck-browser handling for a lease that took too long.
    fn open_timed_out(&mut self, session_id: &str) {
        tracing::error!("chromium did not answer in time; restarting it");
        metrics::counter!("switchboard_browser_restarts_total").increment(1);
        self.restarts += 1;
        let slot = self.slot(session_id);
        self.declare_dead(&slot);
    }

    fn stats(&self) -> PoolStats {
        let roots: Vec<u32> = self.browsers.values().map(|r| r.pid).collect();
        let (pss, processes) = trees_pss(&roots);
        metrics::gauge!("switchboard_browser_pss_bytes").set(pss as f64);
        metrics::gauge!("switchboard_browser_processes").set(processes as f64);
        metrics::gauge!("switchboard_browser_browsers").set(self.browsers.len() as f64);
        PoolStats {
            running: !self.browsers.is_empty(),
            browsers: self.browsers.len(),
            pid: self.browsers.get(&Slot::Shared).map(|r| r.pid),
            contexts: self.leases.len(),
            pss_bytes: pss,
            processes,
            restarts: self.restarts,
            isolation: self.settings.isolation.as_str(),
        }
    }

    fn session_memory(&self, session_id: &str) -> Option<SessionMemory> {
        self.leases.get(session_id)?;
        let slot = self.slot(session_id);
        let running = self.browsers.get(&slot)?;
        let (pss, _) = tree_pss(running.pid);
        let sessions = match slot {
            Slot::Shared => self.leases.values().filter(|c| c.is_some()).count().max(1),
            Slot::Own(_) => 1,
        };
        Some(SessionMemory {
            browser_pss_bytes: pss,
            sessions_in_browser: sessions,
            pss_share_bytes: pss / sessions as u64,
        })
    }
}

impl Actor for BrowserPoolActor {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = BrowserSettings;

    async fn pre_start(
        &self,
        _myself: ActorRef<PoolMsg>,
        settings: BrowserSettings,
    ) -> Result<PoolState, ActorProcessingErr> {
        Ok(PoolState {
            settings,
            identity: None,
            browsers: HashMap::new(),
            generation: 0,
            restarts: 0,
            leases: HashMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PoolMsg>,
        _state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        // Keep the memory gauges current for /metrics.
        let me = myself.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                if ractor::call_t!(me, PoolMsg::Stats, 10_000).is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PoolMsg>,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        // Own browsers close gracefully, so their profiles are complete on disk.
        let closing: Vec<Running> = state.browsers.drain().map(|(_, r)| r).collect();
        futures::future::join_all(closing.into_iter().map(Running::close)).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMsg>,
        msg: PoolMsg,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PoolMsg::Open { session_id, reply } => {
                let limit = state.settings.open_timeout;
                let lease =
                    match tokio::time::timeout(limit, state.open(&myself, &session_id)).await {
                        Ok(r) => r,
                        Err(_) => {
                            state.open_timed_out(&session_id);
                            Err("the browser did not answer in time".into())
                        }
                    };
                let _ = reply.send(lease);
            }
            PoolMsg::Close { session_id, reply } => {
                state.release(&session_id).await;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
                if state.leases.is_empty()
                    && let Some(r) = state.browsers.get(&Slot::Shared)
                {
                    let generation = r.generation;
                    myself.send_after(state.settings.idle_shutdown, move || PoolMsg::IdleCheck {
                        generation,
                    });
                }
            }
            PoolMsg::IdleCheck { generation } => {
                let shared = state.browsers.get(&Slot::Shared).map(|r| r.generation);
                if state.leases.is_empty()
                    && shared == Some(generation)
                    && let Some(r) = state.browsers.remove(&Slot::Shared)
                {
                    tracing::info!(pid = r.pid, "no browser sessions left; chromium stopped");
                    r.close().await;
                }
            }
            PoolMsg::Wipe { session_id } => {
                // Its browser first: a running Chromium keeps writing into the
                // profile, and a directory removed under it may come back half.
                state.release(&session_id).await;
                let dir = profile_dir(&state.settings.dir, &session_id);
                if let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(error = %e, dir = %dir.display(), "profile directory not removed");
                }
            }
            PoolMsg::Exited { generation, status } => {
                let Some(slot) = state
                    .browsers
                    .iter()
                    .find(|(_, r)| r.generation == generation)
                    .map(|(s, _)| s.clone())
                else {
                    return Ok(());
                };
                let sessions = match &slot {
                    Slot::Shared => state.leases.values().filter(|c| c.is_some()).count(),
                    Slot::Own(_) => 1,
                };
                tracing::error!(%status, sessions, "chromium exited; its sessions will reconnect");
                metrics::counter!("switchboard_browser_restarts_total").increment(1);
                state.restarts += 1;
                state.declare_dead(&slot);
                // Start the next shared one now so sessions re-attach without waiting
                // for a launch (a session's own browser starts with its reconnect).
                if slot == Slot::Shared
                    && sessions > 0
                    && let Err(e) = state.ensure_running(&myself, &slot).await
                {
                    tracing::error!(error = %e, "chromium did not restart");
                }
            }
            PoolMsg::Stats(reply) => {
                let _ = reply.send(state.stats());
            }
            PoolMsg::SessionStats { session_id, reply } => {
                let _ = reply.send(state.session_memory(&session_id));
            }
        }
        Ok(())
    }
}

/// Finds Chromium on `PATH` (or the usual install places).
pub fn detect_chromium() -> Option<PathBuf> {
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// One Chromium start.
struct Launch<'a> {
    settings: &'a BrowserSettings,
    /// Its user-data directory; its pid file sits beside it (`<dir>.pid`).
    user_data: &'a Path,
    identity: Option<&'a Identity>,
    generation: u64,
    single_process: bool,
}

impl Launch<'_> {
    async fn run(self, pool: ActorRef<PoolMsg>) -> Result<Running, String> {
        let Self {
            settings,
            user_data,
            identity,
            generation,
            single_process,
        } = self;
        let exe = settings.executable.clone().or_else(detect_chromium).ok_or(
            "Chromium not found: install it (apt-get install chromium) or set browser.chromium_path",
        )?;
        let pid_file = user_data.with_extension("pid");
        kill_stale(&pid_file, user_data);
        std::fs::create_dir_all(user_data)
            .map_err(|e| format!("cannot create {}: {e}", user_data.display()))?;
        for f in SINGLETON_FILES {
            let _ = std::fs::remove_file(user_data.join(f));
        }
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut cmd = if setpriv.is_file() {
            // Chromium dies with the gateway, even on SIGKILL.
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&exe);
            c
        } else {
            tokio::process::Command::new(&exe)
        };
        cmd.args(BASE_ARGS)
            .args(identity.map(Identity::args).unwrap_or_default())
            .arg(format!("--user-data-dir={}", user_data.display()))
            .args(if single_process {
                SINGLE_PROCESS_ARGS
            } else {
                &[]
            })
            .args(&settings.extra_args)
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let pid = child.id().ok_or("chromium exited at once")?;
        let _ = std::fs::write(&pid_file, pid.to_string());
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let ws = tokio::time::timeout(LAUNCH_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    return Some(url.trim().to_owned());
                }
            }
            None
        })
        .await;
        let ws = match ws {
            Ok(Some(ws)) => ws,
            other => {
                let _ = child.kill().await;
                return Err(match other {
                    Err(_) => "chromium did not start within 30 s".into(),
                    _ => "chromium exited during start-up".into(),
                });
            }
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::trace!(target: "chromium", "{line}");
            }
        });
        let (browser, mut handler) = match Browser::connect(ws).await {
            Ok(b) => b,
            Err(e) => {
                let _ = child.kill().await;
                return Err(format!("cannot attach to chromium: {e}"));
            }
        };
        // The DevTools connection is the browser as far as we are concerned: when it
        // breaks, the browser is treated as dead even if its process lingers.
        let watcher = pool.clone();
        tokio::spawn(async move {
            let mut why = "the DevTools connection closed".to_owned();
            while let Some(event) = handler.next().await {
                match event {
                    Err(e @ (CdpError::Ws(_) | CdpError::Io(_))) => {
                        why = format!("the DevTools connection broke: {e}");
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "chromium connection event error"),
                    Ok(()) => {}
                }
            }
            let _ = watcher.cast(PoolMsg::Exited {
                generation,
                status: why,
            });
        });
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let exited = CancellationToken::new();
        let done = exited.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                _ = kill_rx => {
                    let _ = child.kill().await;
                    forget_pid(&pid_file, pid);
                    done.cancel();
                    return;
                }
            };
            forget_pid(&pid_file, pid);
            done.cancel();
            let _ = pool.cast(PoolMsg::Exited { generation, status });
        });
        Ok(Running {
            browser,
            pid,
            generation,
            lost: CancellationToken::new(),
            exited,
            kill: Some(kill_tx),
        })
    }
}

/// Removes `pid_file` if it still names `pid` (the next generation's Chromium
/// may have written its own there already: seen in CI after a frozen browser).
fn forget_pid(pid_file: &Path, pid: u32) {
    let ours = std::fs::read_to_string(pid_file).is_ok_and(|p| p.trim() == pid.to_string());
    if ours {
        let _ = std::fs::remove_file(pid_file);
    }
}

/// Kills a Chromium left running by a gateway that died without cleaning up (its
/// pid file names it, and its command line names the same user-data directory).
fn kill_stale(pid_file: &Path, user_data: &Path) {
    let Ok(pid) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let pid = pid.trim();
    let marker = format!("--user-data-dir={}", user_data.display());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains(&marker) {
        tracing::warn!(pid, "killing a stale chromium from an earlier run");
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
}

/// Sum of PSS (bytes) over `root` and all its descendants, and how many processes.
pub fn tree_pss(root: u32) -> (u64, usize) {
    trees_pss(&[root])
}

/// [`tree_pss`] over several roots at once (one walk of `/proc` for all of them).
pub fn trees_pss(roots: &[u32]) -> (u64, usize) {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The command may contain spaces: fields start after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let (mut total, mut count, mut stack) = (0u64, 0usize, roots.to_vec());
    while let Some(pid) = stack.pop() {
        if let Some(kb) = pss_kib(pid) {
            total += kb * 1024;
            count += 1;
        }
        if let Some(c) = children.get(&pid) {
            stack.extend(c);
        }
    }
    (total, count)
}

fn pss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_of_our_own_tree_is_read() {
        let (bytes, n) = tree_pss(std::process::id());
        assert!(n >= 1);
        assert!(bytes > 0);
    }
}
