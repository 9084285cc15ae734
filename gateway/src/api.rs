//! The HTTP API: one entry point, [`handle`], for every request.
//!
//! For each request it assigns a request id (kept from `X-Request-Id` when sane),
//! opens a tracing span carrying it, matches the route table ([`routes`]),
//! authenticates by the route's access level, runs the handler, maps any error to
//! the one JSON error shape ([`error`]), records metrics and echoes the request id.
//!
//! # Layout
//! - [`routes`]: the route table (also the source of the OpenAPI document).
//! - [`auth`], [`rate_limit`]: admin token, tenant API keys, per-key governor limits.
//! - [`body`]: strict JSON bodies and query strings.
//! - [`error`]: the one JSON error shape, and every lower layer's error mapped to HTTP.
//! - Handlers: [`tenants`], [`keys`], [`webhooks`], [`events`] (and [`stream`], SSE),
//!   [`sessions`] (lifecycle, pairing, challenges, sim), [`messages`] (sends),
//!   [`kb`] (documents, search), [`drafts`], [`reply_settings`], [`system`],
//!   [`dashboard`], [`openapi`].

pub mod audit;
pub mod auth;
pub mod body;
pub mod consent;
pub mod contacts;
pub mod dashboard;
pub mod drafts;
pub mod error;
pub mod events;
pub mod kb;
pub mod keys;
pub mod linkedin;
pub mod media;
pub mod messages;
pub mod openapi;
pub mod rate_limit;
pub mod reply_settings;
pub mod routes;
pub mod sessions;
pub mod stream;
pub mod suppressions;
pub mod system;
pub mod tenants;
pub mod trail;
pub mod unsubscribe;
pub mod webhooks;

pub use error::ApiError;

use crate::app::App;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use routes::{Access, Match, RouteId};
use serde::Serialize;
use std::convert::Infallible;
use std::time::Instant;
use switchboard_actors::sessions::Query;
use tracing::Instrument;

/// Response body type of every route (boxed so streaming routes can share it).
pub type ResBody = BoxBody<Bytes, Infallible>;
pub type ApiResult = Result<Response<ResBody>, ApiError>;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<ResBody> {
    let mut res = Response::new(Full::new(body.into()).boxed());
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResult {
    let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
    Ok(full(status, body))
}

pub fn no_content() -> ApiResult {
    let mut res = Response::new(Full::new(Bytes::new()).boxed());
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}

/// Keeps a caller's request id if it is short and plain; otherwise makes one.
fn request_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", ulid::Ulid::new()))
}

/// Context a handler gets besides the request.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub app: &'a App,
    pub request_id: &'a str,
    pub params: Vec<String>,
}

pub async fn handle(app: &App, req: Request<Incoming>) -> Response<ResBody> {
    let started = Instant::now();
    let request_id = request_id(&req);
    let method = req.method().clone();
    let found = routes::find(&method, req.uri().path());
    let route_label = match &found {
        Match::Found(r, _) => r.path,
        _ => "unmatched",
    };
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = route_label,
        tenant_id = tracing::field::Empty,
    );
    let mut res = async {
        let result = match found {
            Match::Found(route, params) => {
                let ctx = Ctx {
                    app,
                    request_id: &request_id,
                    params,
                };
                dispatch(route, ctx, req).await
            }
            Match::MethodNotAllowed(allow) => Err(ApiError::method_not_allowed(allow)),
            Match::NotFound => Err(ApiError::route_not_found()),
        };
        let res = result.unwrap_or_else(ApiError::into_response);
        let status = res.status().as_u16();
        let elapsed = started.elapsed();
        if status >= 500 {
            tracing::error!(
                status,
                latency_ms = elapsed.as_secs_f64() * 1e3,
                "request failed"
            );
        } else {
            tracing::info!(
                status,
                latency_ms = elapsed.as_secs_f64() * 1e3,
                "request finished"
            );
        }
        metrics::counter!(
            "switchboard_http_requests_total",
            "route" => route_label,
            "method" => method.to_string(),
            "status" => status.to_string(),
        )
        .increment(1);
        metrics::histogram!("switchboard_http_request_duration_seconds", "route" => route_label)
            .record(elapsed.as_secs_f64());
        res
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

async fn dispatch(
    route: &'static routes::Route,
    ctx: Ctx<'_>,
    req: Request<Incoming>,
) -> ApiResult {
    if route.query.is_empty() && req.uri().query().is_some_and(|q| !q.is_empty()) {
        body::query_pairs(req.uri().query(), route.query)?;
    }
    match route.access {
        Access::Public => dispatch_public(route.id, &ctx, req).await,
        Access::Admin => {
            auth::admin(ctx.app, req.headers())?;
            let result = dispatch_admin(route.id, &ctx, req).await;
            let who = trail::Who::Admin;
            record(&ctx, route, who, &result).await;
            result
        }
        Access::Tenant => {
            let caller = auth::tenant(ctx.app, req.headers()).await?;
            let result = match route.id.scope() {
                Some(scope) if !caller.scopes.contains(scope) => {
                    Err(ApiError::insufficient_scope(scope))
                }
                _ => dispatch_tenant(route.id, &ctx, &caller, req).await,
            };
            let who = trail::Who::Key {
                key_id: &caller.key_id,
                tenant_id: &caller.tenant.id,
            };
            record(&ctx, route, who, &result).await;
            result
        }
    }
}

/// Puts an authenticated call on the audit trail, with how it ended.
async fn record(
    ctx: &Ctx<'_>,
    route: &'static routes::Route,
    who: trail::Who<'_>,
    result: &ApiResult,
) {
    let outcome = match result {
        Ok(res) => trail::Outcome {
            status: res.status().as_u16(),
            error: None,
        },
        Err(e) => trail::Outcome {
            status: e.status.as_u16(),
            error: Some(e.code),
        },
    };
    ctx.app
        .trail
        .record(route, &ctx.params, who, ctx.request_id, outcome)
        .await;
}

async fn dispatch_public(id: RouteId, ctx: &Ctx<'_>, req: Request<Incoming>) -> ApiResult {
    match id {
        RouteId::Dashboard => dashboard::serve(),
        RouteId::Healthz => system::healthz(),
        RouteId::Readyz => system::readyz(ctx).await,
        RouteId::Metrics => system::metrics(ctx),
        RouteId::OpenApi => openapi::serve(),
        RouteId::ShowUnsubscribe => unsubscribe::show(ctx).await,
        RouteId::Unsubscribe => unsubscribe::unsubscribe(ctx, req).await,
        other => Err(ApiError::internal(format!(
            "route {other:?} is not a public route"
        ))),
    }
}

async fn dispatch_admin(id: RouteId, ctx: &Ctx<'_>, req: Request<Incoming>) -> ApiResult {
    match id {
        RouteId::CreateTenant => tenants::create(ctx, req).await,
        RouteId::ListTenants => tenants::list(ctx, req).await,
        RouteId::Cluster => system::cluster(ctx).await,
        RouteId::AdminAudit => audit::admin(ctx, req).await,
        RouteId::GetTenant => tenants::get(ctx).await,
        RouteId::UpdateTenant => tenants::update(ctx, req).await,
        RouteId::DeleteTenant => tenants::delete(ctx).await,
        RouteId::CreateTenantKey => keys::create_for_tenant(ctx, req).await,
        RouteId::ListTenantKeys => keys::list_for_tenant(ctx).await,
        RouteId::RevokeTenantKey => keys::revoke_for_tenant(ctx).await,
        other => Err(ApiError::internal(format!(
            "route {other:?} is not an admin route"
        ))),
    }
}

/// Runs a tenant route whose scope the caller holds.
async fn dispatch_tenant(
    id: RouteId,
    ctx: &Ctx<'_>,
    caller: &auth::Caller,
    req: Request<Incoming>,
) -> ApiResult {
    match id {
        RouteId::Me => tenants::me(ctx, caller),
        RouteId::CreateOwnKey => keys::create_own(ctx, caller, req).await,
        RouteId::ListOwnKeys => keys::list_own(ctx, caller).await,
        RouteId::RevokeOwnKey => keys::revoke_own(ctx, caller).await,
        RouteId::GetConsent => consent::get(ctx, caller).await,
        RouteId::TenantAudit => audit::tenant(ctx, caller, req).await,
        RouteId::ExportContact => contacts::export(ctx, caller).await,
        RouteId::EraseContact => contacts::erase(ctx, caller, req).await,
        RouteId::PutConsent => consent::put(ctx, caller, req).await,
        RouteId::CreateSuppression => suppressions::create(ctx, caller, req).await,
        RouteId::ListSuppressions => suppressions::list(ctx, caller, req).await,
        RouteId::DeleteSuppression => suppressions::delete(ctx, caller).await,
        RouteId::ImportSuppressions => suppressions::import(ctx, caller, req).await,
        RouteId::CreateWebhook => webhooks::create(ctx, caller, req).await,
        RouteId::ListWebhooks => webhooks::list(ctx, caller).await,
        RouteId::GetWebhook => webhooks::get(ctx, caller).await,
        RouteId::UpdateWebhook => webhooks::update(ctx, caller, req).await,
        RouteId::DeleteWebhook => webhooks::delete(ctx, caller).await,
        RouteId::RotateWebhookSecret => webhooks::rotate_secret(ctx, caller, req).await,
        RouteId::TestWebhook => webhooks::test(ctx, caller).await,
        RouteId::ReplayWebhook => webhooks::replay(ctx, caller, req).await,
        RouteId::ListEvents => events::list(ctx, caller, req).await,
        RouteId::GetEvent => events::get(ctx, caller).await,
        RouteId::ListEventAttempts => events::attempts(ctx, caller).await,
        RouteId::ReplayEvent => events::replay(ctx, caller).await,
        RouteId::CreateSession => sessions::create(ctx, caller, req).await,
        RouteId::ListSessions => sessions::list(ctx, caller).await,
        RouteId::GetSession => sessions::get(ctx, caller).await,
        RouteId::DeleteSession => sessions::delete(ctx, caller).await,
        RouteId::StartSession => sessions::start(ctx, caller).await,
        RouteId::StopSession => sessions::stop(ctx, caller).await,
        RouteId::RestartSession => sessions::restart(ctx, caller).await,
        RouteId::LogoutSession => sessions::logout(ctx, caller).await,
        RouteId::FaultSession => sessions::fault(ctx, caller, req).await,
        RouteId::SessionQr => sessions::qr(ctx, caller, req).await,
        RouteId::PairingCode => sessions::pairing_code(ctx, caller, req).await,
        RouteId::SubmitChallenge => sessions::challenge(ctx, caller, req).await,
        RouteId::SendInvitation => linkedin::invite(ctx, caller, req).await,
        RouteId::AcceptInvitation => linkedin::accept(ctx, caller, req).await,
        RouteId::SessionProfile => linkedin::profile(ctx, caller).await,
        RouteId::SessionLimits => linkedin::limits(ctx, caller).await,
        RouteId::TestConnection => sessions::test_connection(ctx, caller).await,
        RouteId::SessionGroups => sessions::parties(ctx, caller, Query::Groups).await,
        RouteId::SessionContacts => sessions::parties(ctx, caller, Query::Contacts).await,
        RouteId::SessionEvents => stream::session_events(ctx, caller, req).await,
        RouteId::SendMessage => messages::send(ctx, caller, req).await,
        RouteId::ListSessionMessages => messages::list(ctx, caller, req).await,
        RouteId::GetMessage => messages::get(ctx, caller).await,
        RouteId::MessageAttachment => messages::attachment(ctx, caller).await,
        RouteId::ReactToMessage => messages::react(ctx, caller, req).await,
        RouteId::MarkChatRead => messages::mark_read(ctx, caller).await,
        RouteId::UploadMedia => media::upload(ctx, caller, req).await,
        RouteId::GetMedia => media::download(ctx, caller, req).await,
        RouteId::SimInbound => sessions::sim_inbound(ctx, caller, req).await,
        RouteId::GetReplySettings => reply_settings::get(ctx, caller).await,
        RouteId::PutReplySettings => reply_settings::put(ctx, caller, req).await,
        RouteId::CreateKbDocument => kb::create_document(ctx, caller, req).await,
        RouteId::ListKbDocuments => kb::list_documents(ctx, caller).await,
        RouteId::DeleteKbDocument => kb::delete_document(ctx, caller).await,
        RouteId::SearchKb => kb::search(ctx, caller, req).await,
        RouteId::ListDrafts => drafts::list(ctx, caller, req).await,
        RouteId::ApproveDraft => drafts::approve(ctx, caller, req).await,
        RouteId::RejectDraft => drafts::reject(ctx, caller).await,
        other => Err(ApiError::internal(format!(
            "route {other:?} is not a tenant route"
        ))),
    }
}
