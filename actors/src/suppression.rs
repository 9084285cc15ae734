//! Consent: a tenant's suppression list, the addresses it must never message.
//!
//! Entries are kept in a normal form so a send matches however its recipient was
//! written: a phone number in E.164 (parsed with `phonenumber`, Google's
//! libphonenumber metadata; WhatsApp ids like `15550100@c.us` are phone numbers),
//! an e-mail address in lower case (`Name <Ada@Example.com>` → `ada@example.com`),
//! a LinkedIn member URN as given. An entry is for one channel or `*` (every
//! channel: its address is read as a phone number when it is one, else as an
//! e-mail address, else as given). The send path checks the list before any
//! network call ([`crate::outbound`]).

use crate::channels::ChannelKind;

/// The channel an entry is for: one channel, or every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Channel(ChannelKind),
    All,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::All);
        }
        s.parse::<ChannelKind>().map(Self::Channel).map_err(|_| {
            format!("`channel` must be whatsapp, email, linkedin, sim or *, not `{s}`")
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Channel(k) => k.as_str(),
            Self::All => "*",
        }
    }
}

/// Longest address accepted.
pub const MAX_ADDRESS_CHARS: usize = 320;

/// `address` in its normal form for `scope`, or why it is not an address there.
pub fn normalize(scope: Scope, address: &str) -> Result<String, String> {
    let a = address.trim();
    if a.is_empty() || a.chars().count() > MAX_ADDRESS_CHARS {
        return Err(format!(
            "`address` must be 1 to {MAX_ADDRESS_CHARS} characters"
        ));
    }
    match scope {
        Scope::Channel(ChannelKind::WhatsApp) => phone(a).ok_or_else(|| {
            format!("`{a}` is not a phone number (international form, e.g. +4915112345678)")
        }),
        Scope::Channel(ChannelKind::Email) => {
            email(a).ok_or_else(|| format!("`{a}` is not an e-mail address"))
        }
        Scope::Channel(ChannelKind::Linkedin) => Ok(linkedin(a)),
        Scope::Channel(ChannelKind::Sim) => Ok(a.to_owned()),
        Scope::All => Ok(phone(a).or_else(|| email(a)).unwrap_or_else(|| {
            if a.contains("/in/") {
                linkedin(a)
            } else {
                a.to_owned()
            }
        })),
    }
}

/// What a send's recipient is looked up as: its normal form on `channel` (as given
/// when it has none: a WhatsApp group, say, is never a suppressed person).
pub fn recipient(channel: ChannelKind, to: &str) -> String {
    normalize(Scope::Channel(channel), to).unwrap_or_else(|_| to.trim().to_owned())
}

/// Every recipient of a send, each in its normal form: an e-mail may go to several
/// (`a@x.org, Bo <b@y.org>`), a suppressed one refuses the whole send.
pub fn recipients(channel: ChannelKind, to: &str) -> Vec<String> {
    match channel {
        ChannelKind::Email => to
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| recipient(channel, a))
            .collect(),
        _ => vec![recipient(channel, to)],
    }
}

/// Why a send to `address` is refused: the error a suppressed send ends with.
pub fn refusal(address: &str, entry: &crate::storage::SuppressionRow) -> String {
    format!(
        "recipient_suppressed: {address} is on the tenant's suppression list ({}{})",
        entry.id,
        entry
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    )
}

/// A phone number in E.164, from `+4915112345678`, `4915112345678`,
/// `+1 (555) 010-0000` or a WhatsApp id (`15550100000@c.us`).
fn phone(a: &str) -> Option<String> {
    let user = a
        .strip_suffix("@c.us")
        .or_else(|| a.strip_suffix("@s.whatsapp.net"))
        .unwrap_or(a);
    let user = user.split(':').next().unwrap_or(user);
    if !user
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return None;
    }
    let digits: String = user.chars().filter(char::is_ascii_digit).collect();
    if !(5..=15).contains(&digits.len()) {
        return None;
    }
    let parsed = phonenumber::parse(None, format!("+{digits}")).ok()?;
    Some(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

/// A LinkedIn member: a URN as given (`urn:li:fsd_profile:ACoAA…`, case matters),
/// else a public id in lower case, from a profile URL (`…/in/<id>/`) or bare.
fn linkedin(a: &str) -> String {
    if a.starts_with("urn:") {
        return a.to_owned();
    }
    let id = match a.find("/in/") {
        Some(i) => a[i + 4..].split(['/', '?', '#']).next().unwrap_or_default(),
        None => a,
    };
    id.to_lowercase()
}

/// An e-mail address in lower case, from `a@b` or `Name <a@b>`.
fn email(a: &str) -> Option<String> {
    let inner = match (a.rfind('<'), a.rfind('>')) {
        (Some(l), Some(r)) if l < r => &a[l + 1..r],
        _ => a,
    };
    let inner = inner.trim().trim_start_matches("mailto:");
    let (local, domain) = inner.rsplit_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !inner
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>');
    ok.then(|| inner.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_one_form_however_written() {
        let wa = Scope::Channel(ChannelKind::WhatsApp);
        for written in [
            "+4915112345678",
            "4915112345678",
            " +49 151 1234-5678 ",
            "4915112345678@c.us",
            "4915112345678@s.whatsapp.net",
        ] {
            assert_eq!(
                normalize(wa, written).unwrap(),
                "+4915112345678",
                "{written}"
            );
        }
        assert!(normalize(wa, "ada@example.com").is_err());
        assert!(normalize(wa, "123").is_err());
        assert!(normalize(wa, "120363040000000000@g.us").is_err());
    }

    #[test]
    fn emails_lower_case_and_named_addresses_unwrapped() {
        let email = Scope::Channel(ChannelKind::Email);
        assert_eq!(
            normalize(email, "Ada Lovelace <Ada@Example.COM>").unwrap(),
            "ada@example.com"
        );
        assert_eq!(normalize(email, "mailto:x@y.org").unwrap(), "x@y.org");
        assert!(normalize(email, "not an address").is_err());
        assert!(normalize(email, "a@localhost").is_err());
    }

    #[test]
    fn every_channel_entries_read_the_address_as_what_it_is() {
        assert_eq!(
            normalize(Scope::All, "+1 202 555 0100").unwrap(),
            "+12025550100"
        );
        assert_eq!(normalize(Scope::All, "Bob@X.io").unwrap(), "bob@x.io");
        assert_eq!(
            normalize(Scope::All, "urn:li:fsd_profile:ACoAAB").unwrap(),
            "urn:li:fsd_profile:ACoAAB"
        );
        assert!(Scope::parse("fax").is_err());
        assert_eq!(Scope::parse("*").unwrap(), Scope::All);
        assert!(normalize(Scope::All, "").is_err());
    }

    #[test]
    fn a_recipient_is_looked_up_in_its_normal_form() {
        assert_eq!(
            recipient(ChannelKind::WhatsApp, "4915112345678@c.us"),
            "+4915112345678"
        );
        assert_eq!(recipient(ChannelKind::WhatsApp, "1203@g.us"), "1203@g.us");
        assert_eq!(recipient(ChannelKind::Email, "X <A@B.C>"), "a@b.c");
        assert_eq!(
            recipients(ChannelKind::Email, "a@x.org, Bo <B@y.org>,"),
            ["a@x.org", "b@y.org"]
        );
        for written in [
            "https://www.linkedin.com/in/Linus-T/",
            "http://127.0.0.1:9/in/linus-t?trk=x",
            "Linus-T",
        ] {
            assert_eq!(recipient(ChannelKind::Linkedin, written), "linus-t");
        }
        assert_eq!(
            recipient(ChannelKind::Linkedin, "urn:li:fsd_profile:ACoAAB"),
            "urn:li:fsd_profile:ACoAAB"
        );
    }
}
