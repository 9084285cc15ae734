//! A contact's data rights (GDPR articles 15 and 17): everything a tenant holds
//! about one address, exported as one document, or erased.
//!
//! A contact is found by address in its normal form ([`crate::suppression`]):
//! messages whose other party is that address (on their session's channel), the
//! events about those messages or naming the address (`from`, `to`, `address`,
//! `from_phone`), the drafts written to them and the files they sent. Erasure
//! removes message bodies, extras and addresses, deletes drafts and received files,
//! re-seals each event with its personal fields replaced by `[erased]` (the id,
//! type and time stay), and, unless told otherwise, puts the address on the
//! suppression list (source `erasure`). Webhooks already delivered are not
//! recalled: what left the gateway is the receiver's to erase.

use crate::channels::ChannelKind;
use crate::events::body_binding;
use crate::media::MediaStore;
use crate::storage::{ERASED, EventQuery, EventRow, MessageRow, Store, StoreError, SuppressionRow};
use crate::suppression::{self, Scope};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use switchboard_crypto::Keyring;

const PAGE: i64 = 500;

/// Event fields that say who someone is or what they wrote.
const PERSONAL: [&str; 17] = [
    "text",
    "html",
    "caption",
    "from",
    "to",
    "chat",
    "from_phone",
    "chat_phone",
    "subject",
    "address",
    "question",
    "meta",
    "attachments",
    "media",
    "external_id",
    "diagnostic",
    "error",
];

#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Sealing(String),
}

/// The address in its normal form, or why it is not one.
pub fn normal(address: &str) -> Result<String, String> {
    suppression::normalize(Scope::All, address)
}

/// How the audit log names a contact: a hash of the address (a log that kept the
/// address would undo its erasure).
pub fn address_hash(address: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(address.as_bytes())))
}

/// What was found of one contact.
#[derive(Debug, Default)]
struct Found {
    messages: Vec<(MessageRow, String)>,
    events: Vec<(EventRow, Value)>,
    drafts: Vec<crate::storage::DraftRow>,
    media: BTreeSet<String>,
    channels: BTreeSet<String>,
}

/// Whether `peer` (written on `channel`) is the contact `address`.
fn is(address: &str, channel: Option<&str>, peer: &str) -> bool {
    if peer.trim() == address {
        return true;
    }
    let kind = channel.and_then(|c| c.parse::<ChannelKind>().ok());
    match kind {
        Some(k) => suppression::recipients(k, peer)
            .iter()
            .any(|p| p == address),
        None => normal(peer).is_ok_and(|p| p == address),
    }
}

async fn find(
    store: &Store,
    keyring: &Keyring,
    tenant: &str,
    address: &str,
) -> Result<Found, ContactError> {
    let channels: HashMap<String, String> = store
        .list_sessions(tenant)
        .await?
        .into_iter()
        .map(|s| (s.id, s.channel))
        .collect();
    let mut found = Found::default();
    let mut after: Option<String> = None;
    loop {
        let page = store.messages_page(tenant, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for m in page {
            let channel = channels.get(&m.session_id).cloned().unwrap_or_default();
            if is(address, Some(&channel), &m.peer) {
                found.channels.insert(channel.clone());
                found.messages.push((m, channel));
            }
        }
    }
    let ids: BTreeSet<&str> = found.messages.iter().map(|(m, _)| m.id.as_str()).collect();
    let mut q = EventQuery {
        event_type: None,
        since: None,
        after: None,
        limit: PAGE as u32,
    };
    let mut events = Vec::new();
    loop {
        let page = store.list_events(tenant, &q).await?;
        let Some(last) = page.last() else { break };
        q.after = Some(last.id.clone());
        for e in page {
            let opened = keyring
                .open(&e.body_key_id, &e.body, body_binding(&e.tenant_id, &e.id))
                .map_err(|err| ContactError::Sealing(format!("event {}: {err}", e.id)))?;
            let envelope: Value = serde_json::from_slice(&opened)
                .map_err(|err| ContactError::Sealing(format!("event {}: {err}", e.id)))?;
            let data = &envelope["data"];
            let names = ["from", "to", "address", "from_phone"].iter().any(|k| {
                data[*k]
                    .as_str()
                    .is_some_and(|v| is(address, e.channel.as_deref(), v))
            });
            let about = data["message_id"].as_str().is_some_and(|m| ids.contains(m));
            if names || about {
                if let Some(id) = data["media"]["id"].as_str() {
                    found.media.insert(id.to_owned());
                }
                for a in data["attachments"].as_array().into_iter().flatten() {
                    if let Some(id) = a["media_id"].as_str() {
                        found.media.insert(id.to_owned());
                    }
                }
                if let Some(c) = &e.channel {
                    found.channels.insert(c.clone());
                }
                events.push((e, envelope));
            }
        }
    }
    found.events = events;
    let mut after: Option<String> = None;
    loop {
        let page = store.drafts_page(tenant, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for d in page {
            let channel = channels.get(&d.session_id).cloned();
            if is(address, channel.as_deref(), &d.peer) {
                found.drafts.push(d);
            }
        }
    }
    Ok(found)
}

/// Everything the tenant holds about `address` (its normal form), as one document.
pub async fn export(
    store: &Store,
    keyring: &Keyring,
    tenant: &str,
    address: &str,
) -> Result<Value, ContactError> {
    let found = find(store, keyring, tenant, address).await?;
    let messages: Vec<Value> = found
        .messages
        .iter()
        .map(|(m, channel)| {
            let extras = m.open_extras(keyring);
            json!({
                "id": m.id,
                "session_id": m.session_id,
                "channel": channel,
                "direction": m.direction,
                "peer": m.peer,
                "status": m.status,
                "text": m.open_text(keyring),
                "subject": extras.as_ref().and_then(|x| x.subject.clone()),
                "external_id": m.external_id,
                "error": m.error,
                "created_at": crate::clock::rfc3339(m.created_at),
            })
        })
        .collect();
    let events: Vec<Value> = found.events.into_iter().map(|(_, env)| env).collect();
    let drafts: Vec<Value> = found
        .drafts
        .iter()
        .map(|d| {
            let body = keyring
                .open(
                    &d.body_key_id,
                    &d.body,
                    crate::rag_host::draft_binding(&d.tenant_id, &d.id),
                )
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .unwrap_or(Value::Null);
            json!({
                "id": d.id,
                "session_id": d.session_id,
                "to": d.peer,
                "status": d.status,
                "question": body["question"],
                "text": body["text"],
                "message_id": d.message_id,
                "created_at": crate::clock::rfc3339(d.created_at),
            })
        })
        .collect();
    let mut suppressions = Vec::new();
    for channel in found.channels.iter().map(String::as_str).chain(["*"]) {
        if let Some(e) = store.suppression_for(tenant, channel, address).await?
            && !suppressions.iter().any(|s: &SuppressionRow| s.id == e.id)
        {
            suppressions.push(e);
        }
    }
    Ok(json!({
        "address": address,
        "exported_at": crate::clock::rfc3339(crate::clock::now_ms()),
        "channels": found.channels,
        "messages": messages,
        "events": events,
        "drafts": drafts,
        "media": found.media,
        "suppressions": suppressions,
    }))
}

/// What an erasure changed.
#[derive(Debug, Default, serde::Serialize)]
pub struct Erased {
    pub messages: u64,
    pub events: u64,
    pub drafts: u64,
    pub media: u64,
    /// Suppression entries added (one per channel the contact was seen on).
    pub suppressed: Vec<SuppressionRow>,
}

/// Erases everything the tenant holds about `address` (see the module docs).
pub async fn erase(
    store: &Store,
    keyring: &Keyring,
    media: Option<&MediaStore>,
    tenant: &str,
    address: &str,
    suppress: bool,
) -> Result<Erased, ContactError> {
    let found = find(store, keyring, tenant, address).await?;
    let mut erased = Erased::default();
    // Suppressed first: a send queued meanwhile is refused, not delivered.
    if suppress {
        let channels: Vec<String> = if found.channels.is_empty() {
            vec!["*".into()]
        } else {
            found.channels.iter().cloned().collect()
        };
        for channel in channels {
            let row = SuppressionRow {
                id: crate::ids::new_id(crate::ids::SUPPRESSION),
                tenant_id: tenant.to_owned(),
                channel,
                address: address.to_owned(),
                reason: Some("erased at the contact's request".into()),
                source: "erasure".into(),
                created_at: crate::clock::now_ms(),
            };
            let (entry, new) = store.add_suppression(&row).await?;
            if new {
                erased.suppressed.push(entry);
            }
        }
    }
    let ids: Vec<(String, Option<String>)> = found
        .messages
        .iter()
        .map(|(m, _)| {
            (
                m.id.clone(),
                m.external_id
                    .as_deref()
                    .map(crate::storage::erased_external_id),
            )
        })
        .collect();
    erased.messages = store.erase_messages(tenant, &ids).await?;
    for (e, mut envelope) in found.events {
        if let Some(data) = envelope["data"].as_object_mut() {
            for k in PERSONAL {
                if let Some(v) = data.get_mut(k) {
                    *v = if v.is_string() {
                        Value::from(ERASED)
                    } else {
                        Value::Null
                    };
                }
            }
            data.insert("erased".into(), Value::Bool(true));
        }
        let bytes =
            serde_json::to_vec(&envelope).map_err(|err| ContactError::Sealing(err.to_string()))?;
        let sealed = keyring
            .seal(&bytes, body_binding(tenant, &e.id))
            .map_err(|err| ContactError::Sealing(err.to_string()))?;
        store.replace_event_body(tenant, &e.id, &sealed).await?;
        erased.events += 1;
    }
    let drafts: Vec<String> = found.drafts.iter().map(|d| d.id.clone()).collect();
    erased.drafts = store.delete_drafts(tenant, &drafts).await?;
    if let Some(m) = media {
        for id in &found.media {
            if let Some(row) = store.media(tenant, id).await? {
                m.remove(&row)
                    .await
                    .map_err(|err| ContactError::Sealing(format!("media {id}: {err}")))?;
                erased.media += 1;
            }
        }
    }
    if !store.scrub().await? {
        tracing::warn!(
            "the write-ahead log was busy; erased pages leave it at the next checkpoint"
        );
    }
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_is_matched_however_the_channel_wrote_them() {
        assert!(is("+4915112345678", Some("whatsapp"), "4915112345678@c.us"));
        assert!(is("bob@x.org", Some("email"), "Bob <Bob@X.org>"));
        assert!(is("bob@x.org", Some("email"), "ann@y.org, bob@x.org"));
        assert!(is("+15550100", Some("sim"), "+15550100"));
        assert!(!is("+15550100", Some("sim"), "+15550111"));
        assert!(!is("bob@x.org", Some("email"), "bobby@x.org"));
    }
}
