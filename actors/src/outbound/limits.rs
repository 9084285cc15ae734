//! The limits in force for a tenant: its stored overrides over the gateway's
//! defaults (`limits.*` in the config), and the send quota the sender applies.

use crate::storage::LimitOverrides;
use serde::Serialize;

/// Default limits for tenants without overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLimits {
    /// Sustained API requests per second per API key.
    pub api_requests_per_second: u32,
    /// Requests a key may make at once above the sustained rate.
    pub api_burst: u32,
    /// Sustained outbound messages per second per tenant.
    pub sends_per_second: u32,
    /// Sends allowed at once above the sustained rate.
    pub send_burst: u32,
    /// Most sends a tenant may have waiting.
    pub max_queued_sends: u32,
}

/// Limits in force for a tenant: its overrides over the configured defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EffectiveLimits {
    pub api_requests_per_second: u32,
    pub api_burst: u32,
    pub sends_per_second: u32,
    pub send_burst: u32,
    pub max_queued_sends: u32,
}

/// A tenant's send quota: sustained rate and burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQuota {
    pub per_second: u32,
    pub burst: u32,
}

impl EffectiveLimits {
    pub fn of(overrides: &LimitOverrides, defaults: &DefaultLimits) -> Self {
        Self {
            api_requests_per_second: overrides
                .api_requests_per_second
                .unwrap_or(defaults.api_requests_per_second),
            api_burst: overrides.api_burst.unwrap_or(defaults.api_burst),
            sends_per_second: overrides
                .sends_per_second
                .unwrap_or(defaults.sends_per_second),
            send_burst: overrides.send_burst.unwrap_or(defaults.send_burst),
            max_queued_sends: overrides
                .max_queued_sends
                .unwrap_or(defaults.max_queued_sends),
        }
    }

    /// What the tenant's sender may send.
    pub fn send_quota(&self) -> SendQuota {
        SendQuota {
            per_second: self.sends_per_second,
            burst: self.send_burst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_defaults_field_by_field() {
        let defaults = DefaultLimits {
            api_requests_per_second: 50,
            api_burst: 100,
            sends_per_second: 10,
            send_burst: 20,
            max_queued_sends: 1000,
        };
        let overrides = LimitOverrides {
            sends_per_second: Some(3),
            max_queued_sends: Some(5),
            ..LimitOverrides::default()
        };
        let l = EffectiveLimits::of(&overrides, &defaults);
        assert_eq!((l.api_requests_per_second, l.api_burst), (50, 100));
        assert_eq!((l.sends_per_second, l.send_burst), (3, 20));
        assert_eq!(l.max_queued_sends, 5);
        assert_eq!(
            l.send_quota(),
            SendQuota {
                per_second: 3,
                burst: 20
            }
        );
    }
}
