//! Events and their outbox rows. [`Store::insert_events`] writes a batch of events
//! and one outbox row per (event, subscribed endpoint) in ONE transaction: once it
//! returns, every delivery is durable. Bodies arrive already sealed.

use super::webhooks::type_matches;
use super::{BeginWrite, Result, Store, StoreError, on_pool, on_write_pool};
use crate::clock;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use switchboard_crypto::Sealed;

/// Which endpoints an event goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every enabled endpoint of the tenant whose filter matches.
    Subscribers,
    /// Exactly this endpoint of the tenant (test events), whatever its filter
    /// and status. If the tenant has no such endpoint the event is not stored
    /// ([`EventResult::unknown_target`]).
    Only(String),
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub tenant_id: String,
    pub session_id: Option<String>,
    pub channel: Option<String>,
    pub event_type: String,
    /// The sealed envelope JSON (the exact bytes delivered and signed).
    pub body: Sealed,
    pub created_at: i64,
    pub targets: Targets,
    /// A message row change committed in the same transaction.
    pub message: Option<super::MessageWrite>,
    /// Queue a RAG job with it, if its session's replies are on (the publisher
    /// decides which events the RAG actor answers).
    pub feeds_rag: bool,
    /// Suppression entries added in the same transaction (an existing entry is
    /// kept); the event is kept only if one of them is new.
    pub suppress: Vec<super::SuppressionRow>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    pub tenant_id: String,
    pub session_id: Option<String>,
    pub channel: Option<String>,
    #[sqlx(rename = "type")]
    pub event_type: String,
    pub body_key_id: String,
    pub body: Vec<u8>,
    pub created_at: i64,
}

impl EventRow {
    pub fn sealed(&self) -> Sealed {
        Sealed {
            key_id: self.body_key_id.clone(),
            data: self.body.clone(),
        }
    }
}

/// The state of one event's delivery to one endpoint.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub endpoint_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub endpoint_id: String,
    pub attempted_at: i64,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
}

/// What storing one event did.
#[derive(Debug, Clone)]
pub struct EventResult {
    /// Deliveries queued for it (0 when it was not stored).
    pub deliveries: usize,
    /// For events carrying a send: whether it was queued (if not, the event was not stored).
    pub enqueued: Option<super::Enqueued>,
    /// Its [`Targets::Only`] endpoint is not one of its tenant's: it was not stored.
    pub unknown_target: bool,
    /// A RAG job was queued with it.
    pub rag_job: bool,
}

/// What a batch of events stored.
#[derive(Debug, Default)]
pub struct Inserted {
    /// Per event, in the order given.
    pub results: Vec<EventResult>,
    /// The outbox rows queued, as a claim would return them.
    pub queued: Vec<super::Claimed>,
}

/// Filters for listing events.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub event_type: Option<String>,
    /// Only events created at or after this time (unix ms).
    pub since: Option<i64>,
    /// Cursor: only ids after this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// An endpoint, whether it is enabled, and its event-type filter.
type Subscriber = (String, bool, Option<Vec<String>>);

/// Outbox rows are inserted this many at a time (bind-parameter limits).
const OUTBOX_CHUNK: usize = 500;
const EVENT_CHUNK: usize = 200;
/// Message rows (18 columns) per statement.
const MESSAGE_CHUNK: usize = 100;
/// External ids looked up per statement (each also as its erased hash, and with
/// its session).
const EXTERNAL_CHUNK: usize = 200;
/// Tenants whose endpoints (or reply settings) are read per statement.
const TENANT_CHUNK: usize = 500;

/// Inserts (and empties) `$rows`, a `Vec<&MessageRow>`, through the transaction
/// `$tx` in as few statements as the parameter limits allow.
macro_rules! insert_messages {
    ($tx:expr, $rows:expr) => {{
        for chunk in $rows.chunks(MESSAGE_CHUNK) {
            let mut q = sqlx::QueryBuilder::new(concat!(
                "INSERT INTO messages (",
                super::messages::message_columns!(),
                ") "
            ));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(&r.id)
                    .push_bind(&r.tenant_id)
                    .push_bind(&r.session_id)
                    .push_bind(&r.direction)
                    .push_bind(&r.peer)
                    .push_bind(&r.status)
                    .push_bind(&r.idempotency_key)
                    .push_bind(&r.request_hash)
                    .push_bind(&r.external_id)
                    .push_bind(r.attempts)
                    .push_bind(&r.body_key_id)
                    .push_bind(&r.body)
                    .push_bind(&r.error)
                    .push_bind(r.created_at)
                    .push_bind(r.updated_at)
                    .push_bind(&r.reply_to)
                    .push_bind(&r.extras_key_id)
                    .push_bind(&r.extras);
            });
            q.build()
                .execute(&mut *$tx)
                .await
                .map_err(|e| super::conflict_or(e, "message"))?;
        }
        $rows.clear();
    }};
}

/// The `(session, external id)` pairs among `$events`' new message rows that are
/// stored already (under the id or, erased, its hash): one query for the batch's
/// pairs together, not one per session.
macro_rules! known_external_ids {
    ($tx:expr, $events:expr) => {{
        let mut wanted: Vec<(&str, &str)> = Vec::new();
        for e in $events {
            if let Some(super::MessageWrite::Insert(row)) = &e.message
                && let Some(x) = row.external_id.as_deref()
            {
                wanted.push((row.session_id.as_str(), x));
            }
        }
        let mut known: HashSet<(String, String)> = HashSet::new();
        for chunk in wanted.chunks(EXTERNAL_CHUNK) {
            // Erased messages keep their network id only as a hash.
            let hashes: Vec<String> = chunk
                .iter()
                .map(|(_, x)| super::contacts::erased_external_id(x))
                .collect();
            // Exact (session, id) pairs, so each is one index lookup on both
            // backends (`messages_by_external_id`).
            let mut q = sqlx::QueryBuilder::new(
                "SELECT session_id, external_id FROM messages WHERE (session_id, external_id) IN (VALUES ",
            );
            let mut sep = q.separated(", ");
            for ((session, x), hash) in chunk.iter().zip(&hashes) {
                sep.push("(")
                    .push_bind_unseparated(*session)
                    .push_unseparated(", ")
                    .push_bind_unseparated(*x)
                    .push_unseparated("), (")
                    .push_bind_unseparated(*session)
                    .push_unseparated(", ")
                    .push_bind_unseparated(hash.as_str())
                    .push_unseparated(")");
            }
            q.push(")");
            let found: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *$tx).await?;
            let erased: HashMap<&str, &str> = hashes
                .iter()
                .zip(chunk)
                .map(|(h, (_, x))| (h.as_str(), *x))
                .collect();
            for (session, f) in found {
                let x = erased.get(f.as_str()).map(|x| (*x).to_owned()).unwrap_or(f);
                known.insert((session, x));
            }
        }
        known
    }};
}

impl Store {
    /// Writes events and their outbox rows atomically. Returns, per event, what was
    /// stored, and the outbox rows queued. `before_commit` sees those rows before
    /// the commit makes them visible to anyone else.
    pub async fn insert_events(
        &self,
        events: &[NewEvent],
        before_commit: impl FnOnce(&[super::Claimed]) + Send,
    ) -> Result<Inserted> {
        if events.is_empty() {
            return Ok(Inserted::default());
        }
        let now = clock::now_ms();
        let mut tenants: Vec<&str> = events.iter().map(|e| e.tenant_id.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        // SQLite gives one statement's AUTOINCREMENT rows consecutive ids (each the
        // largest yet, plus one) and this transaction is its only writer: the ids
        // follow from the last one, without returning a row per id. Postgres' are
        // drawn from a sequence other sessions share, so they come back with RETURNING,
        // matched by the row's (event, endpoint), which is unique.
        let consecutive_ids = self.backend() == super::Backend::Sqlite;
        let inserted = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            // The batch's tenants' endpoints, read inside the transaction (one
            // statement per chunk of tenants): the enabled ones are subscribed, and
            // a test event's target must be among them all.
            let mut subs: HashMap<String, Vec<Subscriber>> = HashMap::new();
            for chunk in tenants.chunks(TENANT_CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT tenant_id, id, status, event_types FROM webhook_endpoints WHERE tenant_id IN (",
                );
                let mut sep = q.separated(", ");
                for t in chunk {
                    sep.push_bind(*t);
                }
                q.push(") ORDER BY tenant_id, id");
                let rows: Vec<(String, String, String, Option<String>)> =
                    q.build_query_as().fetch_all(&mut *tx).await?;
                for (tenant, id, status, types) in rows {
                    let types = types
                        .map(|s| serde_json::from_str::<Vec<String>>(&s))
                        .transpose()
                        .map_err(|e| {
                            StoreError::Corrupt(format!("endpoint {id} event_types: {e}"))
                        })?;
                    let enabled = status == super::EndpointStatus::Enabled.as_str();
                    subs.entry(tenant).or_default().push((id, enabled, types));
                }
            }
            // Sessions whose inbound messages the RAG actor answers.
            let mut answered: HashSet<String> = HashSet::new();
            let feeding: Vec<&str> = tenants
                .iter()
                .copied()
                .filter(|t| events.iter().any(|e| e.tenant_id == *t && e.feeds_rag))
                .collect();
            for chunk in feeding.chunks(TENANT_CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT session_id FROM reply_settings WHERE mode <> 'off' AND tenant_id IN (",
                );
                let mut sep = q.separated(", ");
                for t in chunk {
                    sep.push_bind(*t);
                }
                q.push(")");
                let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                answered.extend(ids);
            }
            // Messages this batch would store a second time (a channel catching up
            // after a reconnect): one lookup per session, not one per message.
            let known = known_external_ids!(tx, events);
            let mut seen: HashSet<(&str, &str)> = HashSet::new();
            // Message writes first: a send that is not queued, an ack the message is
            // already past, or a message already stored drops its event. New rows are
            // inserted many per statement, in order with the other writes.
            let mut enqueued = Vec::with_capacity(events.len());
            let mut keep = Vec::with_capacity(events.len());
            let mut rows: Vec<&super::MessageRow> = Vec::new();
            let unknown_target: Vec<bool> = events
                .iter()
                .map(|e| match &e.targets {
                    Targets::Only(target) => !subs
                        .get(&e.tenant_id)
                        .is_some_and(|s| s.iter().any(|(id, _, _)| id == target)),
                    Targets::Subscribers => false,
                })
                .collect();
            for (e, unknown) in events.iter().zip(&unknown_target) {
                if *unknown {
                    keep.push(false);
                    enqueued.push(None);
                    continue;
                }
                match &e.message {
                    Some(super::MessageWrite::Insert(row)) => {
                        let new = match row.external_id.as_deref() {
                            Some(x) => {
                                !known.contains(&(row.session_id.clone(), x.to_owned()))
                                    && seen.insert((&row.session_id, x))
                            }
                            None => true,
                        };
                        if new {
                            rows.push(row);
                        }
                        keep.push(new);
                        enqueued.push(None);
                    }
                    Some(w) => {
                        insert_messages!(tx, rows);
                        let applied = super::messages::apply_write!(&mut *tx, w);
                        keep.push(applied.keeps_event());
                        enqueued.push(applied.into_enqueued());
                    }
                    None => {
                        keep.push(true);
                        enqueued.push(None);
                    }
                }
                if !e.suppress.is_empty() {
                    insert_messages!(tx, rows);
                    let mut added = 0;
                    for r in &e.suppress {
                        added += sqlx::query(
                            "INSERT INTO suppressions (id, tenant_id, channel, address, reason, source, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, channel, address) DO NOTHING",
                        )
                        .bind(&r.id)
                        .bind(&r.tenant_id)
                        .bind(&r.channel)
                        .bind(&r.address)
                        .bind(&r.reason)
                        .bind(&r.source)
                        .bind(r.created_at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                    if added == 0
                        && let Some(k) = keep.last_mut()
                    {
                        *k = false;
                    }
                }
            }
            insert_messages!(tx, rows);
            let kept: Vec<&NewEvent> = events
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(e, _)| e)
                .collect();
            for chunk in kept.chunks(EVENT_CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO events (id, tenant_id, session_id, channel, type, body_key_id, body, created_at) ",
                );
                q.push_values(chunk, |mut b, e| {
                    b.push_bind(&e.id)
                        .push_bind(&e.tenant_id)
                        .push_bind(&e.session_id)
                        .push_bind(&e.channel)
                        .push_bind(&e.event_type)
                        .push_bind(&e.body.key_id)
                        .push_bind(&e.body.data)
                        .push_bind(e.created_at);
                });
                q.build().execute(&mut *tx).await?;
            }
            let mut rows: Vec<(&str, &str, String)> = Vec::new();
            let mut counts = Vec::with_capacity(events.len());
            for (e, keep) in events.iter().zip(&keep) {
                let before = rows.len();
                if !keep {
                    counts.push(0);
                    continue;
                }
                match &e.targets {
                    Targets::Only(endpoint) => {
                        rows.push((&e.tenant_id, &e.id, endpoint.clone()));
                    }
                    Targets::Subscribers => {
                        for (endpoint, enabled, types) in
                            subs.get(&e.tenant_id).into_iter().flatten()
                        {
                            if *enabled && type_matches(types.as_deref(), &e.event_type) {
                                rows.push((&e.tenant_id, &e.id, endpoint.clone()));
                            }
                        }
                    }
                }
                counts.push(rows.len() - before);
            }
            let mut queued: Vec<super::Claimed> = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(OUTBOX_CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO outbox (tenant_id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, (tenant, event, endpoint)| {
                    b.push_bind(*tenant)
                        .push_bind(*event)
                        .push_bind(endpoint)
                        .push_bind("pending")
                        .push_bind(0i64)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now);
                });
                let ids: Vec<i64> = if consecutive_ids {
                    q.build().execute(&mut *tx).await?;
                    let last: i64 = sqlx::query_scalar("SELECT last_insert_rowid()")
                        .fetch_one(&mut *tx)
                        .await?;
                    (last - chunk.len() as i64 + 1..=last).collect()
                } else {
                    q.push(" RETURNING id, event_id, endpoint_id");
                    let back: Vec<(i64, String, String)> =
                        q.build_query_as().fetch_all(&mut *tx).await?;
                    let by_row: HashMap<(&str, &str), i64> = back
                        .iter()
                        .map(|(id, event, endpoint)| ((event.as_str(), endpoint.as_str()), *id))
                        .collect();
                    chunk
                        .iter()
                        .filter_map(|(_, event, endpoint)| {
                            by_row.get(&(*event, endpoint.as_str())).copied()
                        })
                        .collect()
                };
                if ids.len() != chunk.len() {
                    return Err(StoreError::Corrupt(format!(
                        "{} outbox rows inserted, {} ids returned",
                        chunk.len(),
                        ids.len()
                    )));
                }
                queued.extend(
                    chunk
                        .iter()
                        .zip(ids)
                        .map(|((tenant, event, endpoint), id)| super::Claimed {
                            id,
                            tenant_id: (*tenant).to_owned(),
                            event_id: (*event).to_owned(),
                            endpoint_id: endpoint.clone(),
                            attempts: 0,
                        }),
                );
            }
            let rag_job: Vec<bool> = events
                .iter()
                .zip(&keep)
                .map(|(e, keep)| {
                    *keep
                        && e.feeds_rag
                        && e.session_id.as_ref().is_some_and(|s| answered.contains(s))
                })
                .collect();
            let jobs: Vec<&NewEvent> = events
                .iter()
                .zip(&rag_job)
                .filter(|(_, job)| **job)
                .map(|(e, _)| e)
                .collect();
            for chunk in jobs.chunks(EVENT_CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO rag_jobs (event_id, tenant_id, attempts, next_attempt_at, created_at) ",
                );
                q.push_values(chunk, |mut b, e| {
                    b.push_bind(&e.id)
                        .push_bind(&e.tenant_id)
                        .push_bind(0i64)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.build().execute(&mut *tx).await?;
            }
            before_commit(&queued);
            tx.commit().await?;
            let results = counts
                .into_iter()
                .zip(enqueued)
                .zip(unknown_target)
                .zip(rag_job)
                .map(
                    |(((deliveries, enqueued), unknown_target), rag_job)| EventResult {
                        deliveries,
                        enqueued,
                        unknown_target,
                        rag_job,
                    },
                )
                .collect::<Vec<_>>();
            Inserted { results, queued }
        });
        Ok(inserted)
    }

    pub async fn list_events(&self, tenant_id: &str, q: &EventQuery) -> Result<Vec<EventRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, EventRow>(
                "SELECT id, tenant_id, session_id, channel, type, body_key_id, body, created_at FROM events \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR type = $2) AND ($3 IS NULL OR created_at >= $3) \
                 AND ($4 IS NULL OR seq > (SELECT seq FROM events WHERE id = $4)) ORDER BY seq LIMIT $5",
            )
            .bind(tenant_id)
            .bind(&q.event_type)
            .bind(q.since)
            .bind(&q.after)
            .bind(i64::from(q.limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn get_event(&self, tenant_id: &str, id: &str) -> Result<Option<EventRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, EventRow>(
                "SELECT id, tenant_id, session_id, channel, type, body_key_id, body, created_at FROM events \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// A session's events in commit order, after the event `after` (exclusive).
    pub async fn session_events_after(
        &self,
        tenant_id: &str,
        session_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, EventRow>(
                "SELECT id, tenant_id, session_id, channel, type, body_key_id, body, created_at FROM events \
                 WHERE tenant_id = $1 AND session_id = $2 \
                 AND ($3 IS NULL OR seq > (SELECT seq FROM events WHERE id = $3)) ORDER BY seq LIMIT $4",
            )
            .bind(tenant_id)
            .bind(session_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// The newest event of a session, if any.
    pub async fn last_session_event_id(
        &self,
        tenant_id: &str,
        session_id: &str,
    ) -> Result<Option<String>> {
        let id = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT id FROM events WHERE tenant_id = $1 AND session_id = $2 ORDER BY seq DESC LIMIT 1",
            )
            .bind(tenant_id)
            .bind(session_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(id)
    }

    /// The newest event of one type for a session (e.g. its current QR code).
    pub async fn last_session_event_of_type(
        &self,
        tenant_id: &str,
        session_id: &str,
        kind: &str,
    ) -> Result<Option<EventRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, EventRow>(
                "SELECT id, tenant_id, session_id, channel, type, body_key_id, body, created_at FROM events \
                 WHERE session_id = $1 AND tenant_id = $2 AND type = $3 ORDER BY seq DESC LIMIT 1",
            )
            .bind(session_id)
            .bind(tenant_id)
            .bind(kind)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Events by id, whatever their tenant (for the dispatcher).
    pub async fn events_by_ids(&self, ids: &[String]) -> Result<Vec<EventRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows = on_pool!(self, |pool| {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT id, tenant_id, session_id, channel, type, body_key_id, body, created_at FROM events WHERE id IN (",
                );
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(id);
                }
                q.push(")");
                q.build_query_as::<EventRow>().fetch_all(pool).await?
            });
            out.extend(rows);
        }
        Ok(out)
    }

    pub async fn event_deliveries(&self, event_id: &str) -> Result<Vec<DeliveryRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, DeliveryRow>(
                "SELECT endpoint_id, status, attempts, next_attempt_at, last_attempt_at \
                 FROM outbox WHERE event_id = $1 ORDER BY endpoint_id",
            )
            .bind(event_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn event_attempts(&self, event_id: &str) -> Result<Vec<AttemptRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, AttemptRow>(
                "SELECT id, endpoint_id, attempted_at, status_code, latency_ms, error, response_snippet \
                 FROM delivery_attempts WHERE event_id = $1 ORDER BY id",
            )
            .bind(event_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
