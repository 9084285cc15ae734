//! A tenant's consent settings (`tenant_settings`): see [`crate::consent`].

use super::audit::{AuditEntry, insert_audit};
use super::{BeginWrite, Result, Store, StoreError, on_pool, on_write_pool};
use crate::consent::ConsentSettings;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a replica uses settings it read before reading them again (a change
/// made through another replica is seen within this).
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);

impl Store {
    /// The tenant's consent settings (the defaults where it has none), read at most
    /// once per [`SETTINGS_TTL`].
    pub async fn consent(&self, tenant_id: &str) -> Result<Arc<ConsentSettings>> {
        if let Some((at, s)) = self
            .consent_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant_id)
            && at.elapsed() < SETTINGS_TTL
        {
            return Ok(s.clone());
        }
        let body: Option<String> = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT body FROM tenant_settings WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(pool)
                .await?
        });
        let settings = match body {
            Some(b) => serde_json::from_str(&b)
                .map_err(|e| StoreError::Corrupt(format!("tenant {tenant_id} settings: {e}")))?,
            None => ConsentSettings::default(),
        };
        let settings = Arc::new(settings);
        let mut cache = self
            .consent_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(tenant_id.to_owned(), (Instant::now(), settings.clone()));
        Ok(settings)
    }

    /// Replaces the tenant's consent settings, audited in the same transaction.
    pub async fn put_consent(
        &self,
        tenant_id: &str,
        settings: &ConsentSettings,
        audit: &AuditEntry,
    ) -> Result<()> {
        let body = serde_json::to_string(settings)
            .map_err(|e| StoreError::Corrupt(format!("settings not serialised: {e}")))?;
        let now = crate::clock::now_ms();
        on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO tenant_settings (tenant_id, body, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .bind(tenant_id)
            .bind(&body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit, Some(tenant_id), Some(tenant_id)).await?;
            tx.commit().await?;
        });
        self.consent_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(tenant_id);
        Ok(())
    }
}
