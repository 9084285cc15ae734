//! `GET|PUT /v1/consent`: the tenant's consent and retention settings — opt-out
//! keywords, `List-Unsubscribe` on e-mail, how long messages, events and media are
//! kept (see `switchboard_actors::consent`). A PUT replaces the whole document
//! (absent fields take their defaults) and is audited.

use super::auth::Caller;
use super::body::read_json;
use super::{ApiError, ApiResult, Ctx, json};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use switchboard_actors::consent::ConsentSettings;
use switchboard_actors::storage::AuditEntry;

pub async fn get(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let settings = ctx.app.store.consent(&caller.tenant.id).await?;
    json(StatusCode::OK, &*settings)
}

pub async fn put(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let mut settings: ConsentSettings =
        read_json(req, ctx.app.config.max_body_bytes, false).await?;
    settings.validate().map_err(ApiError::validation)?;
    let audit = AuditEntry::new(caller.key_id.clone(), "consent.update")
        .request_id(Some(ctx.request_id.to_owned()));
    ctx.app
        .store
        .put_consent(&caller.tenant.id, &settings, &audit)
        .await?;
    json(StatusCode::OK, &settings)
}
