//! The test mail servers are real: a message sent over SMTP (with AUTH) reaches the
//! recipient's Dovecot INBOX, read back over IMAP; a wrong password is refused by
//! both; Dovecot restarts keep the mail.
#![cfg(feature = "testkit")]

use futures::TryStreamExt;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use switchboard_actors::testkit::mail::MailServers;

async fn imap_subjects(servers: &MailServers, user: &str, password: &str) -> Vec<String> {
    let tcp = tokio::net::TcpStream::connect(servers.imap_addr())
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    let mut session = client
        .login(user, password)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    session.select("INBOX").await.unwrap();
    let fetched: Vec<_> = session
        .fetch("1:*", "RFC822.HEADER")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let subjects = fetched
        .iter()
        .filter_map(|m| {
            let header = String::from_utf8_lossy(m.header()?).into_owned();
            header
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect();
    session.logout().await.unwrap();
    subjects
}

#[tokio::test]
async fn smtp_delivers_into_dovecot_and_imap_reads_it() {
    let servers = MailServers::start().expect("dovecot-imapd and python3-aiosmtpd installed");
    servers.add_user("alice", "alice-pw").unwrap();
    servers.add_user("bob", "bob-pw").unwrap();

    let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(servers.smtp_addr().port())
        .credentials(Credentials::new("alice".into(), "alice-pw".into()))
        .build();
    let mail = Message::builder()
        .from("Alice <alice@example.test>".parse::<Mailbox>().unwrap())
        .to("Bob <bob@example.test>".parse::<Mailbox>().unwrap())
        .subject("Quarterly numbers")
        .body("See attached.".to_owned())
        .unwrap();
    smtp.send(mail).await.unwrap();

    let refused = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(servers.smtp_addr().port())
        .credentials(Credentials::new("alice".into(), "wrong".into()))
        .build();
    let mail = Message::builder()
        .from("alice@example.test".parse::<Mailbox>().unwrap())
        .to("bob@example.test".parse::<Mailbox>().unwrap())
        .subject("never")
        .body("x".to_owned())
        .unwrap();
    assert!(
        refused.send(mail).await.is_err(),
        "a wrong SMTP password is refused"
    );

    servers
        .deliver("bob", b"From: carol@example.test\r\nTo: bob@example.test\r\nSubject: Local one\r\nMessage-ID: <l1@example.test>\r\n\r\nhi\r\n")
        .unwrap();
    let subjects = imap_subjects(&servers, "bob", "bob-pw").await;
    assert_eq!(subjects, vec!["Quarterly numbers", "Local one"]);

    let tcp = tokio::net::TcpStream::connect(servers.imap_addr())
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    assert!(
        client.login("bob", "wrong").await.is_err(),
        "a wrong IMAP password is refused"
    );

    servers.restart_imap().unwrap();
    assert_eq!(imap_subjects(&servers, "bob", "bob-pw").await.len(), 2);
    assert!(
        servers.dovecot_log().contains("Login: user=<bob>"),
        "{}",
        servers.dovecot_log()
    );
}
