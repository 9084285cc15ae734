//! API keys: stored as SHA-256 hashes (never in clear), looked up by hash on every
//! authenticated request, revoked by stamping `revoked_at` (kept for the audit trail).

use super::audit::{AuditEntry, insert_audit};
use super::tenants::{Tenant, TenantRow};
use super::{BeginWrite, Result, Store, StoreError, on_pool, on_write_pool};
use crate::scopes::Scopes;
use crate::{clock, ids};
use serde::Serialize;
use switchboard_crypto::ApiKeyHash;

/// An API key as listed: never the key itself, only its id, name and display prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The key's scopes as stored: names joined by spaces, `None` for every scope.
    pub scopes: Option<String>,
}

impl ApiKeyRecord {
    pub(crate) fn new(
        tenant_id: &str,
        name: Option<&str>,
        prefix: &str,
        scopes: Scopes,
        now: i64,
    ) -> Self {
        Self {
            id: ids::new_id(ids::API_KEY),
            tenant_id: tenant_id.to_owned(),
            name: name.map(str::to_owned),
            prefix: prefix.to_owned(),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
            scopes: scopes.to_stored(),
        }
    }

    /// What the key may do.
    pub fn scopes(&self) -> Result<Scopes> {
        Scopes::from_stored(self.scopes.as_deref()).map_err(StoreError::Corrupt)
    }
}

/// The result of a successful key lookup.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub key_id: String,
    pub scopes: Scopes,
    pub tenant: Tenant,
}

pub(crate) const INSERT_KEY: &str = "INSERT INTO api_keys (id, tenant_id, name, key_hash, prefix, created_at, scopes) VALUES ($1, $2, $3, $4, $5, $6, $7)";

#[derive(sqlx::FromRow)]
struct AuthRow {
    key_id: String,
    scopes: Option<String>,
    #[sqlx(flatten)]
    tenant: TenantRow,
}

impl Store {
    /// Adds a key to a tenant; `None` if the tenant does not exist.
    pub async fn create_api_key(
        &self,
        tenant_id: &str,
        name: Option<&str>,
        hash: &ApiKeyHash,
        prefix: &str,
        scopes: Scopes,
        audit: &AuditEntry,
    ) -> Result<Option<ApiKeyRecord>> {
        let now = clock::now_ms();
        let key = ApiKeyRecord::new(tenant_id, name, prefix, scopes, now);
        let created = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if exists {
                sqlx::query(INSERT_KEY)
                    .bind(&key.id)
                    .bind(tenant_id)
                    .bind(&key.name)
                    .bind(hash.as_bytes())
                    .bind(&key.prefix)
                    .bind(now)
                    .bind(&key.scopes)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| super::conflict_or(e, "api key hash"))?;
                let entry = AuditEntry {
                    details: serde_json::json!({
                        "name": name,
                        "prefix": prefix,
                        "scopes": key.scopes.as_deref().unwrap_or("*"),
                    }),
                    ..audit.clone()
                };
                insert_audit!(&mut *tx, entry, Some(tenant_id), Some(&key.id)).await?;
                tx.commit().await?;
            }
            exists
        });
        Ok(created.then_some(key))
    }

    /// A tenant's keys, revoked ones included, oldest first.
    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRecord>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, ApiKeyRecord>(
                "SELECT id, tenant_id, name, prefix, created_at, last_used_at, revoked_at, scopes \
                 FROM api_keys WHERE tenant_id = $1 ORDER BY id",
            )
            .bind(tenant_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Revokes a key of a tenant. `false` if no such active key belongs to that tenant.
    pub async fn revoke_api_key(
        &self,
        tenant_id: &str,
        key_id: &str,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let now = clock::now_ms();
        let revoked = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(key_id)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                insert_audit!(&mut *tx, audit, Some(tenant_id), Some(key_id)).await?;
                tx.commit().await?;
                self.keys_changed().await;
                true
            } else {
                false
            }
        });
        Ok(revoked)
    }

    /// Finds the active key with this hash and its tenant (whatever the tenant's
    /// status): from the cache when it was looked up less than [`KEYS_TTL`] ago and
    /// nothing changed since (see [`super::key_cache`]).
    ///
    /// [`KEYS_TTL`]: super::KEYS_TTL
    pub async fn authenticate(&self, hash: &ApiKeyHash) -> Result<Option<AuthenticatedKey>> {
        if let Some(key) = self.keys.get(hash.as_bytes()) {
            return Ok(Some(key));
        }
        let generation = self.keys.generation();
        let found = self.look_up_key(hash).await?;
        if let Some(key) = &found {
            self.keys.put(hash.as_bytes(), generation, key);
        }
        Ok(found)
    }

    async fn look_up_key(&self, hash: &ApiKeyHash) -> Result<Option<AuthenticatedKey>> {
        const SQL: &str = "SELECT k.id AS key_id, k.scopes, t.id, t.name, t.status, t.limits, t.created_at, t.updated_at \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL";
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, AuthRow>(SQL)
                .bind(hash.as_bytes())
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| {
            Ok(AuthenticatedKey {
                scopes: Scopes::from_stored(r.scopes.as_deref()).map_err(StoreError::Corrupt)?,
                key_id: r.key_id,
                tenant: Tenant::try_from(r.tenant)?,
            })
        })
        .transpose()
    }

    /// After a change to keys or tenants has committed: forgets this process's
    /// cached keys and tells the other processes to forget theirs (Postgres). A
    /// failed signal is logged; the others see the change within [`KEYS_TTL`].
    ///
    /// [`KEYS_TTL`]: super::KEYS_TTL
    pub(super) async fn keys_changed(&self) {
        self.keys.forget();
        if let Err(e) = self.notify(super::KEYS_CHANGED).await {
            tracing::warn!(error = %e, "key change not signalled; other replicas see it within the cache's bound");
        }
    }

    /// Forgets the cached keys (a replica's listener, when another process
    /// changed keys or signals may have been missed).
    pub fn forget_keys(&self) {
        self.keys.forget();
    }

    /// How many times this store has forgotten its cached keys: changes it made
    /// and changes signalled by other processes.
    pub fn key_changes_seen(&self) -> u64 {
        self.keys.generation()
    }

    /// Records that a key was used (callers throttle this; it is not per request).
    pub async fn touch_api_key(&self, key_id: &str) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(clock::now_ms())
                .bind(key_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
