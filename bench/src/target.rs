//! The gateway under test: a child process on a fresh data directory (default) or a
//! running gateway the bench attaches to (`--url`, `--admin-token`), with a small JSON
//! client for its API.

use anyhow::{Context, bail};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Admin token given to spawned gateways.
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    child: Option<Child>,
    /// The process to watch when attached (`--pid`).
    attached_pid: Option<u32>,
    pub base: String,
    admin_token: String,
    client: Client<HttpConnector, Full<Bytes>>,
    _data: Option<tempfile::TempDir>,
}

/// The `switchboard` binary next to this one, unless given.
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("switchboard"))
        .unwrap_or_else(|| PathBuf::from("switchboard"))
}

impl Gateway {
    /// Spawns `binary serve` on loopback with a fresh data directory.
    pub fn spawn(
        binary: &std::path::Path,
        database_url: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn,chromiumoxide=error")
            .env("SWITCHBOARD_LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD_DATA_DIR", data.path().join("data"))
            .env("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.env("DATABASE_URL", url);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(base) = line.strip_prefix("switchboard listening on ") {
                    let _ = tx.send(base.to_owned());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                bail!("the gateway did not start within 60 s");
            }
        };
        Ok(Self {
            child: Some(child),
            attached_pid: None,
            base,
            admin_token: ADMIN_TOKEN.into(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            _data: Some(data),
        })
    }

    /// A running gateway at `url` (loopback only unless `allow_remote`); checks that
    /// it answers and that `admin_token` is accepted. `pid`, if given, is watched for
    /// CPU and memory.
    pub async fn attach(
        url: &str,
        admin_token: &str,
        pid: Option<u32>,
        allow_remote: bool,
    ) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base.parse().with_context(|| format!("--url {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--url must be http://HOST:PORT (got {url})");
        }
        let host = uri.host().context("--url has no host")?;
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback && !allow_remote {
            bail!(
                "--url {url} is not on loopback; the bench stays on this machine unless --allow-remote is given"
            );
        }
        let gw = Self {
            child: None,
            attached_pid: pid,
            base,
            admin_token: admin_token.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            _data: None,
        };
        let (status, _) = gw
            .call(Method::GET, "/healthz", "", None)
            .await
            .with_context(|| format!("no gateway answers at {url}"))?;
        if !status.is_success() {
            bail!("{url}/healthz answered {status}");
        }
        let (status, v) = gw
            .call(Method::GET, "/v1/tenants", admin_token, None)
            .await?;
        if !status.is_success() {
            bail!("the admin token was refused: {status} {v}");
        }
        Ok(gw)
    }

    /// Whether the bench started this gateway (and so knows its configuration).
    pub fn spawned(&self) -> bool {
        self.child.is_some()
    }

    /// The sum of a Prometheus counter over the series whose labels include all of
    /// `labels`, from `/metrics`.
    pub async fn counter(&self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
        let text = self.metrics().await?;
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        Ok(text
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|l| wanted.iter().all(|w| l.contains(w.as_str())))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// A JSON request; returns status and parsed body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {auth}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))?;
        let res = tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await??;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A raw-body request (an upload, a download): status and the body's bytes.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        content_type: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {auth}"))
            .header("content-type", content_type)
            .body(Full::new(body))?;
        let res =
            tokio::time::timeout(Duration::from_secs(120), self.client.request(req)).await??;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let req = Request::builder()
            .uri(format!("{}/metrics", self.base))
            .body(Full::new(Bytes::new()))?;
        let res = tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await??;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("/metrics: {status}");
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method, path, &self.admin_token, body).await?;
        if !status.is_success() {
            bail!("{path}: {status} {v}");
        }
        Ok(v)
    }

    /// Creates a tenant without API limits that would throttle the bench; returns its key.
    pub async fn unthrottled_tenant(&self, name: &str) -> anyhow::Result<(String, String)> {
        let created = self
            .admin(
                Method::POST,
                "/v1/tenants",
                Some(&serde_json::json!({ "name": name })),
            )
            .await?;
        let id = created["tenant"]["id"]
            .as_str()
            .context("tenant id")?
            .to_owned();
        let key = created["api_key"]["key"]
            .as_str()
            .context("api key")?
            .to_owned();
        // The queue may hold what a run queues (`api --mix write` queues faster than
        // the sim session sends at the default send rate).
        let limits = serde_json::json!({ "limits": {
            "api_requests_per_second": 1_000_000, "api_burst": 1_000_000, "max_queued_sends": 1_000_000 } });
        self.admin(Method::PATCH, &format!("/v1/tenants/{id}"), Some(&limits))
            .await?;
        Ok((id, key))
    }

    /// The gateway's data directory.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self._data.as_ref().map(|d| d.path().join("data"))
    }

    /// The gateway's process id (spawned, or given with `--pid`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id).or(self.attached_pid)
    }

    /// Resident memory of the gateway process in KiB (Linux), if known.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
