//! Media and rich messages on WhatsApp end to end: files both ways (the stand-in's
//! phones encrypt and decrypt them as WhatsApp does; the page downloads and uploads
//! them), quoted replies, reactions, edits, deletes for everyone, read receipts and
//! read marks, all through real Chromium and the real binary.

use super::support::Gateway;
use super::whatsapp::{PHONE, options, paired_session, standin};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use switchboard_actors::testkit::whatsapp::{Inbound, WhatsAppStandin, lid_of};

const ALICE: &str = "15550100";

/// `len` bytes after `magic`, different for each seed (so each file is new to the store).
fn file(magic: &[u8], len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = magic.to_vec();
    out.extend((magic.len()..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    }));
    out
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A kind received: type, mimetype, first bytes, size, file name.
type Received = (
    &'static str,
    &'static str,
    &'static [u8],
    usize,
    Option<&'static str>,
);
/// A kind sent: file name, mimetype, first bytes, size, caption, as a voice note, the
/// type the recipient gets.
type ToSend = (
    &'static str,
    &'static str,
    &'static [u8],
    usize,
    &'static str,
    bool,
    &'static str,
);

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const MP4: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";
const OGG: &[u8] = b"OggS\0\x02\0\0\0\0\0\0\0\0";
const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
const WEBP: &[u8] = b"RIFF\x24\0\0\0WEBPVP8 ";

/// The first stored event of `ty` that `pick` accepts, waited for.
async fn event(gw: &Gateway, key: &str, ty: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = gw.events_of(key, ty).await.into_iter().find(|e| pick(e)) {
            return e["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no such {ty} event\n{}",
            gw.output.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many files the media store holds on disk.
fn stored_files(gw: &Gateway) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }
    walk(&gw.data_dir.join("media"))
}

async fn download(gw: &Gateway, key: &str, id: &str) -> super::support::Resp {
    gw.request(
        Method::GET,
        &format!("/v1/media/{id}"),
        &[("x-api-key", key)],
        None,
    )
    .await
}

async fn upload(gw: &Gateway, key: &str, name: &str, mime: &str, body: Vec<u8>) -> String {
    let r = gw
        .request(
            Method::POST,
            &format!("/v1/media?filename={name}"),
            &[("x-api-key", key), ("content-type", mime)],
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

async fn send(gw: &Gateway, key: &str, session: &str, body: Value) -> super::support::Resp {
    gw.tenant(
        key,
        Method::POST,
        &format!("/v1/sessions/{session}/messages"),
        Some(body),
    )
    .await
}

/// What the stand-in's recipient got for the send whose caption (text) is `text`.
async fn sent_with(
    standin: &WhatsAppStandin,
    pick: impl Fn(&switchboard_actors::testkit::whatsapp::Sent) -> bool,
) -> switchboard_actors::testkit::whatsapp::Sent {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = standin.sent(PHONE).into_iter().find(|s| pick(s)) {
            return s;
        }
        assert!(Instant::now() < deadline, "never reached the stand-in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_kind_of_media_goes_both_ways_byte_for_byte() {
    let standin = standin(Duration::from_secs(20)).await;
    let gw = Gateway::start_with(options(&standin, 5)).await;
    let (_, key) = gw.create_tenant("wa-media").await;
    let (_, other) = gw.create_tenant("wa-media-other").await;
    let id = paired_session(&gw, &key, &standin).await;

    // In: each kind arrives as `message.received` with the file in the store; its
    // bytes come back from GET /v1/media/{id} exactly (a 3 MiB video crosses the
    // page in several chunks).
    let kinds: [Received; 6] = [
        ("image", "image/png", PNG, 200_000, None),
        ("video", "video/mp4", MP4, 3 << 20, None),
        ("audio", "audio/ogg", OGG, 50_000, None),
        ("ptt", "audio/ogg; codecs=opus", OGG, 30_000, None),
        (
            "document",
            "application/pdf",
            PDF,
            120_000,
            Some("invoice.pdf"),
        ),
        ("sticker", "image/webp", WEBP, 20_000, None),
    ];
    for (n, (kind, mime, magic, len, name)) in kinds.iter().enumerate() {
        let bytes = file(magic, *len, n as u64 + 1);
        let caption = format!("a {kind} for you");
        standin
            .deliver(
                PHONE,
                Inbound {
                    from: ALICE.into(),
                    msg_type: Some((*kind).into()),
                    mimetype: Some((*mime).into()),
                    caption: (*kind != "sticker" && *kind != "ptt").then(|| caption.clone()),
                    filename: name.map(str::to_owned),
                    view_once: *kind == "image",
                    media: Some(bytes.clone()),
                    ..Inbound::default()
                },
            )
            .unwrap();
        let data = event(&gw, &key, "message.received", |e| {
            e["data"]["meta"]["type"] == *kind && e["data"]["media"]["sha256"] == sha(&bytes)
        })
        .await;
        let media = &data["media"];
        assert!(media["error"].is_null(), "{kind}: {data}");
        assert_eq!(media["size"], *len as u64, "{kind}");
        if *kind == "sticker" || *kind == "ptt" {
            assert_eq!(data["text"], "", "{kind}: the body is not text");
        } else {
            assert_eq!(data["text"], caption, "{kind}: the caption is the text");
        }
        assert_eq!(
            data["meta"]["view_once"].as_bool().unwrap_or(false),
            *kind == "image",
            "{kind}: view-once flagged"
        );
        if let Some(name) = name {
            assert_eq!(media["filename"], *name);
        }
        let media_id = media["id"].as_str().unwrap();
        let got = download(&gw, &key, media_id).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(sha(&got.bytes), sha(&bytes), "{kind}: the same bytes");
        let want_type = mime.split(';').next().unwrap();
        assert_eq!(got.headers["content-type"], want_type, "{kind}");
        assert_eq!(
            download(&gw, &other, media_id).await.status,
            StatusCode::NOT_FOUND,
            "another tenant's media"
        );
    }

    // A file WhatsApp's servers no longer have: the message still arrives, saying so.
    standin
        .deliver(
            PHONE,
            Inbound {
                from: ALICE.into(),
                msg_type: Some("image".into()),
                mimetype: Some("image/png".into()),
                caption: Some("too late".into()),
                media: Some(file(PNG, 5_000, 99)),
                expired: true,
                ..Inbound::default()
            },
        )
        .unwrap();
    let late = event(&gw, &key, "message.received", |e| {
        e["data"]["text"] == "too late"
    })
    .await;
    assert_eq!(late["media"]["error"], "media_unavailable", "{late}");
    assert!(late["media"]["id"].is_null());
    assert_eq!(late["media"]["size"], 5_000);

    // A location is described; a contact card is kept as a .vcf file.
    standin
        .deliver(
            PHONE,
            Inbound {
                from: ALICE.into(),
                msg_type: Some("location".into()),
                lat: Some(48.8584),
                lng: Some(2.2945),
                loc: Some("Tour Eiffel".into()),
                ..Inbound::default()
            },
        )
        .unwrap();
    let place = event(&gw, &key, "message.received", |e| {
        e["data"]["meta"]["type"] == "location"
    })
    .await;
    assert_eq!(place["meta"]["location"]["name"], "Tour Eiffel");
    assert_eq!(place["meta"]["location"]["lat"], 48.8584);
    assert_eq!(place["text"], "", "a location's thumbnail is not text");
    let card =
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bob Builder\r\nTEL;type=CELL:+15550101\r\nEND:VCARD\r\n";
    standin
        .deliver(
            PHONE,
            Inbound {
                from: ALICE.into(),
                msg_type: Some("vcard".into()),
                vcard: Some(card.into()),
                ..Inbound::default()
            },
        )
        .unwrap();
    let contact = event(&gw, &key, "message.received", |e| {
        e["data"]["meta"]["type"] == "vcard"
    })
    .await;
    assert_eq!(contact["media"]["filename"], "Bob Builder.vcf");
    assert_eq!(contact["media"]["mimetype"], "text/vcard");
    let vcf = download(&gw, &key, contact["media"]["id"].as_str().unwrap()).await;
    assert_eq!(vcf.text, card);

    // Out: each kind, from the store, reaches the recipient's phone intact and as
    // the kind it should be.
    let outs: [ToSend; 6] = [
        (
            "photo.png",
            "image/png",
            PNG,
            150_000,
            "a photo",
            false,
            "image",
        ),
        (
            "clip.mp4",
            "video/mp4",
            MP4,
            2 << 20,
            "a clip",
            false,
            "video",
        ),
        (
            "song.ogg",
            "audio/ogg",
            OGG,
            40_000,
            "a song",
            false,
            "audio",
        ),
        ("note.ogg", "audio/ogg", OGG, 25_000, "", true, "ptt"),
        (
            "quote.pdf",
            "application/pdf",
            PDF,
            90_000,
            "the quote",
            false,
            "document",
        ),
        (
            "wave.webp",
            "image/webp",
            WEBP,
            15_000,
            "",
            false,
            "sticker",
        ),
    ];
    for (n, (name, mime, magic, len, caption, voice, kind)) in outs.iter().enumerate() {
        let bytes = file(magic, *len, 100 + n as u64);
        let media = upload(&gw, &key, name, mime, bytes.clone()).await;
        let mut body = json!({ "to": ALICE, "media": { "id": media } });
        if !caption.is_empty() {
            body["caption"] = (*caption).into();
        }
        if *voice {
            body["as_voice"] = true.into();
        }
        let r = send(&gw, &key, &id, body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{name}: {}", r.text);
        let digest = sha(&bytes);
        let got = sent_with(&standin, |s| {
            s.media.as_ref().is_some_and(|m| m.sha256 == digest)
        })
        .await;
        let m = got.media.unwrap();
        assert_eq!(m.msg_type, *kind, "{name}");
        assert_eq!(m.size, *len as u64, "{name}");
        assert_eq!(got.text, *caption, "{name}: the caption");
        assert_eq!(m.mimetype, *mime, "{name}");
        if *kind == "document" {
            assert_eq!(m.filename.as_deref(), Some(*name));
        }
        let msg = r.json["id"].as_str().unwrap().to_owned();
        gw.wait_message_status(&key, &msg, "sent").await;
    }

    // As a form: the file streamed into the store with the send; a refused form
    // keeps nothing.
    let offer = file(PDF, 300_000, 77);
    let form = |fields: &[(&str, &str)], file: Option<(&str, &[u8])>| {
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--XB\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                    .as_bytes(),
            );
        }
        if let Some((name, bytes)) = file {
            body.extend_from_slice(
                format!("--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/pdf\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XB--\r\n");
        body
    };
    let path = format!("/v1/sessions/{id}/messages");
    let headers = [
        ("x-api-key", key.as_str()),
        ("content-type", "multipart/form-data; boundary=XB"),
    ];
    let post_form = |body: Vec<u8>| gw.request(Method::POST, &path, &headers, Some(body));
    let files_before = stored_files(&gw);
    for (fields, why) in [
        (vec![("to", ALICE), ("colour", "red")], "an unknown field"),
        (
            vec![("to", ALICE), ("as_voice", "true")],
            "a voice note that is not audio",
        ),
        (vec![("to", "")], "no recipient"),
    ] {
        let r = post_form(form(&fields, Some(("offer.pdf", &offer)))).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{why}: {}",
            r.text
        );
        assert_eq!(stored_files(&gw), files_before, "{why}: nothing kept");
    }
    let r = post_form(form(
        &[("to", ALICE), ("caption", "our offer")],
        Some(("offer.pdf", &offer)),
    ))
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let digest = sha(&offer);
    let got = sent_with(&standin, |s| {
        s.media.as_ref().is_some_and(|m| m.sha256 == digest)
    })
    .await;
    assert_eq!(got.text, "our offer");
    let m = got.media.unwrap();
    assert_eq!(
        (m.msg_type.as_str(), m.filename.as_deref()),
        ("document", Some("offer.pdf"))
    );

    // As a voice note, a file that is not audio is refused.
    let pdf = upload(&gw, &key, "x.pdf", "application/pdf", file(PDF, 1_000, 7)).await;
    let r = send(
        &gw,
        &key,
        &id,
        json!({ "to": ALICE, "media": { "id": pdf }, "as_voice": true }),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

#[tokio::test]
async fn replies_reactions_edits_revokes_and_read_state() {
    let standin = standin(Duration::from_secs(20)).await;
    let gw = Gateway::start_with(options(&standin, 5)).await;
    let (_, key) = gw.create_tenant("wa-rich").await;
    let id = paired_session(&gw, &key, &standin).await;

    // A message comes in; we answer quoting it.
    let theirs = standin
        .inbound(PHONE, ALICE, "is the shop open?", None)
        .unwrap();
    let received = event(&gw, &key, "message.received", |e| {
        e["data"]["text"] == "is the shop open?"
    })
    .await;
    let list = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/messages"),
            None,
        )
        .await;
    let their_msg = list.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["external_id"] == received["external_id"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = send(
        &gw,
        &key,
        &id,
        json!({ "to": ALICE, "text": "yes, until 6", "reply_to": their_msg }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let ours = r.json["id"].as_str().unwrap().to_owned();
    let reply = sent_with(&standin, |s| s.text == "yes, until 6").await;
    assert_eq!(reply.quoted.as_deref(), Some(theirs.as_str()), "quoted");
    gw.wait_message_status(&key, &ours, "delivered").await;

    // They answer quoting ours: `reply_to` is our message.
    standin
        .deliver(
            PHONE,
            Inbound {
                from: ALICE.into(),
                text: "great, thanks".into(),
                quoted: Some(reply.id.clone()),
                ..Inbound::default()
            },
        )
        .unwrap();
    let answer = event(&gw, &key, "message.received", |e| {
        e["data"]["text"] == "great, thanks"
    })
    .await;
    assert_eq!(answer["reply_to"], ours, "{answer}");

    // They react to ours, then take it back.
    assert!(standin.react(PHONE, ALICE, &reply.id, "❤️"));
    let reaction = event(&gw, &key, "message.reaction", |e| {
        e["data"]["emoji"] == "❤️"
    })
    .await;
    assert_eq!(reaction["message_id"], ours);
    assert_eq!(reaction["from_phone"], ALICE);
    assert!(standin.react(PHONE, ALICE, &reply.id, ""));
    let removed = event(&gw, &key, "message.reaction", |e| {
        e["data"]["removed"] == true
    })
    .await;
    assert_eq!(removed["message_id"], ours);

    // We react to theirs.
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/messages/{their_msg}/reactions"),
            Some(json!({ "emoji": "👍" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let sent_reactions = standin.reactions(PHONE);
    assert_eq!(sent_reactions.len(), 1, "{sent_reactions:?}");
    assert_eq!(sent_reactions[0].emoji, "👍");
    assert_eq!(sent_reactions[0].parent, received["external_id"]);
    for bad in [json!({ "emoji": "yes" }), json!({ "emoji": 1 }), json!({})] {
        let r = gw
            .tenant(
                &key,
                Method::POST,
                &format!("/v1/messages/{their_msg}/reactions"),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.text
        );
    }
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/messages/msg_01JD0000000000000000000000/reactions",
            Some(json!({ "emoji": "👍" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(standin.reactions(PHONE).len(), 1, "nothing more was sent");

    // They edit their message, then delete it for everyone.
    assert!(standin.change(PHONE, &theirs, Some("is the shop open today?")));
    let edited = event(&gw, &key, "message.edited", |_| true).await;
    assert_eq!(edited["message_id"], their_msg);
    assert_eq!(edited["text"], "is the shop open today?");
    assert!(standin.change(PHONE, &theirs, None));
    let revoked = event(&gw, &key, "message.revoked", |_| true).await;
    assert_eq!(revoked["message_id"], their_msg);

    // They read ours: `message.read`. We mark their chat read.
    assert!(standin.read(PHONE, &reply.id));
    gw.wait_message_status(&key, &ours, "read").await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/chats/{ALICE}/read"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        standin
            .signals(PHONE)
            .iter()
            .any(|s| s.state == "seen" && s.chat == received["chat"]),
        "{:?}",
        standin.signals(PHONE)
    );
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{id}/chats/19990000000/read"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    // The RAG actor's answer marks the asker's chat read first, when told to.
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/kb/documents",
            Some(json!({ "title": "Hours", "text": "Our shop is open Monday to Friday from 9am to 6pm. On Saturdays we open from 10am to 2pm." })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = gw
        .tenant(
            &key,
            Method::PUT,
            &format!("/v1/sessions/{id}/reply-settings"),
            Some(json!({ "mode": "auto", "mark_read": true })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["mark_read"], true, "{}", r.text);
    let bob = "15550101";
    standin
        .inbound(PHONE, bob, "What time do you open on Saturday?", None)
        .unwrap();
    let answer = sent_with(&standin, |s| s.to_phone.as_deref() == Some(bob)).await;
    assert!(answer.text.contains("10am"), "{}", answer.text);
    let seen = standin
        .signals(PHONE)
        .into_iter()
        .filter(|s| s.state == "seen" && s.chat.starts_with(&lid_of(bob)))
        .map(|s| s.at_ms)
        .min()
        .expect("Bob's chat marked read");
    assert!(seen <= answer.at_ms, "read before the answer");
}

#[tokio::test]
async fn sends_are_humanised_and_capped_per_contact() {
    let standin = standin(Duration::from_secs(20)).await;
    let gw = Gateway::start_with(options(&standin, 5)).await;
    let (_, key) = gw.create_tenant("wa-human").await;
    // This session turns humanised sending back on (the gateway's default, which
    // the other tests switch off), with short gaps to keep the test quick.
    let pacing = json!({ "enabled": true, "gap": "300ms-600ms", "typing_per_char": "20ms",
        "typing_max": "1500ms", "per_contact_per_hour": 2, "warm_up_days": 3, "warm_up_start_per_day": 50 });
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp", "config": { "pacing": pacing } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    gw.wait_status(&key, &id, "SCAN_QR", Duration::from_secs(30))
        .await;
    super::whatsapp::scan_current(&gw, &key, &id, &standin).await;
    gw.wait_status(&key, &id, "WORKING", Duration::from_secs(30))
        .await;

    let texts = ["first of three", "second of three", "third of three"];
    let mut ids = Vec::new();
    for t in texts {
        let r = send(&gw, &key, &id, json!({ "to": ALICE, "text": t })).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        ids.push(r.json["id"].as_str().unwrap().to_owned());
    }
    let first = sent_with(&standin, |s| s.text == texts[0]).await;
    let second = sent_with(&standin, |s| s.text == texts[1]).await;
    // Spaced by the random gap, and each typed first: "composing" before the
    // message, for about its length, then "paused".
    assert!(
        second.at_ms - first.at_ms >= 300,
        "{} ms apart",
        second.at_ms - first.at_ms
    );
    // "paused" follows the send; under load it can reach the stand-in a moment
    // after the message does.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !standin
        .signals(PHONE)
        .iter()
        .any(|x| x.state == "paused" && x.at_ms >= second.at_ms)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signals = standin.signals(PHONE);
    for s in [&first, &second] {
        let typed = signals
            .iter()
            .filter(|x| x.state == "composing" && x.at_ms <= s.at_ms)
            .map(|x| x.at_ms)
            .max()
            .expect("typing shown before the send");
        let typed_for = s.at_ms - typed;
        assert!(
            (250..3_000).contains(&typed_for),
            "typed for {typed_for} ms"
        );
        assert!(
            signals
                .iter()
                .any(|x| x.state == "paused" && x.at_ms >= s.at_ms)
        );
    }
    // The third waits: two unanswered messages an hour is this session's cap.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!standin.sent(PHONE).iter().any(|s| s.text == texts[2]));
    let third = gw
        .tenant(&key, Method::GET, &format!("/v1/messages/{}", ids[2]), None)
        .await;
    assert_eq!(third.json["status"], "queued", "{}", third.text);
    // The limits view says what is in force and what was used.
    let limits = gw
        .tenant(
            &key,
            Method::GET,
            &format!("/v1/sessions/{id}/limits"),
            None,
        )
        .await;
    assert_eq!(limits.status, StatusCode::OK, "{}", limits.text);
    let p = &limits.json["pacing"];
    assert_eq!(p["enabled"], true, "{}", limits.text);
    assert_eq!(p["per_contact_per_hour"], 2);
    assert_eq!(p["gap"]["min_ms"], 300);
    assert_eq!(p["typing"]["max_ms"], 1500);
    assert_eq!(p["warm_up"]["active"], true);
    assert_eq!(p["warm_up"]["day"], 1);
    assert_eq!(p["warm_up"]["cap_per_day"], 50);
    assert_eq!(p["sent_last_24h"], 2);

    // Bad pacing is refused when the session is created, naming the field.
    let r = gw
        .tenant(
            &key,
            Method::POST,
            "/v1/sessions",
            Some(json!({ "channel": "whatsapp", "config": { "pacing": { "gap": "soon" } } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("pacing.gap"), "{}", r.text);
}

/// `media.download = "lazy"`: a received file is announced with its id before any
/// of it is fetched; the first `GET /v1/media/{id}` downloads it through the page
/// (once), even after the gateway restarted; a file WhatsApp no longer has is 410, a
/// stopped session is 409.
#[tokio::test]
async fn lazy_media_is_fetched_through_the_page_on_first_read_once() {
    let standin = standin(Duration::from_secs(20)).await;
    let mut opts = options(&standin, 5);
    opts.env
        .push(("SWITCHBOARD_MEDIA_DOWNLOAD".into(), "lazy".into()));
    let gw = Gateway::start_with(opts).await;
    let (_, key) = gw.create_tenant("wa-lazy").await;
    let (_, other) = gw.create_tenant("wa-lazy-other").await;
    let session = paired_session(&gw, &key, &standin).await;
    let receive = |bytes: Vec<u8>, caption: &str, expired: bool| Inbound {
        from: ALICE.into(),
        msg_type: Some("document".into()),
        mimetype: Some("application/pdf".into()),
        caption: Some(caption.into()),
        filename: Some("statement.pdf".into()),
        media: Some(bytes),
        expired,
        ..Inbound::default()
    };

    let pdf = file(PDF, 1_500_000, 41);
    standin
        .deliver(PHONE, receive(pdf.clone(), "your statement", false))
        .unwrap();
    let data = event(&gw, &key, "message.received", |e| {
        e["data"]["text"] == "your statement"
    })
    .await;
    let media = &data["media"];
    assert!(media["error"].is_null(), "{data}");
    assert_eq!(media["sha256"], sha(&pdf));
    assert_eq!(media["size"], pdf.len() as u64);
    assert_eq!(media["filename"], "statement.pdf");
    let media_id = media["id"].as_str().unwrap().to_owned();
    assert_eq!(standin.media_downloads(), 0, "nothing fetched yet");
    assert_eq!(stored_files(&gw), 0, "nothing stored yet");
    assert_eq!(
        download(&gw, &other, &media_id).await.status,
        StatusCode::NOT_FOUND,
        "another tenant's media"
    );

    // The first read is a range: the file is fetched whole, then the range served.
    let part = gw
        .request(
            Method::GET,
            &format!("/v1/media/{media_id}"),
            &[("x-api-key", &key), ("range", "bytes=1000-1999")],
            None,
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{}", part.text);
    assert_eq!(&part.bytes[..], &pdf[1000..2000]);
    assert_eq!(part.headers["content-type"], "application/pdf");
    assert_eq!(standin.media_downloads(), 1);
    let whole = download(&gw, &key, &media_id).await;
    assert_eq!(sha(&whole.bytes), sha(&pdf));
    assert_eq!(standin.media_downloads(), 1, "fetched once");
    assert_eq!(stored_files(&gw), 1);

    // The same file forwarded again is the same id, and is not fetched again.
    standin
        .deliver(PHONE, receive(pdf.clone(), "again", false))
        .unwrap();
    let again = event(&gw, &key, "message.received", |e| {
        e["data"]["text"] == "again"
    })
    .await;
    assert_eq!(again["media"]["id"], media_id.as_str());
    assert_eq!(sha(&download(&gw, &key, &media_id).await.bytes), sha(&pdf));
    assert_eq!(standin.media_downloads(), 1);

    // Gone from WhatsApp's servers before anyone read it: 410, nothing stored.
    standin
        .deliver(PHONE, receive(file(PDF, 9_000, 42), "too late", true))
        .unwrap();
    let late = event(&gw, &key, "message.received", |e| {
        e["data"]["text"] == "too late"
    })
    .await;
    let late_id = late["media"]["id"].as_str().unwrap().to_owned();
    let gone = download(&gw, &key, &late_id).await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.text);
    assert_eq!(
        gone.json["error"]["code"], "media_unavailable",
        "{}",
        gone.text
    );
    assert_eq!(stored_files(&gw), 1);

    // A file still pending when the gateway restarts is fetched by the restored
    // session (the page syncs the message back from the phone).
    let later = file(PDF, 300_000, 43);
    standin
        .deliver(PHONE, receive(later.clone(), "read me later", false))
        .unwrap();
    let pending = event(&gw, &key, "message.received", |e| {
        e["data"]["text"] == "read me later"
    })
    .await;
    let pending_id = pending["media"]["id"].as_str().unwrap().to_owned();
    let gw = gw.restart().await;
    gw.wait_status(&key, &session, "WORKING", Duration::from_secs(30))
        .await;
    let got = download(&gw, &key, &pending_id).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(sha(&got.bytes), sha(&later));

    // With the session stopped, a pending file cannot be fetched: 409, said why.
    standin
        .deliver(
            PHONE,
            receive(file(PDF, 20_000, 44), "while stopped", false),
        )
        .unwrap();
    let stopped = event(&gw, &key, "message.received", |e| {
        e["data"]["text"] == "while stopped"
    })
    .await;
    let r = gw
        .tenant(
            &key,
            Method::POST,
            &format!("/v1/sessions/{session}/stop"),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = download(&gw, &key, stopped["media"]["id"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "session_not_running");
}
