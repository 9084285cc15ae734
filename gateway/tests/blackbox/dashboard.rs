//! The pairing dashboard, driven like a person would in headless Chromium: enter the
//! key, create a WhatsApp session, see the QR code, see it turn `WORKING` after the
//! scan; add a mailbox through its connection test and see its sync state and mail.
//! Screenshots are saved as test artifacts.

use super::support::{Gateway, Options};
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchboard_actors::browser::{BASE_ARGS, detect_chromium};
use switchboard_actors::testkit::mail::MailServers;
use switchboard_actors::testkit::whatsapp::{StandinConfig, WhatsAppStandin};

async fn eval(page: &Page, js: &str) -> String {
    page.evaluate(format!("String({js})"))
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap()
}

async fn wait_until(page: &Page, what: &str, js: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = eval(page, js).await;
        if !v.is_empty() && v != "false" {
            return v;
        }
        assert!(Instant::now() < deadline, "dashboard never showed {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_dashboard_pairs_a_whatsapp_session() {
    let standin = WhatsAppStandin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig {
            qr_interval: Duration::from_secs(3),
            ..StandinConfig::default()
        },
    )
    .await
    .unwrap();
    let gw = Gateway::start_with(Options {
        env: vec![("SWITCHBOARD_WHATSAPP_URL".into(), standin.url())],
        ..Default::default()
    })
    .await;
    let (_, key) = gw.create_tenant("Dashboard Ltd").await;
    let (profile, mut browser, pump, page) = open(&gw, &key).await;
    assert_eq!(
        eval(&page, "document.getElementById('who').textContent").await,
        "Dashboard Ltd"
    );
    page.find_element("#new-session")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The QR image is shown (a decoded PNG with real pixels) and carries its value.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = wait_until(
            &page,
            "a QR code",
            "(() => { const i = document.getElementById('qr-img'); \
              return !document.getElementById('qr-box').classList.contains('hidden') \
                && i.complete && i.naturalWidth > 100 ? i.dataset.value : ''; })()",
        )
        .await;
        if standin.scan(&value, "15550009").is_ok() {
            break;
        }
        // It rotated between reading and scanning: read the new one.
        assert!(
            Instant::now() < deadline,
            "could not scan the dashboard's QR code"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until(
        &page,
        "WORKING",
        "document.getElementById('status').textContent === 'WORKING'",
    )
    .await;
    wait_until(
        &page,
        "the session in the list as WORKING",
        "document.querySelector('#sessions li .badge.WORKING') !== null",
    )
    .await;
    screenshot(&page, "dashboard.png").await;
    browser.close().await.unwrap();
    let _ = browser.wait().await;
    pump.abort();
    drop(profile);
}

async fn screenshot(page: &Page, name: &str) {
    let png = page
        .screenshot(ScreenshotParams::builder().full_page(true).build())
        .await
        .unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &png).unwrap();
    println!("dashboard screenshot: {}", path.display());
    assert!(png.len() > 1000);
}

/// Headless Chromium on the dashboard, signed in with `key`.
async fn open(
    gw: &Gateway,
    key: &str,
) -> (
    tempfile::TempDir,
    Browser,
    tokio::task::JoinHandle<()>,
    Page,
) {
    let profile = tempfile::tempdir().unwrap();
    let args: Vec<&str> = BASE_ARGS
        .iter()
        .copied()
        .filter(|a| *a != "--headless" && *a != "--remote-debugging-port=0")
        .collect();
    let config = BrowserConfig::builder()
        .chrome_executable(detect_chromium().expect("chromium is installed"))
        .no_sandbox()
        .user_data_dir(profile.path())
        // A phone-sized window: the layout must work there.
        .window_size(420, 900)
        .viewport(None)
        .args(args)
        .build()
        .unwrap();
    let (browser, mut handler) = Browser::launch(config).await.unwrap();
    let pump = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page(format!("{}/", gw.base)).await.unwrap();

    page.find_element("#api-key")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(key)
        .await
        .unwrap();
    page.find_element("#save-key")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &page,
        "the session list",
        "!document.getElementById('session-list').classList.contains('hidden')",
    )
    .await;
    (profile, browser, pump, page)
}

async fn fill(page: &Page, id: &str, value: &str) {
    let js = format!(
        "(() => {{ const e = document.getElementById({id:?}); e.value = {value:?}; return true; }})()"
    );
    eval(page, &js).await;
}

#[tokio::test]
async fn the_dashboard_adds_a_mailbox_after_testing_its_connection() {
    let servers = MailServers::start().expect("dovecot and aiosmtpd");
    servers.add_user("desk", "desk-pw-1").unwrap();
    let gw = Gateway::start().await;
    let (_, key) = gw.create_tenant("Mail Desk").await;
    let (profile, mut browser, pump, page) = open(&gw, &key).await;
    page.find_element("#new-mailbox")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let (imap, smtp) = (servers.imap_addr(), servers.smtp_addr());
    for (id, v) in [
        ("mb-address", "desk@example.test".to_owned()),
        ("mb-name", "Help Desk".to_owned()),
        ("mb-username", "desk".to_owned()),
        ("mb-password", "not-the-password".to_owned()),
        ("mb-imap-host", "127.0.0.1".to_owned()),
        ("mb-imap-port", imap.port().to_string()),
        ("mb-imap-security", "none".to_owned()),
        ("mb-smtp-host", "127.0.0.1".to_owned()),
        ("mb-smtp-port", smtp.port().to_string()),
        ("mb-smtp-security", "none".to_owned()),
    ] {
        fill(&page, id, &v).await;
    }
    page.find_element("#mb-add")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // A wrong password: the test says so per server, and no session is left behind.
    let imap_line = wait_until(
        &page,
        "the connection test",
        "(() => { const li = document.querySelector('#mb-test li[data-server=imap]'); return li ? li.className + ':' + li.textContent : ''; })()",
    )
    .await;
    assert!(
        imap_line.starts_with("bad:") && imap_line.contains("auth_failed"),
        "{imap_line}"
    );
    let listed = gw
        .tenant(&key, http::Method::GET, "/v1/sessions", None)
        .await;
    assert_eq!(
        listed.json["data"].as_array().unwrap().len(),
        0,
        "{}",
        listed.text
    );

    fill(&page, "mb-password", "desk-pw-1").await;
    page.find_element("#mb-add")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &page,
        "the mailbox WORKING",
        "document.getElementById('status').textContent === 'WORKING'",
    )
    .await;
    wait_until(
        &page,
        "the folder's sync state",
        "document.querySelector('#folders td') && document.querySelector('#folders td').textContent === 'INBOX'",
    )
    .await;
    servers
        .deliver(
            "desk",
            b"From: Carol <carol@example.test>\r\nTo: desk@example.test\r\nSubject: Printer on fire\r\nMessage-ID: <fire@x>\r\n\r\nPlease help.\r\n",
        )
        .unwrap();
    let row = wait_until(
        &page,
        "the mail in the recent list",
        "(() => { const r = document.querySelector('#mail tr.mail-inbound'); return r ? r.textContent : ''; })()",
    )
    .await;
    assert!(
        row.contains("carol@example.test") && row.contains("Printer on fire"),
        "{row}"
    );
    screenshot(&page, "dashboard-mailbox.png").await;
    browser.close().await.unwrap();
    let _ = browser.wait().await;
    pump.abort();
    drop(profile);
}
