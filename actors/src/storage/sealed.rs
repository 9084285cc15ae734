//! Every encrypted column in the schema, in one list, so master-key rotation can
//! re-seal all of them and a new sealed column cannot be forgotten.

use super::{BeginWrite, Result, Store, on_pool, on_write_pool};
use switchboard_crypto::Sealed;

/// One encrypted column: where its ciphertext, key id, row id and tenant live, and
/// the purpose bound into its associated data.
#[derive(Debug, Clone, Copy)]
pub struct SealedColumn {
    pub table: &'static str,
    pub key_id_column: &'static str,
    pub data_column: &'static str,
    pub purpose: &'static str,
}

/// All of them. Rows are bound to `(purpose, tenant_id, id)`.
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "events",
        key_id_column: "body_key_id",
        data_column: "body",
        purpose: crate::events::BODY_PURPOSE,
    },
    SealedColumn {
        table: "webhook_endpoints",
        key_id_column: "secret_key_id",
        data_column: "secret",
        purpose: crate::webhooks::SECRET_PURPOSE,
    },
    SealedColumn {
        table: "webhook_endpoints",
        key_id_column: "previous_secret_key_id",
        data_column: "previous_secret",
        purpose: crate::webhooks::SECRET_PURPOSE,
    },
    SealedColumn {
        table: "messages",
        key_id_column: "body_key_id",
        data_column: "body",
        purpose: super::messages::BODY_PURPOSE,
    },
    SealedColumn {
        table: "messages",
        key_id_column: "extras_key_id",
        data_column: "extras",
        purpose: super::messages::EXTRAS_PURPOSE,
    },
    SealedColumn {
        table: "drafts",
        key_id_column: "body_key_id",
        data_column: "body",
        purpose: super::rag::DRAFT_PURPOSE,
    },
    SealedColumn {
        table: "sessions",
        key_id_column: "state_key_id",
        data_column: "state",
        purpose: super::sessions::STATE_PURPOSE,
    },
    SealedColumn {
        table: "sessions",
        key_id_column: "secrets_key_id",
        data_column: "secrets",
        purpose: super::sessions::SECRETS_PURPOSE,
    },
];

/// A sealed value and the row it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedRow {
    pub id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub data: Vec<u8>,
}

impl SealedRow {
    pub fn sealed(&self) -> Sealed {
        Sealed {
            key_id: self.key_id.clone(),
            data: self.data.clone(),
        }
    }
}

impl Store {
    /// Up to `limit` rows of `col` sealed under a key other than `current_key_id`.
    pub async fn rows_not_sealed_with(
        &self,
        col: &SealedColumn,
        current_key_id: &str,
        limit: u32,
    ) -> Result<Vec<SealedRow>> {
        let sql = format!(
            "SELECT id, tenant_id, {k} AS key_id, {d} AS data FROM {t} \
             WHERE {k} IS NOT NULL AND {d} IS NOT NULL AND {k} <> $1 ORDER BY id LIMIT $2",
            k = col.key_id_column,
            d = col.data_column,
            t = col.table
        );
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, SealedRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(current_key_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// Replaces ciphertexts, each only if the row still holds the one it was read with.
    pub async fn replace_sealed(
        &self,
        col: &SealedColumn,
        rows: &[(SealedRow, Sealed)],
    ) -> Result<u64> {
        let sql = format!(
            "UPDATE {t} SET {k} = $1, {d} = $2 WHERE id = $3 AND {k} = $4",
            k = col.key_id_column,
            d = col.data_column,
            t = col.table
        );
        let n = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut n = 0;
            for (old, new) in rows {
                n += sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(&new.key_id)
                    .bind(&new.data)
                    .bind(&old.id)
                    .bind(&old.key_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            n
        });
        Ok(n)
    }
}
