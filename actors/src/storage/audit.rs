//! The audit log: who changed tenants and keys, when, and from which request.
//!
//! Entries are written inside the transaction of the change they describe (see
//! [`insert_audit!`]); the gateway also appends one per authenticated API call, in
//! batches ([`Store::append_audit`]). Reading them back is for operators and tests.

use super::{BeginWrite, Result, Store, on_pool};
use serde::Serialize;
use std::borrow::Cow;

/// What to record about a change. `actor` is `admin` (API), `cli`, or a key id.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: Cow<'static, str>,
    pub tenant_id: Option<String>,
    pub target: Option<String>,
    pub details: serde_json::Value,
    pub request_id: Option<String>,
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, action: impl Into<Cow<'static, str>>) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            tenant_id: None,
            target: None,
            details: serde_json::Value::Object(Default::default()),
            request_id: None,
        }
    }

    pub fn request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }
}

/// A stored audit entry.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub tenant_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub details: String,
    pub request_id: Option<String>,
}

pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, actor, tenant_id, action, target, details, request_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Inserts an [`AuditEntry`] through `$exec` (a transaction), with the entry's tenant
/// and target taken from the arguments so callers cannot record the wrong row.
macro_rules! insert_audit {
    ($exec:expr, $entry:expr, $tenant_id:expr, $target:expr) => {
        sqlx::query($crate::storage::audit::INSERT_AUDIT)
            .bind($crate::clock::now_ms())
            .bind(&$entry.actor)
            .bind($tenant_id)
            .bind(&*$entry.action)
            .bind($target)
            .bind($entry.details.to_string())
            .bind(&$entry.request_id)
            .execute($exec)
    };
}
pub(crate) use insert_audit;

impl Store {
    /// Records `entry` about `target` of `tenant_id` on its own (for reads worth
    /// auditing, such as a contact export).
    pub async fn record_audit(
        &self,
        entry: &AuditEntry,
        tenant_id: Option<&str>,
        target: Option<&str>,
    ) -> Result<()> {
        super::on_write_pool!(self, |pool| {
            insert_audit!(pool, entry, tenant_id, target).await?;
        });
        Ok(())
    }

    /// Appends entries that carry their own tenant and target, in one transaction
    /// (the gateway's record of API calls, batched).
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let at = crate::clock::now_ms();
        // One multi-row statement per chunk (7 binds a row, under SQLite's 32,766).
        let details: Vec<String> = entries.iter().map(|e| e.details.to_string()).collect();
        super::on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            for (chunk, details) in entries.chunks(500).zip(details.chunks(500)) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_log (at, actor, tenant_id, action, target, details, request_id) ",
                );
                q.push_values(chunk.iter().zip(details), |mut b, (e, d)| {
                    b.push_bind(at)
                        .push_bind(&e.actor)
                        .push_bind(&e.tenant_id)
                        .push_bind(&*e.action)
                        .push_bind(&e.target)
                        .push_bind(d)
                        .push_bind(&e.request_id);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A page of audit entries, oldest first, after entry `after`: one tenant's, or
    /// every tenant's and the operators' (`tenant_id` `None`).
    pub async fn audit_page(
        &self,
        tenant_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, AuditRecord>(
                "SELECT id, at, actor, tenant_id, action, target, details, request_id FROM audit_log \
                 WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
            )
            .bind(tenant_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// The newest `limit` audit entries, optionally for one tenant, newest first.
    pub async fn list_audit(
        &self,
        tenant_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, AuditRecord>(
                "SELECT id, at, actor, tenant_id, action, target, details, request_id FROM audit_log \
                 WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(tenant_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
