//! Message routes: queue a send (`POST /v1/sessions/{id}/messages`, honouring
//! `Idempotency-Key`), read one message, list a session's messages (both
//! directions, cursor paging).
//!
//! A send is accepted (202, `queued`) while its session is running — `WORKING`, or
//! `STARTING`/`SCAN_QR` while it connects or restarts, in which case it waits in the
//! queue. A stopped, failed or logged-out session answers 409 `session_not_working`.
//! A full queue answers 429 `send_queue_full` with `Retry-After`. The same
//! Idempotency-Key with the same request returns the first message; with another
//! request, 422 `idempotency_key_reused`.

use super::auth::Caller;
use super::body::{page_query, read_json};
use super::{ApiError, ApiResult, Ctx, json};
use crate::views::EffectiveLimits;
use http::{HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use switchboard_actors::clock::rfc3339;
use switchboard_actors::ids;
use switchboard_actors::outbound::SendQuota;
use switchboard_actors::storage::{MESSAGE_BODY_PURPOSE, MessageRow};
use switchboard_crypto::Binding;

/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
const MAX_TO_CHARS: usize = 256;
const MAX_KEY_CHARS: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessage {
    to: String,
    text: String,
}

#[derive(Debug, Serialize)]
pub struct MessageView {
    pub id: String,
    pub session_id: String,
    pub direction: String,
    /// Recipient (outbound) or sender (inbound).
    pub peer: String,
    pub text: Option<String>,
    pub status: String,
    pub external_id: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn view(ctx: &Ctx<'_>, m: &MessageRow) -> MessageView {
    let binding = Binding {
        tenant_id: &m.tenant_id,
        record_id: &m.id,
        purpose: MESSAGE_BODY_PURPOSE,
    };
    let text = m
        .sealed()
        .and_then(|s| ctx.app.keyring.open(&s.key_id, &s.data, binding).ok())
        .map(|t| String::from_utf8_lossy(&t).into_owned());
    MessageView {
        id: m.id.clone(),
        session_id: m.session_id.clone(),
        direction: m.direction.clone(),
        peer: m.peer.clone(),
        text,
        status: m.status.clone(),
        external_id: m.external_id.clone(),
        error: m.error.clone(),
        created_at: rfc3339(m.created_at),
        updated_at: rfc3339(m.updated_at),
    }
}

pub fn quota(limits: &EffectiveLimits) -> SendQuota {
    SendQuota {
        per_second: limits.sends_per_second,
        burst: limits.send_burst,
    }
}

pub async fn send(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let session_id = ctx.params[0].as_str();
    if !ids::is_valid(super::sessions::SESSION_PREFIX, session_id) {
        return Err(ApiError::not_found("session"));
    }
    let key = req
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::validation("Idempotency-Key must be printable ASCII"))?;
    if key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_CHARS)
    {
        return Err(ApiError::validation(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters"
        )));
    }
    let body: SendMessage = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let to = body.to.trim();
    if to.is_empty() || to.chars().count() > MAX_TO_CHARS {
        return Err(ApiError::validation(format!(
            "`to` must be 1 to {MAX_TO_CHARS} characters"
        )));
    }
    if body.text.trim().is_empty() {
        return Err(ApiError::validation("`text` must not be empty"));
    }
    if body.text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::validation(format!(
            "`text` must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    let session = ctx
        .app
        .store
        .get_session(&caller.tenant.id, session_id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    if session.desired_state != "running" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "session_not_working",
            format!("the session is {}; start it before sending", session.status),
        ));
    }
    let hash = switchboard_crypto::ApiKeyHash::of(&format!("{session_id}\0{to}\0{}", body.text));
    let queued = crate::sends::queue_text(
        &ctx.app.sends(),
        &caller.tenant,
        &session,
        crate::sends::Text {
            to,
            text: &body.text,
            idempotency_key: key,
            request_hash: hash,
        },
    )
    .await;
    let (row, replayed) = match queued {
        Ok(q) => q,
        Err(crate::sends::SendError::KeyReused) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ));
        }
        Err(crate::sends::SendError::QueueFull {
            queued,
            retry_after_secs,
        }) => {
            return Err(ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "send_queue_full",
                    format!("{queued} sends are already queued"),
                )
            });
        }
        Err(crate::sends::SendError::Internal(e)) => return Err(ApiError::internal(e)),
    };
    let mut res = json(StatusCode::ACCEPTED, &view(ctx, &row))?;
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

pub async fn get(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let id = ctx.params[0].as_str();
    if !ids::is_valid(ids::MESSAGE, id) {
        return Err(ApiError::not_found("message"));
    }
    let m = ctx
        .app
        .store
        .get_message(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    json(StatusCode::OK, &view(ctx, &m))
}

pub async fn list(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let session_id = ctx.params[0].as_str();
    if !ids::is_valid(super::sessions::SESSION_PREFIX, session_id)
        || ctx
            .app
            .store
            .get_session(&caller.tenant.id, session_id)
            .await?
            .is_none()
    {
        return Err(ApiError::not_found("session"));
    }
    let page = page_query(req.uri().query())?;
    let mut rows = ctx
        .app
        .store
        .list_session_messages(
            &caller.tenant.id,
            session_id,
            page.after.as_deref(),
            page.limit + 1,
        )
        .await?;
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    let next_cursor = more.then(|| rows.last().map(|m| m.id.clone())).flatten();
    let data: Vec<MessageView> = rows.iter().map(|m| view(ctx, m)).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "data": data, "next_cursor": next_cursor }),
    )
}
