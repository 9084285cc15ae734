//! E-mail sessions (IMAP in, SMTP out). So far only their configuration
//! ([`config`]): the channel is not in [`super::ChannelKind`] yet, so no e-mail
//! session can be created.

pub mod config;
