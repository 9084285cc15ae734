//! E-mail sessions: one mailbox, read over IMAP, sent from over SMTP.
//!
//! - [`config`]: the session's configuration (secrets sealed at rest by the session
//!   store, never shown).
//! - [`imap`]: opening a connection (TLS, STARTTLS, password or XOAUTH2 login).
//! - [`mailbox`]: the IDLE connection and the per-folder sync (nothing missed,
//!   nothing twice, UIDVALIDITY resets).
//! - [`parse`]: reading a message (`mail-parser`, `html2text`), its thread id.
//! - [`smtp`]: composing and sending (`lettre`), threading headers.
//! - [`oauth`]: XOAUTH2 access tokens refreshed from a refresh token.
//!
//! A mailbox holds at most two connections: the IDLE one, kept for the session's
//! life, and a short-lived one for commands (filing a sent copy in Sent, reading the
//! message a reply answers, fetching an attachment), one command at a time.
//!
//! Failures as a mail operator expects them: refused credentials end the session
//! (`FAILED`, `auth_failed`; one status, no retry loop that would lock the account);
//! network trouble reconnects with backoff from 2 s to 10 min with jitter, and a
//! connection that drops soon after it opened does not reset the backoff. New
//! connections to one host are rate-limited gateway-wide.

pub mod config;
pub mod imap;
pub mod mailbox;
pub mod oauth;
pub mod parse;
pub mod smtp;

use super::{Channel, ChannelError, ChannelEvent, ChannelKind, Context, OutboundMessage};
use config::{Auth, EmailConfig, Server};
use futures::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use imap::{Credentials, ImapError};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

/// Gateway-wide e-mail settings (`email.*` in the config file).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long one IDLE lasts before it is re-issued: under the 29 minutes servers
    /// allow, and what proves a quiet connection still alive.
    pub idle_renew: Duration,
    /// How often folders are polled where the server has no IDLE (and, with several
    /// folders, how often the ones not watched by IDLE are looked at).
    pub poll_interval: Duration,
    /// New connections per second to one server host (Gmail allows 15 connections
    /// per account and throttles bursts of logins).
    pub connects_per_second_per_host: u32,
    /// Messages larger than this are reported from their headers only.
    pub max_message_bytes: u64,
    /// The gateway's public base URL (`https://gw.example.com`): one-click
    /// unsubscribe links in `List-Unsubscribe` start with it. `None`: mailto only.
    pub public_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            idle_renew: Duration::from_secs(10 * 60),
            poll_interval: Duration::from_secs(60),
            connects_per_second_per_host: 10,
            max_message_bytes: 50 * 1024 * 1024,
            public_url: None,
        }
    }
}

/// First and longest wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// A connection that lived less than this does not reset the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// New connections per host, gateway-wide (sized by the first session's settings).
static HOST_LIMITER: OnceLock<DefaultKeyedRateLimiter<String>> = OnceLock::new();

async fn host_slot(settings: &Settings, host: &str) {
    let limiter = HOST_LIMITER.get_or_init(|| {
        let n =
            NonZeroU32::new(settings.connects_per_second_per_host.max(1)).expect("at least one");
        RateLimiter::keyed(Quota::per_second(n))
    });
    limiter.until_key_ready(&host.to_ascii_lowercase()).await;
}

/// Where a server's credentials come from.
#[derive(Clone)]
enum Secret {
    Password(String),
    OAuth(Arc<oauth::Tokens>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Password(_) => "Secret::Password(..)",
            Self::OAuth(_) => "Secret::OAuth(..)",
        })
    }
}

impl Secret {
    fn of(server: &Server) -> Self {
        match &server.auth {
            Auth::Password(p) => Self::Password(p.clone()),
            Auth::OAuth2(o) => Self::OAuth(Arc::new(oauth::Tokens::new(o.clone()))),
        }
    }

    async fn credentials(&self) -> Result<(Credentials, bool), ImapError> {
        match self {
            Self::Password(p) => Ok((Credentials::Password(p.clone()), true)),
            Self::OAuth(t) => {
                let (token, fresh) = t.token().await?;
                Ok((Credentials::Bearer(token), fresh))
            }
        }
    }
}

/// Logs in to IMAP; an OAuth2 token refused is refreshed once before giving up.
async fn imap_login(
    settings: &Settings,
    server: &Server,
    secret: &Secret,
) -> Result<imap::Session, ImapError> {
    loop {
        let (credentials, fresh) = secret.credentials().await?;
        host_slot(settings, &server.host).await;
        match imap::connect(server, &credentials).await {
            Err(ImapError::Auth(_)) if !fresh => {
                if let Secret::OAuth(t) = secret {
                    t.refused().await;
                }
            }
            other => return other,
        }
    }
}

/// One mailbox.
#[derive(Debug)]
pub struct Email {
    tenant_id: String,
    session_id: String,
    ctx: Context,
    config: EmailConfig,
    imap_secret: Secret,
    smtp_secret: Secret,
    smtp: Option<(smtp::Smtp, String)>,
    /// The command connection: one command at a time.
    commands: Arc<Mutex<()>>,
    watcher: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Email {
    /// How the recipient of a send to `to` unsubscribes, when the tenant asks for
    /// `List-Unsubscribe`: a one-click link of this gateway for one recipient (it
    /// names them), and the tenant's unsubscribe mailbox.
    async fn unsubscribe(&self, to: &str) -> Result<Option<smtp::Unsubscribe>, ChannelError> {
        let consent = self
            .ctx
            .store
            .consent(&self.tenant_id)
            .await
            .map_err(|e| ChannelError::Busy(format!("consent settings not read: {e}")))?;
        if !consent.list_unsubscribe.enabled {
            return Ok(None);
        }
        let recipients = crate::suppression::recipients(ChannelKind::Email, to);
        let url = match (&self.ctx.settings.email.public_url, recipients.as_slice()) {
            (Some(base), [one]) => Some(format!(
                "{base}/v1/unsubscribe/{}",
                crate::consent::unsubscribe_token(&self.ctx.keyring, &self.tenant_id, one)
            )),
            _ => None,
        };
        Ok(Some(smtp::Unsubscribe {
            url,
            mailto: consent.list_unsubscribe.mailto.clone(),
        }))
    }

    pub fn new(tenant_id: &str, session_id: &str, config: EmailConfig, ctx: Context) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            session_id: session_id.to_owned(),
            imap_secret: Secret::of(&config.imap),
            smtp_secret: Secret::of(&config.smtp),
            config,
            ctx,
            smtp: None,
            commands: Arc::new(Mutex::new(())),
            watcher: None,
        }
    }

    /// `message` with the bytes of its media-store attachments read in (a mail is
    /// composed whole), up to `email.max_message_bytes` in all.
    async fn with_media(
        &self,
        mut message: OutboundMessage,
    ) -> Result<OutboundMessage, ChannelError> {
        use futures::TryStreamExt;
        let limit = self.ctx.settings.email.max_message_bytes;
        let mut total: u64 = 0;
        for a in &mut message.attachments {
            let super::AttachmentContent::Media(id) = &a.content else {
                continue;
            };
            let media = self.ctx.media.as_ref().ok_or_else(|| {
                ChannelError::Unsupported("no media store: send the attachment's bytes".into())
            })?;
            let row = media.get(&self.tenant_id, id).await.map_err(|e| match e {
                crate::media::MediaError::NotFound => ChannelError::Rejected(format!(
                    "media_not_found: `{id}` is not in the media store"
                )),
                e => ChannelError::Busy(format!("media store: {e}")),
            })?;
            total += u64::try_from(row.size).unwrap_or(u64::MAX);
            if total > limit {
                return Err(ChannelError::Rejected(format!(
                    "too_large: the attachments come to more than {limit} bytes"
                )));
            }
            let size = u64::try_from(row.size).unwrap_or(0);
            let parts: Vec<bytes::Bytes> = media
                .read(&row, 0, size)
                .map_err(|e| ChannelError::Busy(format!("media store: {e}")))?
                .try_collect()
                .await
                .map_err(|e| ChannelError::Failed(format!("media store: {e}")))?;
            a.content = super::AttachmentContent::Bytes(parts.concat());
        }
        Ok(message)
    }

    /// Runs `f` on the command connection (opened for it, logged out after).
    async fn command<T>(
        &self,
        f: impl AsyncFnOnce(&mut imap::Session) -> Result<T, ImapError>,
    ) -> Result<T, ChannelError> {
        let _one = self.commands.lock().await;
        let mut s = imap_login(
            &self.ctx.settings.email,
            &self.config.imap,
            &self.imap_secret,
        )
        .await
        .map_err(busy)?;
        let out = f(&mut s).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), s.logout()).await;
        out.map_err(|e| match e {
            ImapError::Protocol(t) => ChannelError::Rejected(t),
            other => busy(other),
        })
    }

    /// The SMTP client, built on first use (and again after a token refresh).
    async fn smtp(&mut self) -> Result<smtp::Smtp, ChannelError> {
        let (credentials, _) = self.smtp_secret.credentials().await.map_err(busy)?;
        let key = match &credentials {
            Credentials::Password(_) => String::new(),
            Credentials::Bearer(t) => t.clone(),
        };
        if let Some((s, k)) = &self.smtp
            && *k == key
        {
            return Ok(s.clone());
        }
        let s = smtp::Smtp::new(&self.config.smtp, &credentials)?;
        self.smtp = Some((s.clone(), key));
        Ok(s)
    }

    /// The headers of the message `reply_to` names: a received one
    /// (`folder/uidvalidity/uid`, read over IMAP) or, for anything else, a Message-ID.
    async fn answered(&self, reply_to: &str) -> Result<smtp::Answered, ChannelError> {
        let Some((folder, validity, uid)) = mailbox::parse_external_id(reply_to) else {
            return Ok(smtp::Answered {
                message_id: reply_to.to_owned(),
                ..Default::default()
            });
        };
        let folder = folder.to_owned();
        let raw = self
            .command(async |s| {
                let mb = s.examine(&folder).await.map_err(ImapError::of)?;
                if i64::from(mb.uid_validity.unwrap_or(0)) != validity {
                    return Err(ImapError::Protocol(format!(
                        "the message answered is gone: `{folder}` was renumbered"
                    )));
                }
                use futures::TryStreamExt;
                let fetched: Vec<_> = s
                    .uid_fetch(uid.to_string(), "(UID BODY.PEEK[HEADER])")
                    .await
                    .map_err(ImapError::of)?
                    .try_collect()
                    .await
                    .map_err(ImapError::of)?;
                fetched
                    .iter()
                    .find(|m| m.uid == Some(uid))
                    .and_then(|m| m.header().map(<[u8]>::to_vec))
                    .ok_or_else(|| {
                        ImapError::Protocol(
                            "the message answered is no longer in the mailbox".into(),
                        )
                    })
            })
            .await?;
        let parsed = parse::parse(&raw)
            .map_err(|e| ChannelError::Rejected(format!("the message answered: {e}")))?;
        let mut references = parsed.references;
        if references.is_empty()
            && let Some(parent) = parsed.in_reply_to
        {
            references.push(parent);
        }
        Ok(smtp::Answered {
            message_id: parsed.message_id,
            references,
            subject: parsed.subject,
        })
    }

    /// Files a copy of a sent message in the Sent folder.
    async fn file_sent(&self, raw: Vec<u8>) {
        let Some(folder) = self.config.sent_folder.clone() else {
            return;
        };
        let filed = self
            .command(async |s| {
                s.append(&folder, Some("(\\Seen)"), None, &raw)
                    .await
                    .map_err(ImapError::of)
            })
            .await;
        if let Err(e) = filed {
            tracing::warn!(folder = %folder, error = %e, "sent, but the copy was not filed in the sent folder");
        }
    }
}

fn busy(e: ImapError) -> ChannelError {
    match e {
        ImapError::Auth(t) => ChannelError::Rejected(format!("login refused: {t}")),
        other => ChannelError::Busy(other.to_string()),
    }
}

/// The IDLE connection's life: reconnects with backoff until stopped, or until the
/// credentials are refused.
async fn watch(
    w: mailbox::Watch,
    secret: Secret,
    events: mpsc::Sender<ChannelEvent>,
    stop: CancellationToken,
) {
    let mut ready = false;
    let mut failures: u32 = 0;
    let mut troubled = false;
    loop {
        let opened = Instant::now();
        let outcome = async {
            let (credentials, fresh) = secret.credentials().await?;
            host_slot(&w.settings, &w.config.imap.host).await;
            match w.connected(&credentials, &events, &mut ready, &stop).await {
                Err(ImapError::Auth(t)) if !fresh => {
                    if let Secret::OAuth(tokens) = &secret {
                        tokens.refused().await;
                        // A refreshed token gets one more login right away.
                        return Err(ImapError::Network(format!(
                            "token refused ({t}); refreshing"
                        )));
                    }
                    Err(ImapError::Auth(t))
                }
                other => other,
            }
        };
        let outcome = tokio::select! {
            o = outcome => o,
            () = stop.cancelled() => return,
        };
        match outcome {
            Ok(()) => return,
            Err(ImapError::Auth(why)) => {
                tracing::warn!(reason = %why, "IMAP login refused; the session stops (no retry)");
                let _ = events
                    .send(ChannelEvent::Failed("auth_failed".into()))
                    .await;
                return;
            }
            Err(e) => {
                if opened.elapsed() >= STABLE_AFTER {
                    failures = 0;
                }
                let wait = backoff(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, retry_in_s = wait.as_secs_f64(), "IMAP connection lost; reconnecting");
                if ready && !troubled {
                    troubled = true;
                    let _ = events
                        .send(ChannelEvent::Reconnecting(format!("imap: {e}")))
                        .await;
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return,
                }
                if troubled && ready {
                    // `connected` reports Ready only once: say it again after trouble.
                    ready = false;
                    troubled = false;
                }
            }
        }
    }
}

/// The wait before reconnect attempt `n` (from 0): doubling from 2 s to 10 min, with
/// ±20 % jitter so mailboxes that failed together do not retry together.
fn backoff(n: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << n.min(10))
        .min(BACKOFF_MAX);
    let jitter = (ulid::Ulid::new().random() % 401) as f64 / 1000.0 - 0.2;
    base.mul_f64(1.0 + jitter)
}

impl Channel for Email {
    fn connect(
        &mut self,
        events: mpsc::Sender<ChannelEvent>,
    ) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            if let Some((stop, task)) = self.watcher.take() {
                stop.cancel();
                task.abort();
            }
            let stop = CancellationToken::new();
            let w = mailbox::Watch {
                session_id: self.session_id.clone(),
                store: self.ctx.store.clone(),
                media: self.ctx.media.clone().map(|m| (m, self.tenant_id.clone())),
                config: self.config.clone(),
                settings: self.ctx.settings.email.clone(),
                cluster: self.ctx.cluster.clone(),
            };
            let task = tokio::spawn(watch(w, self.imap_secret.clone(), events, stop.clone()));
            self.watcher = Some((stop, task));
            Ok(())
        })
    }

    fn send(&mut self, message: OutboundMessage) -> BoxFuture<'_, Result<String, ChannelError>> {
        Box::pin(async move {
            let message = self.with_media(message).await?;
            let answered = match &message.reply_to {
                Some(r) => Some(self.answered(r).await?),
                None => None,
            };
            let unsubscribe = self.unsubscribe(&message.to).await?;
            let composed = smtp::compose(
                &message,
                &self.config.from,
                answered.as_ref(),
                unsubscribe.as_ref(),
            )?;
            let client = self.smtp().await?;
            match client.send(&composed.message).await {
                Err(ChannelError::Rejected(t)) if t.starts_with("SMTP 535") => {
                    // An expired OAuth2 token: refresh and try once more.
                    if let Secret::OAuth(tokens) = &self.smtp_secret {
                        tokens.refused().await;
                        self.smtp().await?.send(&composed.message).await?;
                    } else {
                        return Err(ChannelError::Rejected(t));
                    }
                }
                Err(ChannelError::Rejected(t)) => {
                    return Err(match smtp::bounced_recipient(&t, &message.to) {
                        Some(address) => ChannelError::Bounced { address, why: t },
                        None => ChannelError::Rejected(t),
                    });
                }
                other => other?,
            }
            self.file_sent(composed.message.formatted()).await;
            Ok(composed.message_id)
        })
    }

    fn attachment(
        &mut self,
        external_id: String,
        index: usize,
    ) -> BoxFuture<'_, Result<(parse::AttachmentInfo, Vec<u8>), ChannelError>> {
        Box::pin(async move {
            let (folder, validity, uid) = mailbox::parse_external_id(&external_id)
                .ok_or_else(|| ChannelError::Rejected("not a received e-mail".into()))?;
            let folder = folder.to_owned();
            let raw = self
                .command(async |s| {
                    let mb = s.examine(&folder).await.map_err(ImapError::of)?;
                    if i64::from(mb.uid_validity.unwrap_or(0)) != validity {
                        return Err(ImapError::Protocol(format!(
                            "the message is gone: `{folder}` was renumbered"
                        )));
                    }
                    use futures::TryStreamExt;
                    let fetched: Vec<_> = s
                        .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                        .await
                        .map_err(ImapError::of)?
                        .try_collect()
                        .await
                        .map_err(ImapError::of)?;
                    fetched
                        .iter()
                        .find(|m| m.uid == Some(uid))
                        .and_then(|m| m.body().map(<[u8]>::to_vec))
                        .ok_or_else(|| {
                            ImapError::Protocol("the message is no longer in the mailbox".into())
                        })
                })
                .await?;
            parse::attachment(&raw, index).ok_or_else(|| {
                ChannelError::Rejected(format!("the message has no attachment {index}"))
            })
        })
    }

    fn logout(&mut self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            self.disconnect().await;
            self.ctx
                .store
                .forget_folder_positions(&self.session_id)
                .await
                .map_err(|e| ChannelError::Failed(e.to_string()))
        })
    }

    fn disconnect(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some((stop, task)) = self.watcher.take() {
                stop.cancel();
                let abort = task.abort_handle();
                if tokio::time::timeout(Duration::from_secs(5), task)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
        })
    }
}

impl Drop for Email {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.watcher.take() {
            stop.cancel();
            task.abort();
        }
    }
}

/// What `POST /v1/sessions/{id}/test-connection` reports: each server tried, with
/// the error it gave.
pub async fn test_connection(config: &EmailConfig, settings: &Settings) -> serde_json::Value {
    let started = Instant::now();
    let imap = match imap_login(settings, &config.imap, &Secret::of(&config.imap)).await {
        Ok(mut s) => {
            let abilities = mailbox::abilities(&mut s).await.unwrap_or_default();
            let mut missing = Vec::new();
            for f in config.folders.iter().chain(config.sent_folder.iter()) {
                if s.examine(f).await.is_err() {
                    missing.push(f.clone());
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), s.logout()).await;
            let mut out = serde_json::json!({
                "ok": missing.is_empty(),
                "idle": abilities.idle,
                "condstore": abilities.condstore,
                "qresync": abilities.qresync,
                "elapsed_ms": started.elapsed().as_millis() as u64,
            });
            if !missing.is_empty() {
                out["error"] = "folder_missing".into();
                out["message"] = format!("no such folder: {}", missing.join(", ")).into();
            }
            out
        }
        Err(e) => failure(&e, started),
    };
    let started = Instant::now();
    let smtp = match Secret::of(&config.smtp).credentials().await {
        Ok((credentials, _)) => match smtp::Smtp::new(&config.smtp, &credentials) {
            Ok(client) => match client.test().await {
                Ok(()) => {
                    serde_json::json!({ "ok": true, "elapsed_ms": started.elapsed().as_millis() as u64 })
                }
                Err(e) => {
                    serde_json::json!({ "ok": false, "error": "smtp_failed", "message": e.to_string(), "elapsed_ms": started.elapsed().as_millis() as u64 })
                }
            },
            Err(e) => {
                serde_json::json!({ "ok": false, "error": "smtp_failed", "message": e.to_string() })
            }
        },
        Err(e) => failure(&e, started),
    };
    serde_json::json!({
        "ok": imap["ok"] == true && smtp["ok"] == true,
        "imap": imap,
        "smtp": smtp,
    })
}

fn failure(e: &ImapError, started: Instant) -> serde_json::Value {
    let code = match e {
        ImapError::Auth(_) => "auth_failed",
        ImapError::Network(_) => "unreachable",
        ImapError::Protocol(_) => "protocol_error",
    };
    serde_json::json!({
        "ok": false,
        "error": code,
        "message": e.to_string(),
        "elapsed_ms": started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_to_ten_minutes_with_jitter() {
        for _ in 0..50 {
            let first = backoff(0).as_secs_f64();
            assert!((1.6..=2.4).contains(&first), "{first}");
            let third = backoff(2).as_secs_f64();
            assert!((6.4..=9.6).contains(&third), "{third}");
            let late = backoff(30).as_secs_f64();
            assert!((480.0..=720.0).contains(&late), "{late}");
        }
    }
}
