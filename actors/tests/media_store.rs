//! The media store on a real database (SQLite; Postgres when `TEST_DATABASE_URL`
//! names a server) and real files: content in and out by sha256, ranges across
//! segments, one row per tenant and content, limits that keep nothing, tampering
//! found, retention; pending (lazily fetched) files; the S3-compatible backend
//! against a real Ceph RADOS Gateway.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use switchboard_actors::media::{LocalBackend, MediaError, MediaLimits, MediaStore, NewMedia};
use switchboard_actors::storage::{AuditEntry, LimitOverrides};
use switchboard_actors::{Store, clock};
use switchboard_crypto::{ApiKeyHash, Keyring, MasterKey};

const SEGMENT: usize = switchboard_crypto::stream::SEGMENT;

async fn store(dir: &tempfile::TempDir) -> Store {
    switchboard_actors::testkit::fresh_store(dir.path(), "sbmedia").await
}

async fn tenant(store: &Store, name: &str) -> String {
    let (t, _) = store
        .create_tenant(
            name,
            &LimitOverrides::default(),
            None,
            &ApiKeyHash::of(&format!("sbk_{name}")),
            "sbk_xx",
            &AuditEntry::new("test", "tenant.create"),
        )
        .await
        .unwrap();
    t.id
}

/// Deterministic bytes that no type sniffer recognises.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `data` as a stream of uneven chunks.
fn chunks(
    data: &[u8],
    size: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + use<> {
    let parts: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(size.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(parts)
}

async fn read_all(
    media: &MediaStore,
    row: &switchboard_actors::storage::MediaRow,
    start: u64,
    end: u64,
) -> Vec<u8> {
    let parts: Vec<Bytes> = media
        .read(row, start, end)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    parts.concat()
}

fn files_under(dir: &std::path::Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn media(store: &Store, dir: &tempfile::TempDir, limits: MediaLimits) -> MediaStore {
    let root = dir.path().join("media");
    MediaStore::new(
        Arc::new(LocalBackend::new(&root)),
        store.clone(),
        Arc::new(Keyring::new(MasterKey::generate().unwrap(), [])),
        root.join("tmp"),
        limits,
    )
}

const ROOMY: MediaLimits = MediaLimits {
    max_file_bytes: 64 * 1024 * 1024,
    max_tenant_bytes: 256 * 1024 * 1024,
};

#[tokio::test]
async fn files_of_every_size_come_back_byte_for_byte_and_ranges_cross_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let t = tenant(&store, "shop").await;
    let media = media(&store, &dir, ROOMY);
    for (len, chunk) in [
        (1, 1),
        (SEGMENT, 4096),
        (SEGMENT + 1, 7_777),
        (5 * SEGMENT + 333, 65_537),
    ] {
        let data = noise(len, len as u64);
        let row = media
            .ingest(
                &t,
                NewMedia {
                    filename: Some("blob.bin".into()),
                    mimetype: None,
                },
                chunks(&data, chunk),
            )
            .await
            .unwrap();
        assert_eq!(row.size, len as i64);
        assert_eq!(row.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(row.mimetype, "application/octet-stream");
        assert_eq!(read_all(&media, &row, 0, len as u64).await, data, "{len}");
        if len > SEGMENT {
            let (a, b) = (SEGMENT as u64 - 10, len as u64 - 1);
            assert_eq!(
                read_all(&media, &row, a, b).await,
                &data[a as usize..b as usize]
            );
        }
        assert!(matches!(
            media.read(&row, 0, len as u64 + 1),
            Err(MediaError::BadRange { .. })
        ));
    }
    // Nothing is kept in the clear, and no temporary file is left.
    let secret = b"customer receipt no 4711";
    let mut data = secret.to_vec();
    data.extend(noise(3000, 9));
    let row = media
        .ingest(&t, NewMedia::default(), chunks(&data, 100))
        .await
        .unwrap();
    for f in walk(&dir.path().join("media")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{f:?} holds plaintext"
        );
        assert!(!f.to_string_lossy().ends_with(".part"), "{f:?} left behind");
    }
    assert_eq!(read_all(&media, &row, 0, secret.len() as u64).await, secret);
}

#[tokio::test]
async fn the_same_content_is_one_row_per_tenant_and_another_tenant_cannot_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (a, b) = (tenant(&store, "a").await, tenant(&store, "b").await);
    let media = media(&store, &dir, ROOMY);
    let data = noise(100_000, 3);
    let first = media
        .ingest(
            &a,
            NewMedia {
                filename: Some("one.bin".into()),
                mimetype: None,
            },
            chunks(&data, 999),
        )
        .await
        .unwrap();
    let again = media
        .ingest(
            &a,
            NewMedia {
                filename: Some("two.bin".into()),
                mimetype: None,
            },
            chunks(&data, 5000),
        )
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.filename.as_deref(), Some("one.bin"));
    let theirs = media
        .ingest(&b, NewMedia::default(), chunks(&data, 5000))
        .await
        .unwrap();
    assert_ne!(theirs.id, first.id);
    assert_eq!(
        files_under(&dir.path().join("media")),
        2,
        "one blob per tenant"
    );
    assert!(matches!(
        media.get(&b, &first.id).await,
        Err(MediaError::NotFound)
    ));
    assert_eq!(media.get(&a, &first.id).await.unwrap(), first);
}

#[tokio::test]
async fn limits_and_empty_files_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let t = tenant(&store, "tiny").await;
    let media = media(
        &store,
        &dir,
        MediaLimits {
            max_file_bytes: 200_000,
            max_tenant_bytes: 300_000,
        },
    );
    let big = noise(200_001, 5);
    assert!(matches!(
        media
            .ingest(&t, NewMedia::default(), chunks(&big, 10_000))
            .await,
        Err(MediaError::TooLarge { limit: 200_000 })
    ));
    assert!(matches!(
        media.ingest(&t, NewMedia::default(), chunks(&[], 1)).await,
        Err(MediaError::Empty)
    ));
    assert_eq!(files_under(&dir.path().join("media")), 0);
    assert_eq!(store.media_usage(&t).await.unwrap(), 0);
    media
        .ingest(&t, NewMedia::default(), chunks(&noise(200_000, 6), 10_000))
        .await
        .unwrap();
    assert!(matches!(
        media
            .ingest(&t, NewMedia::default(), chunks(&noise(150_000, 7), 10_000))
            .await,
        Err(MediaError::TenantFull { limit: 300_000 })
    ));
    assert_eq!(store.media_usage(&t).await.unwrap(), 200_000);
    assert_eq!(files_under(&dir.path().join("media")), 1);
    // A source that fails midway keeps nothing either.
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 70_000])),
        Err(std::io::Error::other("client went away")),
    ]);
    assert!(matches!(
        media.ingest(&t, NewMedia::default(), failing).await,
        Err(MediaError::Source(_))
    ));
    assert_eq!(files_under(&dir.path().join("media")), 1);
}

#[tokio::test]
async fn the_type_comes_from_the_bytes_and_tampering_is_found_and_old_files_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let t = tenant(&store, "shop").await;
    let media = media(&store, &dir, ROOMY);
    // A PNG named and claimed as a PDF is stored as what it is.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(noise(500, 11));
    let row = media
        .ingest(
            &t,
            NewMedia {
                filename: Some("invoice.pdf".into()),
                mimetype: Some("application/pdf".into()),
            },
            chunks(&png, 64),
        )
        .await
        .unwrap();
    assert_eq!(row.mimetype, "image/png");
    // Unknown bytes keep a well-formed claimed type; a malformed one is not taken.
    let claimed = media
        .ingest(
            &t,
            NewMedia {
                filename: None,
                mimetype: Some("text/calendar; charset=utf-8".into()),
            },
            chunks(b"BEGIN:VCALENDAR\r\n", 4),
        )
        .await
        .unwrap();
    assert_eq!(claimed.mimetype, "text/calendar");
    let junk = media
        .ingest(
            &t,
            NewMedia {
                filename: None,
                mimetype: Some("not a type".into()),
            },
            chunks(&noise(10, 12), 4),
        )
        .await
        .unwrap();
    assert_eq!(junk.mimetype, "application/octet-stream");

    // A flipped byte in the stored file: it no longer opens.
    let file = walk(&dir.path().join("media"))
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy() == row.blob_key)
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let got: Vec<Result<Bytes, MediaError>> = media.read(&row, 0, 10).unwrap().collect().await;
    assert!(matches!(got[0], Err(MediaError::Corrupt)), "{got:?}");

    // Retention: everything older than now goes, rows and bytes.
    let gone = media.sweep(clock::now_ms() + 1).await.unwrap();
    assert_eq!(gone, 3);
    assert_eq!(files_under(&dir.path().join("media")), 0);
    assert!(matches!(
        media.get(&t, &row.id).await,
        Err(MediaError::NotFound)
    ));
}

#[tokio::test]
async fn a_pending_file_takes_no_room_until_the_bytes_named_for_it_arrive() {
    use switchboard_actors::media::{Download, PendingMedia};
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let t = tenant(&store, "shop").await;
    let media = media(&store, &dir, ROOMY).with_download(Download::Lazy);
    let data = noise(3 * SEGMENT + 5, 21);
    let sha = hex::encode(Sha256::digest(&data));
    let pending = |sha: &str| PendingMedia {
        sha256: sha.to_owned(),
        mimetype: "image/jpeg".into(),
        size: data.len() as u64,
        filename: Some("receipt.jpg".into()),
        session_id: "ses_1".into(),
        source_ref: "false_15550001@c.us_AAA".into(),
    };
    let row = media.pend(&t, pending(&sha)).await.unwrap();
    assert!(row.is_pending());
    assert_eq!(row.session_id.as_deref(), Some("ses_1"));
    assert!(matches!(media.read(&row, 0, 1), Err(MediaError::Pending)));
    assert_eq!(
        store.media_usage(&t).await.unwrap(),
        0,
        "pending files take no room"
    );
    // The same file received again is the same pending row.
    assert_eq!(media.pend(&t, pending(&sha)).await.unwrap().id, row.id);

    // Other bytes do not fill it.
    let other = noise(100, 22);
    let stray = media
        .ingest(&t, NewMedia::default(), chunks(&other, 7))
        .await
        .unwrap();
    assert_ne!(stray.id, row.id);
    assert!(media.get(&t, &row.id).await.unwrap().is_pending());

    // The bytes named for it do: same id, readable, now counted.
    let (filled, fresh) = media
        .ingest_fresh(
            &t,
            NewMedia {
                filename: Some("receipt.jpg".into()),
                mimetype: Some("image/jpeg".into()),
            },
            chunks(&data, 10_000),
        )
        .await
        .unwrap();
    assert_eq!(filled.id, row.id);
    assert!(
        !fresh,
        "a file others refer to is not the request's to take back"
    );
    assert!(!filled.is_pending());
    let stored = media.get(&t, &row.id).await.unwrap();
    assert_eq!(stored.session_id, None);
    assert_eq!(read_all(&media, &stored, 0, data.len() as u64).await, data);
    assert_eq!(
        store.media_usage(&t).await.unwrap(),
        (data.len() + other.len()) as i64
    );
    // A file the tenant has already is not pending when it arrives again.
    assert!(!media.pend(&t, pending(&sha)).await.unwrap().is_pending());

    // Retention takes pending rows too.
    let never = media
        .pend(&t, pending(&hex::encode(Sha256::digest(b"never fetched"))))
        .await
        .unwrap();
    assert_eq!(media.sweep(clock::now_ms() + 1).await.unwrap(), 3);
    assert!(matches!(
        media.get(&t, &never.id).await,
        Err(MediaError::NotFound)
    ));
    assert_eq!(files_under(&dir.path().join("media")), 0);
}

/// The S3-compatible backend against a real one: Ceph's RADOS Gateway.
#[cfg(feature = "testkit")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_a_ceph_bucket_come_back_sealed_ranged_and_survive_a_gateway_crash() {
    use switchboard_actors::media::s3::{S3Backend, S3Settings};
    use switchboard_actors::testkit::s3::{CephS3, REGION};
    let ceph = tokio::task::spawn_blocking(CephS3::start)
        .await
        .unwrap()
        .expect("ceph starts");
    ceph.create_bucket("media").unwrap();
    let settings = |bucket: &str, secret: &str| S3Settings {
        endpoint: Some(ceph.endpoint()),
        bucket: bucket.into(),
        region: REGION.into(),
        access_key_id: ceph.access_key().into(),
        secret_access_key: secret.into(),
        prefix: "sb/".into(),
    };
    // Wrong settings are found at start, with the server's word for it.
    let missing = S3Backend::new(&settings("nope", ceph.secret_key())).unwrap();
    let e = missing.check().await.unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
    let forged = S3Backend::new(&settings("media", "not-the-secret")).unwrap();
    assert!(forged.check().await.is_err());
    let s3 = S3Backend::new(&settings("media", ceph.secret_key())).unwrap();
    s3.check().await.unwrap();
    assert!(
        ceph.objects("media").unwrap().is_empty(),
        "the probe is deleted"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let t = tenant(&store, "shop").await;
    let media = MediaStore::new(
        Arc::new(s3),
        store.clone(),
        Arc::new(Keyring::new(MasterKey::generate().unwrap(), [])),
        dir.path().join("tmp"),
        ROOMY,
    );
    let secret = b"customer receipt no 4711";
    let mut rows = Vec::new();
    // Small files go up in one PUT; one over a part (5 MiB) as a multipart upload.
    for (len, seed) in [(1, 1), (SEGMENT + 1, 2), (11 * 1024 * 1024 + 7, 3)] {
        let mut data = secret.to_vec();
        data.extend(noise(len, seed));
        let row = media
            .ingest(&t, NewMedia::default(), chunks(&data, 65_537))
            .await
            .unwrap();
        assert_eq!(row.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(read_all(&media, &row, 0, data.len() as u64).await, data);
        let (a, b) = (SEGMENT as u64 - 3, data.len() as u64 - 1);
        if b > a {
            assert_eq!(
                read_all(&media, &row, a, b).await,
                &data[a as usize..b as usize]
            );
        }
        let held = ceph
            .object("media", &format!("sb/{}", row.blob_key))
            .unwrap();
        assert!(
            !held.windows(secret.len()).any(|w| w == secret),
            "the bucket holds plaintext"
        );
        rows.push((row, data));
    }
    let mut keys = ceph.objects("media").unwrap();
    keys.sort();
    let mut want: Vec<String> = rows
        .iter()
        .map(|(r, _)| format!("sb/{}", r.blob_key))
        .collect();
    want.sort();
    assert_eq!(keys, want);
    assert!(
        walk(&dir.path().join("tmp")).is_empty(),
        "no temporary file left"
    );

    // The RADOS Gateway crashes; a read started meanwhile is retried until it is back.
    ceph.kill_gateway();
    let (row, data) = rows[2].clone();
    let reading = {
        let media = media.clone();
        tokio::spawn(async move {
            let parts: Vec<Bytes> = media
                .read(&row, 0, row.size as u64)
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            parts.concat()
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(!reading.is_finished(), "the read waits for the server");
    tokio::task::block_in_place(|| ceph.start_gateway()).unwrap();
    assert_eq!(reading.await.unwrap(), data);

    // Retention deletes the objects with their rows.
    assert_eq!(media.sweep(clock::now_ms() + 1).await.unwrap(), 3);
    assert!(ceph.objects("media").unwrap().is_empty());
}
