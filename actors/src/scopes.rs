//! What an API key may do: a set of named scopes, one per kind of work.
//!
//! Every tenant route needs one scope (listed in the OpenAPI document); a key lacking
//! it gets 403 `insufficient_scope`. A key made without a list holds every scope,
//! those added later included — that is how keys made before scopes existed keep
//! working. Stored as the names joined by spaces (the OAuth scope string), or NULL
//! for every scope.

use std::fmt;

/// One kind of work a key may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    SessionsRead,
    SessionsWrite,
    MessagesSend,
    MessagesRead,
    EventsRead,
    WebhooksManage,
    KbRead,
    KbWrite,
    DraftsApprove,
    ContactsManage,
    AuditRead,
    KeysManage,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 12] = [
        Scope::SessionsRead,
        Scope::SessionsWrite,
        Scope::MessagesSend,
        Scope::MessagesRead,
        Scope::EventsRead,
        Scope::WebhooksManage,
        Scope::KbRead,
        Scope::KbWrite,
        Scope::DraftsApprove,
        Scope::ContactsManage,
        Scope::AuditRead,
        Scope::KeysManage,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::SessionsRead => "sessions:read",
            Scope::SessionsWrite => "sessions:write",
            Scope::MessagesSend => "messages:send",
            Scope::MessagesRead => "messages:read",
            Scope::EventsRead => "events:read",
            Scope::WebhooksManage => "webhooks:manage",
            Scope::KbRead => "kb:read",
            Scope::KbWrite => "kb:write",
            Scope::DraftsApprove => "drafts:approve",
            Scope::ContactsManage => "contacts:manage",
            Scope::AuditRead => "audit:read",
            Scope::KeysManage => "keys:manage",
        }
    }

    /// What the scope allows, for the OpenAPI document.
    pub const fn describe(self) -> &'static str {
        match self {
            Scope::SessionsRead => {
                "list and read sessions, their profile, limits, groups and contacts"
            }
            Scope::SessionsWrite => {
                "create, start, stop, restart, log out and delete sessions; pair them (QR, code, challenges)"
            }
            Scope::MessagesSend => {
                "send messages, reactions, read marks and LinkedIn invitations; upload media"
            }
            Scope::MessagesRead => "read messages, their attachments and media",
            Scope::EventsRead => "read events, their delivery attempts, and the live event stream",
            Scope::WebhooksManage => "create, change, test and delete webhooks; replay deliveries",
            Scope::KbRead => "list and search the knowledge base; read reply settings",
            Scope::KbWrite => "add and delete knowledge-base documents; change reply settings",
            Scope::DraftsApprove => "list, approve and reject reply drafts",
            Scope::ContactsManage => {
                "suppression list, consent settings, contact export and erasure"
            }
            Scope::AuditRead => "read the tenant's audit log",
            Scope::KeysManage => {
                "create, list and revoke the tenant's keys (never beyond its own scopes)"
            }
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes. `Scopes::all()` is also what a stored NULL means.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes {
    bits: u32,
    /// Every scope, present and future (no list was given).
    everything: bool,
}

impl Scopes {
    pub const fn all() -> Self {
        Self {
            bits: u32::MAX,
            everything: true,
        }
    }

    pub const fn none() -> Self {
        Self {
            bits: 0,
            everything: false,
        }
    }

    /// The named scopes; `Err(name)` for the first name that is no scope.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, &'a str> {
        let mut set = Self::none();
        for name in names {
            set.bits |= Scope::parse(name).ok_or(name)?.bit();
        }
        Ok(set)
    }

    /// Reads the stored form: NULL is every scope.
    pub fn from_stored(stored: Option<&str>) -> Result<Self, String> {
        match stored {
            None => Ok(Self::all()),
            Some(s) => Self::parse(s.split_ascii_whitespace())
                .map_err(|bad| format!("stored key scope `{bad}` is unknown")),
        }
    }

    /// The stored form: `None` for every scope.
    pub fn to_stored(self) -> Option<String> {
        (!self.everything).then(|| self.names().collect::<Vec<_>>().join(" "))
    }

    pub const fn contains(self, scope: Scope) -> bool {
        self.bits & scope.bit() != 0
    }

    pub const fn is_everything(self) -> bool {
        self.everything
    }

    /// The first scope of `other` this set lacks, if any.
    pub fn missing_of(self, other: Scopes) -> Option<Scope> {
        if self.everything {
            return None;
        }
        if other.everything {
            return Scope::ALL.into_iter().find(|s| !self.contains(*s));
        }
        Scope::ALL
            .into_iter()
            .find(|s| other.contains(*s) && !self.contains(*s))
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.iter().map(Scope::as_str)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.everything {
            f.write_str("Scopes(*)")
        } else {
            f.debug_set().entries(self.names()).finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        let set = Scopes::parse(["messages:send", "kb:read", "messages:send"]).unwrap();
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["messages:send", "kb:read"]
        );
        assert_eq!(
            Scopes::from_stored(set.to_stored().as_deref()).unwrap(),
            set
        );
        assert_eq!(Scopes::parse(["kb:read", "kb:delete"]), Err("kb:delete"));
        assert!(Scopes::from_stored(Some("root")).is_err());
    }

    #[test]
    fn a_key_made_without_a_list_holds_every_scope() {
        let all = Scopes::from_stored(None).unwrap();
        assert!(all.is_everything());
        assert!(Scope::ALL.iter().all(|s| all.contains(*s)));
        assert_eq!(all.to_stored(), None);
        assert_eq!(all.names().count(), Scope::ALL.len());
    }

    #[test]
    fn a_set_names_what_it_lacks_of_another() {
        let send = Scopes::parse(["messages:send"]).unwrap();
        let both = Scopes::parse(["messages:send", "audit:read"]).unwrap();
        assert_eq!(send.missing_of(both), Some(Scope::AuditRead));
        assert_eq!(both.missing_of(send), None);
        assert_eq!(send.missing_of(Scopes::all()), Some(Scope::SessionsRead));
        assert_eq!(Scopes::all().missing_of(both), None);
        assert_eq!(Scopes::none().missing_of(Scopes::none()), None);
    }
}
