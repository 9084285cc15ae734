//! Messages, both directions. Outbound ones are the durable send queue: a row is
//! `queued` until the tenant's sender claims it (`sending`), then `sent` (and
//! `delivered` when the network acknowledges) or `failed`. Bodies are sealed.
//!
//! Status changes that users must hear about are written together with their
//! `message.*` event (see [`MessageWrite`] on `NewEvent`), so the state and the
//! event cannot disagree after a crash.

use super::{Result, Store, on_pool, on_write_pool};
use crate::channels::{Attachment, SendKind};
use crate::clock;
use serde::{Deserialize, Serialize};
use switchboard_crypto::{Binding, Keyring, Sealed};

/// Purpose bound into sealed message bodies.
pub const BODY_PURPOSE: &str = "message.body";
/// Purpose bound into a send's sealed extras (subject, attachments).
pub const EXTRAS_PURPOSE: &str = "message.extras";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub tenant_id: String,
    pub session_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The other party (recipient of outbound, sender of inbound).
    pub peer: String,
    pub status: String,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub external_id: Option<String>,
    pub attempts: i64,
    pub body_key_id: Option<String>,
    pub body: Option<Vec<u8>>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The `msg_…` id of the message a send answers (quote, thread).
    pub reply_to: Option<String>,
    /// A send's [`MessageExtras`], sealed; `None` for plain text.
    pub extras_key_id: Option<String>,
    pub extras: Option<Vec<u8>>,
}

/// What a send carries besides its text, sealed together in `extras`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// An invitation or an accept rather than a message (LinkedIn).
    #[serde(default, skip_serializing_if = "SendKind::is_message")]
    pub kind: SendKind,
    /// Mark the chat read before sending.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mark_read: bool,
}

impl MessageExtras {
    pub fn is_empty(&self) -> bool {
        self.subject.is_none()
            && self.html.is_none()
            && self.attachments.is_empty()
            && self.kind.is_message()
            && !self.mark_read
    }
}

macro_rules! message_columns {
    () => {
        "id, tenant_id, session_id, direction, peer, status, idempotency_key, request_hash, external_id, \
         attempts, body_key_id, body, error, created_at, updated_at, reply_to, extras_key_id, extras"
    };
}
pub(crate) use message_columns;

/// Inserts a [`MessageRow`] through `$exec`.
macro_rules! insert_row {
    ($exec:expr, $row:expr) => {
        sqlx::query(concat!(
            "INSERT INTO messages (",
            $crate::storage::messages::message_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .bind(&$row.id)
        .bind(&$row.tenant_id)
        .bind(&$row.session_id)
        .bind(&$row.direction)
        .bind(&$row.peer)
        .bind(&$row.status)
        .bind(&$row.idempotency_key)
        .bind(&$row.request_hash)
        .bind(&$row.external_id)
        .bind($row.attempts)
        .bind(&$row.body_key_id)
        .bind(&$row.body)
        .bind(&$row.error)
        .bind($row.created_at)
        .bind($row.updated_at)
        .bind(&$row.reply_to)
        .bind(&$row.extras_key_id)
        .bind(&$row.extras)
        .execute($exec)
        .await
        .map_err(|e| $crate::storage::conflict_or(e, "message"))?
    };
}
pub(crate) use insert_row;

/// Applies a [`MessageWrite`] through `$exec`; evaluates to an [`Applied`].
macro_rules! apply_write {
    ($exec:expr, $w:expr) => {
        match $w {
            $crate::storage::MessageWrite::Insert(row) => {
                $crate::storage::messages::insert_row!($exec, row);
                $crate::storage::messages::Applied::Done
            }
            $crate::storage::MessageWrite::Enqueue { row, max_queued } => {
                $crate::storage::messages::Applied::Enqueue(
                    $crate::storage::messages::enqueue!($exec, row, *max_queued),
                )
            }
            $crate::storage::MessageWrite::Status {
                id,
                status,
                external_id,
                error,
            } => {
                sqlx::query(
                    "UPDATE messages SET status = $1, external_id = COALESCE($2, external_id), \
                     error = COALESCE($3, error), updated_at = $4 WHERE id = $5",
                )
                .bind(*status)
                .bind(external_id)
                .bind(error)
                .bind($crate::clock::now_ms())
                .bind(id)
                .execute($exec)
                .await?;
                $crate::storage::messages::Applied::Done
            }
            $crate::storage::MessageWrite::Advance { id, from, to } => {
                let changed = sqlx::query(
                    "UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
                )
                .bind(*to)
                .bind($crate::clock::now_ms())
                .bind(id)
                .bind(*from)
                .execute($exec)
                .await?
                .rows_affected();
                if changed == 0 {
                    $crate::storage::messages::Applied::Skipped
                } else {
                    $crate::storage::messages::Applied::Done
                }
            }
        }
    };
}

/// What applying a [`MessageWrite`] did.
#[derive(Debug)]
pub(crate) enum Applied {
    Done,
    /// The event is not stored: the message was not where the write expected it.
    Skipped,
    Enqueue(Enqueued),
}

impl Applied {
    /// Whether the event that carried the write is stored.
    pub(crate) fn keeps_event(&self) -> bool {
        match self {
            Applied::Done => true,
            Applied::Skipped => false,
            Applied::Enqueue(e) => matches!(e, Enqueued::New(_)),
        }
    }

    pub(crate) fn into_enqueued(self) -> Option<Enqueued> {
        match self {
            Applied::Enqueue(e) => Some(e),
            _ => None,
        }
    }
}

/// Checks and inserts a send through `$exec`; evaluates to an [`Enqueued`].
macro_rules! enqueue {
    ($exec:expr, $row:expr, $max:expr) => {{
        use $crate::storage::Enqueued;
        let row: &$crate::storage::MessageRow = $row;
        let existing = match &row.idempotency_key {
            Some(key) => {
                sqlx::query_as::<_, $crate::storage::MessageRow>(concat!(
                    "SELECT ",
                    $crate::storage::messages::message_columns!(),
                    " FROM messages WHERE tenant_id = $1 AND idempotency_key = $2"
                ))
                .bind(&row.tenant_id)
                .bind(key)
                .fetch_optional($exec)
                .await?
            }
            None => None,
        };
        match existing {
            Some(e) if e.request_hash == row.request_hash && e.session_id == row.session_id => {
                Enqueued::Existing(Box::new(e))
            }
            Some(_) => Enqueued::KeyReused,
            None => {
                // Kept by triggers on `messages` (migration 0021): one row, not a count.
                let queued: i64 = sqlx::query_scalar(
                    "SELECT COALESCE((SELECT queued FROM queued_sends WHERE tenant_id = $1), 0)",
                )
                .bind(&row.tenant_id)
                .fetch_one($exec)
                .await?;
                if queued >= $max {
                    Enqueued::QueueFull { queued }
                } else {
                    $crate::storage::messages::insert_row!($exec, row);
                    Enqueued::New(Box::new(row.clone()))
                }
            }
        }
    }};
}
pub(crate) use apply_write;
pub(crate) use enqueue;

/// A message change committed with an event.
#[derive(Debug, Clone)]
pub enum MessageWrite {
    /// A new message row (inbound messages).
    Insert(Box<MessageRow>),
    /// A send to queue, unless its Idempotency-Key was used or the tenant already has
    /// `max_queued` sends waiting; the event is stored only if the send is queued.
    Enqueue {
        row: Box<MessageRow>,
        max_queued: i64,
    },
    /// A status change of an existing row.
    Status {
        id: String,
        status: &'static str,
        external_id: Option<String>,
        error: Option<String>,
    },
    /// A status change only from `from` (acks: `sent` → `delivered` → `read`); when
    /// the message is elsewhere already, nothing changes and the event is not stored,
    /// so a repeated or overtaken ack reports nothing twice.
    Advance {
        id: String,
        from: &'static str,
        to: &'static str,
    },
}

/// The outcome of enqueueing a send.
#[derive(Debug, Clone)]
pub enum Enqueued {
    New(Box<MessageRow>),
    /// The Idempotency-Key was used before with the same request: the first message.
    Existing(Box<MessageRow>),
    /// The Idempotency-Key was used before with a different request.
    KeyReused,
    /// The tenant already has `limit` sends queued.
    QueueFull {
        queued: i64,
    },
}

impl Store {
    /// Claims the tenant's oldest due queued message (marks it `sending`). With
    /// `replica`, only a message of a session that replica holds the lease of (or
    /// that no live lease holds: it is failed or kept by the sender's rules), so each
    /// send goes out from the replica running its session.
    pub async fn claim_next_send(
        &self,
        tenant_id: &str,
        replica: Option<&str>,
    ) -> Result<Option<MessageRow>> {
        let now = clock::now_ms();
        let row = on_write_pool!(self, |pool| {
            sqlx::query_as::<_, MessageRow>(concat!(
                "UPDATE messages SET status = 'sending', attempts = attempts + 1, updated_at = $2 WHERE id = (\
                   SELECT id FROM messages WHERE tenant_id = $1 AND direction = 'outbound' AND status = 'queued' \
                   AND (next_attempt_at IS NULL OR next_attempt_at <= $2) \
                   AND ($3 IS NULL OR session_id IN (SELECT id FROM sessions WHERE tenant_id = $1 \
                        AND (owner = $3 OR owner IS NULL OR lease_expires_at < $2))) \
                   ORDER BY id LIMIT 1) \
                 RETURNING ",
                message_columns!()
            ))
            .bind(tenant_id)
            .bind(now)
            .bind(replica)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Puts a claimed message back in the queue, due at `at`.
    pub async fn requeue_message(&self, id: &str, at: i64) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("UPDATE messages SET status = 'queued', next_attempt_at = $1, updated_at = $2 WHERE id = $3")
                .bind(at)
                .bind(clock::now_ms())
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Puts a claimed message back in the queue, due at `at`, without counting the
    /// claim as an attempt: the channel said "not before then" (a LinkedIn account's
    /// caps), nothing failed.
    pub async fn defer_message(&self, id: &str, at: i64) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE messages SET status = 'queued', next_attempt_at = $1, updated_at = $2, \
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE id = $3",
            )
            .bind(at)
            .bind(clock::now_ms())
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// How many sends of a session wait in the queue (or are being sent).
    pub async fn queued_sends_of_session(&self, session_id: &str) -> Result<i64> {
        let n = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM messages WHERE session_id = $1 AND direction = 'outbound' \
                 AND status IN ('queued', 'sending')",
            )
            .bind(session_id)
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }

    /// After a crash: sends that were in progress are queued again. With `replica`,
    /// only those of sessions it holds or that no lease holds (another replica's
    /// sends in flight are its own; a session taken over gets its sends back with
    /// [`Store::requeue_sending_of_session`]).
    pub async fn recover_sending(&self, replica: Option<&str>) -> Result<u64> {
        let now = clock::now_ms();
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE messages SET status = 'queued' WHERE status = 'sending' \
                 AND ($1 IS NULL OR session_id IN (SELECT id FROM sessions \
                      WHERE owner = $1 OR owner IS NULL OR lease_expires_at < $2))",
            )
            .bind(replica)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// A session taken over from a replica that died: the sends it had in flight are
    /// queued again (resent with the same message id).
    pub async fn requeue_sending_of_session(&self, session_id: &str) -> Result<u64> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE messages SET status = 'queued' WHERE status = 'sending' AND session_id = $1",
            )
            .bind(session_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// Tenants with queued sends (start-up).
    pub async fn tenants_with_queued_sends(&self) -> Result<Vec<String>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT tenant_id FROM messages WHERE direction = 'outbound' AND status = 'queued'",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn get_message(&self, tenant_id: &str, id: &str) -> Result<Option<MessageRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, MessageRow>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// A message by its network id within a session (acks).
    pub async fn message_by_external_id(
        &self,
        session_id: &str,
        external_id: &str,
    ) -> Result<Option<MessageRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, MessageRow>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE session_id = $1 AND (external_id = $2 OR external_id = $3)"
            ))
            .bind(session_id)
            .bind(external_id)
            // An erased message keeps its network id hashed: still known as received.
            .bind(super::contacts::erased_external_id(external_id))
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// When the newest inbound message of a session was stored (ms), if any.
    pub async fn latest_inbound_at(&self, session_id: &str) -> Result<Option<i64>> {
        let at = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT MAX(created_at) FROM messages WHERE session_id = $1 AND direction = 'inbound'",
            )
            .bind(session_id)
            .fetch_one(pool)
            .await?
        });
        Ok(at)
    }

    pub async fn list_session_messages(
        &self,
        tenant_id: &str,
        session_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MessageRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, MessageRow>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE tenant_id = $1 AND session_id = $2 AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
            ))
            .bind(tenant_id)
            .bind(session_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}

/// A new message row, what every row starts as (the body sealed to its id).
struct NewRow<'a> {
    session: &'a super::SessionRow,
    direction: &'static str,
    status: &'static str,
    peer: &'a str,
    text: &'a str,
    external_id: Option<String>,
}

impl MessageRow {
    fn new(
        keyring: &Keyring,
        n: NewRow<'_>,
    ) -> std::result::Result<Self, switchboard_crypto::Error> {
        let id = crate::ids::new_id(crate::ids::MESSAGE);
        let sealed = keyring.seal(n.text.as_bytes(), body_binding(&n.session.tenant_id, &id))?;
        let now = clock::now_ms();
        Ok(Self {
            id,
            tenant_id: n.session.tenant_id.clone(),
            session_id: n.session.id.clone(),
            direction: n.direction.into(),
            peer: n.peer.to_owned(),
            status: n.status.into(),
            idempotency_key: None,
            request_hash: None,
            external_id: n.external_id,
            attempts: 0,
            body_key_id: Some(sealed.key_id),
            body: Some(sealed.data),
            error: None,
            created_at: now,
            updated_at: now,
            reply_to: None,
            extras_key_id: None,
            extras: None,
        })
    }

    /// A message a session received (`received`, body sealed).
    pub fn inbound(
        keyring: &Keyring,
        session: &super::SessionRow,
        from: &str,
        external_id: &str,
        text: &str,
    ) -> std::result::Result<Self, switchboard_crypto::Error> {
        Self::new(
            keyring,
            NewRow {
                session,
                direction: "inbound",
                status: "received",
                peer: from,
                text,
                external_id: Some(external_id.to_owned()),
            },
        )
    }

    /// A send waiting in the queue (`queued`; body and extras sealed).
    pub fn outbound(
        keyring: &Keyring,
        session: &super::SessionRow,
        to: &str,
        text: &str,
        extras: &MessageExtras,
    ) -> std::result::Result<Self, switchboard_crypto::Error> {
        let mut row = Self::new(
            keyring,
            NewRow {
                session,
                direction: "outbound",
                status: "queued",
                peer: to,
                text,
                external_id: None,
            },
        )?;
        row.seal_extras(keyring, extras)?;
        Ok(row)
    }

    /// Seals `extras` (a subject, attachments) into the row; nothing when empty.
    pub fn seal_extras(
        &mut self,
        keyring: &Keyring,
        extras: &MessageExtras,
    ) -> std::result::Result<(), switchboard_crypto::Error> {
        if !extras.is_empty() {
            // Strings and bytes only: serializing cannot fail.
            let json = serde_json::to_vec(extras).unwrap_or_default();
            let sealed = keyring.seal(&json, extras_binding(&self.tenant_id, &self.id))?;
            self.extras_key_id = Some(sealed.key_id);
            self.extras = Some(sealed.data);
        }
        Ok(())
    }

    /// The text, opened (`None` when it cannot be).
    pub fn open_text(&self, keyring: &Keyring) -> Option<String> {
        let s = self.sealed()?;
        let plain = keyring
            .open(&s.key_id, &s.data, body_binding(&self.tenant_id, &self.id))
            .ok()?;
        Some(String::from_utf8_lossy(&plain).into_owned())
    }

    /// The extras, opened (empty for a plain text; `None` when they cannot be opened).
    pub fn open_extras(&self, keyring: &Keyring) -> Option<MessageExtras> {
        let (Some(key_id), Some(data)) = (&self.extras_key_id, &self.extras) else {
            return Some(MessageExtras::default());
        };
        let plain = keyring
            .open(key_id, data, extras_binding(&self.tenant_id, &self.id))
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    pub fn sealed(&self) -> Option<Sealed> {
        match (&self.body_key_id, &self.body) {
            (Some(k), Some(d)) => Some(Sealed {
                key_id: k.clone(),
                data: d.clone(),
            }),
            _ => None,
        }
    }
}

fn body_binding<'a>(tenant_id: &'a str, id: &'a str) -> Binding<'a> {
    Binding {
        tenant_id,
        record_id: id,
        purpose: BODY_PURPOSE,
    }
}

fn extras_binding<'a>(tenant_id: &'a str, id: &'a str) -> Binding<'a> {
    Binding {
        tenant_id,
        record_id: id,
        purpose: EXTRAS_PURPOSE,
    }
}
