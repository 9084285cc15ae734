//! Sealed blobs in an S3-compatible bucket (`media.backend = "s3"`), for replicas
//! that share one media store: AWS S3, Ceph's RADOS Gateway, MinIO, Garage.
//!
//! Objects are the sealed files exactly as [`super::LocalBackend`] keeps them,
//! under `prefix` + key. A file is uploaded from its temporary file a part at a time
//! ([`PART_BYTES`], at most two in flight), so memory does not grow with file size;
//! reads are ranged GETs. Requests are retried by `object_store` (backoff, up to
//! two minutes), so a server that restarts under us delays a request rather than
//! failing it.

use super::{MediaBackend, MediaError};
use futures::future::BoxFuture;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Where the bucket is and who we are to it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The server, e.g. `http://127.0.0.1:7480`; `None` is AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Prepended to every object key (e.g. `media/`).
    pub prefix: String,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Files of at least this size go up as a multipart upload of parts this big
/// (S3's smallest part is 5 MiB).
pub const PART_BYTES: usize = 5 << 20;

/// The S3-compatible backend (see the module docs).
#[derive(Debug)]
pub struct S3Backend {
    store: AmazonS3,
    prefix: String,
    bucket: String,
}

fn backend(e: object_store::Error) -> MediaError {
    MediaError::Backend(e.to_string())
}

impl S3Backend {
    /// A client for `settings` (no request is made: see [`S3Backend::check`]).
    pub fn new(settings: &S3Settings) -> Result<Self, MediaError> {
        // A server that restarts (or fails over) is waited for: up to 20 tries over
        // at most two minutes, backing off from a quarter second to five seconds.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(250),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 20,
            retry_timeout: Duration::from_secs(120),
        };
        let mut b = AmazonS3Builder::new()
            .with_retry(retry)
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key);
        if let Some(endpoint) = &settings.endpoint {
            // A server of one's own: path-style requests (no bucket subdomains),
            // plain http allowed when the endpoint says so.
            b = b
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = b.build().map_err(backend)?;
        Ok(Self {
            store,
            prefix: settings.prefix.clone(),
            bucket: settings.bucket.clone(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}", self.prefix))
    }

    /// Writes and deletes a probe object: the bucket exists and the credentials may
    /// write to it. The gateway calls it at start, so a wrong setting stops it there
    /// with the server's answer rather than at the first file.
    pub async fn check(&self) -> Result<(), MediaError> {
        let probe = self.path(&format!(".probe-{}", crate::ids::new_id("prb")));
        self.store
            .put(&probe, PutPayload::from_static(b"switchboard"))
            .await
            .map_err(|e| {
                MediaError::Backend(format!("cannot write to bucket {:?}: {e}", self.bucket))
            })?;
        self.store.delete(&probe).await.map_err(|e| {
            MediaError::Backend(format!("cannot delete from bucket {:?}: {e}", self.bucket))
        })
    }
}

impl MediaBackend for S3Backend {
    fn put<'a>(&'a self, key: &'a str, from: &'a Path) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            let mut file = tokio::fs::File::open(from).await.map_err(super::io)?;
            let len = file.metadata().await.map_err(super::io)?.len();
            let path = self.path(key);
            if len < PART_BYTES as u64 {
                let mut bytes = Vec::with_capacity(len as usize);
                file.read_to_end(&mut bytes).await.map_err(super::io)?;
                self.store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(backend)?;
            } else {
                let upload = self.store.put_multipart(&path).await.map_err(backend)?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = match file.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            let _ = writer.abort().await;
                            return Err(super::io(e));
                        }
                    };
                    if let Err(e) = writer.wait_for_capacity(2).await {
                        let _ = writer.abort().await;
                        return Err(backend(e));
                    }
                    writer.write(&buf[..n]);
                }
                writer.finish().await.map_err(backend)?;
            }
            // The temporary file is ours to remove once the bucket has the bytes.
            let _ = tokio::fs::remove_file(from).await;
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
        len: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, MediaError>> {
        Box::pin(async move {
            let bytes = self
                .store
                .get_range(&self.path(key), offset..offset + len as u64)
                .await
                .map_err(backend)?;
            Ok(bytes.to_vec())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(backend(e)),
            }
        })
    }
}
