//! Session routes (`/v1/sessions…`): create, list, get, delete, and the idempotent
//! lifecycle actions start / stop / restart / logout; pairing (QR, pairing code) and
//! login challenges (`POST …/challenge {"code"}`); `fault` and `sim/inbound` drive a
//! `sim` session (tests, demos and the bench).
//!
//! The session row is the truth the API shows; the actors keep it current.

use super::auth::Caller;
use super::body::{self, read_json};
use super::{ApiError, ApiResult, Ctx, json, no_content};
use crate::admin::validate_name;
use base64::Engine;
use http::HeaderValue;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper::body::Bytes;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use switchboard_actors::channels::email::config::EmailConfig;
use switchboard_actors::channels::{self, ChannelKind, InboundMessage};
use switchboard_actors::clock::{self, rfc3339};
use switchboard_actors::events::body_binding;
use switchboard_actors::ids;
use switchboard_actors::sessions::{Fault, status};
use switchboard_actors::sessions::{Query, SESSION_QR};
use switchboard_actors::storage::{AuditEntry, SESSION_SECRETS_PURPOSE, SessionRow};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PairingCodeBody {
    phone: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeBody {
    code: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimInbound {
    from: String,
    text: String,
    #[serde(default)]
    chat: Option<String>,
}

/// Longest login code accepted.
const MAX_CODE_CHARS: usize = 64;

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
    /// What the network said about the login (WhatsApp: `version`, the WhatsApp Web
    /// release the page runs, and `me`, the account's own id), once logged in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<serde_json::Value>,
    /// What a running browser session costs (filled in by `GET /v1/sessions/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<serde_json::Value>,
    /// An e-mail session's sync state per folder (`GET /v1/sessions/{id}`): its
    /// UIDVALIDITY, the last UID reported, HIGHESTMODSEQ and when it was saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<serde_json::Value>,
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
            network: r
                .network
                .as_deref()
                .and_then(|n| serde_json::from_str(n).ok()),
            memory: None,
            mailbox: None,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

fn audit(ctx: &Ctx<'_>, caller: &Caller, action: &'static str) -> AuditEntry {
    AuditEntry::new(caller.key_id.clone(), action).request_id(Some(ctx.request_id.to_owned()))
}

/// Whether a session runs on the `sim` channel (faults and injected messages).
fn is_sim(row: &SessionRow) -> bool {
    row.channel.parse() == Ok(ChannelKind::Sim)
}

fn not_sim(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_sim",
        format!("{what} can only be injected into sim sessions"),
    )
}

/// The session named in the path, of the caller's tenant.
pub(crate) async fn load(ctx: &Ctx<'_>, caller: &Caller) -> Result<SessionRow, ApiError> {
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
    let kind: ChannelKind = body.channel.parse()?;
    let name = body
        .name
        .as_deref()
        .map(|n| validate_name("name", n))
        .transpose()?;
    let id = ids::new_id(SESSION_PREFIX);
    // Validated without connecting anything; secrets are split off to be sealed.
    let prepared = kind.prepare(&body.config)?;
    let secrets = prepared
        .secret
        .map(|s| {
            let binding = switchboard_crypto::Binding {
                tenant_id: &caller.tenant.id,
                record_id: &id,
                purpose: SESSION_SECRETS_PURPOSE,
            };
            ctx.app.keyring.seal(s.to_string().as_bytes(), binding)
        })
        .transpose()
        .map_err(ApiError::internal)?;
    let now = clock::now_ms();
    let config = prepared.shown;
    let row = SessionRow {
        id: id.clone(),
        tenant_id: caller.tenant.id.clone(),
        channel: kind.as_str().to_owned(),
        name,
        status: status::STOPPED.into(),
        status_reason: Some("created".into()),
        desired_state: "stopped".into(),
        config: config.to_string(),
        network: None,
        created_at: now,
        updated_at: now,
    };
    ctx.app
        .store
        .create_session_sealed(
            &row,
            secrets.as_ref(),
            &audit(ctx, caller, "session.create"),
        )
        .await?;
    if body.start.unwrap_or(true) {
        run(ctx, row).await?;
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
    let row = load(ctx, caller).await?;
    let mut view = SessionView::from(&row);
    // What the session costs is known where it runs (asking another replica on
    // every read would make status polling a cross-replica call).
    if row.desired_state == "running" && ctx.app.cluster.holds(&row.id).is_some() {
        view.memory = memory(ctx, &row).await;
    }
    if row.channel.parse() == Ok(ChannelKind::Email) {
        let folders: Vec<serde_json::Value> = ctx
            .app
            .store
            .folder_positions(&row.id)
            .await?
            .into_iter()
            .map(|(p, at)| {
                serde_json::json!({
                    "folder": p.folder,
                    "uid_validity": p.uid_validity,
                    "last_uid": p.last_uid,
                    "highest_modseq": p.highest_modseq,
                    "synced_at": rfc3339(at),
                })
            })
            .collect();
        view.mailbox = Some(serde_json::json!({ "folders": folders }));
    }
    json(StatusCode::OK, &view)
}

/// A browser session's memory: its page's JS heap, and what its browser costs (its
/// own Chromium's PSS, or an even share of the shared one's: processes are shared, so
/// a share is what one more session costs). `None` for channels that cannot tell.
async fn memory(ctx: &Ctx<'_>, row: &SessionRow) -> Option<serde_json::Value> {
    let page = ctx
        .app
        .commands
        .query(&row.tenant_id, &row.id, Query::Memory)
        .await
        .ok()
        .filter(|p| !p.is_null())?;
    let mut out = serde_json::json!({ "page": page });
    if let Some(pool) = &ctx.app.browser
        && let Some(m) = pool.session_memory(&row.id).await
    {
        out["browser_pss_bytes"] = m.browser_pss_bytes.into();
        out["browser_contexts"] = m.sessions_in_browser.into();
        out["pss_share_bytes"] = m.pss_share_bytes.into();
        out["isolation"] = pool.isolation().as_str().into();
    }
    Some(out)
}

/// `GET /v1/sessions/{id}/qr`: the QR code to scan now.
pub async fn qr(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let row = load(ctx, caller).await?;
    let pairs = body::query_pairs(req.uri().query(), &["format"])?;
    let wants_json = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let format = match pairs
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
    {
        Some("raw") => "raw",
        Some("json") => "json",
        Some("png") => "png",
        Some(other) => {
            return Err(body::invalid_query(format!(
                "`format` must be png, json or raw, not `{other}`"
            )));
        }
        None if wants_json => "json",
        None => "png",
    };
    if row.status != status::SCAN_QR {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_qr",
            format!("no QR code to scan: the session is {}", row.status),
        ));
    }
    let event = ctx
        .app
        .store
        .last_session_event_of_type(&caller.tenant.id, &row.id, SESSION_QR)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no_qr",
                "no QR code yet; retry shortly",
            )
        })?;
    let body = ctx
        .app
        .keyring
        .open(
            &event.body_key_id,
            &event.body,
            body_binding(&event.tenant_id, &event.id),
        )
        .map_err(ApiError::internal)?;
    let envelope: serde_json::Value = serde_json::from_slice(&body).map_err(ApiError::internal)?;
    let data = &envelope["data"];
    let value = data["value"].as_str().unwrap_or_default();
    let mut res = match format {
        "raw" => Response::new(Full::new(Bytes::from(value.to_owned())).boxed()),
        "json" => return json(StatusCode::OK, data),
        _ => {
            let png = base64::engine::general_purpose::STANDARD
                .decode(data["png_base64"].as_str().unwrap_or_default())
                .map_err(ApiError::internal)?;
            let mut r = Response::new(Full::new(Bytes::from(png)).boxed());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("image/png"),
            );
            r
        }
    };
    if format == "raw" {
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// `POST /v1/sessions/{id}/pairing-code {phone}`.
pub async fn pairing_code(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let row = load(ctx, caller).await?;
    let body: PairingCodeBody = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let digits = body.phone.trim().trim_start_matches('+');
    if !(5..=20).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`phone` must be an international number: 5 to 20 digits, optional leading +",
        ));
    }
    if row.status != status::SCAN_QR {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_pairing",
            format!("the session is {}, not waiting to be paired", row.status),
        ));
    }
    let code = ctx
        .app
        .commands
        .query(
            &caller.tenant.id,
            &row.id,
            Query::PairingCode(digits.to_owned()),
        )
        .await?;
    json(StatusCode::OK, &serde_json::json!({ "code": code }))
}

/// `GET /v1/sessions/{id}/groups` and `/contacts`.
pub async fn parties(ctx: &Ctx<'_>, caller: &Caller, query: Query) -> ApiResult {
    let row = load(ctx, caller).await?;
    let list = ctx
        .app
        .commands
        .query(&caller.tenant.id, &row.id, query)
        .await?;
    json(StatusCode::OK, &serde_json::json!({ "data": list }))
}

/// Runs a session: here when this replica takes it (the least loaded, or holding
/// it already), else on the replica that does (see `Commands::start`).
pub(crate) async fn run(ctx: &Ctx<'_>, row: SessionRow) -> Result<(), ApiError> {
    Ok(ctx.app.commands.start(row).await?)
}

/// Stops a session on the replica running it (or here, when none does).
pub(crate) async fn halt(ctx: &Ctx<'_>, tenant_id: &str, id: &str) -> Result<(), ApiError> {
    Ok(ctx.app.commands.stop(tenant_id, id).await?)
}

pub async fn delete(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    halt(ctx, &caller.tenant.id, &row.id).await?;
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
    run(ctx, row.clone()).await?;
    view(ctx, caller, &row.id).await
}

pub async fn stop(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    halt(ctx, &caller.tenant.id, &row.id).await?;
    view(ctx, caller, &row.id).await
}

pub async fn restart(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    ctx.app.commands.restart(&caller.tenant.id, &row.id).await?;
    view(ctx, caller, &row.id).await
}

pub async fn logout(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    ctx.app.commands.logout(&caller.tenant.id, &row.id).await?;
    view(ctx, caller, &row.id).await
}

pub async fn fault(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let row = load(ctx, caller).await?;
    let body: FaultBody = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    if !is_sim(&row) {
        return Err(not_sim("faults"));
    }
    ctx.app
        .commands
        .fault(&caller.tenant.id, &row.id, body.fault)
        .await?;
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "id": row.id, "fault": body.fault }),
    )
}

/// `POST /v1/sessions/{id}/test-connection`: tries an e-mail session's IMAP and SMTP
/// servers with its stored (sealed) configuration, and reports each.
pub async fn test_connection(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let row = load(ctx, caller).await?;
    if row.channel.parse() != Ok(ChannelKind::Email) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_email",
            format!(
                "only e-mail sessions have servers to test; this one is {}",
                row.channel
            ),
        ));
    }
    let config = channels::session_config(&row, &ctx.app.store, &ctx.app.keyring)
        .await
        .map_err(ApiError::internal)?;
    let config = EmailConfig::parse(&config).map_err(ApiError::internal)?;
    let report = channels::email::test_connection(&config, &ctx.app.config.channels.email).await;
    json(StatusCode::OK, &report)
}

/// `POST /v1/sessions/{id}/challenge {"code"}`: answers the login challenge the
/// session reported (`session.challenge`, status `CHALLENGE`).
pub async fn challenge(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let row = load(ctx, caller).await?;
    let body: ChallengeBody = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let code = body.code.trim();
    if code.is_empty() || code.chars().count() > MAX_CODE_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("`code` must be 1 to {MAX_CODE_CHARS} characters"),
        ));
    }
    if row.status != status::CHALLENGE {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_challenge",
            format!("no login challenge is open: the session is {}", row.status),
        ));
    }
    let answer = ctx
        .app
        .commands
        .query(
            &caller.tenant.id,
            &row.id,
            Query::SubmitCode(code.to_owned()),
        )
        .await?;
    json(StatusCode::ACCEPTED, &answer)
}

/// `POST /v1/sessions/{id}/sim/inbound {"from","text","chat"?}`: a sim session
/// reports the message as received (scripted conversations).
pub async fn sim_inbound(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let session = load(ctx, caller).await?;
    let body: SimInbound = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    if !is_sim(&session) {
        return Err(not_sim("messages"));
    }
    if body.from.trim().is_empty() || body.from.len() > 256 {
        return Err(ApiError::validation("`from` must be 1 to 256 characters"));
    }
    if body.text.chars().count() > super::messages::MAX_TEXT_CHARS {
        return Err(ApiError::validation(format!(
            "`text` must be at most {} characters",
            super::messages::MAX_TEXT_CHARS
        )));
    }
    let message = InboundMessage {
        external_id: format!("sim-in-{}", ulid::Ulid::new()),
        from: body.from.trim().to_owned(),
        text: body.text,
        chat: body.chat,
        sent_at: clock::now_ms(),
        from_phone: None,
        chat_phone: None,
        meta: serde_json::Value::Null,
        ..Default::default()
    };
    let answer = ctx
        .app
        .commands
        .query(
            &caller.tenant.id,
            &session.id,
            Query::Inject(Box::new(message)),
        )
        .await?;
    json(StatusCode::ACCEPTED, &answer)
}
