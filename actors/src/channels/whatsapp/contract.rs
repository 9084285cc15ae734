//! The WhatsApp Web page contract: everything the driver assumes about the remote page.
//!
//! When WhatsApp Web changes, this is the one file to change. It follows how the
//! maintained engines drive today's page (whatsapp-web.js 1.34, wa-js; see
//! REFERENCES.md), and the stand-in (`testkit::whatsapp`) behaves like that page.
//!
//! What the driver relies on:
//! - The page is at [`DEFAULT_URL`] and refuses browsers that look automated (the
//!   browser pool gives every page a desktop identity). It has loaded once
//!   `window.Debug.VERSION` is set and `window.require` resolves WhatsApp Web's own
//!   modules, which register progressively while the page boots.
//! - Each module is required on its own, so one renamed module only takes its own
//!   feature down. [`ESSENTIAL_MODULES`] are needed to run at all; one still missing
//!   [`SETTLE_SECS`] after `Debug.VERSION` appeared is reported once, by name. The
//!   others are optional: without the QR-key modules the QR is read from the DOM
//!   (`div[data-ref]`), without `WAWebCmd` a phone-side logout is seen as the socket
//!   returning to `UNPAIRED`.
//! - `WAWebSocketModel.Socket`: `state` with `change:state` ([`state_meaning`]);
//!   `hasSynced` with `change:hasSynced` (ready); `logout()`.
//! - `WAWebConnModel.Conn`: `ref` with `change:ref`; the QR value is
//!   `ref,staticKeyB64,identityKeyB64,advSecretKey,platform`, the keys read through
//!   `WAWebUserPrefsInfoStore` / `WAWebSignalStoreApi` / `WAWebUserPrefsMultiDevice` /
//!   `WAWebCompanionRegClientUtils` and `WABase64`. `WAWebCmd.Cmd` emits `logout` and
//!   `logout_from_bridge` and has `refreshQR()`.
//! - Own ids: `WAWebUserPrefsMeUser.getMaybeMePnUser()` / `getMaybeMeLidUser()`
//!   (`getMaybeMeUser` was removed around 2.3000.1026; used only where it still exists).
//! - `WAWebCollections.Msg` emits `add` (new messages: `isNewMsg`; a `ciphertext`
//!   message is forwarded once it changes type) and `change:ack`; `Chat` and `Contact`
//!   list chats and contacts, contact fields read through `WAWebContactGetters` /
//!   `WAWebFrontendContactGetters`. System and status messages ([`SKIPPED_TYPES`],
//!   `status@broadcast`) are not messages; a media message's text is its caption.
//!   Messages written on the phone itself arrive with `id.fromMe`.
//! - Addresses: people arrive as `…@lid`; `WAWebApiContact.getPhoneNumber(lid)` gives
//!   the phone number when the page knows it. A phone number is resolved with
//!   `WAWebQueryExistsJob.queryWidExists` (null: not on WhatsApp) before
//!   `WAWebFindChatAction.findOrCreateLatestChat`; the message key is
//!   `WAWebMsgKey` with our own id, from our LID in LID chats and LID-addressed groups;
//!   `WAWebSendMsgChatAction.addAndSendMsgToChat` returns `[added, sent]` and the send
//!   returns once `added` resolves (the page queues and retries by itself).
//! - Pairing by phone number: `WAWebAltDeviceLinkingApi`
//!   (`setPairingType`, `initializeAltDeviceLinking`, `startAltLinkingFlow`).
//! - Media: a media message (`image`, `video`, `audio`, `ptt`, `document`, `sticker`)
//!   carries `mimetype`, `filename`, `size`, `filehash` (base64 SHA-256), `isViewOnce`
//!   and its `caption`; its `body` is a thumbnail, never text. The file is fetched the
//!   way whatsapp-web.js's `downloadMedia` does ([`DOWNLOAD_JS`]): the page's blob
//!   cache (`WAWebMediaInMemoryBlobCache`), else `msg.downloadMedia()` until
//!   `mediaData.mediaStage` is `RESOLVED` (an `ERROR…` stage: gone from WhatsApp's
//!   servers) and `WAWebDownloadManager.downloadManager.downloadAndMaybeDecrypt`; the
//!   page decrypts, the driver reads the bytes in chunks ([`CHUNK_JS`]). Sending
//!   stages the file on the page in chunks ([`STAGE_JS`]) and prepares it as
//!   whatsapp-web.js's `processMediaData` does (`WAWebMediaOpaqueData`,
//!   `WAWebPrepRawMedia`, `WAWebMediaStorage`, `WAWebMmsMediaTypes`,
//!   `WAWebMediaMmsV4Upload`). `location` (`lat`, `lng`, `loc`) and `vcard` (the card
//!   as `body`) messages are described, not downloaded.
//! - Replies: `quotedStanzaID` / `quotedParticipant` on a message; a send quotes with
//!   `msg.msgContextInfo(chat)` when `msg.canReply()`. Reactions: the page's reaction
//!   table (`WAWebAddonReactionTableMode.reactionTableMode.bulkUpsert`, wrapped as
//!   whatsapp-web.js does) and `WAWebSendReactionMsgAction.sendReactionToMsg`. Edits:
//!   `change:body` / `change:caption` with `latestEditMsgKey`; deletes for everyone:
//!   `change:type` to `revoked`. Read: `WAWebUpdateUnreadChatAction.sendSeen`; typing:
//!   `WAWebChatStateBridge.sendChatStateComposing|Recording|Paused`.
//! - DOM markers: the QR ref in `div[data-ref]` and `[data-icon='search']` once logged
//!   in (older pages), the passkey step ([`PASSKEY_SELECTOR`]) and the "what's new"
//!   modal's OK button ([`MODAL_OK_SELECTOR`], clicked away).
//!
//! The observer script is installed to run in every new document (so it is
//! re-injected after each navigation) and reports to the driver through one exposed
//! binding, [`BINDING`], with JSON [`PageEvent`]s.

use crate::channels::AckLevel;
use serde::Deserialize;
use std::time::Duration;

/// Where WhatsApp Web lives.
pub const DEFAULT_URL: &str = "https://web.whatsapp.com/";

/// The binding the page reports through (`window.__switchboard(json)`).
pub const BINDING: &str = "__switchboard";

/// How long a QR code is good for (WhatsApp rotates refs every ~20 s).
pub const QR_LIFETIME: Duration = Duration::from_secs(20);

/// A path on the page's origin the driver fulfils itself (never fetched from the
/// network) to write saved login state before the real page loads.
pub const RESTORE_PATH: &str = "/__switchboard_restore";

/// Modules without which the session cannot work.
pub const ESSENTIAL_MODULES: &[&str] = &["WAWebSocketModel", "WAWebCollections"];

/// How long after `Debug.VERSION` appears the modules may keep registering.
pub const SETTLE_SECS: u64 = 10;

/// Message types that are not messages from a person.
pub const SKIPPED_TYPES: &[&str] = &[
    "gp2",
    "e2e_notification",
    "notification_template",
    "protocol",
    "revoked",
    "notification",
    "call_log",
    "ciphertext",
];

/// The passkey step when linking a device.
pub const PASSKEY_SELECTOR: &str = "[data-testid='link-device-passkey']";
/// The OK button of WhatsApp Web's informational modals ("what's new").
pub const MODAL_OK_SELECTOR: &str = "[role='dialog'] [data-testid='popup-controls-ok']";

/// What the observer reports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PageEvent {
    /// The page's WhatsApp Web version (`Debug.VERSION`).
    Version { version: String },
    /// A new QR value to show.
    Qr { value: String },
    /// The socket state changed.
    State { state: String },
    /// Logged in and synced.
    Ready {
        #[serde(default)]
        me: Option<String>,
    },
    /// The account logged this device out (`logout` or `logout_from_bridge`).
    Logout {
        #[serde(default)]
        via: Option<String>,
    },
    /// A new message (inbound, or written on the phone when `from_me`).
    Message(Box<PageMessage>),
    /// A message we sent got further.
    Ack { id: String, ack: i64 },
    /// Someone reacted to a message (`emoji` empty: the reaction was taken back).
    Reaction {
        /// The message reacted to (serialised key).
        parent: String,
        #[serde(default)]
        emoji: String,
        #[serde(default)]
        from: Option<String>,
        #[serde(default, rename = "fromPhone")]
        from_phone: Option<String>,
        /// Milliseconds since the epoch.
        #[serde(default)]
        t: i64,
    },
    /// The sender edited a message.
    Edited { id: String, text: String },
    /// The sender deleted a message for everyone.
    Revoked { id: String },
    /// Linking this device needs the account owner's passkey.
    Passkey,
    /// Modules the page does not have (reported once, after they had time to register).
    Missing { modules: Vec<String> },
    /// The observer could not attach part of itself.
    Error { message: String },
}

/// A message as the observer serialises it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageMessage {
    pub id: String,
    pub from: String,
    #[serde(default)]
    pub author: Option<String>,
    pub chat: String,
    /// The sender's phone number (`…@c.us`) when the page can resolve it.
    #[serde(default)]
    pub from_phone: Option<String>,
    #[serde(default)]
    pub chat_phone: Option<String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub msg_type: String,
    /// Seconds since the epoch.
    #[serde(default)]
    pub t: i64,
    #[serde(default)]
    pub is_group: bool,
    #[serde(default)]
    pub has_media: bool,
    #[serde(default)]
    pub mimetype: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub notify_name: Option<String>,
    /// Written on the phone itself (not sent by this gateway).
    #[serde(default)]
    pub from_me: bool,
    #[serde(default)]
    pub filename: Option<String>,
    /// The file's size in bytes, as the message says.
    #[serde(default)]
    pub size: Option<u64>,
    /// base64 SHA-256 of the file, as the message says.
    #[serde(default)]
    pub filehash: Option<String>,
    #[serde(default)]
    pub is_view_once: bool,
    /// The message this one quotes: its serialised key, when the page holds it, else
    /// its bare id.
    #[serde(default)]
    pub quoted: Option<String>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lng: Option<f64>,
    /// A location's name or address.
    #[serde(default)]
    pub loc: Option<String>,
    /// A contact card (vCard text) and its formatted name.
    #[serde(default)]
    pub vcard: Option<String>,
    #[serde(default)]
    pub vcard_name: Option<String>,
}

/// What a media download on the page gave.
#[derive(Debug, Clone, Deserialize)]
pub struct Downloaded {
    /// Where the bytes wait on the page ([`CHUNK_JS`], [`RELEASE_JS`]).
    pub handle: Option<String>,
    #[serde(default)]
    pub size: u64,
    /// `not_found`, `no_media`, `unavailable` (gone from WhatsApp's servers), or the
    /// page's own words.
    pub error: Option<String>,
    #[serde(default)]
    pub stage: Option<String>,
}

/// How many bytes one page call carries (base64 on the wire).
pub const CHUNK_BYTES: usize = 1 << 20;

impl PageMessage {
    /// The message's text: its body, or its caption for media.
    pub fn text(&self) -> String {
        if self.has_media || self.body.is_empty() {
            self.caption.clone().unwrap_or_else(|| {
                if self.has_media {
                    String::new()
                } else {
                    self.body.clone()
                }
            })
        } else {
            self.body.clone()
        }
    }
}

/// What a socket state means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateMeaning {
    /// Loading or pairing: keep waiting.
    Waiting,
    /// Waiting for a scan and the QR stopped refreshing by itself: ask for a new one.
    Idle,
    Connected,
    /// The page lost its connection and is getting it back by itself (`TIMEOUT`):
    /// wait, within limits.
    Reconnecting,
    /// The connection is gone: reconnect.
    Lost,
    /// The account needs a person (another WhatsApp Web took over, this version is too
    /// old, the account is blocked): reconnecting would not help.
    Blocked,
}

pub fn state_meaning(state: &str) -> StateMeaning {
    match state {
        "CONNECTED" => StateMeaning::Connected,
        "UNPAIRED_IDLE" => StateMeaning::Idle,
        "OPENING" | "PAIRING" | "UNPAIRED" | "SYNCING" | "RESUMING" => StateMeaning::Waiting,
        "TIMEOUT" | "WITHOUT INTERNET" => StateMeaning::Reconnecting,
        "CONFLICT" | "DEPRECATED_VERSION" | "TOS_BLOCK" | "SMB_TOS_BLOCK" | "PROXYBLOCK" => {
            StateMeaning::Blocked
        }
        // UNLAUNCHED and anything new.
        _ => StateMeaning::Lost,
    }
}

/// Why a blocked state needs a person, in words for the session's status reason.
pub fn blocked_reason(state: &str) -> String {
    let why = match state {
        "CONFLICT" => "WhatsApp Web was opened on another computer or browser",
        "DEPRECATED_VERSION" => "this WhatsApp Web version is no longer accepted",
        "TOS_BLOCK" | "SMB_TOS_BLOCK" => "the account is blocked by WhatsApp",
        "PROXYBLOCK" => "WhatsApp refuses this network (proxy blocked)",
        _ => "WhatsApp Web needs attention",
    };
    format!("{}: {why}", state.to_ascii_lowercase())
}

/// What a message's `ack` value means for a message we sent: WhatsApp Web counts
/// `-1` error, `0` pending, `1` server (what `message.sent` already says), `2`
/// device, `3` read, `4` played (voice notes, view-once media).
pub fn ack_level(ack: i64) -> Option<AckLevel> {
    match ack {
        2 => Some(AckLevel::Delivered),
        3.. => Some(AckLevel::Read),
        _ => None,
    }
}

/// A WhatsApp id for an address: a phone number (`+1 555 0001`, `15550001`) becomes
/// a user JID (`<digits>@c.us`); a `@c.us`, `@lid`, `@g.us` (or `@s.whatsapp.net`,
/// `@newsletter`) id is kept.
pub fn jid(address: &str) -> Option<String> {
    let a = address.trim();
    if a.contains('@') {
        let (user, server) = a.split_once('@')?;
        let ok = !user.is_empty()
            && user.chars().all(|c| c.is_ascii_digit() || c == '-')
            && matches!(
                server,
                "c.us" | "g.us" | "s.whatsapp.net" | "lid" | "newsletter"
            );
        return ok.then(|| a.replace("@s.whatsapp.net", "@c.us"));
    }
    let digits: String = a
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    (digits.len() >= 5 && digits.len() <= 20 && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{digits}@c.us"))
}

/// The message id this gateway gives an outbound message: WhatsApp Web's own shape
/// (`3EB0` and 16 upper-case hex digits), derived from our id, so a send retried after
/// a crash can be found in the chat instead of being sent twice.
pub fn message_key_id(outbound_id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(outbound_id.as_bytes());
    format!("3EB0{}", hex::encode_upper(&d[..8]))
}

/// The observer, run in every new document. Reports [`PageEvent`]s via [`BINDING`].
pub const OBSERVER_JS: &str = r#"
(() => {
  if (window.__switchboardObserver || location.pathname === '/__switchboard_restore') return;
  window.__switchboardObserver = true;
  const ESSENTIAL = ["WAWebSocketModel", "WAWebCollections"], SETTLE_MS = 10000;
  const SKIP = ["gp2", "e2e_notification", "notification_template", "protocol", "revoked", "notification", "call_log", "ciphertext"];
  const emit = (o) => { try { window.__switchboard(JSON.stringify(o)); } catch (e) {} };
  const mod = (name) => { try { return window.require(name); } catch (e) { return null; } };
  const ser = (w) => (w && (w._serialized || (w.user && w.server && (w.user + '@' + w.server)))) || (w == null ? null : String(w));
  const media = ['image', 'video', 'audio', 'ptt', 'document', 'sticker'];
  const quotedKey = (m) => {
    if (!m.quotedStanzaID) return null;
    const chat = ser(m.id && m.id.remote);
    try {
      const C = mod('WAWebCollections');
      for (const mine of ['true', 'false']) { const k = mine + '_' + chat + '_' + m.quotedStanzaID; if (C && C.Msg.get(k)) return k; }
    } catch (e) {}
    return String(m.quotedStanzaID);
  };
  const phoneOf = (w) => {
    const s = ser(w);
    if (!s) return null;
    if (s.endsWith('@c.us')) return s;
    if (!s.endsWith('@lid')) return null;
    try { const api = mod('WAWebApiContact'); const pn = api && api.getPhoneNumber(typeof w === 'string' ? mod('WAWebWidFactory').createWid(w) : w); return pn ? ser(pn) : null; } catch (e) { return null; }
  };
  const me = () => {
    const m = mod('WAWebUserPrefsMeUser');
    if (!m) return null;
    try {
      const pn = typeof m.getMaybeMePnUser === 'function' ? m.getMaybeMePnUser() : (typeof m.getMaybeMeUser === 'function' ? m.getMaybeMeUser() : null);
      return ser(pn || (typeof m.getMaybeMeLidUser === 'function' ? m.getMaybeMeLidUser() : null));
    } catch (e) { return null; }
  };
  const serMsg = (m) => {
    const chat = ser(m.id && m.id.remote) || ser(m.from);
    const from = m.id && m.id.fromMe ? me() : (ser(m.author) || ser(m.from));
    const hasMedia = media.includes(m.type);
    return { type: 'message', id: ser(m.id) || String(m.id && m.id.id), from, author: ser(m.author), chat,
      fromPhone: m.id && m.id.fromMe ? null : phoneOf(m.author || m.from), chatPhone: phoneOf(m.id && m.id.remote),
      body: hasMedia || m.type === 'location' || m.type === 'vcard' ? '' : (m.body || ''), msgType: m.type || 'chat', t: m.t || 0, isGroup: !!(m.isGroupMsg || (chat || '').endsWith('@g.us')),
      hasMedia, mimetype: m.mimetype || null, caption: m.caption || null, notifyName: m.notifyName || null, fromMe: !!(m.id && m.id.fromMe),
      filename: hasMedia ? (m.filename || null) : null, size: hasMedia && typeof m.size === 'number' ? m.size : null, filehash: hasMedia ? (m.filehash || null) : null,
      isViewOnce: !!m.isViewOnce, quoted: quotedKey(m),
      lat: m.type === 'location' && typeof m.lat === 'number' ? m.lat : null, lng: m.type === 'location' && typeof m.lng === 'number' ? m.lng : null,
      loc: m.type === 'location' ? (m.loc || null) : null,
      vcard: m.type === 'vcard' ? (m.body || null) : null, vcardName: m.type === 'vcard' ? (m.vcardFormattedName || null) : null };
  };
  // Whether a message is one a person wrote (not ours, not a system or status message).
  const worth = (m) => {
    if (!m || !m.id) return false;
    if (SKIP.includes(m.type)) return false;
    if (m.isStatusV3 || ser(m.id.remote) === 'status@broadcast') return false;
    if (m.id.fromMe && m.local) return false;
    return true;
  };
  window.__switchboardSerialize = (m) => (worth(m) ? serMsg(m) : null);
  const forward = (m) => { if (worth(m)) emit(serMsg(m)); };
  const parts = {};
  const attachers = {
    socket: () => {
      const Socket = mod('WAWebSocketModel').Socket;
      let wasConnected = false;
      Socket.on('change:state', (_s, state) => {
        emit({ type: 'state', state });
        if (state === 'CONNECTED') wasConnected = true;
        if (state === 'UNPAIRED' && wasConnected && !mod('WAWebCmd')) emit({ type: 'logout', via: 'state' });
        if (state === 'UNPAIRED_IDLE') { const c = mod('WAWebCmd'); try { c && c.Cmd.refreshQR(); } catch (e) {} }
      });
      Socket.on('change:hasSynced', (_s, s) => { synced = !!s; if (!s) readySent = false; maybeReady(); });
      emit({ type: 'state', state: Socket.state });
      synced = !!Socket.hasSynced;
    },
    qr: () => {
      const Conn = mod('WAWebConnModel').Conn, B64 = mod('WABase64');
      const info = mod('WAWebUserPrefsInfoStore'), signal = mod('WAWebSignalStoreApi'), multi = mod('WAWebUserPrefsMultiDevice'), reg = mod('WAWebCompanionRegClientUtils');
      if (!B64 || !info || !signal || !multi || !reg) throw new Error('qr modules not there yet');
      const qrOf = async (ref) => {
        const r = await signal.waSignalStore.getRegistrationInfo();
        const noise = await info.waNoiseInfo.get();
        const adv = await multi.getADVSecretKey();
        return [ref, B64.encodeB64(noise.staticKeyPair.pubKey), B64.encodeB64(r.identityKeyPair.pubKey), adv, reg.DEVICE_PLATFORM].join(',');
      };
      const sendQr = (ref) => { if (ref) qrOf(ref).then((value) => emit({ type: 'qr', value }), (e) => emit({ type: 'error', message: 'qr: ' + e })); };
      Conn.on('change:ref', (_c, ref) => sendQr(ref));
      const Socket = (mod('WAWebSocketModel') || {}).Socket;
      if (Conn.ref && !(Socket && Socket.state === 'CONNECTED')) sendQr(Conn.ref);
    },
    cmd: () => {
      const Cmd = mod('WAWebCmd').Cmd;
      Cmd.on('logout', () => emit({ type: 'logout', via: 'logout' }));
      Cmd.on('logout_from_bridge', () => emit({ type: 'logout', via: 'logout_from_bridge' }));
    },
    messages: () => {
      const Msg = mod('WAWebCollections').Msg;
      Msg.on('add', (m) => {
        if (!m || !m.isNewMsg) return;
        // Still encrypted: forward it once the page has decrypted it.
        if (m.type === 'ciphertext') { m.once('change:type', () => forward(m)); return; }
        forward(m);
      });
      Msg.on('change:ack', (m, ack) => { if (m && m.id && m.id.fromMe) emit({ type: 'ack', id: ser(m.id), ack: ack }); });
      // An edit changes the text in place; a delete for everyone changes the type.
      Msg.on('change:body change:caption', (m, text) => {
        if (m && m.id && !m.id.fromMe && m.latestEditMsgKey && m.type !== 'revoked') emit({ type: 'edited', id: ser(m.id), text: String(text || '') });
      });
      Msg.on('change:type', (m, type) => { if (m && m.id && type === 'revoked') emit({ type: 'revoked', id: ser(m.id) }); });
    },
    reactions: () => {
      // Reactions are not messages: they go to the page's reaction table.
      const table = mod('WAWebAddonReactionTableMode').reactionTableMode;
      const original = table.bulkUpsert;
      if (original.__switchboard) return;
      const wrapped = function (...args) {
        try {
          for (const r of args[0] || []) {
            const from = r.author || r.from;
            emit({ type: 'reaction', parent: ser(r.reactionParentKey || r.parentMsgKey), emoji: r.reactionText || '', from: ser(from),
              fromPhone: phoneOf(from), t: Number(r.reactionTimestamp) || Date.now() });
          }
        } catch (e) {}
        return original.apply(this, args);
      };
      wrapped.__switchboard = true;
      table.bulkUpsert = wrapped;
    },
  };
  const needs = { socket: ['WAWebSocketModel'], qr: ['WAWebConnModel'], cmd: ['WAWebCmd'], messages: ['WAWebCollections'], reactions: ['WAWebAddonReactionTableMode'] };
  // Ready once synced and the message collections are there (or never will be), so
  // what the page holds can be read at once.
  let synced = false, readySent = false;
  const maybeReady = () => {
    if (!synced || readySent || !(parts.messages || (versionAt !== null && Date.now() - versionAt > SETTLE_MS))) return;
    readySent = true;
    emit({ type: 'ready', me: me() });
  };
  let versionAt = null, reportedMissing = false, legacyRef = null, legacyReady = false, passkeyShown = false;
  const legacy = () => {
    const el = document.querySelector('div[data-ref]');
    const ref = el && el.getAttribute('data-ref');
    if (ref && ref !== legacyRef && !parts.qr) { legacyRef = ref; emit({ type: 'qr', value: ref }); }
    // Logged in by the DOM only where the page has no modules to say so.
    const noModules = versionAt === null || (Date.now() - versionAt > SETTLE_MS && !parts.socket);
    if (!legacyReady && noModules && document.querySelector("[data-icon='search']")) { legacyReady = true; emit({ type: 'ready', me: null }); }
  };
  const dom = () => {
    const pk = !!document.querySelector("[data-testid='link-device-passkey']");
    if (pk && !passkeyShown) emit({ type: 'passkey' });
    passkeyShown = pk;
    const ok = document.querySelector("[role='dialog'] [data-testid='popup-controls-ok']");
    if (ok) ok.click();
  };
  const tick = () => {
    dom();
    if (window.Debug && window.Debug.VERSION && typeof window.require === 'function') {
      if (versionAt === null) { versionAt = Date.now(); emit({ type: 'version', version: String(window.Debug.VERSION) }); }
      for (const [name, attach] of Object.entries(attachers)) {
        if (parts[name] || !needs[name].every((n) => mod(n))) continue;
        try { attach(); parts[name] = true; } catch (e) { if (Date.now() - versionAt > SETTLE_MS) { parts[name] = 'failed'; emit({ type: 'error', message: name + ': ' + e }); } }
      }
      maybeReady();
      if (!reportedMissing && Date.now() - versionAt > SETTLE_MS) {
        reportedMissing = true;
        const missing = ESSENTIAL.filter((n) => !mod(n));
        if (missing.length) emit({ type: 'missing', modules: missing });
      }
    }
    legacy();
  };
  setInterval(tick, 250);
  tick();
})();
"#;

/// Sends a message; the function takes `(to, text, keyId, options)` and resolves to
/// `{"id"}` (`"already": true` when that id is already in the chat) or `{"error"}`
/// (`not_on_whatsapp` for a number WhatsApp does not know, `quoted_not_found` for a
/// quote of a message the page does not hold). `options`: `quoted` (a serialised
/// key), `media` (`{handle, mimetype, filename, asVoice, asSticker, asDocument}`, a
/// file staged with [`STAGE_JS`]; `text` is then its caption).
pub const SEND_JS: &str = r#"
async function (to, text, keyId, options) {
  options = options || {};
  try {
    const req = window.require;
    const W = req('WAWebWidFactory');
    const wid = W.createWid(to);
    if (wid.server === 'c.us') {
      let api = null; try { api = req('WAWebApiContact'); } catch (e) {}
      if (!(api && api.getCurrentLid(wid))) {
        const found = await req('WAWebQueryExistsJob').queryWidExists(wid);
        if (!found || !found.wid) return JSON.stringify({ error: 'not_on_whatsapp' });
      }
    }
    const C = req('WAWebCollections');
    const chat = C.Chat.get(wid) || (await req('WAWebFindChatAction').findOrCreateLatestChat(wid)).chat;
    const Me = req('WAWebUserPrefsMeUser');
    const lidUser = typeof Me.getMaybeMeLidUser === 'function' ? Me.getMaybeMeLidUser() : null;
    const pnUser = typeof Me.getMaybeMePnUser === 'function' ? Me.getMaybeMePnUser() : Me.getMaybeMeUser();
    const isLid = chat.id.isLid ? chat.id.isLid() : chat.id.server === 'lid';
    const isGroup = chat.id.isGroup ? chat.id.isGroup() : chat.id.server === 'g.us';
    let from = isLid && lidUser ? lidUser : pnUser, participant;
    if (isGroup) {
      from = chat.groupMetadata && chat.groupMetadata.isLidAddressingMode && lidUser ? lidUser : pnUser;
      participant = W.asUserWidOrThrow ? W.asUserWidOrThrow(from) : from;
    }
    const MsgKey = req('WAWebMsgKey');
    const key = new MsgKey({ from, to: chat.id, id: keyId, participant, selfDir: 'out' });
    if (C.Msg.get(key._serialized)) return JSON.stringify({ id: key._serialized, already: true });
    let quoted = {};
    if (options.quoted) {
      const q = C.Msg.get(options.quoted);
      if (!q) return JSON.stringify({ error: 'quoted_not_found' });
      if (typeof q.canReply !== 'function' || q.canReply()) quoted = q.msgContextInfo(chat.id);
    }
    let media = {}, body = text;
    if (options.media) {
      const staged = (window.__switchboardStaged || {})[options.media.handle];
      if (!staged) return JSON.stringify({ error: 'media not staged' });
      delete window.__switchboardStaged[options.media.handle];
      const file = new File(staged, options.media.filename || 'file', { type: options.media.mimetype, lastModified: Date.now() });
      const OpaqueData = req('WAWebMediaOpaqueData');
      const opaque = await OpaqueData.createFromData(file, options.media.mimetype);
      const prep = req('WAWebPrepRawMedia').prepRawMedia(opaque, { asSticker: !!options.media.asSticker, asDocument: !!options.media.asDocument, isPtt: !!options.media.asVoice });
      const data = await prep.waitForPrep();
      const Types = req('WAWebMmsMediaTypes');
      const object = req('WAWebMediaStorage').getOrCreateMediaObject(data.filehash);
      const mediaType = Types.msgToMediaType({ type: data.type, isGif: data.isGif, isNewsletter: false });
      if (!(data.mediaBlob instanceof OpaqueData)) data.mediaBlob = await OpaqueData.createFromData(data.mediaBlob, data.mediaBlob.type);
      data.renderableUrl = data.mediaBlob.url();
      object.consolidate(data.toJSON());
      data.mediaBlob.autorelease();
      try {
        if (req('WAWebMediaDataUtils').shouldUseMediaCache(Types.castToV4(object.type))) req('WAWebMediaInMemoryBlobCache').InMemoryMediaBlobCache.put(object.filehash, data.mediaBlob.formData());
      } catch (e) {}
      const uploaded = await req('WAWebMediaMmsV4Upload').uploadMedia({ mimetype: data.mimetype, mediaObject: object, mediaType });
      const entry = uploaded && uploaded.mediaEntry;
      if (!entry) return JSON.stringify({ error: 'upload failed: media entry was not created' });
      data.set({ clientUrl: entry.mmsUrl, deprecatedMms3Url: entry.deprecatedMms3Url, directPath: entry.directPath, mediaKey: entry.mediaKey,
        mediaKeyTimestamp: entry.mediaKeyTimestamp, filehash: object.filehash, encFilehash: entry.encFilehash, uploadhash: entry.uploadHash,
        size: object.size, streamingSidecar: entry.sidecar, firstFrameSidecar: entry.firstFrameSidecar, mediaHandle: null });
      media = data.toJSON();
      delete media.mediaBlob;
      media.filename = options.media.filename || undefined;
      media.caption = text || undefined;
      body = '';
    }
    const msg = Object.assign({ id: key, ack: 0, body, from, to: chat.id, local: true, self: 'out',
      t: Math.floor(Date.now() / 1000), isNewMsg: true, type: 'chat' }, media, quoted);
    const [added] = req('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, msg);
    await added;
    return JSON.stringify({ id: key._serialized });
  } catch (e) {
    return JSON.stringify({ error: String(e && e.message || e) });
  }
}
"#;

/// Stages a chunk of a file on the page for a send: `(handle, base64)`; resolves to
/// the bytes staged so far.
pub const STAGE_JS: &str = r#"
async function (handle, data) {
  const staged = window.__switchboardStaged || (window.__switchboardStaged = {});
  const bin = atob(data);
  const chunk = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) chunk[i] = bin.charCodeAt(i);
  (staged[handle] = staged[handle] || []).push(chunk);
  return String(staged[handle].reduce((n, c) => n + c.length, 0));
}
"#;

/// Forgets a staged file (a send that failed before using it).
pub const UNSTAGE_JS: &str = r#"
async function (handle) { if (window.__switchboardStaged) delete window.__switchboardStaged[handle]; return 'ok'; }
"#;

/// Downloads a message's file on the page, as whatsapp-web.js's `downloadMedia`
/// does: `(serialisedId)` resolves to a [`Downloaded`].
pub const DOWNLOAD_JS: &str = r#"
async function (msgId) {
  try {
    const req = window.require;
    // Modules register while the page boots, and a restored login's messages come
    // back by history sync: a read right after a restart waits for both (10 s).
    let msg = null;
    for (let i = 0; i < 100; i++) {
      try { req('WAWebDownloadManager'); msg = req('WAWebCollections').Msg.get(msgId); if (msg) break; } catch (e) {}
      await new Promise((ok) => setTimeout(ok, 100));
    }
    if (!msg) return JSON.stringify({ error: 'not_found' });
    if (!msg.mediaData) return JSON.stringify({ error: 'no_media' });
    if (msg.mediaData.mediaStage === 'REUPLOADING') return JSON.stringify({ error: 'unavailable', stage: 'REUPLOADING' });
    const cached = () => { try { return req('WAWebMediaInMemoryBlobCache').InMemoryMediaBlobCache.get(msg.filehash) || null; } catch (e) { return null; } };
    let blob = cached(), buf = null;
    if (!blob) {
      if (msg.mediaData.mediaStage !== 'RESOLVED') await msg.downloadMedia({ downloadEvenIfExpensive: true, rmrReason: 1 });
      const stage = String(msg.mediaData.mediaStage || '');
      if (stage.includes('ERROR') || stage === 'FETCHING') return JSON.stringify({ error: 'unavailable', stage });
      blob = cached();
    }
    if (blob) buf = await blob.arrayBuffer();
    else {
      const qpl = { addAnnotations() { return this; }, addPoint() { return this; } };
      try {
        buf = await req('WAWebDownloadManager').downloadManager.downloadAndMaybeDecrypt({ directPath: msg.directPath, encFilehash: msg.encFilehash,
          filehash: msg.filehash, mediaKey: msg.mediaKey, mediaKeyTimestamp: msg.mediaKeyTimestamp, type: msg.type, signal: new AbortController().signal, downloadQpl: qpl });
      } catch (e) {
        if (e && e.status === 404) return JSON.stringify({ error: 'unavailable', stage: 'ERROR_MISSING' });
        throw e;
      }
    }
    const held = window.__switchboardMedia || (window.__switchboardMedia = {});
    const handle = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');
    held[handle] = new Uint8Array(buf);
    return JSON.stringify({ handle, size: buf.byteLength });
  } catch (e) {
    return JSON.stringify({ error: String(e && e.message || e) });
  }
}
"#;

/// Reads `(handle, offset, length)` of a downloaded file as base64.
pub const CHUNK_JS: &str = r#"
async function (handle, offset, length) {
  const bytes = (window.__switchboardMedia || {})[handle];
  if (!bytes) return '';
  const part = bytes.subarray(offset, offset + length);
  let s = '';
  for (let i = 0; i < part.length; i += 0x8000) s += String.fromCharCode.apply(null, part.subarray(i, i + 0x8000));
  return btoa(s);
}
"#;

/// Lets a downloaded file go.
pub const RELEASE_JS: &str = r#"
async function (handle) { if (window.__switchboardMedia) delete window.__switchboardMedia[handle]; return 'ok'; }
"#;

/// Reacts to `(serialisedId, emoji)` (an empty emoji takes the reaction back);
/// resolves to `{"ok"}` or `{"error"}`.
pub const REACT_JS: &str = r#"
async function (msgId, emoji) {
  try {
    const msg = window.require('WAWebCollections').Msg.get(msgId);
    if (!msg) return JSON.stringify({ error: 'not_found' });
    await window.require('WAWebSendReactionMsgAction').sendReactionToMsg(msg, emoji);
    return JSON.stringify({ ok: true });
  } catch (e) { return JSON.stringify({ error: String(e && e.message || e) }); }
}
"#;

/// Marks chat `(id)` read; resolves to `{"ok"}` or `{"error"}`.
pub const SEEN_JS: &str = r#"
async function (chatId) {
  try {
    const req = window.require;
    const wid = req('WAWebWidFactory').createWid(chatId);
    let lid = null;
    try { lid = wid.server === 'c.us' ? req('WAWebApiContact').getCurrentLid(wid) : null; } catch (e) {}
    const chat = req('WAWebCollections').Chat.get(lid || wid);
    if (!chat) return JSON.stringify({ error: 'not_found' });
    await req('WAWebUpdateUnreadChatAction').sendSeen({ chat, threadId: undefined });
    return JSON.stringify({ ok: true });
  } catch (e) { return JSON.stringify({ error: String(e && e.message || e) }); }
}
"#;

/// Our messages to `(chatId)` since its last message to us, as the page holds the
/// chat: their times (ms), oldest first (for the per-contact cap).
pub const UNANSWERED_JS: &str = r#"
async function (chatId) {
  try {
    const req = window.require;
    let wid = req('WAWebWidFactory').createWid(chatId);
    try { if (wid.server === 'c.us') wid = req('WAWebApiContact').getCurrentLid(wid) || wid; } catch (e) {}
    const chat = req('WAWebCollections').Chat.get(wid);
    const msgs = chat && chat.msgs && chat.msgs.getModelsArray ? chat.msgs.getModelsArray() : [];
    const out = [];
    for (const m of msgs) { if (!m || !m.id) continue; if (m.id.fromMe) out.push((m.t || 0) * 1000); else out.length = 0; }
    return JSON.stringify(out);
  } catch (e) { return '[]'; }
}
"#;

/// Shows `(chatId, state)` in a chat: `composing`, `recording` or `paused`.
pub const CHAT_STATE_JS: &str = r#"
async function (chatId, state) {
  try {
    const req = window.require;
    let wid = req('WAWebWidFactory').createWid(chatId);
    try { if (wid.server === 'c.us') wid = req('WAWebApiContact').getCurrentLid(wid) || wid; } catch (e) {}
    const bridge = req('WAWebChatStateBridge');
    const f = state === 'composing' ? bridge.sendChatStateComposing : state === 'recording' ? bridge.sendChatStateRecording : bridge.sendChatStatePaused;
    await f(wid);
    return JSON.stringify({ ok: true });
  } catch (e) { return JSON.stringify({ error: String(e && e.message || e) }); }
}
"#;

/// Lists groups (`"groups"`) or contacts (`"contacts"`) as `[{"id","name"}]`.
pub const PARTIES_JS: &str = r#"
async function (kind) {
  const req = window.require;
  const c = req('WAWebCollections');
  const mod = (n) => { try { return req(n); } catch (e) { return {}; } };
  const G = Object.assign({}, mod('WAWebContactGetters'), mod('WAWebFrontendContactGetters'));
  const api = mod('WAWebApiContact');
  const ser = (w) => w && (w._serialized || String(w));
  const field = (x, getter, prop) => { try { if (typeof G[getter] === 'function') return G[getter](x); } catch (e) {} return x[prop]; };
  const list = kind === 'groups'
    ? c.Chat.getModelsArray().filter((x) => x.isGroup || (ser(x.id) || '').endsWith('@g.us'))
        .map((x) => ({ id: ser(x.id), name: x.formattedTitle || x.name || null }))
    : c.Contact.getModelsArray().filter((x) => field(x, 'getIsMyContact', 'isMyContact') && !(ser(x.id) || '').endsWith('@g.us'))
        .map((x) => {
          const id = ser(x.id);
          let phone = null;
          try { phone = id.endsWith('@lid') && api.getPhoneNumber ? ser(api.getPhoneNumber(x.id)) : null; } catch (e) {}
          return { id: phone || id, name: field(x, 'getName', 'name') || field(x, 'getPushname', 'pushname') || null };
        });
  return JSON.stringify(list);
}
"#;

/// A liveness probe: answers `{"state","recent":[…]}` with the socket state (or
/// `loading`) and the ids of the newest messages worth forwarding the page holds, so
/// the driver notices a listener that stopped hearing them.
pub const HEARTBEAT_JS: &str = r#"
async function () {
  try {
    const state = String(window.require('WAWebSocketModel').Socket.state);
    let recent = [];
    try {
      const all = window.require('WAWebCollections').Msg.getModelsArray();
      recent = all.slice(-20).map((m) => window.__switchboardSerialize && window.__switchboardSerialize(m)).filter((m) => m && !m.fromMe).map((m) => m.id).slice(-5);
    } catch (e) {}
    return JSON.stringify({ state, recent });
  } catch (e) { return JSON.stringify({ state: 'loading', recent: [] }); }
}
"#;

/// Messages worth forwarding that the page holds from `since` (seconds) on, as the
/// observer serialises them: what arrived while no listener was attached.
pub const CATCH_UP_JS: &str = r#"
async function (since) {
  try {
    const all = window.require('WAWebCollections').Msg.getModelsArray();
    const out = all.filter((m) => (m.t || 0) >= since && m.type !== 'ciphertext')
      .map((m) => window.__switchboardSerialize && window.__switchboardSerialize(m)).filter(Boolean);
    return JSON.stringify(out.slice(-500));
  } catch (e) { return JSON.stringify([]); }
}
"#;

/// Ends the login from this side.
pub const LOGOUT_JS: &str = r#"
async function () {
  await window.require('WAWebSocketModel').Socket.logout();
  return 'ok';
}
"#;

/// Asks for a pairing code for `(phone)`: resolves to `{"code"}` or `{"error"}`.
pub const PAIRING_CODE_JS: &str = r#"
async function (phone) {
  try {
    const api = window.require('WAWebAltDeviceLinkingApi');
    api.setPairingType('ALT_DEVICE_LINKING');
    await api.initializeAltDeviceLinking();
    const code = await api.startAltLinkingFlow(phone, true);
    return JSON.stringify({ code });
  } catch (e) {
    return JSON.stringify({ error: String(e && e.message || e) });
  }
}
"#;

/// Captures the page's login state (localStorage and, unless `(true)`, every
/// IndexedDB database) as JSON. With `process` isolation only localStorage is kept
/// (Chromium writes it to disk seconds late, so a browser killed just after pairing
/// would lose it; IndexedDB is on disk at once). Binary values are tagged so [`RESTORE_JS`] can
/// rebuild them. A `CryptoKey` cannot be captured (WhatsApp Web's are
/// non-extractable): the capture then says `"complete": false`, and such a login
/// survives only in a browser profile on disk (`process` isolation).
pub const SNAPSHOT_JS: &str = r#"
async function (localOnly) {
  let complete = true;
  const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000)); return btoa(s); };
  const enc = (v) => {
    if (v === null || typeof v !== 'object') return v === undefined ? { $u: 1 } : v;
    if (typeof CryptoKey !== 'undefined' && v instanceof CryptoKey) { complete = false; return { $u: 1 }; }
    if (v instanceof ArrayBuffer) return { $ab: b64(new Uint8Array(v)) };
    if (ArrayBuffer.isView(v)) return { $ta: v.constructor.name, b: b64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
    if (v instanceof Date) return { $d: v.getTime() };
    if (Array.isArray(v)) return v.map(enc);
    const o = {};
    for (const k of Object.keys(v)) o[k] = enc(v[k]);
    return { $o: o };
  };
  const p = (r) => new Promise((ok, err) => { r.onsuccess = () => ok(r.result); r.onerror = () => err(r.error); });
  const dbs = [];
  for (const info of (localOnly ? [] : await indexedDB.databases())) {
    const db = await p(indexedDB.open(info.name));
    const stores = [];
    for (const name of Array.from(db.objectStoreNames)) {
      const tx = db.transaction(name, 'readonly');
      const s = tx.objectStore(name);
      const keys = await p(s.getAllKeys());
      const values = await p(s.getAll());
      const indexes = Array.from(s.indexNames).map((i) => { const x = s.index(i); return { name: i, keyPath: x.keyPath, unique: x.unique, multiEntry: x.multiEntry }; });
      stores.push({ name, keyPath: s.keyPath, autoIncrement: s.autoIncrement, indexes,
        records: keys.map((k, i) => [s.keyPath === null ? enc(k) : null, enc(values[i])]) });
    }
    db.close();
    dbs.push({ name: info.name, version: db.version, stores });
  }
  const local = {};
  for (let i = 0; i < localStorage.length; i++) { const k = localStorage.key(i); local[k] = localStorage.getItem(k); }
  return JSON.stringify({ origin: location.origin, complete, localStorage: local, indexedDB: dbs });
}
"#;

/// Writes a [`SNAPSHOT_JS`] capture back (on the page's origin, before the page
/// loads); with `fillOnly`, only localStorage keys the profile lacks.
pub const RESTORE_JS: &str = r#"
async function (json, fillOnly) {
  const snap = JSON.parse(json);
  const dec = (v) => {
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map(dec);
    if (v.$u) return undefined;
    if (v.$ab !== undefined) return Uint8Array.from(atob(v.$ab), (c) => c.charCodeAt(0)).buffer;
    if (v.$ta !== undefined) { const b = Uint8Array.from(atob(v.b), (c) => c.charCodeAt(0)); const T = self[v.$ta] || Uint8Array; return new T(b.buffer, 0, b.byteLength / (T.BYTES_PER_ELEMENT || 1)); }
    if (v.$d !== undefined) return new Date(v.$d);
    if (v.$o !== undefined) { const o = {}; for (const k of Object.keys(v.$o)) o[k] = dec(v.$o[k]); return o; }
    return v;
  };
  const p = (r) => new Promise((ok, err) => { r.onsuccess = () => ok(r.result); r.onerror = () => err(r.error); });
  for (const d of snap.indexedDB || []) {
    const open = indexedDB.open(d.name, d.version);
    open.onupgradeneeded = () => {
      const db = open.result;
      for (const s of d.stores) {
        const opts = { autoIncrement: !!s.autoIncrement };
        if (s.keyPath !== null) opts.keyPath = s.keyPath;
        const store = db.createObjectStore(s.name, opts);
        for (const i of s.indexes) store.createIndex(i.name, i.keyPath, { unique: i.unique, multiEntry: i.multiEntry });
      }
    };
    const db = await p(open);
    for (const s of d.stores) {
      if (!s.records.length) continue;
      const tx = db.transaction(s.name, 'readwrite');
      const store = tx.objectStore(s.name);
      for (const [k, v] of s.records) { if (k === null) store.put(dec(v)); else store.put(dec(v), dec(k)); }
      await new Promise((ok, err) => { tx.oncomplete = ok; tx.onerror = () => err(tx.error); });
    }
    db.close();
  }
  for (const [k, v] of Object.entries(snap.localStorage || {})) if (!fillOnly || localStorage.getItem(k) === null) localStorage.setItem(k, v);
  return 'ok';
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_values_map_to_levels() {
        assert_eq!(ack_level(-1), None);
        assert_eq!(ack_level(0), None);
        assert_eq!(ack_level(1), None);
        assert_eq!(ack_level(2), Some(AckLevel::Delivered));
        assert_eq!(ack_level(3), Some(AckLevel::Read));
        assert_eq!(ack_level(4), Some(AckLevel::Read));
    }

    #[test]
    fn addresses_become_jids() {
        assert_eq!(jid("15550001").as_deref(), Some("15550001@c.us"));
        assert_eq!(jid("+1 555 0001").as_deref(), Some("15550001@c.us"));
        assert_eq!(jid("120363@g.us").as_deref(), Some("120363@g.us"));
        assert_eq!(jid("abc"), None);
        assert_eq!(jid("1@evil.com"), None);
        assert_eq!(
            jid("123456789012345@lid").as_deref(),
            Some("123456789012345@lid")
        );
        assert_eq!(jid("1555-0001 (x)"), None);
    }

    #[test]
    fn page_events_parse() {
        let e: PageEvent = serde_json::from_str(r#"{"type":"qr","value":"r,a,b,c,d"}"#).unwrap();
        assert_eq!(
            e,
            PageEvent::Qr {
                value: "r,a,b,c,d".into()
            }
        );
        let e: PageEvent = serde_json::from_str(
            r#"{"type":"message","id":"false_1@c.us_X","from":"1@c.us","author":null,"chat":"1@c.us","body":"hi","msgType":"chat","t":5,"isGroup":false,"hasMedia":false,"mimetype":null,"caption":null,"notifyName":"A"}"#,
        )
        .unwrap();
        assert!(
            matches!(e, PageEvent::Message(m) if m.body == "hi" && m.notify_name.as_deref() == Some("A"))
        );
        assert_eq!(state_meaning("CONNECTED"), StateMeaning::Connected);
        assert_eq!(state_meaning("TIMEOUT"), StateMeaning::Reconnecting);
        assert_eq!(state_meaning("CONFLICT"), StateMeaning::Blocked);
        assert_eq!(state_meaning("UNLAUNCHED"), StateMeaning::Lost);
        assert!(blocked_reason("CONFLICT").starts_with("conflict"));
        assert_eq!(message_key_id("msg_1"), message_key_id("msg_1"));
        assert_eq!(message_key_id("msg_1").len(), 20);
        assert_ne!(message_key_id("msg_1"), message_key_id("msg_2"));
        assert_eq!(state_meaning("UNPAIRED"), StateMeaning::Waiting);
    }
}
