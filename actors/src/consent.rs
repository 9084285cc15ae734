//! A tenant's consent and retention settings (`GET|PUT /v1/consent`), and what
//! they decide: which inbound messages are opt-outs, whether e-mail carries
//! `List-Unsubscribe`, how long messages, events and media are kept.
//!
//! Opt-outs: a message whose whole text (for e-mail also its first line or its
//! subject) is one of the tenant's keywords, in any case and with trailing
//! punctuation ignored, puts its sender on the suppression list (source `opt_out`)
//! and emits `contact.opted_out` — committed before the message itself is stored, so
//! a crash between the two reports the message again and never loses the opt-out.

use crate::channels::ChannelKind;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `contact.opted_out`: a contact sent an opt-out keyword (or unsubscribed) and is
/// now on the suppression list.
pub const CONTACT_OPTED_OUT: &str = "contact.opted_out";
/// `contact.bounced`: mail to an address bounced for good; it is now suppressed.
pub const CONTACT_BOUNCED: &str = "contact.bounced";

/// Keywords when a tenant has not chosen its own.
pub const DEFAULT_KEYWORDS: [&str; 5] = ["STOP", "UNSUBSCRIBE", "STOPP", "ARRET", "BAJA"];
/// Most keywords a tenant may have, and their longest.
pub const MAX_KEYWORDS: usize = 50;
pub const MAX_KEYWORD_CHARS: usize = 40;

/// The shortest retention a tenant may set (the sweeper runs about once a minute).
pub const MIN_RETENTION: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSettings {
    /// Whole-message keywords that opt a contact out (`[]`: none).
    #[serde(default = "default_keywords")]
    pub opt_out_keywords: Vec<String>,
    /// E-mail sends carry `List-Unsubscribe` / `List-Unsubscribe-Post` (RFC 8058).
    #[serde(default)]
    pub list_unsubscribe: ListUnsubscribe,
    #[serde(default)]
    pub retention: Retention,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        Self {
            opt_out_keywords: default_keywords(),
            list_unsubscribe: ListUnsubscribe::default(),
            retention: Retention::default(),
        }
    }
}

fn default_keywords() -> Vec<String> {
    DEFAULT_KEYWORDS.iter().map(|k| (*k).to_owned()).collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListUnsubscribe {
    #[serde(default)]
    pub enabled: bool,
    /// A mailbox that unsubscribes whoever writes to it, offered beside the
    /// one-click URL (`mailto:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailto: Option<String>,
}

/// How long each kind of record is kept (`"30d"`, `"1h"`; absent: for ever).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
}

impl Retention {
    pub fn messages(&self) -> Option<Duration> {
        self.messages.as_deref().and_then(|d| span(d).ok())
    }
    pub fn events(&self) -> Option<Duration> {
        self.events.as_deref().and_then(|d| span(d).ok())
    }
    pub fn media(&self) -> Option<Duration> {
        self.media.as_deref().and_then(|d| span(d).ok())
    }
    pub fn is_off(&self) -> bool {
        self.messages.is_none() && self.events.is_none() && self.media.is_none()
    }
}

fn span(d: &str) -> Result<Duration, String> {
    humantime::parse_duration(d).map_err(|e| e.to_string())
}

impl ConsentSettings {
    /// Checks the settings a tenant asked for: the first problem, naming its field.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.opt_out_keywords.len() > MAX_KEYWORDS {
            return Err(format!(
                "`opt_out_keywords` takes at most {MAX_KEYWORDS} keywords"
            ));
        }
        for k in &mut self.opt_out_keywords {
            let trimmed = k.trim().to_owned();
            if trimmed.is_empty()
                || trimmed.chars().count() > MAX_KEYWORD_CHARS
                || trimmed.contains('\n')
            {
                return Err(format!(
                    "`opt_out_keywords`: each keyword is one line of 1 to {MAX_KEYWORD_CHARS} characters, not `{k}`"
                ));
            }
            *k = trimmed;
        }
        if let Some(m) = &self.list_unsubscribe.mailto
            && crate::suppression::normalize(
                crate::suppression::Scope::Channel(ChannelKind::Email),
                m,
            )
            .is_err()
        {
            return Err(format!(
                "`list_unsubscribe.mailto` must be an e-mail address, not `{m}`"
            ));
        }
        for (field, value) in [
            ("messages", &self.retention.messages),
            ("events", &self.retention.events),
            ("media", &self.retention.media),
        ] {
            if let Some(v) = value {
                let d = span(v).map_err(|e| format!("`retention.{field}`: {e}"))?;
                if d < MIN_RETENTION {
                    return Err(format!("`retention.{field}` must be at least 1m"));
                }
            }
        }
        Ok(())
    }

    /// The keyword `text` (a message on `channel`, with `subject` for e-mail) opts
    /// out with, if any.
    pub fn opt_out_keyword(
        &self,
        channel: ChannelKind,
        text: &str,
        subject: Option<&str>,
    ) -> Option<&str> {
        let mut candidates = vec![text];
        if channel == ChannelKind::Email {
            if let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
                candidates.push(first);
            }
            if let Some(s) = subject {
                candidates.push(strip_reply_prefix(s));
            }
        }
        candidates.into_iter().find_map(|c| {
            let c = bare(c);
            self.opt_out_keywords
                .iter()
                .find(|k| !c.is_empty() && bare(k) == c)
                .map(String::as_str)
        })
    }
}

/// A word compared without case, surrounding spaces or trailing punctuation.
fn bare(s: &str) -> String {
    s.trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_uppercase()
}

fn strip_reply_prefix(s: &str) -> &str {
    let mut s = s.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        match ["re:", "aw:", "fwd:", "fw:"]
            .iter()
            .find(|p| lower.starts_with(**p))
        {
            Some(p) => s = s[p.len()..].trim_start(),
            None => return s,
        }
    }
}

/// The `contact.bounced` event that puts `address` (an e-mail address in its
/// normal form) on tenant's suppression list with reason `bounced`; `details` says
/// how it was learnt (`via`: `smtp` or `dsn`, and what the server said).
pub fn bounce_event(
    tenant_id: &str,
    session_id: &str,
    address: &str,
    details: serde_json::Value,
) -> crate::events::Publish {
    let entry = crate::storage::SuppressionRow {
        id: crate::ids::new_id(crate::ids::SUPPRESSION),
        tenant_id: tenant_id.to_owned(),
        channel: ChannelKind::Email.as_str().to_owned(),
        address: address.to_owned(),
        reason: Some("bounced".into()),
        source: "bounce".into(),
        created_at: crate::clock::now_ms(),
    };
    let mut data = serde_json::json!({
        "channel": "email",
        "address": address,
        "suppression_id": entry.id,
    });
    if let (Some(d), serde_json::Value::Object(extra)) = (data.as_object_mut(), details) {
        d.extend(extra);
    }
    let mut event = crate::events::Publish::new(tenant_id, CONTACT_BOUNCED, data);
    event.session_id = Some(session_id.to_owned());
    event.channel = Some("email".into());
    event.suppress = vec![entry];
    metrics::counter!("switchboard_bounces_total").increment(1);
    event
}

const UNSUBSCRIBE_TAG: &str = "list-unsubscribe";

/// The token of a one-click unsubscribe link for `address` of `tenant_id`
/// (`/v1/unsubscribe/{token}`): the two, tagged under the master key, so the link
/// needs no lookup and cannot be made up for another address.
pub fn unsubscribe_token(
    keyring: &switchboard_crypto::Keyring,
    tenant_id: &str,
    address: &str,
) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let data = format!("{tenant_id}\n{address}");
    let tag = keyring.tag(UNSUBSCRIBE_TAG, data.as_bytes());
    format!("{}.{}", b64.encode(&data), b64.encode(&tag[..16]))
}

/// The tenant and address an unsubscribe token names, if this gateway made it
/// (under its current or a retired master key).
pub fn open_unsubscribe_token(
    keyring: &switchboard_crypto::Keyring,
    token: &str,
) -> Option<(String, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (data, tag) = token.split_once('.')?;
    let data = b64.decode(data).ok()?;
    let tag = b64.decode(tag).ok()?;
    if !keyring.verify_tag(UNSUBSCRIBE_TAG, &data, &tag) {
        return None;
    }
    let (tenant, address) = std::str::from_utf8(&data).ok()?.split_once('\n')?;
    Some((tenant.to_owned(), address.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_is_a_whole_message_in_any_case() {
        let s = ConsentSettings::default();
        let wa = ChannelKind::WhatsApp;
        assert_eq!(s.opt_out_keyword(wa, "STOP", None), Some("STOP"));
        assert_eq!(s.opt_out_keyword(wa, "  stop! ", None), Some("STOP"));
        assert_eq!(s.opt_out_keyword(wa, "Baja.", None), Some("BAJA"));
        assert_eq!(s.opt_out_keyword(wa, "don't stop me now", None), None);
        assert_eq!(s.opt_out_keyword(wa, "STOP\nplease", None), None);
        assert_eq!(s.opt_out_keyword(wa, "", None), None);
        let email = ChannelKind::Email;
        assert_eq!(
            s.opt_out_keyword(email, "Unsubscribe\n\n> On Monday you wrote", None),
            Some("UNSUBSCRIBE")
        );
        assert_eq!(
            s.opt_out_keyword(email, "thanks", Some("Re: STOP")),
            Some("STOP")
        );
        let none = ConsentSettings {
            opt_out_keywords: vec![],
            ..Default::default()
        };
        assert_eq!(none.opt_out_keyword(wa, "STOP", None), None);
    }

    #[test]
    fn unsubscribe_tokens_name_their_address_and_cannot_be_forged() {
        let ring = switchboard_crypto::Keyring::new(
            switchboard_crypto::MasterKey::generate().unwrap(),
            [],
        );
        let t = unsubscribe_token(&ring, "ten_1", "ada@example.com");
        assert_eq!(
            open_unsubscribe_token(&ring, &t),
            Some(("ten_1".into(), "ada@example.com".into()))
        );
        let (_, tag) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            unsubscribe_token(&ring, "ten_1", "bob@example.com")
                .split_once('.')
                .unwrap()
                .0
        );
        assert_eq!(open_unsubscribe_token(&ring, &forged), None);
        assert_eq!(open_unsubscribe_token(&ring, "nonsense"), None);
        let other = switchboard_crypto::Keyring::new(
            switchboard_crypto::MasterKey::generate().unwrap(),
            [],
        );
        assert_eq!(open_unsubscribe_token(&other, &t), None);
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        let mut s = ConsentSettings::default();
        assert!(s.validate().is_ok());
        s.retention.events = Some("1h".into());
        assert!(s.validate().is_ok());
        assert_eq!(s.retention.events(), Some(Duration::from_secs(3600)));
        s.retention.media = Some("soon".into());
        assert!(s.validate().unwrap_err().contains("retention.media"));
        s.retention.media = Some("10s".into());
        assert!(s.validate().unwrap_err().contains("at least"));
        let mut s = ConsentSettings {
            opt_out_keywords: vec![" ".into()],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("opt_out_keywords"));
        let mut s = ConsentSettings::default();
        s.list_unsubscribe.mailto = Some("nobody".into());
        assert!(s.validate().unwrap_err().contains("mailto"));
    }
}
