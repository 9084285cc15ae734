//! Webhook endpoint routes (`/v1/webhooks…`): register, list, change, delete,
//! rotate the signing secret, send a test event, replay a time range.
//!
//! URLs are checked against SSRF rules before anything is stored (422
//! `url_not_allowed`). Secrets are generated unless given (`whsec_` + base64 of
//! 24–64 bytes), sealed under the master key, and shown only in the answer that
//! created them.

use super::auth::Caller;
use super::body::read_json;
use super::{ApiError, ApiResult, Ctx, json, no_content};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;
use switchboard_actors::clock::{self, parse_rfc3339, rfc3339};
use switchboard_actors::events::{Publish, PublishError};
use switchboard_actors::ids;
use switchboard_actors::storage::{
    AuditEntry, Endpoint, EndpointPatch, EndpointStatus, Targets, type_matches,
};
use switchboard_actors::webhooks::{self, ssrf};
use switchboard_crypto::WebhookSecret;

/// Prefix of endpoint ids.
pub const ENDPOINT_PREFIX: &str = "whk";
const MAX_EVENT_TYPES: usize = 50;
const MAX_URL_LEN: usize = 2048;
/// Most events one replay call queues.
pub const MAX_REPLAY: u32 = 50_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    url: String,
    events: Option<Vec<String>>,
    secret: Option<String>,
    description: Option<String>,
    #[serde(default)]
    fifo: bool,
    max_in_flight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateWebhook {
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    status: Option<EndpointStatus>,
    fifo: Option<bool>,
    max_in_flight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateSecret {
    secret: Option<String>,
    /// Seconds the old secret keeps signing (default: `webhooks.rotation_grace`).
    grace_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    since: String,
    until: Option<String>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An endpoint as shown to its tenant (never its secret).
#[derive(Debug, Serialize)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// Event types delivered; `null` = all.
    pub events: Option<Vec<String>>,
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    pub fifo: bool,
    pub max_in_flight: i64,
    /// Since when every delivery has failed, if it has.
    pub failing_since: Option<String>,
    /// While set, the previous secret also signs deliveries.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Endpoint> for WebhookView {
    fn from(e: &Endpoint) -> Self {
        let now = clock::now_ms();
        Self {
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            events: e.event_types.clone(),
            status: e.status,
            disabled_reason: e.disabled_reason.clone(),
            fifo: e.fifo,
            max_in_flight: if e.fifo { 1 } else { e.max_in_flight },
            failing_since: e.failing_since.map(rfc3339),
            previous_secret_expires_at: e.previous_expires_at.filter(|t| *t > now).map(rfc3339),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

fn audit(ctx: &Ctx<'_>, caller: &Caller, action: &'static str) -> AuditEntry {
    AuditEntry::new(caller.key_id.clone(), action).request_id(Some(ctx.request_id.to_owned()))
}

async fn check_url(ctx: &Ctx<'_>, url: &str) -> Result<String, ApiError> {
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::validation(format!(
            "`url` must be at most {MAX_URL_LEN} characters"
        )));
    }
    ssrf::check(url, ctx.app.config.webhooks.allow_private)
        .await
        .map(|u| u.to_string())
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "url_not_allowed",
                format!("`url`: {e}"),
            )
        })
}

fn check_event_types(types: &Option<Vec<String>>) -> Result<(), ApiError> {
    let Some(list) = types else { return Ok(()) };
    if list.len() > MAX_EVENT_TYPES {
        return Err(ApiError::validation(format!(
            "`events` may list at most {MAX_EVENT_TYPES} types"
        )));
    }
    for t in list {
        let ok = !t.is_empty()
            && t.len() <= 100
            && t.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'*')
            })
            && (!t.contains('*') || t == "*" || (t.ends_with(".*") && t.matches('*').count() == 1));
        if !ok {
            return Err(ApiError::validation(format!(
                "`events`: `{t}` is not an event type (like `message.received`, `message.*` or `*`)"
            )));
        }
    }
    Ok(())
}

fn check_in_flight(v: Option<i64>) -> Result<(), ApiError> {
    match v {
        Some(n) if !(1..=100).contains(&n) => Err(ApiError::validation(
            "`max_in_flight` must be between 1 and 100",
        )),
        _ => Ok(()),
    }
}

fn description(d: Option<String>) -> Result<Option<String>, ApiError> {
    match d {
        Some(d) if d.chars().count() > 500 => Err(ApiError::validation(
            "`description` must be at most 500 characters",
        )),
        Some(d) if d.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn parse_secret(text: Option<&str>) -> Result<WebhookSecret, ApiError> {
    match text {
        Some(t) => WebhookSecret::parse(t).map_err(|_| {
            ApiError::validation("`secret` must be `whsec_` followed by base64 of 24 to 64 bytes")
        }),
        None => WebhookSecret::generate().map_err(ApiError::internal),
    }
}

fn endpoint_id<'a>(ctx: &'a Ctx<'_>) -> Result<&'a str, ApiError> {
    let id = ctx.params[0].as_str();
    ids::is_valid(ENDPOINT_PREFIX, id)
        .then_some(id)
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

async fn load(ctx: &Ctx<'_>, caller: &Caller) -> Result<Endpoint, ApiError> {
    let id = endpoint_id(ctx)?;
    ctx.app
        .store
        .get_endpoint(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

pub async fn create(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let body: CreateWebhook = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    check_event_types(&body.events)?;
    check_in_flight(body.max_in_flight)?;
    let description = description(body.description)?;
    let secret = parse_secret(body.secret.as_deref())?;
    let url = check_url(ctx, &body.url).await?;
    let id = ids::new_id(ENDPOINT_PREFIX);
    let sealed = ctx
        .app
        .keyring
        .seal(
            secret.bytes(),
            webhooks::secret_binding(&caller.tenant.id, &id),
        )
        .map_err(ApiError::internal)?;
    let now = clock::now_ms();
    let endpoint = Endpoint {
        id,
        tenant_id: caller.tenant.id.clone(),
        url,
        description,
        event_types: body.events,
        secret: sealed,
        previous_secret: None,
        previous_expires_at: None,
        status: EndpointStatus::Enabled,
        disabled_reason: None,
        fifo: body.fifo,
        max_in_flight: if body.fifo {
            1
        } else {
            body.max_in_flight.unwrap_or(8)
        },
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    ctx.app
        .store
        .create_endpoint(&endpoint, &audit(ctx, caller, "webhook.create"))
        .await?;
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint created");
    let mut view =
        serde_json::to_value(WebhookView::from(&endpoint)).map_err(ApiError::internal)?;
    view["secret"] = serde_json::Value::String(secret.to_text().expose().clone());
    json(StatusCode::CREATED, &view)
}

pub async fn list(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let endpoints = ctx.app.store.list_endpoints(&caller.tenant.id).await?;
    let data: Vec<WebhookView> = endpoints.iter().map(WebhookView::from).collect();
    json(StatusCode::OK, &serde_json::json!({ "data": data }))
}

pub async fn get(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    json(
        StatusCode::OK,
        &WebhookView::from(&load(ctx, caller).await?),
    )
}

pub async fn update(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let id = endpoint_id(ctx)?;
    let body: UpdateWebhook = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    if let Some(types) = &body.events {
        check_event_types(types)?;
    }
    check_in_flight(body.max_in_flight)?;
    let description = body.description.map(description).transpose()?;
    let url = match &body.url {
        Some(u) => Some(check_url(ctx, u).await?),
        None => None,
    };
    let patch = EndpointPatch {
        url,
        description,
        event_types: body.events,
        status: body.status,
        fifo: body.fifo,
        max_in_flight: body.max_in_flight,
    };
    let updated = ctx
        .app
        .store
        .update_endpoint(
            &caller.tenant.id,
            id,
            &patch,
            &audit(ctx, caller, "webhook.update"),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    json(StatusCode::OK, &WebhookView::from(&updated))
}

pub async fn delete(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let id = endpoint_id(ctx)?;
    if !ctx
        .app
        .store
        .delete_endpoint(&caller.tenant.id, id, &audit(ctx, caller, "webhook.delete"))
        .await?
    {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    no_content()
}

pub async fn rotate_secret(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let endpoint = load(ctx, caller).await?;
    let body: RotateSecret = read_json(req, ctx.app.config.max_body_bytes, true).await?;
    let grace = match body.grace_secs {
        Some(s) if s > 7 * 86_400 => {
            return Err(ApiError::validation(
                "`grace_secs` must be at most 604800 (7 days)",
            ));
        }
        Some(s) => Duration::from_secs(s),
        None => ctx.app.config.webhooks.rotation_grace,
    };
    let secret = parse_secret(body.secret.as_deref())?;
    let sealed = ctx
        .app
        .keyring
        .seal(
            secret.bytes(),
            webhooks::secret_binding(&caller.tenant.id, &endpoint.id),
        )
        .map_err(ApiError::internal)?;
    let expires = clock::now_ms() + grace.as_millis() as i64;
    ctx.app
        .store
        .rotate_endpoint_secret(
            &caller.tenant.id,
            &endpoint.id,
            &sealed,
            expires,
            &audit(ctx, caller, "webhook.rotate_secret"),
        )
        .await?;
    json(
        StatusCode::OK,
        &serde_json::json!({
            "id": endpoint.id,
            "secret": secret.to_text().expose(),
            "previous_secret_expires_at": rfc3339(expires),
        }),
    )
}

/// The writer checks that the endpoint is the tenant's in the transaction that
/// stores the event (no read of its own before): an unknown one stores nothing.
pub async fn test(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let id = endpoint_id(ctx)?;
    let data = serde_json::json!({ "endpoint_id": id, "message": "test event from Switchboard" });
    let mut event = Publish::new(&caller.tenant.id, webhooks::TEST_EVENT, data);
    event.targets = Targets::Only(id.to_owned());
    let published = match ctx.app.events.publish(event).await {
        Ok(p) => p,
        Err(PublishError::UnknownTarget) => return Err(ApiError::not_found("webhook endpoint")),
        Err(e) => return Err(ApiError::internal(e)),
    };
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "event_id": published.id, "queued": published.deliveries }),
    )
}

fn time_param(field: &str, value: &str) -> Result<i64, ApiError> {
    parse_rfc3339(value).ok_or_else(|| {
        ApiError::validation(format!(
            "`{field}` must be an RFC 3339 time like 2026-11-23T12:00:00Z"
        ))
    })
}

pub async fn replay(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let endpoint = load(ctx, caller).await?;
    let body: Replay = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let since = time_param("since", &body.since)?;
    let until = match &body.until {
        Some(u) => time_param("until", u)?,
        None => clock::now_ms() + 1,
    };
    if until <= since {
        return Err(ApiError::validation("`until` must be after `since`"));
    }
    let events = ctx
        .app
        .store
        .event_ids_between(&caller.tenant.id, since, until, MAX_REPLAY + 1)
        .await?;
    let truncated = events.len() > MAX_REPLAY as usize;
    let pairs: Vec<(String, String)> = events
        .into_iter()
        .take(MAX_REPLAY as usize)
        .filter(|(_, t)| type_matches(endpoint.event_types.as_deref(), t))
        .map(|(id, _)| (id, endpoint.id.clone()))
        .collect();
    let queued = ctx.app.store.requeue(&caller.tenant.id, &pairs).await?;
    ctx.app.dispatch_wakeup.notify_one();
    tracing::info!(endpoint_id = %endpoint.id, queued, "replay queued");
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "queued": pairs.len(), "truncated": truncated, "rows": queued }),
    )
}
