//! The media store over HTTP.
//!
//! - `POST /v1/media?filename=…`: the file is the raw request body (its claimed type
//!   in `Content-Type`), streamed into the store: 201 with the stored file
//!   (`id`, `mimetype` as the bytes say, `size`, `filename`, `sha256`). The same
//!   content again is the same id. Over `media.max_file_bytes` → 413
//!   `payload_too_large` (refused from `Content-Length` before a byte is read, or
//!   as soon as the stream passes it), the tenant's `media.max_tenant_bytes` full →
//!   413 `media_space_full`, an empty file → 422 `empty_file`; nothing is kept.
//! - `GET /v1/media/{id}`: streams it back with its type, `ETag` (its sha256) and
//!   `Accept-Ranges`; `Range: bytes=a-b` (one range) → 206, an unsatisfiable one →
//!   416. Another tenant's id is 404. A received file still pending
//!   (`media.download = "lazy"`) is fetched through its session first.

use super::auth::Caller;
use super::{ApiError, ApiResult, Ctx, ResBody, json};
use futures::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;
use switchboard_actors::media::{MediaError, NewMedia};
use switchboard_actors::storage::MediaRow;

/// The stored file as the API shows it.
pub fn view(row: &MediaRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "mimetype": row.mimetype,
        "size": row.size,
        "filename": row.filename,
        "sha256": row.sha256,
        "created_at": switchboard_actors::clock::rfc3339(row.created_at),
    })
}

pub(crate) fn media_error(e: MediaError) -> ApiError {
    match e {
        MediaError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a file may have at most {limit} bytes"),
        ),
        MediaError::TenantFull { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "media_space_full",
            format!(
                "the tenant's media space ({limit} bytes) is full; delete media or wait for the retention"
            ),
        ),
        MediaError::Empty => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_file",
            "the file is empty",
        ),
        MediaError::Source(why) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "upload_interrupted",
            format!("the upload did not arrive whole: {why}"),
        ),
        MediaError::NotFound => ApiError::not_found("media"),
        MediaError::UrlNotAllowed(why) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_not_allowed",
            format!("the media URL is not allowed: {why}"),
        ),
        MediaError::Fetch(why) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "media_fetch_failed", why)
        }
        MediaError::Store(e) => e.into(),
        e => ApiError::internal(e),
    }
}

/// A file name as given (`?filename=`): at most 255 characters, no path, no
/// control characters.
pub(crate) fn filename(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(name) = raw.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > 255
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_filename",
            "`filename` is a plain file name: at most 255 characters, no path or control characters",
        ));
    }
    Ok(Some(name))
}

/// `POST /v1/media`.
pub async fn upload(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let media = &ctx.app.media;
    let limit = media.limits().max_file_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(media_error(MediaError::TooLarge { limit }));
    }
    let mut name = None;
    for (k, v) in super::body::query_pairs(req.uri().query(), &["filename"])? {
        if k == "filename" {
            name = Some(v);
        }
    }
    let filename = filename(name)?;
    let claimed = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if claimed
        .as_deref()
        .is_some_and(|c| c.starts_with("multipart/"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the file itself as the body (its type in Content-Type), not a multipart form",
        ));
    }
    let body = req.into_body().into_data_stream();
    let row = media
        .ingest(
            &caller.tenant.id,
            NewMedia {
                filename,
                mimetype: claimed,
            },
            body,
        )
        .await
        .map_err(media_error)?;
    json(StatusCode::CREATED, &view(&row))
}

/// One byte range of a `size`-byte file, from a `Range` header: `Ok(None)` for the
/// whole file (no header, or one this does not serve: several ranges, other units).
fn range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        // The last `b` bytes.
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size)
        }
        (false, true) => (a.parse().map_err(|_| ())?, size),
        (false, false) => {
            let (s, e): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            if e < s {
                return Err(());
            }
            (s, e.saturating_add(1).min(size))
        }
        (true, true) => return Err(()),
    };
    if start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// A pending file (`media.download = "lazy"`) fetched through its session, then its
/// row as stored. The session must be running (409 `session_not_running`) and get
/// its page open and logged in within 30 s (else 503 `session_not_connected`); a file
/// gone from the network is 410 `media_unavailable`; one that did not come whole, or
/// whose bytes are not the ones the message named, is 502 `media_not_downloaded`.
///
/// One fetch per file, however many readers ask at once on whichever replicas:
/// the first claims it (`media.fetch_until`, renewed while it runs), the others
/// wait for the row to fill, and take over the fetch if the claim runs out (the
/// fetching replica died) or was given up (the fetch failed).
async fn fetch_pending(
    ctx: &Ctx<'_>,
    caller: &Caller,
    row: MediaRow,
) -> Result<MediaRow, ApiError> {
    const CLAIM_MS: i64 = 30_000;
    let store = &ctx.app.store;
    let deadline = tokio::time::Instant::now() + FETCH_WAIT;
    loop {
        let now = switchboard_actors::clock::now_ms();
        if store
            .claim_media_fetch(&row.id, now, now + CLAIM_MS)
            .await?
        {
            let fetch = fetch_claimed(ctx, caller, row.clone());
            tokio::pin!(fetch);
            let got = loop {
                tokio::select! {
                    got = &mut fetch => break got,
                    () = tokio::time::sleep(Duration::from_millis(CLAIM_MS as u64 / 3)) => {
                        let until = switchboard_actors::clock::now_ms() + CLAIM_MS;
                        if let Err(e) = store.extend_media_fetch(&row.id, until).await {
                            tracing::warn!(media_id = %row.id, error = %e, "media fetch claim not renewed");
                        }
                    }
                }
            };
            if let Err(e) = store.release_media_fetch(&row.id).await {
                tracing::warn!(media_id = %row.id, error = %e, "media fetch claim not released; it runs out");
            }
            return got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let again = ctx
            .app
            .media
            .get(&caller.tenant.id, &row.id)
            .await
            .map_err(media_error)?;
        if !again.is_pending() {
            return Ok(again);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "media_busy",
                    "another request is still fetching this file; retry",
                )
            });
        }
    }
}

/// [`fetch_pending`] once this request holds the fetch.
async fn fetch_claimed(
    ctx: &Ctx<'_>,
    caller: &Caller,
    row: MediaRow,
) -> Result<MediaRow, ApiError> {
    use switchboard_actors::sessions::{Query, SessionError};
    let not_downloaded =
        |why: String| ApiError::new(StatusCode::BAD_GATEWAY, "media_not_downloaded", why);
    let (Some(session_id), Some(source)) = (row.session_id.clone(), row.source_ref.clone()) else {
        return Err(not_downloaded("the file's source is not recorded".into()));
    };
    let described = switchboard_actors::channels::ReceivedMedia {
        id: Some(row.id.clone()),
        mimetype: row.mimetype.clone(),
        size: u64::try_from(row.size).unwrap_or(0),
        filename: row.filename.clone(),
        sha256: Some(row.sha256.clone()),
        error: None,
    };
    ctx.app
        .commands
        .query(&caller.tenant.id, &session_id, Query::FetchMedia(source, described))
        .await
        .map_err(|e| match e {
            SessionError::NotRunning => ApiError::new(
                StatusCode::CONFLICT,
                "session_not_running",
                format!(
                    "the file is still on the network (media.download = \"lazy\"); session {session_id} must be running to fetch it"
                ),
            ),
            SessionError::Rejected(m) if m.starts_with("media_unavailable") => {
                ApiError::new(StatusCode::GONE, "media_unavailable", m)
            }
            SessionError::Failed(m) if m == "not connected" => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session_not_connected",
                    format!("session {session_id} has no open page to fetch the file through yet; retry when it is WORKING"),
                )
            },
            SessionError::Failed(m) => not_downloaded(m),
            other => other.into(),
        })?;
    let row = ctx
        .app
        .media
        .get(&caller.tenant.id, &row.id)
        .await
        .map_err(media_error)?;
    if row.is_pending() {
        return Err(not_downloaded(
            "the bytes the network gave are not the file the message named (SHA-256 differs)"
                .into(),
        ));
    }
    Ok(row)
}

/// How long a reader waits for another reader's fetch of the same file.
const FETCH_WAIT: Duration = Duration::from_secs(300);

/// `GET /v1/media/{id}`.
pub async fn download(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let id = ctx.params[0].as_str();
    let media = &ctx.app.media;
    let mut row = media
        .get(&caller.tenant.id, id)
        .await
        .map_err(media_error)?;
    if row.is_pending() {
        row = fetch_pending(ctx, caller, row).await?;
    }
    let size = u64::try_from(row.size).unwrap_or(0);
    let asked = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, end) = match range(asked, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut res = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
    };
    let chunks = media.read(&row, start, end).map_err(media_error)?;
    // Read a segment ahead of the client, no more (constant memory); a client that
    // goes away ends the reading. A file that stops opening midway ends the body
    // early: the client sees fewer bytes than Content-Length said, the log says why.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let media_id = row.id.clone();
    tokio::spawn(async move {
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(bytes) => {
                    if tx.send(bytes).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(media_id = %media_id, error = %e, "media stream broke off");
                    return;
                }
            }
        }
    });
    let body: ResBody = BodyExt::boxed(super::stream::ChannelBody(rx));
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&row.mimetype)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", row.sha256)) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    let name: String = row
        .filename
        .as_deref()
        .unwrap_or(&row.id)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ';') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range(None, 100), Ok(None));
        assert_eq!(range(Some("bytes=0-9"), 100), Ok(Some((0, 10))));
        assert_eq!(range(Some("bytes=90-"), 100), Ok(Some((90, 100))));
        assert_eq!(range(Some("bytes=-10"), 100), Ok(Some((90, 100))));
        assert_eq!(range(Some("bytes=-500"), 100), Ok(Some((0, 100))));
        assert_eq!(range(Some("bytes=50-500"), 100), Ok(Some((50, 100))));
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(range(Some("items=0-1"), 100), Ok(None));
        for bad in [
            "bytes=100-",
            "bytes=9-3",
            "bytes=-0",
            "bytes=-",
            "bytes=x-3",
            "bytes=5",
        ] {
            assert_eq!(range(Some(bad), 100), Err(()), "{bad}");
        }
    }
}
