//! Files between WhatsApp Web and the media store, a chunk at a time.
//!
//! The page downloads and decrypts a received file itself ([`contract::DOWNLOAD_JS`]);
//! the driver reads it in [`contract::CHUNK_BYTES`] pieces straight into the store,
//! so the gateway never holds a whole file. A file to send goes the other way: read
//! from the store and staged on the page in pieces ([`contract::STAGE_JS`]), then
//! prepared and uploaded by the page as WhatsApp Web does.

use super::contract::{self, Downloaded, PageMessage};
use super::{SLOW_CALL_TIMEOUT, call};
use crate::channels::{Attachment, AttachmentContent, ChannelError, ReceivedMedia};
use crate::media::{MediaError, MediaStore, NewMedia, PendingMedia};
use base64::Engine;
use bytes::Bytes;
use chromiumoxide::page::Page;
use futures::{Stream, StreamExt};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The message types that carry a file to download.
pub fn carries_file(msg_type: &str) -> bool {
    matches!(
        msg_type,
        "image" | "video" | "audio" | "ptt" | "document" | "sticker"
    )
}

/// Hex SHA-256 from WhatsApp's base64 `filehash`.
fn hex_of(filehash: &str) -> Option<String> {
    B64.decode(filehash)
        .ok()
        .filter(|d| d.len() == 32)
        .map(hex::encode)
}

/// Why a file is not in the store, as `media.error` says it.
fn error_code(e: &MediaError) -> String {
    match e {
        MediaError::TooLarge { .. } => "too_large".into(),
        MediaError::TenantFull { .. } => "tenant_full".into(),
        MediaError::Empty => "empty".into(),
        other => format!("media_not_stored: {other}"),
    }
}

/// What message `m` says of its file, before any of it is fetched.
pub fn describe(m: &PageMessage) -> ReceivedMedia {
    ReceivedMedia {
        id: None,
        mimetype: m
            .mimetype
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        size: m.size.unwrap_or(0),
        filename: m.filename.clone(),
        sha256: m.filehash.as_deref().and_then(hex_of),
        error: None,
    }
}

/// Records message `m`'s file as pending in the store (`media.download = "lazy"`):
/// its id goes out with the message, the bytes are fetched on first read. `None`
/// when the message gives no hash to hold the fetched bytes to (download it now).
pub async fn pend(
    store: &MediaStore,
    tenant_id: &str,
    session_id: &str,
    m: &PageMessage,
) -> Option<ReceivedMedia> {
    let mut out = describe(m);
    let pending = PendingMedia {
        sha256: out.sha256.clone()?,
        mimetype: out.mimetype.clone(),
        size: out.size,
        filename: out.filename.clone(),
        session_id: session_id.to_owned(),
        source_ref: m.id.clone(),
    };
    match store.pend(tenant_id, pending).await {
        Ok(row) => {
            out.id = Some(row.id);
            out.mimetype = row.mimetype;
            out.size = u64::try_from(row.size).unwrap_or(0);
        }
        Err(e) => {
            tracing::warn!(id = %m.id, error = %e, "received media not recorded");
            out.error = Some(error_code(&e));
        }
    }
    Some(out)
}

/// Downloads message `message_id`'s file (described as `out`) from the page into the
/// store for `tenant_id`. The message is described whatever happens: a file gone
/// from WhatsApp's servers (or one over the limits) comes back with `error` set and
/// no id.
pub async fn download(
    page: &Page,
    store: &MediaStore,
    tenant_id: &str,
    message_id: &str,
    mut out: ReceivedMedia,
) -> ReceivedMedia {
    let got = call(
        page,
        contract::DOWNLOAD_JS,
        &[message_id.into()],
        SLOW_CALL_TIMEOUT,
    )
    .await
    .and_then(|s| serde_json::from_str::<Downloaded>(&s).map_err(|e| e.to_string()));
    let d = match got {
        Ok(d) => d,
        Err(e) => {
            out.error = Some(format!("media_not_downloaded: {e}"));
            return out;
        }
    };
    let handle = match (d.handle, d.error) {
        (Some(h), None) => h,
        (_, Some(e)) if e == "unavailable" => {
            tracing::info!(id = %message_id, stage = ?d.stage, "media gone from WhatsApp's servers");
            out.error = Some("media_unavailable".into());
            return out;
        }
        (_, e) => {
            out.error = Some(format!(
                "media_not_downloaded: {}",
                e.unwrap_or_else(|| "the page gave no file".into())
            ));
            return out;
        }
    };
    let new = NewMedia {
        filename: out.filename.clone(),
        mimetype: Some(out.mimetype.clone()).filter(|m| m != "application/octet-stream"),
    };
    let stored = store
        .ingest(tenant_id, new, read_chunks(page, &handle, d.size))
        .await;
    let _ = call(
        page,
        contract::RELEASE_JS,
        &[handle.into()],
        SLOW_CALL_TIMEOUT,
    )
    .await;
    match stored {
        Ok(row) => {
            if out.sha256.as_deref().is_some_and(|s| s != row.sha256) {
                tracing::warn!(id = %message_id, "the file's hash differs from the message's filehash");
            }
            out.id = Some(row.id);
            out.mimetype = row.mimetype;
            out.size = u64::try_from(row.size).unwrap_or(0);
            out.sha256 = Some(row.sha256);
        }
        Err(e) => {
            tracing::warn!(id = %message_id, error = %e, "received media not stored");
            out.error = Some(error_code(&e));
        }
    }
    out
}

/// The downloaded file held on the page as `handle`, in chunks.
fn read_chunks<'a>(
    page: &'a Page,
    handle: &'a str,
    size: u64,
) -> impl Stream<Item = Result<Bytes, String>> + Send + 'a {
    futures::stream::unfold(0u64, move |offset| async move {
        if offset >= size {
            return None;
        }
        let len = (contract::CHUNK_BYTES as u64).min(size - offset);
        let read = call(
            page,
            contract::CHUNK_JS,
            &[handle.into(), offset.into(), len.into()],
            SLOW_CALL_TIMEOUT,
        )
        .await
        .and_then(|b| B64.decode(b).map_err(|e| e.to_string()));
        Some(match read {
            Ok(bytes) if bytes.len() as u64 == len => (Ok(Bytes::from(bytes)), offset + len),
            Ok(bytes) => (
                Err(format!(
                    "the page gave {} bytes at {offset}, not {len}",
                    bytes.len()
                )),
                size,
            ),
            Err(e) => (Err(e), size),
        })
    })
}

/// How the page is to send a file: its options for [`contract::SEND_JS`].
pub fn send_options(a: &Attachment, handle: &str, caption: &str) -> serde_json::Value {
    let mime = a.mime_type.as_str();
    let visual = mime.starts_with("image/") || mime.starts_with("video/");
    let audio = mime.starts_with("audio/");
    serde_json::json!({
        "handle": handle,
        "mimetype": mime,
        "filename": a.filename,
        "asVoice": a.as_voice && audio,
        // A WebP image without a caption is what WhatsApp sends as a sticker.
        "asSticker": mime == "image/webp" && caption.is_empty(),
        "asDocument": !visual && !audio,
    })
}

/// Stages `a`'s bytes on the page under a fresh handle; returns the handle.
pub async fn stage(
    page: &Page,
    store: Option<&MediaStore>,
    tenant_id: &str,
    a: &Attachment,
) -> Result<String, ChannelError> {
    let handle = crate::ids::new_id("stage");
    let result = match &a.content {
        AttachmentContent::Bytes(b) => {
            let chunks = b
                .chunks(contract::CHUNK_BYTES)
                .map(|c| Ok::<_, MediaError>(Bytes::copy_from_slice(c)));
            push(page, &handle, futures::stream::iter(chunks)).await
        }
        AttachmentContent::Media(id) => {
            let store = store.ok_or_else(|| {
                ChannelError::Failed("the media store is not available here".into())
            })?;
            let row = store.get(tenant_id, id).await.map_err(|e| match e {
                MediaError::NotFound => {
                    ChannelError::Rejected(format!("media {id} is no longer stored"))
                }
                e => ChannelError::Failed(e.to_string()),
            })?;
            let size = u64::try_from(row.size).unwrap_or(0);
            let body = store
                .read(&row, 0, size)
                .map_err(|e| ChannelError::Failed(e.to_string()))?;
            push(page, &handle, body).await
        }
    };
    if let Err(e) = result {
        let _ = call(
            page,
            contract::UNSTAGE_JS,
            &[handle.into()],
            SLOW_CALL_TIMEOUT,
        )
        .await;
        return Err(e);
    }
    Ok(handle)
}

/// Sends what `source` yields to the page in chunks of about [`contract::CHUNK_BYTES`].
async fn push<S, E>(page: &Page, handle: &str, source: S) -> Result<(), ChannelError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut source = std::pin::pin!(source);
    let mut buf: Vec<u8> = Vec::with_capacity(contract::CHUNK_BYTES);
    let mut pushed = 0usize;
    loop {
        let next = source.next().await;
        let done = next.is_none();
        if let Some(chunk) = next {
            let chunk =
                chunk.map_err(|e| ChannelError::Failed(format!("reading the file: {e}")))?;
            buf.extend_from_slice(&chunk);
        }
        if buf.len() >= contract::CHUNK_BYTES || (done && !buf.is_empty()) {
            let staged = call(
                page,
                contract::STAGE_JS,
                &[handle.into(), B64.encode(&buf).into()],
                SLOW_CALL_TIMEOUT,
            )
            .await
            .map_err(|e| ChannelError::Failed(format!("staging the file on the page: {e}")))?;
            pushed += buf.len();
            if staged.parse::<usize>().ok() != Some(pushed) {
                return Err(ChannelError::Failed(format!(
                    "the page staged {staged} bytes, not {pushed}"
                )));
            }
            buf.clear();
        }
        if done {
            return Ok(());
        }
    }
}
