//! One-click unsubscribe (RFC 8058): the `List-Unsubscribe` link e-mail sends carry
//! when a tenant enables it. `POST /v1/unsubscribe/{token}` (what mail providers
//! send, body `List-Unsubscribe=One-Click`) puts the address on the tenant's
//! suppression list with `contact.opted_out`; `GET` only shows a page with a button
//! that posts (a link checker or a preview fetching the URL unsubscribes nobody).
//! The token names the tenant and address, tagged under the master key.

use super::{ApiError, ApiResult, Ctx};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use switchboard_actors::consent::{self, CONTACT_OPTED_OUT};
use switchboard_actors::events::Publish;
use switchboard_actors::storage::SuppressionRow;
use switchboard_actors::{clock, ids};

/// Largest body read (a form with one field).
const MAX_BODY: usize = 4096;

fn page(status: StatusCode, body: String) -> ApiResult {
    let mut res = Response::new(Full::new(Bytes::from(body)).boxed());
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The tenant and address of the route's token, or 404 `unknown_link`.
async fn opened(ctx: &Ctx<'_>) -> Result<(String, String), ApiError> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_link",
            "this unsubscribe link is not one of this gateway's",
        )
    };
    let (tenant, address) =
        consent::open_unsubscribe_token(&ctx.app.keyring, &ctx.params[0]).ok_or_else(unknown)?;
    // A deleted tenant's links lead nowhere.
    ctx.app
        .store
        .get_tenant(&tenant)
        .await?
        .ok_or_else(unknown)?;
    Ok((tenant, address))
}

pub async fn show(ctx: &Ctx<'_>) -> ApiResult {
    let (_, address) = opened(ctx).await?;
    page(
        StatusCode::OK,
        format!(
            "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
             <p>Stop e-mail to <b>{}</b>?</p>\
             <form method=post><input type=hidden name=List-Unsubscribe value=One-Click>\
             <button type=submit>Unsubscribe</button></form>",
            escape(&address)
        ),
    )
}

pub async fn unsubscribe(ctx: &Ctx<'_>, req: Request<Incoming>) -> ApiResult {
    let (tenant, address) = opened(ctx).await?;
    // The body says only `List-Unsubscribe=One-Click`; read it (bounded) and let go.
    let _ = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await;
    let entry = SuppressionRow {
        id: ids::new_id(ids::SUPPRESSION),
        tenant_id: tenant.clone(),
        channel: "email".into(),
        address: address.clone(),
        reason: Some("unsubscribed (List-Unsubscribe)".into()),
        source: "list_unsubscribe".into(),
        created_at: clock::now_ms(),
    };
    let data = serde_json::json!({
        "channel": "email",
        "address": address,
        "from": address,
        "keyword": null,
        "via": "list_unsubscribe",
        "suppression_id": entry.id,
    });
    let mut event = Publish::new(&tenant, CONTACT_OPTED_OUT, data);
    event.channel = Some("email".into());
    event.suppress = vec![entry];
    // Already listed: the event is not stored, and the answer is the same.
    ctx.app
        .events
        .publish(event)
        .await
        .map_err(ApiError::internal)?;
    metrics::counter!("switchboard_opt_outs_total", "channel" => "email").increment(1);
    page(
        StatusCode::OK,
        format!(
            "<!doctype html><meta charset=utf-8><title>Unsubscribed</title>\
             <p><b>{}</b> will get no more e-mail from this sender.</p>",
            escape(&address)
        ),
    )
}
