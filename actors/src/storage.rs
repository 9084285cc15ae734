//! The repository layer: one [`Store`] over SQLite (the embedded default) or Postgres
//! (`DATABASE_URL=postgres://…`), used by every other component.
//!
//! Both backends run the same SQL text: `$n` placeholders (which SQLite accepts too),
//! unix-millisecond `BIGINT` timestamps and text/bytes columns only. Where the two
//! must differ (schema types, `FOR UPDATE SKIP LOCKED` when claiming outbox rows on
//! Postgres), the difference is written out
//! per backend inside [`on_pool!`]. Migrations for each backend are embedded in the
//! binary and run by [`Store::connect`].
//!
//! Writes that change who can do what (tenants, keys) record an audit entry in the
//! same transaction, so the trail and the change cannot disagree.
//!
//! Failure: every method returns [`StoreError`]; a unique-key clash surfaces as
//! [`StoreError::Conflict`], everything else as [`StoreError::Database`].

mod account_actions;
mod api_keys;
mod audit;
mod cluster;
mod contacts;
mod events;
mod key_cache;
mod mailboxes;
mod media;
pub(crate) mod messages;
mod outbox;
mod rag;
mod retention;
mod sealed;
mod sessions;
mod suppressions;
mod tenant_settings;
mod tenants;
mod webhooks;

pub use api_keys::{ApiKeyRecord, AuthenticatedKey};
pub use audit::{AuditEntry, AuditRecord};
pub use cluster::{CommandRow, Fence, Lease, NOTIFY_CHANNEL, ReplicaRow};
pub use contacts::{ERASED, erased_external_id};
pub use events::{
    AttemptRow, DeliveryRow, EventQuery, EventResult, EventRow, Inserted, NewEvent, Targets,
};
pub use key_cache::{KEYS_CHANGED, KEYS_TTL};
pub use mailboxes::FolderPosition;
pub use media::MediaRow;
pub use messages::{
    BODY_PURPOSE as MESSAGE_BODY_PURPOSE, EXTRAS_PURPOSE as MESSAGE_EXTRAS_PURPOSE, Enqueued,
    MessageExtras, MessageRow, MessageWrite,
};
pub use outbox::{AttemptResult, Claimed, Outcome};
pub use rag::{DRAFT_PURPOSE, DraftRow, KbDocumentRow, RagJob};
pub use retention::SWEEP_BATCH;
pub use sealed::{SEALED_COLUMNS, SealedColumn, SealedRow};
pub use sessions::{
    SECRETS_PURPOSE as SESSION_SECRETS_PURPOSE, STATE_PURPOSE as SESSION_STATE_PURPOSE, SessionRow,
};
pub use suppressions::SuppressionRow;
pub use tenant_settings::SETTINGS_TTL;
pub use tenants::{LimitOverrides, LimitsPatch, Tenant, TenantPatch, TenantStatus};
pub use webhooks::{Endpoint, EndpointPatch, EndpointStatus, type_matches};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row with the same unique key exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value could not be decoded (e.g. malformed JSON written by hand).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database to open.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A SQLite file, created if missing.
    Sqlite(PathBuf),
    /// A Postgres connection URL (may hold a password: never printed).
    Postgres(String),
}

impl DatabaseTarget {
    /// Parses `sqlite://PATH`, `sqlite:PATH`, `postgres://…` or `postgresql://…`.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(StoreError::UnsupportedUrl(
                    "sqlite url without a path".into(),
                ));
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            Err(StoreError::UnsupportedUrl(format!(
                "scheme `{scheme}` (expected postgres:// or sqlite://)"
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            // The URL may carry a password.
            Self::Postgres(_) => f.write_str("Postgres([redacted url])"),
        }
    }
}

/// The backend in use, for logs, metrics and the few queries that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// SQLite allows one writer at a time. Its own wait for the write lock is a sleep
/// with growing back-off (1, 2, 5 … 100 ms), so writers on several connections
/// contending under load wait far longer than the writes take. Instead every write
/// goes through one connection (`write`), and writers queue for it in the pool, woken
/// the moment it is free; reads run on read-only connections (`read`), which in WAL
/// mode never wait for the writer. Postgres handles concurrent writers itself.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres(PgPool),
}

/// Runs the same read-only expression against whichever pool the store holds. The
/// body is expanded once per backend, so it type-checks against each driver
/// separately. On SQLite the connections are read-only: a write here fails.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::storage::Pool::Sqlite { read: $pool, .. } => $body,
            $crate::storage::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// [`on_pool!`] for an expression that writes: on SQLite it runs on the single
/// write connection (see [`Pool`]).
macro_rules! on_write_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::storage::Pool::Sqlite { write: $pool, .. } => $body,
            $crate::storage::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_write_pool;

/// Starts a transaction that will write. On SQLite it takes the write lock up
/// front (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes
/// later fails at once with "database is locked" when another writer got in between,
/// instead of waiting its turn.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send
    {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send
    {
        self.begin()
    }
}

/// Handle to the database; cheap to clone (it wraps a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Tenants' consent settings as last read (see [`SETTINGS_TTL`]).
    consent_cache: ConsentCache,
    /// Keys as last looked up (see [`KEYS_TTL`]).
    keys: std::sync::Arc<key_cache::KeyCache>,
}

type ConsentCache = std::sync::Arc<
    std::sync::Mutex<
        std::collections::HashMap<
            String,
            (
                std::time::Instant,
                std::sync::Arc<crate::consent::ConsentSettings>,
            ),
        >,
    >,
>;

impl Store {
    /// Opens the database, creating the SQLite file if needed, and runs migrations.
    pub async fn connect(target: &DatabaseTarget) -> Result<Self> {
        let pool = match target {
            DatabaseTarget::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
                }
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: a committed event survives power loss, not only a process crash.
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // Deleted and overwritten content is zeroed, not left in free
                    // pages: an erased contact is gone from the file too.
                    .pragma("secure_delete", "on")
                    // Statement journals (one per multi-row statement in a transaction
                    // that may abort half-way) stay in memory instead of spilling to a
                    // temporary file that is created, written and removed per statement.
                    .pragma("temp_store", "memory");
                // A local file: checking a connection before each use only costs a
                // round trip to its worker thread.
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(10))
                    .test_before_acquire(false)
                    .connect_with(opts.clone().create_if_missing(true))
                    .await?;
                sqlx::migrate!("./migrations/sqlite").run(&write).await?;
                let read = SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .test_before_acquire(false)
                    .connect_with(opts.read_only(true))
                    .await?;
                Pool::Sqlite { read, write }
            }
            DatabaseTarget::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?;
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
                Pool::Postgres(pool)
            }
        };
        Ok(Self {
            pool,
            consent_cache: ConsentCache::default(),
            keys: std::sync::Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite { .. } => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// A round trip to the database (readiness probe).
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes every connection, waiting for checked-out ones to return.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
pub(crate) fn conflict_or(err: sqlx::Error, what: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_urls() {
        assert_eq!(
            DatabaseTarget::from_url("sqlite:///tmp/x.db").unwrap(),
            DatabaseTarget::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            DatabaseTarget::from_url("sqlite:data/x.db?mode=rwc").unwrap(),
            DatabaseTarget::Sqlite("data/x.db".into())
        );
        assert_eq!(
            DatabaseTarget::from_url("postgres://u:p@127.0.0.1/db")
                .unwrap()
                .backend(),
            Backend::Postgres
        );
        assert!(DatabaseTarget::from_url("mysql://x").is_err());
        assert!(DatabaseTarget::from_url("sqlite://").is_err());
    }

    async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
        let target = DatabaseTarget::Sqlite(dir.path().join("switchboard.db"));
        Store::connect(&target).await.unwrap()
    }

    #[tokio::test]
    async fn sqlite_writers_queue_for_the_write_connection_and_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        on_write_pool!(store, |pool| {
            sqlx::query("CREATE TABLE queued (n BIGINT NOT NULL)")
                .execute(pool)
                .await
                .unwrap();
        });
        let writers = (0..64_i64).map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                on_write_pool!(store, |pool| {
                    let mut tx = pool.begin_write().await?;
                    sqlx::query("INSERT INTO queued (n) VALUES ($1)")
                        .bind(n)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await
                })
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap().unwrap();
        }
        let (count, sum) = on_pool!(store, |pool| {
            sqlx::query_as::<_, (i64, i64)>("SELECT COUNT(*), SUM(n) FROM queued")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert_eq!((count, sum), (64, (0..64).sum()));
        store.close().await;
    }

    #[tokio::test]
    async fn sqlite_read_connections_refuse_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let write = on_pool!(store, |pool| {
            sqlx::query("DELETE FROM tenants")
                .execute(pool)
                .await
                .map(|_| ())
        });
        let err = write.expect_err("a write on a read connection must fail");
        assert!(err.to_string().contains("readonly"), "{err}");
        store.close().await;
    }

    #[test]
    fn debug_hides_postgres_password() {
        let t = DatabaseTarget::from_url("postgres://u:s3cret@127.0.0.1/db").unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
