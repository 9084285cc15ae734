//! Webhook endpoints: where a tenant's events are delivered. Secrets are stored
//! sealed (see `switchboard_crypto::envelope`); while a secret is being rotated the
//! previous one is kept, also sealed, until `previous_expires_at`.

use super::audit::{AuditEntry, insert_audit};
use super::{BeginWrite, Result, Store, StoreError, on_pool, on_write_pool};
use crate::clock;
use serde::{Deserialize, Serialize};
use switchboard_crypto::Sealed;

/// Whether deliveries to an endpoint are attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub description: Option<String>,
    /// Event types delivered (`message.*` style prefixes allowed); `None` = all.
    pub event_types: Option<Vec<String>>,
    pub secret: Sealed,
    pub previous_secret: Option<Sealed>,
    pub previous_expires_at: Option<i64>,
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    /// Strict order: one delivery in flight, later events wait for earlier ones.
    pub fifo: bool,
    /// Most deliveries in flight at once (1 when `fifo`).
    pub max_in_flight: i64,
    /// Since when every attempt has failed (cleared by a success).
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Endpoint {
    /// Whether an event of `event_type` goes to this endpoint.
    pub fn wants(&self, event_type: &str) -> bool {
        type_matches(self.event_types.as_deref(), event_type)
    }
}

/// `None` matches everything; `a.b` matches exactly; `a.*` matches `a.` prefixes; `*` all.
pub fn type_matches(filters: Option<&[String]>, event_type: &str) -> bool {
    match filters {
        None => true,
        Some(list) => list.iter().any(|f| {
            f == "*"
                || f == event_type
                || f.strip_suffix('*')
                    .is_some_and(|p| p.ends_with('.') && event_type.starts_with(p))
        }),
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EndpointRow {
    id: String,
    tenant_id: String,
    url: String,
    description: Option<String>,
    event_types: Option<String>,
    secret_key_id: String,
    secret: Vec<u8>,
    previous_secret_key_id: Option<String>,
    previous_secret: Option<Vec<u8>>,
    previous_expires_at: Option<i64>,
    status: String,
    disabled_reason: Option<String>,
    fifo: bool,
    max_in_flight: i64,
    failing_since: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

macro_rules! endpoint_columns {
    () => {
        "id, tenant_id, url, description, event_types, secret_key_id, secret, previous_secret_key_id, \
         previous_secret, previous_expires_at, status, disabled_reason, fifo, max_in_flight, failing_since, \
         created_at, updated_at"
    };
}

impl TryFrom<EndpointRow> for Endpoint {
    type Error = StoreError;
    fn try_from(r: EndpointRow) -> Result<Self> {
        let event_types = r
            .event_types
            .map(|t| serde_json::from_str::<Vec<String>>(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("endpoint {} event_types: {e}", r.id)))?;
        let status = match r.status.as_str() {
            "enabled" => EndpointStatus::Enabled,
            "disabled" => EndpointStatus::Disabled,
            other => return Err(StoreError::Corrupt(format!("endpoint status `{other}`"))),
        };
        let previous_secret = match (r.previous_secret_key_id, r.previous_secret) {
            (Some(key_id), Some(data)) => Some(Sealed { key_id, data }),
            _ => None,
        };
        Ok(Endpoint {
            id: r.id,
            tenant_id: r.tenant_id,
            url: r.url,
            description: r.description,
            event_types,
            secret: Sealed {
                key_id: r.secret_key_id,
                data: r.secret,
            },
            previous_secret,
            previous_expires_at: r.previous_expires_at,
            status,
            disabled_reason: r.disabled_reason,
            fifo: r.fifo,
            max_in_flight: r.max_in_flight,
            failing_since: r.failing_since,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A change to an endpoint (tenant `PATCH`). `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Option<Vec<String>>>,
    pub status: Option<EndpointStatus>,
    pub fifo: Option<bool>,
    pub max_in_flight: Option<i64>,
}

fn types_json(t: &Option<Vec<String>>) -> Option<String> {
    t.as_ref()
        .map(|v| serde_json::to_string(v).unwrap_or_else(|_| "[]".into()))
}

impl Store {
    pub async fn create_endpoint(&self, e: &Endpoint, audit: &AuditEntry) -> Result<()> {
        on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(concat!(
                "INSERT INTO webhook_endpoints (",
                endpoint_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            ))
            .bind(&e.id)
            .bind(&e.tenant_id)
            .bind(&e.url)
            .bind(&e.description)
            .bind(types_json(&e.event_types))
            .bind(&e.secret.key_id)
            .bind(&e.secret.data)
            .bind(e.previous_secret.as_ref().map(|s| &s.key_id))
            .bind(e.previous_secret.as_ref().map(|s| &s.data))
            .bind(e.previous_expires_at)
            .bind(e.status.as_str())
            .bind(&e.disabled_reason)
            .bind(e.fifo)
            .bind(e.max_in_flight)
            .bind(e.failing_since)
            .bind(e.created_at)
            .bind(e.updated_at)
            .execute(&mut *tx)
            .await?;
            let entry = AuditEntry {
                details: serde_json::json!({ "url": e.url, "event_types": e.event_types }),
                ..audit.clone()
            };
            insert_audit!(&mut *tx, entry, Some(&e.tenant_id), Some(&e.id)).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn list_endpoints(&self, tenant_id: &str) -> Result<Vec<Endpoint>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, EndpointRow>(concat!(
                "SELECT ",
                endpoint_columns!(),
                " FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id"
            ))
            .bind(tenant_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Endpoint::try_from).collect()
    }

    /// One endpoint of one tenant (`None` also when it belongs to another tenant).
    pub async fn get_endpoint(&self, tenant_id: &str, id: &str) -> Result<Option<Endpoint>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, EndpointRow>(concat!(
                "SELECT ",
                endpoint_columns!(),
                " FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.map(Endpoint::try_from).transpose()
    }

    /// Endpoints by id, whatever their tenant (for the dispatcher).
    pub async fn endpoints_by_ids(&self, ids: &[String]) -> Result<Vec<Endpoint>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows = on_pool!(self, |pool| {
                let mut q = sqlx::QueryBuilder::new(concat!(
                    "SELECT ",
                    endpoint_columns!(),
                    " FROM webhook_endpoints WHERE id IN ("
                ));
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(id);
                }
                q.push(")");
                q.build_query_as::<EndpointRow>().fetch_all(pool).await?
            });
            for r in rows {
                out.push(Endpoint::try_from(r)?);
            }
        }
        Ok(out)
    }

    /// Applies `patch` and returns the endpoint as it is now.
    pub async fn update_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
        patch: &EndpointPatch,
        audit: &AuditEntry,
    ) -> Result<Option<Endpoint>> {
        let Some(mut e) = self.get_endpoint(tenant_id, id).await? else {
            return Ok(None);
        };
        let before = e.updated_at;
        if let Some(url) = &patch.url {
            e.url = url.clone();
        }
        if let Some(d) = &patch.description {
            e.description = d.clone();
        }
        if let Some(t) = &patch.event_types {
            e.event_types = t.clone();
        }
        if let Some(s) = patch.status {
            if s == EndpointStatus::Enabled && e.status == EndpointStatus::Disabled {
                // Re-enabling starts a fresh failure window.
                e.failing_since = None;
                e.disabled_reason = None;
            }
            if s == EndpointStatus::Disabled && e.status == EndpointStatus::Enabled {
                e.disabled_reason = Some("disabled by the tenant".into());
            }
            e.status = s;
        }
        if let Some(f) = patch.fifo {
            e.fifo = f;
        }
        if let Some(m) = patch.max_in_flight {
            e.max_in_flight = m;
        }
        e.updated_at = clock::now_ms().max(before + 1);
        let done = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE webhook_endpoints SET url = $1, description = $2, event_types = $3, status = $4, \
                 disabled_reason = $5, fifo = $6, max_in_flight = $7, failing_since = $8, updated_at = $9 \
                 WHERE id = $10 AND tenant_id = $11 AND updated_at = $12",
            )
            .bind(&e.url)
            .bind(&e.description)
            .bind(types_json(&e.event_types))
            .bind(e.status.as_str())
            .bind(&e.disabled_reason)
            .bind(e.fifo)
            .bind(e.max_in_flight)
            .bind(e.failing_since)
            .bind(e.updated_at)
            .bind(id)
            .bind(tenant_id)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 1 {
                let entry = AuditEntry {
                    details: serde_json::json!({ "url": e.url, "status": e.status, "event_types": e.event_types }),
                    ..audit.clone()
                };
                insert_audit!(&mut *tx, entry, Some(tenant_id), Some(id)).await?;
                tx.commit().await?;
            }
            done
        });
        if done == 0 {
            return Err(StoreError::Conflict(
                "endpoint changed concurrently; retry".into(),
            ));
        }
        Ok(Some(e))
    }

    /// Makes `new` the signing secret; the old one keeps signing until `previous_expires_at`.
    pub async fn rotate_endpoint_secret(
        &self,
        tenant_id: &str,
        id: &str,
        new: &Sealed,
        previous_expires_at: i64,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let now = clock::now_ms();
        let done = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE webhook_endpoints SET previous_secret_key_id = secret_key_id, previous_secret = secret, \
                 previous_expires_at = $1, secret_key_id = $2, secret = $3, updated_at = $4 \
                 WHERE id = $5 AND tenant_id = $6",
            )
            .bind(previous_expires_at)
            .bind(&new.key_id)
            .bind(&new.data)
            .bind(now)
            .bind(id)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 1 {
                insert_audit!(&mut *tx, audit, Some(tenant_id), Some(id)).await?;
                tx.commit().await?;
            }
            done == 1
        });
        Ok(done)
    }

    pub async fn delete_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let done = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
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

    /// Disables an enabled endpoint (dispatcher: 410 Gone or failing too long).
    /// Returns `false` if it was already disabled or is gone.
    pub async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'enabled'",
            )
            .bind(reason)
            .bind(clock::now_ms())
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::type_matches;

    #[test]
    fn event_type_filters() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(type_matches(None, "message.received"));
        assert!(type_matches(Some(&f(&["message.*"])), "message.received"));
        assert!(!type_matches(Some(&f(&["message.*"])), "messages.x"));
        assert!(type_matches(
            Some(&f(&["session.status", "message.received"])),
            "session.status"
        ));
        assert!(!type_matches(Some(&f(&["session.status"])), "session.qr"));
        assert!(type_matches(Some(&f(&["*"])), "anything"));
        assert!(!type_matches(Some(&[]), "anything"));
    }
}
