//! Message routes: queue a send (`POST /v1/sessions/{id}/messages`, honouring
//! `Idempotency-Key`), read one message, list a session's messages (both
//! directions, cursor paging). The send itself goes through the one send path,
//! [`switchboard_actors::outbound::SendQueue`]; this file parses HTTP.
//!
//! A send is accepted (202, `queued`) while its session is running — `WORKING`, or
//! `STARTING`/`SCAN_QR` while it connects or restarts, in which case it waits in the
//! queue. A stopped, failed or logged-out session answers 409 `session_not_working`.
//! A full queue answers 429 `send_queue_full` with `Retry-After`. The same
//! Idempotency-Key with the same request returns the first message; with another
//! request, 422 `idempotency_key_reused`. `subject` and `reply_to` (the `msg_…` id of
//! a message of the same session) go to channels that carry them; others answer 422
//! `not_supported`, and a `reply_to` naming no message of the session 422
//! `reply_to_not_found`.

use super::auth::Caller;
use super::body::{page_query, read_json};
use super::{ApiError, ApiResult, Ctx, json};
use base64::Engine;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use switchboard_actors::channels::{Attachment, AttachmentContent};
use switchboard_actors::clock::rfc3339;
use switchboard_actors::ids;
use switchboard_actors::outbound::{Idempotency, KeyScope, NewSend};
use switchboard_actors::sessions::Query;
use switchboard_actors::storage::MessageRow;

/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
const MAX_TO_CHARS: usize = 256;
const MAX_KEY_CHARS: usize = 255;
const MAX_SUBJECT_CHARS: usize = 998;
/// Largest HTML alternative of a send, in bytes.
const MAX_HTML_BYTES: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessage {
    to: String,
    /// Optional with `media` (its caption).
    #[serde(default)]
    text: String,
    /// A file to send: one already stored (`id`) or fetched once from an https URL.
    #[serde(default)]
    media: Option<MediaRef>,
    /// The text that goes with `media` (same as `text`; give one).
    #[serde(default)]
    caption: Option<String>,
    /// The name the file is sent under (default: its stored name).
    #[serde(default)]
    filename: Option<String>,
    /// Send an audio file as a voice note (WhatsApp).
    #[serde(default)]
    as_voice: bool,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
    /// An HTML alternative to `text` (e-mail sessions).
    #[serde(default)]
    html: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MessageView {
    pub id: String,
    pub session_id: String,
    pub direction: String,
    /// Recipient (outbound) or sender (inbound).
    pub peer: String,
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The `msg_…` id of the message this one answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    pub status: String,
    pub external_id: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn view(ctx: &Ctx<'_>, m: &MessageRow) -> MessageView {
    let subject = m.open_extras(&ctx.app.keyring).and_then(|e| e.subject);
    MessageView {
        id: m.id.clone(),
        session_id: m.session_id.clone(),
        direction: m.direction.clone(),
        peer: m.peer.clone(),
        text: m.open_text(&ctx.app.keyring),
        subject,
        reply_to: m.reply_to.clone(),
        status: m.status.clone(),
        external_id: m.external_id.clone(),
        error: m.error.clone(),
        created_at: rfc3339(m.created_at),
        updated_at: rfc3339(m.updated_at),
    }
}

pub async fn send(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let session_id = ctx.params[0].as_str();
    if !ids::is_valid(super::sessions::SESSION_PREFIX, session_id) {
        return Err(ApiError::not_found("session"));
    }
    let key = idempotency_key(&req)?;
    let multipart = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"))
        .map(str::to_owned);
    let Some(content_type) = multipart else {
        let body: SendMessage = read_json(req, ctx.app.config.max_body_bytes, false).await?;
        return queue_send(ctx, caller, session_id, key, body).await;
    };
    // A form: the file is stored while it streams in; if the send is then refused,
    // a file this request added goes again (bad input changes nothing).
    let (body, uploaded) = send_form(ctx, caller, req, &content_type).await?;
    let result = queue_send(ctx, caller, session_id, key, body).await;
    if result.is_err()
        && let Some(row) = uploaded
        && let Err(e) = ctx.app.media.remove(&row).await
    {
        tracing::warn!(error = %e, media_id = %row.id, "a refused send's upload was not removed");
    }
    result
}

/// Text fields a send form may have (the file is the `file` part).
const FORM_FIELDS: &[&str] = &[
    "to", "text", "caption", "filename", "as_voice", "subject", "reply_to", "html",
];

/// Reads a `multipart/form-data` send: its fields as [`SendMessage`], its `file`
/// streamed into the media store. The stored row is returned when this request
/// added it.
async fn send_form(
    ctx: &Ctx<'_>,
    caller: &Caller,
    req: Request<Incoming>,
    content_type: &str,
) -> Result<(SendMessage, Option<switchboard_actors::storage::MediaRow>), ApiError> {
    let malformed = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed_multipart", m);
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| malformed("multipart/form-data without a boundary".into()))?;
    let max_file = ctx.app.media.limits().max_file_bytes;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The file and a little room for the fields and the form's own lines.
    let room = max_file.saturating_add(ctx.app.config.max_body_bytes as u64);
    if declared.is_some_and(|n| n > room) {
        return Err(super::media::media_error(
            switchboard_actors::media::MediaError::TooLarge { limit: max_file },
        ));
    }
    // The store refuses a file past its limit itself (413); the form's own limits sit
    // a little above, so that is what a too-large file meets.
    let slack = 1 << 20;
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(room.saturating_add(slack))
            .per_field(ctx.app.config.max_body_bytes as u64)
            .for_field("file", max_file.saturating_add(slack)),
    );
    let mut form =
        multer::Multipart::with_constraints(req.into_body().into_data_stream(), boundary, limits);
    let mut fields = serde_json::Map::new();
    let mut stored: Option<(switchboard_actors::storage::MediaRow, bool)> = None;
    let take_back = |stored: &Option<(switchboard_actors::storage::MediaRow, bool)>| {
        stored
            .as_ref()
            .filter(|(_, fresh)| *fresh)
            .map(|(r, _)| r.clone())
    };
    let outcome: Result<(), ApiError> = async {
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| malformed(e.to_string()))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "file" {
                if stored.is_some() {
                    return Err(ApiError::validation("a send carries one `file`"));
                }
                let new = switchboard_actors::media::NewMedia {
                    filename: super::media::filename(field.file_name().map(str::to_owned))?,
                    mimetype: field.content_type().map(ToString::to_string),
                };
                let row = ctx
                    .app
                    .media
                    .ingest_fresh(&caller.tenant.id, new, field)
                    .await
                    .map_err(super::media::media_error)?;
                stored = Some(row);
                continue;
            }
            if !FORM_FIELDS.contains(&name.as_str()) {
                return Err(ApiError::validation(format!(
                    "unknown form field `{name}` (fields: {}, and the `file`)",
                    FORM_FIELDS.join(", ")
                )));
            }
            let text = field.text().await.map_err(|e| malformed(e.to_string()))?;
            let value = if name == "as_voice" {
                match text.trim() {
                    "true" | "1" => serde_json::Value::Bool(true),
                    "false" | "0" | "" => serde_json::Value::Bool(false),
                    other => {
                        return Err(ApiError::validation(format!(
                            "`as_voice` is true or false, not `{other}`"
                        )));
                    }
                }
            } else {
                text.into()
            };
            fields.insert(name, value);
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        if let Some(row) = take_back(&stored) {
            let _ = ctx.app.media.remove(&row).await;
        }
        if e.status != StatusCode::PAYLOAD_TOO_LARGE {
            drain(&mut form).await;
        }
        return Err(e);
    }
    if let Some((row, _)) = &stored {
        fields.insert("media".into(), serde_json::json!({ "id": row.id }));
    }
    let fresh = take_back(&stored);
    match serde_json::from_value::<SendMessage>(serde_json::Value::Object(fields)) {
        Ok(body) => Ok((body, fresh)),
        Err(e) => {
            if let Some(row) = fresh {
                let _ = ctx.app.media.remove(&row).await;
            }
            Err(ApiError::validation(e.to_string()))
        }
    }
}

/// Reads what is left of a refused form (within its limits, 10 s at most), so that
/// a client still sending it reads the answer instead of a reset connection. Not
/// for a form refused as too large: that one is cut off.
async fn drain(form: &mut multer::Multipart<'static>) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(mut field)) = form.next_field().await {
            while let Ok(Some(_)) = field.chunk().await {}
        }
    })
    .await;
}

/// Validates a send and queues it.
async fn queue_send(
    ctx: &Ctx<'_>,
    caller: &Caller,
    session_id: &str,
    key: Option<String>,
    body: SendMessage,
) -> ApiResult {
    let to = body.to.trim();
    if to.is_empty() || to.chars().count() > MAX_TO_CHARS {
        return Err(ApiError::validation(format!(
            "`to` must be 1 to {MAX_TO_CHARS} characters"
        )));
    }
    let text = match (body.caption, body.media.is_some()) {
        (Some(_), false) => {
            return Err(ApiError::validation(
                "`caption` goes with `media`; use `text`",
            ));
        }
        (Some(_), true) if !body.text.trim().is_empty() => {
            return Err(ApiError::validation("give `text` or `caption`, not both"));
        }
        (Some(c), true) => c,
        (None, _) => body.text,
    };
    if text.trim().is_empty() && body.media.is_none() {
        return Err(ApiError::validation("`text` must not be empty"));
    }
    if body.as_voice && body.media.is_none() {
        return Err(ApiError::validation("`as_voice` goes with `media`"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::validation(format!(
            "`text` must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    let subject = body.subject.as_deref().map(str::trim);
    if subject.is_some_and(|s| s.is_empty() || s.chars().count() > MAX_SUBJECT_CHARS) {
        return Err(ApiError::validation(format!(
            "`subject` must be 1 to {MAX_SUBJECT_CHARS} characters"
        )));
    }
    if body
        .html
        .as_deref()
        .is_some_and(|h| h.trim().is_empty() || h.len() > MAX_HTML_BYTES)
    {
        return Err(ApiError::validation(format!(
            "`html` must be 1 to {MAX_HTML_BYTES} bytes"
        )));
    }
    let session = ctx
        .app
        .store
        .get_session(&caller.tenant.id, session_id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    let attachments = match body.media {
        Some(m) => vec![media_attachment(ctx, caller, m, body.filename, body.as_voice).await?],
        None if body.filename.is_some() => {
            return Err(ApiError::validation("`filename` goes with `media`"));
        }
        None => Vec::new(),
    };
    let send = NewSend {
        html: body.html,
        to: to.to_owned(),
        text,
        subject: subject.map(str::to_owned),
        reply_to: body.reply_to,
        attachments,
        kind: Default::default(),
        mark_read: false,
        idempotency: key.map(|key| Idempotency {
            key,
            scope: KeyScope::Request,
        }),
    };
    let q = ctx.app.sends.queue(&caller.tenant, &session, send).await?;
    queued(ctx, q)
}

/// The request's `Idempotency-Key`, checked.
pub(crate) fn idempotency_key(req: &Request<Incoming>) -> Result<Option<String>, ApiError> {
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
    Ok(key)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// The attachment a send's `media` names: a stored file of the tenant, or one
/// fetched from its URL into the store first.
async fn media_attachment(
    ctx: &Ctx<'_>,
    caller: &Caller,
    media: MediaRef,
    filename: Option<String>,
    as_voice: bool,
) -> Result<Attachment, ApiError> {
    let row = stored_or_fetched(ctx, caller, media, filename.clone()).await?;
    if as_voice && !row.mimetype.starts_with("audio/") {
        return Err(ApiError::validation(format!(
            "`as_voice` needs an audio file; this one is {}",
            row.mimetype
        )));
    }
    let name = super::media::filename(filename)?
        .or(row.filename.clone())
        .unwrap_or_else(|| row.id.clone());
    Ok(Attachment {
        filename: name,
        mime_type: row.mimetype.clone(),
        content: AttachmentContent::Media(row.id),
        as_voice,
    })
}

async fn stored_or_fetched(
    ctx: &Ctx<'_>,
    caller: &Caller,
    media: MediaRef,
    filename: Option<String>,
) -> Result<switchboard_actors::storage::MediaRow, ApiError> {
    let store = &ctx.app.media;
    let row = match (media.id, media.url) {
        (Some(id), None) => store
            .get(&caller.tenant.id, id.trim())
            .await
            .map_err(super::media::media_error)?,
        (None, Some(url)) => store
            .fetch(
                &caller.tenant.id,
                url.trim(),
                filename.clone(),
                ctx.app.config.webhooks.allow_private,
            )
            .await
            .map_err(super::media::media_error)?,
        _ => {
            return Err(ApiError::validation(
                "`media` takes `id` (a stored file) or `url`, one of them",
            ));
        }
    };
    Ok(row)
}

/// A queued send as the API answers it (202), marked when replayed.
pub(crate) fn queued(ctx: &Ctx<'_>, q: switchboard_actors::outbound::Queued) -> ApiResult {
    let mut res = json(StatusCode::ACCEPTED, &view(ctx, &q.message))?;
    if q.replayed {
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

/// `GET /v1/messages/{id}/attachments/{index}`: a received attachment's bytes.
pub async fn attachment(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let id = ctx.params[0].as_str();
    let index: usize = ctx.params[1]
        .parse()
        .map_err(|_| ApiError::not_found("attachment"))?;
    let m = ctx
        .app
        .store
        .get_message(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    let external = match (&m.external_id, m.direction.as_str()) {
        (Some(e), "inbound") => e.clone(),
        _ => return Err(ApiError::not_found("attachment")),
    };
    let got = ctx
        .app
        .commands
        .query(
            &caller.tenant.id,
            &m.session_id,
            Query::Attachment(external, index),
        )
        .await?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(got["bytes_base64"].as_str().unwrap_or_default())
        .map_err(ApiError::internal)?;
    let mut res =
        hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(bytes)).boxed());
    let mime = got["mime_type"]
        .as_str()
        .unwrap_or("application/octet-stream");
    let headers = res.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    let filename: String = got["filename"]
        .as_str()
        .unwrap_or("attachment")
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ';') || *c == ' ')
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(http::header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(res)
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactionBody {
    /// One emoji; empty takes our reaction back.
    emoji: String,
}

/// The longest emoji taken (a ZWJ family sequence with skin tones stays under it).
const MAX_EMOJI_CHARS: usize = 16;

/// `POST /v1/messages/{id}/reactions {"emoji"}`: reacts to a message (received or
/// sent) on its network, at once (not through the send queue); `""` takes the
/// reaction back.
pub async fn react(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let id = ctx.params[0].as_str();
    let body: ReactionBody = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let emoji = body.emoji.trim().to_owned();
    let looks_like_emoji = emoji.chars().count() <= MAX_EMOJI_CHARS
        && !emoji
            .chars()
            .any(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || c.is_control());
    if !looks_like_emoji {
        return Err(ApiError::validation(
            "`emoji` must be one emoji (or \"\" to take the reaction back)",
        ));
    }
    if !ids::is_valid(ids::MESSAGE, id) {
        return Err(ApiError::not_found("message"));
    }
    let m = ctx
        .app
        .store
        .get_message(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    let Some(external) = m.external_id.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "message_not_sent",
            "the network has no id for this message yet (it is not sent); react once it is",
        ));
    };
    ctx.app
        .commands
        .query(
            &caller.tenant.id,
            &m.session_id,
            Query::React(external, emoji.clone()),
        )
        .await?;
    json(
        StatusCode::OK,
        &serde_json::json!({ "message_id": m.id, "emoji": emoji, "removed": emoji.is_empty() }),
    )
}

/// `POST /v1/sessions/{id}/chats/{chat}/read`: marks a chat read on the network (its
/// sender sees the read receipts).
pub async fn mark_read(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let session_id = ctx.params[0].as_str();
    let chat = ctx.params[1].replace("%40", "@");
    if !ids::is_valid(super::sessions::SESSION_PREFIX, session_id) {
        return Err(ApiError::not_found("session"));
    }
    let session = ctx
        .app
        .store
        .get_session(&caller.tenant.id, session_id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    if chat.is_empty() || chat.len() > MAX_TO_CHARS {
        return Err(ApiError::validation("`chat` must be a chat id or number"));
    }
    let done = ctx
        .app
        .commands
        .query(&caller.tenant.id, &session.id, Query::MarkRead(chat))
        .await?;
    json(StatusCode::OK, &done)
}
