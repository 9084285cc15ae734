//! Folder positions of e-mail sessions, on SQLite, and on Postgres when
//! `TEST_DATABASE_URL` names a server (a fresh database each run).

use switchboard_actors::storage::{
    AuditEntry, DatabaseTarget, FolderPosition, LimitOverrides, SessionRow,
};
use switchboard_actors::{Store, ids};
use switchboard_crypto::ApiKeyHash;

async fn store(dir: &tempfile::TempDir) -> Store {
    let target = match std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    {
        Some(admin_url) => {
            let name = format!("sbmail_{}", ulid::Ulid::new().to_string().to_lowercase());
            let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            DatabaseTarget::from_url(&format!("{base}/{name}")).unwrap()
        }
        None => DatabaseTarget::Sqlite(dir.path().join("m.db")),
    };
    Store::connect(&target).await.unwrap()
}

#[tokio::test]
async fn folder_positions_are_saved_replaced_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (tenant, _) = store
        .create_tenant(
            "Acme",
            &LimitOverrides::default(),
            None,
            &ApiKeyHash::of("sbk_mail"),
            "sbk_ma",
            &AuditEntry::new("test", "tenant.create"),
        )
        .await
        .unwrap();
    let session = SessionRow {
        id: ids::new_id("ses"),
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
    store
        .create_session(&session, &AuditEntry::new("test", "session.create"))
        .await
        .unwrap();
    assert_eq!(
        store.folder_position(&session.id, "INBOX").await.unwrap(),
        None
    );
    let mut inbox = FolderPosition {
        folder: "INBOX".into(),
        uid_validity: 1_700_000_001,
        last_uid: 41,
        highest_modseq: Some(9_000_000_000),
    };
    store
        .set_folder_position(&session.id, &inbox)
        .await
        .unwrap();
    inbox.last_uid = 42;
    inbox.highest_modseq = None;
    store
        .set_folder_position(&session.id, &inbox)
        .await
        .unwrap();
    let sent = FolderPosition {
        folder: "Sent".into(),
        uid_validity: 7,
        last_uid: 3,
        highest_modseq: None,
    };
    store.set_folder_position(&session.id, &sent).await.unwrap();
    assert_eq!(
        store.folder_position(&session.id, "INBOX").await.unwrap(),
        Some(inbox)
    );
    assert_eq!(
        store.folder_position(&session.id, "Sent").await.unwrap(),
        Some(sent)
    );
    store.forget_folder_positions(&session.id).await.unwrap();
    assert_eq!(
        store.folder_position(&session.id, "INBOX").await.unwrap(),
        None
    );
}
