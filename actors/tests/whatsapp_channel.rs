//! The WhatsApp channel driven directly (real Chromium, the stand-in WhatsApp Web):
//! what the session actor cannot show from outside.
#![cfg(feature = "testkit")]

use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::browser::{BrowserPool, BrowserSettings};
use switchboard_actors::channels::{
    self, Channel, ChannelEvent, Context, OutboundMessage, whatsapp,
};
use switchboard_actors::storage::{AuditEntry, DatabaseTarget, LimitOverrides, SessionRow};
use switchboard_actors::testkit::whatsapp::{StandinConfig, WhatsAppStandin};
use switchboard_actors::{Store, ids};
use switchboard_crypto::{ApiKeyHash, Keyring, MasterKey};
use tokio::sync::mpsc;

const PHONE: &str = "15550001";

async fn next(
    rx: &mut mpsc::Receiver<ChannelEvent>,
    want: fn(&ChannelEvent) -> bool,
) -> ChannelEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("an event within 30 s")
            .expect("the channel is alive");
        if want(&ev) {
            return ev;
        }
    }
}

/// A send retried after a crash carries the same WhatsApp message id, so the page
/// finds it in the chat instead of sending it twice: on the same page, and on a page
/// loaded afresh (where the message is back only through history sync).
#[tokio::test]
async fn a_retried_send_is_found_in_the_chat_not_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&DatabaseTarget::Sqlite(dir.path().join("w.db")))
        .await
        .unwrap();
    let keyring = Arc::new(Keyring::new(MasterKey::generate().unwrap(), []));
    let (tenant, _) = store
        .create_tenant(
            "Acme",
            &LimitOverrides::default(),
            None,
            &ApiKeyHash::of("sbk_test"),
            "sbk_te",
            &AuditEntry::new("test", "tenant.create"),
        )
        .await
        .unwrap();
    let row = SessionRow {
        id: ids::new_id("ses"),
        tenant_id: tenant.id.clone(),
        channel: "whatsapp".into(),
        name: None,
        status: "STARTING".into(),
        status_reason: None,
        desired_state: "running".into(),
        config: "{}".into(),
        network: None,
        created_at: 0,
        updated_at: 0,
    };
    store
        .create_session(&row, &AuditEntry::new("test", "session.create"))
        .await
        .unwrap();
    let standin = WhatsAppStandin::start("127.0.0.1:0".parse().unwrap(), StandinConfig::default())
        .await
        .unwrap();
    let pool = BrowserPool::spawn(BrowserSettings::new(dir.path().join("browser")))
        .await
        .unwrap();
    let ctx = Context {
        store,
        keyring,
        browser: Some(pool.clone()),
        settings: Arc::new(channels::Settings {
            whatsapp: whatsapp::Settings {
                url: standin.url(),
                humanise: false,
                ..whatsapp::Settings::default()
            },
            ..Default::default()
        }),
        media: None,
        cluster: None,
    };
    let mut channel =
        whatsapp::WhatsApp::new(&row, whatsapp::WhatsAppConfig::default(), ctx).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    channel.connect(tx).await.unwrap();
    let ChannelEvent::Qr(qr) = next(&mut rx, |e| matches!(e, ChannelEvent::Qr(_))).await else {
        unreachable!()
    };
    standin.scan(&qr, PHONE).unwrap();
    next(&mut rx, |e| matches!(e, ChannelEvent::Ready)).await;

    let message = OutboundMessage {
        id: "msg_01inflight".into(),
        to: "15550100".into(),
        text: "only once".into(),
        ..OutboundMessage::default()
    };
    let first = channel.send(message.clone()).await.unwrap();
    let again = channel.send(message.clone()).await.unwrap();
    assert_eq!(first, again, "the same WhatsApp id");
    let sent_once = || {
        standin
            .sent(PHONE)
            .iter()
            .filter(|s| s.text == "only once")
            .count()
    };
    for _ in 0..100 {
        if sent_once() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sent_once(), 1);

    // As after a crash: a new page, logged in from the profile on disk, knows the
    // message only from history.
    let (tx, mut rx) = mpsc::channel(64);
    channel.connect(tx).await.unwrap();
    next(&mut rx, |e| matches!(e, ChannelEvent::Ready)).await;
    let after_crash = channel.send(message).await.unwrap();
    assert_eq!(after_crash, first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sent_once(), 1, "not sent again after the reconnect");
    channel.disconnect().await;
    pool.shutdown();
}
