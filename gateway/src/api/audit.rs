//! The audit log, read back: `GET /v1/audit` (the calling tenant's entries) and
//! `GET /v1/admin/audit` (every entry, operators' included; `tenant_id` narrows it).
//! Oldest first, cursor paging (`limit`, `after`). Append-only: no route changes an
//! entry, and the database refuses updates and deletes of its rows.

use super::auth::Caller;
use super::body::{DEFAULT_PAGE, parse_limit, query_pairs};
use super::{ApiError, ApiResult, Ctx, json};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use switchboard_actors::clock;
use switchboard_actors::storage::AuditRecord;

fn view(r: &AuditRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id.to_string(),
        "at": clock::rfc3339(r.at),
        "actor": r.actor,
        "tenant_id": r.tenant_id,
        "action": r.action,
        "target": r.target,
        "details": serde_json::from_str::<serde_json::Value>(&r.details).unwrap_or(serde_json::Value::Null),
        "request_id": r.request_id,
    })
}

async fn page(
    ctx: &Ctx<'_>,
    tenant: Option<&str>,
    query: Option<&str>,
    allowed: &[&str],
) -> ApiResult {
    let (mut limit, mut after, mut only) = (DEFAULT_PAGE, None, tenant.map(str::to_owned));
    for (k, v) in query_pairs(query, allowed)? {
        match k.as_str() {
            "limit" => limit = parse_limit(&v)?,
            "after" => {
                after = Some(v.parse::<i64>().map_err(|_| {
                    ApiError::validation(format!(
                        "`after` is a cursor from `next_cursor`, not `{v}`"
                    ))
                })?)
            }
            _ => only = Some(v),
        }
    }
    let mut rows = ctx
        .app
        .store
        .audit_page(only.as_deref(), after, limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let data: Vec<serde_json::Value> = rows.iter().map(view).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "data": data, "next_cursor": next_cursor }),
    )
}

/// `GET /v1/audit`.
pub async fn tenant(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    page(
        ctx,
        Some(&caller.tenant.id),
        req.uri().query(),
        &["limit", "after"],
    )
    .await
}

/// `GET /v1/admin/audit`.
pub async fn admin(ctx: &Ctx<'_>, req: Request<Incoming>) -> ApiResult {
    page(
        ctx,
        None,
        req.uri().query(),
        &["limit", "after", "tenant_id"],
    )
    .await
}
