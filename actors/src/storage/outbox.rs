//! The delivery queue: claiming due outbox rows under a lease, recording attempt
//! results in batches, and re-queueing rows for replay.
//!
//! Claiming is one statement: Postgres uses `FOR UPDATE SKIP LOCKED` so replicas
//! never claim the same row; SQLite serialises writers, which gives the same
//! guarantee for its single process. A claim sets `locked_until`; a dispatcher that
//! dies leaves rows that become claimable again once the lease runs out. FIFO
//! endpoints only ever expose their oldest pending row.

use super::{BeginWrite, Pool, Result, Store, on_pool, on_write_pool};
use crate::clock;
use std::collections::HashMap;

/// A claimed delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub tenant_id: String,
    pub event_id: String,
    pub endpoint_id: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// What to do with a row after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time (unix ms).
    Retry {
        at: i64,
    },
    /// Attempts exhausted: keep as dead letter.
    Dead,
    /// The endpoint was disabled: leave the row pending (it resumes if re-enabled).
    Parked,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub outbox_id: i64,
    pub tenant_id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub attempted_at: i64,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    pub outcome: Outcome,
}

const CLAIM_WHERE: &str = "o.status = 'pending' AND o.next_attempt_at <= $1 \
     AND (o.locked_until IS NULL OR o.locked_until < $1) AND e.status = 'enabled' \
     AND (NOT e.fifo OR NOT EXISTS (SELECT 1 FROM outbox p WHERE p.endpoint_id = o.endpoint_id \
          AND p.status = 'pending' AND p.id < o.id))";

impl Store {
    /// Claims up to `limit` due deliveries until `lease_until`, skipping endpoints in
    /// `saturated` (already at their in-flight cap).
    pub async fn claim_deliveries(
        &self,
        lease_until: i64,
        limit: u32,
        saturated: &[String],
    ) -> Result<Vec<Claimed>> {
        let now = clock::now_ms();
        let rows = match &self.pool {
            Pool::Postgres(pool) => {
                let sql = format!(
                    "UPDATE outbox SET locked_until = $2 WHERE id IN (\
                       SELECT o.id FROM outbox o JOIN webhook_endpoints e ON e.id = o.endpoint_id \
                       WHERE {CLAIM_WHERE} AND NOT (o.endpoint_id = ANY($4)) \
                       ORDER BY o.next_attempt_at, o.id LIMIT $3 FOR UPDATE OF o SKIP LOCKED) \
                     RETURNING id, tenant_id, event_id, endpoint_id, attempts"
                );
                sqlx::query_as::<_, Claimed>(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(lease_until)
                    .bind(i64::from(limit))
                    .bind(saturated)
                    .fetch_all(pool)
                    .await?
            }
            Pool::Sqlite { write: pool, .. } => {
                let sql = format!(
                    "UPDATE outbox SET locked_until = $2 WHERE id IN (\
                       SELECT o.id FROM outbox o JOIN webhook_endpoints e ON e.id = o.endpoint_id \
                       WHERE {CLAIM_WHERE} AND o.endpoint_id NOT IN (SELECT value FROM json_each($4)) \
                       ORDER BY o.next_attempt_at, o.id LIMIT $3) \
                     RETURNING id, tenant_id, event_id, endpoint_id, attempts"
                );
                sqlx::query_as::<_, Claimed>(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(lease_until)
                    .bind(i64::from(limit))
                    .bind(serde_json::to_string(saturated).unwrap_or_else(|_| "[]".into()))
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// Due deliveries, as [`Self::claim_deliveries`] picks them, that are not in
    /// `held`: for a database no other process shares (SQLite), where the claims
    /// are kept in the dispatcher's memory and nothing needs writing to take one
    /// (a crash forgets them with the process). Read from the read pool.
    pub async fn due_deliveries(
        &self,
        limit: u32,
        saturated: &[String],
        held: &[i64],
    ) -> Result<Vec<Claimed>> {
        let now = clock::now_ms();
        let rows = match &self.pool {
            Pool::Postgres(pool) => {
                let sql = format!(
                    "SELECT o.id, o.tenant_id, o.event_id, o.endpoint_id, o.attempts \
                     FROM outbox o JOIN webhook_endpoints e ON e.id = o.endpoint_id \
                     WHERE {CLAIM_WHERE} AND NOT (o.endpoint_id = ANY($3)) AND NOT (o.id = ANY($4)) \
                     ORDER BY o.next_attempt_at, o.id LIMIT $2"
                );
                sqlx::query_as::<_, Claimed>(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(i64::from(limit))
                    .bind(saturated)
                    .bind(held)
                    .fetch_all(pool)
                    .await?
            }
            Pool::Sqlite { read: pool, .. } => {
                let sql = format!(
                    "SELECT o.id, o.tenant_id, o.event_id, o.endpoint_id, o.attempts \
                     FROM outbox o JOIN webhook_endpoints e ON e.id = o.endpoint_id \
                     WHERE {CLAIM_WHERE} AND o.endpoint_id NOT IN (SELECT value FROM json_each($3)) \
                     AND o.id NOT IN (SELECT value FROM json_each($4)) \
                     ORDER BY o.next_attempt_at, o.id LIMIT $2"
                );
                sqlx::query_as::<_, Claimed>(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(i64::from(limit))
                    .bind(serde_json::to_string(saturated).unwrap_or_else(|_| "[]".into()))
                    .bind(serde_json::to_string(held).unwrap_or_else(|_| "[]".into()))
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// Clears every lease. Only for a single-process database (SQLite) at start-up,
    /// where no other dispatcher can hold one.
    pub async fn release_all_leases(&self) -> Result<u64> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query("UPDATE outbox SET locked_until = NULL WHERE locked_until IS NOT NULL")
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    /// Records a batch of attempts and moves their rows on, in one transaction.
    /// Also tracks per-endpoint failure streaks (`failing_since`).
    pub async fn record_attempts(&self, results: &[AttemptResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let now = clock::now_ms();
        on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            for chunk in results.chunks(200) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO delivery_attempts (outbox_id, tenant_id, event_id, endpoint_id, attempted_at, \
                     status_code, latency_ms, error, response_snippet) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.outbox_id)
                        .push_bind(&r.tenant_id)
                        .push_bind(&r.event_id)
                        .push_bind(&r.endpoint_id)
                        .push_bind(r.attempted_at)
                        .push_bind(r.status_code)
                        .push_bind(r.latency_ms)
                        .push_bind(&r.error)
                        .push_bind(&r.response_snippet);
                });
                q.build().execute(&mut *tx).await?;
            }
            // Successes move on in one statement; the rest one by one (their next
            // attempt times differ).
            let delivered: Vec<&AttemptResult> = results
                .iter()
                .filter(|r| r.outcome == Outcome::Delivered)
                .collect();
            for chunk in delivered.chunks(500) {
                let mut q = sqlx::QueryBuilder::new(
                    "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, locked_until = NULL, last_attempt_at = ",
                );
                q.push_bind(now)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(" WHERE id IN (");
                let mut sep = q.separated(", ");
                for r in chunk {
                    sep.push_bind(r.outbox_id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            for r in results.iter().filter(|r| r.outcome != Outcome::Delivered) {
                let (status, next) = match r.outcome {
                    Outcome::Retry { at } => ("pending", Some(at)),
                    Outcome::Dead => ("dead", None),
                    Outcome::Parked | Outcome::Delivered => ("pending", Some(now)),
                };
                sqlx::query(
                    "UPDATE outbox SET status = $1, attempts = attempts + 1, \
                     next_attempt_at = COALESCE($2, next_attempt_at), locked_until = NULL, \
                     last_attempt_at = $3, updated_at = $4 WHERE id = $5",
                )
                .bind(status)
                .bind(next)
                .bind(r.attempted_at)
                .bind(now)
                .bind(r.outbox_id)
                .execute(&mut *tx)
                .await?;
            }
            // Failure streaks: the last result per endpoint in this batch decides.
            let mut last: HashMap<&str, &AttemptResult> = HashMap::new();
            for r in results {
                last.insert(&r.endpoint_id, r);
            }
            // Streaks that ended: one statement for every such endpoint.
            let mut healthy: Vec<&str> = last
                .iter()
                .filter(|(_, r)| r.outcome == Outcome::Delivered)
                .map(|(endpoint, _)| *endpoint)
                .collect();
            healthy.sort_unstable();
            for chunk in healthy.chunks(500) {
                let mut q = sqlx::QueryBuilder::new(
                    "UPDATE webhook_endpoints SET failing_since = NULL WHERE failing_since IS NOT NULL AND id IN (",
                );
                let mut sep = q.separated(", ");
                for endpoint in chunk {
                    sep.push_bind(*endpoint);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            for (endpoint, r) in last {
                if r.outcome != Outcome::Delivered {
                    sqlx::query("UPDATE webhook_endpoints SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL")
                        .bind(r.attempted_at)
                        .bind(endpoint)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Re-queues an event for delivery now to each of `endpoint_ids` (existing rows
    /// are reset whatever their state; missing ones are created). Returns the count.
    pub async fn requeue(&self, tenant_id: &str, pairs: &[(String, String)]) -> Result<u64> {
        let now = clock::now_ms();
        let mut total = 0;
        for chunk in pairs.chunks(500) {
            let n = on_write_pool!(self, |pool| {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO outbox (tenant_id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, (event, endpoint)| {
                    b.push_bind(tenant_id)
                        .push_bind(event)
                        .push_bind(endpoint)
                        .push_bind("pending")
                        .push_bind(0i64)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(
                    " ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending', attempts = 0, \
                     next_attempt_at = excluded.next_attempt_at, locked_until = NULL, updated_at = excluded.updated_at",
                );
                q.build().execute(pool).await?.rows_affected()
            });
            total += n;
        }
        Ok(total)
    }

    /// Ids and types of a tenant's events created in `[since, until)`, oldest first, at most `cap`.
    pub async fn event_ids_between(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
        cap: u32,
    ) -> Result<Vec<(String, String)>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT id, type FROM events WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 \
                 ORDER BY id LIMIT $4",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .bind(i64::from(cap))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Gives claimed rows back without an attempt (e.g. their endpoint is at its cap).
    pub async fn release_claims(&self, ids: &[i64]) -> Result<()> {
        for chunk in ids.chunks(500) {
            on_write_pool!(self, |pool| {
                let mut q =
                    sqlx::QueryBuilder::new("UPDATE outbox SET locked_until = NULL WHERE id IN (");
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                q.push(")");
                q.build().execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Pending deliveries (for metrics and tests).
    pub async fn pending_deliveries(&self) -> Result<i64> {
        let n = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }
}
