//! The RAG side of storage: knowledge-base documents (their vectors live in the
//! vector store), per-session reply settings, drafts waiting for a person, and
//! `rag_jobs` — inbound messages waiting for the RAG actor, written in the same
//! transaction as their `message.received` event (see `insert_events`), so a crash
//! never loses one.

use super::{Result, Store, on_pool, on_write_pool};
use crate::clock;
use serde::Serialize;
use switchboard_crypto::Sealed;

/// Binding purpose of a draft's sealed body.
pub const DRAFT_PURPOSE: &str = "draft.body";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct KbDocumentRow {
    pub id: String,
    pub tenant_id: String,
    pub title: String,
    pub format: String,
    pub bytes: i64,
    pub chunks: i64,
    pub model: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! kb_columns {
    () => {
        "id, tenant_id, title, format, bytes, chunks, model, status, created_at, updated_at"
    };
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RagJob {
    pub event_id: String,
    pub tenant_id: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DraftRow {
    pub id: String,
    pub tenant_id: String,
    pub session_id: String,
    pub event_id: String,
    pub peer: String,
    pub status: String,
    pub reason: String,
    pub intent: String,
    pub source: String,
    pub body_key_id: String,
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl DraftRow {
    pub fn sealed(&self) -> Sealed {
        Sealed {
            key_id: self.body_key_id.clone(),
            data: self.body.clone(),
        }
    }
}

macro_rules! draft_columns {
    () => {
        "id, tenant_id, session_id, event_id, peer, status, reason, intent, source, body_key_id, body, message_id, created_at, updated_at"
    };
}

impl Store {
    pub async fn insert_kb_document(&self, d: &KbDocumentRow) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query(concat!(
                "INSERT INTO kb_documents (",
                kb_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(&d.id)
            .bind(&d.tenant_id)
            .bind(&d.title)
            .bind(&d.format)
            .bind(d.bytes)
            .bind(d.chunks)
            .bind(&d.model)
            .bind(&d.status)
            .bind(d.created_at)
            .bind(d.updated_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a document indexed with `chunks` passages.
    pub async fn kb_document_ready(&self, tenant_id: &str, id: &str, chunks: i64) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE kb_documents SET status = 'ready', chunks = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4",
            )
            .bind(chunks)
            .bind(clock::now_ms())
            .bind(tenant_id)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn list_kb_documents(&self, tenant_id: &str) -> Result<Vec<KbDocumentRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, KbDocumentRow>(concat!(
                "SELECT ",
                kb_columns!(),
                " FROM kb_documents WHERE tenant_id = $1 ORDER BY id"
            ))
            .bind(tenant_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Documents left `indexing` by a crash (every tenant).
    pub async fn unfinished_kb_documents(&self) -> Result<Vec<KbDocumentRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, KbDocumentRow>(concat!(
                "SELECT ",
                kb_columns!(),
                " FROM kb_documents WHERE status = 'indexing' ORDER BY id"
            ))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Deletes the row; `false` if the tenant has no such document.
    pub async fn delete_kb_document(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query("DELETE FROM kb_documents WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    pub async fn get_kb_document(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<KbDocumentRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, KbDocumentRow>(concat!(
                "SELECT ",
                kb_columns!(),
                " FROM kb_documents WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// The session's reply settings (JSON text), if it has any.
    pub async fn reply_settings(
        &self,
        tenant_id: &str,
        session_id: &str,
    ) -> Result<Option<String>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT settings FROM reply_settings WHERE tenant_id = $1 AND session_id = $2",
            )
            .bind(tenant_id)
            .bind(session_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    pub async fn put_reply_settings(
        &self,
        tenant_id: &str,
        session_id: &str,
        mode: &str,
        settings: &str,
    ) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO reply_settings (session_id, tenant_id, mode, settings, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (session_id) DO UPDATE SET mode = excluded.mode, settings = excluded.settings, updated_at = excluded.updated_at",
            )
            .bind(session_id)
            .bind(tenant_id)
            .bind(mode)
            .bind(settings)
            .bind(clock::now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Claims up to `limit` due jobs: each is hidden for `lease_ms` (taken again after
    /// that if its worker died) and its attempt counted.
    pub async fn claim_rag_jobs(&self, limit: i64, lease_ms: i64) -> Result<Vec<RagJob>> {
        // On Postgres the due rows are picked `FOR UPDATE SKIP LOCKED`: replicas
        // claiming at once each get other jobs (without it, a second claim waits for
        // the first, then takes the same rows again). SQLite has one writer.
        const CLAIM: &str = "UPDATE rag_jobs SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE event_id IN (SELECT event_id FROM rag_jobs WHERE next_attempt_at <= $2 \
             ORDER BY next_attempt_at LIMIT $3";
        let now = clock::now_ms();
        let lock = match self.backend() {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let sql = format!("{CLAIM}{lock}) RETURNING event_id, tenant_id, attempts");
        let rows = on_write_pool!(self, |pool| {
            sqlx::query_as::<_, RagJob>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    pub async fn finish_rag_job(&self, event_id: &str) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("DELETE FROM rag_jobs WHERE event_id = $1")
                .bind(event_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn retry_rag_job(&self, event_id: &str, at: i64, error: &str) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE rag_jobs SET next_attempt_at = $1, last_error = $2 WHERE event_id = $3",
            )
            .bind(at)
            .bind(error)
            .bind(event_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Jobs not yet done (all tenants).
    pub async fn pending_rag_jobs(&self) -> Result<i64> {
        let n = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM rag_jobs")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Stores a draft unless the event already has one; returns the event's draft id.
    pub async fn insert_draft(&self, d: &DraftRow) -> Result<String> {
        let id = on_write_pool!(self, |pool| {
            sqlx::query(concat!(
                "INSERT INTO drafts (",
                draft_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (event_id) DO NOTHING"
            ))
            .bind(&d.id)
            .bind(&d.tenant_id)
            .bind(&d.session_id)
            .bind(&d.event_id)
            .bind(&d.peer)
            .bind(&d.status)
            .bind(&d.reason)
            .bind(&d.intent)
            .bind(&d.source)
            .bind(&d.body_key_id)
            .bind(&d.body)
            .bind(&d.message_id)
            .bind(d.created_at)
            .bind(d.updated_at)
            .execute(pool)
            .await?;
            sqlx::query_scalar::<_, String>("SELECT id FROM drafts WHERE event_id = $1")
                .bind(&d.event_id)
                .fetch_one(pool)
                .await?
        });
        Ok(id)
    }

    /// A tenant's drafts, newest first, optionally of one status.
    pub async fn list_drafts(
        &self,
        tenant_id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DraftRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, DraftRow>(concat!(
                "SELECT ",
                draft_columns!(),
                " FROM drafts WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) ORDER BY id DESC LIMIT $3"
            ))
            .bind(tenant_id)
            .bind(status)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn get_draft(&self, tenant_id: &str, id: &str) -> Result<Option<DraftRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, DraftRow>(concat!(
                "SELECT ",
                draft_columns!(),
                " FROM drafts WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Moves a draft from status `from` to `to` (with an edited body and the send's
    /// message id, when given); `false` if it was not in `from`.
    pub async fn decide_draft(
        &self,
        tenant_id: &str,
        id: &str,
        (from, to): (&str, &str),
        body: Option<&Sealed>,
        message_id: Option<&str>,
    ) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE drafts SET status = $1, message_id = COALESCE($2, message_id), updated_at = $3, \
                 body_key_id = COALESCE($4, body_key_id), body = COALESCE($5, body) \
                 WHERE tenant_id = $6 AND id = $7 AND status = $8",
            )
            .bind(to)
            .bind(message_id)
            .bind(clock::now_ms())
            .bind(body.map(|b| b.key_id.as_str()))
            .bind(body.map(|b| b.data.as_slice()))
            .bind(tenant_id)
            .bind(id)
            .bind(from)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }
}
