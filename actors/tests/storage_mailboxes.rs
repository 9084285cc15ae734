//! Folder positions of e-mail sessions, on SQLite, and on Postgres when
//! `TEST_DATABASE_URL` names a server (a fresh database each run).

use switchboard_actors::storage::{AuditEntry, FolderPosition, LimitOverrides, SessionRow};
use switchboard_actors::{Store, ids};
use switchboard_crypto::ApiKeyHash;

async fn store(dir: &tempfile::TempDir) -> Store {
    switchboard_actors::testkit::fresh_store(dir.path(), "sbmail").await
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
        .set_folder_position(&session.id, &inbox, None)
        .await
        .unwrap();
    inbox.last_uid = 42;
    inbox.highest_modseq = None;
    store
        .set_folder_position(&session.id, &inbox, None)
        .await
        .unwrap();
    let sent = FolderPosition {
        folder: "Sent".into(),
        uid_validity: 7,
        last_uid: 3,
        highest_modseq: None,
    };
    store
        .set_folder_position(&session.id, &sent, None)
        .await
        .unwrap();
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

#[tokio::test]
async fn account_actions_count_once_per_ref_and_age_out_after_a_week() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (tenant, _) = store
        .create_tenant(
            "Acme",
            &LimitOverrides::default(),
            None,
            &ApiKeyHash::of("sbk_acts"),
            "sbk_ac",
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
    let day = 24 * 3600 * 1000;
    let now = 100 * day;
    let id = &session.id;
    assert!(
        store
            .record_account_action(id, "invitation", Some("msg_1"), now - 9 * day)
            .await
            .unwrap()
    );
    // What was seen is kept far longer: a pending invitation is not news again.
    assert!(
        store
            .record_account_action(id, "seen:invitation", Some("inv_1"), now - 30 * day)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_account_action(id, "invitation", Some("msg_2"), now - day)
            .await
            .unwrap()
    );
    // A retry of the same send keeps its first row.
    assert!(
        !store
            .record_account_action(id, "invitation", Some("msg_2"), now)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_account_action(id, "profile_view", None, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_account_action(id, "profile_view", None, now)
            .await
            .unwrap()
    );
    // The one from nine days ago was pruned by the later writes.
    let all = store.account_actions(id, 0).await.unwrap();
    assert_eq!(
        all,
        vec![
            ("seen:invitation".to_owned(), now - 30 * day),
            ("invitation".to_owned(), now - day),
            ("profile_view".to_owned(), now),
            ("profile_view".to_owned(), now),
        ]
    );
    assert_eq!(
        store.account_action_at(id, "msg_2").await.unwrap(),
        Some(now - day)
    );
    assert_eq!(store.account_action_at(id, "msg_1").await.unwrap(), None);
    assert_eq!(store.account_actions(id, now).await.unwrap().len(), 2);
}
