//! The LinkedIn channel (being built, issue 16): so far its safety caps.
//!
//! # Layout
//! - [`caps`]: per-account caps (per day and week, spacing, working hours, the
//!   warm-up of a new account) over the actions recorded in `account_actions`.

pub mod caps;
