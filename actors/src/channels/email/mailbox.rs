//! The IDLE connection of one mailbox: log in, bring every followed folder up to
//! date, then wait on IDLE (re-issued before the server's 29-minute limit, which also
//! proves the socket alive) or poll where the server has no IDLE.
//!
//! # Nothing missed, nothing twice
//! Each folder's position (UIDVALIDITY, the last UID reported, HIGHESTMODSEQ) is in
//! `mailbox_folders`. New mail is fetched from the position on, reported as
//! `Inbound` under the id `folder/uidvalidity/uid` (the session actor stores each id
//! once), and the position moves only once the last of a batch is committed: a crash
//! at any point fetches again what was not committed, never skips it.
//!
//! A new UIDVALIDITY means the server renumbered the folder: the old position is
//! meaningless, so the folder restarts from its current end with one
//! `MailboxReset`, and its old mail is not reported again. The first connect
//! reports nothing old, or the last `backfill` days.
//!
//! With CONDSTORE, flag changes since the stored HIGHESTMODSEQ become `Updated`; with
//! QRESYNC, expunges become `Deleted` (VANISHED). Servers without them report new
//! mail only.

use super::config::{Backfill, EmailConfig};
use super::imap::{self, ImapError, Session};
use super::parse;
use crate::channels::{ChannelEvent, InboundMessage};
use crate::clock;
use crate::storage::{FolderPosition, Store};
use async_imap::types::{Fetch, Flag, UnsolicitedResponse};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// UIDs fetched per round trip (and committed before the position moves).
const BATCH: usize = 50;
/// How long one folder's sync may take before the connection is given up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a short command (DONE, NOOP, SELECT) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long reported mail may take to be committed by the session actor.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the server can do, from its capabilities.
#[derive(Debug, Clone, Copy, Default)]
pub struct Abilities {
    pub idle: bool,
    pub condstore: bool,
    pub qresync: bool,
}

/// One followed folder, while connected.
#[derive(Debug)]
struct Folder {
    name: String,
    position: Option<FolderPosition>,
    /// Flags last seen per UID (so a CHANGEDSINCE answer that changes nothing
    /// reports nothing).
    flags: HashMap<u32, Vec<String>>,
}

/// What the watcher needs.
#[derive(Debug, Clone)]
pub struct Watch {
    pub session_id: String,
    pub store: Store,
    /// Where received attachments are kept, and for which tenant.
    pub media: Option<(crate::media::MediaStore, String)>,
    pub config: EmailConfig,
    pub settings: super::Settings,
    /// This replica's leases, which fence saved positions (`None`: one process).
    pub cluster: Option<crate::cluster::Cluster>,
}

/// Why a connected mailbox stopped.
pub type Outcome = Result<(), ImapError>;

impl Watch {
    /// One connection's life: login, sync, IDLE until an error (or `stop`).
    pub async fn connected(
        &self,
        credentials: &imap::Credentials,
        events: &mpsc::Sender<ChannelEvent>,
        ready: &mut bool,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Outcome {
        let mut s = imap::connect(&self.config.imap, credentials).await?;
        let abilities = abilities(&mut s).await?;
        if abilities.qresync {
            timed(s.run_command_and_check_ok("ENABLE QRESYNC")).await?;
        }
        let mut folders = Vec::with_capacity(self.config.folders.len());
        for name in &self.config.folders {
            let position = self
                .store
                .folder_position(&self.session_id, name)
                .await
                .map_err(|e| ImapError::Network(format!("positions unreadable: {e}")))?;
            folders.push(Folder {
                name: name.clone(),
                position,
                flags: HashMap::new(),
            });
        }
        for f in &mut folders {
            self.sync(&mut s, f, abilities, events).await?;
        }
        if !*ready {
            *ready = true;
            let about = serde_json::json!({
                "imap": { "idle": abilities.idle, "condstore": abilities.condstore, "qresync": abilities.qresync },
                "folders": self.config.folders,
            });
            let _ = events.send(ChannelEvent::About(about)).await;
            let _ = events.send(ChannelEvent::Ready).await;
        }
        let watched = folders[0].name.clone();
        loop {
            if folders.len() > 1 {
                timed(s.select(&watched)).await?;
            }
            // Changes that came in while syncing are already queued: sync again first.
            if !announced(|| s.unsolicited_responses.try_recv().ok()) {
                let wait = if abilities.idle {
                    self.settings.idle_renew.min(if folders.len() > 1 {
                        self.settings.poll_interval
                    } else {
                        self.settings.idle_renew
                    })
                } else {
                    self.settings.poll_interval
                };
                s = if abilities.idle {
                    let unsolicited = s.unsolicited_responses.clone();
                    let mut idle = s.idle();
                    timed(idle.init()).await?;
                    if !announced(|| unsolicited.try_recv().ok()) {
                        let (wait_for, interrupt) = idle.wait_with_timeout(wait);
                        tokio::select! {
                            r = wait_for => { r.map_err(ImapError::of)?; }
                            () = stop.cancelled() => return Ok(()),
                        }
                        drop(interrupt);
                    }
                    timed(idle.done()).await?
                } else {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stop.cancelled() => return Ok(()),
                    }
                    timed(s.noop()).await?;
                    s
                };
            }
            for f in &mut folders {
                self.sync(&mut s, f, abilities, events).await?;
            }
        }
    }

    /// Brings one folder up to date.
    async fn sync(
        &self,
        s: &mut Session,
        f: &mut Folder,
        abilities: Abilities,
        events: &mpsc::Sender<ChannelEvent>,
    ) -> Outcome {
        tokio::time::timeout(SYNC_TIMEOUT, self.sync_now(s, f, abilities, events))
            .await
            .map_err(|_| ImapError::Network(format!("syncing `{}` timed out", f.name)))?
    }

    async fn sync_now(
        &self,
        s: &mut Session,
        f: &mut Folder,
        abilities: Abilities,
        events: &mpsc::Sender<ChannelEvent>,
    ) -> Outcome {
        let selected = if abilities.condstore {
            timed(s.select_condstore(&f.name)).await
        } else {
            timed(s.select(&f.name)).await
        };
        let mailbox = selected.map_err(|e| match e {
            ImapError::Protocol(t) => {
                ImapError::Protocol(format!("folder `{}` cannot be opened: {t}", f.name))
            }
            other => other,
        })?;
        let validity = i64::from(mailbox.uid_validity.unwrap_or(0));
        let modseq = mailbox.highest_modseq.map(|m| m as i64);
        let top = match mailbox.uid_next {
            Some(n) => i64::from(n) - 1,
            None => highest_uid(s).await?,
        };
        let mut position = match f.position.clone() {
            None => {
                let start = FolderPosition {
                    folder: f.name.clone(),
                    uid_validity: validity,
                    last_uid: top,
                    highest_modseq: modseq,
                };
                if let Backfill::Days(days) = self.config.backfill {
                    let since = clock::now_ms() - i64::from(days) * 86_400_000;
                    let query = format!("SINCE {}", imap_date(since));
                    let uids = timed(s.uid_search(query)).await?;
                    let mut uids: Vec<u32> = uids.into_iter().collect();
                    uids.sort_unstable();
                    self.report(s, f, &uids, validity, events).await?;
                }
                self.save(f, start).await?;
                return Ok(());
            }
            Some(p) if p.uid_validity != validity => {
                tracing::warn!(folder = %f.name, before = p.uid_validity, now = validity, "UIDVALIDITY changed; the folder restarts from its end");
                let data = serde_json::json!({
                    "folder": f.name,
                    "uid_validity": validity,
                    "previous_uid_validity": p.uid_validity,
                });
                let _ = events.send(ChannelEvent::MailboxReset(data)).await;
                f.flags.clear();
                let start = FolderPosition {
                    folder: f.name.clone(),
                    uid_validity: validity,
                    last_uid: top,
                    highest_modseq: modseq,
                };
                self.save(f, start).await?;
                return Ok(());
            }
            Some(p) => p,
        };
        if abilities.condstore
            && position.last_uid > 0
            && let (Some(before), Some(now)) = (position.highest_modseq, modseq)
            && now > before
        {
            self.changes(s, f, &position, before, abilities, events)
                .await?;
        }
        if top > position.last_uid {
            let query = format!("{}:*", position.last_uid + 1);
            let uids = timed(s.uid_search(format!("UID {query}"))).await?;
            let mut uids: Vec<u32> = uids
                .into_iter()
                .filter(|u| i64::from(*u) > position.last_uid)
                .collect();
            uids.sort_unstable();
            for chunk in uids.chunks(BATCH) {
                self.report(s, f, chunk, validity, events).await?;
                position.last_uid = i64::from(*chunk.last().expect("chunks are not empty"));
                self.save(f, position.clone()).await?;
            }
        }
        position.last_uid = position.last_uid.max(top);
        position.highest_modseq = modseq.or(position.highest_modseq);
        if f.position.as_ref() != Some(&position) {
            self.save(f, position).await?;
        }
        Ok(())
    }

    /// Flag changes (and, with QRESYNC, expunges) since `modseq` among the messages
    /// already reported.
    async fn changes(
        &self,
        s: &mut Session,
        f: &mut Folder,
        position: &FolderPosition,
        modseq: i64,
        abilities: Abilities,
        events: &mpsc::Sender<ChannelEvent>,
    ) -> Outcome {
        let vanished = if abilities.qresync { " VANISHED" } else { "" };
        let query = format!("(UID FLAGS) (CHANGEDSINCE {modseq}{vanished})");
        let fetched: Vec<Fetch> = timed(async {
            s.uid_fetch(format!("1:{}", position.last_uid), query)
                .await?
                .try_collect()
                .await
        })
        .await?;
        for m in fetched {
            let Some(uid) = m.uid.filter(|u| i64::from(*u) <= position.last_uid) else {
                continue;
            };
            let flags: Vec<String> = m.flags().map(|f| flag_name(&f)).collect();
            if f.flags.get(&uid) == Some(&flags) {
                continue;
            }
            f.flags.insert(uid, flags.clone());
            let change = serde_json::json!({
                "folder": f.name,
                "seen": flags.iter().any(|x| x == "\\Seen"),
                "flags": flags,
            });
            let external_id = external_id(&f.name, position.uid_validity, uid);
            let _ = events
                .send(ChannelEvent::Updated {
                    external_id,
                    change,
                })
                .await;
        }
        for uid in vanished_uids(s) {
            if i64::from(uid) > position.last_uid {
                continue;
            }
            f.flags.remove(&uid);
            let external_id = external_id(&f.name, position.uid_validity, uid);
            let _ = events.send(ChannelEvent::Deleted { external_id }).await;
        }
        Ok(())
    }

    /// Fetches and reports `uids` (ascending), then waits until the last is committed.
    async fn report(
        &self,
        s: &mut Session,
        f: &mut Folder,
        uids: &[u32],
        validity: i64,
        events: &mpsc::Sender<ChannelEvent>,
    ) -> Outcome {
        for chunk in uids.chunks(BATCH) {
            let set = uid_set(chunk);
            // Sizes first: a message over the limit is fetched without its body.
            let sizes: Vec<Fetch> = timed(async {
                s.uid_fetch(&set, "(UID RFC822.SIZE)")
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
            let max = self.settings.max_message_bytes;
            let (mut small, mut large) = (Vec::new(), Vec::new());
            for m in &sizes {
                if let Some(uid) = m.uid {
                    if u64::from(m.size.unwrap_or(0)) > max {
                        large.push(uid);
                    } else {
                        small.push(uid);
                    }
                }
            }
            let mut fetched = Vec::new();
            for (uids, query) in [
                (&small, "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"),
                (
                    &large,
                    "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])",
                ),
            ] {
                if uids.is_empty() {
                    continue;
                }
                let got: Vec<Fetch> =
                    timed(async { s.uid_fetch(uid_set(uids), query).await?.try_collect().await })
                        .await?;
                fetched.extend(got);
            }
            fetched.sort_by_key(|m| m.uid);
            let mut last = None;
            for m in &fetched {
                let Some(uid) = m.uid.filter(|u| chunk.contains(u)) else {
                    continue;
                };
                let flags: Vec<String> = m.flags().map(|f| flag_name(&f)).collect();
                f.flags.insert(uid, flags.clone());
                let mut message = inbound(&f.name, validity, uid, m, flags, max);
                if !message.attachments.is_empty()
                    && let (Some(media), Some(raw)) = (&self.media, m.body())
                {
                    keep_attachments(media, &mut message, raw).await;
                }
                last = Some(message.external_id.clone());
                if events.send(ChannelEvent::Inbound(message)).await.is_err() {
                    return Err(ImapError::Network("the session stopped".into()));
                }
            }
            if let Some(id) = last {
                self.committed(&id).await?;
            }
        }
        Ok(())
    }

    /// Waits until the session actor has stored `external_id` (it stores in order, so
    /// everything reported before it is stored too).
    async fn committed(&self, external_id: &str) -> Outcome {
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        let mut wait = Duration::from_millis(5);
        loop {
            match self
                .store
                .message_by_external_id(&self.session_id, external_id)
                .await
            {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not check a stored message"),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ImapError::Network(
                    "reported mail was not stored in time".into(),
                ));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(200));
        }
    }

    async fn save(&self, f: &mut Folder, p: FolderPosition) -> Outcome {
        let fence = self.cluster.as_ref().map(|c| c.fence(&self.session_id));
        let saved = self
            .store
            .set_folder_position(&self.session_id, &p, fence.as_ref())
            .await
            .map_err(|e| ImapError::Network(format!("position not saved: {e}")))?;
        if !saved {
            // Another replica runs this mailbox now: stop here, moving nothing.
            crate::sessions::session::fenced(&self.session_id, "mailbox position");
            return Err(ImapError::Network(
                "another replica holds this session now".into(),
            ));
        }
        f.position = Some(p);
        Ok(())
    }
}

/// The message a fetch reports. Unreadable mail is still reported (its text empty,
/// `meta.parse_error` saying why), so the folder's position can move past it.
fn inbound(
    folder: &str,
    validity: i64,
    uid: u32,
    m: &Fetch,
    flags: Vec<String>,
    max_bytes: u64,
) -> InboundMessage {
    let size = m.size.unwrap_or(0);
    let too_large = u64::from(size) > max_bytes;
    let raw = if too_large { m.header() } else { m.body() }.unwrap_or_default();
    let received = m
        .internal_date()
        .map(|d| d.timestamp_millis())
        .unwrap_or_else(clock::now_ms);
    let mut meta = serde_json::json!({
        "folder": folder,
        "uid": uid,
        "uid_validity": validity,
        "size": size,
        "flags": flags,
        "seen": flags.iter().any(|x| x == "\\Seen"),
    });
    if too_large {
        meta["too_large"] = true.into();
        meta["max_bytes"] = max_bytes.into();
    }
    let mut message = InboundMessage {
        external_id: external_id(folder, validity, uid),
        sent_at: received,
        ..Default::default()
    };
    match parse::parse(raw) {
        Ok(p) => {
            message.from = p
                .from
                .as_ref()
                .map(|a| a.address.clone())
                .unwrap_or_default();
            message.text = p.text;
            message.sent_at = p.date.unwrap_or(received);
            message.subject = p.subject;
            message.thread_id = Some(p.thread_id);
            message.attachments = p.attachments;
            message.bounced = p.bounced.iter().map(|b| b.address.clone()).collect();
            if !p.bounced.is_empty() {
                meta["bounced"] = serde_json::json!(p.bounced);
            }
            meta["message_id"] = p.message_id.into();
            meta["message_id_missing"] = p.message_id_missing.into();
            meta["in_reply_to"] = p.in_reply_to.into();
            meta["references"] = p.references.into();
            meta["from_name"] = p.from.and_then(|a| a.name).into();
            meta["to"] = serde_json::json!(p.to);
            meta["cc"] = serde_json::json!(p.cc);
            meta["reply_to"] = serde_json::json!(p.reply_to);
            meta["text_from_html"] = p.text_from_html.into();
            meta["text_truncated"] = p.text_truncated.into();
        }
        Err(e) => {
            tracing::warn!(folder, uid, error = %e, "unreadable message reported without text");
            meta["parse_error"] = e.to_string().into();
        }
    }
    message.meta = meta;
    message
}

/// Puts a received message's attachments in the media store (a message already
/// received stores nothing twice: the store is content-addressed).
async fn keep_attachments(
    (store, tenant_id): &(crate::media::MediaStore, String),
    message: &mut InboundMessage,
    raw: &[u8],
) {
    for a in &mut message.attachments {
        let Some((_, bytes)) = parse::attachment(raw, a.index) else {
            continue;
        };
        let new = crate::media::NewMedia {
            filename: a.filename.clone(),
            mimetype: Some(a.mime_type.clone()),
        };
        let one =
            futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from(bytes))]);
        match store.ingest(tenant_id, new, one).await {
            Ok(row) => {
                a.media_id = Some(row.id);
                a.sha256 = Some(row.sha256);
            }
            Err(e) => {
                tracing::warn!(error = %e, index = a.index, "attachment not kept in the media store");
                a.media_error = Some(match e {
                    crate::media::MediaError::TooLarge { .. } => "too_large".into(),
                    crate::media::MediaError::TenantFull { .. } => "tenant_full".into(),
                    crate::media::MediaError::Empty => "empty".into(),
                    other => other.to_string(),
                });
            }
        }
    }
}

/// The id a message is stored under.
pub fn external_id(folder: &str, validity: i64, uid: u32) -> String {
    format!("{folder}/{validity}/{uid}")
}

/// Reads an id made by [`external_id`]: folder, UIDVALIDITY, UID.
pub fn parse_external_id(id: &str) -> Option<(&str, i64, u32)> {
    let (rest, uid) = id.rsplit_once('/')?;
    let (folder, validity) = rest.rsplit_once('/')?;
    Some((folder, validity.parse().ok()?, uid.parse().ok()?))
}

pub async fn abilities(s: &mut Session) -> Result<Abilities, ImapError> {
    let caps = timed(s.capabilities()).await?;
    Ok(Abilities {
        idle: caps.has_str("IDLE"),
        condstore: caps.has_str("CONDSTORE") || caps.has_str("QRESYNC"),
        qresync: caps.has_str("QRESYNC"),
    })
}

async fn highest_uid(s: &mut Session) -> Result<i64, ImapError> {
    let uids = timed(s.uid_search("ALL")).await?;
    Ok(uids.into_iter().max().map_or(0, i64::from))
}

/// Whether new mail or an expunge was announced after the last SELECT (which takes
/// its own EXISTS): mail that arrived while the folders were synced, or while IDLE
/// was starting (async-imap queues what comes before `+ idling` as unsolicited).
fn announced(mut next: impl FnMut() -> Option<UnsolicitedResponse>) -> bool {
    let mut changed = false;
    while let Some(r) = next() {
        changed |= match r {
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Expunge(_) => true,
            UnsolicitedResponse::Other(data) => {
                matches!(data.parsed(), imap_proto::Response::Vanished { .. })
            }
            _ => false,
        };
    }
    changed
}

/// UIDs the server said vanished (QRESYNC), from the unsolicited responses.
fn vanished_uids(s: &mut Session) -> Vec<u32> {
    let mut out = Vec::new();
    while let Ok(r) = s.unsolicited_responses.try_recv() {
        if let UnsolicitedResponse::Other(data) = r
            && let imap_proto::Response::Vanished { uids, .. } = data.parsed()
        {
            for range in uids {
                out.extend(range.clone());
            }
        }
    }
    out
}

/// A command with the short-command timeout, its error mapped.
async fn timed<T>(f: impl Future<Output = async_imap::error::Result<T>>) -> Result<T, ImapError> {
    tokio::time::timeout(COMMAND_TIMEOUT, f)
        .await
        .map_err(|_| ImapError::Network("the server stopped answering".into()))?
        .map_err(ImapError::of)
}

/// An IMAP sequence set for ascending UIDs (`1:3,7,9:10`).
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        while i + 1 < uids.len() && uids[i + 1] == uids[i] + 1 {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if uids[i] == start {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{}", uids[i]));
        }
        i += 1;
    }
    out
}

/// A flag as IMAP writes it.
fn flag_name(f: &Flag<'_>) -> String {
    match f {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(c) => c.to_string(),
    }
}

/// An IMAP date (`1-Dec-2026`) for SEARCH SINCE.
fn imap_date(unix_ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let ts = jiff::Timestamp::from_millisecond(unix_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let d = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    format!(
        "{}-{}-{}",
        d.day(),
        MONTHS[(d.month() - 1) as usize],
        d.year()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn external_ids_read_back_even_for_folders_with_slashes() {
        let id = external_id("Archive/2026", 42, 7);
        assert_eq!(id, "Archive/2026/42/7");
        assert_eq!(parse_external_id(&id), Some(("Archive/2026", 42, 7)));
        assert_eq!(parse_external_id("INBOX/x/7"), None);
        assert_eq!(parse_external_id("whatsapp-id"), None);
    }

    #[test]
    fn imap_dates_are_day_month_year() {
        assert_eq!(imap_date(1_796_119_200_000), "1-Dec-2026");
        assert_eq!(imap_date(0), "1-Jan-1970");
    }
}
