//! Tenant and key administration, shared by the HTTP admin API, the tenant's own key
//! routes and the `switchboard admin` CLI, so all three validate and record alike.
//!
//! Each operation validates its input, generates key material where needed, writes
//! through the store (which records the audit entry in the same transaction) and
//! returns the view to show. Nothing is written when validation fails.

use crate::api::ApiError;
use crate::config::DefaultLimits;
use crate::views::{CreatedKeyView, KeyView, TenantView};
use switchboard_actors::Store;
use switchboard_actors::scopes::Scopes;
use switchboard_actors::storage::{AuditEntry, LimitOverrides, LimitsPatch, TenantPatch};
use switchboard_crypto::GeneratedApiKey;

/// Longest tenant or key name accepted.
pub const MAX_NAME_CHARS: usize = 200;
/// Upper bound for any configured rate or burst.
pub const MAX_LIMIT: u32 = 1_000_000;

/// Checks a display name: trimmed, 1–200 characters, no control characters.
pub fn validate_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::validation(format!("`{field}` must not be empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(format!(
            "`{field}` must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(name.to_owned())
}

fn validate_limit(field: &str, v: Option<u32>) -> Result<(), ApiError> {
    match v {
        Some(n) if n == 0 || n > MAX_LIMIT => Err(ApiError::validation(format!(
            "`limits.{field}` must be between 1 and {MAX_LIMIT}"
        ))),
        _ => Ok(()),
    }
}

pub fn validate_overrides(l: &LimitOverrides) -> Result<(), ApiError> {
    validate_limit("api_requests_per_second", l.api_requests_per_second)?;
    validate_limit("api_burst", l.api_burst)
}

fn validate_limits_patch(l: &LimitsPatch) -> Result<(), ApiError> {
    validate_limit(
        "api_requests_per_second",
        l.api_requests_per_second.flatten(),
    )?;
    validate_limit("api_burst", l.api_burst.flatten())
}

fn generate_key() -> Result<GeneratedApiKey, ApiError> {
    GeneratedApiKey::generate().map_err(ApiError::internal)
}

/// Creates a tenant and its first key; returns `(tenant, first key with secret)`.
pub async fn create_tenant(
    store: &Store,
    defaults: &DefaultLimits,
    name: &str,
    limits: LimitOverrides,
    audit: AuditEntry,
) -> Result<(TenantView, CreatedKeyView), ApiError> {
    let name = validate_name("name", name)?;
    validate_overrides(&limits)?;
    let key = generate_key()?;
    let (tenant, record) = store
        .create_tenant(
            &name,
            &limits,
            Some("default"),
            &key.hash,
            &key.prefix,
            &audit,
        )
        .await?;
    Ok((
        TenantView::new(&tenant, defaults),
        CreatedKeyView {
            key: KeyView::from(&record),
            secret: key.key.expose().clone(),
        },
    ))
}

/// Applies a patch; `not_found` if the tenant does not exist.
pub async fn update_tenant(
    store: &Store,
    defaults: &DefaultLimits,
    id: &str,
    mut patch: TenantPatch,
    audit: AuditEntry,
) -> Result<TenantView, ApiError> {
    if let Some(name) = &patch.name {
        patch.name = Some(validate_name("name", name)?);
    }
    if let Some(l) = &patch.limits {
        validate_limits_patch(l)?;
    }
    let tenant = store
        .update_tenant(id, &patch, &audit)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(TenantView::new(&tenant, defaults))
}

/// Creates another key for a tenant holding `scopes`; `not_found` if the tenant
/// does not exist.
pub async fn create_key(
    store: &Store,
    tenant_id: &str,
    name: Option<&str>,
    scopes: Scopes,
    audit: AuditEntry,
) -> Result<CreatedKeyView, ApiError> {
    let name = name.map(|n| validate_name("name", n)).transpose()?;
    let key = generate_key()?;
    let record = store
        .create_api_key(
            tenant_id,
            name.as_deref(),
            &key.hash,
            &key.prefix,
            scopes,
            &audit,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(CreatedKeyView {
        key: KeyView::from(&record),
        secret: key.key.expose().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_name("name", "  Acme ").unwrap(), "Acme");
        assert!(validate_name("name", "   ").is_err());
        assert!(validate_name("name", "a\u{7}b").is_err());
        assert!(validate_name("name", &"x".repeat(201)).is_err());
        assert!(validate_name("name", &"é".repeat(200)).is_ok());
    }

    #[test]
    fn limits_must_be_positive_and_bounded() {
        let ok = LimitOverrides {
            api_requests_per_second: Some(5),
            ..Default::default()
        };
        assert!(validate_overrides(&ok).is_ok());
        let zero = LimitOverrides {
            api_requests_per_second: Some(0),
            ..Default::default()
        };
        assert!(validate_overrides(&zero).is_err());
    }
}
