//! The loopback ceiling: a minimal hyper server answering `ok`, driven by the same
//! keep-alive client the scenarios use, so their results read as a fraction of what
//! this machine can do over HTTP at all.

use crate::scenarios::Latency;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineReport {
    pub scenario: &'static str,
    pub concurrency: usize,
    pub duration_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub latency_ms: Latency,
}

/// Serves `ok` on loopback until the task is dropped; returns its URL.
async fn serve() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((url, task))
}

pub async fn baseline(concurrency: usize, duration: Duration) -> anyhow::Result<BaselineReport> {
    let (url, server) = serve().await?;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let mut ms = Vec::new();
            while started.elapsed() < duration {
                let t = Instant::now();
                let req = http::Request::get(&url).body(Full::new(Bytes::new()))?;
                let res =
                    tokio::time::timeout(Duration::from_secs(10), client.request(req)).await??;
                anyhow::ensure!(
                    res.status().is_success(),
                    "baseline server: {}",
                    res.status()
                );
                res.into_body().collect().await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(ms)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.abort();
    Ok(BaselineReport {
        scenario: "baseline",
        concurrency,
        duration_secs: elapsed,
        requests: all.len() as u64,
        requests_per_sec: all.len() as f64 / elapsed,
        latency_ms: Latency::of(all),
    })
}
