//! The `switchboard` gateway: configuration, the HTTP API, authentication, metrics
//! and the admin CLI, in front of the actor system in `switchboard-actors`.
//!
//! # Layout
//! - [`config`]: typed configuration (defaults ← TOML file ← environment), validated.
//! - [`bootstrap`]: the data directory, master key and admin token on first start.
//! - [`start`]: the whole gateway from a config and a bound listener to a clean stop
//!   (the binary's `serve`; tests run it in-process on `127.0.0.1:0`).
//! - [`app`]: shared state handed to every request.
//! - [`api`]: routing, auth, rate limits, handlers, errors, OpenAPI.
//! - [`admin`]: tenant and key operations shared by the API and the CLI.
//! - [`server`]: the hyper accept loop and graceful shutdown.
//! - [`telemetry`]: logging and the Prometheus recorder.
//! - [`views`]: the JSON shapes returned to clients.
//! - [`rag`]: the knowledge base and LLM client built from the config.

// The OpenAPI document is written as a few large `json!` literals.
#![recursion_limit = "256"]

pub mod admin;
pub mod api;
pub mod app;
pub mod bootstrap;
pub mod config;
pub mod rag;
pub mod server;
mod start;
pub mod telemetry;
pub mod views;

pub use start::{StartError, start};
