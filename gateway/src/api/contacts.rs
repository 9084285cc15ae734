//! A contact's data rights: `GET /v1/contacts/{address}/export` (everything the
//! tenant holds about one address, one JSON document) and
//! `DELETE /v1/contacts/{address}` (erasure; `?suppress=false` keeps the address
//! off the suppression list). Both audited, the address recorded only as a hash
//! (an audit trail that kept it would undo the erasure). See
//! `switchboard_actors::contacts`.

use super::auth::Caller;
use super::body::{decode_path, query_pairs};
use super::{ApiError, ApiResult, Ctx, json};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use switchboard_actors::contacts::{self, ContactError};
use switchboard_actors::storage::AuditEntry;

fn address(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    contacts::normal(&decode_path(&ctx.params[0]))
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_address", m))
}

fn failed(e: ContactError) -> ApiError {
    match e {
        ContactError::Store(s) => s.into(),
        ContactError::Sealing(m) => ApiError::internal(m),
    }
}

async fn audit(
    ctx: &Ctx<'_>,
    caller: &Caller,
    action: &'static str,
    address: &str,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    let mut entry =
        AuditEntry::new(caller.key_id.clone(), action).request_id(Some(ctx.request_id.to_owned()));
    entry.details = details;
    ctx.app
        .store
        .record_audit(
            &entry,
            Some(&caller.tenant.id),
            Some(&contacts::address_hash(address)),
        )
        .await?;
    Ok(())
}

pub async fn export(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let address = address(ctx)?;
    let doc = contacts::export(
        &ctx.app.store,
        &ctx.app.keyring,
        &caller.tenant.id,
        &address,
    )
    .await
    .map_err(failed)?;
    let counts = serde_json::json!({
        "messages": doc["messages"].as_array().map_or(0, Vec::len),
        "events": doc["events"].as_array().map_or(0, Vec::len),
    });
    audit(ctx, caller, "contact.export", &address, counts).await?;
    json(StatusCode::OK, &doc)
}

pub async fn erase(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let address = address(ctx)?;
    let q = query_pairs(req.uri().query(), &["suppress"])?;
    let suppress = match q
        .iter()
        .find(|(k, _)| k == "suppress")
        .map(|(_, v)| v.as_str())
    {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "`suppress` is true or false, not `{other}`"
            )));
        }
    };
    let erased = contacts::erase(
        &ctx.app.store,
        &ctx.app.keyring,
        Some(&ctx.app.media),
        &caller.tenant.id,
        &address,
        suppress,
    )
    .await
    .map_err(failed)?;
    let details = serde_json::json!({
        "messages": erased.messages, "events": erased.events, "drafts": erased.drafts,
        "media": erased.media, "suppressed": !erased.suppressed.is_empty(),
    });
    audit(ctx, caller, "contact.erase", &address, details).await?;
    json(StatusCode::OK, &erased)
}
