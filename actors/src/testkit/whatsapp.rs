//! Stand-in WhatsApp Web: a local server and page implementing the page contract
//! of [`crate::channels::whatsapp::contract`], for tests and the bench.
//!
//! The page (`GET /`) exposes the same modules WhatsApp Web does (`window.require`,
//! `window.Debug.VERSION`, the socket/conn/collection models), keeps its login in
//! IndexedDB and localStorage, and talks to this server by long polling. The driver
//! only ever touches the page.
//!
//! Control endpoints (JSON), what a test or a person with a phone would do:
//! - `POST /_standin/scan {"qr":"<value shown now>","phone":"15550001"}` links the
//!   page showing that QR value (a stale or unknown value is refused with 409);
//!   `{"code":"ABCD-EFGH","phone"}` links by pairing code instead.
//! - `POST /_standin/inbound {"phone","from","text"}` (optional `"chat"`, a group id)
//!   delivers a message to that phone's linked pages.
//! - `GET /_standin/sent?phone=…` lists what was sent from that phone's pages.
//! - `POST /_standin/logout {"phone"}` unlinks every device of the phone.
//! - `POST /_standin/offline {"phone","seconds"}` drops the phone's connections and
//!   refuses new ones for that long.

use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const PAGE: &str = include_str!("whatsapp.html");
/// Longest a poll is held open.
const POLL_HOLD: Duration = Duration::from_secs(20);

/// Stand-in settings.
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// How often an unscanned page gets a new QR ref.
    pub qr_interval: Duration,
    /// Delay before a sent message is acknowledged as delivered.
    pub ack_delay: Duration,
    /// Serve an older WhatsApp Web: no modules, only the DOM markers
    /// (`div[data-ref]`, `[data-icon='search']`).
    pub legacy_dom: bool,
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            qr_interval: Duration::from_secs(20),
            ack_delay: Duration::from_millis(200),
            legacy_dom: false,
        }
    }
}

/// A message a linked page sent.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    pub to: String,
    pub text: String,
    pub at_ms: i64,
}

#[derive(Debug, Default)]
struct Client {
    /// The QR ref shown now (unlinked pages).
    qr_ref: Option<String>,
    ref_issued: Option<Instant>,
    refs_issued: u32,
    pairing_code: Option<String>,
    device: Option<String>,
    /// Whether the page was told its session (chats, contacts) since it connected.
    announced: bool,
    queue: Vec<Value>,
    last_poll: Option<Instant>,
}

#[derive(Debug, Default)]
struct Phone {
    sent: Vec<Sent>,
    offline_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct World {
    clients: HashMap<String, Client>,
    /// Device token → phone.
    devices: HashMap<String, String>,
    /// Per device: messages, acks, logouts waiting for a poll.
    device_queues: HashMap<String, Vec<Value>>,
    phones: HashMap<String, Phone>,
    counter: u64,
}

impl World {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn token(&mut self, prefix: &str) -> String {
        let n = self.next();
        let r: u64 = rand_u64();
        format!("{prefix}{n:x}{r:016x}")
    }

    fn offline(&self, phone: &str) -> bool {
        self.phones
            .get(phone)
            .and_then(|p| p.offline_until)
            .is_some_and(|t| Instant::now() < t)
    }

    fn push_device(&mut self, device: &str, ev: Value) {
        self.device_queues
            .entry(device.to_owned())
            .or_default()
            .push(ev);
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("system randomness");
    u64::from_le_bytes(b)
}

fn session_info(phone: &str) -> Value {
    json!({
        "phone": phone,
        "chats": [
            { "id": "120363000000000001@g.us", "name": "Support team", "isGroup": true },
            { "id": "15550100@c.us", "name": "Alice", "isGroup": false },
        ],
        "contacts": [
            { "id": "15550100@c.us", "name": "Alice" },
            { "id": "15550101@c.us", "name": "Bob" },
        ],
    })
}

/// A running stand-in.
#[derive(Debug, Clone)]
pub struct WhatsAppStandin {
    addr: SocketAddr,
    world: Arc<Mutex<World>>,
    changed: Arc<Notify>,
    config: StandinConfig,
}

impl WhatsAppStandin {
    /// Starts on `addr` (port 0 for any).
    pub async fn start(addr: SocketAddr, config: StandinConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let me = Self {
            addr: listener.local_addr()?,
            world: Arc::default(),
            changed: Arc::new(Notify::new()),
            config,
        };
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

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address to give the gateway (`SWITCHBOARD_WHATSAPP_URL`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was sent from `phone`'s pages.
    pub fn sent(&self, phone: &str) -> Vec<Sent> {
        self.world()
            .phones
            .get(phone)
            .map(|p| p.sent.clone())
            .unwrap_or_default()
    }

    /// Links the page showing `qr` to `phone`; `Err` for a stale or unknown value.
    pub fn scan(&self, qr: &str, phone: &str) -> Result<String, String> {
        let qr_ref = qr.split(',').next().unwrap_or_default();
        let mut w = self.world();
        let client = w
            .clients
            .iter()
            .find(|(_, c)| c.device.is_none() && c.qr_ref.as_deref() == Some(qr_ref))
            .map(|(id, _)| id.clone())
            .ok_or("this QR code is not shown anywhere now (stale or unknown)")?;
        Ok(self.link(&mut w, &client, phone))
    }

    /// Links the page that asked for pairing `code`.
    pub fn scan_code(&self, code: &str, phone: &str) -> Result<String, String> {
        let mut w = self.world();
        let client = w
            .clients
            .iter()
            .find(|(_, c)| c.device.is_none() && c.pairing_code.as_deref() == Some(code))
            .map(|(id, _)| id.clone())
            .ok_or("no page is waiting for this pairing code")?;
        Ok(self.link(&mut w, &client, phone))
    }

    fn link(&self, w: &mut World, client: &str, phone: &str) -> String {
        let device = w.token("dev_");
        w.devices.insert(device.clone(), phone.to_owned());
        w.phones.entry(phone.to_owned()).or_default();
        if let Some(c) = w.clients.get_mut(client) {
            c.device = Some(device.clone());
            c.qr_ref = None;
            c.pairing_code = None;
            c.announced = true;
            let mut info = session_info(phone);
            info["type"] = "linked".into();
            info["device"] = device.clone().into();
            c.queue.push(info);
        }
        self.changed.notify_waiters();
        device
    }

    /// Delivers a message to `phone`'s linked devices; `None` if it has none.
    pub fn inbound(
        &self,
        phone: &str,
        from: &str,
        text: &str,
        chat: Option<&str>,
    ) -> Option<String> {
        let mut w = self.world();
        let devices: Vec<String> = w
            .devices
            .iter()
            .filter(|(_, p)| p.as_str() == phone)
            .map(|(d, _)| d.clone())
            .collect();
        if devices.is_empty() {
            return None;
        }
        let id = format!("3EB0{:016X}", rand_u64());
        let from_jid = format!("{}@c.us", from.trim_start_matches('+'));
        let chat = chat.map_or(from_jid.clone(), str::to_owned);
        let ev = json!({
            "type": "message", "id": id, "from": from_jid, "chat": chat, "text": text,
            "t": crate::clock::now_ms() / 1000,
        });
        for d in devices {
            w.push_device(&d, ev.clone());
        }
        drop(w);
        self.changed.notify_waiters();
        Some(id)
    }

    /// Unlinks every device of `phone` (as "log out all devices" on the phone).
    pub fn logout_phone(&self, phone: &str) -> usize {
        let mut w = self.world();
        let devices: Vec<String> = w
            .devices
            .iter()
            .filter(|(_, p)| p.as_str() == phone)
            .map(|(d, _)| d.clone())
            .collect();
        for d in &devices {
            w.devices.remove(d);
            w.push_device(d, json!({ "type": "logout" }));
        }
        drop(w);
        self.changed.notify_waiters();
        devices.len()
    }

    /// Drops `phone`'s connections and refuses new ones for `seconds`.
    pub fn offline(&self, phone: &str, seconds: u64) {
        let mut w = self.world();
        w.phones.entry(phone.to_owned()).or_default().offline_until =
            Some(Instant::now() + Duration::from_secs(seconds));
        drop(w);
        self.changed.notify_waiters();
    }

    /// How many pages polled within the last `within`.
    pub fn live_pages(&self, within: Duration) -> usize {
        self.world()
            .clients
            .values()
            .filter(|c| c.last_poll.is_some_and(|t| t.elapsed() < within))
            .count()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let method = req.method().clone();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(StatusCode::BAD_REQUEST, json!({"error": "unreadable body"})),
        };
        match (method, path.as_str()) {
            (Method::GET, "/") => {
                let page = if self.config.legacy_dom {
                    PAGE.replacen("const LEGACY_DOM = false;", "const LEGACY_DOM = true;", 1)
                } else {
                    PAGE.to_owned()
                };
                Response::builder()
                    .header("content-type", "text/html; charset=utf-8")
                    .header("cache-control", "no-store")
                    .body(Full::new(Bytes::from(page)))
                    .unwrap_or_default()
            }
            (Method::GET, "/_standin/poll") => self.poll(&query).await,
            (Method::POST, p) => {
                let v: Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
                    }
                };
                self.post(p, v)
            }
            (Method::GET, "/_standin/sent") => {
                let phone = query.get("phone").cloned().unwrap_or_default();
                reply(StatusCode::OK, json!(self.sent(&phone)))
            }
            (Method::GET, "/_standin/state") => {
                let w = self.world();
                reply(
                    StatusCode::OK,
                    json!({
                        "pages": w.clients.len(),
                        "devices": w.devices.len(),
                        "phones": w.phones.keys().collect::<Vec<_>>(),
                    }),
                )
            }
            _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        }
    }

    fn post(&self, path: &str, v: Value) -> Response<Full<Bytes>> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match path {
            "/_standin/scan" => {
                let phone = s("phone");
                if phone.is_empty() {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "phone is required"}),
                    );
                }
                let linked = if v.get("code").is_some() {
                    self.scan_code(&s("code"), &phone)
                } else {
                    self.scan(&s("qr"), &phone)
                };
                match linked {
                    Ok(device) => reply(StatusCode::OK, json!({"device": device, "phone": phone})),
                    Err(e) => reply(StatusCode::CONFLICT, json!({"error": e})),
                }
            }
            "/_standin/inbound" => {
                let chat = v.get("chat").and_then(Value::as_str);
                match self.inbound(&s("phone"), &s("from"), &s("text"), chat) {
                    Some(id) => reply(StatusCode::OK, json!({"id": id})),
                    None => reply(
                        StatusCode::NOT_FOUND,
                        json!({"error": "no linked device for this phone"}),
                    ),
                }
            }
            "/_standin/logout" => {
                let n = self.logout_phone(&s("phone"));
                reply(StatusCode::OK, json!({"devices": n}))
            }
            "/_standin/offline" => {
                let secs = v.get("seconds").and_then(Value::as_u64).unwrap_or(30);
                self.offline(&s("phone"), secs);
                reply(StatusCode::OK, json!({"offline_seconds": secs}))
            }
            // What the page calls.
            "/_standin/api/send" => self.page_send(&s("device"), &s("to"), &s("text"), &s("id")),
            "/_standin/api/logout" => {
                let mut w = self.world();
                let device = s("device");
                w.devices.remove(&device);
                w.device_queues.remove(&device);
                reply(StatusCode::OK, json!({}))
            }
            "/_standin/api/pairing-code" => {
                let mut w = self.world();
                let code = {
                    let r = rand_u64();
                    let alphabet = b"ABCDEFGHJKLMNPQRSTVWXYZ23456789";
                    let c: String = (0..8)
                        .map(|i| {
                            alphabet[((r >> (i * 5)) % alphabet.len() as u64) as usize] as char
                        })
                        .collect();
                    format!("{}-{}", &c[..4], &c[4..])
                };
                match w.clients.get_mut(&s("client")) {
                    Some(c) if c.device.is_none() => {
                        c.pairing_code = Some(code.clone());
                        reply(StatusCode::OK, json!({"code": code}))
                    }
                    _ => reply(
                        StatusCode::CONFLICT,
                        json!({"error": "this page is not waiting to be linked"}),
                    ),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        }
    }

    fn page_send(&self, device: &str, to: &str, text: &str, id: &str) -> Response<Full<Bytes>> {
        let mut w = self.world();
        let Some(phone) = w.devices.get(device).cloned() else {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "device not linked"}),
            );
        };
        if w.offline(&phone) {
            return reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "offline"}));
        }
        w.phones.entry(phone).or_default().sent.push(Sent {
            id: id.to_owned(),
            to: to.to_owned(),
            text: text.to_owned(),
            at_ms: crate::clock::now_ms(),
        });
        drop(w);
        let (me, device, id) = (self.clone(), device.to_owned(), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(me.config.ack_delay).await;
            me.world()
                .push_device(&device, json!({ "type": "ack", "id": id, "ack": 2 }));
            me.changed.notify_waiters();
        });
        reply(StatusCode::OK, json!({"ok": true}))
    }

    /// One long poll of a page: its events, or an empty list after a while.
    async fn poll(&self, q: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let Some(client_id) = q.get("client").filter(|c| !c.is_empty()).cloned() else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "client is required"}),
            );
        };
        let device = q.get("device").filter(|d| !d.is_empty()).cloned();
        let deadline = Instant::now() + POLL_HOLD;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut w = self.world();
                let phone = device.as_ref().and_then(|d| w.devices.get(d).cloned());
                if let Some(p) = &phone
                    && w.offline(p)
                {
                    return reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": "phone offline"}),
                    );
                }
                let unknown_device = device.is_some() && phone.is_none();
                let interval = self.config.qr_interval;
                let mut out = Vec::new();
                if unknown_device {
                    // The login was revoked: the page forgets it.
                    if let Some(d) = &device {
                        out.extend(w.device_queues.remove(d).unwrap_or_default());
                    }
                    if !out.iter().any(|e| e["type"] == "logout") {
                        out.push(json!({ "type": "logout" }));
                    }
                    w.clients.remove(&client_id);
                    return reply(StatusCode::OK, Value::Array(out));
                }
                let fresh_ref = w.token("2@");
                let client = w.clients.entry(client_id.clone()).or_default();
                client.last_poll = Some(Instant::now());
                if let (Some(d), None) = (&device, &client.device) {
                    client.device = Some(d.clone());
                }
                let mut next_rotation = None;
                if client.device.is_none() {
                    let due = client.ref_issued.is_none_or(|t| t.elapsed() >= interval);
                    if due {
                        client.qr_ref = Some(fresh_ref);
                        client.ref_issued = Some(Instant::now());
                        client.refs_issued += 1;
                        let r = client.qr_ref.clone();
                        client.queue.push(json!({ "type": "ref", "ref": r }));
                    }
                    next_rotation = client
                        .ref_issued
                        .map(|t| interval.saturating_sub(t.elapsed()));
                } else if !client.announced
                    && let Some(p) = &phone
                {
                    client.announced = true;
                    let mut info = session_info(p);
                    info["type"] = "session".into();
                    client.queue.push(info);
                }
                out.append(&mut client.queue);
                let linked_device = client.device.clone();
                if let Some(d) = linked_device {
                    out.extend(w.device_queues.remove(&d).unwrap_or_default());
                }
                if !out.is_empty() {
                    return reply(StatusCode::OK, Value::Array(out));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                next_rotation.map_or(left, |r| r.min(left))
            };
            if wait.is_zero() && Instant::now() >= deadline {
                return reply(StatusCode::OK, json!([]));
            }
            let _ = tokio::time::timeout(wait.max(Duration::from_millis(5)), notified).await;
            if Instant::now() >= deadline {
                return reply(StatusCode::OK, json!([]));
            }
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}
