//! Opening an IMAP connection: TCP, TLS (implicit or STARTTLS, rustls with the
//! webpki roots), the greeting, and a login by password or XOAUTH2. Errors say
//! whether the credentials were refused ([`ImapError::Auth`]: never retried) or the
//! network failed ([`ImapError::Network`]: reconnect with backoff).

use super::config::{Auth, Security, Server};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long connecting, the greeting and the login may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection, with or without TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub type Session = async_imap::Session<Stream>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImapError {
    /// The server refused the credentials.
    #[error("login refused: {0}")]
    Auth(String),
    /// The server could not be reached or the connection broke.
    #[error("{0}")]
    Network(String),
    /// The server answered something we cannot work with (a missing folder…).
    #[error("{0}")]
    Protocol(String),
}

impl ImapError {
    /// An async-imap error from a command (not a login).
    pub fn of(e: async_imap::error::Error) -> Self {
        use async_imap::error::Error as E;
        match e {
            E::Io(e) => Self::Network(format!("connection lost: {e}")),
            E::ConnectionLost => Self::Network("connection lost".into()),
            E::No(t) | E::Bad(t) => Self::Protocol(t),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// What a login presents.
#[derive(Debug, Clone)]
pub enum Credentials {
    Password(String),
    /// An OAuth2 access token (XOAUTH2).
    Bearer(String),
}

static TLS: LazyLock<TlsConnector> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the default protocol versions are supported")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
});

async fn tls(host: &str, tcp: TcpStream) -> Result<Stream, ImapError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| ImapError::Protocol(format!("`{host}` is not a TLS server name: {e}")))?;
    let stream = TLS
        .connect(name, tcp)
        .await
        .map_err(|e| ImapError::Network(format!("TLS with {host} failed: {e}")))?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Connects and logs in.
pub async fn connect(server: &Server, credentials: &Credentials) -> Result<Session, ImapError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_now(server, credentials))
        .await
        .map_err(|_| {
            ImapError::Network(format!(
                "{}:{} did not answer within {}s",
                server.host,
                server.port,
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
}

async fn connect_now(server: &Server, credentials: &Credentials) -> Result<Session, ImapError> {
    let tcp = TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(|e| {
            ImapError::Network(format!(
                "cannot connect to {}:{}: {e}",
                server.host, server.port
            ))
        })?;
    let _ = tcp.set_nodelay(true);
    let stream = match server.security {
        Security::Tls => tls(&server.host, tcp).await?,
        Security::Starttls | Security::None => Stream::Plain(tcp),
    };
    let mut client = async_imap::Client::new(stream);
    greeting(&mut client).await?;
    if server.security == Security::Starttls {
        client
            .run_command_and_check_ok("STARTTLS", None)
            .await
            .map_err(|e| ImapError::Protocol(format!("STARTTLS refused: {e}")))?;
        let Stream::Plain(tcp) = client.into_inner() else {
            unreachable!("STARTTLS starts from a plain connection")
        };
        client = async_imap::Client::new(tls(&server.host, tcp).await?);
    }
    let login = match credentials {
        Credentials::Password(p) => client.login(&server.username, p).await,
        Credentials::Bearer(token) => {
            client
                .authenticate(
                    "XOAUTH2",
                    XOAuth2 {
                        user: &server.username,
                        token,
                        sent: false,
                    },
                )
                .await
        }
    };
    login.map_err(|(e, _)| match e {
        async_imap::error::Error::No(t) | async_imap::error::Error::Bad(t) => ImapError::Auth(t),
        other => ImapError::of(other),
    })
}

async fn greeting(client: &mut async_imap::Client<Stream>) -> Result<(), ImapError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ImapError::Network("closed before its greeting".into())),
        Err(e) => Err(ImapError::Network(format!("no greeting: {e}"))),
    }
}

/// XOAUTH2 (Google's and Microsoft's SASL mechanism): the user and the bearer token in
/// one message. A refused token gets a challenge with the error, answered empty.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
    sent: bool,
}

impl async_imap::Authenticator for XOAuth2<'_> {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        if std::mem::replace(&mut self.sent, true) {
            return String::new();
        }
        xoauth2(self.user, self.token)
    }
}

/// The XOAUTH2 initial response (before base64).
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// What a server's password field holds, for an [`Auth`].
pub fn password_of(auth: &Auth) -> Option<&str> {
    match auth {
        Auth::Password(p) => Some(p),
        Auth::OAuth2(_) => None,
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xoauth2_message_has_googles_shape() {
        assert_eq!(
            xoauth2("a@example.com", "ya29.x"),
            "user=a@example.com\x01auth=Bearer ya29.x\x01\x01"
        );
        let mut a = XOAuth2 {
            user: "u",
            token: "t",
            sent: false,
        };
        use async_imap::Authenticator;
        assert_eq!(a.process(b""), "user=u\x01auth=Bearer t\x01\x01");
        // The error challenge after a refused token is answered empty.
        assert_eq!(a.process(b"{\"status\":\"401\"}"), "");
    }
}
