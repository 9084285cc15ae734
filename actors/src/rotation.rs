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
