//! Test support: runs the real `switchboard` binary on a loopback port with a fresh
//! data directory and database, talks to it over real sockets, and inspects its
//! database directly.
//!
//! Storage: SQLite in the data directory by default; when `TEST_DATABASE_URL` names
//! a Postgres server (`postgres://user@127.0.0.1:PORT/postgres`), every gateway gets
//! a fresh database created on that server, so tests stay independent.

#![allow(dead_code)]

use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The database a test gateway uses.
#[derive(Debug, Clone)]
pub enum TestDb {
    Sqlite(PathBuf),
    Postgres(String),
}

impl TestDb {
    /// A fresh database for one test (see the module docs).
    pub async fn fresh(data_dir: &Path) -> Self {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        {
            None => TestDb::Sqlite(data_dir.join("switchboard.db")),
            Some(admin_url) => {
                let name = format!("sbtest_{}", ulid::Ulid::new().to_string().to_lowercase());
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let (base, _) = admin_url
                    .rsplit_once('/')
                    .expect("TEST_DATABASE_URL needs a /database path");
                TestDb::Postgres(format!("{base}/{name}"))
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_))
    }

    /// Rows in `table` (a fixed name from the test, maybe with a `WHERE`; never user
    /// input).
    pub async fn count(&self, table: &'static str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        match self {
            TestDb::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            TestDb::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
        }
    }

    /// Row counts of the tables bad requests must not touch.
    pub async fn snapshot(&self) -> [i64; 3] {
        [
            self.count("tenants").await,
            self.count("api_keys").await,
            // The entries of changes: a refused call is recorded (its entry's action
            // is the method and route), but it changes nothing.
            self.count("audit_log WHERE action NOT LIKE '% %'").await,
        ]
    }
}

/// Options for starting a gateway.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Leave `SWITCHBOARD_ADMIN_TOKEN` unset so the gateway generates one.
    pub generated_admin_token: bool,
}

/// Captured output of a gateway process.
#[derive(Debug, Default, Clone)]
pub struct Output {
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Output {
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
    fn capture(&self, child: &mut Child) {
        fn pump(r: impl Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) {
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        pump(child.stdout.take().unwrap(), self.stdout.clone());
        pump(child.stderr.take().unwrap(), self.stderr.clone());
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard")
}

/// all-MiniLM-L6-v2's files (`scripts/models.sh` puts them there).
pub fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2"))
}

/// A command for the binary with a clean environment plus `env`.
pub fn command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_clear();
    for var in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    cmd.env("RUST_LOG", "info,chromiumoxide=error");
    cmd.env("SWITCHBOARD_MODEL_DIR", model_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running gateway process.
#[derive(Debug)]
pub struct Gateway {
    child: Option<Child>,
    pub base: String,
    pub admin_token: String,
    pub data_dir: PathBuf,
    pub db: TestDb,
    pub output: Output,
    opts: Options,
    client: Client<HttpConnector, Full<Bytes>>,
    _tmp: Option<Arc<tempfile::TempDir>>,
}

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
    /// The body as it came (files).
    pub bytes: Bytes,
}

impl Resp {
    /// The stable error code of an error response.
    pub fn code(&self) -> &str {
        self.json["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl Gateway {
    /// Polls the session until its status is `want`; panics with the gateway's log
    /// after `within`.
    pub async fn wait_status(&self, key: &str, id: &str, want: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self
                .tenant(key, Method::GET, &format!("/v1/sessions/{id}"), None)
                .await;
            if r.json["status"] == want {
                return r.json;
            }
            assert!(
                Instant::now() < deadline,
                "session never reached {want}: {}\n--- gateway log ---\n{}",
                r.text,
                self.output.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("a running gateway")
    }

    /// Waits until message `id` is `want` or further along (queued, sending, sent,
    /// delivered, read); a failed message fails the test.
    pub async fn wait_message_status(&self, key: &str, id: &str, want: &str) -> Value {
        const ORDER: [&str; 5] = ["queued", "sending", "sent", "delivered", "read"];
        let rank = |s: &str| ORDER.iter().position(|o| *o == s);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .tenant(key, Method::GET, &format!("/v1/messages/{id}"), None)
                .await;
            let status = r.json["status"].as_str().unwrap_or_default().to_owned();
            assert_ne!(status, "failed", "{id} failed: {}", r.text);
            if rank(&status) >= rank(want) && rank(&status).is_some() {
                return r.json;
            }
            assert!(
                Instant::now() < deadline,
                "{id} is {status}, not {want}: {}\n{}",
                r.text,
                self.output.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tenant's stored events of type `ty` (the latest 200).
    /// `/metrics` with this process's `replica` label (on every series) taken out,
    /// so series read as they are named in code.
    pub async fn metrics(&self) -> String {
        let m = self.request(Method::GET, "/metrics", &[], None).await;
        assert_eq!(m.status, StatusCode::OK);
        without_replica_label(&m.text)
    }

    pub async fn events_of(&self, key: &str, ty: &str) -> Vec<Value> {
        let r = self
            .tenant(
                key,
                Method::GET,
                &format!("/v1/events?type={ty}&limit=200"),
                None,
            )
            .await;
        r.json["data"].as_array().unwrap().clone()
    }

    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let tmp = Arc::new(tempfile::tempdir().unwrap());
        let data_dir = tmp.path().join("data");
        let db = TestDb::fresh(&data_dir).await;
        Self::launch(data_dir, db, opts, Some(tmp)).await
    }

    /// Starts a gateway on an existing data directory and database (owning `tmp`).
    pub async fn start_on(
        data_dir: PathBuf,
        db: TestDb,
        opts: Options,
        tmp: tempfile::TempDir,
    ) -> Self {
        Self::launch(data_dir, db, opts, Some(Arc::new(tmp))).await
    }

    /// Starts another process on the same data directory and database.
    pub async fn restart(mut self) -> Self {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "gateway exited with {status}");
        }
        let tmp = self._tmp.take();
        Self::launch(
            self.data_dir.clone(),
            self.db.clone(),
            self.opts.clone(),
            tmp,
        )
        .await
    }

    async fn launch(
        data_dir: PathBuf,
        db: TestDb,
        opts: Options,
        tmp: Option<Arc<tempfile::TempDir>>,
    ) -> Self {
        let mut env = vec![
            ("SWITCHBOARD_LISTEN".to_string(), "127.0.0.1:0".to_string()),
            (
                "SWITCHBOARD_DATA_DIR".to_string(),
                data_dir.display().to_string(),
            ),
        ];
        if let TestDb::Postgres(url) = &db {
            env.push(("DATABASE_URL".into(), url.clone()));
        }
        if !opts.generated_admin_token {
            env.push(("SWITCHBOARD_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()));
        }
        env.extend(opts.env.iter().cloned());
        let mut child = command(&env)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard");
        let output = Output::default();
        output.capture(&mut child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let line = output.stdout.lock().unwrap().iter().find_map(|l| {
                l.strip_prefix("switchboard listening on ")
                    .map(str::to_owned)
            });
            if let Some(base) = line {
                break base;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "gateway exited early ({status}):\n{}\n{}",
                    output.stdout(),
                    output.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not start:\n{}",
                output.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let admin_token = if opts.generated_admin_token {
            std::fs::read_to_string(data_dir.join("admin.token"))
                .unwrap()
                .trim()
                .to_owned()
        } else {
            ADMIN_TOKEN.to_owned()
        };
        Gateway {
            child: Some(child),
            base,
            admin_token,
            data_dir,
            db,
            output,
            opts,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _tmp: tmp,
        }
    }

    /// Runs `switchboard ARGS` against this gateway's data directory and database
    /// (with the gateway stopped or running); returns standard output.
    pub fn admin_command(&self, args: &[&str]) -> String {
        let mut env = vec![(
            "SWITCHBOARD_DATA_DIR".to_string(),
            self.data_dir.display().to_string(),
        )];
        if let TestDb::Postgres(url) = &self.db {
            env.push(("DATABASE_URL".into(), url.clone()));
        }
        let out = command(&env).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// SIGKILL: no chance to clean up (crash tests).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("gateway already stopped");
        child.kill().unwrap();
        child.wait().unwrap();
        // Keep the handle's shape for `restart`.
        self.child = None;
    }

    /// SIGTERM, then waits for the exit (killing it after 30 s).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("gateway already stopped");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the output threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gateway did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
            bytes,
        }
    }

    /// A JSON request with the admin token.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {}", self.admin_token);
        let body = body.map(|b| b.to_string().into_bytes());
        self.request(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// A JSON request with a tenant API key in `X-API-Key`.
    pub async fn tenant(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string().into_bytes());
        self.request(
            method,
            path,
            &[("x-api-key", key), ("content-type", "application/json")],
            body,
        )
        .await
    }

    /// Creates a tenant; returns (tenant id, its first API key).
    pub async fn create_tenant(&self, name: &str) -> (String, String) {
        let r = self
            .admin(
                Method::POST,
                "/v1/tenants",
                Some(serde_json::json!({ "name": name })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (
            r.json["tenant"]["id"].as_str().unwrap().to_owned(),
            r.json["api_key"]["key"].as_str().unwrap().to_owned(),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log ---\n{}\n--- end of gateway log ---",
                self.output.stderr()
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Prometheus text with the `replica="…"` label removed from every series.
pub fn without_replica_label(text: &str) -> String {
    text.lines()
        .map(|line| {
            let Some(start) = line.find("replica=\"") else {
                return line.to_owned();
            };
            let value_start = start + "replica=\"".len();
            let Some(len) = line[value_start..].find('"') else {
                return line.to_owned();
            };
            let mut end = value_start + len + 1;
            if line[end..].starts_with(',') {
                end += 1;
            }
            let out = format!("{}{}", &line[..start], &line[end..]);
            out.replace("{}", "")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
