//! LinkedIn routes: invitations (`POST /v1/sessions/{id}/invitations`, accepting a
//! received one), profile lookups and the account's safety caps
//! (`GET /v1/sessions/{id}/limits`).
//!
//! Invitations and accepts go through the one send path like messages: queued (202),
//! sent when the account's caps give them a slot, never dropped for a cap. A note
//! over 300 characters is 422 `note_too_long`, a `to` that is no profile URL, public
//! id or member URN 422 `invalid_profile`; other channels answer 422 `not_supported`.

use super::auth::Caller;
use super::body::read_json;
use super::messages::{idempotency_key, queued};
use super::sessions::load;
use super::{ApiError, ApiResult, Ctx, json};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use switchboard_actors::channels::linkedin::{self, contract};
use switchboard_actors::channels::{self, ChannelKind, SendKind};
use switchboard_actors::outbound::{Idempotency, KeyScope, NewSend};
use switchboard_actors::sessions::Query;
use switchboard_actors::storage::SessionRow;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invite {
    to: String,
    #[serde(default)]
    note: Option<String>,
}

fn linkedin_only(row: &SessionRow, what: &str) -> Result<(), ApiError> {
    if row.channel == ChannelKind::Linkedin.as_str() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_supported",
        format!("{} sessions have no {what}", row.channel),
    ))
}

fn invalid_profile(to: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_profile",
        format!(
            "`{to}` is not a LinkedIn profile URL (https://www.linkedin.com/in/<id>/), public id or member URN"
        ),
    )
}

/// `POST /v1/sessions/{id}/invitations {"to","note"?}`.
pub async fn invite(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let session = load(ctx, caller).await?;
    let key = idempotency_key(&req)?;
    let body: Invite = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    linkedin_only(&session, "invitations")?;
    let to = body.to.trim();
    match contract::target(to, &ctx.app.config.channels.linkedin.url) {
        Some(contract::Target::PublicId(_) | contract::Target::Member(_)) => {}
        _ => return Err(invalid_profile(to)),
    }
    let note = body.note.unwrap_or_default();
    let note = note.trim();
    if note.chars().count() > contract::NOTE_LIMIT {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "note_too_long",
            format!(
                "`note` has {} characters; LinkedIn takes at most {}",
                note.chars().count(),
                contract::NOTE_LIMIT
            ),
        ));
    }
    let send = NewSend {
        to: to.to_owned(),
        text: note.to_owned(),
        kind: SendKind::Invitation,
        idempotency: key.map(|key| Idempotency {
            key,
            scope: KeyScope::Request,
        }),
        ..NewSend::default()
    };
    let q = ctx.app.sends.queue(&caller.tenant, &session, send).await?;
    queued(ctx, q)
}

/// `POST /v1/sessions/{id}/invitations/{invitation_id}/accept`.
pub async fn accept(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let session = load(ctx, caller).await?;
    let key = idempotency_key(&req)?;
    linkedin_only(&session, "invitations")?;
    let id = ctx.params[1].as_str();
    let bare = id.trim_start_matches("urn:li:fsd_invitation:");
    if bare.is_empty()
        || bare.len() > 64
        || !bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_invitation",
            format!("`{id}` is not an invitation id (`invitation_id` of invitation.received)"),
        ));
    }
    let send = NewSend {
        to: format!("urn:li:fsd_invitation:{bare}"),
        kind: SendKind::Accept,
        idempotency: Some(Idempotency {
            key: key.unwrap_or_else(|| format!("accept:{bare}")),
            scope: KeyScope::Recipient,
        }),
        ..NewSend::default()
    };
    let q = ctx.app.sends.queue(&caller.tenant, &session, send).await?;
    queued(ctx, q)
}

/// `GET /v1/sessions/{id}/profiles/{id_or_url}` (a URL percent-encoded in the path).
pub async fn profile(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let session = load(ctx, caller).await?;
    linkedin_only(&session, "profiles")?;
    let raw = ctx.params[1].as_str();
    let who = super::body::decode_path(raw);
    if contract::target(&who, &ctx.app.config.channels.linkedin.url)
        .is_none_or(|t| matches!(t, contract::Target::Conversation(_)))
    {
        return Err(invalid_profile(&who));
    }
    let found = ctx
        .app
        .commands
        .query(&caller.tenant.id, &session.id, Query::Profile(who))
        .await
        .map_err(|e| match e {
            switchboard_actors::sessions::SessionError::Rejected(m)
                if m.starts_with("profile_not_found") =>
            {
                ApiError::new(StatusCode::NOT_FOUND, "profile_not_found", m)
            }
            other => other.into(),
        })?;
    json(StatusCode::OK, &found)
}

/// `GET /v1/sessions/{id}/limits`: the account's caps, their use, and each action's
/// next slot (read from storage: the session need not run).
pub async fn limits(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let session = load(ctx, caller).await?;
    if session.channel != "whatsapp" {
        linkedin_only(&session, "safety caps")?;
    }
    let config = channels::session_config(&session, &ctx.app.store, &ctx.app.keyring)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut v = if session.channel == "whatsapp" {
        channels::whatsapp::limits(
            &session,
            &config,
            &ctx.app.store,
            &ctx.app.config.channels.whatsapp,
        )
        .await
        .map_err(ApiError::internal)?
    } else {
        linkedin::limits(&session, &config, &ctx.app.store)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    v["session_id"] = session.id.clone().into();
    json(StatusCode::OK, &v)
}
