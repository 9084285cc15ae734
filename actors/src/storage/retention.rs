//! Retention sweeps (see [`crate::retention`]): a tenant's old rows deleted a small
//! batch per transaction, so writers wait at most one batch. What is still needed
//! stays whatever its age: an event with a webhook delivery not yet delivered (or
//! given up on, so it can be replayed) or a RAG job, a message queued or sending.

use super::{BeginWrite, MediaRow, Result, Store, on_pool, on_write_pool};

/// Rows deleted per transaction.
pub const SWEEP_BATCH: i64 = 500;

impl Store {
    /// Deletes up to `limit` of the tenant's events created before `before` that
    /// nothing waits for, with their delivered outbox rows and delivery attempts.
    /// Returns how many went.
    pub async fn sweep_events(&self, tenant_id: &str, before: i64, limit: i64) -> Result<u64> {
        let n = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let gone: Vec<String> = sqlx::query_scalar(
                "DELETE FROM events WHERE id IN ( \
                   SELECT e.id FROM events e WHERE e.tenant_id = $1 AND e.created_at < $2 \
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.id AND o.status <> 'delivered') \
                   AND NOT EXISTS (SELECT 1 FROM rag_jobs j WHERE j.event_id = e.id) \
                   ORDER BY e.created_at LIMIT $3) \
                 RETURNING id",
            )
            .bind(tenant_id)
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if !gone.is_empty() {
                let mut q =
                    sqlx::QueryBuilder::new("DELETE FROM delivery_attempts WHERE event_id IN (");
                let mut list = q.separated(", ");
                for id in &gone {
                    list.push_bind(id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            gone.len() as u64
        });
        Ok(n)
    }

    /// Deletes up to `limit` of the tenant's messages created before `before`,
    /// except sends still queued or sending. Returns how many went.
    pub async fn sweep_messages(&self, tenant_id: &str, before: i64, limit: i64) -> Result<u64> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM messages WHERE id IN ( \
                   SELECT id FROM messages WHERE tenant_id = $1 AND created_at < $2 \
                   AND status NOT IN ('queued', 'sending') ORDER BY created_at LIMIT $3)",
            )
            .bind(tenant_id)
            .bind(before)
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// The tenant's oldest files stored before `before`, at most `limit`.
    pub async fn tenant_media_older_than(
        &self,
        tenant_id: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<MediaRow>> {
        let ids: Vec<String> = on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM media WHERE tenant_id = $1 AND created_at < $2 ORDER BY created_at LIMIT $3",
            )
            .bind(tenant_id)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.media(tenant_id, &id).await? {
                rows.push(r);
            }
        }
        Ok(rows)
    }

    /// The ids of tenants whose consent settings set a retention.
    pub async fn tenants_with_retention(&self) -> Result<Vec<String>> {
        let rows: Vec<(String, String)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT tenant_id, body FROM tenant_settings ORDER BY tenant_id")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .filter(|(_, body)| {
                serde_json::from_str::<crate::consent::ConsentSettings>(body)
                    .is_ok_and(|s| !s.retention.is_off())
            })
            .map(|(t, _)| t)
            .collect())
    }
}
