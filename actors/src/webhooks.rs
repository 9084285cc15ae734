//! Webhook delivery: signing keys, SSRF rules, retry schedule and the dispatcher.
//!
//! # Layout
//! - [`ssrf`]: which URLs and addresses deliveries may reach.
//! - [`schedule`]: when a failed delivery is tried again.
//! - [`dispatcher`]: claims due outbox rows, signs, POSTs, records every attempt.
//! - [`handoff`]: rows the event writer commits, handed to the dispatcher directly.

pub mod dispatcher;
pub mod handoff;
pub mod schedule;
pub mod ssrf;

pub use dispatcher::{Dispatcher, DispatcherConfig};

use crate::clock;
use crate::storage::Endpoint;
use switchboard_crypto::{Binding, Keyring, OpenError, WebhookSecret};

/// Purpose bound into sealed webhook secrets.
pub const SECRET_PURPOSE: &str = "webhook.secret";
/// Event emitted when the gateway disables an endpoint.
pub const ENDPOINT_DISABLED: &str = "webhook.endpoint_disabled";
/// Event produced by `POST /v1/webhooks/{id}/test`.
pub const TEST_EVENT: &str = "webhook.test";

/// The binding of an endpoint secret's ciphertext.
pub fn secret_binding<'a>(tenant_id: &'a str, endpoint_id: &'a str) -> Binding<'a> {
    Binding {
        tenant_id,
        record_id: endpoint_id,
        purpose: SECRET_PURPOSE,
    }
}

/// The secrets that sign deliveries to `endpoint` now: the current one, plus the
/// previous one while its rotation grace period lasts.
pub fn signing_secrets(
    keyring: &Keyring,
    endpoint: &Endpoint,
) -> Result<Vec<WebhookSecret>, OpenError> {
    let binding = secret_binding(&endpoint.tenant_id, &endpoint.id);
    let open = |s: &switchboard_crypto::Sealed| -> Result<WebhookSecret, OpenError> {
        let bytes = keyring.open(&s.key_id, &s.data, binding)?;
        WebhookSecret::from_bytes(&bytes).map_err(|_| OpenError::Malformed)
    };
    let mut secrets = vec![open(&endpoint.secret)?];
    if let (Some(prev), Some(until)) = (&endpoint.previous_secret, endpoint.previous_expires_at)
        && until > clock::now_ms()
    {
        secrets.push(open(prev)?);
    }
    Ok(secrets)
}
