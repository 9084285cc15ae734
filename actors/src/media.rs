//! The media store: files tenants send and receive (images, voice notes,
//! documents, e-mail attachments), kept once per tenant and content, sealed at rest,
//! streamed in and out in constant memory.
//!
//! # Layout
//! - [`MediaBackend`]: where sealed bytes live, behind one trait: [`LocalBackend`]
//!   (files under `data_dir/media`, the default) here, [`s3::S3Backend`] (an
//!   S3-compatible bucket, for replicas that share their media) in [`s3`].
//! - [`MediaStore`]: [`MediaStore::ingest`] reads a stream of chunks once: it hashes
//!   the plaintext (SHA-256, the content address), sniffs its type from the first
//!   bytes (`infer`), seals it a 64 KiB segment at a time ([`switchboard_crypto::stream`])
//!   into a temporary file and hands that to the backend; the same content stored
//!   again by the tenant is the same row. [`MediaStore::read`] opens any byte range
//!   by reading only the segments it covers. [`MediaStore::sweep`] deletes what is
//!   older than the retention, rows first.
//! - Lazy downloads ([`Download::Lazy`]): a received file is recorded pending
//!   ([`MediaStore::pend`]: id, type, size and the network's SHA-256, no bytes) and
//!   fetched through its session on first read; the bytes fill the pending row when
//!   their hash is its hash.
//!
//! Limits: a file over `max_file_bytes` or past the tenant's `max_tenant_bytes` is
//! refused while it streams in ([`MediaError::TooLarge`]); nothing of it is kept.
//! An empty file is refused ([`MediaError::Empty`]).

pub mod s3;

use crate::clock;
use crate::storage::{MediaRow, Store, StoreError};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_crypto::stream::{self, Opener, Sealer};
use switchboard_crypto::{Binding, Keyring};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// What the bytes of a media file are bound to (with its tenant and id).
pub const BLOB_PURPOSE: &str = "media.blob";

/// Why a file was not stored or cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the tenant's media space ({limit} bytes) is full")]
    TenantFull { limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("reading the upload failed: {0}")]
    Source(String),
    #[error("no such media")]
    NotFound,
    /// Recorded but not fetched yet ([`Download::Lazy`]): fetch it through its session.
    #[error("the file has not been fetched from its channel yet")]
    Pending,
    /// A URL to fetch that is not http(s) or points inside the network.
    #[error("{0}")]
    UrlNotAllowed(String),
    /// The URL did not give a file.
    #[error("fetching the URL failed: {0}")]
    Fetch(String),
    #[error("range {start}-{end} is outside the file's {size} bytes")]
    BadRange { start: u64, end: u64, size: u64 },
    #[error("media backend: {0}")]
    Backend(String),
    #[error("the stored file does not open (tampered with, or sealed by an unknown key)")]
    Corrupt,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where sealed blobs live.
pub trait MediaBackend: Send + Sync + std::fmt::Debug {
    /// Takes the sealed file at `from` (a temporary file the store wrote) as `key`.
    fn put<'a>(&'a self, key: &'a str, from: &'a Path) -> BoxFuture<'a, Result<(), MediaError>>;
    /// `len` bytes of blob `key` from `offset` (fewer at its end).
    fn read<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
        len: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, MediaError>>;
    /// Deletes blob `key` (gone already is fine).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), MediaError>>;
}

/// Blobs as files under a directory (`data_dir/media`), two levels of fan-out.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        let fan = key.get(key.len().saturating_sub(2)..).unwrap_or("00");
        self.root.join(fan).join(key)
    }
}

fn io(e: std::io::Error) -> MediaError {
    MediaError::Backend(e.to_string())
}

impl MediaBackend for LocalBackend {
    fn put<'a>(&'a self, key: &'a str, from: &'a Path) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            let to = self.path(key);
            if let Some(dir) = to.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(io)?;
            }
            // Same file system (the temporary file is written under the root).
            tokio::fs::rename(from, &to).await.map_err(io)
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
        len: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, MediaError>> {
        Box::pin(async move {
            let mut f = tokio::fs::File::open(self.path(key)).await.map_err(io)?;
            f.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
            let mut out = Vec::with_capacity(len);
            f.take(len as u64).read_to_end(&mut out).await.map_err(io)?;
            Ok(out)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            }
        })
    }
}

/// Limits on what is stored.
#[derive(Debug, Clone, Copy)]
pub struct MediaLimits {
    pub max_file_bytes: u64,
    pub max_tenant_bytes: u64,
}

/// What the caller knows of a file before it streams in.
#[derive(Debug, Clone, Default)]
pub struct NewMedia {
    pub filename: Option<String>,
    /// The type the sender claimed; the bytes' own type wins when they have one.
    pub mimetype: Option<String>,
}

/// The media store (see the module docs).
#[derive(Debug, Clone)]
pub struct MediaStore {
    backend: Arc<dyn MediaBackend>,
    store: Store,
    keyring: Arc<Keyring>,
    /// Where files are sealed before the backend takes them.
    tmp: PathBuf,
    limits: MediaLimits,
    download: Download,
}

/// When a received file is fetched from its channel (`media.download`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Download {
    /// Before its message is reported (the default): `message.received` names a
    /// file that is already in the store.
    #[default]
    Eager,
    /// On its first read: the message names a pending file (its id, type, size and
    /// SHA-256 from the channel), fetched through its session when
    /// `GET /v1/media/{id}` first asks for it.
    Lazy,
}

impl std::str::FromStr for Download {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "eager" => Ok(Self::Eager),
            "lazy" => Ok(Self::Lazy),
            other => Err(format!("{other:?} is not eager or lazy")),
        }
    }
}

/// What a channel says of a received file before fetching it.
#[derive(Debug, Clone)]
pub struct PendingMedia {
    /// Hex SHA-256 of the plaintext, as the network gives it.
    pub sha256: String,
    pub mimetype: String,
    pub size: u64,
    pub filename: Option<String>,
    /// The session to fetch it through, and its message there.
    pub session_id: String,
    pub source_ref: String,
}

impl MediaRow {
    /// What the sealed bytes are bound to: the tenant and the blob (for files stored
    /// on upload, the row id).
    pub fn binding(&self) -> Binding<'_> {
        Binding {
            tenant_id: &self.tenant_id,
            record_id: &self.blob_key,
            purpose: BLOB_PURPOSE,
        }
    }
}

/// A temporary file removed on drop unless it was handed on.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl MediaStore {
    pub fn new(
        backend: Arc<dyn MediaBackend>,
        store: Store,
        keyring: Arc<Keyring>,
        tmp: PathBuf,
        limits: MediaLimits,
    ) -> Self {
        Self {
            backend,
            store,
            keyring,
            tmp,
            limits,
            download: Download::Eager,
        }
    }

    /// The store, with received files fetched `download`.
    pub fn with_download(self, download: Download) -> Self {
        Self { download, ..self }
    }

    pub fn limits(&self) -> MediaLimits {
        self.limits
    }

    /// When received files are fetched.
    pub fn download(&self) -> Download {
        self.download
    }

    /// Records a received file before fetching it ([`Download::Lazy`]): the row the
    /// tenant has for that content already, or a new pending one.
    pub async fn pend(&self, tenant_id: &str, p: PendingMedia) -> Result<MediaRow, MediaError> {
        if let Some(row) = self.store.media_by_sha256(tenant_id, &p.sha256).await? {
            return Ok(row);
        }
        let row = MediaRow {
            id: crate::ids::new_id("med"),
            tenant_id: tenant_id.to_owned(),
            sha256: p.sha256,
            mimetype: p.mimetype,
            size: i64::try_from(p.size).unwrap_or(i64::MAX),
            filename: p.filename,
            key_id: String::new(),
            blob_key: String::new(),
            created_at: clock::now_ms(),
            session_id: Some(p.session_id),
            source_ref: Some(p.source_ref),
        };
        match self.store.insert_media(&row).await {
            Ok(()) => Ok(row),
            Err(StoreError::Conflict(_)) => self
                .store
                .media_by_sha256(tenant_id, &row.sha256)
                .await?
                .ok_or(MediaError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores what `source` yields for `tenant_id`; the same content stored before
    /// by the tenant is that row (its first name and type kept).
    pub async fn ingest<S, E>(
        &self,
        tenant_id: &str,
        new: NewMedia,
        source: S,
    ) -> Result<MediaRow, MediaError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.ingest_fresh(tenant_id, new, source)
            .await
            .map(|(row, _)| row)
    }

    /// [`MediaStore::ingest`], saying whether the row is new (false: the tenant had
    /// this content already), so a request that fails after it can take it back.
    pub async fn ingest_fresh<S, E>(
        &self,
        tenant_id: &str,
        new: NewMedia,
        source: S,
    ) -> Result<(MediaRow, bool), MediaError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let used = u64::try_from(self.store.media_usage(tenant_id).await?).unwrap_or(0);
        let room = self.limits.max_tenant_bytes.saturating_sub(used);
        let id = crate::ids::new_id("med");
        let binding = Binding {
            tenant_id,
            record_id: &id,
            purpose: BLOB_PURPOSE,
        };
        let (mut sealer, header) =
            Sealer::new(&self.keyring, binding).map_err(|e| MediaError::Backend(e.to_string()))?;
        tokio::fs::create_dir_all(&self.tmp).await.map_err(io)?;
        let path = self.tmp.join(format!("{id}.part"));
        let mut temp = TempFile(Some(path.clone()));
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        file.write_all(&header).await.map_err(io)?;

        let mut hash = Sha256::new();
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::new();
        // A full segment waits until more bytes show it is not the last one.
        let mut pending: Option<Vec<u8>> = None;
        let mut segment: Vec<u8> = Vec::with_capacity(stream::SEGMENT);
        let mut source = std::pin::pin!(source);
        while let Some(chunk) = source.next().await {
            let chunk = chunk.map_err(|e| MediaError::Source(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.limits.max_file_bytes {
                return Err(MediaError::TooLarge {
                    limit: self.limits.max_file_bytes,
                });
            }
            if size > room {
                return Err(MediaError::TenantFull {
                    limit: self.limits.max_tenant_bytes,
                });
            }
            hash.update(&chunk);
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = (stream::SEGMENT - segment.len()).min(rest.len());
                segment.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if segment.len() == stream::SEGMENT {
                    if let Some(full) = pending.take() {
                        write_segment(&mut file, &mut sealer, &full, false).await?;
                    }
                    pending = Some(std::mem::replace(
                        &mut segment,
                        Vec::with_capacity(stream::SEGMENT),
                    ));
                }
            }
        }
        match (pending.take(), segment.is_empty()) {
            (None, true) => return Err(MediaError::Empty),
            (Some(full), true) => write_segment(&mut file, &mut sealer, &full, true).await?,
            (full, false) => {
                if let Some(full) = full {
                    write_segment(&mut file, &mut sealer, &full, false).await?;
                }
                write_segment(&mut file, &mut sealer, &segment, true).await?;
            }
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        let sha256 = hex::encode(hash.finalize());
        let mimetype = sniff(&head, new.mimetype.as_deref(), new.filename.as_deref());
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        if let Some(existing) = self.store.media_by_sha256(tenant_id, &sha256).await? {
            if !existing.is_pending() {
                return Ok((existing, false));
            }
            // Recorded on receipt and fetched now (or the same content uploaded):
            // the pending row takes these bytes.
            self.backend.put(&id, &path).await?;
            temp.0 = None;
            let key_id = sealer.key_id().to_owned();
            if self
                .store
                .fill_media(&existing.id, &id, &key_id, &mimetype, size)
                .await?
            {
                let row = MediaRow {
                    blob_key: id,
                    key_id,
                    mimetype,
                    size,
                    session_id: None,
                    source_ref: None,
                    ..existing
                };
                return Ok((row, false));
            }
            // Filled by another read meanwhile: that one stays.
            let _ = self.backend.delete(&id).await;
            return self
                .store
                .media(tenant_id, &existing.id)
                .await?
                .map(|r| (r, false))
                .ok_or(MediaError::NotFound);
        }
        let row = MediaRow {
            blob_key: id.clone(),
            id,
            tenant_id: tenant_id.to_owned(),
            sha256,
            mimetype,
            size,
            filename: new.filename,
            key_id: sealer.key_id().to_owned(),
            created_at: clock::now_ms(),
            session_id: None,
            source_ref: None,
        };
        self.backend.put(&row.blob_key, &path).await?;
        temp.0 = None;
        match self.store.insert_media(&row).await {
            Ok(()) => Ok((row, true)),
            Err(e) => {
                // Not recorded: its bytes go too. A race with the same content
                // stored at once gives the other row.
                let _ = self.backend.delete(&row.blob_key).await;
                match e {
                    StoreError::Conflict(_) => self
                        .store
                        .media_by_sha256(tenant_id, &row.sha256)
                        .await?
                        .map(|r| (r, false))
                        .ok_or(MediaError::NotFound),
                    e => Err(e.into()),
                }
            }
        }
    }

    /// Fetches `url` once into the store for `tenant_id`: http(s) only, every
    /// address it (and each redirect, at most 3) resolves to public unless
    /// `allow_private`, 30 s in all, the same size limits as an upload.
    pub async fn fetch(
        &self,
        tenant_id: &str,
        url: &str,
        filename: Option<String>,
        allow_private: bool,
    ) -> Result<MediaRow, MediaError> {
        use crate::webhooks::ssrf;
        let url = ssrf::check(url, allow_private)
            .await
            .map_err(|e| MediaError::UrlNotAllowed(e.to_string()))?;
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(ssrf::FilteringResolver { allow_private }))
            // A redirect to an address literal skips DNS: each one is checked.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 3 {
                    attempt.error("more than 3 redirects")
                } else if ssrf::check_static(attempt.url().as_str(), allow_private).is_err() {
                    attempt.error("redirected to an address that is not allowed")
                } else {
                    attempt.follow()
                }
            }))
            .timeout(std::time::Duration::from_secs(30))
            .user_agent("Switchboard media fetch")
            .build()
            .map_err(|e| MediaError::Fetch(e.to_string()))?;
        let res = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| MediaError::Fetch(e.to_string()))?;
        if !res.status().is_success() {
            return Err(MediaError::Fetch(format!(
                "the server answered {}",
                res.status()
            )));
        }
        if res
            .content_length()
            .is_some_and(|n| n > self.limits.max_file_bytes)
        {
            return Err(MediaError::TooLarge {
                limit: self.limits.max_file_bytes,
            });
        }
        let claimed = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let filename = filename.or_else(|| {
            url.path_segments()
                .and_then(|mut s| s.next_back())
                .filter(|s| !s.is_empty())
                .map(|s| {
                    form_urlencoded::parse(format!("n={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                })
                .filter(|s| !s.is_empty() && !s.contains(['/', '\\']))
        });
        self.ingest(
            tenant_id,
            NewMedia {
                filename,
                mimetype: claimed,
            },
            res.bytes_stream(),
        )
        .await
    }

    /// A tenant's file (`NotFound` for another tenant's).
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<MediaRow, MediaError> {
        self.store
            .media(tenant_id, id)
            .await?
            .ok_or(MediaError::NotFound)
    }

    /// The plaintext bytes `start..end` of `row`, read [`READ_SEGMENTS`] segments
    /// (one backend request) at a time.
    pub fn read(
        &self,
        row: &MediaRow,
        start: u64,
        end: u64,
    ) -> Result<impl Stream<Item = Result<Bytes, MediaError>> + Send + 'static, MediaError> {
        if row.is_pending() {
            return Err(MediaError::Pending);
        }
        let size = u64::try_from(row.size).unwrap_or(0);
        if start >= end || end > size {
            return Err(MediaError::BadRange { start, end, size });
        }
        let backend = self.backend.clone();
        let keyring = self.keyring.clone();
        let row = row.clone();
        let seg = stream::SEGMENT as u64;
        let (first, last) = (start / seg, (end - 1) / seg);
        let state = (None::<Opener>, first);
        Ok(futures::stream::try_unfold(
            state,
            move |(opener, index)| {
                let (backend, keyring, row) = (backend.clone(), keyring.clone(), row.clone());
                async move {
                    if index > last {
                        return Ok(None);
                    }
                    let opener = match opener {
                        Some(o) => o,
                        None => {
                            let header = backend.read(&row.blob_key, 0, stream::HEADER).await?;
                            Opener::new(&keyring, &row.key_id, &header, size, row.binding())
                                .map_err(|_| MediaError::Corrupt)?
                        }
                    };
                    let upto = last.min(index + READ_SEGMENTS - 1);
                    let sealed = stream::SEGMENT + stream::TAG;
                    let ct = backend
                        .read(
                            &row.blob_key,
                            stream::segment_offset(index),
                            sealed * (upto - index + 1) as usize,
                        )
                        .await?;
                    let mut out = Vec::with_capacity(stream::SEGMENT * ct.len().div_ceil(sealed));
                    for (i, piece) in ct.chunks(sealed).enumerate() {
                        let at = index + i as u64;
                        let plain = opener.open(at, piece).map_err(|_| MediaError::Corrupt)?;
                        let seg_start = at * seg;
                        let from = start.saturating_sub(seg_start) as usize;
                        let to = ((end - seg_start) as usize).min(plain.len());
                        out.extend_from_slice(&plain[from..to]);
                    }
                    if out.is_empty() {
                        // Shorter than its row says: cut off in the backend.
                        return Err(MediaError::Corrupt);
                    }
                    Ok(Some((Bytes::from(out), (Some(opener), upto + 1))))
                }
            },
        ))
    }

    /// Deletes a file this request stored and nothing refers to yet (row first).
    pub async fn remove(&self, row: &MediaRow) -> Result<(), MediaError> {
        if self.store.delete_media(&row.id).await? && !row.is_pending() {
            self.backend.delete(&row.blob_key).await?;
        }
        Ok(())
    }

    /// Deletes what was stored before `before` (unix ms): rows, then bytes. Returns
    /// how many files went.
    pub async fn sweep(&self, before: i64) -> Result<usize, MediaError> {
        let mut gone = 0;
        loop {
            let rows = self.store.media_older_than(before, 200).await?;
            if rows.is_empty() {
                return Ok(gone);
            }
            for row in rows {
                // The row first: a crash in between leaves bytes nobody can reach
                // rather than a row whose bytes are gone.
                if self.store.delete_media(&row.id).await? {
                    if !row.is_pending() {
                        self.backend.delete(&row.blob_key).await?;
                    }
                    gone += 1;
                }
            }
        }
    }
}

/// How many sealed segments one backend read covers (1 MiB of plaintext).
pub const READ_SEGMENTS: u64 = 16;

/// How many leading bytes the type is sniffed from.
const SNIFF_BYTES: usize = 8192;

async fn write_segment(
    file: &mut tokio::fs::File,
    sealer: &mut Sealer,
    plain: &[u8],
    last: bool,
) -> Result<(), MediaError> {
    let ct = sealer
        .seal(plain, last)
        .map_err(|e| MediaError::Backend(e.to_string()))?;
    file.write_all(&ct).await.map_err(io)
}

/// The file's type: from its bytes where they say (a PNG named `.pdf` is a PNG),
/// else what the sender claimed if it is a well-formed type, else
/// `application/octet-stream`.
pub fn sniff(head: &[u8], claimed: Option<&str>, filename: Option<&str>) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let well_formed = |m: &str| {
        let mut parts = m.splitn(2, '/');
        let ok = |p: Option<&str>| {
            p.is_some_and(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
            })
        };
        ok(parts.next()) && ok(parts.next())
    };
    if let Some(m) = claimed.map(|m| {
        m.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }) && well_formed(&m)
    {
        return m;
    }
    let text = std::str::from_utf8(head).is_ok() && !head.contains(&0);
    let ext = filename
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt") if text => "text/plain".into(),
        Some("csv") if text => "text/csv".into(),
        Some("json") if text => "application/json".into(),
        Some("vcf") if text => "text/vcard".into(),
        _ => "application/octet-stream".into(),
    }
}
