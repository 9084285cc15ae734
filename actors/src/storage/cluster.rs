//! Replicas and session leases (`replicas`; `sessions.owner`, `lease_epoch`,
//! `lease_expires_at`): which gateway process runs which session.
//!
//! A lease is taken by one conditional `UPDATE` (on Postgres over rows picked
//! `FOR UPDATE SKIP LOCKED`, so replicas claiming at once never take the same
//! session); every take bumps the epoch. Only the owner renews. Times are unix ms
//! from the replicas' clocks, which must agree within a fraction of the lease TTL.

use super::{Pool, Result, SessionRow, Store, on_pool, on_write_pool};

/// A gateway process sharing the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ReplicaRow {
    pub id: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// What a write from a replica's session tree is fenced by: it lands only while
/// no other replica holds a live lease on the session: the session is unowned,
/// its lease ran out, or `replica` holds it under `epoch` (`-1`: not held here
/// any more, as while a graceful stop hands it over: then any epoch of `replica`'s).
/// A replica that lost a lease (taken over after a pause, say) cannot overwrite
/// its successor's status, saved login, network details or mailbox positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub replica: String,
    pub epoch: i64,
    /// Unix ms: leases that ran out before this are no one's.
    pub now: i64,
}

/// The condition a fenced write on `sessions` adds (`$o` owner, `$e` epoch, `$n`
/// now; all NULL: unfenced).
macro_rules! fenced {
    ($o:literal, $e:literal, $n:literal) => {
        concat!(
            "(CAST(",
            $o,
            " AS TEXT) IS NULL OR owner IS NULL OR lease_expires_at < ",
            $n,
            " OR (owner = ",
            $o,
            " AND (lease_epoch = ",
            $e,
            " OR ",
            $e,
            " = -1)))"
        )
    };
}
pub(crate) use fenced;

/// A session lease a replica holds.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    pub session_id: String,
    pub epoch: i64,
}

impl Store {
    /// Records replica `id` as live (again, after a restart).
    pub async fn register_replica(&self, id: &str, now: i64) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
                 ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, \
                 heartbeat_at = excluded.heartbeat_at",
            )
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Heartbeats replica `id`; false when its row is gone (declared dead).
    pub async fn heartbeat_replica(&self, id: &str, now: i64) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query("UPDATE replicas SET heartbeat_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Replicas that heartbeated at or after `since`, oldest first.
    pub async fn live_replicas(&self, since: i64) -> Result<Vec<ReplicaRow>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, ReplicaRow>(
                "SELECT id, started_at, heartbeat_at FROM replicas WHERE heartbeat_at >= $1 \
                 ORDER BY started_at, id",
            )
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Forgets replica `id` (a graceful stop) and replicas silent since `before`.
    pub async fn remove_replicas(&self, id: &str, before: i64) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("DELETE FROM replicas WHERE id = $1 OR heartbeat_at < $2")
                .bind(id)
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Extends every lease `replica` holds to `expires_at`; what it still holds.
    pub async fn renew_leases(&self, replica: &str, expires_at: i64) -> Result<Vec<Lease>> {
        let rows = on_write_pool!(self, |pool| {
            sqlx::query_as::<_, Lease>(
                "UPDATE sessions SET lease_expires_at = $2 WHERE owner = $1 \
                 RETURNING id AS session_id, lease_epoch AS epoch",
            )
            .bind(replica)
            .bind(expires_at)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Takes up to `limit` sessions that should run and have no live lease (never
    /// held, released, or expired before `now`), until `expires_at`.
    pub async fn claim_sessions(
        &self,
        replica: &str,
        now: i64,
        expires_at: i64,
        limit: i64,
    ) -> Result<Vec<Lease>> {
        const FREE: &str = "desired_state = 'running' AND (owner IS NULL OR lease_expires_at < $2)";
        let rows = match &self.pool {
            Pool::Postgres(pool) => {
                sqlx::query_as::<_, Lease>(sqlx::AssertSqlSafe(format!(
                    "UPDATE sessions SET owner = $1, lease_epoch = lease_epoch + 1, lease_expires_at = $3 \
                     WHERE id IN (SELECT id FROM sessions WHERE {FREE} ORDER BY id LIMIT $4 \
                     FOR UPDATE SKIP LOCKED) RETURNING id AS session_id, lease_epoch AS epoch"
                )))
                .bind(replica)
                .bind(now)
                .bind(expires_at)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Pool::Sqlite { write: pool, .. } => {
                sqlx::query_as::<_, Lease>(sqlx::AssertSqlSafe(format!(
                    "UPDATE sessions SET owner = $1, lease_epoch = lease_epoch + 1, lease_expires_at = $3 \
                     WHERE id IN (SELECT id FROM sessions WHERE {FREE} ORDER BY id LIMIT $4) \
                     RETURNING id AS session_id, lease_epoch AS epoch"
                )))
                .bind(replica)
                .bind(now)
                .bind(expires_at)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows)
    }

    /// Takes session `id` for `replica` to start it (its row now wants to run: a tick
    /// in between must not take the lease back as unwanted) if it has no live lease,
    /// or `replica` holds it already (then only extended). `None` when another
    /// replica holds it.
    pub async fn take_session(
        &self,
        id: &str,
        replica: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<Lease>> {
        let row = on_write_pool!(self, |pool| {
            sqlx::query_as::<_, Lease>(
                "UPDATE sessions SET desired_state = 'running', \
                   lease_epoch = CASE WHEN owner = $2 THEN lease_epoch ELSE lease_epoch + 1 END, \
                   owner = $2, lease_expires_at = $4 \
                 WHERE id = $1 AND (owner IS NULL OR owner = $2 OR lease_expires_at < $3) \
                 RETURNING id AS session_id, lease_epoch AS epoch",
            )
            .bind(id)
            .bind(replica)
            .bind(now)
            .bind(expires_at)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// After a restart as the same replica: its leases back, each under a new epoch
    /// (whatever the previous process still had in flight is fenced off).
    pub async fn retake_leases(&self, replica: &str, expires_at: i64) -> Result<Vec<Lease>> {
        let rows = on_write_pool!(self, |pool| {
            sqlx::query_as::<_, Lease>(
                "UPDATE sessions SET lease_epoch = lease_epoch + 1, lease_expires_at = $2 \
                 WHERE owner = $1 AND desired_state = 'running' \
                 RETURNING id AS session_id, lease_epoch AS epoch",
            )
            .bind(replica)
            .bind(expires_at)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Gives up the leases `replica` holds on sessions that no longer want to run:
    /// their ids and statuses.
    pub async fn release_unwanted_leases(&self, replica: &str) -> Result<Vec<(String, String)>> {
        let rows = on_write_pool!(self, |pool| {
            sqlx::query_as::<_, (String, String)>(
                "UPDATE sessions SET owner = NULL, lease_expires_at = 0 \
                 WHERE owner = $1 AND desired_state <> 'running' RETURNING id, status",
            )
            .bind(replica)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Makes session `id` stop wanting to run (its owner stops it on its next tick).
    pub async fn want_stopped(&self, id: &str) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("UPDATE sessions SET desired_state = 'stopped' WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Gives up `replica`'s lease on session `id` (held under `epoch`).
    pub async fn release_lease(&self, id: &str, replica: &str, epoch: i64) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE sessions SET owner = NULL, lease_expires_at = 0 \
                 WHERE id = $1 AND owner = $2 AND lease_epoch = $3",
            )
            .bind(id)
            .bind(replica)
            .bind(epoch)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// The replica holding a live lease on session `id`, with its epoch.
    pub async fn session_owner(&self, id: &str, now: i64) -> Result<Option<(String, i64)>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT owner, lease_epoch FROM sessions \
                 WHERE id = $1 AND owner IS NOT NULL AND lease_expires_at >= $2",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Live leases per replica: `(replica, session id)`, by replica then session.
    pub async fn live_leases(&self, now: i64) -> Result<Vec<(String, String)>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT owner, id FROM sessions WHERE owner IS NOT NULL AND lease_expires_at >= $1 \
                 ORDER BY owner, id",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Tenants with sends queued on sessions `replica` holds (a send queued through
    /// another replica waits for this one's sender).
    pub async fn tenants_with_sends_held_by(&self, replica: &str) -> Result<Vec<String>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT m.tenant_id FROM messages m JOIN sessions s ON s.id = m.session_id \
                 WHERE s.owner = $1 AND m.direction = 'outbound' AND m.status = 'queued'",
            )
            .bind(replica)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// How many sessions want to run.
    pub async fn sessions_wanting_to_run(&self) -> Result<i64> {
        let n = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM sessions WHERE desired_state = 'running'",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }

    /// Sessions `replica` holds that should run, with their rows.
    pub async fn held_sessions(&self, replica: &str) -> Result<Vec<(SessionRow, i64)>> {
        let ids = on_pool!(self, |pool| {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT id, lease_epoch FROM sessions WHERE owner = $1 AND desired_state = 'running' \
                 ORDER BY id",
            )
            .bind(replica)
            .fetch_all(pool)
            .await?
        });
        let mut out = Vec::with_capacity(ids.len());
        for (id, epoch) in ids {
            if let Some(row) = self.session_by_id(&id).await? {
                out.push((row, epoch));
            }
        }
        Ok(out)
    }
}

/// A command for a session, routed to the replica running it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommandRow {
    pub id: String,
    pub session_id: String,
    pub request: String,
}

/// The channel replicas signal each other on (Postgres `LISTEN/NOTIFY`).
pub const NOTIFY_CHANNEL: &str = "switchboard";

impl Store {
    /// Sends `payload` to every replica listening (Postgres; nothing on SQLite,
    /// where there is one process).
    pub async fn notify(&self, payload: &str) -> Result<()> {
        if let Pool::Postgres(pool) = &self.pool {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(payload)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// A connection listening on [`NOTIFY_CHANNEL`] (Postgres only).
    pub async fn listener(&self) -> Result<Option<sqlx::postgres::PgListener>> {
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen(NOTIFY_CHANNEL).await?;
                Ok(Some(l))
            }
            Pool::Sqlite { .. } => Ok(None),
        }
    }

    /// Writes command `id` for session `session_id`, to be run by replica `target`.
    pub async fn push_command(
        &self,
        id: &str,
        session_id: &str,
        target: &str,
        request: &str,
        now: i64,
    ) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO session_commands (id, session_id, target, request, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(session_id)
            .bind(target)
            .bind(request)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Takes up to `limit` commands waiting for replica `target`, oldest first; each
    /// is taken once, whoever else asks at the same time.
    pub async fn take_commands(
        &self,
        target: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<CommandRow>> {
        const PICK: &str = "SELECT id FROM session_commands WHERE target = $1 AND taken_at IS NULL \
             ORDER BY created_at, id LIMIT $3";
        let rows = match &self.pool {
            Pool::Postgres(pool) => {
                sqlx::query_as::<_, CommandRow>(sqlx::AssertSqlSafe(format!(
                    "UPDATE session_commands SET taken_at = $2 \
                     WHERE id IN ({PICK} FOR UPDATE SKIP LOCKED) \
                     RETURNING id, session_id, request"
                )))
                .bind(target)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Pool::Sqlite { write: pool, .. } => {
                sqlx::query_as::<_, CommandRow>(sqlx::AssertSqlSafe(format!(
                    "UPDATE session_commands SET taken_at = $2 WHERE id IN ({PICK}) \
                     RETURNING id, session_id, request"
                )))
                .bind(target)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows)
    }

    /// Records command `id`'s answer.
    pub async fn answer_command(&self, id: &str, answer: &str, now: i64) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("UPDATE session_commands SET answer = $2, answered_at = $3 WHERE id = $1")
                .bind(id)
                .bind(answer)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Command `id`'s answer (`Some(None)` while it has none; `None`: no such command).
    pub async fn command_answer(&self, id: &str) -> Result<Option<Option<String>>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT answer FROM session_commands WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Forgets command `id` (answered and read, or given up before it was taken:
    /// then it is not run). True when the row went; `only_untaken` keeps a command
    /// the owner is running.
    pub async fn drop_command(&self, id: &str, only_untaken: bool) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM session_commands WHERE id = $1 AND (NOT $2 OR taken_at IS NULL)",
            )
            .bind(id)
            .bind(only_untaken)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Deletes commands created before `before` (their askers gave up long ago).
    pub async fn sweep_commands(&self, before: i64) -> Result<u64> {
        let n = on_write_pool!(self, |pool| {
            sqlx::query("DELETE FROM session_commands WHERE created_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}

impl Store {
    /// Takes tenant `tenant_id`'s next send slot under a shared GCRA limit: one send
    /// every `interval_us`, up to `burst` at once. `None` when taken; else how many
    /// microseconds until one is free. `now_us` is unix microseconds.
    ///
    /// A slot may be taken up to a fifth of an interval (20 ms at most) early: a
    /// sender that sleeps until its slot wakes a little late (timer, round trip),
    /// and without that slack every late wake-up would push the schedule back,
    /// so the tenant would get less than its rate. The rate over time is exact.
    pub async fn take_send_slot(
        &self,
        tenant_id: &str,
        now_us: i64,
        interval_us: i64,
        burst: u32,
    ) -> Result<Option<i64>> {
        let slack = (interval_us / 5).min(20_000);
        let tolerance = interval_us.saturating_mul(i64::from(burst.max(1)) - 1) + slack;
        let taken = on_write_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO send_rates (tenant_id, tat) VALUES ($1, $2 + $3) \
                 ON CONFLICT (tenant_id) DO UPDATE \
                   SET tat = (CASE WHEN send_rates.tat > $2 THEN send_rates.tat ELSE $2 END) + $3 \
                   WHERE (CASE WHEN send_rates.tat > $2 THEN send_rates.tat ELSE $2 END) - $4 <= $2 \
                 RETURNING tat",
            )
            .bind(tenant_id)
            .bind(now_us)
            .bind(interval_us)
            .bind(tolerance)
            .fetch_optional(pool)
            .await?
        });
        if taken.is_some() {
            return Ok(None);
        }
        let tat = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>("SELECT tat FROM send_rates WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(Some(
            tat.map_or(0, |t| t - tolerance - now_us)
                .clamp(1, interval_us.max(1)),
        ))
    }
}
