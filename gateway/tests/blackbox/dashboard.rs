//! The pairing dashboard, driven like a person would in headless Chromium: enter the
//! key, create a WhatsApp session, see the QR code, see it turn `WORKING` after the
//! scan. A screenshot is saved as a test artifact.

use super::support::{Gateway, Options};
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchboard_actors::browser::{BASE_ARGS, detect_chromium};
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
    let (mut browser, mut handler) = Browser::launch(config).await.unwrap();
    let pump = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page(format!("{}/", gw.base)).await.unwrap();

    page.find_element("#api-key")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(&key)
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

    let png = page
        .screenshot(ScreenshotParams::builder().full_page(true).build())
        .await
        .unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    println!("dashboard screenshot: {}", path.display());
    assert!(png.len() > 1000);

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    pump.abort();
}
