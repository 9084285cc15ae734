//! E-mail sessions' positions per folder (`mailbox_folders`): what a reconnect or a
//! restart resumes from. Each message is stored under an id of its folder, UIDVALIDITY
//! and UID, so a message fetched again after a crash (its position not yet saved) is
//! recognised and stored once; the position only says where to look from.

use super::cluster::fenced;
use super::{BeginWrite, Fence, Result, Store, on_pool, on_write_pool};
use crate::clock;

/// Where a session is in one folder.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FolderPosition {
    pub folder: String,
    pub uid_validity: i64,
    /// The highest UID already reported.
    pub last_uid: i64,
    /// HIGHESTMODSEQ at the last sync (CONDSTORE servers).
    pub highest_modseq: Option<i64>,
}

impl Store {
    pub async fn folder_position(
        &self,
        session_id: &str,
        folder: &str,
    ) -> Result<Option<FolderPosition>> {
        let row = on_pool!(self, |pool| {
            sqlx::query_as::<_, FolderPosition>(
                "SELECT folder, uid_validity, last_uid, highest_modseq FROM mailbox_folders \
                 WHERE session_id = $1 AND folder = $2",
            )
            .bind(session_id)
            .bind(folder)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Saves where a session is in a folder (replacing what was there). False when
    /// `fence` refused it (another replica holds the session).
    pub async fn set_folder_position(
        &self,
        session_id: &str,
        p: &FolderPosition,
        fence: Option<&Fence>,
    ) -> Result<bool> {
        let n = on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(concat!(
                "INSERT INTO mailbox_folders \
                 (session_id, folder, uid_validity, last_uid, highest_modseq, updated_at) \
                 SELECT $1, $2, $3, $4, $5, $6 FROM sessions WHERE id = $1 AND ",
                fenced!("$7", "$8", "$9"),
                " ON CONFLICT (session_id, folder) DO UPDATE SET uid_validity = excluded.uid_validity, \
                 last_uid = excluded.last_uid, highest_modseq = excluded.highest_modseq, \
                 updated_at = excluded.updated_at"
            ))
            .bind(session_id)
            .bind(&p.folder)
            .bind(p.uid_validity)
            .bind(p.last_uid)
            .bind(p.highest_modseq)
            .bind(clock::now_ms())
            .bind(fence.map(|f| f.replica.as_str()))
            .bind(fence.map(|f| f.epoch))
            .bind(fence.map(|f| f.now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n == 1)
    }

    /// Every folder position of a session, with when each was last saved (unix ms).
    pub async fn folder_positions(&self, session_id: &str) -> Result<Vec<(FolderPosition, i64)>> {
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, (String, i64, i64, Option<i64>, i64)>(
                "SELECT folder, uid_validity, last_uid, highest_modseq, updated_at \
                 FROM mailbox_folders WHERE session_id = $1 ORDER BY folder",
            )
            .bind(session_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(folder, uid_validity, last_uid, highest_modseq, at)| {
                (
                    FolderPosition {
                        folder,
                        uid_validity,
                        last_uid,
                        highest_modseq,
                    },
                    at,
                )
            })
            .collect())
    }

    /// Forgets every folder position of a session (a new login starts afresh).
    pub async fn forget_folder_positions(&self, session_id: &str) -> Result<()> {
        on_write_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM mailbox_folders WHERE session_id = $1")
                .bind(session_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
