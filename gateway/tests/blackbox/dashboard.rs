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

#[tokio::test]
async fn the_dashboard_connects_linkedin_both_ways_answers_a_challenge_and_shows_the_caps() {
    use switchboard_actors::testkit::linkedin::{self, LinkedInStandin};
    const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
    let standin = LinkedInStandin::start(
        "127.0.0.1:0".parse().unwrap(),
        linkedin::StandinConfig::default(),
    )
    .await
    .unwrap();
    standin.add_account(
        "totp@example.com",
        "s3cret",
        "totp-user",
        Some("two_factor"),
    );
    standin.add_account("ada@example.com", "pw", "ada-lovelace", None);
    standin.add_member("linus-t", "Linus", "Torvalds");
    let gw = Gateway::start_with(Options {
        env: vec![
            ("SWITCHBOARD_LINKEDIN_URL".into(), standin.url()),
            ("SWITCHBOARD_WHATSAPP_LOAD_TIMEOUT".into(), "20s".into()),
        ],
        ..Default::default()
    })
    .await;
    let (_, key) = gw.create_tenant("Outreach Co").await;
    let (profile, mut browser, pump, page) = open(&gw, &key).await;
    let click = |sel: &'static str| {
        let page = page.clone();
        async move {
            page.find_element(sel).await.unwrap().click().await.unwrap();
        }
    };

    // Password login: the authenticator code is asked for and answered on the page.
    click("#new-linkedin").await;
    fill(&page, "li-login", "password").await;
    eval(
        &page,
        "(() => { document.getElementById('li-login').dispatchEvent(new Event('change')); return true; })()",
    )
    .await;
    fill(&page, "li-username", "totp@example.com").await;
    fill(&page, "li-password", "s3cret").await;
    click("#li-add").await;
    let title = wait_until(
        &page,
        "the challenge",
        "(() => { const b = document.getElementById('challenge-box'); return b.classList.contains('hidden') ? '' : document.getElementById('challenge-title').textContent; })()",
    )
    .await;
    assert!(title.contains("authenticator"), "{title}");
    wait_until(
        &page,
        "CHALLENGE",
        "document.getElementById('status').textContent === 'CHALLENGE'",
    )
    .await;
    fill(&page, "challenge-code", "000000").await;
    click("#challenge-send").await;
    let err = wait_until(
        &page,
        "the wrong code refused",
        "document.getElementById('challenge-error').textContent",
    )
    .await;
    assert!(!err.is_empty());
    let code = standin.code("totp@example.com").unwrap();
    fill(&page, "challenge-code", &code).await;
    click("#challenge-send").await;
    wait_until(
        &page,
        "the password session WORKING",
        "document.getElementById('status').textContent === 'WORKING' && document.getElementById('challenge-box').classList.contains('hidden')",
    )
    .await;

    // Cookie login, with the member's own browser identity.
    let (li_at, jsessionid) = standin.cookies("ada@example.com", UA).unwrap();
    click("#new-linkedin").await;
    fill(&page, "li-login", "cookies").await;
    eval(
        &page,
        "(() => { document.getElementById('li-login').dispatchEvent(new Event('change')); return true; })()",
    )
    .await;
    fill(&page, "li-at", &li_at).await;
    fill(&page, "li-jsessionid", &jsessionid).await;
    fill(&page, "li-user-agent", UA).await;
    fill(&page, "li-zone", "Europe/Paris").await;
    // Any hour of the day, so the test runs whenever CI does.
    fill(&page, "li-hours", "00:00-24:00").await;
    click("#li-add").await;
    wait_until(
        &page,
        "the cookie session WORKING",
        "document.getElementById('detail-title').textContent.startsWith('LinkedIn ') && document.getElementById('status').textContent === 'WORKING' && !document.getElementById('limits-box').classList.contains('hidden')",
    )
    .await;
    let sessions = gw
        .tenant(&key, http::Method::GET, "/v1/sessions", None)
        .await;
    let cookie_session = sessions.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] != "totp@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The caps as the page shows them: a profile view counts.
    let view = gw
        .tenant(
            &key,
            http::Method::GET,
            &format!("/v1/sessions/{cookie_session}/profiles/linus-t"),
            None,
        )
        .await;
    assert_eq!(view.status, http::StatusCode::OK, "{}", view.text);
    let row = wait_until(
        &page,
        "one profile view used",
        "(() => { const r = document.querySelector('#caps tr[data-cap=profile_views_per_day]'); return r && r.children[1].textContent === '1' ? r.textContent : ''; })()",
    )
    .await;
    assert!(row.contains("80"), "the default cap of 80 a day: {row}");
    let invitations = eval(
        &page,
        "document.querySelector('#caps tr[data-cap=invitations_per_day]').textContent",
    )
    .await;
    assert!(invitations.contains("15"), "{invitations}");
    let note = eval(&page, "document.getElementById('limits-note').textContent").await;
    assert!(
        note.contains("0 waiting") && note.contains("Europe/Paris"),
        "{note}"
    );
    assert!(
        eval(&page, "document.querySelectorAll('#slots tr').length").await != "0",
        "next slots are shown"
    );
    screenshot(&page, "dashboard-linkedin.png").await;
    browser.close().await.unwrap();
    let _ = browser.wait().await;
    pump.abort();
    drop(profile);
}
