//! The send queue's senders: one task per tenant with queued messages, each
//! under its tenant's limit (rate + burst), so a busy tenant never slows another.
//! One process keeps the limit in memory (a governor limiter); replicas on
//! Postgres share it in the database (`send_rates`, GCRA: one conditional upsert
//! per send), so a tenant's rate holds however many replicas run its sessions.
//!
//! A sender claims its tenant's oldest due `queued` message (`sending`), waits for
//! a token from the limiter, and hands the message to the session actor. The
//! result is committed together with its event: `message.sent` (then
//! `message.delivered` when the network acknowledges) or, once the session is gone
//! or sending failed too often, `message.failed`. A session that is only restarting
//! keeps its messages queued. Per-session pacing: a session sends at most once per
//! `send_interval`; a message that comes too early goes back to the queue until its
//! turn, so other sessions of the tenant are not held up behind it. After a crash, `sending` rows are queued again and
//! resent with the same message id (networks that deduplicate by it, like `sim`,
//! then send it once).

use super::limits::SendQuota;
use crate::channels::{ChannelKind, OutboundMessage};
use crate::clock;
use crate::events::{Events, Publish};
use crate::sessions::{MESSAGE_FAILED, MESSAGE_SENT, SessionError, Sessions, status};
use crate::storage::{MessageRow, MessageWrite, Store};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_crypto::Keyring;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Attempts at a send the channel refuses before it is `failed`.
const MAX_ATTEMPTS: i64 = 5;
/// How long a send waits while its session is restarting.
const RESTART_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct TenantSender {
    notify: Arc<Notify>,
    quota: watch::Sender<SendQuota>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    events: Events,
    sessions: Sessions,
    keyring: Arc<Keyring>,
    cancel: CancellationToken,
    /// Least time between two sends of one session.
    send_interval: Duration,
    tenants: Mutex<HashMap<String, TenantSender>>,
    /// This replica: only sends of sessions it holds are claimed here.
    replica_id: Option<String>,
}

/// Handle to the senders; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

impl Outbound {
    pub fn new(
        store: Store,
        events: Events,
        sessions: Sessions,
        keyring: Arc<Keyring>,
        send_interval: Duration,
        cancel: CancellationToken,
        replica_id: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                events,
                sessions,
                keyring,
                cancel,
                send_interval,
                tenants: Mutex::new(HashMap::new()),
                replica_id,
            }),
        }
    }

    /// After start-up: requeues interrupted sends; returns the tenants with queued
    /// messages (the caller wakes each with its limits).
    pub async fn recover(&self) -> Result<Vec<String>, crate::StoreError> {
        let n = self
            .inner
            .store
            .recover_sending(self.inner.replica_id.as_deref())
            .await?;
        if n > 0 {
            tracing::info!(messages = n, "interrupted sends queued again");
        }
        self.inner.store.tenants_with_queued_sends().await
    }

    /// Tells the tenant's sender there is work (starting it if needed) and sets its quota.
    pub fn wake(&self, tenant_id: &str, quota: SendQuota) {
        let mut tenants = self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let sender = tenants.entry(tenant_id.to_owned()).or_insert_with(|| {
            let notify = Arc::new(Notify::new());
            let (tx, rx) = watch::channel(quota);
            tokio::spawn(run(
                self.inner.clone(),
                tenant_id.to_owned(),
                notify.clone(),
                rx,
            ));
            TenantSender { notify, quota: tx }
        });
        sender.quota.send_if_modified(|q| {
            let changed = *q != quota;
            *q = quota;
            changed
        });
        sender.notify.notify_one();
    }
}

fn limiter(q: SendQuota) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(q.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(q.burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

async fn run(
    inner: Arc<Inner>,
    tenant_id: String,
    notify: Arc<Notify>,
    mut quota: watch::Receiver<SendQuota>,
) {
    let mut limit = limiter(*quota.borrow_and_update());
    // Replicas on Postgres share one limit per tenant, kept in the database; one
    // process (SQLite) keeps it in memory.
    let shared =
        inner.replica_id.is_some() && inner.store.backend() == crate::storage::Backend::Postgres;
    // Requeued sends come due without a wake-up: poll often while there were any.
    let mut last_requeue: Option<std::time::Instant> = None;
    // When each session of this tenant last sent (pacing).
    let mut last_send: HashMap<String, std::time::Instant> = HashMap::new();
    loop {
        if inner.cancel.is_cancelled() {
            return;
        }
        if quota.has_changed().unwrap_or(false) {
            limit = limiter(*quota.borrow_and_update());
        }
        let claimed = match inner
            .store
            .claim_next_send(&tenant_id, inner.replica_id.as_deref())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(tenant_id = %tenant_id, error = %e, "claiming a send failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(message) = claimed else {
            let recent = last_requeue.is_some_and(|t| t.elapsed() < Duration::from_secs(120));
            let poll = if recent {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(30)
            };
            tokio::select! {
                () = notify.notified() => {}
                () = tokio::time::sleep(poll) => {}
                () = inner.cancel.cancelled() => return,
            }
            continue;
        };
        if let Some(at) = last_send.get(&message.session_id) {
            let wait = inner.send_interval.saturating_sub(at.elapsed());
            if !wait.is_zero() {
                requeue(&inner, &message, wait).await;
                last_requeue = Some(std::time::Instant::now());
                continue;
            }
        }
        let current = *quota.borrow();
        let ready = async {
            if shared {
                shared_slot(&inner, &tenant_id, current).await;
            } else {
                limit.until_ready().await;
            }
        };
        tokio::select! {
            () = ready => {}
            () = inner.cancel.cancelled() => return, // the row is recovered at the next start
        }
        if !inner.send_interval.is_zero() {
            last_send.insert(message.session_id.clone(), std::time::Instant::now());
        }
        if send(&inner, message).await {
            last_requeue = Some(std::time::Instant::now());
        }
    }
}

/// Waits for the tenant's next send slot under the limit every replica shares.
async fn shared_slot(inner: &Inner, tenant_id: &str, q: SendQuota) {
    let interval_us = 1_000_000 / i64::from(q.per_second.max(1));
    loop {
        let now_us = clock::now_us();
        match inner
            .store
            .take_send_slot(tenant_id, now_us, interval_us, q.burst)
            .await
        {
            Ok(None) => return,
            Ok(Some(wait_us)) => {
                tokio::time::sleep(Duration::from_micros(wait_us.unsigned_abs())).await;
            }
            Err(e) => {
                tracing::warn!(tenant_id = %tenant_id, error = %e, "send limit not read; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Sends one message; returns whether it went back to the queue for later.
async fn send(inner: &Inner, row: MessageRow) -> bool {
    // Consent first: a suppressed recipient is never sent to, on any send path.
    match suppressed(inner, &row).await {
        Ok(Some(why)) => {
            metrics::counter!("switchboard_sends_suppressed_total").increment(1);
            finish(inner, &row, MESSAGE_FAILED, "failed", None, Some(why)).await;
            return false;
        }
        Ok(None) => {}
        Err(e) => {
            // Unknown is not "allowed": the send waits for the list to be readable.
            tracing::warn!(message_id = %row.id, error = %e, "suppression list not read; the send waits");
            requeue(inner, &row, Duration::from_secs(1)).await;
            return true;
        }
    }
    let message = match message_of(inner, &row).await {
        Ok(m) => m,
        Err(why) => {
            finish(inner, &row, MESSAGE_FAILED, "failed", None, Some(why)).await;
            return false;
        }
    };
    match inner
        .sessions
        .send(&row.tenant_id, &row.session_id, message)
        .await
    {
        Ok(external) => {
            metrics::counter!("switchboard_messages_sent_total").increment(1);
            finish(inner, &row, MESSAGE_SENT, "sent", Some(external), None).await;
            false
        }
        Err(SessionError::NotRunning) | Err(SessionError::Timeout) => {
            // Restarting: keep it queued. Stopped for good: fail it, loudly.
            let session = inner
                .store
                .session_by_id(&row.session_id)
                .await
                .ok()
                .flatten();
            let gone = session.as_ref().is_none_or(|s| {
                s.desired_state != "running"
                    || [status::FAILED, status::LOGGED_OUT, status::STOPPED]
                        .contains(&s.status.as_str())
            });
            if gone {
                let why = format!(
                    "session is {}",
                    session.map_or("deleted".into(), |s| s.status)
                );
                finish(inner, &row, MESSAGE_FAILED, "failed", None, Some(why)).await;
                false
            } else {
                requeue(inner, &row, RESTART_WAIT).await;
                true
            }
        }
        Err(SessionError::Later(at)) => {
            // The account's caps (or a cool-down) give it a later slot: it waits, and
            // the wait is not a failed attempt.
            tracing::debug!(message_id = %row.id, at = %clock::rfc3339(at), "waits for its slot");
            if let Err(e) = inner.store.defer_message(&row.id, at).await {
                tracing::error!(message_id = %row.id, error = %e, "could not requeue; it is recovered at the next start");
            }
            true
        }
        Err(SessionError::Bounced { address, why }) => {
            // The address goes on the list first: a crash before the failure is
            // stored retries the send, which then ends `recipient_suppressed`.
            let address = crate::suppression::recipient(ChannelKind::Email, &address);
            let event = crate::consent::bounce_event(
                &row.tenant_id,
                &row.session_id,
                &address,
                serde_json::json!({ "via": "smtp", "message_id": row.id, "diagnostic": why }),
            );
            let mut wait = Duration::from_millis(50);
            while let Err(e) = inner.events.publish(event.clone()).await {
                if inner.cancel.is_cancelled() {
                    return true;
                }
                tracing::warn!(message_id = %row.id, error = %e, "bounce not stored yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            let why = format!("recipient_bounced: {address}: {why}");
            finish(inner, &row, MESSAGE_FAILED, "failed", None, Some(why)).await;
            false
        }
        Err(SessionError::Rejected(e) | SessionError::Unsupported(e)) => {
            finish(inner, &row, MESSAGE_FAILED, "failed", None, Some(e)).await;
            false
        }
        Err(SessionError::Busy(e) | SessionError::Failed(e)) if row.attempts < MAX_ATTEMPTS => {
            tracing::warn!(message_id = %row.id, error = %e, attempt = row.attempts, "send failed; will retry");
            requeue(
                inner,
                &row,
                Duration::from_secs(1 << row.attempts.clamp(0, 6)),
            )
            .await;
            true
        }
        Err(SessionError::Busy(e) | SessionError::Failed(e)) => {
            finish(inner, &row, MESSAGE_FAILED, "failed", None, Some(e)).await;
            false
        }
    }
}

/// Why `row`'s recipient must not be messaged (`recipient_suppressed: …`), if the
/// tenant's suppression list names them on the session's channel.
async fn suppressed(inner: &Inner, row: &MessageRow) -> Result<Option<String>, crate::StoreError> {
    let Some(session) = inner.store.session_by_id(&row.session_id).await? else {
        return Ok(None);
    };
    let Ok(kind) = session.channel.parse::<ChannelKind>() else {
        return Ok(None);
    };
    for address in crate::suppression::recipients(kind, &row.peer) {
        if let Some(e) = inner
            .store
            .suppression_for(&row.tenant_id, kind.as_str(), &address)
            .await?
        {
            return Ok(Some(crate::suppression::refusal(&address, &e)));
        }
    }
    Ok(None)
}

/// The message to hand to the channel: text and extras opened, and the answered
/// message's network id in `reply_to`. An error says why it cannot be sent.
async fn message_of(inner: &Inner, row: &MessageRow) -> Result<OutboundMessage, String> {
    let unreadable = || "message body unreadable".to_owned();
    let text = row.open_text(&inner.keyring).ok_or_else(unreadable)?;
    let extras = row.open_extras(&inner.keyring).ok_or_else(unreadable)?;
    let reply_to = match &row.reply_to {
        Some(id) => {
            let answered = inner
                .store
                .get_message(&row.tenant_id, id)
                .await
                .map_err(|e| format!("the message answered could not be read: {e}"))?;
            let external = answered.and_then(|m| m.external_id).ok_or_else(|| {
                format!("the message answered ({id}) has no network id (never sent, or deleted)")
            })?;
            Some(external)
        }
        None => None,
    };
    Ok(OutboundMessage {
        id: row.id.clone(),
        to: row.peer.clone(),
        text,
        subject: extras.subject,
        html: extras.html,
        reply_to,
        attachments: extras.attachments,
        kind: extras.kind,
        mark_read: extras.mark_read,
    })
}

async fn requeue(inner: &Inner, row: &MessageRow, after: Duration) {
    let at = clock::now_ms() + after.as_millis() as i64;
    if let Err(e) = inner.store.requeue_message(&row.id, at).await {
        tracing::error!(message_id = %row.id, error = %e, "could not requeue; it is recovered at the next start");
    }
}

/// Commits the message's new status with its event (retrying until stored).
async fn finish(
    inner: &Inner,
    row: &MessageRow,
    event_type: &str,
    status: &'static str,
    external_id: Option<String>,
    error: Option<String>,
) {
    let data = serde_json::json!({
        "message_id": row.id,
        "status": status,
        "to": row.peer,
        "external_id": external_id,
        "error": error,
    });
    let mut event = Publish::new(&row.tenant_id, event_type, data);
    event.session_id = Some(row.session_id.clone());
    event.message = Some(MessageWrite::Status {
        id: row.id.clone(),
        status,
        external_id,
        error,
    });
    let mut wait = Duration::from_millis(50);
    while let Err(e) = inner.events.publish(event.clone()).await {
        if inner.cancel.is_cancelled() {
            return;
        }
        tracing::warn!(message_id = %row.id, error = %e, "message status not stored yet; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
