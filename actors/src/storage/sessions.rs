//! Sessions: one row per (tenant, channel session). The row is the session's durable
//! truth: its configuration, its last status and why, and whether it should be
//! running (`desired_state`), which is what brings it back after a gateway restart.

use super::audit::{AuditEntry, insert_audit};
use super::cluster::fenced;
use super::{BeginWrite, Fence, Result, Store, on_pool, on_write_pool};
use crate::clock;
use serde::Serialize;
use switchboard_crypto::Sealed;

/// Binding purpose of a session's sealed channel state.
pub const STATE_PURPOSE: &str = "session.state";
/// Binding purpose of a session's sealed secrets (its whole configuration, secrets
/// included, where its channel has secrets).
pub const SECRETS_PURPOSE: &str = "session.secrets";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub tenant_id: String,
    pub channel: String,
    pub name: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    /// `running` or `stopped`.
    pub desired_state: String,
    /// Channel configuration (JSON text).
    pub config: String,
    /// What the network said about the login last time (JSON text), if anything.
    pub network: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! session_columns {
    () => {
        "id, tenant_id, channel, name, status, status_reason, desired_state, config, network, created_at, updated_at"
    };
}

impl Store {
    pub async fn create_session(&self, s: &SessionRow, audit: &AuditEntry) -> Result<()> {
        self.create_session_sealed(s, None, audit).await
    }

    /// Creates a session whose configuration has secrets: `s.config` holds what may be
    /// shown, `secrets` the whole configuration sealed (bound to [`SECRETS_PURPOSE`]).
    pub async fn create_session_sealed(
        &self,
        s: &SessionRow,
        secrets: Option<&Sealed>,
        audit: &AuditEntry,
    ) -> Result<()> {
        let (key_id, data) = secrets.map(|x| (&x.key_id, &x.data)).unzip();
        on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(concat!(
                "INSERT INTO sessions (",
                session_columns!(),
                ", secrets_key_id, secrets",
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ))
            .bind(&s.id)
            .bind(&s.tenant_id)
            .bind(&s.channel)
            .bind(&s.name)
            .bind(&s.status)
            .bind(&s.status_reason)
            .bind(&s.desired_state)
            .bind(&s.config)
            .bind(&s.network)
            .bind(s.created_at)
            .bind(s.updated_at)
            .bind(key_id)
            .bind(data)
            .execute(&mut *tx)
            .await?;
            let entry = AuditEntry {
                details: serde_json::json!({ "channel": s.channel, "name": s.name }),
                ..audit.clone()
            };
            insert_audit!(&mut *tx, entry, Some(&s.tenant_id), Some(&s.id)).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn list_sessions(&self, tenant_id: &str) -> Result<Vec<SessionRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, SessionRow>(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE tenant_id = $1 ORDER BY id"
            ))
            .bind(tenant_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn get_session(&self, tenant_id: &str, id: &str) -> Result<Option<SessionRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, SessionRow>(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// A session by id, whatever its tenant (for the actors).
    pub async fn session_by_id(&self, id: &str) -> Result<Option<SessionRow>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, SessionRow>(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// A session's saved channel state (sealed; e.g. a browser login), if any.
    pub async fn session_state(&self, id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, (Option<String>, Option<Vec<u8>>)>(
                "SELECT state_key_id, state FROM sessions WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            Some((Some(k), Some(d))) => Some((k, d)),
            _ => None,
        })
    }

    /// A session's sealed secrets (its whole configuration), if its channel has any.
    pub async fn session_secrets(&self, id: &str) -> Result<Option<Sealed>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, (Option<String>, Option<Vec<u8>>)>(
                "SELECT secrets_key_id, secrets FROM sessions WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            Some((Some(key_id), Some(data))) => Some(Sealed { key_id, data }),
            _ => None,
        })
    }

    /// Saves (or with `None`, wipes) a session's sealed channel state.
    /// False when `fence` refused it (another replica holds the session).
    pub async fn set_session_state(
        &self,
        id: &str,
        state: Option<(&str, &[u8])>,
        fence: Option<&Fence>,
    ) -> Result<bool> {
        let (key_id, data) = state.unzip();
        let n = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(concat!(
                "UPDATE sessions SET state_key_id = $1, state = $2, updated_at = $3 WHERE id = $4 AND ",
                fenced!("$5", "$6", "$7")
            ))
            .bind(key_id)
            .bind(data)
            .bind(clock::now_ms())
            .bind(id)
            .bind(fence.map(|f| f.replica.as_str()))
            .bind(fence.map(|f| f.epoch))
            .bind(fence.map(|f| f.now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Records what the network says about a session's login (JSON).
    /// False when `fence` refused it (another replica holds the session).
    pub async fn set_session_network(
        &self,
        id: &str,
        network: &serde_json::Value,
        fence: Option<&Fence>,
    ) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(concat!(
                "UPDATE sessions SET network = $1 WHERE id = $2 AND ",
                fenced!("$3", "$4", "$5")
            ))
            .bind(network.to_string())
            .bind(id)
            .bind(fence.map(|f| f.replica.as_str()))
            .bind(fence.map(|f| f.epoch))
            .bind(fence.map(|f| f.now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Sessions that should be running (restored at start-up).
    pub async fn sessions_to_run(&self) -> Result<Vec<SessionRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, SessionRow>(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE desired_state = 'running' ORDER BY id"
            ))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Records a status change (and, when given, the new desired state).
    /// False when there is no such session, or `fence` refused it (another
    /// replica holds the session).
    pub async fn set_session_status(
        &self,
        id: &str,
        status: &str,
        reason: Option<&str>,
        desired: Option<&str>,
        fence: Option<&Fence>,
    ) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(concat!(
                "UPDATE sessions SET status = $1, status_reason = $2, \
                 desired_state = COALESCE($3, desired_state), updated_at = $4 WHERE id = $5 AND ",
                fenced!("$6", "$7", "$8")
            ))
            .bind(status)
            .bind(reason)
            .bind(desired)
            .bind(clock::now_ms())
            .bind(id)
            .bind(fence.map(|f| f.replica.as_str()))
            .bind(fence.map(|f| f.epoch))
            .bind(fence.map(|f| f.now))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn delete_session(
        &self,
        tenant_id: &str,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let done = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("DELETE FROM sessions WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                insert_audit!(&mut *tx, audit, Some(tenant_id), Some(id)).await?;
                tx.commit().await?;
            }
            n == 1
        });
        Ok(done)
    }
}
