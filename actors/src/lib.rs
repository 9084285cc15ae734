//! Switchboard's actor system and everything it owns: storage, supervision, channels,
//! the outbound queue and webhook dispatch. The `gateway` crate puts HTTP in front of
//! it; nothing here knows about HTTP.
//!
//! # Layout
//! - [`storage`]: the one repository layer (sqlx, SQLite or Postgres, migrations run at
//!   start-up). Every other component reads and writes through it.
//! - [`ids`]: prefixed ULID identifiers (`ten_…`, `key_…`).
//! - [`clock`]: wall-clock milliseconds, the unit every timestamp is stored in.

pub mod clock;
pub mod ids;
pub mod storage;

pub use storage::{Store, StoreError};
