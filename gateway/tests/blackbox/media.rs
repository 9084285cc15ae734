//! The media store through the real binary: upload, download whole and by range,
//! one id per content, the type from the bytes, tenants apart, and bad input that
//! keeps nothing (over the size limit by Content-Length or while streaming, empty,
//! a bad file name); the same through an S3-compatible bucket (a real Ceph RADOS
//! Gateway), across a restart.

use super::support::{Gateway, Options};
use http::{Method, StatusCode};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// Bytes no type sniffer recognises.
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

async fn upload(
    gw: &Gateway,
    key: &str,
    path: &str,
    mime: &str,
    body: Vec<u8>,
) -> super::support::Resp {
    gw.request(
        Method::POST,
        path,
        &[("x-api-key", key), ("content-type", mime)],
        Some(body),
    )
    .await
}

/// Every file the media store holds (sealed blobs; temporary files included).
fn stored_files(gw: &Gateway) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&gw.data_dir.join("media"), &mut out);
    out
}

/// An upload of `total` bytes on a raw socket, chunked (no Content-Length) or not:
/// the response's status line. The gateway may answer (413) and close before all
/// of it is written, which an HTTP client library reports as a broken pipe.
fn raw_upload(gw: &Gateway, key: &str, total: usize, chunked: bool) -> String {
    let addr = gw.base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // With a length, the client waits for "100 Continue" before the body (as
    // curl does): a gateway that refuses from the length alone never asks for it.
    let framing = if chunked {
        "transfer-encoding: chunked".to_owned()
    } else {
        format!("content-length: {total}\r\nexpect: 100-continue")
    };
    let head = format!(
        "POST /v1/media?filename=big.bin HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {key}\r\ncontent-type: application/octet-stream\r\n{framing}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    if !chunked {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        return String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
    }
    let chunk = noise(64 * 1024, 77);
    let mut sent = 0;
    // The gateway may answer and close before all of it is written.
    while sent < total {
        let frame = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if s.write_all(&frame).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn media_goes_in_and_out_byte_for_byte_by_range_and_bad_uploads_keep_nothing() {
    let gw = Gateway::start_with(Options {
        env: vec![("SWITCHBOARD_MEDIA_MAX_FILE_BYTES".into(), "1048576".into())],
        ..Default::default()
    })
    .await;
    let (_, key) = gw.create_tenant("media").await;
    let (_, other) = gw.create_tenant("someone else").await;
    // The gateway runs with glibc's mmap threshold fixed (it restarted itself with
    // it), so buffers of files it moved go back to the kernel.
    let environ = std::fs::read(format!("/proc/{}/environ", gw.pid())).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"MALLOC_MMAP_THRESHOLD_=131072"),
        "the gateway's environment lacks the fixed mmap threshold"
    );

    // A file of several segments, whole and by range.
    let data = noise(300_000, 1);
    let r = upload(
        &gw,
        &key,
        "/v1/media?filename=scan.bin",
        "application/octet-stream",
        data.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("med_"), "{}", r.text);
    assert_eq!(r.json["size"], 300_000);
    assert_eq!(r.json["filename"], "scan.bin");
    assert_eq!(r.json["sha256"], hex::encode(Sha256::digest(&data)));
    let got = gw
        .request(
            Method::GET,
            &format!("/v1/media/{id}"),
            &[("x-api-key", &key)],
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["content-type"], "application/octet-stream");
    assert_eq!(got.headers["accept-ranges"], "bytes");
    assert_eq!(got.headers["content-length"], "300000");
    assert_eq!(
        got.headers["etag"].to_str().unwrap(),
        format!("\"{}\"", r.json["sha256"].as_str().unwrap())
    );
    assert_eq!(
        Sha256::digest(&got.bytes),
        Sha256::digest(&data),
        "the bytes come back"
    );
    let part = gw
        .request(
            Method::GET,
            &format!("/v1/media/{id}"),
            &[("x-api-key", &key), ("range", "bytes=65530-65629")],
            None,
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers["content-range"], "bytes 65530-65629/300000");
    assert_eq!(part.bytes, &data[65_530..65_630]);
    let beyond = gw
        .request(
            Method::GET,
            &format!("/v1/media/{id}"),
            &[("x-api-key", &key), ("range", "bytes=300000-")],
            None,
        )
        .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.headers["content-range"], "bytes */300000");

    // The same content is the same id; nothing in the store is readable as it was.
    let again = upload(
        &gw,
        &key,
        "/v1/media",
        "application/octet-stream",
        data.clone(),
    )
    .await;
    assert_eq!(
        (again.status, again.json["id"].as_str()),
        (StatusCode::CREATED, Some(id.as_str()))
    );
    let files = stored_files(&gw);
    assert_eq!(files.len(), 1, "{files:?}");
    let blob = std::fs::read(&files[0]).unwrap();
    assert!(
        !blob.windows(64).any(|w| w == &data[1000..1064]),
        "stored in the clear"
    );

    // The type comes from the bytes.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(noise(200, 2));
    let r = upload(
        &gw,
        &key,
        "/v1/media?filename=invoice.pdf",
        "application/pdf",
        png,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["mimetype"], "image/png", "{}", r.text);

    // Another tenant: 404, for its GET and for an id that is not one.
    for (k, path) in [
        (&other, format!("/v1/media/{id}")),
        (&key, "/v1/media/med_nope".to_owned()),
    ] {
        let r = gw
            .request(Method::GET, &path, &[("x-api-key", k)], None)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}: {}",
            r.text
        );
    }

    // Bad uploads keep nothing.
    let before = stored_files(&gw).len();
    let status = raw_upload(&gw, &key, 2 << 20, false);
    assert!(
        status.contains(" 413 "),
        "Content-Length over the limit: {status}"
    );
    let status = raw_upload(&gw, &key, 2 << 20, true);
    assert!(
        status.contains(" 413 "),
        "streamed past the limit: {status}"
    );
    let r = upload(
        &gw,
        &key,
        "/v1/media",
        "application/octet-stream",
        Vec::new(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "empty_file"),
        "{}",
        r.text
    );
    let r = upload(
        &gw,
        &key,
        "/v1/media?filename=..%2Fetc%2Fpasswd",
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_filename"),
        "{}",
        r.text
    );
    let r = upload(
        &gw,
        &key,
        "/v1/media",
        "multipart/form-data; boundary=x",
        b"--x--".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);
    assert_eq!(stored_files(&gw).len(), before, "{:?}", stored_files(&gw));
    let r = gw
        .request(Method::POST, "/v1/media", &[], Some(b"x".to_vec()))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn send(
    gw: &Gateway,
    key: &str,
    session: &str,
    body: serde_json::Value,
) -> super::support::Resp {
    gw.tenant(
        key,
        Method::POST,
        &format!("/v1/sessions/{session}/messages"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn sends_take_media_by_id_or_url_and_refuse_what_they_cannot_carry() {
    let gw = Gateway::start().await;
    let (_, key) = gw.create_tenant("media sends").await;
    let (_, other) = gw.create_tenant("other").await;
    let session = super::messages::working_session(&gw, &key).await;
    let r = upload(
        &gw,
        &key,
        "/v1/media?filename=menu.bin",
        "application/octet-stream",
        noise(5000, 4),
    )
    .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    let theirs = upload(
        &gw,
        &other,
        "/v1/media",
        "application/octet-stream",
        noise(100, 5),
    )
    .await;
    let their_id = theirs.json["id"].as_str().unwrap().to_owned();

    // By id, with a caption as its text.
    let r = send(
        &gw,
        &key,
        &session,
        serde_json::json!({ "to": "15550100", "media": { "id": id }, "caption": "Today's menu" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["text"], "Today's menu");

    // Bad input, each named; nothing queued.
    let before = queued_count(&gw, &key, &session).await;
    for (body, status, code) in [
        (
            serde_json::json!({ "to": "15550100", "media": { "id": their_id } }),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            serde_json::json!({ "to": "15550100", "media": { "id": "med_nope" } }),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            serde_json::json!({ "to": "15550100", "media": { "url": "http://127.0.0.1:9/menu.png" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_not_allowed",
        ),
        (
            serde_json::json!({ "to": "15550100", "media": { "url": "http://[::1]/x" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_not_allowed",
        ),
        (
            serde_json::json!({ "to": "15550100", "media": { "url": "file:///etc/passwd" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_not_allowed",
        ),
        (
            serde_json::json!({ "to": "15550100", "media": { "id": id, "url": "https://example.com/x" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            serde_json::json!({ "to": "15550100", "media": {} }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            serde_json::json!({ "to": "15550100", "text": "hi", "caption": "hi" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            serde_json::json!({ "to": "15550100", "text": "a", "media": { "id": id }, "caption": "b" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            // A voice note must be audio.
            serde_json::json!({ "to": "15550100", "media": { "id": id }, "as_voice": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            serde_json::json!({ "to": "15550100", "text": "hi", "as_voice": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            serde_json::json!({ "to": "15550100", "text": "x", "filename": "a.txt" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ] {
        let r = send(&gw, &key, &session, body.clone()).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.text);
    }
    let after = queued_count(&gw, &key, &session).await;
    assert_eq!(after, before, "nothing queued by bad input");

    // A channel that cannot carry files says so.
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(serde_json::json!({ "channel": "linkedin", "start": false, "config": {
                "login": "cookies", "li_at": "AQEDAR-not-a-real-cookie", "jsessionid": "ajax:1234567890123456789",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
            } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let linkedin = r.json["id"].as_str().unwrap().to_owned();
    let r = send(
        &gw,
        &key,
        &linkedin,
        serde_json::json!({ "to": "15550100", "media": { "id": id } }),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "not_supported"),
        "{}",
        r.text
    );
}

/// How many messages the session has.
async fn queued_count(gw: &Gateway, key: &str, session: &str) -> usize {
    gw.tenant(
        key,
        Method::GET,
        &format!("/v1/sessions/{session}/messages?limit=100"),
        None,
    )
    .await
    .json["data"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_200_mb_upload_meets_the_default_limit_and_nothing_is_kept() {
    let gw = Gateway::start().await;
    let (_, key) = gw.create_tenant("big files").await;
    // 200 MB against the default `media.max_file_bytes` (100 MiB): refused from its
    // Content-Length, before a byte of it is read.
    let status = raw_upload(&gw, &key, 200_000_000, false);
    assert!(status.contains(" 413 "), "{status}");
    assert!(stored_files(&gw).is_empty(), "{:?}", stored_files(&gw));
}

/// `media.backend = "s3"` against a real S3-compatible server (Ceph's RADOS Gateway):
/// files go to the bucket sealed, come back whole and by range, stay apart per
/// tenant, and outlive the gateway; settings the bucket refuses stop the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_in_an_s3_bucket_comes_back_by_range_and_outlives_the_gateway() {
    use switchboard_actors::testkit::s3::{CephS3, REGION};
    let ceph = tokio::task::spawn_blocking(CephS3::start)
        .await
        .unwrap()
        .expect("ceph starts");
    ceph.create_bucket("switchboard-media").unwrap();
    let env = |secret: &str| {
        vec![
            ("SWITCHBOARD_MEDIA_BACKEND".to_string(), "s3".to_string()),
            ("SWITCHBOARD_MEDIA_S3_ENDPOINT".into(), ceph.endpoint()),
            (
                "SWITCHBOARD_MEDIA_S3_BUCKET".into(),
                "switchboard-media".into(),
            ),
            ("SWITCHBOARD_MEDIA_S3_REGION".into(), REGION.into()),
            (
                "SWITCHBOARD_MEDIA_S3_ACCESS_KEY_ID".into(),
                ceph.access_key().into(),
            ),
            (
                "SWITCHBOARD_MEDIA_S3_SECRET_ACCESS_KEY".into(),
                secret.into(),
            ),
        ]
    };
    // A secret the bucket refuses: the gateway says so and does not start.
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = env("wrong-secret");
    bad.push((
        "SWITCHBOARD_DATA_DIR".into(),
        tmp.path().display().to_string(),
    ));
    bad.push(("SWITCHBOARD_LISTEN".into(), "127.0.0.1:0".into()));
    let out = super::support::command(&bad).arg("serve").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("media store") && stderr.contains("switchboard-media"),
        "{stderr}"
    );

    let gw = Gateway::start_with(Options {
        env: env(ceph.secret_key()),
        ..Default::default()
    })
    .await;
    let (_, key) = gw.create_tenant("media").await;
    let (_, other) = gw.create_tenant("someone else").await;
    let secret = b"customer receipt no 4711";
    let mut ids = Vec::new();
    // One file in a single PUT, one over a part (5 MiB) as a multipart upload.
    for (len, seed) in [(300_000, 1), (7 * 1024 * 1024 + 3, 2)] {
        let mut data = secret.to_vec();
        data.extend(noise(len, seed));
        let r = upload(
            &gw,
            &key,
            "/v1/media?filename=scan.bin",
            "application/octet-stream",
            data.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.json["sha256"], hex::encode(Sha256::digest(&data)));
        ids.push((r.json["id"].as_str().unwrap().to_owned(), data));
    }
    let mut objects = ceph.objects("switchboard-media").unwrap();
    assert_eq!(objects.len(), 2, "{objects:?}");
    objects.retain(|o| o.starts_with("media/"));
    assert_eq!(objects.len(), 2, "keys under the default prefix");
    for o in &objects {
        let held = ceph.object("switchboard-media", o).unwrap();
        assert!(
            !held.windows(secret.len()).any(|w| w == secret),
            "{o} holds plaintext"
        );
    }
    assert!(
        stored_files(&gw).is_empty(),
        "nothing stays on the gateway's disk: {:?}",
        stored_files(&gw)
    );

    let gw = gw.restart().await;
    for (id, data) in &ids {
        let whole = gw
            .request(
                Method::GET,
                &format!("/v1/media/{id}"),
                &[("x-api-key", &key)],
                None,
            )
            .await;
        assert_eq!(whole.status, StatusCode::OK);
        assert_eq!(Sha256::digest(&whole.bytes), Sha256::digest(data));
        let (a, b) = (65_530, data.len() - 2);
        let part = gw
            .request(
                Method::GET,
                &format!("/v1/media/{id}"),
                &[("x-api-key", &key), ("range", &format!("bytes={a}-{b}"))],
                None,
            )
            .await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(&part.bytes[..], &data[a..=b]);
        let theirs = gw
            .request(
                Method::GET,
                &format!("/v1/media/{id}"),
                &[("x-api-key", &other)],
                None,
            )
            .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    }
}
