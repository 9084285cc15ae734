//! Reply drafts the RAG actor kept for a person to decide on (mode `draft`, or a
//! contact auto-replies may not go to).
//!
//! - `GET /v1/drafts[?status=pending|approved|rejected][&limit=]`.
//! - `POST /v1/drafts/{id}/approve` (optional `{"text"}` to edit it first): claimed
//!   first, so of two approvals racing one sends; then queued like any send, keyed by
//!   the draft so it goes out once; a `rag.reply` event says who approved it.
//! - `POST /v1/drafts/{id}/reject`.

use super::auth::Caller;
use super::body::{query_pairs, read_json};
use super::{ApiError, ApiResult, Ctx, json};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use switchboard_actors::clock::rfc3339;
use switchboard_actors::events::Publish;
use switchboard_actors::ids;
use switchboard_actors::outbound::{Idempotency, KeyScope, NewSend};
use switchboard_actors::rag_host::{draft_binding, seal_draft};
use switchboard_actors::storage::{DraftRow, SessionRow};
use switchboard_rag::actor::RAG_REPLY;

#[derive(Debug, Serialize)]
struct DraftView {
    id: String,
    session_id: String,
    event_id: String,
    to: String,
    question: Option<String>,
    text: Option<String>,
    status: String,
    reason: String,
    intent: String,
    source: String,
    message_id: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Deserialize)]
struct DraftBody {
    question: String,
    text: String,
}

fn draft_view(ctx: &Ctx<'_>, d: &DraftRow) -> DraftView {
    let body: Option<DraftBody> = ctx
        .app
        .keyring
        .open(&d.body_key_id, &d.body, draft_binding(&d.tenant_id, &d.id))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (question, text) = body.map_or((None, None), |b| (Some(b.question), Some(b.text)));
    DraftView {
        id: d.id.clone(),
        session_id: d.session_id.clone(),
        event_id: d.event_id.clone(),
        to: d.peer.clone(),
        question,
        text,
        status: d.status.clone(),
        reason: d.reason.clone(),
        intent: d.intent.clone(),
        source: d.source.clone(),
        message_id: d.message_id.clone(),
        created_at: rfc3339(d.created_at),
        updated_at: rfc3339(d.updated_at),
    }
}

pub async fn list(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let mut status = None;
    let mut limit = 50i64;
    for (k, v) in query_pairs(req.uri().query(), &["status", "limit"])? {
        match k.as_str() {
            "status" if matches!(v.as_str(), "pending" | "approved" | "rejected") => {
                status = Some(v)
            }
            "status" => {
                return Err(super::body::invalid_query(
                    "`status` must be pending, approved or rejected".into(),
                ));
            }
            _ => limit = i64::from(super::body::parse_limit(&v)?),
        }
    }
    let rows = ctx
        .app
        .store
        .list_drafts(&caller.tenant.id, status.as_deref(), limit)
        .await?;
    let data: Vec<DraftView> = rows.iter().map(|d| draft_view(ctx, d)).collect();
    json(StatusCode::OK, &serde_json::json!({ "data": data }))
}

async fn load_draft(ctx: &Ctx<'_>, caller: &Caller) -> Result<DraftRow, ApiError> {
    let id = ctx.params[0].as_str();
    if !ids::is_valid(ids::DRAFT, id) {
        return Err(ApiError::not_found("draft"));
    }
    ctx.app
        .store
        .get_draft(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("draft"))
}

fn not_pending(d: &DraftRow) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "draft_not_pending",
        format!("the draft is already {}", d.status),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    text: Option<String>,
}

pub async fn approve(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let edit: ApproveBody = read_json(req, ctx.app.config.max_body_bytes, true).await?;
    let draft = load_draft(ctx, caller).await?;
    if draft.status != "pending" {
        return Err(not_pending(&draft));
    }
    let tenant = &caller.tenant.id;
    let stored = draft_view(ctx, &draft);
    let text = match edit.text.as_deref().map(str::trim) {
        Some("") => return Err(ApiError::validation("`text` must not be empty")),
        Some(t) if t.chars().count() > super::messages::MAX_TEXT_CHARS => {
            return Err(ApiError::validation(format!(
                "`text` must be at most {} characters",
                super::messages::MAX_TEXT_CHARS
            )));
        }
        Some(t) => t.to_owned(),
        None => stored
            .text
            .clone()
            .ok_or_else(|| ApiError::internal("a draft's body could not be opened"))?,
    };
    let session: SessionRow = ctx
        .app
        .store
        .get_session(tenant, &draft.session_id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    let edited = edit.text.is_some();
    let sealed = if edited {
        let question = stored.question.clone().unwrap_or_default();
        Some(
            seal_draft(&ctx.app.keyring, tenant, &draft.id, &question, &text)
                .map_err(ApiError::internal)?,
        )
    } else {
        None
    };
    // Claim it first: of two approvals racing, one sends.
    if !ctx
        .app
        .store
        .decide_draft(
            tenant,
            &draft.id,
            ("pending", "approved"),
            sealed.as_ref(),
            None,
        )
        .await?
    {
        return Err(not_pending(&draft));
    }
    let send = NewSend {
        to: draft.peer.clone(),
        text: text.clone(),
        kind: Default::default(),
        idempotency: Some(Idempotency {
            key: format!("draft:{}", draft.id),
            scope: KeyScope::Recipient,
        }),
        ..NewSend::default()
    };
    let message = match ctx.app.sends.queue(&caller.tenant, &session, send).await {
        Ok(q) => q.message,
        Err(e) => {
            // Not queued (the session is not running, the queue is full…): the
            // draft waits again.
            ctx.app
                .store
                .decide_draft(tenant, &draft.id, ("approved", "pending"), None, None)
                .await?;
            return Err(e.into());
        }
    };
    ctx.app
        .store
        .decide_draft(
            tenant,
            &draft.id,
            ("approved", "approved"),
            None,
            Some(&message.id),
        )
        .await?;
    let data = serde_json::json!({
        "draft_id": draft.id,
        "event_id": draft.event_id,
        "to": draft.peer,
        "text": text,
        "edited": edited,
        "intent": draft.intent,
        "source": draft.source,
        "message_id": message.id,
        "approved_by": caller.key_id,
    });
    let mut event = Publish::new(tenant, RAG_REPLY, data);
    event.session_id = Some(session.id.clone());
    event.channel = Some(session.channel.clone());
    ctx.app
        .events
        .publish(event)
        .await
        .map_err(ApiError::internal)?;
    let updated = load_draft(ctx, caller).await?;
    json(StatusCode::OK, &draft_view(ctx, &updated))
}

pub async fn reject(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let draft = load_draft(ctx, caller).await?;
    if !ctx
        .app
        .store
        .decide_draft(
            &caller.tenant.id,
            &draft.id,
            ("pending", "rejected"),
            None,
            None,
        )
        .await?
    {
        return Err(not_pending(&draft));
    }
    let updated = load_draft(ctx, caller).await?;
    json(StatusCode::OK, &draft_view(ctx, &updated))
}
