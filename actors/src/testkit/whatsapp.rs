//! Stand-in WhatsApp Web: a local server and page that behave like today's
//! WhatsApp Web as the maintained engines (whatsapp-web.js 1.34, wa-js) meet it, for
//! tests and the bench. It is built from how the real page behaves, not from our
//! driver's contract, so a driver that passes here has met the real page's traps:
//!
//! - **Modules** through `window.require`, registered progressively while the page
//!   boots; an unknown one throws `Requiring unknown module "…"`; `window.Debug.VERSION`
//!   is set first. [`StandinConfig::missing_modules`] leaves some out, as a WhatsApp
//!   Web release that renamed them would.
//! - **Ids** are objects with `_serialized`, `isLid()`, `isGroup()`. People are
//!   addressed by LID (`<15 digits>@lid`, [`lid_of`]): senders arrive as LIDs, chats
//!   are kept by LID, and a phone number must be resolved with
//!   `WAWebQueryExistsJob.queryWidExists` before `findOrCreateLatestChat` takes it
//!   (else "No LID for user"). The page's LID↔phone cache answers through
//!   `WAWebApiContact.getPhoneNumber` / `getCurrentLid`; groups are LID-addressed and
//!   refuse a message whose sender is not our LID. Own ids come from
//!   `WAWebUserPrefsMeUser.getMaybeMePnUser` / `getMaybeMeLidUser` only.
//! - **Contacts** keep their fields behind getter modules
//!   (`WAWebContactGetters.getName`, `WAWebFrontendContactGetters.getIsMyContact`).
//! - **Login storage**: a non-extractable HKDF `CryptoKey` made at pairing, kept in
//!   IndexedDB (`wawc_db_enc`, store `keys`), and localStorage values (`WANoiseInfo`)
//!   encrypted with an AES key derived from it. The logged-in view comes back after a
//!   reload only if that key is intact; a JSON copy of storage cannot restore it.
//! - **Robots** (a `HeadlessChrome` user agent or client hints, `navigator.webdriver`)
//!   get the "update your browser" page and no app.
//! - **Messages** may arrive as `ciphertext` and decrypt a moment later (`change:type`);
//!   system (`gp2`, `e2e_notification`, `protocol`, `notification_template`, `revoked`)
//!   and status (`status@broadcast`) messages arrive like any other; a media message's
//!   text is its caption; messages sent from the phone arrive with `id.fromMe`. A page
//!   that loads after messages arrived gets them by history sync (`isNewMsg` false),
//!   not as new messages.
//! - **Trouble**: phone-side logout as `logout` or `logout_from_bridge`; socket states
//!   `TIMEOUT` (comes back by itself), `CONFLICT`, `DEPRECATED_VERSION`, `TOS_BLOCK`
//!   on request; a passkey step for phones flagged so; a "what's new" modal on a
//!   page's first logged-in view; the message listener silently detached.
//!
//! Control endpoints (JSON), what a test or a person with a phone would do:
//! - `POST /_standin/scan {"qr":"<value shown now>","phone":"15550001"}` links the
//!   page showing that QR value (a stale or unknown value is refused with 409);
//!   `{"code":"ABCD-EFGH","phone"}` links by pairing code instead.
//! - `POST /_standin/inbound {"phone","from","text"}` delivers a message to that
//!   phone's linked pages. Optional: `"chat"` (a group id; `from` is then the author),
//!   `"type"` (`chat`, `image`, `gp2`, `e2e_notification`, …), `"caption"`,
//!   `"mimetype"`, `"ciphertext": true` (decrypts 400 ms later), `"status": true`
//!   (a status update), `"hide_phone": true` (the page learns only the LID).
//! - `POST /_standin/phone-send {"phone","to","text"}`: the phone's owner writes from
//!   the phone itself.
//! - `POST /_standin/read {"phone","id"}`: the recipient reads a sent message (ack 3).
//! - `GET /_standin/sent?phone=…` lists what was sent from that phone's pages.
//! - `POST /_standin/logout {"phone","via"?:"bridge"}` unlinks every device of the phone.
//! - `POST /_standin/offline {"phone","seconds"}` drops the phone's connections and
//!   refuses new ones for that long.
//! - `POST /_standin/state {"phone","state","seconds"?}` puts the phone's pages in a
//!   socket state (`TIMEOUT` for `seconds`, then back; `CONFLICT` until taken over;
//!   `DEPRECATED_VERSION`, `TOS_BLOCK`).
//! - `POST /_standin/detach {"phone"}` silently detaches the pages' message listeners.
//! - `POST /_standin/passkey {"phone","required"}` flags a phone whose linking needs a passkey.
//! - `POST /_standin/unregistered {"phone"}`: that number is not on WhatsApp.
//! - `GET /_standin/state` counts pages, devices, refused robots and dismissed modals,
//!   and per phone the most pages of one device ever open at once
//!   (`max_open_pages`): a page opened for a device that already has one makes the
//!   older hear `CONFLICT`, as WhatsApp Web does ("open in another window").
//!
//! Media, replies, reactions, edits and read state, as the page has them:
//! - **Media** is end-to-end encrypted ([`media`]): a sender uploads
//!   `AES-CBC(file) ‖ MAC` to the media server (`POST /mms/{type}/…`, answered with a
//!   `direct_path`) and the message carries `mediaKey`, `directPath`, `filehash`,
//!   `encFilehash`, `size`, `mimetype`, `filename`; the receiving page downloads and
//!   decrypts it itself (`WAWebDownloadManager.downloadManager.downloadAndMaybeDecrypt`,
//!   after `msg.downloadMedia()` resolved `mediaData.mediaStage`). The server forgets
//!   files after a while (`"expired": true` here): 404, stage `ERROR_MISSING`. An
//!   image's or video's `body` is its base64 thumbnail, not text; view-once media
//!   has `isViewOnce`; a location is `type: location` with `lat`/`lng`/`loc`; a
//!   contact card is `type: vcard` with the vCard as `body`. Sending goes through
//!   `WAWebMediaOpaqueData`, `WAWebPrepRawMedia` (`asDocument`, `asSticker`, `isPtt`),
//!   `WAWebMediaStorage`, `WAWebMmsMediaTypes` and `WAWebMediaMmsV4Upload`.
//! - **Replies** carry `quotedMsg`, `quotedStanzaID`, `quotedParticipant`; a send quotes
//!   with `msg.msgContextInfo(chat)`. **Reactions** reach the page's reaction table
//!   (`WAWebAddonReactionTableMode.reactionTableMode.bulkUpsert`) and are sent with
//!   `WAWebSendReactionMsgAction.sendReactionToMsg`. An **edit** changes the message's
//!   `body` (or `caption`) in place with `latestEditMsgKey`; a **delete for everyone**
//!   turns its `type` into `revoked`. **Read state**: `WAWebUpdateUnreadChatAction.sendSeen`
//!   marks a chat read; **typing** is `WAWebChatStateBridge.sendChatStateComposing` /
//!   `sendChatStateRecording` / `sendChatStatePaused`.
//! - Control: `POST /_standin/inbound` also takes `"media_base64"`, `"filename"`,
//!   `"view_once"`, `"expired"`, `"quoted"` (an id in the chat), `"lat"`, `"lng"`, `"loc"`
//!   and `"vcard"`; `POST /_standin/react {"phone","from","id","emoji"}`,
//!   `POST /_standin/edit {"phone","id","text"}`, `POST /_standin/revoke {"phone","id"}`
//!   (the contact who wrote `id` changes it); `GET /_standin/reactions?phone=` lists
//!   the reactions the phone's pages sent, `GET /_standin/signals?phone=` their
//!   typing states and read marks, oldest first.

use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub mod media;

const PAGE: &str = include_str!("whatsapp.html");
/// Longest a poll is held open.
const POLL_HOLD: Duration = Duration::from_secs(20);
/// How much of a phone's history a newly loaded page syncs.
const HISTORY: usize = 200;

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
    /// Modules this WhatsApp Web release does not have (renamed or removed).
    pub missing_modules: Vec<String>,
    /// `window.Debug.VERSION`.
    pub version: String,
    /// Turn headless browsers away, as WhatsApp Web does (off only to try drivers
    /// that do not hide automation).
    pub refuse_robots: bool,
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            qr_interval: Duration::from_secs(20),
            ack_delay: Duration::from_millis(200),
            legacy_dom: false,
            missing_modules: Vec::new(),
            version: "2.3000.1029100000".into(),
            refuse_robots: true,
        }
    }
}

/// A message a linked page sent.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    /// The chat it went to, as the page addressed it (a LID for people).
    pub to: String,
    /// The recipient's phone number, when `to` is a person.
    pub to_phone: Option<String>,
    pub text: String,
    pub at_ms: i64,
    /// The file it carried, opened by the recipient's phone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<SentMedia>,
    /// The id (`quotedStanzaID`) of the message it quotes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quoted: Option<String>,
}

/// A file a linked page sent, as the recipient's phone decrypted it.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct SentMedia {
    /// `image`, `video`, `audio`, `ptt`, `document`, `sticker`.
    #[serde(rename = "type")]
    pub msg_type: String,
    pub mimetype: String,
    pub filename: Option<String>,
    /// Hex SHA-256 of the decrypted file.
    pub sha256: String,
    pub size: u64,
    pub caption: Option<String>,
    pub view_once: bool,
}

/// A reaction a linked page sent.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct SentReaction {
    /// The message reacted to, serialised (`fromMe_chat_id`).
    pub parent: String,
    /// Empty: the reaction was taken back.
    pub emoji: String,
    pub at_ms: i64,
}

/// A chat state (typing) or read mark a linked page sent.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct ChatSignal {
    pub chat: String,
    /// `composing`, `recording`, `paused`; `seen` for a read mark.
    pub state: String,
    pub at_ms: i64,
}

/// An inbound message as a test describes it (see `POST /_standin/inbound`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct Inbound {
    /// The sender's phone number (digits).
    pub from: String,
    pub text: String,
    /// A group id: `from` writes in that group.
    pub chat: Option<String>,
    #[serde(rename = "type")]
    pub msg_type: Option<String>,
    pub subtype: Option<String>,
    pub caption: Option<String>,
    pub mimetype: Option<String>,
    pub ciphertext: bool,
    pub status: bool,
    pub hide_phone: bool,
    /// The file (an image, voice note…): uploaded encrypted to the media server.
    #[serde(skip)]
    pub media: Option<Vec<u8>>,
    /// The same, base64, over HTTP.
    pub media_base64: Option<String>,
    pub filename: Option<String>,
    pub view_once: bool,
    /// The media server no longer has the file (downloads get 404).
    pub expired: bool,
    /// The id of a message in the chat this one quotes.
    pub quoted: Option<String>,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub loc: Option<String>,
    /// A contact card (`type: vcard`).
    pub vcard: Option<String>,
}

/// The LID WhatsApp gives a phone number here (deterministic, 15 digits).
pub fn lid_of(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in digits.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}", 100_000_000_000_000 + h % 900_000_000_000_000)
}

#[derive(Debug, Default)]
struct Client {
    /// The QR ref shown now (unlinked pages).
    qr_ref: Option<String>,
    ref_issued: Option<Instant>,
    refs_issued: u32,
    pairing_code: Option<String>,
    device: Option<String>,
    /// Whether the page was told its session (chats, contacts, history) since it loaded.
    announced: bool,
    queue: Vec<Value>,
    first_poll: Option<Instant>,
    last_poll: Option<Instant>,
    /// When its latest poll request came in (a request held open counts once).
    last_request: Option<Instant>,
    /// Told `CONFLICT` (a newer page of its device polled).
    conflicted: bool,
}

#[derive(Debug, Default)]
struct Phone {
    sent: Vec<Sent>,
    reactions: Vec<SentReaction>,
    signals: Vec<ChatSignal>,
    offline_until: Option<Instant>,
    /// Every message of the account, both ways, oldest first (for history sync).
    history: Vec<Value>,
    passkey: bool,
    /// The most pages of one of the phone's devices seen open at once: pages that
    /// polled after the newest of them first did.
    max_open_pages: usize,
}

#[derive(Debug, Default)]
struct World {
    clients: HashMap<String, Client>,
    /// Device token → phone.
    devices: HashMap<String, String>,
    /// Devices linked by scan but waiting for their passkey step: device → (phone, client).
    awaiting_passkey: HashMap<String, (String, String)>,
    /// Per device: messages, acks, logouts waiting for a poll.
    device_queues: HashMap<String, Vec<Value>>,
    phones: HashMap<String, Phone>,
    unregistered: HashSet<String>,
    /// Every number seen (to name the phone behind a LID).
    known: HashSet<String>,
    refused: Vec<String>,
    modals_dismissed: u64,
    counter: u64,
    /// The media server: direct path → what it keeps (encrypted), or `None` once expired.
    cdn: HashMap<String, Option<Bytes>>,
    /// Files the media server has handed out.
    cdn_downloads: u64,
}

impl World {
    /// Counts the pages of `device` (of `phone`) open now: those that sent a poll
    /// since the newest of them first did (a page of a dead browser, or one that
    /// navigated away, sends no more; a request it left open does not count). As
    /// on WhatsApp Web, the older pages hear `CONFLICT` ("WhatsApp is open in
    /// another window").
    fn count_open_pages(&mut self, device: &str, phone: &str) {
        let newest = self
            .clients
            .values()
            .filter(|c| c.device.as_deref() == Some(device))
            .filter_map(|c| c.first_poll)
            .max();
        let Some(newest) = newest else {
            return;
        };
        let mut open = 0;
        for c in self
            .clients
            .values_mut()
            .filter(|c| c.device.as_deref() == Some(device))
        {
            if c.last_request.is_some_and(|t| t >= newest) {
                open += 1;
            }
            if c.first_poll.is_some_and(|t| t < newest) && !c.conflicted {
                c.conflicted = true;
                c.queue
                    .push(json!({ "type": "state", "state": "CONFLICT" }));
            }
        }
        let p = self.phones.entry(phone.to_owned()).or_default();
        p.max_open_pages = p.max_open_pages.max(open);
    }

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

    fn devices_of(&self, phone: &str) -> Vec<String> {
        self.devices
            .iter()
            .filter(|(_, p)| p.as_str() == phone)
            .map(|(d, _)| d.clone())
            .collect()
    }

    fn push_device(&mut self, device: &str, ev: Value) {
        self.device_queues
            .entry(device.to_owned())
            .or_default()
            .push(ev);
    }

    /// Sends `ev` to every linked page of `phone`; false when it has none.
    fn push_phone(&mut self, phone: &str, ev: &Value) -> bool {
        let devices = self.devices_of(phone);
        for d in &devices {
            self.push_device(d, ev.clone());
        }
        !devices.is_empty()
    }

    /// Keeps an encrypted file on the media server; returns its direct path.
    fn store_media(&mut self, file: Bytes) -> String {
        let n = self.next();
        let path = format!(
            "/v/t62.7118-24/{n}{:010}_{}_n.enc?ccb=11-4&oh=01_{:016x}&_nc_sid=5e03e0",
            rand_u64() % 10_000_000_000,
            rand_u64() % 1_000_000,
            rand_u64()
        );
        self.cdn.insert(path.clone(), Some(file));
        path
    }

    /// The serialised key of message `id` in `phone`'s history (`id` bare or serialised).
    fn key_of(&self, phone: &str, id: &str) -> Option<String> {
        if id.contains('_') {
            return Some(id.to_owned());
        }
        let p = self.phones.get(phone)?;
        p.history.iter().rev().find(|e| e["id"] == id).map(|e| {
            let from_me = e["fromMe"].as_bool().unwrap_or(false);
            format!("{from_me}_{}_{id}", e["chat"].as_str().unwrap_or_default())
        })
    }

    fn record(&mut self, phone: &str, ev: &Value) {
        let p = self.phones.entry(phone.to_owned()).or_default();
        p.history.push(ev.clone());
        if p.history.len() > 2 * HISTORY {
            p.history.drain(..HISTORY);
        }
    }

    /// What a page learns about its account when it loads.
    fn session_info(&self, phone: &str) -> Value {
        let history: Vec<Value> = self
            .phones
            .get(phone)
            .map(|p| {
                let skip = p.history.len().saturating_sub(HISTORY);
                p.history[skip..].to_vec()
            })
            .unwrap_or_default();
        let person = |pn: &str, name: &str| json!({ "id": format!("{pn}@c.us"), "lid": format!("{}@lid", lid_of(pn)), "name": name });
        json!({
            "phone": phone,
            "lid": lid_of(phone),
            "chats": [
                { "id": "120363000000000001@g.us", "name": "Support team", "isGroup": true },
                { "id": format!("{}@lid", lid_of("15550100")), "name": "Alice", "isGroup": false },
            ],
            "contacts": [person("15550100", "Alice"), person("15550101", "Bob")],
            "history": history,
        })
    }
}

/// What an image message's `body` holds on the page: a base64 JPEG thumbnail.
const THUMBNAIL: &str = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AKp//2Q==";

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("system randomness");
    u64::from_le_bytes(b)
}

fn message_id() -> String {
    format!("3EB0{:016X}", rand_u64())
}

fn digits(s: &str) -> String {
    s.split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
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

    fn changed(&self) {
        self.changed.notify_waiters();
    }

    /// What was sent from `phone`'s pages.
    pub fn sent(&self, phone: &str) -> Vec<Sent> {
        self.world()
            .phones
            .get(phone)
            .map(|p| p.sent.clone())
            .unwrap_or_default()
    }

    /// Why robots were turned away (`user agent`, `client hints`, `navigator.webdriver`).
    pub fn refused(&self) -> Vec<String> {
        self.world().refused.clone()
    }

    /// How many "what's new" modals were dismissed.
    pub fn modals_dismissed(&self) -> u64 {
        self.world().modals_dismissed
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
        let passkey = w.phones.entry(phone.to_owned()).or_default().passkey;
        if let Some(c) = w.clients.get_mut(client) {
            c.qr_ref = None;
            c.pairing_code = None;
            if passkey {
                c.queue
                    .push(json!({ "type": "passkey", "device": device.clone() }));
            }
        }
        if passkey {
            w.awaiting_passkey
                .insert(device.clone(), (phone.to_owned(), client.to_owned()));
        } else {
            self.complete_link(w, client, &device, phone);
        }
        self.changed();
        device
    }

    fn complete_link(&self, w: &mut World, client: &str, device: &str, phone: &str) {
        w.devices.insert(device.to_owned(), phone.to_owned());
        let mut info = w.session_info(phone);
        if let Some(c) = w.clients.get_mut(client) {
            c.device = Some(device.to_owned());
            c.announced = true;
            info["type"] = "linked".into();
            info["device"] = device.into();
            c.queue.push(info);
        }
    }

    /// Flags `phone` as one whose device linking needs a passkey step.
    pub fn require_passkey(&self, phone: &str, required: bool) {
        self.world()
            .phones
            .entry(phone.to_owned())
            .or_default()
            .passkey = required;
    }

    /// Marks a number as not on WhatsApp.
    pub fn unregister(&self, phone: &str) {
        self.world().unregistered.insert(digits(phone));
    }

    /// Delivers a text message to `phone`'s linked devices; `None` if it has none.
    pub fn inbound(
        &self,
        phone: &str,
        from: &str,
        text: &str,
        chat: Option<&str>,
    ) -> Option<String> {
        self.deliver(
            phone,
            Inbound {
                from: from.to_owned(),
                text: text.to_owned(),
                chat: chat.map(str::to_owned),
                ..Inbound::default()
            },
        )
    }

    /// Delivers a message to `phone`'s account: to its linked pages now, and to its
    /// history for pages that load later. `None` if the phone has no linked device.
    pub fn deliver(&self, phone: &str, m: Inbound) -> Option<String> {
        let id = message_id();
        let sender = digits(&m.from);
        let lid = format!("{}@lid", lid_of(&sender));
        let pn = format!("{sender}@c.us");
        let (chat, author) = match (&m.chat, m.status) {
            (_, true) => ("status@broadcast".to_owned(), Some(lid.clone())),
            (Some(g), _) => (g.clone(), Some(lid.clone())),
            (None, _) => (lid.clone(), None),
        };
        let msg_type = m.msg_type.clone().unwrap_or_else(|| "chat".into());
        let mut ev = json!({
            "type": "message", "id": id, "from": if author.is_some() { chat.clone() } else { lid.clone() },
            "author": author, "chat": chat, "text": m.text,
            "pn": if m.hide_phone || author.is_some() { Value::Null } else { pn.clone().into() },
            "authorPn": if m.hide_phone || author.is_none() { Value::Null } else { pn.into() },
            "msgType": msg_type, "subtype": m.subtype,
            "caption": m.caption, "mimetype": m.mimetype, "ciphertext": m.ciphertext,
            "notifyName": format!("User {sender}"), "t": crate::clock::now_ms() / 1000,
        });
        if matches!(
            msg_type.as_str(),
            "image" | "video" | "sticker" | "location"
        ) {
            // The page shows a thumbnail: that is what `body` holds, not text.
            ev["text"] = THUMBNAIL.into();
        }
        if msg_type == "location" {
            ev["lat"] = m.lat.into();
            ev["lng"] = m.lng.into();
            ev["loc"] = m.loc.clone().into();
        }
        if msg_type == "vcard" {
            ev["text"] = m.vcard.clone().unwrap_or_default().into();
        }
        let mut w = self.world();
        if w.devices_of(phone).is_empty() {
            return None;
        }
        if let Some(bytes) = m.media.as_deref() {
            let sealed = media::seal(&msg_type, bytes);
            let path = w.store_media(Bytes::from(sealed.file));
            if m.expired {
                w.cdn.insert(path.clone(), None);
            }
            ev["media"] = json!({
                "mediaKey": sealed.media_key, "directPath": path, "filehash": sealed.filehash,
                "encFilehash": sealed.enc_filehash, "size": bytes.len(), "filename": m.filename,
                "mediaKeyTimestamp": crate::clock::now_ms() / 1000, "isViewOnce": m.view_once,
            });
        }
        if let Some(q) = &m.quoted
            && let Some(key) = w.key_of(phone, q)
        {
            let from_me = key.starts_with("true_");
            let participant = if from_me {
                format!("{}@lid", lid_of(phone))
            } else {
                w.phones
                    .get(phone)
                    .and_then(|p| p.history.iter().rev().find(|e| e["id"] == q.as_str()))
                    .and_then(|e| {
                        e["author"]
                            .as_str()
                            .or(e["from"].as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| lid.clone())
            };
            let stanza = key.rsplit('_').next().unwrap_or_default().to_owned();
            ev["quoted"] = json!({ "key": key, "id": stanza, "participant": participant });
        }
        w.known.insert(sender);
        w.record(phone, &ev);
        w.push_phone(phone, &ev);
        drop(w);
        self.changed();
        Some(id)
    }

    /// The phone's owner writes to `to` (digits) from the phone itself.
    pub fn phone_send(&self, phone: &str, to: &str, text: &str) -> Option<String> {
        let id = message_id();
        let chat = format!("{}@lid", lid_of(&digits(to)));
        let ev = json!({
            "type": "message", "id": id, "from": format!("{}@lid", lid_of(phone)), "chat": chat,
            "text": text, "fromMe": true, "msgType": "chat", "t": crate::clock::now_ms() / 1000,
            "pn": Value::Null,
        });
        let mut w = self.world();
        w.known.insert(digits(to));
        w.record(phone, &ev);
        let linked = w.push_phone(phone, &ev);
        drop(w);
        self.changed();
        linked.then_some(id)
    }

    /// The recipient reads a message sent from `phone`'s pages (`id` as the page serialised it).
    pub fn read(&self, phone: &str, id: &str) -> bool {
        let mut w = self.world();
        let linked = w.push_phone(phone, &json!({ "type": "ack", "id": id, "ack": 3 }));
        drop(w);
        self.changed();
        linked
    }

    /// The contact `from` reacts to message `id` (bare or serialised) in `phone`'s
    /// account; an empty `emoji` takes the reaction back.
    pub fn react(&self, phone: &str, from: &str, id: &str, emoji: &str) -> bool {
        let mut w = self.world();
        let Some(parent) = w.key_of(phone, id) else {
            return false;
        };
        let ev = json!({
            "type": "reaction", "parent": parent, "id": message_id(), "emoji": emoji,
            "from": format!("{}@lid", lid_of(&digits(from))), "t": crate::clock::now_ms(),
        });
        let linked = w.push_phone(phone, &ev);
        drop(w);
        self.changed();
        linked
    }

    /// The contact who wrote message `id` edits it to `text`, or (`None`) deletes it
    /// for everyone.
    pub fn change(&self, phone: &str, id: &str, text: Option<&str>) -> bool {
        let mut w = self.world();
        let Some(key) = w.key_of(phone, id) else {
            return false;
        };
        let ev = match text {
            Some(t) => {
                json!({ "type": "edit", "key": key, "text": t, "editId": message_id(), "t": crate::clock::now_ms() })
            }
            None => json!({ "type": "revoke", "key": key, "t": crate::clock::now_ms() }),
        };
        let linked = w.push_phone(phone, &ev);
        drop(w);
        self.changed();
        linked
    }

    /// Reactions `phone`'s pages sent.
    pub fn reactions(&self, phone: &str) -> Vec<SentReaction> {
        self.world()
            .phones
            .get(phone)
            .map(|p| p.reactions.clone())
            .unwrap_or_default()
    }

    /// Chat states (typing) and read marks `phone`'s pages sent, oldest first.
    pub fn signals(&self, phone: &str) -> Vec<ChatSignal> {
        self.world()
            .phones
            .get(phone)
            .map(|p| p.signals.clone())
            .unwrap_or_default()
    }

    /// Puts `phone`'s pages in a socket state (`TIMEOUT` comes back after `seconds`).
    pub fn set_state(&self, phone: &str, state: &str, seconds: Option<u64>) -> bool {
        let mut w = self.world();
        let linked = w.push_phone(
            phone,
            &json!({ "type": "state", "state": state, "seconds": seconds }),
        );
        drop(w);
        self.changed();
        linked
    }

    /// Silently detaches the message listeners of `phone`'s pages.
    pub fn detach(&self, phone: &str) -> bool {
        let mut w = self.world();
        let linked = w.push_phone(phone, &json!({ "type": "detach" }));
        drop(w);
        self.changed();
        linked
    }

    /// Unlinks every device of `phone` (as "log out all devices" on the phone); the
    /// pages hear `logout`, or `logout_from_bridge` when `bridge`.
    pub fn logout_phone_via(&self, phone: &str, bridge: bool) -> usize {
        let mut w = self.world();
        let devices = w.devices_of(phone);
        let via = if bridge { "bridge" } else { "logout" };
        for d in &devices {
            w.devices.remove(d);
            w.push_device(d, json!({ "type": "logout", "via": via }));
        }
        drop(w);
        self.changed();
        devices.len()
    }

    /// Unlinks every device of `phone`.
    pub fn logout_phone(&self, phone: &str) -> usize {
        self.logout_phone_via(phone, false)
    }

    /// Drops `phone`'s connections and refuses new ones for `seconds`.
    pub fn offline(&self, phone: &str, seconds: u64) {
        let mut w = self.world();
        w.phones.entry(phone.to_owned()).or_default().offline_until =
            Some(Instant::now() + Duration::from_secs(seconds));
        drop(w);
        self.changed();
    }

    /// The most pages of one of `phone`'s linked devices that were ever open at
    /// once (see [`World::count_open_pages`]); 1 when each ran alone.
    pub fn max_open_pages(&self, phone: &str) -> usize {
        self.world()
            .phones
            .get(phone)
            .map_or(0, |p| p.max_open_pages)
    }

    /// How many pages polled within the last `within`.
    pub fn live_pages(&self, within: Duration) -> usize {
        self.world()
            .clients
            .values()
            .filter(|c| c.last_poll.is_some_and(|t| t.elapsed() < within))
            .count()
    }

    fn page(&self) -> String {
        let config = json!({
            "legacyDom": self.config.legacy_dom,
            "missingModules": self.config.missing_modules,
            "version": self.config.version,
            "refuseRobots": self.config.refuse_robots,
        });
        let (start, end) = ("/*CONFIG*/", "/*END*/");
        match (PAGE.find(start), PAGE.find(end)) {
            (Some(a), Some(b)) => format!("{}{start}{config}{}", &PAGE[..a], &PAGE[b..]),
            _ => PAGE.to_owned(),
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let query_raw = req.uri().query().map(str::to_owned);
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let method = req.method().clone();
        let agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(StatusCode::BAD_REQUEST, json!({"error": "unreadable body"})),
        };
        match (method, path.as_str()) {
            (Method::GET, "/") => {
                let page = if self.config.refuse_robots && agent.contains("HeadlessChrome") {
                    // Turned away before the app loads, as the real site does.
                    self.world().refused.push("user agent header".into());
                    "<!doctype html><title>WhatsApp</title><h1>WhatsApp works with Google Chrome 85+</h1>                     <p>To use WhatsApp, update Chrome or use another browser.</p>"
                        .to_owned()
                } else {
                    self.page()
                };
                Response::builder()
                    .header("content-type", "text/html; charset=utf-8")
                    .header("cache-control", "no-store")
                    .body(Full::new(Bytes::from(page)))
                    .unwrap_or_default()
            }
            (Method::GET, "/_standin/poll") => self.poll(&query).await,
            (Method::GET, p) if p.starts_with("/v/") => {
                let full = req_path_and_query(&path, &query_raw);
                let mut w = self.world();
                let file = w.cdn.get(&full).cloned().flatten();
                w.cdn_downloads += u64::from(file.is_some());
                drop(w);
                match file {
                    Some(file) => Response::builder()
                        .header("content-type", "application/octet-stream")
                        .body(Full::new(file))
                        .unwrap_or_default(),
                    None => reply(StatusCode::NOT_FOUND, json!({"error": "media not found"})),
                }
            }
            (Method::POST, p) if p.starts_with("/mms/") => {
                // The page uploads what it encrypted; the server keeps it as it is.
                let mut w = self.world();
                let direct_path = w.store_media(body);
                let url = format!("http://{}{direct_path}", self.addr);
                reply(
                    StatusCode::OK,
                    json!({ "url": url, "direct_path": direct_path }),
                )
            }
            (Method::GET, "/_standin/reactions") => {
                let phone = query.get("phone").cloned().unwrap_or_default();
                reply(StatusCode::OK, json!(self.reactions(&phone)))
            }
            (Method::GET, "/_standin/signals") => {
                let phone = query.get("phone").cloned().unwrap_or_default();
                reply(StatusCode::OK, json!(self.signals(&phone)))
            }
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
                        "refused": w.refused,
                        "modals_dismissed": w.modals_dismissed,
                        "max_open_pages": w.phones.iter().map(|(k, p)| (k.clone(), p.max_open_pages)).collect::<HashMap<_, _>>(),
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
        let done = |linked: bool| {
            if linked {
                reply(StatusCode::OK, json!({}))
            } else {
                reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "no linked device for this phone"}),
                )
            }
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
                let mut m: Inbound = match serde_json::from_value(v.clone()) {
                    Ok(m) => m,
                    Err(e) => {
                        return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
                    }
                };
                if let Some(b) = m.media_base64.take() {
                    use base64::Engine;
                    match base64::engine::general_purpose::STANDARD.decode(b) {
                        Ok(bytes) => m.media = Some(bytes),
                        Err(e) => {
                            return reply(
                                StatusCode::BAD_REQUEST,
                                json!({"error": format!("media_base64: {e}")}),
                            );
                        }
                    }
                }
                match self.deliver(&s("phone"), m) {
                    Some(id) => reply(StatusCode::OK, json!({"id": id})),
                    None => done(false),
                }
            }
            "/_standin/phone-send" => match self.phone_send(&s("phone"), &s("to"), &s("text")) {
                Some(id) => reply(StatusCode::OK, json!({"id": id})),
                None => done(false),
            },
            "/_standin/read" => done(self.read(&s("phone"), &s("id"))),
            "/_standin/react" => done(self.react(&s("phone"), &s("from"), &s("id"), &s("emoji"))),
            "/_standin/edit" => done(self.change(&s("phone"), &s("id"), Some(&s("text")))),
            "/_standin/revoke" => done(self.change(&s("phone"), &s("id"), None)),
            "/_standin/state" => {
                let seconds = v.get("seconds").and_then(Value::as_u64);
                done(self.set_state(&s("phone"), &s("state"), seconds))
            }
            "/_standin/detach" => done(self.detach(&s("phone"))),
            "/_standin/passkey" => {
                let required = v.get("required").and_then(Value::as_bool).unwrap_or(true);
                self.require_passkey(&s("phone"), required);
                reply(StatusCode::OK, json!({"required": required}))
            }
            "/_standin/unregistered" => {
                self.unregister(&s("phone"));
                reply(StatusCode::OK, json!({}))
            }
            "/_standin/logout" => {
                let n = self.logout_phone_via(&s("phone"), s("via") == "bridge");
                reply(StatusCode::OK, json!({"devices": n}))
            }
            "/_standin/offline" => {
                let secs = v.get("seconds").and_then(Value::as_u64).unwrap_or(30);
                self.offline(&s("phone"), secs);
                reply(StatusCode::OK, json!({"offline_seconds": secs}))
            }
            // What the page calls.
            "/_standin/api/send" => {
                // LID-addressed groups take messages only from members' LIDs.
                if s("to").ends_with("@g.us") && v.get("lid").and_then(Value::as_bool) != Some(true)
                {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "this group addresses its members by LID"}),
                    );
                }
                self.page_send(&v)
            }
            "/_standin/api/react" => {
                let mut w = self.world();
                let Some(phone) = w.devices.get(&s("device")).cloned() else {
                    return reply(
                        StatusCode::UNAUTHORIZED,
                        json!({"error": "device not linked"}),
                    );
                };
                w.phones
                    .entry(phone)
                    .or_default()
                    .reactions
                    .push(SentReaction {
                        parent: s("parent"),
                        emoji: s("emoji"),
                        at_ms: crate::clock::now_ms(),
                    });
                reply(StatusCode::OK, json!({}))
            }
            "/_standin/api/signal" => {
                let mut w = self.world();
                let Some(phone) = w.devices.get(&s("device")).cloned() else {
                    return reply(
                        StatusCode::UNAUTHORIZED,
                        json!({"error": "device not linked"}),
                    );
                };
                w.phones.entry(phone).or_default().signals.push(ChatSignal {
                    chat: s("chat"),
                    state: s("state"),
                    at_ms: crate::clock::now_ms(),
                });
                reply(StatusCode::OK, json!({}))
            }
            "/_standin/api/query-exists" => self.query_exists(&s("device"), &s("wid")),
            "/_standin/api/refused" => {
                self.world().refused.push(s("reason"));
                reply(StatusCode::OK, json!({}))
            }
            "/_standin/api/modal" => {
                self.world().modals_dismissed += 1;
                reply(StatusCode::OK, json!({}))
            }
            "/_standin/api/passkey" => {
                let mut w = self.world();
                let device = s("device");
                if let Some((phone, client)) = w.awaiting_passkey.remove(&device) {
                    if v.get("ok").and_then(Value::as_bool) == Some(true) {
                        self.complete_link(&mut w, &client, &device, &phone);
                    } else if let Some(c) = w.clients.get_mut(&client) {
                        // No passkey: the link fails and the page shows a new code.
                        c.ref_issued = None;
                    }
                }
                drop(w);
                self.changed();
                reply(StatusCode::OK, json!({}))
            }
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

    fn query_exists(&self, device: &str, wid: &str) -> Response<Full<Bytes>> {
        let mut w = self.world();
        if !w.devices.contains_key(device) {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "device not linked"}),
            );
        }
        let number = digits(wid);
        if number.len() < 5 || w.unregistered.contains(&number) {
            return reply(StatusCode::NOT_FOUND, json!({"error": "not on WhatsApp"}));
        }
        w.known.insert(number.clone());
        reply(
            StatusCode::OK,
            json!({ "wid": format!("{number}@c.us"), "lid": format!("{}@lid", lid_of(&number)) }),
        )
    }

    fn page_send(&self, v: &Value) -> Response<Full<Bytes>> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        let (device, to, text, id) = (s("device"), s("to"), s("text"), s("id"));
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
        // People are known by LID here: say which number that is.
        let to_phone = if to.ends_with("@lid") {
            let lid = digits(to);
            w.known
                .iter()
                .chain(w.phones.keys())
                .chain(["15550100".to_owned(), "15550101".to_owned()].iter())
                .find(|p| lid_of(p) == lid)
                .cloned()
        } else if to.ends_with("@c.us") {
            Some(digits(to))
        } else {
            None
        };
        let key_id = id.rsplit('_').next().unwrap_or(id).to_owned();
        let chat = to.to_owned();
        let media = match v.get("media").filter(|m| m.is_object()) {
            None => None,
            Some(m) => match open_sent_media(&w, m) {
                Ok(m) => Some(m),
                Err(e) => {
                    return reply(StatusCode::BAD_REQUEST, json!({ "error": e }));
                }
            },
        };
        let msg_type = media
            .as_ref()
            .map_or("chat", |m| m.msg_type.as_str())
            .to_owned();
        let quoted = v.get("quoted").and_then(Value::as_str).map(str::to_owned);
        w.phones.entry(phone.clone()).or_default().sent.push(Sent {
            id: id.to_owned(),
            to: chat.clone(),
            to_phone,
            text: text.to_owned(),
            at_ms: crate::clock::now_ms(),
            media,
            quoted,
        });
        let ev = json!({
            "type": "message", "id": key_id, "from": format!("{}@lid", lid_of(&phone)), "chat": chat,
            "text": text, "fromMe": true, "msgType": msg_type, "t": crate::clock::now_ms() / 1000, "pn": Value::Null,
        });
        w.record(&phone, &ev);
        drop(w);
        let (me, id) = (self.clone(), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(me.config.ack_delay).await;
            let mut w = me.world();
            // Every page of the account hears the ack (the sender's included).
            w.push_phone(&phone, &json!({ "type": "ack", "id": id, "ack": 2 }));
            drop(w);
            me.changed();
        });
        reply(StatusCode::OK, json!({"ok": true}))
    }

    /// How many files the media server has handed out (to pages downloading them).
    pub fn media_downloads(&self) -> u64 {
        self.world().cdn_downloads
    }

    /// Drops a file from the media server (as WhatsApp's does after a while).
    pub fn expire_media(&self) {
        for f in self.world().cdn.values_mut() {
            *f = None;
        }
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
        let requested = Instant::now();
        let deadline = requested + POLL_HOLD;
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
                let info = phone.as_ref().map(|p| w.session_info(p));
                let client = w.clients.entry(client_id.clone()).or_default();
                client.last_poll = Some(Instant::now());
                client.last_request = Some(requested);
                client.first_poll.get_or_insert(requested);
                if let (Some(d), None) = (&device, &client.device) {
                    client.device = Some(d.clone());
                }
                if let (Some(d), Some(p)) = (client.device.clone(), &phone) {
                    w.count_open_pages(&d, p);
                }
                let client = w.clients.entry(client_id.clone()).or_default();
                let mut next_rotation = None;
                let mut fresh_page = false;
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
                    && let Some(mut info) = info
                {
                    // A page that just loaded syncs: what arrived meanwhile is history.
                    client.announced = true;
                    fresh_page = true;
                    info["type"] = "session".into();
                    client.queue.push(info);
                }
                out.append(&mut client.queue);
                let linked_device = client.device.clone();
                if let Some(d) = linked_device {
                    let queued = w.device_queues.remove(&d).unwrap_or_default();
                    out.extend(queued.into_iter().filter(|e| {
                        !fresh_page || !matches!(e["type"].as_str(), Some("message" | "ack"))
                    }));
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

/// What the recipient's phone makes of a media message a page sent: it downloads
/// the file from the media server and decrypts it.
fn open_sent_media(w: &World, m: &Value) -> Result<SentMedia, String> {
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let msg_type = s("type").ok_or("media without a type")?;
    let path = s("directPath").ok_or("media without a directPath")?;
    let file = w
        .cdn
        .get(&path)
        .cloned()
        .flatten()
        .ok_or("the media server has no file at this directPath")?;
    let plain = media::open(
        &msg_type,
        &s("mediaKey").unwrap_or_default(),
        &file,
        &s("encFilehash").unwrap_or_default(),
        &s("filehash").unwrap_or_default(),
    )?;
    if m.get("size").and_then(Value::as_u64) != Some(plain.len() as u64) {
        return Err("size does not match the file".into());
    }
    use sha2::Digest;
    Ok(SentMedia {
        msg_type,
        mimetype: s("mimetype").unwrap_or_default(),
        filename: s("filename"),
        sha256: hex::encode(sha2::Sha256::digest(&plain)),
        size: plain.len() as u64,
        caption: s("caption"),
        view_once: m
            .get("isViewOnce")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

fn req_path_and_query(path: &str, query: &Option<String>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
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
