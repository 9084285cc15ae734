//! Session routes (`/v1/sessions…`): create, list, get, delete, and the idempotent
//! lifecycle actions start / stop / restart / logout; `fault` injects a failure into
//! a `sim` session (tests and the bench).
//!
//! The session row is the truth the API shows; the actors keep it current.

use super::auth::Caller;
use super::body::read_json;
use super::{ApiError, ApiResult, Ctx, json, no_content};
use crate::admin::validate_name;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use switchboard_actors::clock::{self, rfc3339};
use switchboard_actors::sessions::{Fault, SessionError, status};
use switchboard_actors::storage::{AuditEntry, SessionRow};
use switchboard_actors::{channels, ids};

/// Prefix of session ids.
pub const SESSION_PREFIX: &str = "ses";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSession {
    channel: String,
    name: Option<String>,
    #[serde(default)]
    config: serde_json::Value,
    /// Start it right away (default true).
    start: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    fault: Fault,
}

#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub channel: String,
    pub name: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    /// Whether the gateway keeps this session running (and restores it after restarts).
    pub running: bool,
    pub config: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&SessionRow> for SessionView {
    fn from(r: &SessionRow) -> Self {
        Self {
            id: r.id.clone(),
            channel: r.channel.clone(),
            name: r.name.clone(),
            status: r.status.clone(),
            status_reason: r.status_reason.clone(),
            running: r.desired_state == "running",
            config: serde_json::from_str(&r.config).unwrap_or(serde_json::Value::Null),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

fn audit(ctx: &Ctx<'_>, caller: &Caller, action: &'static str) -> AuditEntry {
    AuditEntry::new(caller.key_id.clone(), action).request_id(Some(ctx.request_id.to_owned()))
}

fn session_error(e: SessionError) -> ApiError {
    match e {
        SessionError::NotRunning => ApiError::new(
            StatusCode::CONFLICT,
            "session_not_running",
            "the session is not running",
        ),
        SessionError::Timeout => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "session_busy",
            "the session did not answer in time; retry",
        ),
        SessionError::Failed(m) => ApiError::new(StatusCode::CONFLICT, "session_failed", m),
    }
}

async fn load(ctx: &Ctx<'_>, caller: &Caller) -> Result<SessionRow, ApiError> {
    let id = ctx.params[0].as_str();
    if !ids::is_valid(SESSION_PREFIX, id) {
        return Err(ApiError::not_found("session"));
    }
    ctx.app
        .store
        .get_session(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))
}

async fn view(ctx: &Ctx<'_>, caller: &Caller, id: &str) -> ApiResult {
    let row = ctx
        .app
        .store
        .get_session(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    json(StatusCode::OK, &SessionView::from(&row))
}

pub async fn create(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let body: CreateSession = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    if !channels::KNOWN.contains(&body.channel.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_channel",
            format!(
                "unknown channel `{}` (known: {})",
                body.channel,
                channels::KNOWN.join(", ")
            ),
        ));
    }
    let name = body
        .name
        .as_deref()
        .map(|n| validate_name("name", n))
        .transpose()?;
    let id = ids::new_id(SESSION_PREFIX);
    // Building the channel validates its configuration without connecting anything.
    channels::build(&body.channel, &id, &body.config).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_session_config",
            e.to_string(),
        )
    })?;
    let now = clock::now_ms();
    let config = if body.config.is_null() {
        serde_json::json!({})
    } else {
        body.config
    };
    let row = SessionRow {
        id: id.clone(),
        tenant_id: caller.tenant.id.clone(),
        channel: body.channel,
        name,
        status: status::STOPPED.into(),
        status_reason: Some("created".into()),
        desired_state: "stopped".into(),
        config: config.to_string(),
        created_at: now,
        updated_at: now,
    };
    ctx.app
        .store
        .create_session(&row, &audit(ctx, caller, "session.create"))
        .await?;
    if body.start.unwrap_or(true) {
        ctx.app.sessions.start(row).await.map_err(session_error)?;
    }
    let mut res = view(ctx, caller, &id).await?;
    *res.status_mut() = StatusCode::CREATED;
    Ok(res)
}

pub async fn list(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let rows = ctx.app.store.list_sessions(&caller.tenant.id).await?;
    let data: Vec<SessionView> = rows.iter().map(SessionView::from).collect();
    json(StatusCode::OK, &serde_json::json!({ "data": data }))
}

pub async fn get(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    json(
        StatusCode::OK,
        &SessionView::from(&load(ctx, caller).await?),
    )
}

pub async fn delete(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    ctx.app
        .sessions
        .stop(&caller.tenant.id, &row.id)
        .await
        .map_err(session_error)?;
    ctx.app
        .store
        .delete_session(
            &caller.tenant.id,
            &row.id,
            &audit(ctx, caller, "session.delete"),
        )
        .await?;
    no_content()
}

pub async fn start(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    ctx.app
        .sessions
        .start(row.clone())
        .await
        .map_err(session_error)?;
    view(ctx, caller, &row.id).await
}

pub async fn stop(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    ctx.app
        .sessions
        .stop(&caller.tenant.id, &row.id)
        .await
        .map_err(session_error)?;
    view(ctx, caller, &row.id).await
}

pub async fn restart(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    ctx.app
        .sessions
        .stop(&caller.tenant.id, &row.id)
        .await
        .map_err(session_error)?;
    ctx.app
        .sessions
        .start(row.clone())
        .await
        .map_err(session_error)?;
    view(ctx, caller, &row.id).await
}

pub async fn logout(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    ctx.app
        .sessions
        .logout(&caller.tenant.id, &row.id)
        .await
        .map_err(session_error)?;
    view(ctx, caller, &row.id).await
}

pub async fn fault(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let row = load(ctx, caller).await?;
    let body: FaultBody = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    if row.channel != "sim" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_sim",
            "faults can only be injected into sim sessions",
        ));
    }
    ctx.app
        .sessions
        .fault(&caller.tenant.id, &row.id, body.fault)
        .await
        .map_err(session_error)?;
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "id": row.id, "fault": body.fault }),
    )
}
