//! The WhatsApp Web page contract: everything the driver assumes about the remote page.
//!
//! When WhatsApp Web changes, this is the one file to change. The stand-in
//! (`testkit::whatsapp`) implements exactly what is written here, and nothing
//! else in the driver looks at the page.
//!
//! What the driver relies on (as whatsapp-web.js does today):
//! - The page is at [`DEFAULT_URL`]; it is loaded once its `window.Debug.VERSION` is
//!   set and `window.require` resolves WhatsApp Web's own modules.
//! - `WAWebSocketModel.Socket`: `state` (`OPENING`, `PAIRING`, `UNPAIRED`,
//!   `UNPAIRED_IDLE`, `CONNECTED`, `TIMEOUT`, `CONFLICT`, `UNLAUNCHED`, `PROXYBLOCK`,
//!   `TOS_BLOCK`, `SMB_TOS_BLOCK`, `DEPRECATED_VERSION`) with `change:state`;
//!   `hasSynced` with `change:hasSynced` (ready); `logout()`.
//! - `WAWebConnModel.Conn`: `ref` with `change:ref` (a new pairing ref); the QR value is
//!   `ref,staticKeyB64,identityKeyB64,advSecretKey,platform`, the keys read through
//!   `WAWebCompanionRegClientUtils` / `WAWebAdvSignatureApi` / `WAWebUserPrefsInfoStore`
//!   / `WAWebSignalStoreApi` and `WABase64`. `WAWebCmd.Cmd` emits `logout` and has
//!   `refreshQR()`.
//! - `WAWebCollections`: `Msg` emits `add` (new messages, `isNewMsg`) and
//!   `change:ack`; `Chat` and `Contact` list chats/groups and contacts.
//! - Sending: `WAWebWidFactory.createWid`, `WAWebFindChatAction.findOrCreateLatestChat`,
//!   `WAWebMsgKey` and `WAWebSendMsgChatAction.addAndSendMsgToChat`.
//! - Pairing by phone number: `WAWebAltDeviceLinkingApi`
//!   (`setPairingType`, `initializeAltDeviceLinking`, `startAltLinkingFlow`).
//! - Older pages (fallback): the QR ref in `div[data-ref]`, and `[data-icon='search']`
//!   once logged in.
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

/// What the observer reports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PageEvent {
    /// A new QR value to show.
    Qr { value: String },
    /// The socket state changed.
    State { state: String },
    /// Logged in and synced.
    Ready {
        #[serde(default)]
        me: Option<String>,
    },
    /// The account logged this device out.
    Logout,
    /// A new inbound message.
    Message(PageMessage),
    /// A message we sent reached the recipient's device.
    Ack { id: String, ack: i64 },
    /// The observer could not attach (e.g. the page changed).
    Error { message: String },
}

/// A message as the observer serialises it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PageMessage {
    pub id: String,
    pub from: String,
    #[serde(default)]
    pub author: Option<String>,
    pub chat: String,
    #[serde(default)]
    pub body: String,
    #[serde(default, rename = "msgType")]
    pub msg_type: String,
    /// Seconds since the epoch.
    #[serde(default)]
    pub t: i64,
    #[serde(default, rename = "isGroup")]
    pub is_group: bool,
    #[serde(default, rename = "hasMedia")]
    pub has_media: bool,
    #[serde(default)]
    pub mimetype: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default, rename = "notifyName")]
    pub notify_name: Option<String>,
}

/// What a socket state means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateMeaning {
    /// Loading or pairing: keep waiting.
    Waiting,
    /// Waiting for a scan and the QR stopped refreshing by itself: ask for a new one.
    Idle,
    Connected,
    /// The connection is gone or blocked: reconnect.
    Lost,
}

pub fn state_meaning(state: &str) -> StateMeaning {
    match state {
        "CONNECTED" => StateMeaning::Connected,
        "UNPAIRED_IDLE" => StateMeaning::Idle,
        "OPENING" | "PAIRING" | "UNPAIRED" | "SYNCING" | "RESUMING" | "WITHOUT INTERNET" => {
            StateMeaning::Waiting
        }
        // CONFLICT, TIMEOUT, UNLAUNCHED, PROXYBLOCK, TOS_BLOCK, SMB_TOS_BLOCK,
        // DEPRECATED_VERSION and anything new.
        _ => StateMeaning::Lost,
    }
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

/// A WhatsApp id for an address: digits become a user JID (`<digits>@c.us`); an
/// address that already has a server part is kept.
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
        return ok.then(|| a.to_owned());
    }
    let digits: String = a
        .trim_start_matches('+')
        .chars()
        .filter(|c| *c != ' ')
        .collect();
    (digits.len() >= 5 && digits.len() <= 20 && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{digits}@c.us"))
}

/// The observer, run in every new document. Reports [`PageEvent`]s via [`BINDING`].
pub const OBSERVER_JS: &str = r#"
(() => {
  if (window.__switchboardObserver || location.pathname === '/__switchboard_restore') return;
  window.__switchboardObserver = true;
  const emit = (o) => { try { window.__switchboard(JSON.stringify(o)); } catch (e) {} };
  const ser = (w) => (w && (w._serialized || (w.user && w.server && (w.user + '@' + w.server)))) || (w == null ? null : String(w));
  const media = ['image', 'video', 'audio', 'ptt', 'document', 'sticker'];
  let attached = false, legacyRef = null, legacyReady = false;
  const attach = () => {
    const req = window.require;
    const Socket = req('WAWebSocketModel').Socket;
    const Conn = req('WAWebConnModel').Conn;
    const Cmd = req('WAWebCmd').Cmd;
    const Msg = req('WAWebCollections').Msg;
    const B64 = req('WABase64');
    const Reg = Object.assign({}, req('WAWebCompanionRegClientUtils'), req('WAWebAdvSignatureApi'),
      req('WAWebUserPrefsInfoStore'), req('WAWebSignalStoreApi'));
    const qrOf = async (ref) => {
      const reg = await Reg.waSignalStore.getRegistrationInfo();
      const noise = await Reg.waNoiseInfo.get();
      const adv = await Reg.getADVSecretKey();
      return [ref, B64.encodeB64(noise.staticKeyPair.pubKey), B64.encodeB64(reg.identityKeyPair.pubKey), adv, Reg.DEVICE_PLATFORM].join(',');
    };
    const sendQr = (ref) => { if (ref) qrOf(ref).then((value) => emit({ type: 'qr', value }), (e) => emit({ type: 'error', message: 'qr: ' + e })); };
    const me = () => { try { return ser(req('WAWebUserPrefsMeUser').getMaybeMeUser()); } catch (e) { return null; } };
    Conn.on('change:ref', (_c, ref) => sendQr(ref));
    Socket.on('change:state', (_s, state) => {
      emit({ type: 'state', state });
      if (state === 'UNPAIRED_IDLE') { try { Cmd.refreshQR(); } catch (e) {} }
    });
    Socket.on('change:hasSynced', (_s, synced) => { if (synced) emit({ type: 'ready', me: me() }); });
    Cmd.on('logout', () => emit({ type: 'logout' }));
    Msg.on('add', (m) => {
      if (!m || !m.isNewMsg || (m.id && m.id.fromMe)) return;
      const chat = ser(m.id && m.id.remote) || ser(m.from);
      emit({ type: 'message', id: ser(m.id) || String(m.id && m.id.id), from: ser(m.author) || ser(m.from), author: ser(m.author),
        chat, body: m.body || '', msgType: m.type || 'chat', t: m.t || 0, isGroup: !!(m.isGroupMsg || (chat || '').endsWith('@g.us')),
        hasMedia: media.includes(m.type), mimetype: m.mimetype || null, caption: m.caption || null, notifyName: m.notifyName || null });
    });
    Msg.on('change:ack', (m, ack) => { if (m && m.id && m.id.fromMe) emit({ type: 'ack', id: ser(m.id), ack: ack }); });
    emit({ type: 'state', state: Socket.state });
    if (Socket.hasSynced) emit({ type: 'ready', me: me() });
    else if (Conn.ref && Socket.state !== 'CONNECTED') sendQr(Conn.ref);
  };
  const legacy = () => {
    const el = document.querySelector('div[data-ref]');
    const ref = el && el.getAttribute('data-ref');
    if (ref && ref !== legacyRef) { legacyRef = ref; emit({ type: 'qr', value: ref }); }
    if (!legacyReady && document.querySelector("[data-icon='search']")) { legacyReady = true; emit({ type: 'ready', me: null }); }
  };
  const tick = () => {
    if (attached) return;
    if (window.Debug && window.Debug.VERSION && typeof window.require === 'function') {
      try { attach(); attached = true; return; } catch (e) { emit({ type: 'error', message: 'attach: ' + e }); }
    }
    legacy();
  };
  const timer = setInterval(() => { tick(); if (attached) clearInterval(timer); }, 250);
  tick();
})();
"#;

/// Sends a text; the function takes `(to, text)` and resolves to `{"id"}` or `{"error"}`.
pub const SEND_JS: &str = r#"
async function (to, text) {
  try {
    const req = window.require;
    const wid = req('WAWebWidFactory').createWid(to);
    const found = await req('WAWebFindChatAction').findOrCreateLatestChat(wid);
    const chat = found && found.chat ? found.chat : found;
    const MsgKey = req('WAWebMsgKey');
    const meUser = req('WAWebUserPrefsMeUser').getMaybeMeUser();
    const id = new MsgKey({ from: meUser, to: chat.id, id: await MsgKey.newId(), selfDir: 'out' });
    const msg = { id, ack: 0, body: text, from: meUser, to: chat.id, local: true, self: 'out',
      t: Math.floor(Date.now() / 1000), isNewMsg: true, type: 'chat' };
    const [sent, result] = req('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, msg);
    await sent;
    const r = await result;
    if (r && r.messageSendResult && r.messageSendResult !== 'OK') return JSON.stringify({ error: String(r.messageSendResult) });
    return JSON.stringify({ id: id._serialized || id.toString() });
  } catch (e) {
    return JSON.stringify({ error: String(e && e.message || e) });
  }
}
"#;

/// Lists groups (`"groups"`) or contacts (`"contacts"`) as `[{"id","name"}]`.
pub const PARTIES_JS: &str = r#"
async function (kind) {
  const c = window.require('WAWebCollections');
  const ser = (w) => w && (w._serialized || String(w));
  const list = kind === 'groups'
    ? c.Chat.getModelsArray().filter((x) => x.isGroup || (ser(x.id) || '').endsWith('@g.us'))
        .map((x) => ({ id: ser(x.id), name: x.name || x.formattedTitle || null }))
    : c.Contact.getModelsArray().filter((x) => x.isMyContact && !(ser(x.id) || '').endsWith('@g.us'))
        .map((x) => ({ id: ser(x.id), name: x.name || x.pushname || null }));
  return JSON.stringify(list);
}
"#;

/// A liveness probe: answers with the socket state (or `loading`).
pub const HEARTBEAT_JS: &str = r#"
async function () {
  try { return String(window.require('WAWebSocketModel').Socket.state); } catch (e) { return 'loading'; }
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

/// Captures the page's login state (localStorage and every IndexedDB database) as
/// JSON. Binary values are tagged so [`RESTORE_JS`] can rebuild them.
pub const SNAPSHOT_JS: &str = r#"
async function () {
  const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000)); return btoa(s); };
  const enc = (v) => {
    if (v === null || typeof v !== 'object') return v === undefined ? { $u: 1 } : v;
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
  for (const info of (await indexedDB.databases())) {
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
  return JSON.stringify({ origin: location.origin, localStorage: local, indexedDB: dbs });
}
"#;

/// Writes a [`SNAPSHOT_JS`] capture back (on the page's origin, before the page loads).
pub const RESTORE_JS: &str = r#"
async function (json) {
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
  for (const [k, v] of Object.entries(snap.localStorage || {})) localStorage.setItem(k, v);
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
        assert_eq!(state_meaning("TIMEOUT"), StateMeaning::Lost);
        assert_eq!(state_meaning("UNPAIRED"), StateMeaning::Waiting);
    }
}
