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
