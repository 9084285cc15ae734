//! Real mail servers for tests and the bench, on loopback: Dovecot (IMAP, from
//! Debian's `dovecot-imapd`) and an SMTP server (Debian's `python3-aiosmtpd`) that
//! delivers into Dovecot's maildirs. No mock IMAP: the gateway meets a real server's
//! IDLE, UIDVALIDITY, CONDSTORE and restarts.
//!
//! Everything lives in one temporary directory: Dovecot's config, its run/state
//! directories and log, a `passwd-file` of users (`{PLAIN}` passwords, re-read by
//! Dovecot when it changes), and the users' homes (`home/<user>/Maildir`, owned by the
//! `mail` user as Dovecot's static userdb wants). Both servers are killed on drop.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{free_port, stop, wait_listening};

const SMTP_SERVER: &str = include_str!("smtp_server.py");

/// The uid and gid of the `mail` user.
fn mail_user() -> io::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"mail"))
                .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
        })
        .ok_or_else(|| io::Error::other("no `mail` user in /etc/passwd"))
}

fn chown(path: &Path, (uid, gid): (u32, u32)) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

/// Dovecot and an SMTP server delivering to it.
#[derive(Debug)]
pub struct MailServers {
    dir: PathBuf,
    imap_port: u16,
    smtp_port: u16,
    mail: (u32, u32),
    dovecot: Mutex<Option<Child>>,
    smtp: Mutex<Option<Child>>,
    users: Mutex<HashMap<String, String>>,
    /// Where Dovecot's `oauth2` passdb asks about tokens, once enabled.
    introspection_url: Mutex<Option<String>>,
    options: MailOptions,
}

/// How the servers run.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailOptions {
    /// Hand IDLE connections to Dovecot's `imap-hibernate` after 5 s, so thousands
    /// of idle mailboxes cost one process, not one `imap` process each (the bench).
    pub hibernate: bool,
    /// Leave IDLE (and CONDSTORE/QRESYNC) out of the capabilities, as some servers
    /// do: clients must poll.
    pub no_idle: bool,
}

impl MailServers {
    /// Starts both servers in a fresh directory under the system's temp dir.
    pub fn start() -> io::Result<Self> {
        Self::start_with(MailOptions::default())
    }

    /// [`Self::start`] with options.
    pub fn start_with(options: MailOptions) -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-mail-{}-{}",
            std::process::id(),
            crate::clock::now_ms()
        ));
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let mail = mail_user()?;
        // Dovecot's processes run as `mail` and must reach the homes.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        chown(&dir.join("home"), mail)?;
        std::fs::write(dir.join("users"), "")?;
        let me = Self {
            imap_port: free_port()?,
            smtp_port: free_port()?,
            dir,
            mail,
            dovecot: Mutex::default(),
            smtp: Mutex::default(),
            users: Mutex::default(),
            introspection_url: Mutex::default(),
            options,
        };
        std::fs::write(me.dir.join("dovecot.conf"), me.dovecot_config())?;
        me.start_dovecot()?;
        me.start_smtp()?;
        Ok(me)
    }

    /// The file of valid OAuth2 tokens the SMTP server reads (see [`Self::enable_oauth`]).
    pub fn oauth_tokens_file(&self) -> PathBuf {
        self.dir.join("oauth-tokens")
    }

    /// Lets XOAUTH2 logins in: Dovecot asks `introspection_url` (RFC 7662) about
    /// each token (its `oauth2` passdb, after the passwd-file one), and the SMTP
    /// server accepts the tokens listed in the returned file (one `token user` per
    /// line; [`super::oauth::OAuthServer`] keeps it). Restarts Dovecot.
    pub fn enable_oauth(&self, introspection_url: &str) -> io::Result<PathBuf> {
        *self
            .introspection_url
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(introspection_url.to_owned());
        std::fs::write(
            self.dir.join("dovecot-oauth2.conf.ext"),
            format!(
                "introspection_mode = post\nintrospection_url = {introspection_url}\n\
username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            ),
        )?;
        std::fs::write(self.dir.join("dovecot.conf"), self.dovecot_config())?;
        self.restart_imap()?;
        Ok(self.oauth_tokens_file())
    }

    fn dovecot_config(&self) -> String {
        let d = self.dir.display();
        let oauth = self
            .introspection_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let (mechanisms, oauth_passdb) = if oauth {
            (
                "plain login xoauth2 oauthbearer",
                format!("passdb {{\n  driver = oauth2\n  args = {d}/dovecot-oauth2.conf.ext\n}}\n"),
            )
        } else {
            ("plain login", String::new())
        };
        let capability = if self.options.no_idle {
            "imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE UIDPLUS\n"
        } else {
            ""
        };
        let hibernate = if self.options.hibernate {
            "imap_hibernate_timeout = 5s\n\
service imap-hibernate {\n  client_limit = 20000\n  unix_listener imap-hibernate {\n    mode = 0666\n  }\n}\n"
        } else {
            ""
        };
        format!(
            r#"protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_plugins = $mail_plugins
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    auto = create
    special_use = \Sent
  }}
}}
protocol imap {{
  mail_max_userip_connections = 10000
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
{oauth_passdb}userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  process_limit = 1000
}}
service imap {{
  process_limit = 10000
  unix_listener imap-master {{
    mode = 0666
  }}
}}
default_client_limit = 20000
{capability}{hibernate}"#,
            uid = self.mail.0,
            gid = self.mail.1,
            port = self.imap_port,
        )
    }

    fn start_dovecot(&self) -> io::Result<()> {
        let child = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(self.dir.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::other(format!(
                    "cannot start dovecot (apt-get install dovecot-imapd): {e}"
                ))
            })?;
        *self.dovecot.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        wait_listening(self.imap_port, Duration::from_secs(10))
    }

    fn start_smtp(&self) -> io::Result<()> {
        let script = self.dir.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER)?;
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(self.smtp_port.to_string())
            .arg(self.dir.join("users"))
            .arg(self.dir.join("home"))
            .arg(self.mail.0.to_string())
            .arg(self.mail.1.to_string())
            .arg(self.dir.join("oauth-tokens"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::other(format!("cannot start the SMTP server: {e}")))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            io::BufReader::new(out).read_line(&mut line)?;
        }
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err(io::Error::other(
                "the SMTP server did not start (apt-get install python3-aiosmtpd)",
            ));
        }
        *self.smtp.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        wait_listening(self.smtp_port, Duration::from_secs(10))
    }

    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.imap_port))
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.smtp_port))
    }

    /// Adds (or changes the password of) a mailbox user; addresses are `user@…`.
    pub fn add_user(&self, user: &str, password: &str) -> io::Result<()> {
        self.add_users(&[(user, password)])
    }

    /// Adds many users at once (one rewrite of the passwd-file).
    pub fn add_users(&self, list: &[(&str, &str)]) -> io::Result<()> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        for (user, password) in list {
            users.insert((*user).to_owned(), (*password).to_owned());
        }
        let mut text = String::new();
        for (u, p) in users.iter() {
            text.push_str(&format!("{u}:{{PLAIN}}{p}::::::\n"));
        }
        // Written whole, then renamed: Dovecot re-reads the file when it changes.
        let tmp = self.dir.join("users.tmp");
        std::fs::File::create(&tmp)?.write_all(text.as_bytes())?;
        std::fs::rename(tmp, self.dir.join("users"))
    }

    /// Puts a message straight into a user's INBOX (as a local delivery would).
    pub fn deliver(&self, user: &str, raw: &[u8]) -> io::Result<()> {
        self.deliver_to(user, "INBOX", raw)
    }

    /// A user's maildir for `folder` (Maildir++: `INBOX` is the root, others `.Name`).
    fn maildir(&self, user: &str, folder: &str) -> PathBuf {
        let root = self.dir.join("home").join(user).join("Maildir");
        if folder == "INBOX" {
            root
        } else {
            root.join(format!(".{folder}"))
        }
    }

    /// Deletes a folder and makes it again, empty: Dovecot gives it a new UIDVALIDITY.
    pub fn recreate_folder(&self, user: &str, folder: &str) -> io::Result<()> {
        let dir = self.maildir(user, folder);
        if dir.exists() {
            // Moved out of the mailbox tree at once (Dovecot may be writing its index
            // files into it, which would make a removal in place fail), then removed.
            let gone = self.dir.join(format!(
                "removed-{folder}-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ));
            std::fs::rename(&dir, &gone)?;
            for _ in 0..20 {
                if std::fs::remove_dir_all(&gone).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.deliver_dirs(user, folder).map(|_| ())
    }

    fn deliver_dirs(&self, user: &str, folder: &str) -> io::Result<PathBuf> {
        let maildir = self.maildir(user, folder);
        let root = self.dir.join("home").join(user).join("Maildir");
        for d in [
            self.dir.join("home").join(user),
            root,
            maildir.clone(),
            maildir.join("cur"),
            maildir.join("new"),
            maildir.join("tmp"),
        ] {
            std::fs::create_dir_all(&d)?;
            chown(&d, self.mail)?;
        }
        Ok(maildir)
    }

    /// Puts a message straight into one of a user's folders.
    pub fn deliver_to(&self, user: &str, folder: &str, raw: &[u8]) -> io::Result<()> {
        let maildir = self.deliver_dirs(user, folder)?;
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(
            "{}.M{}Q{n}P{}.switchboard",
            crate::clock::now_ms() / 1000,
            crate::clock::now_ms(),
            std::process::id()
        );
        let tmp = maildir.join("tmp").join(&name);
        std::fs::write(&tmp, raw)?;
        chown(&tmp, self.mail)?;
        std::fs::rename(tmp, maildir.join("new").join(name))
    }

    /// Stops Dovecot and starts it again on the same port and data (clients see
    /// their connections drop).
    pub fn restart_imap(&self) -> io::Result<()> {
        if let Some(c) = self
            .dovecot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            stop(c);
        }
        // Its children (imap, imap-login) go with the master; wait until the port frees.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.start_dovecot()
    }

    /// A mail client's IMAP session as `user`, logged in.
    pub async fn client(
        &self,
        user: &str,
    ) -> io::Result<async_imap::Session<tokio::net::TcpStream>> {
        let password = self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("no user {user}")))?;
        let tcp = tokio::net::TcpStream::connect(self.imap_addr()).await?;
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await?;
        client
            .login(user, &password)
            .await
            .map_err(|(e, _)| io::Error::other(e.to_string()))
    }

    /// What a mail client does to the message with `message_id` in a user's folder:
    /// `+FLAGS (\Seen)`, or deleting it (`\Deleted` and EXPUNGE).
    pub async fn mark(
        &self,
        user: &str,
        folder: &str,
        message_id: &str,
        delete: bool,
    ) -> io::Result<()> {
        use futures::TryStreamExt;
        let fail = |e: async_imap::error::Error| io::Error::other(e.to_string());
        let mut s = self.client(user).await?;
        s.select(folder).await.map_err(fail)?;
        let uids = s
            .uid_search(format!("HEADER Message-ID \"{message_id}\""))
            .await
            .map_err(fail)?;
        let uid = uids
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::other(format!("no message {message_id} in {folder}")))?;
        let flag = if delete {
            "+FLAGS (\\Deleted)"
        } else {
            "+FLAGS (\\Seen)"
        };
        let _: Vec<_> = s
            .uid_store(uid.to_string(), flag)
            .await
            .map_err(fail)?
            .try_collect()
            .await
            .map_err(fail)?;
        if delete {
            let _: Vec<_> = s
                .expunge()
                .await
                .map_err(fail)?
                .try_collect()
                .await
                .map_err(fail)?;
        }
        let _ = s.logout().await;
        Ok(())
    }

    /// Every message in one of a user's folders, read over IMAP (as a mail client
    /// would: what the gateway's sends really produced).
    pub async fn read_folder(&self, user: &str, folder: &str) -> io::Result<Vec<Vec<u8>>> {
        use futures::TryStreamExt;
        let mut s = self.client(user).await?;
        let fail = |e: async_imap::error::Error| io::Error::other(e.to_string());
        let mailbox = s.examine(folder).await.map_err(fail)?;
        let mut out = Vec::new();
        if mailbox.exists > 0 {
            let fetched: Vec<_> = s
                .fetch("1:*", "BODY.PEEK[]")
                .await
                .map_err(fail)?
                .try_collect()
                .await
                .map_err(fail)?;
            out = fetched
                .iter()
                .filter_map(|m| m.body().map(<[u8]>::to_vec))
                .collect();
        }
        let _ = s.logout().await;
        Ok(out)
    }

    /// Dovecot's master process (its tree holds every Dovecot process), if running.
    pub fn dovecot_pid(&self) -> Option<u32> {
        self.dovecot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// Appends a message to a user's folder over IMAP, as a mail client's APPEND.
    pub async fn append(&self, user: &str, folder: &str, raw: &[u8]) -> io::Result<()> {
        let mut s = self.client(user).await?;
        s.append(folder, None, None, raw)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        let _ = s.logout().await;
        Ok(())
    }

    /// What Dovecot logged (logins, failures).
    pub fn dovecot_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        for slot in [&self.dovecot, &self.smtp] {
            if let Some(c) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                stop(c);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
