//! JSON shapes the API and the admin CLI print: tenants, keys, limits, timestamps.
//!
//! Stored rows carry unix milliseconds; people and tools get RFC 3339 UTC strings.

use crate::config::DefaultLimits;
use serde::Serialize;
use switchboard_actors::clock::rfc3339;
pub use switchboard_actors::outbound::EffectiveLimits;
use switchboard_actors::storage::{ApiKeyRecord, LimitOverrides, Tenant, TenantStatus};

#[derive(Debug, Serialize)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub status: TenantStatus,
    /// What applies now.
    pub limits: EffectiveLimits,
    /// What was set for this tenant (the rest comes from the gateway's defaults).
    pub limit_overrides: LimitOverrides,
    pub created_at: String,
    pub updated_at: String,
}

impl TenantView {
    pub fn new(t: &Tenant, defaults: &DefaultLimits) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            status: t.status,
            limits: EffectiveLimits::of(&t.limits, defaults),
            limit_overrides: t.limits.clone(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub status: &'static str,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// What the key may do.
    pub scopes: Vec<&'static str>,
}

impl From<&ApiKeyRecord> for KeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            id: k.id.clone(),
            tenant_id: k.tenant_id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            status: if k.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            // A stored value this build cannot read grants nothing.
            scopes: k
                .scopes()
                .map_or_else(|_| Vec::new(), |s| s.names().collect()),
        }
    }
}

/// A key as returned at creation: the only time the clear key is shown.
#[derive(Serialize)]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    /// The API key. Shown once; store it now.
    #[serde(rename = "key")]
    pub secret: String,
}

impl std::fmt::Debug for CreatedKeyView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKeyView")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// One page of a listing; `next_cursor` is passed back as `after`.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
