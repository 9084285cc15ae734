//! An e-mail session's configuration: its IMAP and SMTP servers, the address it sends
//! as, the folders it follows and what the first connect reports.
//!
//! ```json
//! {"imap": {"host": "imap.example.com", "port": 993, "security": "tls",
//!           "username": "me@example.com", "password": "…"},
//!  "smtp": {"host": "smtp.example.com", "port": 465, "security": "tls",
//!           "username": "me@example.com", "oauth2": {"provider": "google", "client_id": "…",
//!                                                    "client_secret": "…", "refresh_token": "…"}},
//!  "from": {"address": "me@example.com", "name": "Me"},
//!  "folders": ["INBOX"], "sent_folder": "Sent", "backfill": "7 days"}
//! ```
//!
//! Parsing checks everything a server would otherwise refuse later, and every error
//! names its field (`imap.port: …`). Secrets (passwords, OAuth2 client secrets and
//! tokens) are what [`EmailConfig::redacted`] leaves out.

use serde::Deserialize;
use serde_json::Value;

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// Plain, upgraded with STARTTLS before logging in (IMAP 143, submission 587).
    Starttls,
    /// No TLS at all (loopback and test servers only).
    None,
}

/// Where an OAuth2 provider's token endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Google,
    Microsoft,
}

impl Provider {
    pub fn token_url(self) -> &'static str {
        match self {
            Self::Google => "https://oauth2.googleapis.com/token",
            Self::Microsoft => "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        }
    }

    /// Whether the provider files sent mail in the Sent folder by itself.
    pub fn stores_sent_mail(self) -> bool {
        true
    }
}

/// XOAUTH2 credentials: an access token refreshed from a refresh token. Shown
/// only through [`Auth`]'s `Debug`, which leaves the secrets out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    #[serde(default)]
    pub provider: Option<Provider>,
    /// The token endpoint (instead of a `provider`).
    #[serde(default)]
    pub token_url: Option<String>,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    pub refresh_token: String,
    /// A current access token, if the caller has one.
    #[serde(default)]
    pub access_token: Option<String>,
}

impl OAuth2 {
    pub fn token_endpoint(&self) -> &str {
        self.token_url
            .as_deref()
            .or(self.provider.map(Provider::token_url))
            .unwrap_or_default()
    }
}

/// How the session logs in. Its `Debug` shows no secret (configs end up in logs).
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Password(String),
    OAuth2(OAuth2),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password(_) => f.write_str("Password(..)"),
            Self::OAuth2(o) => f.debug_tuple("OAuth2").field(o).finish(),
        }
    }
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("provider", &self.provider)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// One server (IMAP or SMTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub auth: Auth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub address: String,
    pub name: Option<String>,
}

/// What the first connect reports: nothing old, or the last N days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfill {
    None,
    Days(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    pub imap: Server,
    pub smtp: Server,
    pub from: From,
    pub folders: Vec<String>,
    /// Where a copy of each sent mail is appended; `None` when the provider files it
    /// itself or the caller said `null`.
    pub sent_folder: Option<String>,
    pub backfill: Backfill,
}

/// The most days a backfill may reach back.
pub const MAX_BACKFILL_DAYS: u32 = 365;
/// The most folders one session follows.
pub const MAX_FOLDERS: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    host: Option<String>,
    port: Option<Value>,
    security: Option<Value>,
    username: Option<String>,
    password: Option<String>,
    oauth2: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrom {
    address: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    imap: Option<Value>,
    smtp: Option<Value>,
    from: Option<Value>,
    folders: Option<Value>,
    #[serde(default = "missing")]
    sent_folder: Value,
    backfill: Option<Value>,
}

/// Tells an absent `sent_folder` from an explicit `null`.
fn missing() -> Value {
    Value::Bool(false)
}

/// A configuration error naming its field.
fn bad(field: &str, why: impl std::fmt::Display) -> String {
    format!("`{field}`: {why}")
}

fn serde_field<T: serde::de::DeserializeOwned>(field: &str, v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| bad(field, e))
}

fn host(field: &str, h: Option<String>) -> Result<String, String> {
    let h = h.ok_or_else(|| bad(field, "is required"))?;
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(h)
    } else {
        Err(bad(field, "is not a host name or address"))
    }
}

/// A plausible e-mail address (one `@`, something on both sides, no spaces).
pub fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && a.len() <= 254
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','))
}

fn server(prefix: &str, v: Option<Value>) -> Result<Server, String> {
    let v = v.ok_or_else(|| bad(prefix, "is required"))?;
    let raw: RawServer = serde_field(prefix, v)?;
    let host = host(&format!("{prefix}.host"), raw.host)?;
    let port = match raw.port {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|p| (1..=65_535).contains(p))
            .ok_or_else(|| bad(&format!("{prefix}.port"), "must be 1 to 65535"))?
            as u16,
        Some(_) => return Err(bad(&format!("{prefix}.port"), "must be a number")),
        None => return Err(bad(&format!("{prefix}.port"), "is required")),
    };
    let security = match raw.security {
        Some(s) => serde_field::<Security>(&format!("{prefix}.security"), s).map_err(|_| {
            bad(
                &format!("{prefix}.security"),
                "must be `tls`, `starttls` or `none`",
            )
        })?,
        None => return Err(bad(&format!("{prefix}.security"), "is required")),
    };
    let username = raw
        .username
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| bad(&format!("{prefix}.username"), "is required"))?;
    let auth = match (raw.password, raw.oauth2) {
        (Some(p), None) if !p.is_empty() => Auth::Password(p),
        (Some(_), None) => return Err(bad(&format!("{prefix}.password"), "is empty")),
        (None, Some(o)) => {
            let field = format!("{prefix}.oauth2");
            let o: OAuth2 = serde_field(&field, o)?;
            match (&o.provider, &o.token_url) {
                (Some(_), Some(_)) => {
                    return Err(bad(&field, "give `provider` or `token_url`, not both"));
                }
                (None, None) => return Err(bad(&field, "needs `provider` or `token_url`")),
                (None, Some(u)) => match url::Url::parse(u) {
                    Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => {
                    }
                    _ => return Err(bad(&format!("{field}.token_url"), "is not an http(s) URL")),
                },
                (Some(_), None) => {}
            }
            if o.client_id.is_empty() || o.refresh_token.is_empty() {
                return Err(bad(
                    &field,
                    "`client_id` and `refresh_token` must not be empty",
                ));
            }
            Auth::OAuth2(o)
        }
        (Some(_), Some(_)) => {
            return Err(bad(prefix, "give `password` or `oauth2`, not both"));
        }
        (None, None) => return Err(bad(prefix, "needs `password` or `oauth2`")),
    };
    Ok(Server {
        host,
        port,
        security,
        username,
        auth,
    })
}

fn folder_name(field: &str, f: &str) -> Result<String, String> {
    if f.trim().is_empty() || f.len() > 255 || f.chars().any(|c| c.is_control()) {
        return Err(bad(field, "is not a folder name"));
    }
    Ok(f.to_owned())
}

impl EmailConfig {
    /// Parses and checks a session's `config`.
    pub fn parse(v: &Value) -> Result<Self, String> {
        if !v.is_object() {
            return Err(bad(
                "config",
                "must be an object with `imap`, `smtp` and `from`",
            ));
        }
        let raw: Raw = serde_field("config", v.clone())?;
        let imap = server("imap", raw.imap)?;
        let smtp = server("smtp", raw.smtp)?;
        let from = raw.from.ok_or_else(|| bad("from", "is required"))?;
        let from: RawFrom = serde_field("from", from)?;
        let address = from
            .address
            .ok_or_else(|| bad("from.address", "is required"))?;
        if !valid_address(&address) {
            return Err(bad("from.address", "is not an e-mail address"));
        }
        if from
            .name
            .as_deref()
            .is_some_and(|n| n.len() > 200 || n.chars().any(char::is_control))
        {
            return Err(bad("from.name", "is too long or has control characters"));
        }
        let folders = match raw.folders {
            None => vec!["INBOX".to_owned()],
            Some(Value::Array(list)) => {
                let mut out: Vec<String> = Vec::new();
                for (i, f) in list.iter().enumerate() {
                    let field = format!("folders[{i}]");
                    let f = f.as_str().ok_or_else(|| bad(&field, "must be a string"))?;
                    let f = folder_name(&field, f)?;
                    if out.contains(&f) {
                        return Err(bad(&field, "is listed twice"));
                    }
                    out.push(f);
                }
                if out.is_empty() || out.len() > MAX_FOLDERS {
                    return Err(bad(
                        "folders",
                        format!("must list 1 to {MAX_FOLDERS} folders"),
                    ));
                }
                out
            }
            Some(_) => return Err(bad("folders", "must be a list of folder names")),
        };
        let oauth_provider = |s: &Server| match &s.auth {
            Auth::OAuth2(o) => o.provider,
            Auth::Password(_) => None,
        };
        let sent_folder = match raw.sent_folder {
            Value::Null => None,
            // Not given: Gmail and Outlook file sent mail themselves.
            Value::Bool(false) => {
                if oauth_provider(&smtp).is_some_and(Provider::stores_sent_mail) {
                    None
                } else {
                    Some("Sent".to_owned())
                }
            }
            Value::String(s) => Some(folder_name("sent_folder", &s)?),
            _ => return Err(bad("sent_folder", "must be a folder name or null")),
        };
        let backfill = match raw.backfill {
            None => Backfill::None,
            Some(Value::String(s)) => parse_backfill(&s)
                .ok_or_else(|| bad("backfill", "must be `none` or `N days` (1 to 365)"))?,
            Some(_) => return Err(bad("backfill", "must be `none` or `N days`")),
        };
        Ok(Self {
            imap,
            smtp,
            from: From {
                address,
                name: from.name,
            },
            folders,
            sent_folder,
            backfill,
        })
    }

    /// The configuration as the API may show it: every secret left out (a
    /// `password_set` / `oauth2` without its secrets says what is configured).
    pub fn redacted(&self) -> Value {
        let server = |s: &Server| {
            let mut out = serde_json::json!({
                "host": s.host,
                "port": s.port,
                "security": match s.security {
                    Security::Tls => "tls",
                    Security::Starttls => "starttls",
                    Security::None => "none",
                },
                "username": s.username,
            });
            match &s.auth {
                Auth::Password(_) => out["password_set"] = true.into(),
                Auth::OAuth2(o) => {
                    out["oauth2"] = serde_json::json!({
                        "provider": o.provider.map(|p| match p {
                            Provider::Google => "google",
                            Provider::Microsoft => "microsoft",
                        }),
                        "token_url": o.token_url,
                        "client_id": o.client_id,
                    });
                }
            }
            out
        };
        serde_json::json!({
            "imap": server(&self.imap),
            "smtp": server(&self.smtp),
            "from": { "address": self.from.address, "name": self.from.name },
            "folders": self.folders,
            "sent_folder": self.sent_folder,
            "backfill": match self.backfill {
                Backfill::None => "none".to_owned(),
                Backfill::Days(d) => format!("{d} days"),
            },
        })
    }
}

fn parse_backfill(s: &str) -> Option<Backfill> {
    let s = s.trim();
    if s == "none" {
        return Some(Backfill::None);
    }
    let (n, unit) = s.split_once(' ')?;
    let n: u32 = n.parse().ok()?;
    (matches!(unit.trim(), "day" | "days") && (1..=MAX_BACKFILL_DAYS).contains(&n))
        .then_some(Backfill::Days(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "imap": { "host": "imap.example.com", "port": 993, "security": "tls", "username": "me", "password": "pw" },
            "smtp": { "host": "smtp.example.com", "port": 587, "security": "starttls", "username": "me", "password": "pw" },
            "from": { "address": "me@example.com", "name": "Me" },
        })
    }

    #[test]
    fn a_full_config_parses_with_defaults() {
        let c = EmailConfig::parse(&good()).unwrap();
        assert_eq!(c.imap.port, 993);
        assert_eq!(c.smtp.security, Security::Starttls);
        assert_eq!(c.folders, vec!["INBOX"]);
        assert_eq!(c.sent_folder.as_deref(), Some("Sent"));
        assert_eq!(c.backfill, Backfill::None);
        let mut v = good();
        v["backfill"] = "7 days".into();
        v["sent_folder"] = Value::Null;
        v["folders"] = json!(["INBOX", "Support"]);
        let c = EmailConfig::parse(&v).unwrap();
        assert_eq!(c.backfill, Backfill::Days(7));
        assert_eq!(c.sent_folder, None);
        assert_eq!(c.folders.len(), 2);
    }

    #[test]
    fn oauth2_needs_an_endpoint_and_gmail_files_sent_mail_itself() {
        let mut v = good();
        v["smtp"]["password"] = Value::Null;
        v["smtp"].as_object_mut().unwrap().remove("password");
        v["smtp"]["oauth2"] =
            json!({ "provider": "google", "client_id": "c", "refresh_token": "r" });
        let c = EmailConfig::parse(&v).unwrap();
        assert_eq!(c.sent_folder, None, "Gmail stores sent mail itself");
        let Auth::OAuth2(o) = &c.smtp.auth else {
            panic!()
        };
        assert_eq!(o.token_endpoint(), "https://oauth2.googleapis.com/token");
        v["smtp"]["oauth2"] = json!({ "client_id": "c", "refresh_token": "r" });
        let err = EmailConfig::parse(&v).unwrap_err();
        assert!(err.starts_with("`smtp.oauth2`"), "{err}");
    }

    /// A change that breaks a good configuration.
    type Change = Box<dyn Fn(&mut Value)>;

    #[test]
    fn every_error_names_its_field() {
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|v| v["imap"]["port"] = 0.into()), "`imap.port`"),
            (
                Box::new(|v| v["imap"]["port"] = "993".into()),
                "`imap.port`",
            ),
            (
                Box::new(|v| v["smtp"]["security"] = "ssl".into()),
                "`smtp.security`",
            ),
            (
                Box::new(|v| v["imap"]["host"] = "not a host".into()),
                "`imap.host`",
            ),
            (
                Box::new(|v| v["imap"]["username"] = "".into()),
                "`imap.username`",
            ),
            (
                Box::new(|v| {
                    v["imap"].as_object_mut().unwrap().remove("password");
                }),
                "`imap`",
            ),
            (
                Box::new(|v| {
                    v["imap"]["oauth2"] =
                        json!({"provider": "google", "client_id": "c", "refresh_token": "r"})
                }),
                "`imap`",
            ),
            (
                Box::new(|v| v["from"]["address"] = "nobody".into()),
                "`from.address`",
            ),
            (Box::new(|v| v["folders"] = json!([])), "`folders`"),
            (
                Box::new(|v| v["folders"] = json!(["INBOX", "INBOX"])),
                "`folders[1]`",
            ),
            (Box::new(|v| v["backfill"] = "forever".into()), "`backfill`"),
            (
                Box::new(|v| v["backfill"] = "900 days".into()),
                "`backfill`",
            ),
            (Box::new(|v| v["sent_folder"] = 5.into()), "`sent_folder`"),
            (Box::new(|v| v["colour"] = "green".into()), "`config`"),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("smtp");
                }),
                "`smtp`",
            ),
        ];
        for (change, field) in cases {
            let mut v = good();
            change(&mut v);
            let err = EmailConfig::parse(&v).unwrap_err();
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }

    #[test]
    fn redaction_leaves_no_secret() {
        let mut v = good();
        v["smtp"].as_object_mut().unwrap().remove("password");
        v["smtp"]["oauth2"] = json!({ "token_url": "https://id.example.com/token", "client_id": "c",
            "client_secret": "s3cret", "refresh_token": "r3fresh", "access_token": "acc3ss" });
        let shown = EmailConfig::parse(&v).unwrap().redacted().to_string();
        for secret in ["\"pw\"", "s3cret", "r3fresh", "acc3ss"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("password_set") && shown.contains("id.example.com"));
    }
}
