//! Stand-ins for remote services we cannot reach from tests: local servers and pages
//! that implement the same contract our drivers rely on, driven by real Chromium.
//! Behind the `testkit` feature; the bench reuses them.

pub mod linkedin;
pub mod mail;
pub mod oauth;
pub mod s3;
pub mod whatsapp;

use std::io;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A fresh database for one test: a new database named `{prefix}_{ulid}` on the
/// Postgres server `TEST_DATABASE_URL` names, else a SQLite file in `dir`.
pub async fn fresh_store(dir: &std::path::Path, prefix: &str) -> crate::Store {
    crate::Store::connect(&fresh_target(dir, prefix).await)
        .await
        .expect("open the test database")
}

/// Where [`fresh_store`] would open its database (created, not yet migrated), for
/// tests that open it more than once, as several processes would.
pub async fn fresh_target(dir: &std::path::Path, prefix: &str) -> crate::storage::DatabaseTarget {
    use crate::storage::DatabaseTarget;
    match std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    {
        Some(admin_url) => {
            let name = format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase());
            let admin = sqlx::PgPool::connect(&admin_url)
                .await
                .expect("connect to TEST_DATABASE_URL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .expect("create the test database");
            admin.close().await;
            let (base, _) = admin_url
                .rsplit_once('/')
                .expect("TEST_DATABASE_URL needs a /database path");
            DatabaseTarget::from_url(&format!("{base}/{name}")).expect("a Postgres URL")
        }
        None => DatabaseTarget::Sqlite(dir.join(format!("{prefix}.db"))),
    }
}

/// An enabled endpoint of `tenant` at `url` (no FIFO, at most 8 deliveries in
/// flight), its secret sealed as the gateway seals it, not yet stored.
pub fn endpoint(
    keyring: &switchboard_crypto::Keyring,
    tenant: &str,
    url: &str,
) -> crate::storage::Endpoint {
    let id = crate::ids::new_id("whk");
    let now = crate::clock::now_ms();
    crate::storage::Endpoint {
        secret: keyring
            .seal(
                b"0123456789abcdef0123456789abcdef",
                crate::webhooks::secret_binding(tenant, &id),
            )
            .expect("seal a test secret"),
        id,
        tenant_id: tenant.to_owned(),
        url: url.to_owned(),
        description: None,
        event_types: None,
        previous_secret: None,
        previous_expires_at: None,
        status: crate::storage::EndpointStatus::Enabled,
        disabled_reason: None,
        fifo: false,
        max_in_flight: 8,
        failing_since: None,
        created_at: now,
        updated_at: now,
    }
}

/// A free loopback port (bound, then released for the server to take).
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Stops a server the way its init script would (SIGTERM), then waits for it.
pub(crate) fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until something listens on `port`.
pub(crate) fn wait_listening(port: u16, within: Duration) -> io::Result<()> {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("nothing listens on port {port}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
