//! Authentication: the admin token for admin routes, tenant API keys for the rest.
//!
//! Keys are accepted as `X-API-Key: <key>` or `Authorization: Bearer <key>`; the key
//! is hashed and looked up (from the store's key cache when it was looked up less
//! than `KEYS_TTL` ago and nothing changed since), so neither the key nor its hash
//! is ever logged. Missing
//! credentials → 401 `unauthenticated`; wrong or revoked → 401 `invalid_credentials`;
//! a disabled tenant → 403 `tenant_disabled`; over the key's rate → 429 with
//! `Retry-After`; a key without the route's scope → 403 `insufficient_scope`
//! ([`require`]).

use super::ApiError;
use crate::app::App;
use crate::views::EffectiveLimits;
use http::{HeaderMap, StatusCode, header};
use switchboard_actors::scopes::{Scope, Scopes};
use switchboard_actors::storage::{Tenant, TenantStatus};
use switchboard_crypto::{ApiKeyHash, constant_time_eq};

/// The caller of a tenant route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    /// What the key may do (checked per route before its handler runs).
    pub scopes: Scopes,
    pub tenant: Tenant,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::unauthenticated("admin token required as Authorization: Bearer")
    })?;
    if constant_time_eq(token.as_bytes(), app.admin_token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::invalid_credentials("invalid admin token"))
    }
}

pub async fn tenant(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| bearer(headers))
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated("API key required as X-API-Key or Authorization: Bearer")
        })?;
    let found = app
        .store
        .authenticate(&ApiKeyHash::of(key))
        .await?
        .ok_or_else(|| ApiError::invalid_credentials("invalid or revoked API key"))?;
    tracing::Span::current().record("tenant_id", found.tenant.id.as_str());
    if found.tenant.status == TenantStatus::Disabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant_disabled",
            "this tenant is disabled",
        ));
    }
    let limits = EffectiveLimits::of(&found.tenant.limits, &app.config.limits);
    let touch = app
        .limiters
        .check(
            &found.key_id,
            limits.api_requests_per_second,
            limits.api_burst,
        )
        .map_err(ApiError::rate_limited)?;
    if touch && let Err(e) = app.store.touch_api_key(&found.key_id).await {
        tracing::warn!(error = %e, "could not record API key use");
    }
    Ok(Caller {
        key_id: found.key_id,
        scopes: found.scopes,
        tenant: found.tenant,
    })
}

/// Lets the call through if the key holds `scope`; else 403 `insufficient_scope`
/// naming it.
pub fn require(caller: &Caller, scope: Scope) -> Result<(), ApiError> {
    if caller.scopes.contains(scope) {
        Ok(())
    } else {
        Err(ApiError::insufficient_scope(scope))
    }
}
