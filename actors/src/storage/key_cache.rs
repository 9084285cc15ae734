//! Keys as last looked up, so an authenticated request does not read the database.
//!
//! A cached key is used for at most [`KEYS_TTL`], and never after a change that
//! could alter it: revoking a key, or changing or deleting a tenant, through this
//! [`Store`](super::Store) forgets every cached key when it commits. On Postgres the
//! change is also signalled to every replica and process listening on
//! [`NOTIFY_CHANNEL`](super::NOTIFY_CHANNEL) ([`KEYS_CHANGED`]); they forget theirs
//! on receipt, and after their listener reconnects. [`KEYS_TTL`] bounds what is
//! left: a change made by another process on SQLite (the `admin` CLI on the same
//! file), or a signal lost with a crash between commit and `NOTIFY`.
//!
//! Only keys that were found are kept: an unknown or revoked key is looked up each
//! time, so a key created anywhere works at once.

use super::AuthenticatedKey;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest a looked-up key is used without reading it again.
pub const KEYS_TTL: Duration = Duration::from_secs(1);

/// The payload a process sends on [`NOTIFY_CHANNEL`](super::NOTIFY_CHANNEL) when
/// keys or tenants changed. Its origin (`-`) is no replica's, so every replica,
/// the sender's included, acts on it.
pub const KEYS_CHANGED: &str = "- keys";

/// Most keys kept; past it, the expired go, then everything.
const MAX_KEYS: usize = 4096;

#[derive(Debug)]
struct Cached {
    at: Instant,
    generation: u64,
    key: AuthenticatedKey,
}

/// The cache; one per [`Store`](super::Store) and its clones.
#[derive(Debug, Default)]
pub(super) struct KeyCache {
    /// Bumped by every change; an entry read under an older one is stale.
    generation: AtomicU64,
    keys: Mutex<HashMap<Vec<u8>, Cached>>,
}

impl KeyCache {
    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Cached>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The generation to pass to [`KeyCache::put`]: read it before the lookup, so
    /// a change committed while the lookup runs keeps its result out.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn get(&self, hash: &[u8]) -> Option<AuthenticatedKey> {
        let now = self.generation();
        self.keys()
            .get(hash)
            .filter(|c| c.generation == now && c.at.elapsed() < KEYS_TTL)
            .map(|c| c.key.clone())
    }

    /// Keeps `key`, found under `generation`, unless something changed since.
    pub(super) fn put(&self, hash: &[u8], generation: u64, key: &AuthenticatedKey) {
        let mut keys = self.keys();
        if generation != self.generation() {
            return;
        }
        if keys.len() >= MAX_KEYS {
            keys.retain(|_, c| c.generation == generation && c.at.elapsed() < KEYS_TTL);
            if keys.len() >= MAX_KEYS {
                keys.clear();
            }
        }
        keys.insert(
            hash.to_vec(),
            Cached {
                at: Instant::now(),
                generation,
                key: key.clone(),
            },
        );
    }

    /// Forgets every key (after a change, or when changes may have been missed).
    pub(super) fn forget(&self) {
        let mut keys = self.keys();
        self.generation.fetch_add(1, Ordering::AcqRel);
        keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scopes::Scopes;
    use crate::storage::{LimitOverrides, Tenant, TenantStatus};

    fn key(id: &str) -> AuthenticatedKey {
        AuthenticatedKey {
            key_id: id.into(),
            scopes: Scopes::all(),
            tenant: Tenant {
                id: "ten_1".into(),
                name: "T".into(),
                status: TenantStatus::Active,
                limits: LimitOverrides::default(),
                created_at: 0,
                updated_at: 0,
            },
        }
    }

    #[test]
    fn a_key_is_kept_until_a_change() {
        let cache = KeyCache::default();
        let g = cache.generation();
        cache.put(b"h1", g, &key("key_1"));
        assert_eq!(cache.get(b"h1").unwrap().key_id, "key_1");
        assert!(cache.get(b"h2").is_none());
        cache.forget();
        assert!(cache.get(b"h1").is_none());
    }

    #[test]
    fn a_lookup_that_overlapped_a_change_is_not_kept() {
        let cache = KeyCache::default();
        let before = cache.generation();
        cache.forget();
        cache.put(b"h1", before, &key("key_1"));
        assert!(cache.get(b"h1").is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = KeyCache::default();
        let g = cache.generation();
        for i in 0..MAX_KEYS + 10 {
            cache.put(format!("h{i}").as_bytes(), g, &key("k"));
        }
        assert!(cache.keys().len() <= MAX_KEYS);
        assert!(cache.get(format!("h{}", MAX_KEYS + 9).as_bytes()).is_some());
    }
}
