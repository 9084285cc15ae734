//! API key routes: the admin's (`/v1/tenants/{id}/keys…`) and the tenant's own
//! (`/v1/keys…`). A tenant naming another tenant's key gets 404, never 403, so ids
//! do not leak.
//!
//! A key is made with `scopes` (a list of scope names) or without (every scope). A
//! tenant's key makes keys only within its own scopes: asking for one it lacks is
//! 403 `insufficient_scope` naming it, and a key made without a list gets the
//! maker's scopes. The admin may grant any.

use super::auth::Caller;
use super::body::read_json;
use super::{ApiError, ApiResult, Ctx, json, no_content};
use crate::admin;
use crate::views::KeyView;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use switchboard_actors::ids;
use switchboard_actors::scopes::{Scope, Scopes};
use switchboard_actors::storage::AuditEntry;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: Option<String>,
    scopes: Option<Vec<String>>,
}

/// The scopes asked for; `None` (no list) means the maker's own.
fn asked_scopes(body: &CreateKey) -> Result<Option<Scopes>, ApiError> {
    let Some(names) = &body.scopes else {
        return Ok(None);
    };
    Scopes::parse(names.iter().map(String::as_str))
        .map(Some)
        .map_err(|bad| {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_scope",
                format!("`{bad}` is not a scope; scopes are {}", known.join(", ")),
            )
        })
}

fn valid_tenant_id(id: &str) -> Result<&str, ApiError> {
    ids::is_valid(ids::TENANT, id)
        .then_some(id)
        .ok_or_else(|| ApiError::not_found("tenant"))
}

fn valid_key_id(id: &str) -> Result<&str, ApiError> {
    ids::is_valid(ids::API_KEY, id)
        .then_some(id)
        .ok_or_else(|| ApiError::not_found("api key"))
}

/// Creates a key of `tenant_id` for `actor`, who holds `maker` (every scope for the
/// admin).
async fn create(
    ctx: &Ctx<'_>,
    tenant_id: &str,
    actor: String,
    maker: Scopes,
    req: Request<Incoming>,
) -> ApiResult {
    let body: CreateKey = read_json(req, ctx.app.config.max_body_bytes, true).await?;
    let scopes = match asked_scopes(&body)? {
        Some(asked) => {
            if let Some(missing) = maker.missing_of(asked) {
                return Err(ApiError::insufficient_scope(missing));
            }
            asked
        }
        None => maker,
    };
    let audit =
        AuditEntry::new(actor, "api_key.create").request_id(Some(ctx.request_id.to_owned()));
    let created = admin::create_key(
        &ctx.app.store,
        tenant_id,
        body.name.as_deref(),
        scopes,
        audit,
    )
    .await?;
    tracing::info!(tenant_id = %tenant_id, key_id = %created.key.id, "api key created");
    json(StatusCode::CREATED, &created)
}

async fn list(ctx: &Ctx<'_>, tenant_id: &str) -> ApiResult {
    let keys = ctx.app.store.list_api_keys(tenant_id).await?;
    let data: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
    json(StatusCode::OK, &serde_json::json!({ "data": data }))
}

async fn revoke(ctx: &Ctx<'_>, tenant_id: &str, key_id: &str, actor: String) -> ApiResult {
    let key_id = valid_key_id(key_id)?;
    let audit =
        AuditEntry::new(actor, "api_key.revoke").request_id(Some(ctx.request_id.to_owned()));
    if !ctx
        .app
        .store
        .revoke_api_key(tenant_id, key_id, &audit)
        .await?
    {
        return Err(ApiError::not_found("api key"));
    }
    ctx.app.limiters.forget(key_id);
    tracing::info!(tenant_id = %tenant_id, key_id = %key_id, "api key revoked");
    no_content()
}

pub async fn create_for_tenant(ctx: &Ctx<'_>, req: Request<Incoming>) -> ApiResult {
    let tenant_id = valid_tenant_id(&ctx.params[0])?;
    create(ctx, tenant_id, "admin".into(), Scopes::all(), req).await
}

pub async fn list_for_tenant(ctx: &Ctx<'_>) -> ApiResult {
    let tenant_id = valid_tenant_id(&ctx.params[0])?;
    if ctx.app.store.get_tenant(tenant_id).await?.is_none() {
        return Err(ApiError::not_found("tenant"));
    }
    list(ctx, tenant_id).await
}

pub async fn revoke_for_tenant(ctx: &Ctx<'_>) -> ApiResult {
    let tenant_id = valid_tenant_id(&ctx.params[0])?;
    revoke(ctx, tenant_id, &ctx.params[1], "admin".into()).await
}

pub async fn create_own(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    create(
        ctx,
        &caller.tenant.id,
        caller.key_id.clone(),
        caller.scopes,
        req,
    )
    .await
}

pub async fn list_own(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    list(ctx, &caller.tenant.id).await
}

pub async fn revoke_own(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    revoke(
        ctx,
        &caller.tenant.id,
        &ctx.params[0],
        caller.key_id.clone(),
    )
    .await
}
