//! Operational routes: `/healthz` (the process answers), `/readyz` (storage answers
//! within a second) and `/metrics` (Prometheus text).

use super::{ApiError, ApiResult, Ctx, json};
use http::{HeaderValue, StatusCode, header};
use std::time::Duration;

pub fn healthz() -> ApiResult {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(ctx: &Ctx<'_>) -> ApiResult {
    let store = &ctx.app.store;
    match tokio::time::timeout(Duration::from_secs(1), store.ping()).await {
        Ok(Ok(())) => json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ready", "storage": store.backend().as_str() }),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: storage unreachable");
            Err(not_ready())
        }
        Err(_) => {
            tracing::warn!("readiness check: storage timed out");
            Err(not_ready())
        }
    }
}

fn not_ready() -> ApiError {
    ApiError {
        retry_after: Some(1),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "storage is not reachable",
        )
    }
}

pub fn metrics(ctx: &Ctx<'_>) -> ApiResult {
    let handle = ctx.app.metrics.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_disabled",
            "no metrics recorder installed",
        )
    })?;
    let mut res = super::full(StatusCode::OK, handle.render());
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

/// `GET /v1/cluster`: the live replicas, each with the sessions it holds.
pub async fn cluster(ctx: &Ctx<'_>) -> ApiResult {
    let store = &ctx.app.store;
    let now = switchboard_actors::clock::now_ms();
    let ttl = i64::try_from(ctx.app.cluster.settings().lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let replicas = store.live_replicas(now - ttl).await?;
    let leases = store.live_leases(now).await?;
    let view: Vec<serde_json::Value> = replicas
        .iter()
        .map(|r| {
            let sessions: Vec<&str> = leases
                .iter()
                .filter(|(owner, _)| *owner == r.id)
                .map(|(_, s)| s.as_str())
                .collect();
            serde_json::json!({
                "id": r.id,
                "started_at": switchboard_actors::clock::rfc3339(r.started_at),
                "heartbeat_at": switchboard_actors::clock::rfc3339(r.heartbeat_at),
                "sessions": sessions,
            })
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "replicas": view }))
}
