//! A webhook receiver on loopback for the tests: records every delivery (headers and
//! body, as received) and answers as the test tells it to (fail N times, a status,
//! `Retry-After`, a delay).

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_crypto::webhook::{self, WebhookSecret};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub at: Instant,
    /// What the receiver answered.
    pub answered: u16,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Verifies with the Standard Webhooks algorithm against `secret` (as `whsec_…`).
    pub fn verifies_with(&self, secret: &str) -> bool {
        let secret = WebhookSecret::parse(secret).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        webhook::verify(
            [&secret],
            &self.id,
            &self.timestamp,
            &self.signature,
            &self.body,
            now,
        )
        .is_ok()
    }
}

/// How the receiver answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Answer `fail_status` to this many requests first.
    pub fail_first: usize,
    pub fail_status: u16,
    pub retry_after: Option<u64>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            fail_first: 0,
            fail_status: 500,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    deliveries: Vec<Delivery>,
    behaviour: Behaviour,
    failed: usize,
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            behaviour,
            ..Default::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { url, state }
    }

    pub fn set(&self, behaviour: Behaviour) {
        let mut s = self.state.lock().unwrap();
        s.behaviour = behaviour;
        s.failed = 0;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Distinct webhook-ids answered 2xx.
    pub fn delivered_ids(&self) -> std::collections::BTreeSet<String> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .map(|d| d.id)
            .collect()
    }

    /// Polls until `cond` holds (or panics after `timeout`).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&[Delivery]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.deliveries()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {} deliveries",
                self.deliveries().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let (status, retry_after, delay) = {
        let mut s = state.lock().unwrap();
        let b = s.behaviour.clone();
        if s.failed < b.fail_first {
            s.failed += 1;
            (b.fail_status, b.retry_after, b.delay)
        } else {
            (200, None, b.delay)
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state.lock().unwrap().deliveries.push(Delivery {
        id,
        timestamp,
        signature,
        body,
        at: Instant::now(),
        answered: status,
    });
    let mut res = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    if let Some(ra) = retry_after {
        res.headers_mut().insert("retry-after", ra.into());
    }
    Ok(res)
}
