//! The page contract with LinkedIn: everything the driver knows about the site, in
//! one place, so a change on LinkedIn's side is a change here.
//!
//! - **Voyager API** under `/voyager/api/`: the app's own private API. Calls are made
//!   from the logged-in page ([`API_JS`]), so they carry the page's cookies (`li_at`,
//!   `JSESSIONID`), its user agent and client hints; the `csrf-token` header is
//!   JSESSIONID without its quotes, with `x-restli-protocol-version: 2.0.0`
//!   (tomquirk/linkedin-api `client.py`).
//! - **Messaging** is GraphQL with persisted queries whose ids
//!   (`messengerConversations.<hash>`, `messengerMessages.<hash>`) change when LinkedIn
//!   deploys. They are read from the page ([`DISCOVER_JS`]: the app's own requests,
//!   then its script bundles); [`DEFAULT_QUERY_IDS`] are the ones last seen, used only
//!   when the page names none. Sends: `voyagerMessagingDashMessengerMessages?
//!   action=createMessage` (beeper/linkedin `pkg/linkedingo`).
//! - **Realtime**: `GET /realtime/connect?rc=1` with `accept: text/event-stream` and an
//!   `x-li-realtime-session` UUID, read by [`REALTIME_JS`] inside the page and reported
//!   frame by frame through the [`BINDING`]; [`REALTIME_SILENCE`] without a frame (not
//!   even a heartbeat) means the stream is dead.
//! - **Invitations**: `voyagerRelationshipsDashMemberRelationships?
//!   action=verifyQuotaAndCreateV2` (note ≤ [`NOTE_LIMIT`]; `CANT_RESEND_YET` when one
//!   is pending), received ones at `relationships/invitationViews`, accepted with
//!   their `invitationSharedSecret`.
//! - **Login**: `GET /login` → `POST /checkpoint/lg/login-submit` → the feed, or a
//!   checkpoint page under `/checkpoint/challenge/` whose form says which kind it is
//!   ([`LOGIN_STATE_JS`] reads it).
//! - **Trouble**: 401 or a redirect to the login wall / a checkpoint (the login is
//!   gone), HTTP 999 ("request denied": seen as a robot) and 429 (limits), read by
//!   [`trouble`].

use super::super::ChallengeKind;
use std::time::Duration;

/// linkedin.com (a stand-in's address in tests).
pub const DEFAULT_URL: &str = "https://www.linkedin.com/";
/// The page the driver keeps open: the messaging app (its scripts hold the query ids).
pub const APP_PATH: &str = "messaging/";
pub const LOGIN_PATH: &str = "login";
/// The binding the page reports through (`window.<name>(json)`).
pub const BINDING: &str = "__switchboardLinkedIn";
/// No frame for this long (LinkedIn sends heartbeats well within it): dead stream.
pub const REALTIME_SILENCE: Duration = Duration::from_secs(20);
/// The longest invitation note LinkedIn takes.
pub const NOTE_LIMIT: usize = 300;
/// How long an in-app approval is waited for.
pub const APPROVAL_WAIT: Duration = Duration::from_secs(300);
/// How long a PIN (e-mail, SMS, authenticator) is waited for: SMS codes live 10–15
/// minutes.
pub const PIN_WAIT: Duration = Duration::from_secs(600);

pub const ME: &str = "me";
pub const GRAPHQL: &str = "voyagerMessagingGraphQL/graphql";
pub const CREATE_MESSAGE: &str = "voyagerMessagingDashMessengerMessages?action=createMessage";
pub const CREATE_INVITATION: &str =
    "voyagerRelationshipsDashMemberRelationships?action=verifyQuotaAndCreateV2";
pub const INVITATION_VIEWS: &str =
    "relationships/invitationViews?q=receivedInvitation&start=0&count=100";

/// The GraphQL persisted-query ids of one build of the web app.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueryIds {
    pub conversations: String,
    pub messages: String,
}

/// The ids last seen on linkedin.com, for a page that names none.
pub const DEFAULT_QUERY_IDS: (&str, &str) = (
    "messengerConversations.8656fb361a8ad0c178e8d3ff1a84ce26",
    "messengerMessages.5846eeb71c981f11e0134cb6626cc314",
);

impl Default for QueryIds {
    fn default() -> Self {
        Self {
            conversations: DEFAULT_QUERY_IDS.0.into(),
            messages: DEFAULT_QUERY_IDS.1.into(),
        }
    }
}

/// What an API answer's status means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The login is gone (401, a redirect to the login wall or a checkpoint).
    LoggedOut,
    /// 999: LinkedIn took the account for a robot.
    Denied,
    /// 429: too many requests.
    TooMany,
}

/// Reads an API answer: its status and where a redirect left it.
pub fn trouble(status: u16, url: &str) -> Option<Trouble> {
    let moved = SIGNED_OUT_PATHS.iter().any(|p| url.contains(p));
    match status {
        401 => Some(Trouble::LoggedOut),
        999 => Some(Trouble::Denied),
        429 => Some(Trouble::TooMany),
        _ if moved => Some(Trouble::LoggedOut),
        _ => None,
    }
}

/// A persisted query that the current build does not know (its ids changed).
pub fn unknown_query(status: u16, body: &str) -> bool {
    status == 400 && (body.contains("persisted query") || body.contains("queryId"))
}

/// `variables=(k:v,…)` with each value URL-encoded, as the web app sends them.
pub fn restli_variables(vars: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        form_urlencoded::byte_serialize(v.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let inner: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("{k}:{}", enc(v)))
        .collect();
    format!("({})", inner.join(","))
}

/// The conversations query: by category at first, by sync token afterwards.
pub fn conversations_path(ids: &QueryIds, mailbox: &str, sync_token: Option<&str>) -> String {
    let vars = match sync_token {
        Some(t) => restli_variables(&[("mailboxUrn", mailbox), ("syncToken", t)]),
        None => restli_variables(&[("mailboxUrn", mailbox)]),
    };
    format!("{GRAPHQL}?queryId={}&variables={vars}", ids.conversations)
}

pub fn messages_path(ids: &QueryIds, conversation: &str) -> String {
    let vars = restli_variables(&[("conversationUrn", conversation)]);
    format!("{GRAPHQL}?queryId={}&variables={vars}", ids.messages)
}

pub fn profile_path(public_id: &str) -> String {
    format!(
        "identity/dash/profiles?q=memberIdentity&memberIdentity={}",
        form_urlencoded::byte_serialize(public_id.as_bytes()).collect::<String>()
    )
}

pub fn accept_path(invitation_id: &str) -> String {
    format!("relationships/invitations/{invitation_id}?action=accept")
}

/// Who a send or a lookup names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A conversation (`urn:li:msg_conversation:…`).
    Conversation(String),
    /// A member by profile URN (`urn:li:fsd_profile:ACoAA…`).
    Member(String),
    /// A member by public id (from `/in/<id>/` or given bare).
    PublicId(String),
}

/// Reads what `to` names: a conversation or member URN, a profile URL
/// (`https://www.linkedin.com/in/<id>/` on linkedin.com or one of its subdomains, or
/// on the host of `site`, the configured base URL) or a bare public id. `None` for
/// anything else.
pub fn target(to: &str, site: &str) -> Option<Target> {
    let to = to.trim();
    if to.starts_with("urn:li:msg_conversation:(") && to.ends_with(')') {
        return Some(Target::Conversation(to.to_owned()));
    }
    if let Some(id) = to.strip_prefix("urn:li:fsd_profile:") {
        return valid_member_id(id).then(|| Target::Member(to.to_owned()));
    }
    if to.starts_with("urn:") {
        return None;
    }
    if to.contains("://") {
        let url = url::Url::parse(to).ok()?;
        let host = url.host_str()?;
        let site_host = url::Url::parse(site).ok();
        let ours = host == "linkedin.com"
            || host.ends_with(".linkedin.com")
            || site_host.as_ref().and_then(url::Url::host_str) == Some(host);
        if !matches!(url.scheme(), "https" | "http") || !ours {
            return None;
        }
        let mut segments = url.path_segments()?;
        if segments.next()? != "in" {
            return None;
        }
        let id = segments.next()?;
        let id = percent_decode(id);
        return valid_public_id(&id).then_some(Target::PublicId(id));
    }
    valid_public_id(to).then(|| Target::PublicId(to.to_owned()))
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A public id as LinkedIn gives them: 3–100 letters, digits and dashes.
fn valid_public_id(id: &str) -> bool {
    (3..=100).contains(&id.chars().count())
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

fn valid_member_id(id: &str) -> bool {
    id.len() >= 8
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The `originToken` of our send `msg_id`: a UUID derived from it, so a send retried
/// after a crash is recognised in the conversation.
pub fn origin_token(msg_id: &str) -> String {
    let h = |seed: u64| {
        let mut x = seed;
        for b in msg_id.bytes() {
            x ^= u64::from(b);
            x = x.wrapping_mul(0x0100_0000_01b3);
        }
        x
    };
    let (a, b) = (h(0xcbf2_9ce4_8422_2325), h(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// The checkpoint a challenge form asks for (by the form's id).
pub fn challenge_kind(form: &str) -> Option<ChallengeKind> {
    Some(match form {
        "email-pin-challenge" => ChallengeKind::Email,
        "phone-pin-challenge" => ChallengeKind::Sms,
        "two-step-challenge" => ChallengeKind::TwoFactor,
        "in-app-challenge" => ChallengeKind::AppApproval,
        "captcha-challenge" => ChallengeKind::Captcha,
        _ => return None,
    })
}

/// Calls the Voyager API from the page: `(method, path under /voyager/api/, body or
/// null)` → `{"status","url","body"}`. The csrf token is JSESSIONID from the page's
/// cookies, without quotes.
pub const API_JS: &str = r#"async (method, path, body) => {
  const m = document.cookie.match(/(?:^|;\s*)JSESSIONID="?([^";]+)"?/);
  const headers = {
    'csrf-token': m ? m[1] : '',
    'x-restli-protocol-version': '2.0.0',
    'x-li-lang': 'en_US',
    'accept': 'application/vnd.linkedin.normalized+json+2.1',
  };
  const init = { method, credentials: 'include', headers };
  if (body !== null) {
    headers['content-type'] = 'application/json; charset=UTF-8';
    init.body = JSON.stringify(body);
  }
  try {
    const r = await fetch('/voyager/api/' + path, init);
    return JSON.stringify({ status: r.status, url: r.url, body: await r.text() });
  } catch (e) {
    return JSON.stringify({ status: 0, url: '', body: String(e) });
  }
}"#;

/// Finds the GraphQL query ids the page uses: in the requests it made, then in its
/// script bundles → `{"conversations","messages","scanned"}` (null when not found).
pub const DISCOVER_JS: &str = r#"async () => {
  const found = { conversations: null, messages: null, scanned: 0 };
  const look = (text) => {
    const c = text.match(/messengerConversations\.[0-9a-f]{32}/);
    const m = text.match(/messengerMessages\.[0-9a-f]{32}/);
    if (c && !found.conversations) found.conversations = c[0];
    if (m && !found.messages) found.messages = m[0];
  };
  for (const e of performance.getEntriesByType('resource')) {
    if (e.name.includes('queryId=')) look(decodeURIComponent(e.name));
  }
  const scripts = [...document.scripts].map(s => s.src).filter(s => s && new URL(s).origin === location.origin);
  for (const src of scripts) {
    if (found.conversations && found.messages) break;
    try {
      const r = await fetch(src, { credentials: 'include' });
      look(await r.text());
      found.scanned += 1;
    } catch (e) {}
  }
  return JSON.stringify(found);
}"#;

/// Opens the realtime stream inside the page and reports each frame through the
/// binding (`{"t":"frame","d":<data line>}`, then `{"t":"closed","status"}`). A
/// stream already open is aborted first.
pub const REALTIME_JS: &str = r#"async (binding, session) => {
  if (window.__sbRealtime) { try { window.__sbRealtime.abort(); } catch (e) {} }
  const ctl = new AbortController();
  window.__sbRealtime = ctl;
  const report = (o) => { try { window[binding](JSON.stringify(o)); } catch (e) {} };
  (async () => {
    let status = 0;
    try {
      const r = await fetch('/realtime/connect?rc=1', {
        credentials: 'include', signal: ctl.signal,
        headers: { 'accept': 'text/event-stream', 'x-li-realtime-session': session, 'x-li-accept': 'application/vnd.linkedin.normalized+json+2.1' },
      });
      status = r.status;
      if (!r.ok || !r.body) { report({ t: 'closed', status }); return; }
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = chunk.split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5).trim()).join('\n');
          if (data) report({ t: 'frame', d: data });
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    if (window.__sbRealtime === ctl) report({ t: 'closed', status });
  })();
  return 'started';
}"#;

/// Stops the realtime stream.
pub const REALTIME_STOP_JS: &str = r#"() => { if (window.__sbRealtime) { window.__sbRealtime.abort(); window.__sbRealtime = null; } return 'ok'; }"#;

/// Where the login flow is: `{"where":"feed"|"login"|"challenge"|"expired"|"other",
/// "form","hint","error","loaded"}` (`loaded`: false while the document marked by
/// [`MARK_JS`] is still the one shown).
pub const LOGIN_STATE_JS: &str = r#"() => {
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent.trim() : null; };
  const p = location.pathname;
  const out = { where: 'other', form: null, hint: null, error: null, path: p,
    loaded: !window.__sbMark && document.readyState !== 'loading' };
  if (document.querySelector('#challenge-expired')) { out.where = 'expired'; out.hint = text('#challenge-expired'); return JSON.stringify(out); }
  const form = document.querySelector('form[id$="-challenge"]');
  if (form) {
    out.where = 'challenge'; out.form = form.id;
    out.hint = text('.form__subtitle') || text('h1');
    out.error = text('.body__banner--error') || text('[role="alert"]');
    return JSON.stringify(out);
  }
  if (document.querySelector('#username') && document.querySelector('#password')) {
    out.where = 'login'; out.error = text('#error-for-password') || text('#error-for-username');
    return JSON.stringify(out);
  }
  if (p.startsWith('/feed') || p.startsWith('/messaging') || document.querySelector('.global-nav__me')) out.where = 'feed';
  return JSON.stringify(out);
}"#;

/// The pages LinkedIn shows members it does not know: the login wall, the login
/// page, a checkpoint.
const SIGNED_OUT_PATHS: [&str; 4] = ["/checkpoint/", "/authwall", "/login", "/uas/login"];

/// Whether a page's path is one of [`SIGNED_OUT_PATHS`].
pub fn signed_out_path(path: &str) -> bool {
    SIGNED_OUT_PATHS.iter().any(|p| path.starts_with(p))
}

/// Marks the document shown, so the next one can be told from it.
pub const MARK_JS: &str = r#"() => { window.__sbMark = true; return 'ok'; }"#;

/// The login form's fields and button.
pub const USERNAME_INPUT: &str = "#username";
pub const PASSWORD_INPUT: &str = "#password";
pub const LOGIN_BUTTON: &str = "form.login__form button[type=submit]";
/// A PIN challenge's field and button, by form.
pub fn pin_input(form: &str) -> String {
    format!("form#{form} input[name=pin]")
}
pub fn pin_button(form: &str) -> String {
    format!("form#{form} button[type=submit]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_from_urns_urls_and_public_ids() {
        let target = |to: &str| target(to, "http://127.0.0.1:9/");
        assert_eq!(
            target("https://www.linkedin.com/in/jane-doe-42/"),
            Some(Target::PublicId("jane-doe-42".into()))
        );
        assert_eq!(
            target("http://127.0.0.1:9/in/jane-doe/?trk=x"),
            Some(Target::PublicId("jane-doe".into()))
        );
        assert_eq!(
            target("https://de.linkedin.com/in/jane-doe"),
            Some(Target::PublicId("jane-doe".into()))
        );
        assert_eq!(
            target("jane-doe"),
            Some(Target::PublicId("jane-doe".into()))
        );
        assert_eq!(
            target("urn:li:fsd_profile:ACoAAB1234567"),
            Some(Target::Member("urn:li:fsd_profile:ACoAAB1234567".into()))
        );
        let conv = "urn:li:msg_conversation:(urn:li:fsd_profile:ACoAAB1234567,2-abc)";
        assert_eq!(target(conv), Some(Target::Conversation(conv.into())));
        for bad in [
            "",
            "https://www.linkedin.com/company/acme/",
            "https://www.linkedin.com/in/",
            "ftp://x/in/jane-doe/",
            "jane doe",
            "urn:li:member:1",
            "a",
            "https://www.linkedin.com/in/<script>/",
            "https://evil.example/in/jane-doe/",
            "https://linkedin.com.evil.example/in/jane-doe/",
            "http://127.0.0.2:9/in/jane-doe/",
        ] {
            assert_eq!(target(bad), None, "{bad}");
        }
    }

    #[test]
    fn trouble_is_read_from_status_and_redirects() {
        assert_eq!(trouble(200, "http://x/voyager/api/me"), None);
        assert_eq!(trouble(401, ""), Some(Trouble::LoggedOut));
        assert_eq!(trouble(999, ""), Some(Trouble::Denied));
        assert_eq!(trouble(429, ""), Some(Trouble::TooMany));
        assert_eq!(
            trouble(200, "https://www.linkedin.com/checkpoint/challenge/AQH1"),
            Some(Trouble::LoggedOut)
        );
        assert_eq!(
            trouble(200, "https://www.linkedin.com/authwall?sessionRedirect=x"),
            Some(Trouble::LoggedOut)
        );
    }

    #[test]
    fn origin_tokens_are_stable_uuids() {
        let a = origin_token("msg_1");
        assert_eq!(a, origin_token("msg_1"));
        assert_ne!(a, origin_token("msg_2"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn variables_are_encoded_inside_the_list() {
        assert_eq!(
            restli_variables(&[("mailboxUrn", "urn:li:fsd_profile:A"), ("syncToken", "st1")]),
            "(mailboxUrn:urn%3Ali%3Afsd_profile%3AA,syncToken:st1)"
        );
    }
}
