//! What contact export and erasure read and change (see [`crate::contacts`]):
//! a tenant's messages and drafts page by page, and the erasing writes.

use super::messages::message_columns;
use super::{BeginWrite, DraftRow, MessageRow, Result, Store, on_pool, on_write_pool};
use switchboard_crypto::Sealed;

/// What an erased message keeps in place of the contact's address or words.
pub const ERASED: &str = "[erased]";

/// The network id an erased message keeps: a hash, which names no one (WhatsApp
/// ids hold phone numbers) and still tells a message seen again from a new one.
pub fn erased_external_id(external_id: &str) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "erased:{}",
        hex::encode(Sha256::digest(external_id.as_bytes()))
    )
}

impl Store {
    /// A page of the tenant's messages by id, after `after`.
    pub async fn messages_page(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, MessageRow>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
            ))
            .bind(tenant_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// A page of the tenant's drafts by id, after `after`.
    pub async fn drafts_page(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DraftRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, DraftRow>(
                "SELECT id, tenant_id, session_id, event_id, peer, status, reason, intent, source, \
                 body_key_id, body, message_id, created_at, updated_at FROM drafts \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
            )
            .bind(tenant_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Erases messages `ids` of the tenant: body, extras and error gone, the address
    /// and the network id replaced (`external_id` by `hashed_external_ids`' entry,
    /// so the message is still known as received and not taken in again).
    pub async fn erase_messages(
        &self,
        tenant_id: &str,
        ids: &[(String, Option<String>)],
    ) -> Result<u64> {
        let mut n = 0;
        for chunk in ids.chunks(200) {
            n += on_write_pool!(self, |pool| {
                let mut tx = pool.begin_write().await?;
                let mut done = 0;
                for (id, external) in chunk {
                    done += sqlx::query(
                        "UPDATE messages SET body = NULL, body_key_id = NULL, extras = NULL, extras_key_id = NULL, \
                         peer = $3, error = CASE WHEN error IS NULL THEN NULL ELSE $3 END, external_id = $4, \
                         idempotency_key = NULL, request_hash = NULL, updated_at = $5 \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant_id)
                    .bind(id)
                    .bind(ERASED)
                    .bind(external)
                    .bind(crate::clock::now_ms())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
                done
            });
        }
        Ok(n)
    }

    /// Replaces event `id`'s sealed body (a redacted envelope); its pending RAG job
    /// goes (there is nothing left to answer).
    pub async fn replace_event_body(&self, tenant_id: &str, id: &str, body: &Sealed) -> Result<()> {
        on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE events SET body_key_id = $3, body = $4 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant_id)
            .bind(id)
            .bind(&body.key_id)
            .bind(&body.data)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM rag_jobs WHERE tenant_id = $1 AND event_id = $2")
                .bind(tenant_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes drafts `ids` of the tenant.
    pub async fn delete_drafts(&self, tenant_id: &str, ids: &[String]) -> Result<u64> {
        let mut n = 0;
        for id in ids {
            n += on_write_pool!(self, |pool| {
                sqlx::query("DELETE FROM drafts WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant_id)
                    .bind(id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(n)
    }

    /// After an erasure: on SQLite the write-ahead log, which still holds the old
    /// pages, is checkpointed into the file (where `secure_delete` zeroed them) and
    /// truncated. Readers in the middle of a snapshot can hold it back: tried a few
    /// times. Postgres keeps dead row versions until (auto)vacuum.
    pub async fn scrub(&self) -> Result<bool> {
        match &self.pool {
            super::Pool::Sqlite { write, .. } => {
                for _ in 0..20 {
                    let (busy, _, _): (i64, i64, i64) =
                        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                            .fetch_one(write)
                            .await?;
                    if busy == 0 {
                        return Ok(true);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Ok(false)
            }
            super::Pool::Postgres(_) => Ok(true),
        }
    }
}
