//! The tenant's suppression list (`/v1/suppressions…`): addresses never to message,
//! checked by every send before any network call (see
//! `switchboard_actors::suppression`). Addresses are stored in their normal form
//! (E.164 phones, lower-case e-mail addresses), so a send matches however its
//! recipient was written.

use super::auth::Caller;
use super::body::{self, page_query, read_bytes, read_json};
use super::{ApiError, ApiResult, Ctx, json, no_content};
use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;
use switchboard_actors::storage::SuppressionRow;
use switchboard_actors::suppression::{self, Scope};
use switchboard_actors::{clock, ids};

/// Longest reason accepted.
const MAX_REASON_CHARS: usize = 500;
/// Most entries one import takes.
const MAX_IMPORT: usize = 10_000;
/// Largest import body.
const MAX_IMPORT_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    channel: String,
    address: String,
    reason: Option<String>,
}

/// An entry checked and in its normal form, ready to store.
fn entry(tenant_id: &str, e: &NewEntry, source: &str) -> Result<SuppressionRow, ApiError> {
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", m);
    let scope = Scope::parse(e.channel.trim()).map_err(invalid)?;
    let address = suppression::normalize(scope, &e.address)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_address", m))?;
    let reason = e
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(invalid(format!(
            "`reason` must be at most {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(SuppressionRow {
        id: ids::new_id(ids::SUPPRESSION),
        tenant_id: tenant_id.to_owned(),
        channel: scope.as_str().to_owned(),
        address,
        reason,
        source: source.to_owned(),
        created_at: clock::now_ms(),
    })
}

fn view(r: &SuppressionRow) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["created_at"] = clock::rfc3339(r.created_at).into();
    v
}

/// `POST /v1/suppressions {"channel","address","reason"?}`: 201 with the entry, or
/// 200 with the one already there for that channel and address.
pub async fn create(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let body: NewEntry = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let row = entry(&caller.tenant.id, &body, "api")?;
    let (stored, new) = ctx.app.store.add_suppression(&row).await?;
    let status = if new {
        audit(
            ctx,
            caller,
            "suppression.create",
            &stored.id,
            serde_json::json!({ "channel": stored.channel }),
        )
        .await;
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json(status, &view(&stored))
}

/// `GET /v1/suppressions?limit&after`: oldest first, cursor paging.
pub async fn list(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let page = page_query(req.uri().query())?;
    if let Some(a) = &page.after
        && !ids::is_valid(ids::SUPPRESSION, a)
    {
        return Err(body::invalid_query(format!(
            "`after` must be a suppression id, not `{a}`"
        )));
    }
    let mut rows = ctx
        .app
        .store
        .list_suppressions(&caller.tenant.id, page.after.as_deref(), page.limit + 1)
        .await?;
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    let next_cursor = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
    let data: Vec<serde_json::Value> = rows.iter().map(view).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "data": data, "next_cursor": next_cursor }),
    )
}

/// `DELETE /v1/suppressions/{id}`.
pub async fn delete(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let id = ctx.params[0].as_str();
    if !ids::is_valid(ids::SUPPRESSION, id)
        || !ctx
            .app
            .store
            .delete_suppression(&caller.tenant.id, id)
            .await?
    {
        return Err(ApiError::not_found("suppression"));
    }
    audit(ctx, caller, "suppression.delete", id, serde_json::json!({})).await;
    no_content()
}

/// `POST /v1/suppressions/import`: many entries at once, as CSV (`text/csv`, columns
/// `channel,address,reason`, a header row optional) or JSON (an array of entries).
/// All or nothing: one bad entry refuses the import (422 `invalid_import`, naming
/// every bad line) and adds nothing. Answers how many were added and how many were
/// on the list already.
pub async fn import(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = read_bytes(req, MAX_IMPORT_BYTES).await?;
    let entries: Vec<(usize, NewEntry)> = match media.as_str() {
        "text/csv" => csv_entries(&bytes)?,
        "application/json" => body::parse_json::<Vec<NewEntry>>(&bytes)?
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i + 1, e))
            .collect(),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the entries as text/csv or application/json",
            ));
        }
    };
    if entries.is_empty() || entries.len() > MAX_IMPORT {
        return Err(ApiError::validation(format!(
            "an import takes 1 to {MAX_IMPORT} entries"
        )));
    }
    let mut rows = Vec::with_capacity(entries.len());
    let mut bad = Vec::new();
    for (line, e) in &entries {
        match entry(&caller.tenant.id, e, "import") {
            Ok(r) => rows.push(r),
            Err(err) => bad.push(format!("line {line}: {}", err.message)),
        }
    }
    if !bad.is_empty() {
        let shown: Vec<&str> = bad.iter().take(20).map(String::as_str).collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_import",
            format!(
                "{} of {} entries are not valid; nothing was added: {}",
                bad.len(),
                entries.len(),
                shown.join("; ")
            ),
        ));
    }
    let (mut added, mut existing) = (0, 0);
    for row in &rows {
        if ctx.app.store.add_suppression(row).await?.1 {
            added += 1;
        } else {
            existing += 1;
        }
    }
    let counts = serde_json::json!({ "added": added, "existing": existing });
    audit(
        ctx,
        caller,
        "suppression.import",
        &caller.tenant.id,
        counts.clone(),
    )
    .await;
    json(StatusCode::OK, &counts)
}

/// Records a change of the list (after it, not in its transaction: an entry
/// added or removed by a request that then failed to record is logged as a
/// warning).
async fn audit(
    ctx: &Ctx<'_>,
    caller: &Caller,
    action: &'static str,
    target: &str,
    details: serde_json::Value,
) {
    let mut entry = switchboard_actors::storage::AuditEntry::new(caller.key_id.clone(), action)
        .request_id(Some(ctx.request_id.to_owned()));
    entry.details = details;
    if let Err(e) = ctx
        .app
        .store
        .record_audit(&entry, Some(&caller.tenant.id), Some(target))
        .await
    {
        tracing::warn!(error = %e, action, "audit entry not recorded");
    }
}

/// CSV rows as entries, numbered by line (a first row naming the columns is skipped).
fn csv_entries(bytes: &[u8]) -> Result<Vec<(usize, NewEntry)>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_csv",
                format!("line {}: {e}", i + 1),
            )
        })?;
        let field = |n: usize| record.get(n).unwrap_or_default().to_owned();
        if i == 0 && field(0).eq_ignore_ascii_case("channel") {
            continue;
        }
        if record.len() < 2 || record.len() > 3 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_csv",
                format!("line {}: expected channel,address[,reason]", i + 1),
            ));
        }
        out.push((
            i + 1,
            NewEntry {
                channel: field(0),
                address: field(1),
                reason: Some(field(2)).filter(|r| !r.is_empty()),
            },
        ));
    }
    Ok(out)
}
