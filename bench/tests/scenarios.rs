//! Each scenario, briefly, against the real gateway binary: the report is well
//! formed and its counts agree with what the gateway itself recorded.

use std::path::PathBuf;
use std::time::Duration;
use switchboard_bench::scenarios::{self, OutboundParams, PipelineParams};
use switchboard_bench::target::Gateway;

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
    let params = PipelineParams {
        tenants: 2,
        sessions: 1,
        rate: 100.0,
        duration: Duration::from_secs(2),
        payload_bytes: 32,
        drain_timeout: Duration::from_secs(30),
    };
    let r = scenarios::pipeline(&gw, &params).await.unwrap();
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
    // Roughly the asked rate (generous: the machine is shared), all of it delivered.
    assert!(r.produced >= 100, "{json}");
    assert_eq!(r.lost, 0, "{json}");
    assert_eq!(r.delivered, r.produced, "{json}");
    assert_eq!((r.duplicates, r.invalid_signatures), (0, 0), "{json}");
    assert!(r.latency_ms.p50 <= r.latency_ms.p99 && r.latency_ms.p99 <= r.latency_ms.max);
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
    for t in &r.tenants {
        assert_eq!(t.sent, t.queued, "{json}");
        // The limiter's behaviour, loosely (the machine is shared): near its own rate,
        // whatever the other tenant does.
        assert!((0.5..1.5).contains(&t.accuracy), "{json}");
    }
    assert!(r.fairness > 0.8, "{json}");
}
