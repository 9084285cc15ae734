//! Black-box tests of the `switchboard` binary over real sockets. They run against
//! SQLite by default and against Postgres when `TEST_DATABASE_URL` is set (the CI
//! script runs them both ways).

mod receiver;
mod support;

mod api;
mod cluster;
mod dashboard;
mod email;
mod linkedin;
mod media;
mod messages;
mod process;
mod rag;
mod scopes;
mod sessions;
mod suppressions;
mod webhooks;
mod whatsapp;
mod whatsapp_media;
