//! What each LinkedIn account did that LinkedIn counts (`account_actions`), read by
//! its safety caps. A row is written before the network call it counts; a retried
//! action (the same `ref_id`) keeps its first row.

use super::{BeginWrite, Result, Store, on_pool, on_write_pool};

/// Rows older than this are of no cap's concern (the longest window is a week).
const KEEP_MS: i64 = 8 * 24 * 3600 * 1000;
/// What was seen (`seen:*`: invitations reported) is kept longer: an invitation can
/// stay pending for months and must not be reported again.
const KEEP_SEEN_MS: i64 = 180 * 24 * 3600 * 1000;

impl Store {
    /// Records an action of `session_id` at `at` (unix ms); returns false when one
    /// with this `ref_id` was already recorded (a retry), which is then left as it was.
    pub async fn record_account_action(
        &self,
        session_id: &str,
        kind: &str,
        ref_id: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        let inserted = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "INSERT INTO account_actions (session_id, kind, ref_id, at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (session_id, ref_id) DO NOTHING",
            )
            .bind(session_id)
            .bind(kind)
            .bind(ref_id)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "DELETE FROM account_actions WHERE session_id = $1 \
                 AND ((at < $2 AND kind NOT LIKE 'seen:%') OR at < $3)",
            )
            .bind(session_id)
            .bind(at - KEEP_MS)
            .bind(at - KEEP_SEEN_MS)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            n == 1
        });
        Ok(inserted)
    }

    /// The actions of `session_id` since `since` (unix ms): (kind, at), oldest first.
    pub async fn account_actions(
        &self,
        session_id: &str,
        since: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT kind, at FROM account_actions WHERE session_id = $1 AND at >= $2 ORDER BY at",
            )
            .bind(session_id)
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Moves a recorded action's time to when the network took it (spacing counts
    /// from there, not from when it was first tried).
    pub async fn account_action_done(&self, session_id: &str, ref_id: &str, at: i64) -> Result<()> {
        on_write_pool!(self, |pool| {
            sqlx::query("UPDATE account_actions SET at = $1 WHERE session_id = $2 AND ref_id = $3")
                .bind(at)
                .bind(session_id)
                .bind(ref_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// When the action with our id `ref_id` was recorded for `session_id`, if it was.
    pub async fn account_action_at(&self, session_id: &str, ref_id: &str) -> Result<Option<i64>> {
        let at = on_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>(
                "SELECT at FROM account_actions WHERE session_id = $1 AND ref_id = $2",
            )
            .bind(session_id)
            .bind(ref_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(at)
    }
}
