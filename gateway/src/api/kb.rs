//! Knowledge base, drafts and reply settings.
//!
//! - `POST /v1/kb/documents`: JSON `{"title","text","format"?}` or a
//!   `multipart/form-data` upload (a `file` part, `.txt`/`.md`, and an optional
//!   `title` field) → chunked, embedded, stored → 201 `{"id","chunks",…}`.
//!   `GET /v1/kb/documents`, `DELETE /v1/kb/documents/{id}` (its vectors go too).
//! - `POST /v1/kb/search {"query","limit"}` → `{"results":[{"document_id","title","text","score"}]}`.
//! - `GET /v1/drafts[?status=pending]`, `POST /v1/drafts/{id}/approve` (optional
//!   `{"text"}` to edit it first; queued like any send), `POST /v1/drafts/{id}/reject`.
//! - `GET|PUT /v1/sessions/{id}/reply-settings`: mode `off`/`draft`/`auto`, allowed
//!   contacts, groups on/off, system prompt, model, temperature.
//! - `POST /v1/sessions/{id}/sim/inbound {"from","text","chat"?}`: a sim session
//!   reports the message as received (scripted conversations).
//!
//! Everything is scoped to the caller's tenant; the vector store applies the tenant
//! filter itself on every query and delete.

use super::auth::Caller;
use super::body::{query_pairs, read_bytes, read_json};
use super::{ApiError, ApiResult, Ctx, json, no_content};
use crate::rag::{DOCUMENT_PREFIX, DRAFT_PREFIX};
use crate::sends::{SendError, Text};
use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use switchboard_actors::channels::InboundMessage;
use switchboard_actors::clock::{self, rfc3339};
use switchboard_actors::events::Publish;
use switchboard_actors::ids;
use switchboard_actors::sessions::Query;
use switchboard_actors::storage::{DRAFT_PURPOSE, DraftRow, KbDocumentRow, SessionRow};
use switchboard_crypto::{ApiKeyHash, Binding};
use switchboard_rag::actor::{Mode, RAG_REPLY, ReplySettings};
use switchboard_rag::chunk::Format;
use switchboard_rag::embed::EmbedError;
use switchboard_rag::kb::{KbError, KnowledgeBase, MAX_SEARCH_LIMIT};

/// Largest document upload.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
const MAX_TITLE_CHARS: usize = 200;
const MAX_QUERY_CHARS: usize = 2_000;
const MAX_PROMPT_CHARS: usize = 8_000;
const MAX_CONTACTS: usize = 1_000;
const DEFAULT_SEARCH_LIMIT: usize = 5;

fn kb_error(e: KbError) -> ApiError {
    match e {
        KbError::Empty => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_document",
            "the document has no text to index",
        ),
        KbError::Unavailable(_) | KbError::Embed(EmbedError::Files(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "knowledge_base_unavailable",
            e.to_string(),
        ),
        KbError::Embed(EmbedError::Remote(_)) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "embedding_failed", e.to_string())
        }
        other => ApiError::internal(other),
    }
}

async fn open_kb<'a>(ctx: &Ctx<'a>) -> Result<&'a KnowledgeBase, ApiError> {
    ctx.app.knowledge.get().await.map_err(kb_error)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDocument {
    title: String,
    text: String,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Serialize)]
struct DocumentView {
    id: String,
    title: String,
    format: String,
    bytes: i64,
    chunks: i64,
    model: String,
    status: String,
    created_at: String,
}

impl From<&KbDocumentRow> for DocumentView {
    fn from(d: &KbDocumentRow) -> Self {
        Self {
            id: d.id.clone(),
            title: d.title.clone(),
            format: d.format.clone(),
            bytes: d.bytes,
            chunks: d.chunks,
            model: d.model.clone(),
            status: d.status.clone(),
            created_at: rfc3339(d.created_at),
        }
    }
}

fn parse_format(name: Option<&str>, text: &str) -> Result<Format, ApiError> {
    match name {
        Some("text") => Ok(Format::Text),
        Some("markdown") => Ok(Format::Markdown),
        Some(other) => Err(ApiError::validation(format!(
            "`format` must be `text` or `markdown`, got `{other}`"
        ))),
        // Markdown when it looks like it: a heading or a code fence.
        None if text.lines().any(|l| {
            l.starts_with('#') && l.trim_start_matches('#').starts_with(' ') || l.starts_with("```")
        }) =>
        {
            Ok(Format::Markdown)
        }
        None => Ok(Format::Text),
    }
}

/// One part of a multipart body.
struct Part<'a> {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: &'a [u8],
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn disposition_param(header: &str, key: &str) -> Option<String> {
    header.split(';').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits a `multipart/form-data` body (RFC 7578).
fn multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, ApiError> {
    let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "malformed_multipart", m);
    let delimiter = format!("--{boundary}");
    let mut rest = body;
    let start = find(rest, delimiter.as_bytes()).ok_or_else(|| bad("no boundary in the body"))?;
    rest = &rest[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("a boundary is not followed by a line break"))?;
        let head_end = find(rest, b"\r\n\r\n").ok_or_else(|| bad("a part has no header end"))?;
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| bad("part headers are not UTF-8"))?;
        rest = &rest[head_end + 4..];
        let end_marker = format!("\r\n--{boundary}");
        let end = find(rest, end_marker.as_bytes()).ok_or_else(|| bad("a part is not closed"))?;
        let data = &rest[..end];
        rest = &rest[end + end_marker.len()..];
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(v, "name");
                filename = disposition_param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_ascii_lowercase());
            }
        }
        parts.push(Part {
            name: name.ok_or_else(|| bad("a part has no name"))?,
            filename,
            content_type,
            data,
        });
    }
}

fn unsupported_document(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_document_type",
        format!("{what}: upload plain text (.txt) or Markdown (.md)"),
    )
}

/// Title, text and format of an uploaded file.
fn from_multipart(body: &[u8], content_type: &str) -> Result<NewDocument, ApiError> {
    let boundary = content_type
        .split(';')
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.eq_ignore_ascii_case("boundary")
                .then(|| v.trim_matches('"').to_owned())
        })
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_multipart",
                "multipart/form-data without a boundary",
            )
        })?;
    let parts = multipart(body, &boundary)?;
    let file = parts
        .iter()
        .find(|p| p.name == "file")
        .ok_or_else(|| ApiError::validation("the upload has no `file` part"))?;
    let filename = file.filename.clone().unwrap_or_default();
    let lower = filename.to_ascii_lowercase();
    let ct = file.content_type.as_deref().unwrap_or("");
    let format = if lower.ends_with(".md")
        || lower.ends_with(".markdown")
        || ct.starts_with("text/markdown")
    {
        "markdown"
    } else if lower.ends_with(".txt")
        || ct.starts_with("text/plain")
        || (ct.is_empty() && !lower.contains('.'))
    {
        "text"
    } else {
        return Err(unsupported_document(&format!(
            "`{filename}` ({})",
            if ct.is_empty() { "no type" } else { ct }
        )));
    };
    let text = std::str::from_utf8(file.data)
        .map_err(|_| unsupported_document("the file is not UTF-8 text"))?
        .to_owned();
    let title = match parts.iter().find(|p| p.name == "title") {
        Some(p) => String::from_utf8_lossy(p.data).trim().to_owned(),
        None => filename
            .rsplit_once('.')
            .map_or(filename.as_str(), |(stem, _)| stem)
            .to_owned(),
    };
    Ok(NewDocument {
        title,
        text,
        format: Some(format.to_owned()),
    })
}

pub async fn create_document(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let doc: NewDocument = if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let body = read_bytes(req, MAX_DOCUMENT_BYTES).await?;
        from_multipart(&body, &content_type)?
    } else {
        read_json(req, MAX_DOCUMENT_BYTES, false).await?
    };
    let title = doc.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::validation(format!(
            "`title` must be 1 to {MAX_TITLE_CHARS} characters"
        )));
    }
    if doc.text.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_document",
            "the document has no text to index",
        ));
    }
    let format = parse_format(doc.format.as_deref(), &doc.text)?;
    let kb = open_kb(ctx).await?;
    let tenant = &caller.tenant.id;
    let now = clock::now_ms();
    let mut row = KbDocumentRow {
        id: ids::new_id(DOCUMENT_PREFIX),
        tenant_id: tenant.clone(),
        title: title.to_owned(),
        format: match format {
            Format::Text => "text".into(),
            Format::Markdown => "markdown".into(),
        },
        bytes: doc.text.len() as i64,
        chunks: 0,
        model: kb.model_id().to_owned(),
        status: "indexing".into(),
        created_at: now,
        updated_at: now,
    };
    // The row first: if we crash while indexing, start-up finds it and removes
    // whatever vectors were stored.
    ctx.app.store.insert_kb_document(&row).await?;
    let started = std::time::Instant::now();
    match kb.ingest(tenant, &row.id, title, &doc.text, format).await {
        Ok(chunks) => {
            row.chunks = chunks as i64;
            row.status = "ready".into();
            ctx.app
                .store
                .kb_document_ready(tenant, &row.id, row.chunks)
                .await?;
            metrics::counter!("switchboard_kb_documents_ingested_total").increment(1);
            metrics::histogram!("switchboard_kb_ingest_seconds")
                .record(started.elapsed().as_secs_f64());
            json(StatusCode::CREATED, &DocumentView::from(&row))
        }
        Err(e) => {
            if let Err(cleanup) = kb.delete(tenant, &row.id).await {
                tracing::error!(error = %cleanup, document_id = %row.id, "could not remove a failed document's vectors");
            }
            ctx.app.store.delete_kb_document(tenant, &row.id).await?;
            Err(kb_error(e))
        }
    }
}

pub async fn list_documents(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let rows = ctx.app.store.list_kb_documents(&caller.tenant.id).await?;
    let data: Vec<DocumentView> = rows.iter().map(DocumentView::from).collect();
    json(StatusCode::OK, &serde_json::json!({ "data": data }))
}

pub async fn delete_document(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let id = ctx.params[0].as_str();
    let tenant = &caller.tenant.id;
    if !ids::is_valid(DOCUMENT_PREFIX, id)
        || ctx.app.store.get_kb_document(tenant, id).await?.is_none()
    {
        return Err(ApiError::not_found("document"));
    }
    open_kb(ctx)
        .await?
        .delete(tenant, id)
        .await
        .map_err(kb_error)?;
    ctx.app.store.delete_kb_document(tenant, id).await?;
    no_content()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: String,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn search(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let body: SearchRequest = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    let query = body.query.trim();
    if query.is_empty() || query.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::validation(format!(
            "`query` must be 1 to {MAX_QUERY_CHARS} characters"
        )));
    }
    let limit = body.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    if !(1..=MAX_SEARCH_LIMIT).contains(&limit) {
        return Err(ApiError::validation(format!(
            "`limit` must be between 1 and {MAX_SEARCH_LIMIT}"
        )));
    }
    let hits = open_kb(ctx)
        .await?
        .search(&caller.tenant.id, query, limit)
        .await
        .map_err(kb_error)?;
    let results: Vec<_> = hits
        .into_iter()
        .map(|h| {
            serde_json::json!({
                "document_id": h.document_id,
                "title": h.title,
                "text": h.text,
                "score": h.score,
                "chunk_index": h.chunk_index,
            })
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "results": results }))
}

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

fn draft_binding<'a>(tenant_id: &'a str, id: &'a str) -> Binding<'a> {
    Binding {
        tenant_id,
        record_id: id,
        purpose: DRAFT_PURPOSE,
    }
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

pub async fn list_drafts(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
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
    if !ids::is_valid(DRAFT_PREFIX, id) {
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

pub async fn approve_draft(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
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
    if session.desired_state != "running" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "session_not_working",
            format!(
                "the session is {}; start it before approving",
                session.status
            ),
        ));
    }
    let edited = edit.text.is_some();
    let sealed = if edited {
        let question = stored.question.clone().unwrap_or_default();
        Some(
            crate::rag::seal_draft(&ctx.app.keyring, tenant, &draft.id, &question, &text)
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
    let key = format!("draft:{}", draft.id);
    let send = Text {
        to: &draft.peer,
        text: &text,
        request_hash: ApiKeyHash::of(&format!("{}\0{}\0{key}", session.id, draft.peer)),
        idempotency_key: Some(key),
    };
    let message =
        match crate::sends::queue_text(&ctx.app.sends(), &caller.tenant, &session, send).await {
            Ok((row, _)) => row,
            Err(e) => {
                // Not sent: the draft waits again.
                ctx.app
                    .store
                    .decide_draft(tenant, &draft.id, ("approved", "pending"), None, None)
                    .await?;
                return Err(match e {
                    SendError::QueueFull {
                        queued,
                        retry_after_secs,
                    } => ApiError {
                        retry_after: Some(retry_after_secs),
                        ..ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "send_queue_full",
                            format!("{queued} sends are already queued"),
                        )
                    },
                    other => ApiError::internal(other),
                });
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

pub async fn reject_draft(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
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

async fn load_session(ctx: &Ctx<'_>, caller: &Caller) -> Result<SessionRow, ApiError> {
    let id = ctx.params[0].as_str();
    if !ids::is_valid(super::sessions::SESSION_PREFIX, id) {
        return Err(ApiError::not_found("session"));
    }
    ctx.app
        .store
        .get_session(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))
}

fn settings_view(ctx: &Ctx<'_>, s: &ReplySettings) -> serde_json::Value {
    let mut v = serde_json::json!(s);
    v["writer"] = serde_json::Value::from(if ctx.app.llm_configured {
        "llm"
    } else {
        "retrieval"
    });
    v
}

pub async fn get_reply_settings(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let session = load_session(ctx, caller).await?;
    let settings = match ctx
        .app
        .store
        .reply_settings(&caller.tenant.id, &session.id)
        .await?
    {
        Some(text) => serde_json::from_str(&text).map_err(ApiError::internal)?,
        None => ReplySettings::default(),
    };
    json(StatusCode::OK, &settings_view(ctx, &settings))
}

pub async fn put_reply_settings(
    ctx: &Ctx<'_>,
    caller: &Caller,
    req: Request<Incoming>,
) -> ApiResult {
    let session = load_session(ctx, caller).await?;
    let s: ReplySettings = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    if !(0.0..=2.0).contains(&s.temperature) {
        return Err(ApiError::validation(
            "`temperature` must be between 0 and 2",
        ));
    }
    if s.system_prompt
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_PROMPT_CHARS)
    {
        return Err(ApiError::validation(format!(
            "`system_prompt` must be at most {MAX_PROMPT_CHARS} characters"
        )));
    }
    if s.model
        .as_ref()
        .is_some_and(|m| m.trim().is_empty() || m.len() > 200)
    {
        return Err(ApiError::validation("`model` must be 1 to 200 characters"));
    }
    if s.allowed_contacts.len() > MAX_CONTACTS
        || s.allowed_contacts
            .iter()
            .any(|c| c.trim().is_empty() || c.len() > 256)
    {
        return Err(ApiError::validation(format!(
            "`allowed_contacts` holds at most {MAX_CONTACTS} non-empty ids of up to 256 characters"
        )));
    }
    let text = serde_json::to_string(&s).map_err(ApiError::internal)?;
    ctx.app
        .store
        .put_reply_settings(&caller.tenant.id, &session.id, s.mode.as_str(), &text)
        .await?;
    if s.mode != Mode::Off {
        // Opening the knowledge base now makes the first answer quick (and surfaces
        // a missing model in the log at once).
        let knowledge = ctx.app.knowledge.clone();
        tokio::spawn(async move {
            let _ = knowledge.get().await;
        });
    }
    json(StatusCode::OK, &settings_view(ctx, &s))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimInbound {
    from: String,
    text: String,
    #[serde(default)]
    chat: Option<String>,
}

pub async fn sim_inbound(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let session = load_session(ctx, caller).await?;
    let body: SimInbound = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    if session.channel != "sim" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_sim",
            "messages can only be injected into sim sessions",
        ));
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
        meta: serde_json::Value::Null,
    };
    let answer = ctx
        .app
        .sessions
        .query(
            &caller.tenant.id,
            &session.id,
            Query::Inject(Box::new(message)),
        )
        .await
        .map_err(super::sessions::session_error)?;
    json(StatusCode::ACCEPTED, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_are_split_into_parts() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nOpening hours\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hours.md\"\r\nContent-Type: text/markdown\r\n\r\n# Hours\r\n\r\nOpen 9 to 5.\r\n--XyZ--\r\n";
        let doc = from_multipart(body, "multipart/form-data; boundary=XyZ").unwrap();
        assert_eq!(doc.title, "Opening hours");
        assert_eq!(doc.text, "# Hours\r\n\r\nOpen 9 to 5.");
        assert_eq!(doc.format.as_deref(), Some("markdown"));
    }

    #[test]
    fn bad_multipart_and_binary_files_are_refused() {
        assert!(from_multipart(b"--a\r\nno end", "multipart/form-data; boundary=a").is_err());
        assert!(from_multipart(b"", "multipart/form-data").is_err());
        let pdf = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--b--";
        let e = from_multipart(pdf, "multipart/form-data; boundary=b").unwrap_err();
        assert_eq!(e.code, "unsupported_document_type");
    }

    #[test]
    fn markdown_is_detected_when_no_format_is_given() {
        assert_eq!(
            parse_format(None, "# Title\ntext").unwrap(),
            Format::Markdown
        );
        assert_eq!(parse_format(None, "#hashtag text").unwrap(), Format::Text);
        assert_eq!(parse_format(Some("text"), "# Title").unwrap(), Format::Text);
        assert!(parse_format(Some("pdf"), "x").is_err());
    }
}
