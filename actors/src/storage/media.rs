//! Rows of the media store (`media`): what each stored file is and where its sealed
//! bytes live. The bytes themselves are the media backend's (`crate::media`).

use super::{Result, Store, StoreError, on_pool, on_write_pool};

/// One stored file of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MediaRow {
    pub id: String,
    pub tenant_id: String,
    /// Hex SHA-256 of the plaintext.
    pub sha256: String,
    pub mimetype: String,
    /// Plaintext bytes.
    pub size: i64,
    pub filename: Option<String>,
    /// The master key that sealed the bytes.
    pub key_id: String,
    /// Where the backend keeps them; empty while the file is pending (recorded,
    /// not yet fetched from its channel).
    pub blob_key: String,
    pub created_at: i64,
    /// A pending file's session, to fetch it through.
    pub session_id: Option<String>,
    /// A pending file's message on that session's network.
    pub source_ref: Option<String>,
}

impl MediaRow {
    /// Recorded, but its bytes are still on the channel's network.
    pub fn is_pending(&self) -> bool {
        self.blob_key.is_empty()
    }
}

/// The columns of [`MediaRow`], as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, tenant_id, sha256, mimetype, size, filename, key_id, blob_key, created_at, \
         session_id, source_ref"
    };
}

impl Store {
    /// Records a stored file. A file with the same content is already recorded for
    /// the tenant: [`StoreError::Conflict`] (read it with [`Store::media_by_sha256`]).
    pub async fn insert_media(&self, row: &MediaRow) -> Result<()> {
        let r = on_write_pool!(self, |pool| {
            sqlx::query(concat!(
                "INSERT INTO media (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ))
            .bind(&row.id)
            .bind(&row.tenant_id)
            .bind(&row.sha256)
            .bind(&row.mimetype)
            .bind(row.size)
            .bind(&row.filename)
            .bind(&row.key_id)
            .bind(&row.blob_key)
            .bind(row.created_at)
            .bind(&row.session_id)
            .bind(&row.source_ref)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("media with sha256 {} exists for the tenant", row.sha256),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives pending file `id` its bytes: the sealed blob `blob_key` (under master
    /// key `key_id`) and what the bytes showed. False when it was not pending (filled
    /// by another read meanwhile).
    pub async fn fill_media(
        &self,
        id: &str,
        blob_key: &str,
        key_id: &str,
        mimetype: &str,
        size: i64,
    ) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE media SET blob_key = $2, key_id = $3, mimetype = $4, size = $5, \
                 session_id = NULL, source_ref = NULL WHERE id = $1 AND blob_key = ''",
            )
            .bind(id)
            .bind(blob_key)
            .bind(key_id)
            .bind(mimetype)
            .bind(size)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Takes the fetch of pending file `id` until `until` (unix ms) if nobody holds
    /// it after `now`. False when another reader is fetching it (or it is filled).
    pub async fn claim_media_fetch(&self, id: &str, now: i64, until: i64) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE media SET fetch_until = $3 \
                 WHERE id = $1 AND blob_key = '' AND fetch_until < $2",
            )
            .bind(id)
            .bind(now)
            .bind(until)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Extends the fetch of pending file `id` held by the caller to `until`.
    pub async fn extend_media_fetch(&self, id: &str, until: i64) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("UPDATE media SET fetch_until = $2 WHERE id = $1 AND blob_key = ''")
                .bind(id)
                .bind(until)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Gives up the fetch of file `id` (done, or failed: the next reader tries).
    pub async fn release_media_fetch(&self, id: &str) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("UPDATE media SET fetch_until = 0 WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// A tenant's file by id (`None` for another tenant's).
    pub async fn media(&self, tenant_id: &str, id: &str) -> Result<Option<MediaRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, MediaRow>(concat!(
                "SELECT ",
                columns!(),
                " FROM media WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// A tenant's file by content.
    pub async fn media_by_sha256(&self, tenant_id: &str, sha256: &str) -> Result<Option<MediaRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, MediaRow>(concat!(
                "SELECT ",
                columns!(),
                " FROM media WHERE tenant_id = $1 AND sha256 = $2"
            ))
            .bind(tenant_id)
            .bind(sha256)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// How many plaintext bytes a tenant has stored (pending files take none).
    pub async fn media_usage(&self, tenant_id: &str) -> Result<i64> {
        let n = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT CAST(SUM(size) AS BIGINT) FROM media WHERE tenant_id = $1 AND blob_key <> ''",
            )
            .bind(tenant_id)
            .fetch_one(pool)
            .await?
        });
        Ok(n.unwrap_or(0))
    }

    /// Up to `limit` files stored before `before` (unix ms), oldest first: what the
    /// retention sweep deletes.
    pub async fn media_older_than(&self, before: i64, limit: i64) -> Result<Vec<MediaRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, MediaRow>(concat!(
                "SELECT ",
                columns!(),
                " FROM media WHERE created_at < $1 ORDER BY created_at LIMIT $2"
            ))
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Forgets a file (its bytes are the caller's to delete).
    pub async fn delete_media(&self, id: &str) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query("DELETE FROM media WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }
}
