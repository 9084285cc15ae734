//! Stand-ins for remote services we cannot reach from tests: local servers and pages
//! that implement the same contract our drivers rely on, driven by real Chromium.
//! Behind the `testkit` feature; the bench reuses them.

pub mod linkedin;
pub mod mail;
pub mod oauth;
pub mod whatsapp;
