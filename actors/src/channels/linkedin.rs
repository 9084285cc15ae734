//! The LinkedIn channel: LinkedIn's web app in a page of the [`BrowserPool`], with
//! the same desktop identity as WhatsApp (or the user agent the account's cookies
//! were issued to), under the account's safety [`caps`].
//!
//! Connect (in a task beside the session actor, so a slow page never blocks its
//! mailbox): lease a page, give back the saved cookies (sealed on the session row) or
//! the imported ones, or log in with the password in the page itself, relaying each
//! checkpoint as a `Challenge` and typing the code [`Channel::submit_code`] hands
//! over; then open the messaging app and check the login against the API (`/me`).
//! Cookies LinkedIn turns away at the first connect are `Failed`
//! (`invalid_credentials`); a saved login turned away later is `LoggedOut`.
//!
//! Working, the task reads the realtime stream inside the page (every frame through a
//! binding) and turns it into events: new messages → `Inbound` (the sender's profile
//! URN as `from`, the conversation URN as `chat`; our own sends skipped, the
//! account's sends from elsewhere → `SentElsewhere`), invitations →
//! `invitation.received` / `invitation.accepted`. Every (re)connection of the stream
//! and every [`Settings::catch_up_every`] the conversations changed since the saved
//! `syncToken` are read again, so what a dead or stalled stream missed arrives once
//! (the session stores each message URN once). [`contract::REALTIME_SILENCE`]
//! without a frame → the stream is reopened.
//!
//! Sends (messages, invitations, accepts) and profile lookups first ask the caps for
//! a slot: over a cap, outside working hours or too soon after the last action, the
//! answer is [`ChannelError::Later`] and the send waits in the queue. The action is
//! recorded before the network call, so a crash never under-counts, and a send
//! retried after a crash is looked for first (our `originToken` in the conversation,
//! `CANT_RESEND_YET` for an invitation), so it is not done twice. A 999 or 429 from
//! LinkedIn starts a cool-down ([`Settings::cool_down`]): `Throttled`, every action
//! waits, then `Resumed`.

pub mod caps;
pub mod contract;

use super::{
    Challenge, Channel, ChannelError, ChannelEvent, ChannelKind, Context, InboundMessage,
    OutboundMessage, SendKind,
};
use crate::browser::{BrowserPool, Lease};
use crate::clock;
use crate::storage::SESSION_STATE_PURPOSE;
use caps::{Action, Caps, CapsConfig, Slot};
use chromiumoxide::cdp::browser_protocol::emulation::{
    SetUserAgentOverrideParams, UserAgentBrandVersion, UserAgentMetadata,
};
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::network::{
    CookieParam, GetCookiesParams, SetCookiesParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{AddBindingParams, EventBindingCalled};
use chromiumoxide::page::Page;
use contract::{QueryIds, Target, Trouble};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_crypto::Binding;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a call made from the session actor may take in all (below the watchdog).
const CALL_TIMEOUT: Duration = Duration::from_secs(4);
/// One page call of the connection task.
const SLOW_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Message URNs remembered as reported.
const SEEN_LIMIT: usize = 2_000;
/// Account actions older than this no longer count for any cap.
const HISTORY: i64 = 8 * 24 * 3600 * 1000;
/// What recording a sighting (not an action) is called in `account_actions`.
const SEEN_INVITATION: &str = "seen:invitation";
/// A cool-down, recorded at its end (so a restart keeps resting).
const COOL_DOWN: &str = "cool_down";
const SEEN_ACCEPTED: &str = "seen:accepted";

/// Gateway-wide LinkedIn settings (the gateway's `linkedin.*` config).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// linkedin.com's address (a stand-in's in tests).
    pub url: String,
    /// How long the app may take to load or a login step to answer.
    pub load_timeout: Duration,
    /// How long the account rests after a 999 or 429.
    pub cool_down: Duration,
    /// How often the conversations are read again besides the realtime stream.
    pub catch_up_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url: contract::DEFAULT_URL.into(),
            load_timeout: Duration::from_secs(60),
            cool_down: Duration::from_secs(1800),
            catch_up_every: Duration::from_secs(180),
        }
    }
}

/// How the session logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginKind {
    /// `li_at` and `JSESSIONID` from the member's own browser, with its user agent.
    Cookies,
    /// Username and password typed into the login page.
    Password,
}

/// A LinkedIn session's configuration: `{"login":"cookies","li_at","jsessionid",
/// "user_agent"?}` or `{"login":"password","username","password"}`, and `caps`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedInConfig {
    pub login: LoginKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub li_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsessionid: Option<String>,
    /// The user agent of the browser the cookies come from (LinkedIn disconnects
    /// cookies used with another one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default)]
    pub caps: CapsConfig,
}

/// Never shows the cookies or the password (a `{:?}` in a log line stays safe).
impl std::fmt::Debug for LinkedInConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("LinkedInConfig")
            .field("login", &self.login)
            .field("li_at", &hidden(&self.li_at))
            .field("jsessionid", &hidden(&self.jsessionid))
            .field("user_agent", &self.user_agent)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("caps", &self.caps)
            .finish()
    }
}

impl LinkedInConfig {
    pub fn parse(v: &Value) -> Result<Self, ChannelError> {
        if v.is_null() || v.as_object().is_some_and(|o| o.is_empty()) {
            return Err(ChannelError::Config(
                "linkedin sessions need `login`: \"cookies\" (with `li_at` and `jsessionid`) \
                 or \"password\" (with `username` and `password`)"
                    .into(),
            ));
        }
        let c: Self =
            serde_json::from_value(v.clone()).map_err(|e| ChannelError::Config(e.to_string()))?;
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        match c.login {
            LoginKind::Cookies if !given(&c.li_at) || !given(&c.jsessionid) => {
                return Err(ChannelError::Config(
                    "cookie login needs `li_at` and `jsessionid`".into(),
                ));
            }
            LoginKind::Password if !given(&c.username) || !given(&c.password) => {
                return Err(ChannelError::Config(
                    "password login needs `username` and `password`".into(),
                ));
            }
            _ => {}
        }
        if c.user_agent.as_deref().is_some_and(|ua| {
            !ua.starts_with("Mozilla/5.0") || ua.contains("Headless") || ua.len() > 400
        }) {
            return Err(ChannelError::Config(
                "`user_agent` must be a desktop browser's (Mozilla/5.0 …, not headless)".into(),
            ));
        }
        Caps::from_config(&c.caps, 0).map_err(ChannelError::Config)?;
        Ok(c)
    }

    /// What may be shown: everything but the cookies and the password.
    pub fn redacted(&self) -> Value {
        let mut shown = self.clone();
        shown.li_at = None;
        shown.jsessionid = None;
        shown.password = None;
        serde_json::to_value(shown).unwrap_or(Value::Null)
    }
}

/// The account, as `/me` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    /// `urn:li:fsd_profile:ACoAA…` (also the mailbox URN).
    pub urn: String,
    pub public_id: String,
    pub name: String,
}

/// What is sealed on the session row between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    #[serde(default)]
    cookies: Vec<SavedCookie>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    sync_token: Option<String>,
    #[serde(default)]
    query_ids: Option<QueryIds>,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
struct SavedCookie {
    name: String,
    value: String,
    http_only: bool,
}

impl std::fmt::Debug for SavedCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=<redacted>", self.name)
    }
}

/// A code for the open challenge, and where to say whether LinkedIn took it.
type CodeAnswer = (String, oneshot::Sender<Result<(), ChannelError>>);

/// What the actor side and the connection task share.
#[derive(Debug, Default)]
struct Shared {
    lease: Option<Lease>,
    me: Option<Me>,
    /// Until when the account rests (unix ms; 0: not resting).
    cool_until: i64,
    /// The answer to the challenge the task waits on.
    codes: Option<mpsc::Sender<CodeAnswer>>,
    events: Option<mpsc::Sender<ChannelEvent>>,
    /// Origin tokens of our own sends (skipped when the stream echoes them).
    own: VecDeque<String>,
    /// Member URNs of public ids resolved for sends (each lookup is a profile view).
    members: HashMap<String, String>,
}

#[derive(Debug)]
pub struct LinkedIn {
    link: Link,
    task: Option<JoinHandle<()>>,
}

/// Everything the connection task needs, detached from the channel.
#[derive(Debug, Clone)]
struct Link {
    tenant_id: String,
    session_id: String,
    created_at: i64,
    config: LinkedInConfig,
    caps: Caps,
    ctx: Context,
    shared: Arc<Mutex<Shared>>,
}

impl Drop for LinkedIn {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(pool) = &self.link.ctx.browser {
            pool.close(&self.link.session_id);
        }
    }
}

impl LinkedIn {
    pub fn new(
        row: &crate::storage::SessionRow,
        config: LinkedInConfig,
        ctx: Context,
    ) -> Result<Self, ChannelError> {
        let caps = Caps::from_config(&config.caps, row.created_at).map_err(ChannelError::Config)?;
        Ok(Self {
            link: Link {
                tenant_id: row.tenant_id.clone(),
                session_id: row.id.clone(),
                created_at: row.created_at,
                config,
                caps,
                ctx,
                shared: Arc::default(),
            },
            task: None,
        })
    }
}

impl Link {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settings(&self) -> &Settings {
        &self.ctx.settings.linkedin
    }

    fn url(&self, path: &str) -> String {
        let base = self.settings().url.trim_end_matches('/');
        format!("{base}/{path}")
    }

    fn page(&self) -> Result<Page, ChannelError> {
        self.shared()
            .lease
            .as_ref()
            .filter(|l| !l.lost.is_cancelled())
            .map(|l| l.page.clone())
            .ok_or(ChannelError::NotConnected)
    }

    fn binding(&self) -> Binding<'_> {
        Binding {
            tenant_id: &self.tenant_id,
            record_id: &self.session_id,
            purpose: SESSION_STATE_PURPOSE,
        }
    }

    async fn load(&self) -> Saved {
        let (key_id, data) = match self.ctx.store.session_state(&self.session_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Saved::default(),
            Err(e) => {
                tracing::warn!(error = %e, "saved login not readable");
                return Saved::default();
            }
        };
        match self.ctx.keyring.open(&key_id, &data, self.binding()) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "saved login cannot be decrypted");
                Saved::default()
            }
        }
    }

    async fn store(&self, saved: &Saved) {
        let bytes = serde_json::to_vec(saved).unwrap_or_default();
        let sealed = match self.ctx.keyring.seal(&bytes, self.binding()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "login state not sealed");
                return;
            }
        };
        let fence = self.ctx.fence(&self.session_id);
        match self
            .ctx
            .store
            .set_session_state(
                &self.session_id,
                Some((&sealed.key_id, &sealed.data)),
                fence.as_ref(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => crate::sessions::session::fenced(&self.session_id, "saved login"),
            Err(e) => tracing::warn!(error = %e, "login state not saved"),
        }
    }

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
    }

    async fn emit(&self, e: ChannelEvent) {
        let events = self.shared().events.clone();
        if let Some(tx) = events {
            let _ = tx.send(e).await;
        }
    }

    /// Starts a cool-down after LinkedIn's 999 or 429; the time it ends.
    async fn cool_down(&self, trouble: Trouble) -> i64 {
        let until = clock::now_ms() + self.settings().cool_down.as_millis() as i64;
        let started = {
            let mut s = self.shared();
            let started = s.cool_until < clock::now_ms();
            s.cool_until = s.cool_until.max(until);
            started
        };
        if started {
            if let Err(e) = self
                .ctx
                .store
                .record_account_action(&self.session_id, COOL_DOWN, None, until)
                .await
            {
                tracing::warn!(error = %e, "cool-down not recorded");
            }
            let why = match trouble {
                Trouble::Denied => "LinkedIn answered 999 (request denied)",
                _ => "LinkedIn answered 429 (too many requests)",
            };
            metrics::counter!("switchboard_linkedin_throttled_total").increment(1);
            self.emit(ChannelEvent::Throttled(format!(
                "{why}; every action waits until {}",
                clock::rfc3339(until)
            )))
            .await;
        }
        until
    }

    /// A cool-down recorded before a restart that has not ended: resumed.
    async fn restore_cool_down(&self) -> Option<i64> {
        let now = clock::now_ms();
        let until = self
            .ctx
            .store
            .account_actions(&self.session_id, now)
            .await
            .ok()?
            .into_iter()
            .filter(|(k, _)| k == COOL_DOWN)
            .map(|(_, at)| at)
            .max()?;
        let mut s = self.shared();
        s.cool_until = s.cool_until.max(until);
        Some(until)
    }

    fn cooling(&self) -> Option<i64> {
        let until = self.shared().cool_until;
        (until > clock::now_ms()).then_some(until)
    }

    /// The account's recorded actions within the caps' longest window.
    async fn history(&self) -> Result<Vec<(Action, i64)>, ChannelError> {
        let rows = self
            .ctx
            .store
            .account_actions(&self.session_id, clock::now_ms() - HISTORY)
            .await
            .map_err(|e| ChannelError::Busy(format!("account actions unreadable: {e}")))?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, at)| Action::parse(&k).map(|a| (a, at)))
            .collect())
    }

    /// Takes a slot for `action` (recording it, under `ref_id`), or says when one
    /// opens. `Ok(true)`: this `ref_id` was recorded before (a retry).
    async fn take_slot(&self, action: Action, ref_id: Option<&str>) -> Result<bool, ChannelError> {
        if let Some(until) = self.cooling() {
            return Err(ChannelError::Later(until));
        }
        let now = clock::now_ms();
        let recorded = match ref_id {
            Some(r) => self
                .ctx
                .store
                .account_action_at(&self.session_id, r)
                .await
                .map_err(|e| ChannelError::Busy(e.to_string()))?,
            None => None,
        };
        let mut history = self.history().await?;
        if let Some(at) = recorded {
            // Counted already, before a crash or a failed call: not counted again, but
            // it still keeps its spacing and hours against the others.
            if let Some(i) = history.iter().rposition(|h| *h == (action, at)) {
                history.remove(i);
            }
        }
        let gap = self.caps.gap(action, &history, &self.session_id);
        match self.caps.next_slot(action, &history, now, gap) {
            Slot::Now => {}
            Slot::At(at, why) => {
                tracing::debug!(action = action.as_str(), %why, at = %clock::rfc3339(at), "waits for its slot");
                return Err(ChannelError::Later(at));
            }
            // A cap set to 0: look again in an hour (the config may change).
            Slot::Never(_) => return Err(ChannelError::Later(now + 3_600_000)),
        }
        if recorded.is_some() {
            return Ok(true);
        }
        self.ctx
            .store
            .record_account_action(&self.session_id, action.as_str(), ref_id, now)
            .await
            .map_err(|e| ChannelError::Busy(format!("account action not recorded: {e}")))?;
        Ok(false)
    }
}

/// An API answer.
#[derive(Debug, Deserialize)]
struct Answer {
    status: u16,
    #[serde(default)]
    url: String,
    #[serde(default)]
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.status) && contract::trouble(self.status, &self.url).is_none()
    }
}

/// Calls one of the contract's functions with JSON arguments; returns its string result.
async fn call(
    page: &Page,
    function: &str,
    args: &[Value],
    timeout: Duration,
) -> Result<String, String> {
    crate::browser::call_function(page, function, args, timeout).await
}

/// A Voyager API call from the page.
async fn api(
    page: &Page,
    method: &str,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<Answer, String> {
    let out = call(
        page,
        contract::API_JS,
        &[method.into(), path.into(), body.unwrap_or(Value::Null)],
        timeout,
    )
    .await?;
    serde_json::from_str(&out).map_err(|e| format!("unreadable API answer: {e}"))
}

fn cdp(e: chromiumoxide::error::CdpError) -> ChannelError {
    ChannelError::Failed(format!("browser: {e}"))
}

/// A user agent override: the UA given, with the platform and client hints it
/// implies (a Chrome UA gets Chrome's brands, never the headless ones).
fn ua_override(ua: &str) -> SetUserAgentOverrideParams {
    let (platform, hint_platform) = if ua.contains("Windows") {
        ("Win32", "Windows")
    } else if ua.contains("Macintosh") {
        ("MacIntel", "macOS")
    } else {
        ("Linux x86_64", "Linux")
    };
    let major = ua
        .split("Chrome/")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .filter(|m| m.chars().all(|c| c.is_ascii_digit()) && !m.is_empty());
    let metadata = major.map(|major| {
        let brands = |v: &str| {
            vec![
                UserAgentBrandVersion::new("Chromium", v),
                UserAgentBrandVersion::new("Google Chrome", v),
                UserAgentBrandVersion::new("Not/A)Brand", "24"),
            ]
        };
        UserAgentMetadata {
            brands: Some(brands(major)),
            full_version_list: Some(brands(&format!("{major}.0.0.0"))),
            platform: hint_platform.into(),
            platform_version: String::new(),
            architecture: "x86".into(),
            model: String::new(),
            mobile: false,
            bitness: Some("64".into()),
            wow64: Some(false),
            form_factors: Some(vec!["Desktop".into()]),
        }
    });
    SetUserAgentOverrideParams {
        user_agent: ua.to_owned(),
        accept_language: Some("en-US,en;q=0.9".into()),
        platform: Some(platform.into()),
        user_agent_metadata: metadata,
    }
}

/// The login flow's answer to [`contract::LOGIN_STATE_JS`].
#[derive(Debug, Default, Deserialize)]
struct LoginState {
    #[serde(rename = "where")]
    at: String,
    form: Option<String>,
    hint: Option<String>,
    error: Option<String>,
    #[serde(default)]
    loaded: bool,
    #[serde(default)]
    path: String,
}

async fn login_state(page: &Page) -> LoginState {
    match call(page, contract::LOGIN_STATE_JS, &[], SLOW_CALL_TIMEOUT).await {
        Ok(s) => serde_json::from_str(&s).unwrap_or_default(),
        Err(_) => LoginState::default(),
    }
}

/// Waits for the next document after an action that navigates (a form sent).
async fn next_document(page: &Page, timeout: Duration) -> Result<LoginState, ChannelError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = login_state(page).await;
        if s.loaded && !s.at.is_empty() {
            return Ok(s);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ChannelError::Failed(
                "LinkedIn did not answer the login step in time".into(),
            ));
        }
    }
}

/// Types like a person: a pause, then key by key.
async fn type_into(page: &Page, selector: &str, text: &str) -> Result<(), ChannelError> {
    let el = page.find_element(selector).await.map_err(|e| {
        ChannelError::Failed(format!(
            "linkedin_changed: no `{selector}` on the page ({e})"
        ))
    })?;
    el.click().await.map_err(cdp)?;
    tokio::time::sleep(Duration::from_millis(200 + rand_below(300))).await;
    el.type_str(text).await.map_err(cdp)?;
    Ok(())
}

async fn click(page: &Page, selector: &str) -> Result<(), ChannelError> {
    call(page, contract::MARK_JS, &[], SLOW_CALL_TIMEOUT)
        .await
        .map_err(ChannelError::Failed)?;
    tokio::time::sleep(Duration::from_millis(300 + rand_below(500))).await;
    page.find_element(selector)
        .await
        .map_err(|e| ChannelError::Failed(format!("linkedin_changed: no `{selector}` ({e})")))?
        .click()
        .await
        .map_err(cdp)?;
    Ok(())
}

fn rand_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b) % n.max(1)
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Logs in with the password on the login page; relays checkpoints.
async fn password_login(link: &Link, page: &Page) -> Result<(), Stop> {
    let timeout = link.settings().load_timeout;
    let (Some(user), Some(pass)) = (&link.config.username, &link.config.password) else {
        return Err(Stop::Failed(
            "invalid_credentials: no username or password".into(),
        ));
    };
    tokio::time::timeout(timeout, page.goto(link.url(contract::LOGIN_PATH)))
        .await
        .map_err(|_| Stop::Retry("the login page did not load in time".into()))?
        .map_err(|e| Stop::Retry(format!("cannot open the login page: {e}")))?;
    type_into(page, contract::USERNAME_INPUT, user).await?;
    type_into(page, contract::PASSWORD_INPUT, pass).await?;
    click(page, contract::LOGIN_BUTTON).await?;
    let mut state = next_document(page, timeout).await?;
    loop {
        match state.at.as_str() {
            "feed" => return Ok(()),
            "login" => {
                return Err(Stop::Failed(format!(
                    "invalid_credentials: {}",
                    state
                        .error
                        .unwrap_or_else(|| "LinkedIn refused the login".into())
                )));
            }
            "expired" => {
                return Err(Stop::Failed(format!(
                    "challenge_expired: {}",
                    state
                        .hint
                        .unwrap_or_else(|| "the verification lapsed".into())
                )));
            }
            "challenge" => {
                let form = state.form.clone().unwrap_or_default();
                let Some(kind) = contract::challenge_kind(&form) else {
                    return Err(Stop::Failed(format!(
                        "linkedin_changed: unknown checkpoint form `{form}`"
                    )));
                };
                state = challenge(link, page, kind, &form, state).await?;
            }
            _ => {
                return Err(Stop::Failed(
                    "linkedin_changed: the login ended on a page the driver does not know".into(),
                ));
            }
        }
    }
}

/// One checkpoint: reported, then answered (a PIN) or waited for (in-app approval);
/// returns the page it led to.
async fn challenge(
    link: &Link,
    page: &Page,
    kind: super::ChallengeKind,
    form: &str,
    state: LoginState,
) -> Result<LoginState, Stop> {
    use super::ChallengeKind as K;
    let wait = match kind {
        K::AppApproval => contract::APPROVAL_WAIT,
        _ => contract::PIN_WAIT,
    };
    let expires_at = clock::now_ms() + wait.as_millis() as i64;
    link.emit(ChannelEvent::Challenge(Challenge {
        kind,
        hint: state.hint.clone(),
        expires_at,
    }))
    .await;
    match kind {
        K::Captcha => Err(Stop::Failed(
            "captcha_required: LinkedIn asks for a captcha; sign in once from a browser and \
             connect with its cookies"
                .into(),
        )),
        K::AppApproval => {
            // The page polls LinkedIn itself and moves on once the member approves.
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let s = login_state(page).await;
                if s.at != "challenge" && !s.at.is_empty() {
                    return Ok(s);
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(Stop::LoggedOut(
                        "challenge_unanswered: the sign-in was not approved in the LinkedIn app within 5 minutes".into(),
                    ));
                }
            }
        }
        _ => {
            let (tx, mut rx) = mpsc::channel(1);
            link.shared().codes = Some(tx);
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                let (code, reply) = tokio::select! {
                    got = rx.recv() => match got {
                        Some(c) => c,
                        None => return Err(Stop::Retry("challenge abandoned".into())),
                    },
                    () = &mut deadline => {
                        link.shared().codes = None;
                        return Err(Stop::LoggedOut(format!(
                            "challenge_unanswered: no code was given within {} minutes",
                            wait.as_secs() / 60
                        )));
                    }
                };
                let step = async {
                    let input = contract::pin_input(form);
                    type_into(page, &input, &code).await?;
                    click(page, &contract::pin_button(form)).await?;
                    next_document(page, link.settings().load_timeout).await
                };
                let s = match step.await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = reply.send(Err(e.clone()));
                        return Err(e.into());
                    }
                };
                if s.at == "challenge" && s.error.is_some() {
                    let why = s.error.clone().unwrap_or_default();
                    let refused = ChannelError::Rejected(format!("rejected_by_network: {why}"));
                    if reply.send(Err(refused)).is_err() {
                        // The caller stopped waiting (LinkedIn was slow) and heard
                        // "accepted": the challenge is reported again, saying why.
                        link.emit(ChannelEvent::Challenge(Challenge {
                            kind,
                            hint: Some(format!("LinkedIn did not take the code: {why}")),
                            expires_at,
                        }))
                        .await;
                    }
                    continue;
                }
                link.shared().codes = None;
                if s.at == "expired" {
                    let _ = reply.send(Err(ChannelError::Rejected(
                        "rejected_by_network: the verification has expired".into(),
                    )));
                } else {
                    let _ = reply.send(Ok(()));
                }
                return Ok(s);
            }
        }
    }
}

/// Why the connection task ends before it works.
#[derive(Debug)]
enum Stop {
    /// A person must act (`FAILED`): bad credentials, a captcha, a changed site.
    Failed(String),
    /// The login is gone (`LOGGED_OUT`): an expired cookie, an unanswered challenge.
    LoggedOut(String),
    /// Worth another try (`Disconnected`: the supervisor reconnects with backoff).
    Retry(String),
}

impl From<ChannelError> for Stop {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Failed(why) if !why.starts_with("browser:") => Stop::Failed(why),
            other => Stop::Retry(other.to_string()),
        }
    }
}

/// Connects, then pumps until the connection ends; what ended it.
async fn connect_and_pump(link: Link) -> ChannelEvent {
    match connect(&link).await {
        Ok(pump) => pump.run().await,
        Err(Stop::Failed(why)) => ChannelEvent::Failed(why),
        Err(Stop::LoggedOut(why)) => {
            link.wipe().await;
            ChannelEvent::LoggedOut(why)
        }
        Err(Stop::Retry(why)) => ChannelEvent::Disconnected(format!("connect failed: {why}")),
    }
}

async fn connect(link: &Link) -> Result<Pump, Stop> {
    let pool: BrowserPool = link
        .ctx
        .browser
        .clone()
        .ok_or_else(|| Stop::Failed("the browser pool is not running".into()))?;
    let mut saved = link.load().await;
    let resting = link.restore_cool_down().await;
    let lease = pool.open(&link.session_id).await.map_err(Stop::Retry)?;
    let page = lease.page.clone();
    link.shared().lease = Some(lease.clone());
    let restored = !saved.cookies.is_empty();
    // The user agent the cookies belong to: the one they were saved with, else the
    // one given with imported cookies, else the pool's desktop identity.
    let user_agent = saved
        .user_agent
        .clone()
        .or_else(|| link.config.user_agent.clone());
    let setup = async {
        if let Some(ua) = &user_agent {
            page.execute(ua_override(ua)).await?;
        }
        page.execute(AddBindingParams::new(contract::BINDING))
            .await?;
        let bindings = page.event_listener::<EventBindingCalled>().await?;
        let crashes = page.event_listener::<EventTargetCrashed>().await?;
        Ok::<_, chromiumoxide::error::CdpError>((bindings, crashes))
    };
    let (bindings, crashes) = tokio::time::timeout(SLOW_CALL_TIMEOUT, setup)
        .await
        .map_err(|_| ChannelError::Busy("the browser did not answer".into()))?
        .map_err(cdp)?;
    let cookies: Vec<SavedCookie> = if restored {
        saved.cookies.clone()
    } else if link.config.login == LoginKind::Cookies {
        let jsession = link.config.jsessionid.clone().unwrap_or_default();
        let jsession = if jsession.starts_with('"') {
            jsession
        } else {
            format!("\"{jsession}\"")
        };
        vec![
            SavedCookie {
                name: "li_at".into(),
                value: link.config.li_at.clone().unwrap_or_default(),
                http_only: true,
            },
            SavedCookie {
                name: "JSESSIONID".into(),
                value: jsession,
                http_only: false,
            },
        ]
    } else {
        Vec::new()
    };
    if !cookies.is_empty() {
        let base = link.url("");
        let params: Vec<CookieParam> = cookies
            .iter()
            .map(|c| {
                let mut p = CookieParam::new(c.name.clone(), c.value.clone());
                p.url = Some(base.clone());
                p.path = Some("/".into());
                p.http_only = Some(c.http_only);
                p.secure = Some(base.starts_with("https:"));
                p
            })
            .collect();
        // Network.setCookies straight (chromiumoxide's helper refuses a blank page).
        page.execute(SetCookiesParams::new(params))
            .await
            .map_err(cdp)?;
    } else {
        password_login(link, &page).await?;
    }
    let timeout = link.settings().load_timeout;
    tokio::time::timeout(timeout, page.goto(link.url(contract::APP_PATH)))
        .await
        .map_err(|_| ChannelError::Busy("LinkedIn did not load in time".into()))?
        .map_err(|e| ChannelError::Busy(format!("cannot open LinkedIn: {e}")))?;
    let turned_away = |what: &str| {
        if restored {
            Stop::LoggedOut(format!(
                "session_expired: LinkedIn {what}; connect the account again"
            ))
        } else if link.config.login == LoginKind::Cookies {
            Stop::Failed(format!(
                "invalid_credentials: LinkedIn did not accept the cookies ({what})"
            ))
        } else {
            Stop::Failed(format!("invalid_credentials: LinkedIn {what}"))
        }
    };
    let state = login_state(&page).await;
    match state.at.as_str() {
        "feed" => {}
        "login" | "challenge" | "expired" => return Err(turned_away("asked to sign in again")),
        _ if contract::signed_out_path(&state.path) => {
            return Err(turned_away("showed its login wall"));
        }
        // A page that did not load or answer is no verdict on the login.
        _ => {
            return Err(Stop::Retry(format!(
                "LinkedIn showed an unexpected page ({:?})",
                state.path
            )));
        }
    }
    let me = loop {
        let a = api(&page, "GET", contract::ME, None, SLOW_CALL_TIMEOUT)
            .await
            .map_err(Stop::Retry)?;
        match contract::trouble(a.status, &a.url) {
            Some(Trouble::LoggedOut) => return Err(turned_away("answered 401 to /me")),
            Some(t) => {
                let until = link.cool_down(t).await;
                let rest = Duration::from_millis((until - clock::now_ms()).max(1000) as u64);
                tokio::time::sleep(rest).await;
                continue;
            }
            None if a.ok() => {
                break parse_me(&a.json())
                    .ok_or_else(|| Stop::Failed("linkedin_changed: /me has no profile".into()))?;
            }
            None => return Err(Stop::Retry(format!("/me answered {}", a.status))),
        }
    };
    link.shared().me = Some(me.clone());
    // What the page's cookies are now (LinkedIn refreshes them), kept for a restart.
    saved.cookies = page_cookies(&page, &link.url("")).await;
    // Imported cookies keep the user agent they came with; a password login keeps
    // the identity it logged in with (the pool's, which may change with an upgrade
    // of Chromium: LinkedIn binds the cookies to it).
    saved.user_agent = match user_agent.clone() {
        Some(ua) => Some(ua),
        None => call(&page, "() => navigator.userAgent", &[], CALL_TIMEOUT)
            .await
            .ok()
            .filter(|ua| !ua.is_empty()),
    };
    let ids = discover(&page).await.or(saved.query_ids.clone());
    saved.query_ids = ids.clone();
    link.store(&saved).await;
    link.emit(ChannelEvent::About(json!({
        "me": me,
        "user_agent": saved.user_agent,
        "query_ids": ids,
    })))
    .await;
    link.emit(ChannelEvent::Ready).await;
    if let Some(until) = resting {
        link.emit(ChannelEvent::Throttled(format!(
            "LinkedIn pushed back before the restart; every action waits until {}",
            clock::rfc3339(until)
        )))
        .await;
    }
    tracing::info!(me = %me.public_id, restored, "LinkedIn logged in");
    Ok(Pump {
        link: link.clone(),
        page,
        me,
        saved,
        lost: lease.lost.clone(),
        bindings,
        crashes,
        seen: Seen::default(),
        last_frame: tokio::time::Instant::now(),
        resting: false,
    })
}

fn parse_me(v: &Value) -> Option<Me> {
    let p = v
        .get("miniProfile")
        .or_else(|| v.get("data")?.get("miniProfile"))?;
    let urn = p["dashEntityUrn"].as_str()?.to_owned();
    let name = format!(
        "{} {}",
        p["firstName"].as_str().unwrap_or_default(),
        p["lastName"].as_str().unwrap_or_default()
    );
    Some(Me {
        urn,
        public_id: p["publicIdentifier"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        name: name.trim().to_owned(),
    })
}

async fn page_cookies(page: &Page, url: &str) -> Vec<SavedCookie> {
    let params = GetCookiesParams {
        urls: Some(vec![url.to_owned()]),
    };
    match page.execute(params).await {
        Ok(r) => r
            .result
            .cookies
            .iter()
            .map(|c| SavedCookie {
                name: c.name.clone(),
                value: c.value.clone(),
                http_only: c.http_only,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cookies not read");
            Vec::new()
        }
    }
}

/// The query ids the page names, if it names both.
async fn discover(page: &Page) -> Option<QueryIds> {
    #[derive(Deserialize)]
    struct Found {
        conversations: Option<String>,
        messages: Option<String>,
    }
    let out = call(page, contract::DISCOVER_JS, &[], SLOW_CALL_TIMEOUT)
        .await
        .ok()?;
    let f: Found = serde_json::from_str(&out).ok()?;
    match (f.conversations, f.messages) {
        (Some(conversations), Some(messages)) => Some(QueryIds {
            conversations,
            messages,
        }),
        _ => {
            tracing::warn!("the page names no GraphQL query ids; using the last ones known");
            None
        }
    }
}

/// Message URNs reported, newest last (bounded).
#[derive(Default)]
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    /// Whether `id` is new (and remembers it).
    fn insert(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > SEEN_LIMIT
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// What the page reports through the binding.
#[derive(Debug, Deserialize)]
struct Report {
    t: String,
    #[serde(default)]
    d: String,
    #[serde(default)]
    status: u16,
}

struct Pump {
    link: Link,
    page: Page,
    me: Me,
    saved: Saved,
    lost: tokio_util::sync::CancellationToken,
    bindings: chromiumoxide::listeners::EventStream<EventBindingCalled>,
    crashes: chromiumoxide::listeners::EventStream<EventTargetCrashed>,
    seen: Seen,
    last_frame: tokio::time::Instant,
    /// In a cool-down: no stream, no catch-up.
    resting: bool,
}

enum Step {
    Go,
    End(Box<ChannelEvent>),
}

impl Step {
    fn end(e: ChannelEvent) -> Self {
        Step::End(Box::new(e))
    }
}

impl Pump {
    async fn run(mut self) -> ChannelEvent {
        if let Step::End(e) = self.catch_up().await {
            return *e;
        }
        if let Step::End(e) = self.invitations().await {
            return *e;
        }
        self.open_stream().await;
        let mut watchdog = tokio::time::interval(Duration::from_secs(2));
        let mut backstop = tokio::time::interval(self.link.settings().catch_up_every);
        backstop.reset();
        loop {
            let step = tokio::select! {
                _ = self.lost.cancelled() => Step::end(ChannelEvent::Disconnected("the browser exited".into())),
                _ = self.crashes.next() => Step::end(ChannelEvent::Disconnected("the page crashed".into())),
                _ = watchdog.tick() => self.watch().await,
                _ = backstop.tick() => {
                    match self.catch_up().await {
                        Step::Go => self.invitations().await,
                        end => end,
                    }
                }
                ev = self.bindings.next() => match ev {
                    None => Step::end(ChannelEvent::Disconnected("the page closed".into())),
                    Some(ev) if ev.name == contract::BINDING => self.on_report(&ev.payload).await,
                    Some(_) => Step::Go,
                },
            };
            if let Step::End(e) = step {
                let _ = call(&self.page, contract::REALTIME_STOP_JS, &[], CALL_TIMEOUT).await;
                return *e;
            }
        }
    }

    async fn open_stream(&mut self) {
        let session = uuid_v4();
        self.last_frame = tokio::time::Instant::now();
        if let Err(e) = call(
            &self.page,
            contract::REALTIME_JS,
            &[contract::BINDING.into(), session.into()],
            SLOW_CALL_TIMEOUT,
        )
        .await
        {
            tracing::warn!(error = %e, "realtime stream not opened");
        }
    }

    /// The stream's liveness and the end of a cool-down.
    async fn watch(&mut self) -> Step {
        if self.resting {
            if self.link.cooling().is_some() {
                return Step::Go;
            }
            self.resting = false;
            tracing::info!("cool-down over");
            self.link.emit(ChannelEvent::Resumed).await;
            self.open_stream().await;
            return self.catch_up().await;
        }
        if self.link.cooling().is_some() {
            self.resting = true;
            let _ = call(&self.page, contract::REALTIME_STOP_JS, &[], CALL_TIMEOUT).await;
            return Step::Go;
        }
        if self.last_frame.elapsed() > contract::REALTIME_SILENCE {
            metrics::counter!("switchboard_linkedin_stream_silences_total").increment(1);
            tracing::warn!(
                silent_s = self.last_frame.elapsed().as_secs(),
                "the realtime stream went silent; reopening it"
            );
            self.open_stream().await;
            // What the dead stream missed does not wait for the new one.
            return self.catch_up().await;
        }
        Step::Go
    }

    async fn on_report(&mut self, payload: &str) -> Step {
        let Ok(r) = serde_json::from_str::<Report>(payload) else {
            return Step::Go;
        };
        if r.t == "closed" {
            return match contract::trouble(r.status, "") {
                Some(Trouble::LoggedOut) => {
                    self.logged_out("the realtime stream answered 401").await
                }
                Some(t) => {
                    self.link.cool_down(t).await;
                    Step::Go
                }
                None => {
                    tracing::info!(status = r.status, "realtime stream closed; reopening");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.open_stream().await;
                    Step::Go
                }
            };
        }
        self.last_frame = tokio::time::Instant::now();
        let Ok(frame) = serde_json::from_str::<Value>(&r.d) else {
            return Step::Go;
        };
        if frame
            .get("com.linkedin.realtimefrontend.ClientConnection")
            .is_some()
        {
            // A new connection: what the last one missed comes from the sync token.
            return self.catch_up().await;
        }
        let Some(ev) = frame.get("com.linkedin.realtimefrontend.DecoratedEvent") else {
            return Step::Go;
        };
        let topic = ev["topic"].as_str().unwrap_or_default();
        let data = &ev["payload"]["data"];
        if topic.contains("messagesTopic") {
            let m = &data["doDecorateMessageMessengerRealtimeDecoration"]["result"];
            if let Some(e) = self.message(m) {
                self.link.emit(e).await;
            }
        } else if topic.contains("invitationsTopic") {
            let inv = &data["invitation"];
            match data["action"].as_str() {
                Some("INVITATION_RECEIVED") => self.invitation_received(inv).await,
                Some("INVITATION_ACCEPTED") => self.invitation_accepted(inv).await,
                _ => {}
            }
        }
        Step::Go
    }

    async fn logged_out(&mut self, what: &str) -> Step {
        self.link.wipe().await;
        Step::end(ChannelEvent::LoggedOut(format!(
            "session_expired: {what}; connect the account again"
        )))
    }

    /// A message as an event (None: ours, or reported already).
    fn message(&mut self, m: &Value) -> Option<ChannelEvent> {
        let urn = m["entityUrn"].as_str()?;
        let sender = &m["sender"];
        let from = sender["hostIdentityUrn"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let member = &sender["participantType"]["member"];
        let profile_url = member["profileUrl"].as_str().unwrap_or_default();
        let public_id =
            contract::target(profile_url, &self.link.settings().url).and_then(|t| match t {
                Target::PublicId(p) => Some(p),
                _ => None,
            });
        let name = format!(
            "{} {}",
            member["firstName"]["text"].as_str().unwrap_or_default(),
            member["lastName"]["text"].as_str().unwrap_or_default()
        );
        let chat = m["conversation"]["entityUrn"].as_str().map(str::to_owned);
        // Every conversation has its own URN, a 1:1 one too: say which kind it is.
        let group = m["conversation"]["groupChat"].as_bool().unwrap_or(false);
        let sent_at = m["deliveredAt"].as_i64().unwrap_or_else(clock::now_ms);
        let text = m["body"]["text"].as_str().unwrap_or_default().to_owned();
        if !self.seen.insert(urn) {
            return None;
        }
        if from == self.me.urn {
            let token = m["originToken"].as_str().unwrap_or_default();
            if self.link.shared().own.iter().any(|t| t == token) {
                return None;
            }
            return Some(ChannelEvent::SentElsewhere(InboundMessage {
                external_id: urn.to_owned(),
                from: from.clone(),
                text,
                chat,
                sent_at,
                ..Default::default()
            }));
        }
        Some(ChannelEvent::Inbound(InboundMessage {
            external_id: urn.to_owned(),
            from: from.clone(),
            text,
            chat,
            sent_at,
            meta: json!({
                "group": group,
                "sender": {
                    "urn": from,
                    "public_id": public_id,
                    "name": name.trim(),
                    "profile_url": profile_url,
                },
            }),
            ..Default::default()
        }))
    }

    /// One API call of the task; trouble handled (cool-down, logout).
    async fn get(&mut self, path: &str) -> Result<Answer, Step> {
        let a = match api(&self.page, "GET", path, None, SLOW_CALL_TIMEOUT).await {
            Ok(a) => a,
            Err(e) => {
                return Err(Step::end(ChannelEvent::Disconnected(format!(
                    "the page stopped answering: {e}"
                ))));
            }
        };
        match contract::trouble(a.status, &a.url) {
            Some(Trouble::LoggedOut) => Err(self.logged_out("LinkedIn answered 401").await),
            Some(t) => {
                self.link.cool_down(t).await;
                self.resting = true;
                Err(Step::Go)
            }
            None => Ok(a),
        }
    }

    /// Reads what changed since the saved sync token (messages the stream missed).
    async fn catch_up(&mut self) -> Step {
        if self.resting || self.link.cooling().is_some() {
            return Step::Go;
        }
        let mut ids = self.saved.query_ids.clone().unwrap_or_default();
        let token = self.saved.sync_token.clone();
        let mut a = match self
            .get(&contract::conversations_path(
                &ids,
                &self.me.urn,
                token.as_deref(),
            ))
            .await
        {
            Ok(a) => a,
            Err(step) => return step,
        };
        if contract::unknown_query(a.status, &a.body) {
            if let Err(step) = self.new_build(&mut ids, "conversations").await {
                return step;
            }
            a = match self
                .get(&contract::conversations_path(
                    &ids,
                    &self.me.urn,
                    token.as_deref(),
                ))
                .await
            {
                Ok(a) => a,
                Err(step) => return step,
            };
        }
        if !a.ok() {
            tracing::warn!(status = a.status, "conversations not read");
            return Step::Go;
        }
        let v = a.json();
        let list = v["data"]
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        let new_token = list["metadata"]["newSyncToken"].as_str().map(str::to_owned);
        // The first read (no token) only sets the mark: older history is not news.
        // A conversation whose messages could not be read keeps the old token, so
        // the next catch-up reads it again.
        let mut complete = true;
        if token.is_some() {
            let since = self.link.created_at;
            let empty = Vec::new();
            for conv in list["elements"].as_array().unwrap_or(&empty) {
                let Some(urn) = conv["entityUrn"].as_str() else {
                    continue;
                };
                let mut m = match self.get(&contract::messages_path(&ids, urn)).await {
                    Ok(m) => m,
                    Err(step) => return step,
                };
                if contract::unknown_query(m.status, &m.body) {
                    if let Err(step) = self.new_build(&mut ids, "messages").await {
                        return step;
                    }
                    m = match self.get(&contract::messages_path(&ids, urn)).await {
                        Ok(m) => m,
                        Err(step) => return step,
                    };
                }
                if !m.ok() {
                    tracing::warn!(
                        status = m.status,
                        "a conversation's messages not read; read again next time"
                    );
                    complete = false;
                    continue;
                }
                let m = m.json();
                let mut messages: Vec<Value> =
                    m["data"]["messengerMessagesByConversation"]["elements"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                messages.sort_by_key(|x| x["deliveredAt"].as_i64().unwrap_or(0));
                for msg in messages {
                    if msg["deliveredAt"].as_i64().unwrap_or(0) < since {
                        continue;
                    }
                    // What others wrote, and what the account sent from elsewhere
                    // (each stored once by the session).
                    if let Some(e) = self.message(&msg) {
                        self.link.emit(e).await;
                    }
                }
            }
        }
        if complete && new_token.is_some() && new_token != self.saved.sync_token {
            self.saved.sync_token = new_token;
            self.link.store(&self.saved).await;
        }
        Step::Go
    }

    /// LinkedIn refused a persisted query (`which`): a new build of the app, whose
    /// query ids are on its page. Reloads it and reads them; fails loudly, naming
    /// the query, when the page names no other.
    async fn new_build(&mut self, ids: &mut QueryIds, which: &str) -> Result<(), Step> {
        let _ = tokio::time::timeout(
            SLOW_CALL_TIMEOUT,
            self.page.goto(self.link.url(contract::APP_PATH)),
        )
        .await;
        match discover(&self.page).await {
            Some(f) if f != *ids => {
                tracing::info!(conversations = %f.conversations, messages = %f.messages, "LinkedIn's query ids changed; using the new ones");
                *ids = f;
                self.saved.query_ids = Some(ids.clone());
                self.link.store(&self.saved).await;
                self.open_stream().await;
                Ok(())
            }
            _ => {
                let query = if which == "messages" {
                    &ids.messages
                } else {
                    &ids.conversations
                };
                Err(Step::end(ChannelEvent::Failed(format!(
                    "linkedin_changed: LinkedIn no longer knows the query `{query}` and its page names no other (the page contract needs an update)"
                ))))
            }
        }
    }

    /// Received invitations not reported yet (a backstop to the stream).
    async fn invitations(&mut self) -> Step {
        if self.resting || self.link.cooling().is_some() {
            return Step::Go;
        }
        let a = match self.get(contract::INVITATION_VIEWS).await {
            Ok(a) if a.ok() => a.json(),
            Ok(_) => return Step::Go,
            Err(step) => return step,
        };
        let empty = Vec::new();
        for el in a["elements"].as_array().unwrap_or(&empty) {
            self.invitation_received(&el["invitation"]).await;
        }
        Step::Go
    }

    async fn invitation_received(&mut self, inv: &Value) {
        let from = &inv["fromMember"];
        let data = json!({
            "invitation_id": inv["entityUrn"],
            "from": from["entityUrn"],
            "from_public_id": from["publicIdentifier"],
            "from_name": full_name(from),
            "message": inv["message"],
            "sent_at": inv["sentTime"].as_i64().map(clock::rfc3339),
        });
        self.report_once(inv, SEEN_INVITATION, INVITATION_RECEIVED, data)
            .await;
    }

    async fn invitation_accepted(&mut self, inv: &Value) {
        let who = &inv["invitee"];
        let data = json!({
            "invitation_id": inv["entityUrn"],
            "member": who["entityUrn"],
            "public_id": who["publicIdentifier"],
            "name": full_name(who),
        });
        self.report_once(inv, SEEN_ACCEPTED, INVITATION_ACCEPTED, data)
            .await;
    }

    /// Reports `event` about invitation `inv` once across restarts: reported, then
    /// recorded as seen (a crash in between reports it again rather than never).
    async fn report_once(&self, inv: &Value, kind: &str, event: &'static str, data: Value) {
        let Some(urn) = inv["entityUrn"].as_str() else {
            return;
        };
        let r = format!("{kind}:{urn}");
        let store = &self.link.ctx.store;
        match store.account_action_at(&self.link.session_id, &r).await {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "sightings unreadable; reporting it"),
        }
        self.link.emit(ChannelEvent::Notice { event, data }).await;
        if let Err(e) = store
            .record_account_action(&self.link.session_id, kind, Some(&r), clock::now_ms())
            .await
        {
            tracing::warn!(error = %e, "sighting not recorded");
        }
    }
}

/// "First Last" of a member in LinkedIn's JSON.
fn full_name(m: &Value) -> String {
    format!(
        "{} {}",
        m["firstName"].as_str().unwrap_or_default(),
        m["lastName"].as_str().unwrap_or_default()
    )
    .trim()
    .to_owned()
}

/// `invitation.received`: a member invited the account.
pub const INVITATION_RECEIVED: &str = "invitation.received";
/// `invitation.accepted`: a member accepted the account's invitation.
pub const INVITATION_ACCEPTED: &str = "invitation.accepted";

fn uuid_v4() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

impl Link {
    /// A call from the actor side: the page, with trouble handled.
    async fn act(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, ChannelError> {
        let page = self.page()?;
        let a = api(&page, method, path, body, CALL_TIMEOUT)
            .await
            .map_err(ChannelError::Busy)?;
        match contract::trouble(a.status, &a.url) {
            Some(Trouble::LoggedOut) => {
                self.wipe().await;
                self.emit(ChannelEvent::LoggedOut(
                    "session_expired: LinkedIn answered 401; connect the account again".into(),
                ))
                .await;
                Err(ChannelError::NotConnected)
            }
            Some(t) => Err(ChannelError::Later(self.cool_down(t).await)),
            None => Ok(a),
        }
    }

    /// The member `target` names, as a profile URN (a lookup for a public id),
    /// refused when the tenant's suppression list names that URN: a send by
    /// profile URL to a member suppressed by URN ends here, before it reaches them.
    async fn member(&self, target: &Target) -> Result<String, ChannelError> {
        let urn = self.resolve(target).await?;
        let entry = self
            .ctx
            .store
            .suppression_for(&self.tenant_id, ChannelKind::Linkedin.as_str(), &urn)
            .await
            .map_err(|e| ChannelError::Busy(format!("suppression list not read: {e}")))?;
        match entry {
            Some(e) => Err(ChannelError::Rejected(crate::suppression::refusal(
                &urn, &e,
            ))),
            None => Ok(urn),
        }
    }

    async fn resolve(&self, target: &Target) -> Result<String, ChannelError> {
        match target {
            Target::Member(urn) => Ok(urn.clone()),
            Target::PublicId(id) => {
                if let Some(urn) = self.shared().members.get(id) {
                    return Ok(urn.clone());
                }
                let p = self.lookup(id).await?;
                // LinkedIn counts it as a profile view: so do the caps (not waited
                // for: the send it serves has its own slot).
                if let Err(e) = self
                    .ctx
                    .store
                    .record_account_action(
                        &self.session_id,
                        Action::ProfileView.as_str(),
                        None,
                        clock::now_ms(),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "profile view not recorded");
                }
                let urn = p["urn"].as_str().map(str::to_owned).ok_or_else(|| {
                    ChannelError::Rejected(format!("profile_not_found: no member `{id}`"))
                })?;
                let mut s = self.shared();
                if s.members.len() >= SEEN_LIMIT {
                    s.members.clear();
                }
                s.members.insert(id.clone(), urn.clone());
                Ok(urn)
            }
            Target::Conversation(_) => Err(ChannelError::Rejected(
                "invalid_recipient: a conversation is not a member".into(),
            )),
        }
    }

    /// A profile by public id or member id.
    async fn lookup(&self, id: &str) -> Result<Value, ChannelError> {
        let a = self.act("GET", &contract::profile_path(id), None).await?;
        if !a.ok() {
            return Err(ChannelError::Busy(format!(
                "profile lookup answered {}",
                a.status
            )));
        }
        let v = a.json();
        let Some(p) = v["elements"].get(0) else {
            return Err(ChannelError::Rejected(format!(
                "profile_not_found: LinkedIn has no member `{id}`"
            )));
        };
        Ok(json!({
            "urn": p["entityUrn"],
            "public_id": p["publicIdentifier"],
            "first_name": p["firstName"],
            "last_name": p["lastName"],
            "headline": p["headline"],
            "profile_url": p["profileUrl"],
        }))
    }

    fn me(&self) -> Result<Me, ChannelError> {
        self.shared().me.clone().ok_or(ChannelError::NotConnected)
    }

    async fn send_message(
        &self,
        m: &OutboundMessage,
        target: Target,
        retried: bool,
    ) -> Result<String, ChannelError> {
        let me = self.me()?;
        let token = contract::origin_token(&m.id);
        let mut message = json!({
            "body": { "attributes": [], "text": m.text },
            "originToken": token,
            "renderContentUnions": [],
        });
        let mut body = json!({
            "dedupeByClientGeneratedToken": false,
            "mailboxUrn": me.urn,
            "trackingId": random_hex(8),
        });
        let conversation = match &target {
            Target::Conversation(c) => {
                message["conversationUrn"] = c.as_str().into();
                Some(c.clone())
            }
            other => {
                let member = self.member(other).await?;
                body["hostRecipientUrns"] = json!([member]);
                // A retry looks in the 1:1 conversation with them, if there is one.
                if retried {
                    self.conversation_with(&member).await?
                } else {
                    None
                }
            }
        };
        if retried
            && let Some(c) = &conversation
            && let Some(urn) = self.find_sent(c, &token).await?
        {
            tracing::info!(%urn, "sent before a crash; not sent again");
            return Ok(urn);
        }
        body["message"] = message;
        {
            let mut s = self.shared();
            s.own.push_back(token.clone());
            if s.own.len() > 500 {
                s.own.pop_front();
            }
        }
        let a = self
            .act("POST", contract::CREATE_MESSAGE, Some(body))
            .await?;
        if !a.ok() {
            let v = a.json();
            let why = v["message"].as_str().unwrap_or(&a.body).to_owned();
            return Err(if a.status == 400 || a.status == 403 {
                ChannelError::Rejected(format!("rejected_by_network: {why}"))
            } else {
                ChannelError::Busy(format!("LinkedIn answered {}: {why}", a.status))
            });
        }
        let v = a.json();
        v["value"]["entityUrn"]
            .as_str()
            .or_else(|| v["data"]["value"]["entityUrn"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| ChannelError::Failed("LinkedIn returned no message URN".into()))
    }

    /// Our message with `token` in `conversation`, if it is there already. Not
    /// knowing is an error (sending again could send it twice).
    async fn find_sent(
        &self,
        conversation: &str,
        token: &str,
    ) -> Result<Option<String>, ChannelError> {
        let ids = self.load().await.query_ids.unwrap_or_default();
        let a = self
            .act("GET", &contract::messages_path(&ids, conversation), None)
            .await?;
        if !a.ok() {
            return Err(ChannelError::Busy(format!(
                "cannot tell whether it was sent before (LinkedIn answered {}); trying again later",
                a.status
            )));
        }
        Ok(
            a.json()["data"]["messengerMessagesByConversation"]["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["originToken"].as_str() == Some(token))
                .and_then(|m| m["entityUrn"].as_str().map(str::to_owned)),
        )
    }

    /// The account's 1:1 conversation with `member`, among its recent ones.
    async fn conversation_with(&self, member: &str) -> Result<Option<String>, ChannelError> {
        let me = self.me()?;
        let ids = self.load().await.query_ids.unwrap_or_default();
        let a = self
            .act(
                "GET",
                &contract::conversations_path(&ids, &me.urn, None),
                None,
            )
            .await?;
        if !a.ok() {
            return Err(ChannelError::Busy(format!(
                "cannot tell whether it was sent before (LinkedIn answered {}); trying again later",
                a.status
            )));
        }
        let v = a.json();
        let list = v["data"]
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        Ok(list["elements"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| {
                c["groupChat"].as_bool() != Some(true)
                    && c["conversationParticipants"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["hostIdentityUrn"].as_str() == Some(member))
            })
            .and_then(|c| c["entityUrn"].as_str().map(str::to_owned)))
    }

    async fn invite(
        &self,
        m: &OutboundMessage,
        target: Target,
        retried: bool,
    ) -> Result<String, ChannelError> {
        let note = m.text.trim();
        let member = self.member(&target).await?;
        let mut body = json!({ "invitee": { "inviteeUnion": { "memberProfile": member } } });
        if !note.is_empty() {
            body["customMessage"] = note.into();
        }
        let a = self
            .act("POST", contract::CREATE_INVITATION, Some(body))
            .await?;
        if a.ok() {
            let v = a.json();
            return v["value"]["invitationUrn"]
                .as_str()
                .or_else(|| v["data"]["value"]["invitationUrn"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| ChannelError::Failed("LinkedIn returned no invitation URN".into()));
        }
        let v = a.json();
        let code = v["data"]["code"].as_str().unwrap_or_default();
        match code {
            // Ours, sent before a crash: done.
            "CANT_RESEND_YET" if retried => {
                tracing::info!(%member, "invited before a crash; not invited again");
                Ok(format!("invitation:{member}"))
            }
            "CANT_RESEND_YET" => Err(ChannelError::Rejected(format!(
                "already_invited: an invitation to {member} is still pending"
            ))),
            "INVALID_CUSTOM_MESSAGE" => Err(ChannelError::Rejected(
                "note_too_long: LinkedIn refused the note".into(),
            )),
            _ if a.status == 400 => Err(ChannelError::Rejected(format!(
                "rejected_by_network: {}",
                if code.is_empty() { &a.body } else { code }
            ))),
            _ => Err(ChannelError::Busy(format!(
                "LinkedIn answered {}",
                a.status
            ))),
        }
    }

    async fn accept(&self, m: &OutboundMessage, retried: bool) -> Result<String, ChannelError> {
        let id =
            m.to.trim()
                .trim_start_matches("urn:li:fsd_invitation:")
                .to_owned();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ChannelError::Rejected(format!(
                "invalid_invitation: `{}`",
                m.to
            )));
        }
        let a = self.act("GET", contract::INVITATION_VIEWS, None).await?;
        let v = a.json();
        let found = v["elements"].as_array().and_then(|els| {
            els.iter()
                .map(|e| &e["invitation"])
                .find(|i| i["invitationId"].as_str() == Some(id.as_str()))
                .cloned()
        });
        let Some(inv) = found else {
            return if retried {
                Ok(format!("urn:li:fsd_invitation:{id}"))
            } else {
                Err(ChannelError::Rejected(format!(
                    "invitation_not_found: no pending invitation `{id}`"
                )))
            };
        };
        let body = json!({
            "invitationId": id,
            "invitationSharedSecret": inv["sharedSecret"],
            "isGenericInvitation": false,
        });
        let a = self
            .act("POST", &contract::accept_path(&id), Some(body))
            .await?;
        if a.ok() {
            Ok(format!("urn:li:fsd_invitation:{id}"))
        } else if a.status == 400 || a.status == 404 {
            Err(ChannelError::Rejected(format!(
                "rejected_by_network: {}",
                a.body
            )))
        } else {
            Err(ChannelError::Busy(format!(
                "LinkedIn answered {}",
                a.status
            )))
        }
    }
}

/// Where a message or an invitation goes, checked (an accept names an invitation).
fn checked_target(m: &OutboundMessage, site: &str) -> Result<Option<Target>, ChannelError> {
    match m.kind {
        SendKind::Accept => Ok(None),
        SendKind::Message => contract::target(&m.to, site).map(Some).ok_or_else(|| {
            ChannelError::Rejected(format!(
                "invalid_recipient: `{}` is neither a conversation or member URN nor a profile URL",
                m.to
            ))
        }),
        SendKind::Invitation => {
            let target = match contract::target(&m.to, site) {
                Some(Target::Conversation(_)) | None => {
                    return Err(ChannelError::Rejected(format!(
                        "invalid_profile: `{}` is not a profile URL or member URN",
                        m.to
                    )));
                }
                Some(t) => t,
            };
            if m.text.trim().chars().count() > contract::NOTE_LIMIT {
                return Err(ChannelError::Rejected(format!(
                    "note_too_long: a note has at most {} characters",
                    contract::NOTE_LIMIT
                )));
            }
            Ok(Some(target))
        }
    }
}

impl Channel for LinkedIn {
    fn connect(
        &mut self,
        events: mpsc::Sender<ChannelEvent>,
    ) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            if let Some(t) = self.task.take() {
                t.abort();
            }
            if self.link.ctx.browser.is_none() {
                return Err(ChannelError::Failed(
                    "the browser pool is not running".into(),
                ));
            }
            self.link.shared().events = Some(events.clone());
            let link = self.link.clone();
            self.task = Some(tokio::spawn(async move {
                let end = connect_and_pump(link.clone()).await;
                link.shared().lease = None;
                let _ = events.send(end).await;
            }));
            Ok(())
        })
    }

    fn send(&mut self, message: OutboundMessage) -> BoxFuture<'_, Result<String, ChannelError>> {
        Box::pin(async move {
            let kind = ChannelKind::Linkedin;
            kind.capabilities().check(kind, &message)?;
            self.page()?;
            let action = match message.kind {
                SendKind::Message => Action::Message,
                SendKind::Invitation => Action::Invitation,
                SendKind::Accept => Action::Accept,
            };
            // Bad input is refused before it takes a slot.
            let target = checked_target(&message, &self.link.settings().url)?;
            let link = self.link.clone();
            let work = async move {
                let retried = link.take_slot(action, Some(&message.id)).await?;
                let sent = match (message.kind, target) {
                    (SendKind::Message, Some(t)) => link.send_message(&message, t, retried).await,
                    (SendKind::Invitation, Some(t)) => link.invite(&message, t, retried).await,
                    _ => link.accept(&message, retried).await,
                }?;
                // Spacing counts from when LinkedIn took it.
                if let Err(e) = link
                    .ctx
                    .store
                    .account_action_done(&link.session_id, &message.id, clock::now_ms())
                    .await
                {
                    tracing::warn!(error = %e, "action time not updated");
                }
                Ok(sent)
            };
            tokio::time::timeout(CALL_TIMEOUT, work)
                .await
                .map_err(|_| ChannelError::Busy("LinkedIn did not answer in time".into()))?
        })
    }

    fn logout(&mut self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            // The cookies stay valid for the member's own browser: this gateway
            // forgets them.
            self.link.wipe().await;
            self.disconnect().await;
            Ok(())
        })
    }

    fn disconnect(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(t) = self.task.take() {
                t.abort();
            }
            self.link.shared().lease = None;
            if let Some(pool) = self.link.ctx.browser.clone() {
                pool.close_and_wait(&self.link.session_id).await;
                // The login lives sealed in the database, not in the profile.
                pool.wipe(&self.link.session_id);
            }
        })
    }

    fn submit_code(&mut self, code: String) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let code = code.trim().to_owned();
            if code.is_empty()
                || code.len() > 12
                || !code.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(ChannelError::Rejected(
                    "rejected_by_network: not a code".into(),
                ));
            }
            let tx = self.link.shared().codes.clone().ok_or_else(|| {
                ChannelError::Unsupported("no_challenge: the session waits for no code".into())
            })?;
            let (reply, answer) = oneshot::channel();
            tx.send((code, reply)).await.map_err(|_| {
                ChannelError::Unsupported("no_challenge: the challenge is over".into())
            })?;
            // Typing the code and loading the next page happen in the task; the actor
            // waits only so long (the session reports `WORKING` once it is through).
            match tokio::time::timeout(CALL_TIMEOUT, answer).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(ChannelError::Failed("the login ended".into())),
                Err(_) => Ok(()),
            }
        })
    }

    fn profile(&mut self, who: String) -> BoxFuture<'_, Result<Value, ChannelError>> {
        Box::pin(async move {
            let target = contract::target(&who, &self.link.settings().url).ok_or_else(|| {
                ChannelError::Rejected(format!(
                    "invalid_profile: `{who}` is not a profile URL, public id or member URN"
                ))
            })?;
            let id = match target {
                Target::PublicId(p) => p,
                Target::Member(urn) => urn.trim_start_matches("urn:li:fsd_profile:").to_owned(),
                Target::Conversation(_) => {
                    return Err(ChannelError::Rejected(
                        "invalid_profile: a conversation is not a profile".into(),
                    ));
                }
            };
            self.page()?;
            let link = self.link.clone();
            let work = async move {
                link.take_slot(Action::ProfileView, None).await?;
                link.lookup(&id).await
            };
            tokio::time::timeout(CALL_TIMEOUT, work)
                .await
                .map_err(|_| ChannelError::Busy("LinkedIn did not answer in time".into()))?
        })
    }

    fn memory(&mut self) -> BoxFuture<'_, Option<Value>> {
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
            Some(json!({
                "js_heap_used_bytes": get("JSHeapUsedSize"),
                "dom_nodes": get("Nodes"),
            }))
        })
    }
}

impl LinkedIn {
    fn page(&self) -> Result<Page, ChannelError> {
        self.link.page()
    }
}

/// The caps' usage of a LinkedIn session, read from storage (works whether or not
/// the session runs): `GET /v1/sessions/{id}/limits`.
pub async fn limits(
    row: &crate::storage::SessionRow,
    config: &Value,
    store: &crate::storage::Store,
) -> Result<Value, ChannelError> {
    let c = LinkedInConfig::parse(config)?;
    let caps = Caps::from_config(&c.caps, row.created_at).map_err(ChannelError::Config)?;
    let rows = store
        .account_actions(&row.id, clock::now_ms() - HISTORY)
        .await
        .map_err(|e| ChannelError::Failed(e.to_string()))?;
    let history: Vec<(Action, i64)> = rows
        .into_iter()
        .filter_map(|(k, at)| Action::parse(&k).map(|a| (a, at)))
        .collect();
    let queued = store
        .queued_sends_of_session(&row.id)
        .await
        .map_err(|e| ChannelError::Failed(e.to_string()))?;
    let mut v = caps.usage(&history, clock::now_ms(), |a| {
        caps.gap(a, &history, &row.id)
    });
    v["queued"] = queued.into();
    Ok(v)
}
