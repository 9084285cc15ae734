//! A loopback OAuth2 authorization server for the XOAUTH2 tests: a token endpoint
//! (RFC 6749 §6, `grant_type=refresh_token`) and a token introspection endpoint
//! (RFC 7662) that Dovecot's `oauth2` passdb asks about every XOAUTH2 login. The
//! tokens it considers valid are also written to a file the test SMTP server reads,
//! so both servers accept the same tokens. [`OAuthServer::expire_all`] makes every
//! issued token expired, as an hour passing would.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Debug, Default)]
struct State {
    /// Valid access tokens and whose they are.
    valid: HashMap<String, String>,
    issued: u32,
    refreshes: u32,
    introspections: u32,
}

#[derive(Debug, Clone)]
pub struct OAuthServer {
    addr: SocketAddr,
    user: String,
    refresh_token: String,
    tokens_file: PathBuf,
    state: Arc<Mutex<State>>,
}

impl OAuthServer {
    /// Starts on loopback; `refresh_token` is the one grant it honours (for `user`).
    pub async fn start(
        user: &str,
        refresh_token: &str,
        tokens_file: PathBuf,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let me = Self {
            addr: listener.local_addr()?,
            user: user.to_owned(),
            refresh_token: refresh_token.to_owned(),
            tokens_file,
            state: Arc::default(),
        };
        me.write_tokens();
        let server = me.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = server.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(s.handle(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(me)
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn introspection_url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// How many access tokens the refresh token was exchanged for.
    pub fn refreshes(&self) -> u32 {
        self.state().refreshes
    }

    /// How many times a server asked whether a token is valid.
    pub fn introspections(&self) -> u32 {
        self.state().introspections
    }

    /// Every token issued so far expires.
    pub fn expire_all(&self) {
        self.state().valid.clear();
        self.write_tokens();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_tokens(&self) {
        let text: String = self
            .state()
            .valid
            .iter()
            .map(|(t, u)| format!("{t} {u}\n"))
            .collect();
        let tmp = self.tokens_file.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(tmp, &self.tokens_file);
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let form: HashMap<String, String> = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let (status, json) = match path.as_str() {
            "/token" => self.token(&form),
            "/introspect" => {
                let mut st = self.state();
                st.introspections += 1;
                let token = form.get("token").cloned().unwrap_or_default();
                match st.valid.get(&token) {
                    Some(user) => (200, serde_json::json!({ "active": true, "username": user })),
                    None => (200, serde_json::json!({ "active": false })),
                }
            }
            _ => (404, serde_json::json!({ "error": "not_found" })),
        };
        let mut res = Response::new(Full::new(Bytes::from(json.to_string())));
        *res.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        res
    }

    fn token(&self, form: &HashMap<String, String>) -> (u16, serde_json::Value) {
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return (
                400,
                serde_json::json!({ "error": "unsupported_grant_type" }),
            );
        }
        if form.get("refresh_token") != Some(&self.refresh_token) {
            return (400, serde_json::json!({ "error": "invalid_grant" }));
        }
        let token = {
            let mut st = self.state();
            st.refreshes += 1;
            st.issued += 1;
            let token = format!("ya29.test-{}-{}", st.issued, crate::clock::now_ms());
            st.valid.insert(token.clone(), self.user.clone());
            token
        };
        self.write_tokens();
        (
            200,
            serde_json::json!({ "access_token": token, "expires_in": 3600, "token_type": "Bearer" }),
        )
    }
}
