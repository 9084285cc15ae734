//! The `sim` channel: synthetic traffic for tests and the bench.
//!
//! Config `{"inbound_per_second": R, "payload_bytes": N, "read_receipts"?: bool,
//! "login_code"?: "…"}`: once connected it reports `Ready`, then R inbound messages
//! per second with N-byte texts. Sends (with any subject, reply or attachments: the
//! sim stands in for every network) are accepted and acknowledged as delivered at
//! once, then as read with `read_receipts`. With `login_code` the login first asks for
//! that code (an SMS challenge) and is ready only once it is submitted. Faults
//! (panic, error, hang, disconnect) are injected by the session actor on request, not
//! here. A message can also be injected (`POST /v1/sessions/{id}/sim/inbound`) to
//! script a conversation.

use super::{
    AckLevel, Challenge, ChallengeKind, Channel, ChannelError, ChannelEvent, InboundMessage,
    OutboundMessage,
};
use crate::clock;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most inbound messages per second one sim session generates.
pub const MAX_RATE: f64 = 10_000.0;
/// Largest payload.
pub const MAX_PAYLOAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    #[serde(default)]
    pub inbound_per_second: f64,
    #[serde(default = "default_payload")]
    pub payload_bytes: usize,
    /// Acknowledge sends as read, after delivered.
    #[serde(default)]
    pub read_receipts: bool,
    /// Ask for this code (an SMS challenge) before the login goes through.
    #[serde(default)]
    pub login_code: Option<String>,
}

/// How long the sim's login challenge stays open.
const CHALLENGE_LIFETIME_MS: i64 = 5 * 60 * 1000;

fn default_payload() -> usize {
    64
}

impl SimConfig {
    pub fn parse(v: &serde_json::Value) -> Result<Self, ChannelError> {
        let v = if v.is_null() {
            serde_json::json!({})
        } else {
            v.clone()
        };
        let c: SimConfig =
            serde_json::from_value(v).map_err(|e| ChannelError::Config(e.to_string()))?;
        if !(0.0..=MAX_RATE).contains(&c.inbound_per_second) || !c.inbound_per_second.is_finite() {
            return Err(ChannelError::Config(format!(
                "inbound_per_second must be between 0 and {MAX_RATE}"
            )));
        }
        if !(1..=MAX_PAYLOAD).contains(&c.payload_bytes) {
            return Err(ChannelError::Config(format!(
                "payload_bytes must be between 1 and {MAX_PAYLOAD}"
            )));
        }
        if c.login_code
            .as_ref()
            .is_some_and(|code| code.is_empty() || code.len() > 64)
        {
            return Err(ChannelError::Config(
                "login_code must be 1 to 64 characters".into(),
            ));
        }
        Ok(c)
    }
}

#[derive(Debug)]
pub struct Sim {
    session_id: String,
    config: SimConfig,
    generator: Option<JoinHandle<()>>,
    /// Where acknowledgements of sends go (set by `connect`).
    events: Option<mpsc::Sender<ChannelEvent>>,
    /// A login challenge is open (`login_code` set, not yet answered).
    challenged: bool,
}

impl Sim {
    pub fn new(session_id: &str, config: SimConfig) -> Self {
        Self {
            session_id: session_id.to_owned(),
            config,
            generator: None,
            events: None,
            challenged: false,
        }
    }

    fn start_generating(&mut self, events: mpsc::Sender<ChannelEvent>) {
        self.generator = Some(tokio::spawn(generate(
            self.session_id.clone(),
            self.config.clone(),
            events,
        )));
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(g) = self.generator.take() {
            g.abort();
        }
    }
}

async fn generate(session_id: String, config: SimConfig, events: mpsc::Sender<ChannelEvent>) {
    if events.send(ChannelEvent::Ready).await.is_err() || config.inbound_per_second <= 0.0 {
        return;
    }
    let period = Duration::from_secs_f64(1.0 / config.inbound_per_second);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let text: String = "x".repeat(config.payload_bytes);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let msg = InboundMessage {
            external_id: format!("sim-{session_id}-{}-{n}", clock::now_ms()),
            from: format!("sim:{}", n % 100),
            text: text.clone(),
            chat: None,
            sent_at: clock::now_ms(),
            from_phone: None,
            chat_phone: None,
            meta: serde_json::Value::Null,
            ..Default::default()
        };
        if events.send(ChannelEvent::Inbound(msg)).await.is_err() {
            return;
        }
    }
}

impl Channel for Sim {
    fn connect(
        &mut self,
        events: mpsc::Sender<ChannelEvent>,
    ) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            if let Some(g) = self.generator.take() {
                g.abort();
            }
            self.events = Some(events.clone());
            if self.config.login_code.is_some() {
                self.challenged = true;
                let challenge = Challenge {
                    kind: ChallengeKind::Sms,
                    hint: Some("the code is in the sim session's config".into()),
                    expires_at: clock::now_ms() + CHALLENGE_LIFETIME_MS,
                };
                let _ = events.send(ChannelEvent::Challenge(challenge)).await;
                return Ok(());
            }
            self.start_generating(events);
            Ok(())
        })
    }

    fn submit_code(&mut self, code: String) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let Some(events) = self.events.clone() else {
                return Err(ChannelError::NotConnected);
            };
            if !self.challenged {
                return Err(ChannelError::Rejected("no login code is awaited".into()));
            }
            if self.config.login_code.as_deref() != Some(code.trim()) {
                return Err(ChannelError::Rejected("that code is not right".into()));
            }
            self.challenged = false;
            self.start_generating(events);
            Ok(())
        })
    }

    fn send(&mut self, message: OutboundMessage) -> BoxFuture<'_, Result<String, ChannelError>> {
        Box::pin(async move {
            let Some(events) = self.events.clone().filter(|_| self.generator.is_some()) else {
                return Err(ChannelError::NotConnected);
            };
            // The network id is derived from ours, as a network that deduplicates would.
            let external = format!("sim-out-{}", message.id);
            let read = self.config.read_receipts;
            let id = external.clone();
            tokio::spawn(async move {
                let delivered = ChannelEvent::Ack {
                    id: id.clone(),
                    level: AckLevel::Delivered,
                };
                if events.send(delivered).await.is_ok() && read {
                    let _ = events
                        .send(ChannelEvent::Ack {
                            id,
                            level: AckLevel::Read,
                        })
                        .await;
                }
            });
            Ok(external)
        })
    }

    fn inject(&mut self, message: InboundMessage) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let Some(events) = self.events.clone().filter(|_| self.generator.is_some()) else {
                return Err(ChannelError::NotConnected);
            };
            // Never wait here: this runs inside the session actor, which is what
            // drains the buffer, so a full buffer would wait on itself.
            events
                .try_send(ChannelEvent::Inbound(message))
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => ChannelError::Busy(
                        "the session's inbound buffer is full (it is storing what it received); retry"
                            .into(),
                    ),
                    mpsc::error::TrySendError::Closed(_) => ChannelError::NotConnected,
                })
        })
    }

    fn logout(&mut self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            self.events = None;
            if let Some(g) = self.generator.take() {
                g.abort();
            }
            Ok(())
        })
    }

    fn disconnect(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.events = None;
            if let Some(g) = self.generator.take() {
                g.abort();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated() {
        assert!(
            SimConfig::parse(&serde_json::json!({ "inbound_per_second": 5, "payload_bytes": 10 }))
                .is_ok()
        );
        assert!(SimConfig::parse(&serde_json::Value::Null).is_ok());
        assert!(SimConfig::parse(&serde_json::json!({ "inbound_per_second": -1 })).is_err());
        assert!(SimConfig::parse(&serde_json::json!({ "payload_bytes": 0 })).is_err());
        assert!(SimConfig::parse(&serde_json::json!({ "colour": 1 })).is_err());
    }

    #[tokio::test]
    async fn generates_ready_then_messages_at_the_rate() {
        let mut sim = Sim::new(
            "ses_1",
            SimConfig {
                inbound_per_second: 200.0,
                payload_bytes: 16,
                read_receipts: false,
                login_code: None,
            },
        );
        let (tx, mut rx) = mpsc::channel(100);
        sim.connect(tx).await.unwrap();
        assert_eq!(rx.recv().await, Some(ChannelEvent::Ready));
        for _ in 0..5 {
            match rx.recv().await {
                Some(ChannelEvent::Inbound(m)) => assert_eq!(m.text.len(), 16),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            sim.send(OutboundMessage {
                id: "msg_1".into(),
                to: "x".into(),
                text: "hi".into(),
                ..Default::default()
            })
            .await
            .is_ok()
        );
        sim.disconnect().await;
    }

    #[tokio::test]
    async fn a_login_code_is_asked_for_before_ready_and_read_receipts_follow_delivery() {
        let config = SimConfig::parse(&serde_json::json!({
            "login_code": "123456", "read_receipts": true
        }))
        .unwrap();
        let mut sim = Sim::new("ses_1", config);
        let (tx, mut rx) = mpsc::channel(100);
        sim.connect(tx).await.unwrap();
        match rx.recv().await {
            Some(ChannelEvent::Challenge(c)) => assert_eq!(c.kind, ChallengeKind::Sms),
            other => panic!("{other:?}"),
        }
        let wrong = sim.submit_code("000000".into()).await;
        assert!(matches!(wrong, Err(ChannelError::Rejected(_))), "{wrong:?}");
        sim.submit_code(" 123456 ".into()).await.unwrap();
        assert_eq!(rx.recv().await, Some(ChannelEvent::Ready));
        assert!(sim.submit_code("123456".into()).await.is_err());
        let id = sim
            .send(OutboundMessage {
                id: "msg_2".into(),
                to: "x".into(),
                text: "hi".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let level = |ev| match ev {
            Some(ChannelEvent::Ack { id: got, level }) if got == id => level,
            other => panic!("{other:?}"),
        };
        assert_eq!(level(rx.recv().await), AckLevel::Delivered);
        assert_eq!(level(rx.recv().await), AckLevel::Read);
        assert!(SimConfig::parse(&serde_json::json!({ "login_code": "" })).is_err());
    }
}
