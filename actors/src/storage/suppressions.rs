//! A tenant's suppression list (`suppressions`): see [`crate::suppression`].

use super::{Result, Store, on_pool, on_write_pool};

/// One entry: never message `address` on `channel` (`*`: any channel).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct SuppressionRow {
    pub id: String,
    #[serde(skip)]
    pub tenant_id: String,
    pub channel: String,
    pub address: String,
    pub reason: Option<String>,
    /// Who put it there: `api`, `import`, `opt_out`, `bounce`, `erasure`.
    pub source: String,
    #[serde(skip)]
    pub created_at: i64,
}

impl Store {
    /// Adds `row` unless the tenant has an entry for that channel and address: the
    /// entry now on the list, and whether it is new.
    pub async fn add_suppression(&self, row: &SuppressionRow) -> Result<(SuppressionRow, bool)> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO suppressions (id, tenant_id, channel, address, reason, source, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, channel, address) DO NOTHING",
            )
            .bind(&row.id)
            .bind(&row.tenant_id)
            .bind(&row.channel)
            .bind(&row.address)
            .bind(&row.reason)
            .bind(&row.source)
            .bind(row.created_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let stored = on_write_pool!(self, |pool| {
            sqlx::query_as::<_, SuppressionRow>(
                "SELECT id, tenant_id, channel, address, reason, source, created_at FROM suppressions \
                 WHERE tenant_id = $1 AND channel = $2 AND address = $3",
            )
            .bind(&row.tenant_id)
            .bind(&row.channel)
            .bind(&row.address)
            .fetch_one(pool)
            .await?
        });
        Ok((stored, n == 1))
    }

    /// A page of the tenant's entries, oldest first, after entry `after`.
    pub async fn list_suppressions(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SuppressionRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, SuppressionRow>(
                "SELECT id, tenant_id, channel, address, reason, source, created_at FROM suppressions \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
            )
            .bind(tenant_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Removes entry `id` of the tenant; false when there is none.
    pub async fn delete_suppression(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query("DELETE FROM suppressions WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// The entry that forbids messaging `address` on `channel`, if any (one for
    /// that channel, or for every channel).
    pub async fn suppression_for(
        &self,
        tenant_id: &str,
        channel: &str,
        address: &str,
    ) -> Result<Option<SuppressionRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, SuppressionRow>(
                "SELECT id, tenant_id, channel, address, reason, source, created_at FROM suppressions \
                 WHERE tenant_id = $1 AND address = $3 AND (channel = $2 OR channel = '*') \
                 ORDER BY id LIMIT 1",
            )
            .bind(tenant_id)
            .bind(channel)
            .bind(address)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }
}
