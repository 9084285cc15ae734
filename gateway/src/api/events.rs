//! Event routes (`/v1/events…`): list (cursor paging, filters), one event with its
//! delivery state, its attempts, and replay.

use super::auth::Caller;
use super::body::{DEFAULT_PAGE, invalid_query, parse_limit, query_pairs};
use super::{ApiError, ApiResult, Ctx, json};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use switchboard_actors::clock::{parse_rfc3339, rfc3339};
use switchboard_actors::events::body_binding;
use switchboard_actors::storage::{EventQuery, EventRow};

/// Prefix of event ids.
const EVENT_PREFIX: &str = "evt";

fn envelope(ctx: &Ctx<'_>, e: &EventRow) -> Result<Value, ApiError> {
    let plain = ctx
        .app
        .keyring
        .open(&e.body_key_id, &e.body, body_binding(&e.tenant_id, &e.id))
        .map_err(ApiError::internal)?;
    serde_json::from_slice(&plain).map_err(ApiError::internal)
}

pub async fn list(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let mut q = EventQuery {
        limit: DEFAULT_PAGE,
        ..Default::default()
    };
    for (k, v) in query_pairs(req.uri().query(), &["limit", "after", "type", "since"])? {
        match k.as_str() {
            "limit" => q.limit = parse_limit(&v)?,
            "after" => q.after = Some(v),
            "type" => q.event_type = Some(v),
            _ => {
                q.since = Some(
                    parse_rfc3339(&v)
                        .ok_or_else(|| invalid_query("`since` must be an RFC 3339 time".into()))?,
                );
            }
        }
    }
    let page = q.limit;
    q.limit += 1;
    let mut rows = ctx.app.store.list_events(&caller.tenant.id, &q).await?;
    let more = rows.len() > page as usize;
    rows.truncate(page as usize);
    let next_cursor = more.then(|| rows.last().map(|e| e.id.clone())).flatten();
    let data = rows
        .iter()
        .map(|e| envelope(ctx, e))
        .collect::<Result<Vec<_>, _>>()?;
    json(
        StatusCode::OK,
        &serde_json::json!({ "data": data, "next_cursor": next_cursor }),
    )
}

async fn load(ctx: &Ctx<'_>, caller: &Caller) -> Result<EventRow, ApiError> {
    let id = ctx.params[0].as_str();
    if !switchboard_actors::ids::is_valid(EVENT_PREFIX, id) {
        return Err(ApiError::not_found("event"));
    }
    ctx.app
        .store
        .get_event(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("event"))
}

pub async fn get(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let event = load(ctx, caller).await?;
    let deliveries: Vec<Value> = ctx
        .app
        .store
        .event_deliveries(&event.id)
        .await?
        .into_iter()
        .map(|d| {
            serde_json::json!({
                "endpoint_id": d.endpoint_id,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
                "last_attempt_at": d.last_attempt_at.map(rfc3339),
            })
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "event": envelope(ctx, &event)?, "deliveries": deliveries }),
    )
}

pub async fn attempts(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let event = load(ctx, caller).await?;
    let data: Vec<Value> = ctx
        .app
        .store
        .event_attempts(&event.id)
        .await?
        .into_iter()
        .map(|a| {
            serde_json::json!({
                "endpoint_id": a.endpoint_id,
                "attempted_at": rfc3339(a.attempted_at),
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "error": a.error,
                "response": a.response_snippet,
            })
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "data": data }))
}

pub async fn replay(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let event = load(ctx, caller).await?;
    let endpoints = ctx.app.store.list_endpoints(&caller.tenant.id).await?;
    let pairs: Vec<(String, String)> = endpoints
        .iter()
        .filter(|e| {
            e.status == switchboard_actors::storage::EndpointStatus::Enabled
                && e.wants(&event.event_type)
        })
        .map(|e| (event.id.clone(), e.id.clone()))
        .collect();
    ctx.app.store.requeue(&caller.tenant.id, &pairs).await?;
    ctx.app.dispatch_wakeup.notify_one();
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "event_id": event.id, "queued": pairs.len() }),
    )
}
