//! [`ChannelKind`]: the one list of channels this gateway runs. Parsing a session's
//! `channel` name, validating its config, saying what a channel can carry and
//! building it all go through here, so a new channel is one variant (and the arms
//! of this file), not string matches across the tree.

use super::{Channel, ChannelError, Context, OutboundMessage, email, linkedin, sim, whatsapp};
use crate::storage::SessionRow;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Sim,
    WhatsApp,
    Email,
    Linkedin,
}

/// A session's configuration as stored: what may be shown (`config`), and, for a
/// channel with secrets, the whole of it to seal.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub shown: serde_json::Value,
    pub secret: Option<serde_json::Value>,
}

/// What a channel can carry on a send, besides text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub subject: bool,
    pub reply_to: bool,
    pub attachments: bool,
    /// An HTML alternative to the text (e-mail).
    pub html: bool,
    /// Conversations are threads a reply must join (e-mail): automatic answers are
    /// sent as replies to the message they answer.
    pub threads: bool,
    /// Invitations to connect, sent and accepted (LinkedIn).
    pub invitations: bool,
}

impl ChannelKind {
    /// Every channel, in the order the API lists them.
    pub const ALL: &'static [ChannelKind] = &[
        ChannelKind::Sim,
        ChannelKind::WhatsApp,
        ChannelKind::Email,
        ChannelKind::Linkedin,
    ];

    /// The stable name (`channel` of a session, of events).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::WhatsApp => "whatsapp",
            Self::Email => "email",
            Self::Linkedin => "linkedin",
        }
    }

    /// The names, comma-separated (for error messages).
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks a session's JSON configuration without building anything.
    pub fn validate(self, config: &serde_json::Value) -> Result<(), ChannelError> {
        match self {
            Self::Sim => sim::SimConfig::parse(config).map(|_| ()),
            Self::WhatsApp => whatsapp::WhatsAppConfig::parse(config).map(|_| ()),
            Self::Email => email::config::EmailConfig::parse(config)
                .map(|_| ())
                .map_err(ChannelError::Config),
            Self::Linkedin => linkedin::LinkedInConfig::parse(config).map(|_| ()),
        }
    }

    /// Validates a new session's configuration and splits it into what is stored in
    /// the clear and shown (`config`) and what is sealed (secrets: passwords, OAuth2
    /// tokens, LinkedIn cookies). E-mail and LinkedIn sessions have secrets.
    pub fn prepare(self, config: &serde_json::Value) -> Result<Prepared, ChannelError> {
        self.validate(config)?;
        let config = if config.is_null() {
            serde_json::json!({})
        } else {
            config.clone()
        };
        Ok(match self {
            Self::Email => Prepared {
                shown: email::config::EmailConfig::parse(&config)
                    .map_err(ChannelError::Config)?
                    .redacted(),
                secret: Some(config),
            },
            Self::Linkedin => Prepared {
                shown: linkedin::LinkedInConfig::parse(&config)?.redacted(),
                secret: Some(config),
            },
            Self::Sim | Self::WhatsApp => Prepared {
                shown: config,
                secret: None,
            },
        })
    }

    /// What sends on this channel may carry.
    pub const fn capabilities(self) -> Capabilities {
        match self {
            // The sim stands in for any network in tests: it takes everything.
            Self::Sim => Capabilities {
                subject: true,
                reply_to: true,
                attachments: true,
                html: true,
                threads: false,
                invitations: true,
            },
            // Text or one file (image, video, audio, voice note, document, sticker),
            // quoting a message of the chat.
            Self::WhatsApp => Capabilities {
                subject: false,
                reply_to: true,
                attachments: true,
                html: false,
                threads: false,
                invitations: false,
            },
            Self::Email => Capabilities {
                subject: true,
                reply_to: true,
                attachments: true,
                html: true,
                threads: true,
                invitations: false,
            },
            // Text messages into a conversation or to a member; invitations.
            Self::Linkedin => Capabilities {
                subject: false,
                reply_to: false,
                attachments: false,
                html: false,
                threads: false,
                invitations: true,
            },
        }
    }

    /// Builds the channel of a session from its row and its whole configuration
    /// ([`super::session_config`]).
    pub fn build(
        self,
        row: &SessionRow,
        config: &serde_json::Value,
        ctx: &Context,
    ) -> Result<Box<dyn Channel>, ChannelError> {
        match self {
            Self::Sim => Ok(Box::new(sim::Sim::new(
                &row.id,
                sim::SimConfig::parse(config)?,
            ))),
            Self::WhatsApp => Ok(Box::new(whatsapp::WhatsApp::new(
                row,
                whatsapp::WhatsAppConfig::parse(config)?,
                ctx.clone(),
            )?)),
            Self::Email => Ok(Box::new(email::Email::new(
                &row.tenant_id,
                &row.id,
                email::config::EmailConfig::parse(config).map_err(ChannelError::Config)?,
                ctx.clone(),
            ))),
            Self::Linkedin => Ok(Box::new(linkedin::LinkedIn::new(
                row,
                linkedin::LinkedInConfig::parse(config)?,
                ctx.clone(),
            )?)),
        }
    }
}

/// A channel name no [`ChannelKind`] has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChannel(pub String);

impl fmt::Display for UnknownChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown channel `{}` (known: {})",
            self.0,
            ChannelKind::names()
        )
    }
}

impl std::error::Error for UnknownChannel {}

impl From<UnknownChannel> for ChannelError {
    fn from(e: UnknownChannel) -> Self {
        ChannelError::Config(e.to_string())
    }
}

impl Capabilities {
    /// Refuses a message carrying a field this channel cannot carry (the error is
    /// [`ChannelError::Unsupported`], naming the field).
    pub fn check(&self, kind: ChannelKind, m: &OutboundMessage) -> Result<(), ChannelError> {
        self.check_fields(
            kind,
            m.subject.is_some(),
            m.reply_to.is_some(),
            !m.attachments.is_empty(),
            m.html.is_some(),
        )
    }

    /// [`Self::check`] for a send that has (or lacks) each field.
    pub fn check_fields(
        &self,
        kind: ChannelKind,
        subject: bool,
        reply_to: bool,
        attachments: bool,
        html: bool,
    ) -> Result<(), ChannelError> {
        let refused = [
            ("subject", subject && !self.subject),
            ("reply_to", reply_to && !self.reply_to),
            ("attachments", attachments && !self.attachments),
            ("html", html && !self.html),
        ];
        match refused.iter().find(|(_, r)| *r) {
            Some((field, _)) => Err(ChannelError::Unsupported(format!(
                "{kind} sessions cannot carry `{field}`"
            ))),
            None => Ok(()),
        }
    }
}

impl FromStr for ChannelKind {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, UnknownChannel> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::{Attachment, AttachmentContent};

    #[test]
    fn names_parse_back_to_their_kind() {
        for k in ChannelKind::ALL {
            assert_eq!(k.as_str().parse::<ChannelKind>(), Ok(*k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!("sim".parse(), Ok(ChannelKind::Sim));
        assert_eq!("whatsapp".parse(), Ok(ChannelKind::WhatsApp));
        assert_eq!(ChannelKind::names(), "sim, whatsapp, email, linkedin");
    }

    #[test]
    fn unknown_and_differently_written_names_are_refused() {
        for bad in ["", "WhatsApp", " sim", "sim ", "telegram", "whats-app"] {
            let e = bad.parse::<ChannelKind>().unwrap_err();
            assert_eq!(e, UnknownChannel(bad.to_owned()));
            assert_eq!(
                e.to_string(),
                format!("unknown channel `{bad}` (known: sim, whatsapp, email, linkedin)")
            );
        }
    }

    #[test]
    fn configs_are_validated_by_their_channel() {
        let sim = ChannelKind::Sim;
        assert!(
            sim.validate(&serde_json::json!({"inbound_per_second": 1}))
                .is_ok()
        );
        assert!(sim.validate(&serde_json::json!({"colour": 1})).is_err());
        let wa = ChannelKind::WhatsApp;
        assert!(wa.validate(&serde_json::Value::Null).is_ok());
        assert!(
            wa.validate(&serde_json::json!({"inbound_per_second": 1}))
                .is_err()
        );
    }

    #[test]
    fn fields_a_channel_cannot_carry_are_refused_by_name() {
        let text = OutboundMessage {
            text: "hi".into(),
            ..Default::default()
        };
        let wa = ChannelKind::WhatsApp;
        assert!(wa.capabilities().check(wa, &text).is_ok());
        let with_subject = OutboundMessage {
            subject: Some("Hello".into()),
            ..text.clone()
        };
        assert_eq!(
            wa.capabilities().check(wa, &with_subject),
            Err(ChannelError::Unsupported(
                "whatsapp sessions cannot carry `subject`".into()
            ))
        );
        let with_file = OutboundMessage {
            attachments: vec![Attachment {
                filename: "a.txt".into(),
                mime_type: "text/plain".into(),
                content: AttachmentContent::Bytes(b"a".to_vec()),
                as_voice: false,
            }],
            reply_to: Some("x".into()),
            ..with_subject
        };
        let e = wa.capabilities().check(wa, &with_file).unwrap_err();
        assert!(e.to_string().contains("`subject`"), "{e}");
        let sim = ChannelKind::Sim;
        assert!(sim.capabilities().check(sim, &with_file).is_ok());
        let html = OutboundMessage {
            html: Some("<p>hi</p>".into()),
            ..text
        };
        assert_eq!(
            wa.capabilities().check(wa, &html),
            Err(ChannelError::Unsupported(
                "whatsapp sessions cannot carry `html`".into()
            ))
        );
        let email = ChannelKind::Email;
        assert!(email.capabilities().check(email, &html).is_ok());
    }
}
