//! Each scenario, briefly, against the real gateway binary: the report is well
//! formed and its counts agree with what the gateway itself recorded.

use std::path::PathBuf;
use std::time::Duration;
use switchboard_bench::api::{self, ApiParams, Mix};
use switchboard_bench::scenarios::{self, OutboundParams, PipelineParams, WebhooksParams};
use switchboard_bench::target::Gateway;

fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2")
        })
}

/// The debug `switchboard` binary of this workspace (built if missing).
fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/scenarios-… → target/debug/switchboard
    let bin = exe.parent().unwrap().parent().unwrap().join("switchboard");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "switchboard-gateway", "--bin", "switchboard"])
            .status()
            .unwrap();
        assert!(status.success(), "could not build the gateway binary");
    }
    bin
}

#[tokio::test]
async fn pipeline_reports_every_stored_message_delivered_once() {
    let gw = Gateway::spawn(
        &gateway_binary(),
        None,
        &[
            ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS", "true"),
            ("SWITCHBOARD_SESSIONS_RESTART_BASE", "100ms"),
        ],
    )
    .unwrap();
    // A two-step ramp.
    let params = PipelineParams {
        tenants: 2,
        sessions: 1,
        rates: vec![50.0, 100.0],
        duration: Duration::from_millis(1500),
        payload_bytes: 32,
        drain_timeout: Duration::from_secs(30),
        // The tenants' retention set as `--retention` does (the sweep itself is
        // measured by hand: see the README).
        retention: Some("1m".into()),
    };
    let r = scenarios::pipeline(std::slice::from_ref(&gw), &params)
        .await
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "produced",
        "delivered",
        "lost",
        "duplicates",
        "invalid_signatures",
    ] {
        assert!(json[key].is_u64(), "{key} missing: {json}");
    }
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            json["latency_ms"][q].is_f64(),
            "latency {q} missing: {json}"
        );
    }
    // Roughly the asked rate (generous: the machine is shared), all of it delivered,
    // and the gateway's own counters agree.
    assert!(r.produced >= 100, "{json}");
    assert_eq!(r.lost, 0, "{json}");
    assert_eq!(r.delivered, r.produced, "{json}");
    assert_eq!(r.gateway_delivered, r.delivered, "{json}");
    assert_eq!((r.duplicates, r.invalid_signatures), (0, 0), "{json}");
    // Each step accounted for: what the gateway stored per step adds up, and every
    // delivered event falls in one step.
    assert_eq!(r.steps.len(), 2, "{json}");
    assert_eq!(
        r.steps.iter().map(|s| s.produced).sum::<u64>(),
        r.produced,
        "{json}"
    );
    assert_eq!(
        r.steps.iter().map(|s| s.delivered).sum::<u64>(),
        r.delivered,
        "{json}"
    );
    assert!(!r.over_time.is_empty() && !r.distribution.is_empty());
    assert_eq!(
        r.over_time.iter().map(|p| p.count).sum::<u64>(),
        r.delivered
    );
    assert!(r.latency_ms.p50 <= r.latency_ms.p99 && r.latency_ms.p99 <= r.latency_ms.max);
    // The gateway's CPU per delivered event, overall and per step (read from /proc).
    let us = r.gateway_cpu_us_per_event.expect("CPU per event measured");
    assert!(us > 0.0 && us < 1e6, "{json}");
    assert!(json["gateway_cpu_us_per_event"].is_f64(), "{json}");
    assert!(
        r.steps.iter().all(|s| s.gateway_cpu_us_per_event.is_some()),
        "{json}"
    );
    assert!(
        r.summary()
            .iter()
            .any(|l| l.contains("gateway CPU per delivered event"))
    );
}

#[tokio::test]
async fn baseline_measures_the_loopback_ceiling() {
    let r = switchboard_bench::baseline::baseline(4, Duration::from_millis(500))
        .await
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["scenario"], "baseline");
    assert!(r.requests > 10, "{json}");
    assert!(r.requests_per_sec > 0.0 && r.latency_ms.p50 > 0.0, "{json}");
    assert!(r.latency_ms.p50 <= r.latency_ms.max, "{json}");
}

#[tokio::test]
async fn outbound_holds_each_tenant_to_its_own_limit() {
    let gw = Gateway::spawn(&gateway_binary(), None, &[]).unwrap();
    let params = OutboundParams {
        limits: vec![5, 20],
        burst: 2,
        seconds: 1.5,
        drain_timeout: Duration::from_secs(30),
    };
    let r = scenarios::outbound(&gw, &params).await.unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["tenants"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(r.lost, 0, "{json}");
    let sent: u64 = r.tenants.iter().map(|t| t.sent).sum();
    assert_eq!(r.gateway_sent, sent, "{json}");
    for t in &r.tenants {
        assert_eq!(t.sent, t.queued, "{json}");
        // The limiter's behaviour, loosely (the machine is shared): near its own rate,
        // whatever the other tenant does.
        assert!((0.5..1.5).contains(&t.accuracy), "{json}");
    }
    assert!(r.fairness > 0.8, "{json}");
}

#[tokio::test]
async fn api_counts_agree_with_the_gateway_request_counter() {
    let gw = Gateway::spawn(&gateway_binary(), None, &[]).unwrap();
    let params = ApiParams {
        concurrency: 4,
        duration: Duration::from_millis(1500),
        mix: Mix::Mixed,
    };
    let r = api::api(&gw, &params).await.unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["scenario"], "api");
    assert_eq!(json["mix"], "mixed");
    assert!(r.requests > 50, "{json}");
    assert_eq!(r.errors, 0, "{json}");
    assert_eq!(r.gateway_counted, r.requests, "{json}");
    // All three kinds of request were made, and each route's count agrees.
    assert_eq!(r.routes.len(), 3, "{json}");
    for (route, s) in &r.routes {
        assert_eq!(s.gateway_counted, s.requests, "{route}: {json}");
        assert!(
            s.latency_ms.p50 > 0.0 && s.latency_ms.p50 <= s.latency_ms.max,
            "{json}"
        );
    }
    let statuses: u64 = r.statuses.values().sum();
    assert_eq!(statuses, r.requests, "{json}");
    assert_eq!(r.over_time.iter().map(|p| p.count).sum::<u64>(), r.requests);
    let us = r
        .gateway_cpu_us_per_request
        .expect("CPU per request measured");
    assert!(us > 0.0 && us < 1e6, "{json}");
    assert!(json["gateway_cpu_us_per_request"].is_f64(), "{json}");
}

#[tokio::test]
async fn webhooks_delivers_every_event_once() {
    let gw = Gateway::spawn(
        &gateway_binary(),
        None,
        &[("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS", "true")],
    )
    .unwrap();
    let params = WebhooksParams {
        events: 200,
        concurrency: 8,
        timeout: Duration::from_secs(30),
    };
    let r = scenarios::webhooks(&gw, &params).await.unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["scenario"], "webhooks");
    assert_eq!((r.delivered, r.lost, r.duplicates), (200, 0, 0), "{json}");
    assert_eq!(r.gateway_delivered, 200, "{json}");
    assert_eq!(r.invalid_signatures, 0, "{json}");
    let us = r.gateway_cpu_us_per_event.expect("CPU per event measured");
    assert!(us > 0.0 && us < 1e6, "{json}");
}

#[tokio::test]
async fn browser_pairs_a_session_through_the_standin_and_measures_chromium() {
    use switchboard_actors::testkit::whatsapp::{StandinConfig, WhatsAppStandin};
    let standin = WhatsAppStandin::start("127.0.0.1:0".parse().unwrap(), StandinConfig::default())
        .await
        .unwrap();
    let url = standin.url();
    let gw = Gateway::spawn(
        &gateway_binary(),
        None,
        &[("SWITCHBOARD_WHATSAPP_URL", url.as_str())],
    )
    .unwrap();
    let params = switchboard_bench::browser::BrowserParams {
        checkpoints: vec![1],
        settle: Duration::ZERO,
    };
    let r = switchboard_bench::browser::browser(&gw, &standin, &params)
        .await
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["scenario"], "browser");
    assert_eq!(r.time_to_working_ms.len(), 1, "{json}");
    assert_eq!(r.gateway_working, 1, "{json}");
    assert!(r.time_to_qr_ms[0] <= r.time_to_working_ms[0], "{json}");
    let c = &r.checkpoints[0];
    // A session's own Chromium runs as one process by default.
    assert!(
        c.chromium_processes >= 1 && c.chromium_pss_bytes > 10 << 20,
        "{json}"
    );
    assert!(c.gateway_pss_bytes > 0, "{json}");
}

#[tokio::test]
async fn rag_measures_embedding_ingest_and_search() {
    let params = switchboard_bench::rag::RagParams {
        sentences: 16,
        documents: 2,
        chunks: vec![300],
        queries: 50,
    };
    let r = switchboard_bench::rag::rag(&model_dir(), &params)
        .await
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["scenario"], "rag");
    assert!(
        r.sentences_per_second > 0.0 && r.documents_per_second > 0.0,
        "{json}"
    );
    assert!(r.chunks_ingested >= 2, "{json}");
    // sentence-transformers beside ours when python3 has it, else a reason.
    match &json["reference"]["status"] {
        v if v == "measured" => {
            assert!(json["reference"]["sentences_per_second"].as_f64().unwrap() > 0.0);
            assert!(json["reference"]["ratio"].as_f64().unwrap() > 0.0);
            // The same model, so the same vectors.
            let cosine = json["reference"]["min_cosine"].as_f64().unwrap();
            assert!(cosine > 0.99999, "cosine {cosine} in {json}");
        }
        v if v == "skipped" => {
            assert!(!json["reference"]["reason"].as_str().unwrap().is_empty());
        }
        other => panic!("reference: {other} in {json}"),
    }
    assert!(
        r.summary()
            .iter()
            .any(|l| l.contains("sentence-transformers")),
        "{:?}",
        r.summary()
    );
    assert_eq!(r.search.len(), 1, "{json}");
    let s = &r.search[0];
    assert_eq!(s.chunks, 300);
    assert!(
        s.p50_ms > 0.0 && s.p50_ms <= s.p99_ms && s.p99_ms <= s.max_ms,
        "{json}"
    );
    assert!(!r.distribution.is_empty());
}

/// The binary end to end: `--json` is one JSON document with the run's parameters,
/// result, latency series, gateway CPU/memory and baseline; `--report` is a
/// well-formed self-contained HTML file with the plots.
#[test]
fn the_binary_prints_json_and_writes_an_html_report() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args(["--gateway"])
        .arg(gateway_binary())
        .args([
            "pipeline",
            "--rate",
            "60",
            "--duration",
            "2s",
            "--json",
            "--report",
        ])
        .arg(&html)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["scenario"], "pipeline", "{report}");
    assert_eq!(report["params"]["rate"][0], 60.0, "{report}");
    assert!(report["started_at"].is_string() && report["command"].is_string());
    let result = &report["result"];
    assert_eq!(result["lost"], 0, "{report}");
    assert_eq!(result["delivered"], result["produced"], "{report}");
    assert_eq!(result["gateway_delivered"], result["delivered"], "{report}");
    assert!(result["produced"].as_u64().unwrap() >= 40, "{report}");
    assert!(!report["latency_over_time"].as_array().unwrap().is_empty());
    assert!(
        !report["latency_distribution"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        report["gateway"]["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["gateway"]["rss_mib_peak"].as_f64().unwrap() > 1.0,
        "{report}"
    );
    assert!(
        report["baseline"]["requests_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    switchboard_bench::report::well_formed(&page).unwrap();
    assert!(
        page.matches("<svg").count() >= 3,
        "latency over time, distribution, CPU/memory"
    );
    assert!(!page.contains("<script") && !page.contains("NaN"));
    assert!(page.contains("Baseline"));
}

/// One HTTP/1.1 exchange on a fresh loopback connection: (status, body).
fn http(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

fn post_json(addr: &str, path: &str, body: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn the_binary_serves_the_linkedin_standin() {
    use std::io::BufRead;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args([
            "standin",
            "linkedin",
            "--listen",
            &addr,
            "--heartbeat",
            "1s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, format!("stand-in LinkedIn on http://{addr}/"));
    let (status, _) = post_json(
        &addr,
        "/_standin/accounts",
        r#"{"username":"ada@example.com","password":"pw","first":"Ada","last":"Lovelace","public_id":"ada-lovelace"}"#,
    );
    assert!((200..300).contains(&status), "{status}");
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
    let (status, body) = post_json(
        &addr,
        "/_standin/cookies",
        &format!(r#"{{"username":"ada@example.com","user_agent":"{ua}"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let cookies: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (li_at, jsession) = (
        cookies["li_at"].as_str().unwrap(),
        cookies["jsessionid"].as_str().unwrap().trim_matches('"'),
    );
    let me = |csrf: &str| {
        http(
            &addr,
            &format!(
                "GET /voyager/api/me HTTP/1.1\r\nhost: {addr}\r\nuser-agent: {ua}\r\ncookie: li_at={li_at}; JSESSIONID=\"{jsession}\"\r\ncsrf-token: {csrf}\r\nx-restli-protocol-version: 2.0.0\r\nconnection: close\r\n\r\n"
            ),
        )
    };
    assert_eq!(me("ajax:0").0, 403, "the csrf check holds");
    let (status, body) = me(jsession);
    assert_eq!(status, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        me["miniProfile"]["publicIdentifier"], "ada-lovelace",
        "{me}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
