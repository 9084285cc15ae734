//! The knowledge base: documents and search. (Drafts and reply settings have their
//! own files.)
//!
//! - `POST /v1/kb/documents`: JSON `{"title","text","format"?}` or a
//!   `multipart/form-data` upload (a `file` part, `.txt`/`.md`, and an optional
//!   `title` field; parsed by `multer`) → chunked, embedded, stored → 201
//!   `{"id","chunks",…}`. `GET /v1/kb/documents`, `DELETE /v1/kb/documents/{id}`
//!   (its vectors go too).
//! - `POST /v1/kb/search {"query","limit"}` → `{"results":[{"document_id","title","text","score"}]}`.
//!
//! Everything is scoped to the caller's tenant; the vector store applies the tenant
//! filter itself on every query and delete.

use super::auth::Caller;
use super::body::{read_bytes, read_json};
use super::{ApiError, ApiResult, Ctx, json, no_content};
use crate::rag::DOCUMENT_PREFIX;
use http::{Request, StatusCode, header};
use hyper::body::{Bytes, Incoming};
use serde::{Deserialize, Serialize};
use switchboard_actors::clock::{self, rfc3339};
use switchboard_actors::ids;
use switchboard_actors::storage::KbDocumentRow;
use switchboard_rag::chunk::Format;
use switchboard_rag::kb::{KnowledgeBase, MAX_SEARCH_LIMIT};

/// Largest document upload.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
const MAX_TITLE_CHARS: usize = 200;
const MAX_QUERY_CHARS: usize = 2_000;
const DEFAULT_SEARCH_LIMIT: usize = 5;

async fn open_kb<'a>(ctx: &Ctx<'a>) -> Result<&'a KnowledgeBase, ApiError> {
    Ok(ctx.app.knowledge.get().await?)
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
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Bytes,
}

fn malformed(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "malformed_multipart", message)
}

/// Splits a `multipart/form-data` body (RFC 7578) into its parts.
async fn multipart(body: Bytes, content_type: &str) -> Result<Vec<Part>, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| malformed("multipart/form-data without a boundary"))?;
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| malformed(e.to_string()))?
    {
        let name = field
            .name()
            .map(str::to_owned)
            .ok_or_else(|| malformed("a part has no name"))?;
        let filename = field.file_name().map(str::to_owned);
        let content_type = field
            .content_type()
            .map(|m| m.essence_str().to_ascii_lowercase());
        let data = field.bytes().await.map_err(|e| malformed(e.to_string()))?;
        parts.push(Part {
            name,
            filename,
            content_type,
            data,
        });
    }
    Ok(parts)
}

fn unsupported_document(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_document_type",
        format!("{what}: upload plain text (.txt) or Markdown (.md)"),
    )
}

/// Title, text and format of an uploaded file.
async fn from_multipart(body: Bytes, content_type: &str) -> Result<NewDocument, ApiError> {
    let parts = multipart(body, content_type).await?;
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
    let text = std::str::from_utf8(&file.data)
        .map_err(|_| unsupported_document("the file is not UTF-8 text"))?
        .to_owned();
    let title = match parts.iter().find(|p| p.name == "title") {
        Some(p) => String::from_utf8_lossy(&p.data).trim().to_owned(),
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
        from_multipart(body, &content_type).await?
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
            Err(e.into())
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
    open_kb(ctx).await?.delete(tenant, id).await?;
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
        .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multipart_bodies_are_split_into_parts() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nOpening hours\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hours.md\"\r\nContent-Type: text/markdown\r\n\r\n# Hours\r\n\r\nOpen 9 to 5.\r\n--XyZ--\r\n";
        let doc = from_multipart(
            Bytes::from_static(body),
            "multipart/form-data; boundary=XyZ",
        )
        .await
        .unwrap();
        assert_eq!(doc.title, "Opening hours");
        assert_eq!(doc.text, "# Hours\r\n\r\nOpen 9 to 5.");
        assert_eq!(doc.format.as_deref(), Some("markdown"));
    }

    #[tokio::test]
    async fn bad_multipart_and_binary_files_are_refused() {
        let parse =
            |body: &'static [u8], ct: &'static str| from_multipart(Bytes::from_static(body), ct);
        let e = parse(b"--a\r\nno end", "multipart/form-data; boundary=a")
            .await
            .unwrap_err();
        assert_eq!(e.code, "malformed_multipart");
        let e = parse(b"", "multipart/form-data").await.unwrap_err();
        assert_eq!(e.code, "malformed_multipart");
        let pdf = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--b--";
        let e = parse(pdf, "multipart/form-data; boundary=b")
            .await
            .unwrap_err();
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
