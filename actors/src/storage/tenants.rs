//! Tenants: the unit of isolation. Every other row belongs to exactly one tenant and
//! is deleted with it.
//!
//! A tenant's `limits` column holds only the operator's overrides; the gateway fills
//! the rest from its configured defaults, so changing a default reaches every tenant
//! that was not given its own value.

use super::api_keys::{self, ApiKeyRecord};
use super::audit::{AuditEntry, insert_audit};
use super::{BeginWrite, Result, Store, StoreError, on_pool, on_write_pool};
use crate::scopes::Scopes;
use crate::{clock, ids};
use serde::{Deserialize, Deserializer, Serialize};
use switchboard_crypto::ApiKeyHash;

/// Whether a tenant's keys are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Disabled,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            other => Err(StoreError::Corrupt(format!("tenant status `{other}`"))),
        }
    }
}

/// Per-tenant overrides of the configured default limits. `None` = use the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Sustained API requests per second per API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_requests_per_second: Option<u32>,
    /// API requests a key may make at once above the sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_burst: Option<u32>,
    /// Sustained outbound messages per second for the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sends_per_second: Option<u32>,
    /// Sends allowed at once above the sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_burst: Option<u32>,
    /// Most sends waiting in the queue; more are refused with 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_sends: Option<u32>,
}

/// A change to [`LimitOverrides`]: absent = unchanged, `null` = back to the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    #[serde(default, deserialize_with = "present")]
    pub api_requests_per_second: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub api_burst: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub sends_per_second: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub send_burst: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub max_queued_sends: Option<Option<u32>>,
}

/// Deserializes a field that was present (possibly `null`) as `Some(..)`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl LimitOverrides {
    pub fn apply(&mut self, patch: &LimitsPatch) {
        if let Some(v) = patch.api_requests_per_second {
            self.api_requests_per_second = v;
        }
        if let Some(v) = patch.api_burst {
            self.api_burst = v;
        }
        if let Some(v) = patch.sends_per_second {
            self.sends_per_second = v;
        }
        if let Some(v) = patch.send_burst {
            self.send_burst = v;
        }
        if let Some(v) = patch.max_queued_sends {
            self.max_queued_sends = v;
        }
    }
}

/// A change to a tenant (admin `PATCH`).
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub status: Option<TenantStatus>,
    pub limits: Option<LimitsPatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub status: TenantStatus,
    pub limits: LimitOverrides,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub limits: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self> {
        Ok(Tenant {
            status: TenantStatus::parse(&r.status)?,
            limits: serde_json::from_str(&r.limits)
                .map_err(|e| StoreError::Corrupt(format!("tenant {} limits: {e}", r.id)))?,
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// The tenant columns in [`TenantRow`] order, as a literal for `concat!`.
macro_rules! tenant_columns {
    () => {
        "id, name, status, limits, created_at, updated_at"
    };
}

fn limits_json(l: &LimitOverrides) -> String {
    serde_json::to_string(l).unwrap_or_else(|_| "{}".into())
}

impl Store {
    /// Creates a tenant together with its first API key (one transaction).
    pub async fn create_tenant(
        &self,
        name: &str,
        limits: &LimitOverrides,
        key_name: Option<&str>,
        key_hash: &ApiKeyHash,
        key_prefix: &str,
        audit: &AuditEntry,
    ) -> Result<(Tenant, ApiKeyRecord)> {
        let now = clock::now_ms();
        let tenant = Tenant {
            id: ids::new_id(ids::TENANT),
            name: name.to_owned(),
            status: TenantStatus::Active,
            limits: limits.clone(),
            created_at: now,
            updated_at: now,
        };
        let key = ApiKeyRecord::new(&tenant.id, key_name, key_prefix, Scopes::all(), now);
        on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(concat!(
                "INSERT INTO tenants (",
                tenant_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6)"
            ))
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(tenant.status.as_str())
            .bind(limits_json(&tenant.limits))
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(api_keys::INSERT_KEY)
                .bind(&key.id)
                .bind(&key.tenant_id)
                .bind(&key.name)
                .bind(key_hash.as_bytes())
                .bind(&key.prefix)
                .bind(now)
                .bind(&key.scopes)
                .execute(&mut *tx)
                .await
                .map_err(|e| super::conflict_or(e, "api key hash"))?;
            let details = serde_json::json!({ "name": name, "first_key_id": key.id });
            let entry = AuditEntry {
                details,
                ..audit.clone()
            };
            insert_audit!(&mut *tx, entry, Some(&tenant.id), Some(&tenant.id)).await?;
            tx.commit().await?;
        });
        Ok((tenant, key))
    }

    /// Tenants in id (= creation) order, starting after `after`.
    pub async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, TenantRow>(concat!(
                "SELECT ",
                tenant_columns!(),
                " FROM tenants WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
            ))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Tenant::try_from).collect()
    }

    pub async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, TenantRow>(concat!(
                "SELECT ",
                tenant_columns!(),
                " FROM tenants WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.map(Tenant::try_from).transpose()
    }

    /// Applies `patch`; `None` if the tenant does not exist.
    pub async fn update_tenant(
        &self,
        id: &str,
        patch: &TenantPatch,
        audit: &AuditEntry,
    ) -> Result<Option<Tenant>> {
        let now = clock::now_ms();
        let updated = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            // Read-modify-write under the transaction: the UPDATE below re-checks
            // `updated_at` so a concurrent PATCH cannot be silently overwritten.
            let row = sqlx::query_as::<_, TenantRow>(concat!(
                "SELECT ",
                tenant_columns!(),
                " FROM tenants WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => None,
                Some(row) => {
                    let mut t = Tenant::try_from(row)?;
                    let before = t.updated_at;
                    if let Some(name) = &patch.name {
                        t.name = name.clone();
                    }
                    if let Some(status) = patch.status {
                        t.status = status;
                    }
                    if let Some(l) = &patch.limits {
                        t.limits.apply(l);
                    }
                    t.updated_at = now.max(before + 1);
                    let done = sqlx::query(
                        "UPDATE tenants SET name = $1, status = $2, limits = $3, updated_at = $4 \
                         WHERE id = $5 AND updated_at = $6",
                    )
                    .bind(&t.name)
                    .bind(t.status.as_str())
                    .bind(limits_json(&t.limits))
                    .bind(t.updated_at)
                    .bind(id)
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Conflict(
                            "tenant changed concurrently; retry".into(),
                        ));
                    }
                    let details = serde_json::json!({
                        "name": t.name, "status": t.status, "limits": t.limits,
                    });
                    let entry = AuditEntry {
                        details,
                        ..audit.clone()
                    };
                    insert_audit!(&mut *tx, entry, Some(id), Some(id)).await?;
                    tx.commit().await?;
                    self.keys_changed().await;
                    Some(t)
                }
            }
        });
        Ok(updated)
    }

    /// Deletes a tenant and everything it owns. `false` if it did not exist.
    pub async fn delete_tenant(&self, id: &str, audit: &AuditEntry) -> Result<bool> {
        let deleted = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 1 {
                insert_audit!(&mut *tx, audit, Some(id), Some(id)).await?;
                tx.commit().await?;
                self.keys_changed().await;
                true
            } else {
                false
            }
        });
        Ok(deleted)
    }
}
