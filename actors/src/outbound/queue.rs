//! [`SendQueue`]: the one door every send goes through.
//!
//! [`SendQueue::queue`] refuses what cannot be sent before anything is stored: a
//! field the session's channel can never carry (`NotSupported`), a session that is
//! not running (`SessionNotRunning`), a `reply_to` naming no message of that session
//! (`ReplyToNotFound`). Then it seals the text and extras ([`MessageRow::outbound`])
//! and stores the send with its `message.queued` event in one transaction, bounded
//! by the tenant's queue limit (`QueueFull`) and deduplicated by idempotency key
//! (`KeyReused` for the same key on another request). Last, the tenant's sender is
//! woken.

use super::limits::{DefaultLimits, EffectiveLimits};
use super::sender::Outbound;
use crate::channels::{Attachment, ChannelKind, SendKind};
use crate::events::{Events, Publish};
use crate::ids;
use crate::sessions::MESSAGE_QUEUED;
use crate::storage::{
    Enqueued, MessageExtras, MessageRow, MessageWrite, SessionRow, Store, Tenant,
};
use std::sync::Arc;
use switchboard_crypto::{ApiKeyHash, Keyring};

/// One send, as a caller asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewSend {
    pub to: String,
    pub text: String,
    pub subject: Option<String>,
    /// An HTML alternative to the text (e-mail).
    pub html: Option<String>,
    /// Our id (`msg_…`) of the message this one answers, in the same session.
    pub reply_to: Option<String>,
    pub attachments: Vec<Attachment>,
    /// A message, or (LinkedIn) an invitation or an accept.
    pub kind: SendKind,
    pub idempotency: Option<Idempotency>,
    /// Mark the recipient's chat read just before sending (the RAG actor's answers,
    /// when the session's reply settings say so).
    pub mark_read: bool,
}

/// An idempotency key, and what a second send with it must match to be the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub scope: KeyScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// The same request (the API's `Idempotency-Key`): the same key with another
    /// text, recipient or session is refused.
    Request,
    /// The same recipient in the same session, whatever the text: a reply retried
    /// after a crash may be worded differently, and is still the same reply.
    Recipient,
}

/// A queued send.
#[derive(Debug, Clone)]
pub struct Queued {
    pub message: MessageRow,
    /// It was queued before with the same idempotency key and request.
    pub replayed: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("the session is {status}; start it before sending")]
    SessionNotRunning { status: String },
    #[error("{0}")]
    NotSupported(String),
    #[error("`reply_to` names no message of this session: {0}")]
    ReplyToNotFound(String),
    #[error("the idempotency key was used for a different request")]
    KeyReused,
    #[error("{queued} sends are already queued")]
    QueueFull { queued: i64, retry_after_secs: u64 },
    #[error("{0}")]
    Internal(String),
}

#[derive(Debug)]
struct Inner {
    store: Store,
    events: Events,
    keyring: Arc<Keyring>,
    senders: Outbound,
    defaults: DefaultLimits,
    /// Replicas sharing the database: a send on a session held elsewhere wakes that
    /// replica's sender.
    cluster: Option<crate::cluster::Cluster>,
}

/// Handle to the send path; cheap to clone.
#[derive(Debug, Clone)]
pub struct SendQueue {
    inner: Arc<Inner>,
}

impl SendQueue {
    pub fn new(
        store: Store,
        events: Events,
        keyring: Arc<Keyring>,
        senders: Outbound,
        defaults: DefaultLimits,
        cluster: Option<crate::cluster::Cluster>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                events,
                keyring,
                senders,
                defaults,
                cluster,
            }),
        }
    }

    /// The limits in force for `tenant`.
    pub fn limits(&self, tenant: &Tenant) -> EffectiveLimits {
        EffectiveLimits::of(&tenant.limits, &self.inner.defaults)
    }

    /// A tenant's limits changed: a running sender takes the new quota at once.
    pub fn limits_changed(&self, tenant_id: &str, limits: &EffectiveLimits) {
        self.inner.senders.wake(tenant_id, limits.send_quota());
    }

    /// Wakes the tenant's sender under its limits (a session of it was taken over
    /// here, with sends waiting).
    pub async fn resume(&self, tenant_id: &str) -> Result<(), crate::StoreError> {
        if let Some(t) = self.inner.store.get_tenant(tenant_id).await? {
            self.inner
                .senders
                .wake(tenant_id, self.limits(&t).send_quota());
        }
        Ok(())
    }

    /// After start-up: requeues sends a crash interrupted and wakes every tenant
    /// with queued sends under its own limits. Returns how many tenants woke.
    pub async fn recover(&self) -> Result<usize, crate::StoreError> {
        let tenants = self.inner.senders.recover().await?;
        let mut woken = 0;
        for tenant_id in tenants {
            if let Some(t) = self.inner.store.get_tenant(&tenant_id).await? {
                self.inner
                    .senders
                    .wake(&tenant_id, self.limits(&t).send_quota());
                woken += 1;
            }
        }
        Ok(woken)
    }

    /// Queues `send` on `session` (see the module doc for what is refused).
    pub async fn queue(
        &self,
        tenant: &Tenant,
        session: &SessionRow,
        send: NewSend,
    ) -> Result<Queued, QueueError> {
        let kind: ChannelKind = session
            .channel
            .parse()
            .map_err(|e: crate::channels::UnknownChannel| QueueError::Internal(e.to_string()))?;
        let carried = kind.capabilities().check_fields(
            kind,
            send.subject.is_some(),
            send.reply_to.is_some(),
            !send.attachments.is_empty(),
            send.html.is_some(),
        );
        if let Err(crate::channels::ChannelError::Unsupported(why)) = carried {
            return Err(QueueError::NotSupported(why));
        }
        if !send.kind.is_message() && !kind.capabilities().invitations {
            return Err(QueueError::NotSupported(format!(
                "{kind} sessions have no invitations"
            )));
        }
        if session.desired_state != "running" {
            return Err(QueueError::SessionNotRunning {
                status: session.status.clone(),
            });
        }
        if let Some(id) = &send.reply_to {
            let answered = match ids::is_valid(ids::MESSAGE, id) {
                true => self
                    .inner
                    .store
                    .get_message(&tenant.id, id)
                    .await
                    .map_err(|e| QueueError::Internal(e.to_string()))?,
                false => None,
            };
            if answered.is_none_or(|m| m.session_id != session.id) {
                return Err(QueueError::ReplyToNotFound(id.clone()));
            }
        }
        let extras = MessageExtras {
            subject: send.subject.clone(),
            html: send.html.clone(),
            attachments: send.attachments.clone(),
            kind: send.kind,
            mark_read: send.mark_read,
        };
        let mut row =
            MessageRow::outbound(&self.inner.keyring, session, &send.to, &send.text, &extras)
                .map_err(|e| QueueError::Internal(e.to_string()))?;
        row.reply_to = send.reply_to.clone();
        row.request_hash = Some(request_hash(session, &send, &extras));
        row.idempotency_key = send.idempotency.map(|i| i.key);
        let limits = self.limits(tenant);
        // The send and its `message.queued` event are stored together, or neither is.
        let mut data =
            serde_json::json!({ "message_id": row.id, "status": "queued", "to": row.peer });
        if !send.kind.is_message() {
            data["kind"] = send.kind.as_str().into();
        }
        let mut event = Publish::new(&tenant.id, MESSAGE_QUEUED, data);
        event.session_id = Some(session.id.clone());
        event.channel = Some(session.channel.clone());
        event.message = Some(MessageWrite::Enqueue {
            row: Box::new(row),
            max_queued: i64::from(limits.max_queued_sends),
        });
        let published = self
            .inner
            .events
            .publish(event)
            .await
            .map_err(|e| QueueError::Internal(e.to_string()))?;
        let outcome = published
            .enqueued
            .ok_or_else(|| QueueError::Internal("send stored without an enqueue outcome".into()))?;
        let queued = match outcome {
            Enqueued::New(r) => Queued {
                message: *r,
                replayed: false,
            },
            Enqueued::Existing(r) => Queued {
                message: *r,
                replayed: true,
            },
            Enqueued::KeyReused => return Err(QueueError::KeyReused),
            Enqueued::QueueFull { queued } => {
                let secs = (queued as u64).div_ceil(u64::from(limits.sends_per_second.max(1)));
                return Err(QueueError::QueueFull {
                    queued,
                    retry_after_secs: secs.max(1),
                });
            }
        };
        self.inner.senders.wake(&tenant.id, limits.send_quota());
        if !queued.replayed {
            self.wake_owner(&tenant.id, &session.id).await;
        }
        Ok(queued)
    }

    /// Wakes the sender of the replica holding `session_id`, when that is another
    /// replica (its own tick would find the send within a third of the lease TTL).
    async fn wake_owner(&self, tenant_id: &str, session_id: &str) {
        let Some(cluster) = &self.inner.cluster else {
            return;
        };
        if cluster.holds(session_id).is_some()
            || self.inner.store.backend() != crate::storage::Backend::Postgres
        {
            return;
        }
        match self
            .inner
            .store
            .session_owner(session_id, crate::clock::now_ms())
            .await
        {
            Ok(Some((owner, _))) if owner != cluster.id() => {
                cluster
                    .bus()
                    .publish(crate::cluster::bus::Signal::Sends(
                        owner,
                        tenant_id.to_owned(),
                    ))
                    .await;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "send owner not read; its tick finds the send"),
        }
    }
}

/// What identifies the request behind an idempotency key (hex SHA-256). A plain
/// text send hashes as it always has, so keys stored before extras existed match.
fn request_hash(session: &SessionRow, send: &NewSend, extras: &MessageExtras) -> String {
    let mut text = match &send.idempotency {
        Some(Idempotency {
            key,
            scope: KeyScope::Recipient,
        }) => format!("{}\0{}\0{key}", session.id, send.to),
        _ => format!("{}\0{}\0{}", session.id, send.to, send.text),
    };
    let scoped_to_request = !matches!(
        send.idempotency,
        Some(Idempotency {
            scope: KeyScope::Recipient,
            ..
        })
    );
    if scoped_to_request && (!extras.is_empty() || send.reply_to.is_some()) {
        let extras = serde_json::to_string(extras).unwrap_or_default();
        text.push('\0');
        text.push_str(&extras);
        text.push('\0');
        text.push_str(send.reply_to.as_deref().unwrap_or_default());
    }
    hex::encode(ApiKeyHash::of(&text).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::{Deps, SessionSettings, Sessions};
    use crate::storage::{AuditEntry, DatabaseTarget, LimitOverrides};
    use std::time::Duration;
    use switchboard_crypto::MasterKey;
    use tokio_util::sync::CancellationToken;

    /// A real send path on SQLite: store, event writer, session tree, senders.
    struct Harness {
        queue: SendQueue,
        events: Events,
        store: Store,
        sessions: Sessions,
        tenant: Tenant,
        keyring: Arc<Keyring>,
        cancel: CancellationToken,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::connect(&DatabaseTarget::Sqlite(dir.path().join("q.db")))
                .await
                .unwrap();
            let keyring = Arc::new(Keyring::new(MasterKey::generate().unwrap(), []));
            let cancel = CancellationToken::new();
            let wake = Arc::new(tokio::sync::Notify::new());
            let (events, _writer) =
                Events::spawn(store.clone(), keyring.clone(), wake, cancel.clone());
            let (sessions, _tree) = Sessions::spawn(Deps {
                store: store.clone(),
                events: events.clone(),
                keyring: keyring.clone(),
                settings: SessionSettings::default(),
                browser: None,
                channels: Arc::default(),
                media: None,
                cluster: None,
            })
            .await
            .unwrap();
            let senders = Outbound::new(
                store.clone(),
                events.clone(),
                sessions.clone(),
                keyring.clone(),
                Duration::ZERO,
                cancel.clone(),
                None,
            );
            let defaults = DefaultLimits {
                api_requests_per_second: 50,
                api_burst: 100,
                sends_per_second: 100,
                send_burst: 100,
                max_queued_sends: 100,
            };
            let queue = SendQueue::new(
                store.clone(),
                events.clone(),
                keyring.clone(),
                senders,
                defaults,
                None,
            );
            let key = ApiKeyHash::of("sbk_test");
            let (tenant, _) = store
                .create_tenant(
                    "Acme",
                    &LimitOverrides::default(),
                    None,
                    &key,
                    "sbk_te",
                    &AuditEntry::new("test", "tenant.create"),
                )
                .await
                .unwrap();
            Self {
                queue,
                events,
                store,
                sessions,
                tenant,
                keyring,
                cancel,
                _dir: dir,
            }
        }

        /// A session row on `channel`, started when `start`.
        async fn session(&self, channel: &str, start: bool) -> SessionRow {
            let row = SessionRow {
                id: ids::new_id("ses"),
                tenant_id: self.tenant.id.clone(),
                channel: channel.into(),
                name: None,
                status: "STOPPED".into(),
                status_reason: None,
                desired_state: "stopped".into(),
                config: "{}".into(),
                network: None,
                created_at: 0,
                updated_at: 0,
            };
            let audit = AuditEntry::new("test", "session.create");
            self.store.create_session(&row, &audit).await.unwrap();
            if start {
                self.sessions.start(row.clone()).await.unwrap();
            }
            self.store
                .get_session(&self.tenant.id, &row.id)
                .await
                .unwrap()
                .unwrap()
        }

        async fn wait_status(&self, id: &str, status: &str) -> MessageRow {
            for _ in 0..400 {
                let m = self
                    .store
                    .get_message(&self.tenant.id, id)
                    .await
                    .unwrap()
                    .unwrap();
                if m.status == status {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("message {id} never became {status}");
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.sessions.shutdown();
            self.cancel.cancel();
        }
    }

    fn keyed(text: &str, key: &str) -> NewSend {
        NewSend {
            to: "+15550001".into(),
            text: text.into(),
            idempotency: Some(Idempotency {
                key: key.into(),
                scope: KeyScope::Request,
            }),
            ..NewSend::default()
        }
    }

    #[tokio::test]
    async fn a_send_is_sealed_queued_and_sent_with_its_subject() {
        let h = Harness::new().await;
        let session = h.session("sim", true).await;
        let send = NewSend {
            subject: Some("Order 42".into()),
            ..keyed("It left today.", "k1")
        };
        let q = h.queue.queue(&h.tenant, &session, send).await.unwrap();
        assert!(!q.replayed);
        let row = &q.message;
        assert_eq!(
            (row.status.as_str(), row.direction.as_str()),
            ("queued", "outbound")
        );
        // Sealed at rest: neither the text nor the subject is stored in the clear.
        let stored = h
            .store
            .get_message(&h.tenant.id, &row.id)
            .await
            .unwrap()
            .unwrap();
        for (what, sealed) in [("text", &stored.body), ("subject", &stored.extras)] {
            let bytes = sealed.as_ref().unwrap_or_else(|| panic!("{what} stored"));
            assert!(!String::from_utf8_lossy(bytes).contains("Order 42"));
            assert!(!String::from_utf8_lossy(bytes).contains("It left"));
        }
        assert_eq!(
            stored.open_text(&h.keyring).as_deref(),
            Some("It left today.")
        );
        let extras = stored.open_extras(&h.keyring).unwrap();
        assert_eq!(extras.subject.as_deref(), Some("Order 42"));
        // The sim acknowledges at once: sent, then delivered.
        let delivered = h.wait_status(&row.id, "delivered").await;
        assert_eq!(delivered.external_id, Some(format!("sim-out-{}", row.id)));
    }

    #[tokio::test]
    async fn idempotency_keys_return_the_first_send_or_refuse_another_request() {
        let h = Harness::new().await;
        let session = h.session("sim", true).await;
        let first = h
            .queue
            .queue(&h.tenant, &session, keyed("hi", "k1"))
            .await
            .unwrap();
        let again = h
            .queue
            .queue(&h.tenant, &session, keyed("hi", "k1"))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.message.id, first.message.id);
        let other = h
            .queue
            .queue(&h.tenant, &session, keyed("hello", "k1"))
            .await;
        assert_eq!(other.unwrap_err(), QueueError::KeyReused);
    }

    #[tokio::test]
    async fn what_cannot_be_sent_is_refused_before_anything_is_stored() {
        let h = Harness::new().await;
        let stopped = h.session("sim", false).await;
        let e = h
            .queue
            .queue(&h.tenant, &stopped, keyed("hi", "a"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            QueueError::SessionNotRunning {
                status: "STOPPED".into()
            }
        );
        let whatsapp = h.session("whatsapp", false).await;
        let with_subject = NewSend {
            subject: Some("Hello".into()),
            ..keyed("hi", "b")
        };
        let e = h
            .queue
            .queue(&h.tenant, &whatsapp, with_subject)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            QueueError::NotSupported("whatsapp sessions cannot carry `subject`".into())
        );
        let running = h.session("sim", true).await;
        let answering = NewSend {
            reply_to: Some("msg_01JD0000000000000000000000".into()),
            ..keyed("hi", "c")
        };
        let e = h
            .queue
            .queue(&h.tenant, &running, answering)
            .await
            .unwrap_err();
        assert!(matches!(e, QueueError::ReplyToNotFound(_)), "{e:?}");
        // A message of another session is not one to answer either.
        let other = h.session("sim", true).await;
        let elsewhere = h
            .queue
            .queue(&h.tenant, &other, keyed("x", "d"))
            .await
            .unwrap();
        let answering = NewSend {
            reply_to: Some(elsewhere.message.id.clone()),
            ..keyed("hi", "e")
        };
        let e = h
            .queue
            .queue(&h.tenant, &running, answering)
            .await
            .unwrap_err();
        assert!(matches!(e, QueueError::ReplyToNotFound(_)), "{e:?}");
        for s in [&stopped, &whatsapp, &running] {
            let listed = h
                .store
                .list_session_messages(&h.tenant.id, &s.id, None, 10)
                .await
                .unwrap();
            assert!(listed.is_empty(), "nothing stored for {}", s.id);
        }
    }

    #[tokio::test]
    async fn a_reply_reaches_the_channel_as_the_answered_messages_network_id() {
        let h = Harness::new().await;
        let session = h.session("sim", true).await;
        let first = h
            .queue
            .queue(&h.tenant, &session, keyed("one", "k1"))
            .await
            .unwrap();
        let sent = h.wait_status(&first.message.id, "delivered").await;
        let reply = NewSend {
            reply_to: Some(sent.id.clone()),
            ..keyed("two", "k2")
        };
        let q = h.queue.queue(&h.tenant, &session, reply).await.unwrap();
        assert_eq!(q.message.reply_to.as_deref(), Some(sent.id.as_str()));
        h.wait_status(&q.message.id, "delivered").await;
    }

    #[tokio::test]
    async fn an_ack_the_message_is_already_past_stores_no_event() {
        let h = Harness::new().await;
        let session = h.session("sim", true).await;
        let q = h
            .queue
            .queue(&h.tenant, &session, keyed("hi", "k1"))
            .await
            .unwrap();
        h.wait_status(&q.message.id, "delivered").await;
        let delivered = |store: Store, tenant: String| async move {
            let query = crate::storage::EventQuery {
                event_type: Some(crate::sessions::MESSAGE_DELIVERED.into()),
                limit: 100,
                ..Default::default()
            };
            store.list_events(&tenant, &query).await.unwrap().len()
        };
        assert_eq!(delivered(h.store.clone(), h.tenant.id.clone()).await, 1);
        // The same ack again (a network repeating itself, or a read ack that raced it).
        let mut again = Publish::new(
            &h.tenant.id,
            crate::sessions::MESSAGE_DELIVERED,
            serde_json::json!({}),
        );
        again.message = Some(MessageWrite::Advance {
            id: q.message.id.clone(),
            from: "sent",
            to: "delivered",
        });
        let published = h.events.publish(again).await.unwrap();
        assert_eq!(published.deliveries, 0);
        assert_eq!(delivered(h.store.clone(), h.tenant.id.clone()).await, 1);
        let row = h
            .store
            .get_message(&h.tenant.id, &q.message.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.status, "delivered");
    }

    fn session() -> SessionRow {
        SessionRow {
            id: "ses_1".into(),
            tenant_id: "ten_1".into(),
            channel: "sim".into(),
            name: None,
            status: "WORKING".into(),
            status_reason: None,
            desired_state: "running".into(),
            config: "{}".into(),
            network: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn send(text: &str, scope: KeyScope) -> NewSend {
        NewSend {
            to: "+33600000000".into(),
            text: text.into(),
            idempotency: Some(Idempotency {
                key: "k1".into(),
                scope,
            }),
            ..NewSend::default()
        }
    }

    #[test]
    fn request_hashes_tell_requests_apart_by_their_scope() {
        let s = session();
        let none = MessageExtras::default();
        let a = request_hash(&s, &send("hello", KeyScope::Request), &none);
        let b = request_hash(&s, &send("hello again", KeyScope::Request), &none);
        assert_ne!(a, b, "another text is another request");
        // Unchanged for plain text sends: the hash of session, recipient and text.
        let plain = "ses_1\0+33600000000\0hello";
        assert_eq!(a, hex::encode(ApiKeyHash::of(plain).as_bytes()));
        let r1 = request_hash(&s, &send("hello", KeyScope::Recipient), &none);
        let r2 = request_hash(&s, &send("worded otherwise", KeyScope::Recipient), &none);
        assert_eq!(r1, r2, "a reply retried with other words is the same reply");
        let subject = MessageExtras {
            subject: Some("Hi".into()),
            ..MessageExtras::default()
        };
        assert_ne!(
            a,
            request_hash(&s, &send("hello", KeyScope::Request), &subject)
        );
        let mut answering = send("hello", KeyScope::Request);
        answering.reply_to = Some("msg_1".into());
        assert_ne!(a, request_hash(&s, &answering, &none));
    }
}
