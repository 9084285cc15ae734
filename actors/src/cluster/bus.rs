//! Signals between replicas: Postgres `LISTEN/NOTIFY` on one channel
//! ([`NOTIFY_CHANNEL`]).
//!
//! A signal only wakes someone up; what to do is always read from the database
//! (the command row, the events after a cursor, the free leases), so a signal lost
//! while a listener reconnects costs a poll interval, never data. After a
//! reconnect every subscriber gets [`Signal::Resync`] and looks again. Every
//! signal is also delivered in this process at once, and a replica skips its own
//! signals when they come back from Postgres. On SQLite (one process) the bus is
//! in-process only.

use crate::storage::{NOTIFY_CHANNEL, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Commands wait for replica `0` (see [`super::commands`]).
    Commands(String),
    /// Command `0` has its answer.
    Answered(String),
    /// Sessions are free to take: one was left for a less loaded replica, or a
    /// replica handed its sessions over.
    Leases,
    /// Events were committed (event streams read on).
    Events,
    /// Sends of tenant `1` wait for replica `0`'s sender.
    Sends(String, String),
    /// API keys or tenants changed: cached keys are stale (sent by the store,
    /// [`crate::storage::KEYS_CHANGED`]; the listener acts on it itself).
    Keys,
    /// The listener reconnected: signals may have been missed; look again.
    Resync,
}

impl Signal {
    fn encode(&self, origin: &str) -> String {
        match self {
            Self::Commands(r) => format!("{origin} cmd {r}"),
            Self::Answered(c) => format!("{origin} ans {c}"),
            Self::Leases => format!("{origin} lease"),
            Self::Events => format!("{origin} ev"),
            Self::Sends(r, t) => format!("{origin} send {r} {t}"),
            Self::Keys => format!("{origin} keys"),
            Self::Resync => format!("{origin} resync"),
        }
    }

    /// The signal in `payload` and the replica that sent it.
    fn decode(payload: &str) -> Option<(&str, Self)> {
        let mut parts = payload.split(' ');
        let origin = parts.next()?;
        let signal = match (parts.next()?, parts.next(), parts.next()) {
            ("cmd", Some(r), None) => Self::Commands(r.to_owned()),
            ("ans", Some(c), None) => Self::Answered(c.to_owned()),
            ("lease", None, None) => Self::Leases,
            ("ev", None, None) => Self::Events,
            ("send", Some(r), Some(t)) => Self::Sends(r.to_owned(), t.to_owned()),
            ("keys", None, None) => Self::Keys,
            ("resync", None, None) => Self::Resync,
            _ => return None,
        };
        Some((origin, signal))
    }
}

#[derive(Debug)]
struct Inner {
    me: String,
    store: Store,
    tx: broadcast::Sender<Signal>,
}

/// This replica's end of the bus (cheap to clone).
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

/// Least time between two commit signals of one replica (commits in between
/// ride on the next).
const EVENTS_EVERY: Duration = Duration::from_millis(20);

/// How long the listener waits before connecting again.
const RECONNECT: Duration = Duration::from_secs(1);

impl Bus {
    /// A bus for replica `me`; [`Bus::spawn`] starts listening.
    pub fn new(store: Store, me: String) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner { me, store, tx }),
        }
    }

    /// Signals delivered from now on. A subscriber that falls behind gets
    /// [`broadcast::error::RecvError::Lagged`] and should look again, as on
    /// [`Signal::Resync`].
    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.inner.tx.subscribe()
    }

    /// Tells this replica at once and the others through Postgres. A failed
    /// `NOTIFY` is logged: the others find out on their next poll.
    pub async fn publish(&self, signal: Signal) {
        let _ = self.inner.tx.send(signal.clone());
        if let Err(e) = self
            .inner
            .store
            .notify(&signal.encode(&self.inner.me))
            .await
        {
            tracing::debug!(error = %e, ?signal, "cluster signal not sent; peers poll");
        }
    }

    /// Commits anywhere in the cluster: `local` (this replica's commit counter)
    /// merged with the other replicas' [`Signal::Events`], for event streams to read
    /// on. This replica's commits are told to the others, at most one signal per
    /// [`EVENTS_EVERY`]. On SQLite it is `local` itself.
    pub fn commits_anywhere(
        &self,
        mut local: watch::Receiver<u64>,
        cancel: CancellationToken,
    ) -> watch::Receiver<u64> {
        if self.inner.store.backend() != crate::storage::Backend::Postgres {
            return local;
        }
        let (tx, rx) = watch::channel(0u64);
        let mut signals = self.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = local.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                        let payload = Signal::Events.encode(&me.inner.me);
                        if let Err(e) = me.inner.store.notify(&payload).await {
                            tracing::debug!(error = %e, "commit signal not sent; peers poll");
                        }
                        tokio::time::sleep(EVENTS_EVERY).await;
                    }
                    signal = signals.recv() => match signal {
                        Ok(Signal::Events | Signal::Resync)
                        | Err(broadcast::error::RecvError::Lagged(_)) => {
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        rx
    }

    /// Listens for the other replicas' signals until `cancel` (Postgres; nothing
    /// to do on SQLite).
    pub fn spawn(&self, cancel: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        if self.inner.store.backend() != crate::storage::Backend::Postgres {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = me.listen() => {}
            }
        }))
    }

    async fn listen(&self) {
        let mut first = true;
        loop {
            let mut listener = match self.inner.store.listener().await {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, channel = NOTIFY_CHANNEL, "cluster listener cannot connect; retrying");
                    tokio::time::sleep(RECONNECT).await;
                    continue;
                }
            };
            if !first {
                self.inner.store.forget_keys();
                let _ = self.inner.tx.send(Signal::Resync);
            }
            first = false;
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let Some((origin, signal)) = Signal::decode(n.payload()) else {
                            tracing::debug!(payload = n.payload(), "unknown cluster signal");
                            continue;
                        };
                        if signal == Signal::Keys {
                            self.inner.store.forget_keys();
                        }
                        if origin != self.inner.me {
                            let _ = self.inner.tx.send(signal);
                        }
                    }
                    // The connection went: signals meanwhile are lost.
                    Ok(None) => {
                        tracing::info!("cluster listener reconnecting");
                        self.inner.store.forget_keys();
                        let _ = self.inner.tx.send(Signal::Resync);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster listener failed; reconnecting");
                        break;
                    }
                }
            }
            tokio::time::sleep(RECONNECT).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_with_their_origin() {
        let all = [
            Signal::Commands("rep_a".into()),
            Signal::Answered("cmd_1".into()),
            Signal::Leases,
            Signal::Events,
            Signal::Sends("rep_b".into(), "ten_1".into()),
            Signal::Keys,
            Signal::Resync,
        ];
        for s in all {
            let payload = s.encode("rep_x");
            assert_eq!(Signal::decode(&payload), Some(("rep_x", s)));
        }
        assert_eq!(
            Signal::decode(crate::storage::KEYS_CHANGED),
            Some(("-", Signal::Keys))
        );
        assert_eq!(Signal::decode("rep_x nonsense"), None);
        assert_eq!(Signal::decode("rep_x cmd"), None);
        assert_eq!(Signal::decode(""), None);
    }
}
