//! `BrowserPool`: one shared Chromium for every browser-driven session.
//!
//! Each session leases its own isolated browser context (cookies, storage and cache
//! apart from every other session) with one page, and its own profile directory
//! under the data directory (downloads, media). Chromium is started on the first
//! lease, killed with the gateway (parent-death signal where `setpriv` exists, and a
//! pid file so a stale one from a crashed gateway is cleaned up), and restarted when
//! it dies: every lease of the dead browser is cancelled, the sessions holding them
//! fail as disconnected and their supervisors bring them back on the new browser,
//! restoring their saved login.
//!
//! Memory is read the way it is paid: the sum of PSS over the Chromium process tree
//! (`/proc/<pid>/smaps_rollup`), exported as metrics and per session.

use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::page::Page;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    "--remote-debugging-port=0",
];

/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing a context may take before the browser counts as stuck.
const DISPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a lease request waits for the pool.
const CALL_TIMEOUT_MS: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct BrowserSettings {
    /// Chromium's executable; detected on `PATH` when unset.
    pub executable: Option<PathBuf>,
    /// Where Chromium's own profile and the sessions' profile directories live.
    pub dir: PathBuf,
    /// Extra command-line flags (e.g. process-sharing experiments).
    pub extra_args: Vec<String>,
    /// A browser with no sessions for this long is shut down (it starts again with the
    /// next session); this also returns whatever memory a long-lived browser gathered.
    pub idle_shutdown: Duration,
    /// A lease that takes longer than this (a launch included) means the browser is
    /// stuck: it is killed and started again.
    pub open_timeout: Duration,
}

impl BrowserSettings {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            executable: None,
            dir,
            extra_args: Vec::new(),
            idle_shutdown: Duration::from_secs(120),
            open_timeout: Duration::from_secs(45),
        }
    }
}

/// A session's share of the browser: its context and page.
#[derive(Debug, Clone)]
pub struct Lease {
    pub page: Page,
    pub context: BrowserContextId,
    /// The session's profile directory (downloads, media).
    pub profile_dir: PathBuf,
    /// Cancelled when the browser this lease lives in dies.
    pub lost: CancellationToken,
}

/// What the pool reports about itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolStats {
    pub running: bool,
    pub pid: Option<u32>,
    pub contexts: usize,
    /// Sum of PSS over the Chromium process tree.
    pub pss_bytes: u64,
    pub processes: usize,
    pub restarts: u64,
}

#[derive(Debug)]
pub enum PoolMsg {
    Open {
        session_id: String,
        reply: RpcReplyPort<Result<Lease, String>>,
    },
    Close {
        session_id: String,
    },
    Exited {
        generation: u64,
        status: String,
    },
    Stats(RpcReplyPort<PoolStats>),
    /// Deletes a session's profile directory (after a logout).
    Wipe {
        session_id: String,
    },
    /// Shuts the browser down if it still has no sessions.
    IdleCheck {
        generation: u64,
    },
}

#[derive(Debug)]
struct Running {
    browser: Browser,
    pid: u32,
    generation: u64,
    lost: CancellationToken,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug)]
pub struct PoolState {
    settings: BrowserSettings,
    running: Option<Running>,
    generation: u64,
    restarts: u64,
    contexts: HashMap<String, BrowserContextId>,
}

#[derive(Debug)]
pub struct BrowserPoolActor;

/// The handle sessions use.
#[derive(Debug, Clone)]
pub struct BrowserPool {
    actor: ActorRef<PoolMsg>,
    open_timeout_ms: u64,
}

impl BrowserPool {
    pub async fn spawn(settings: BrowserSettings) -> Result<Self, ractor::SpawnErr> {
        let open_timeout_ms = settings.open_timeout.as_millis() as u64;
        let (actor, _) = Actor::spawn(None, BrowserPoolActor, settings).await?;
        Ok(Self {
            actor,
            open_timeout_ms,
        })
    }

    /// A fresh isolated context with one blank page for `session_id` (replacing any
    /// context the session had).
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

    /// Gives a session's context back (its page closes).
    pub fn close(&self, session_id: &str) {
        let _ = self.actor.cast(PoolMsg::Close {
            session_id: session_id.to_owned(),
        });
    }

    /// Removes a session's profile directory.
    pub fn wipe(&self, session_id: &str) {
        let _ = self.actor.cast(PoolMsg::Wipe {
            session_id: session_id.to_owned(),
        });
    }

    pub async fn stats(&self) -> PoolStats {
        ractor::call_t!(self.actor, PoolMsg::Stats, 2_000).unwrap_or_default()
    }

    pub fn shutdown(&self) {
        self.actor.stop(Some("gateway shutting down".into()));
    }
}

impl PoolState {
    fn profile_dir(&self, session_id: &str) -> PathBuf {
        self.settings.dir.join("profiles").join(session_id)
    }

    async fn ensure_running(&mut self, myself: &ActorRef<PoolMsg>) -> Result<(), String> {
        if self.running.is_some() {
            return Ok(());
        }
        self.generation += 1;
        let running = launch(&self.settings, self.generation, myself.clone()).await?;
        tracing::info!(
            pid = running.pid,
            generation = running.generation,
            "chromium started"
        );
        self.running = Some(running);
        Ok(())
    }

    async fn open(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        session_id: &str,
    ) -> Result<Lease, String> {
        self.ensure_running(myself).await?;
        if let Some(old) = self.contexts.remove(session_id) {
            self.dispose(old).await;
        }
        let profile_dir = self.profile_dir(session_id);
        std::fs::create_dir_all(profile_dir.join("downloads"))
            .map_err(|e| format!("cannot create {}: {e}", profile_dir.display()))?;
        let running = self.running.as_ref().ok_or("browser not running")?;
        let params = CreateBrowserContextParams {
            dispose_on_detach: Some(false),
            proxy_server: None,
            proxy_bypass_list: None,
            origins_with_universal_network_access: None,
        };
        let context = running
            .browser
            .create_browser_context(params)
            .await
            .map_err(|e| format!("cannot create a browser context: {e}"))?;
        let downloads = SetDownloadBehaviorParams {
            behavior: SetDownloadBehaviorBehavior::Allow,
            browser_context_id: Some(context.clone()),
            download_path: Some(profile_dir.join("downloads").display().to_string()),
            events_enabled: None,
        };
        if let Err(e) = running.browser.execute(downloads).await {
            tracing::debug!(error = %e, "download directory not set");
        }
        let mut target = CreateTargetParams::new("about:blank");
        target.browser_context_id = Some(context.clone());
        let page = match running.browser.new_page(target).await {
            Ok(p) => p,
            Err(e) => {
                let _ = running.browser.dispose_browser_context(context).await;
                return Err(format!("cannot open a page: {e}"));
            }
        };
        self.contexts.insert(session_id.to_owned(), context.clone());
        metrics::gauge!("switchboard_browser_contexts").set(self.contexts.len() as f64);
        Ok(Lease {
            page,
            context,
            profile_dir,
            lost: running.lost.child_token(),
        })
    }

    /// Closes a context; a browser that does not answer is declared dead.
    async fn dispose(&mut self, context: BrowserContextId) {
        let Some(r) = &self.running else {
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
                self.declare_dead();
            }
        }
    }

    /// Forgets the running browser (killing what is left of it) and cancels every
    /// lease on it: their sessions fail as disconnected and come back on a new one.
    fn declare_dead(&mut self) {
        if let Some(mut r) = self.running.take() {
            r.lost.cancel();
            if let Some(k) = r.kill.take() {
                let _ = k.send(());
            }
        }
        self.contexts.clear();
        metrics::gauge!("switchboard_browser_contexts").set(0.0);
    }

    fn stats(&self) -> PoolStats {
        let (pss, processes) = self
            .running
            .as_ref()
            .map(|r| tree_pss(r.pid))
            .unwrap_or_default();
        metrics::gauge!("switchboard_browser_pss_bytes").set(pss as f64);
        metrics::gauge!("switchboard_browser_processes").set(processes as f64);
        PoolStats {
            running: self.running.is_some(),
            pid: self.running.as_ref().map(|r| r.pid),
            contexts: self.contexts.len(),
            pss_bytes: pss,
            processes,
            restarts: self.restarts,
        }
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
            running: None,
            generation: 0,
            restarts: 0,
            contexts: HashMap::new(),
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
        if let Some(mut r) = state.running.take() {
            r.lost.cancel();
            if let Some(k) = r.kill.take() {
                let _ = k.send(());
            }
        }
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
                            tracing::error!("chromium did not answer in time; restarting it");
                            metrics::counter!("switchboard_browser_restarts_total").increment(1);
                            state.restarts += 1;
                            state.declare_dead();
                            Err("the browser did not answer in time".into())
                        }
                    };
                let _ = reply.send(lease);
            }
            PoolMsg::Close { session_id } => {
                if let Some(ctx) = state.contexts.remove(&session_id) {
                    state.dispose(ctx).await;
                }
                metrics::gauge!("switchboard_browser_contexts").set(state.contexts.len() as f64);
                if state.contexts.is_empty()
                    && let Some(r) = &state.running
                {
                    let generation = r.generation;
                    myself.send_after(state.settings.idle_shutdown, move || PoolMsg::IdleCheck {
                        generation,
                    });
                }
            }
            PoolMsg::IdleCheck { generation } => {
                if state.contexts.is_empty()
                    && state.running.as_ref().map(|r| r.generation) == Some(generation)
                    && let Some(mut r) = state.running.take()
                {
                    tracing::info!(pid = r.pid, "no browser sessions left; chromium stopped");
                    r.lost.cancel();
                    if let Some(k) = r.kill.take() {
                        let _ = k.send(());
                    }
                }
            }
            PoolMsg::Wipe { session_id } => {
                let dir = state.profile_dir(&session_id);
                if let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(error = %e, dir = %dir.display(), "profile directory not removed");
                }
            }
            PoolMsg::Exited { generation, status } => {
                if state.running.as_ref().map(|r| r.generation) != Some(generation) {
                    return Ok(());
                }
                let sessions = state.contexts.len();
                tracing::error!(%status, sessions, "chromium exited; its sessions will reconnect");
                metrics::counter!("switchboard_browser_restarts_total").increment(1);
                state.restarts += 1;
                state.declare_dead();
                // Start the next one now so sessions re-attach without waiting for a launch.
                if sessions > 0
                    && let Err(e) = state.ensure_running(&myself).await
                {
                    tracing::error!(error = %e, "chromium did not restart");
                }
            }
            PoolMsg::Stats(reply) => {
                let _ = reply.send(state.stats());
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

async fn launch(
    settings: &BrowserSettings,
    generation: u64,
    pool: ActorRef<PoolMsg>,
) -> Result<Running, String> {
    let exe = settings.executable.clone().or_else(detect_chromium).ok_or(
        "Chromium not found: install it (apt-get install chromium) or set browser.chromium_path",
    )?;
    let user_data = settings.dir.join("chromium");
    kill_stale(&settings.dir);
    // A fresh profile each launch: sessions live in their own contexts, and a
    // profile left by a killed browser may hold locks.
    let _ = std::fs::remove_dir_all(&user_data);
    std::fs::create_dir_all(&user_data)
        .map_err(|e| format!("cannot create {}: {e}", user_data.display()))?;
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
        .arg(format!("--user-data-dir={}", user_data.display()))
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
    let _ = std::fs::write(settings.dir.join("chromium.pid"), pid.to_string());
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
    tokio::spawn(async move {
        let status = tokio::select! {
            s = child.wait() => s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
            _ = kill_rx => {
                let _ = child.kill().await;
                return;
            }
        };
        let _ = pool.cast(PoolMsg::Exited { generation, status });
    });
    Ok(Running {
        browser,
        pid,
        generation,
        lost: CancellationToken::new(),
        kill: Some(kill_tx),
    })
}

/// Kills a Chromium left running by a gateway that died without cleaning up.
fn kill_stale(dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(dir.join("chromium.pid")) else {
        return;
    };
    let pid = pid.trim();
    let marker = dir.join("chromium").display().to_string();
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
    let (mut total, mut count, mut stack) = (0u64, 0usize, vec![root]);
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
