//! `switchboard-bench`: the load harness for the Switchboard gateway (scenarios,
//! HDR histograms, progress output, JSON and HTML reports).
//!
//! The scenarios and the `switchboard-bench` binary arrive with the bench issue;
//! this crate exists now so the workspace has its final shape and dependency order
//! (`gateway` ← `bench`).
