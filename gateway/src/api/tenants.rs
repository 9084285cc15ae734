//! Admin tenant routes (`/v1/tenants…`) and the tenant's own `GET /v1/me`.

use super::auth::Caller;
use super::body::{page_query, read_json};
use super::{ApiError, ApiResult, Ctx, json, no_content};
use crate::admin;
use crate::views::{Page, TenantView};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use switchboard_actors::ids;
use switchboard_actors::storage::{
    AuditEntry, LimitOverrides, LimitsPatch, TenantPatch, TenantStatus,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    #[serde(default)]
    limits: LimitOverrides,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTenant {
    name: Option<String>,
    status: Option<TenantStatus>,
    limits: Option<LimitsPatch>,
}

fn audit(ctx: &Ctx<'_>, action: &'static str) -> AuditEntry {
    AuditEntry::new("admin", action).request_id(Some(ctx.request_id.to_owned()))
}

/// The `{id}` path parameter, if it can name a tenant at all.
fn tenant_id<'a>(ctx: &'a Ctx<'_>) -> Result<&'a str, ApiError> {
    let id = ctx.params[0].as_str();
    if ids::is_valid(ids::TENANT, id) {
        Ok(id)
    } else {
        Err(ApiError::not_found("tenant"))
    }
}

pub async fn create(ctx: &Ctx<'_>, req: Request<Incoming>) -> ApiResult {
    let body: CreateTenant = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let (tenant, api_key) = admin::create_tenant(
        &ctx.app.store,
        &ctx.app.config.limits,
        &body.name,
        body.limits,
        audit(ctx, "tenant.create"),
    )
    .await?;
    tracing::info!(tenant_id = %tenant.id, "tenant created");
    json(
        StatusCode::CREATED,
        &serde_json::json!({ "tenant": tenant, "api_key": api_key }),
    )
}

pub async fn list(ctx: &Ctx<'_>, req: Request<Incoming>) -> ApiResult {
    let page = page_query(req.uri().query())?;
    let mut rows = ctx
        .app
        .store
        .list_tenants(page.after.as_deref(), page.limit + 1)
        .await?;
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    let next_cursor = more.then(|| rows.last().map(|t| t.id.clone())).flatten();
    let data = rows
        .iter()
        .map(|t| TenantView::new(t, &ctx.app.config.limits))
        .collect();
    json(StatusCode::OK, &Page { data, next_cursor })
}

pub async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let id = tenant_id(ctx)?;
    let tenant = ctx
        .app
        .store
        .get_tenant(id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    json(
        StatusCode::OK,
        &TenantView::new(&tenant, &ctx.app.config.limits),
    )
}

pub async fn update(ctx: &Ctx<'_>, req: Request<Incoming>) -> ApiResult {
    let id = tenant_id(ctx)?;
    let body: UpdateTenant = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let patch = TenantPatch {
        name: body.name,
        status: body.status,
        limits: body.limits,
    };
    let view = admin::update_tenant(
        &ctx.app.store,
        &ctx.app.config.limits,
        id,
        patch,
        audit(ctx, "tenant.update"),
    )
    .await?;
    // A running sender picks up new send limits at once.
    ctx.app.sends.limits_changed(id, &view.limits);
    json(StatusCode::OK, &view)
}

pub async fn delete(ctx: &Ctx<'_>) -> ApiResult {
    let id = tenant_id(ctx)?;
    let keys = ctx.app.store.list_api_keys(id).await?;
    if !ctx
        .app
        .store
        .delete_tenant(id, &audit(ctx, "tenant.delete"))
        .await?
    {
        return Err(ApiError::not_found("tenant"));
    }
    for k in keys {
        ctx.app.limiters.forget(&k.id);
    }
    tracing::info!(tenant_id = %id, "tenant deleted");
    no_content()
}

/// The calling tenant, and which key called with what scopes (any key may ask).
pub fn me(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let mut view = serde_json::to_value(TenantView::new(&caller.tenant, &ctx.app.config.limits))
        .map_err(ApiError::internal)?;
    view["key"] = serde_json::json!({
        "id": caller.key_id,
        "scopes": caller.scopes.names().collect::<Vec<_>>(),
    });
    json(StatusCode::OK, &view)
}
