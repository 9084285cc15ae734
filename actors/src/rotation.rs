//! Master-key rotation: re-seals every encrypted column under the keyring's current
//! key. Rows are read in batches and each is replaced only if unchanged since it was
//! read, so it is safe beside a running gateway and can be re-run at any time (rows
//! already under the current key are skipped).

use crate::storage::{SEALED_COLUMNS, Store, StoreError};
use switchboard_crypto::{Binding, Keyring, OpenError};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("row {table}/{id} cannot be decrypted with any known key: {source}")]
    Open {
        table: &'static str,
        id: String,
        source: OpenError,
    },
    #[error("encryption failed: {0}")]
    Seal(#[from] switchboard_crypto::Error),
}

/// Re-seals everything not under the current key. Returns how many values changed.
pub async fn reseal_all(store: &Store, keyring: &Keyring) -> Result<u64, RotationError> {
    let mut total = 0;
    for col in SEALED_COLUMNS {
        loop {
            let rows = store
                .rows_not_sealed_with(col, keyring.current_id(), 500)
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut replaced = Vec::with_capacity(rows.len());
            for row in rows {
                let binding = Binding {
                    tenant_id: &row.tenant_id,
                    record_id: &row.id,
                    purpose: col.purpose,
                };
                let plain = keyring
                    .open(&row.key_id, &row.data, binding)
                    .map_err(|source| RotationError::Open {
                        table: col.table,
                        id: row.id.clone(),
                        source,
                    })?;
                let sealed = keyring.seal(&plain, binding)?;
                replaced.push((row, sealed));
            }
            total += store.replace_sealed(col, &replaced).await?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Events, Publish};
    use crate::rag_host::{draft_binding, seal_draft};
    use crate::storage::{
        AuditEntry, DatabaseTarget, DraftRow, LimitOverrides, MessageExtras, MessageRow,
        MessageWrite, SessionRow,
    };
    use std::sync::Arc;
    use switchboard_crypto::{ApiKeyHash, MasterKey};
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn drafts_and_send_extras_are_resealed_under_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseTarget::Sqlite(dir.path().join("r.db")))
            .await
            .unwrap();
        let old = MasterKey::generate().unwrap();
        let before = Arc::new(Keyring::new(old.clone(), []));
        let (tenant, _) = store
            .create_tenant(
                "Acme",
                &LimitOverrides::default(),
                None,
                &ApiKeyHash::of("k"),
                "k",
                &AuditEntry::new("test", "tenant.create"),
            )
            .await
            .unwrap();
        let session = SessionRow {
            id: crate::ids::new_id("ses"),
            tenant_id: tenant.id.clone(),
            channel: "sim".into(),
            name: None,
            status: "STOPPED".into(),
            status_reason: None,
            desired_state: "stopped".into(),
            config: "{}".into(),
            network: None,
            created_at: 0,
            updated_at: 0,
        };
        let audit = AuditEntry::new("test", "session.create");
        store.create_session(&session, &audit).await.unwrap();
        // A send with a subject (sealed extras), stored through the event pipeline.
        let extras = MessageExtras {
            subject: Some("Order 42".into()),
            ..MessageExtras::default()
        };
        let message = MessageRow::outbound(&before, &session, "+1555", "hi", &extras).unwrap();
        let cancel = CancellationToken::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let (events, _writer) = Events::spawn(store.clone(), before.clone(), wake, cancel.clone());
        let mut event = Publish::new(&tenant.id, "message.queued", serde_json::json!({}));
        event.message = Some(MessageWrite::Insert(Box::new(message.clone())));
        events.publish(event).await.unwrap();
        // A draft.
        let draft_id = crate::ids::new_id(crate::ids::DRAFT);
        let sealed = seal_draft(&before, &tenant.id, &draft_id, "where?", "here").unwrap();
        let draft = DraftRow {
            id: draft_id.clone(),
            tenant_id: tenant.id.clone(),
            session_id: session.id.clone(),
            event_id: "evt_1".into(),
            peer: "+1555".into(),
            status: "pending".into(),
            reason: "mode_draft".into(),
            intent: "response".into(),
            source: "retrieval".into(),
            body_key_id: sealed.key_id,
            body: sealed.data,
            message_id: None,
            created_at: 0,
            updated_at: 0,
        };
        store.insert_draft(&draft).await.unwrap();

        let new = MasterKey::generate().unwrap();
        let after = Keyring::new(new.clone(), [old]);
        assert!(reseal_all(&store, &after).await.unwrap() >= 3);
        // Everything opens with the new key alone now.
        let only_new = Keyring::new(new, []);
        let stored = store
            .get_message(&tenant.id, &message.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.extras_key_id.as_deref(), Some(after.current_id()));
        assert_eq!(
            stored.open_extras(&only_new).unwrap().subject.as_deref(),
            Some("Order 42")
        );
        let d = store
            .get_draft(&tenant.id, &draft_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.body_key_id, after.current_id());
        assert!(
            only_new
                .open(
                    &d.body_key_id,
                    &d.body,
                    draft_binding(&tenant.id, &draft_id)
                )
                .is_ok()
        );
        cancel.cancel();
    }
}
