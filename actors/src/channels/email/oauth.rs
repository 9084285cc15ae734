//! OAuth2 access tokens for XOAUTH2: the configured one while it works, then fresh
//! ones from the refresh token at the token endpoint (RFC 6749 §6; Google's and
//! Microsoft's presets, or any `token_url`).

use super::config::OAuth2;
use super::imap::ImapError;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use url::form_urlencoded;

/// A token is refreshed this long before the endpoint said it expires.
const EARLY: Duration = Duration::from_secs(60);

pub struct Tokens {
    oauth: OAuth2,
    http: reqwest::Client,
    current: Mutex<Option<Token>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Token {
    value: String,
    /// When it should be replaced (`None`: until a server refuses it).
    expires: Option<Instant>,
    /// Whether it came from the endpoint just now (a refusal then is final).
    fresh: bool,
}

impl Tokens {
    pub fn new(oauth: OAuth2) -> Self {
        let current = oauth.access_token.clone().map(|value| Token {
            value,
            expires: None,
            fresh: false,
        });
        Self {
            oauth,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            current: Mutex::new(current),
        }
    }

    /// A token to log in with, and whether it was refreshed just now.
    pub async fn token(&self) -> Result<(String, bool), ImapError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref()
            && t.expires.is_none_or(|e| Instant::now() + EARLY < e)
        {
            return Ok((t.value.clone(), t.fresh));
        }
        let t = self.refresh().await?;
        let out = (t.value.clone(), true);
        *current = Some(Token { fresh: false, ..t });
        Ok(out)
    }

    /// Forgets the current token (a server refused it): the next [`Self::token`]
    /// refreshes.
    pub async fn refused(&self) {
        *self.current.lock().await = None;
    }

    async fn refresh(&self) -> Result<Token, ImapError> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", &self.oauth.refresh_token)
                .append_pair("client_id", &self.oauth.client_id);
            if let Some(secret) = &self.oauth.client_secret {
                form.append_pair("client_secret", secret);
            }
            form.finish()
        };
        let endpoint = self.oauth.token_endpoint();
        let res = self
            .http
            .post(endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| ImapError::Network(format!("token endpoint unreachable: {e}")))?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|e| ImapError::Network(format!("token endpoint: {e}")))?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if status.is_client_error() {
            // invalid_grant, invalid_client…: the grant is gone, a person must act.
            let error = json["error"].as_str().unwrap_or("refused");
            return Err(ImapError::Auth(format!(
                "the token endpoint refused the refresh token: {error}"
            )));
        }
        if !status.is_success() {
            return Err(ImapError::Network(format!(
                "token endpoint answered {status}"
            )));
        }
        let value = json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ImapError::Network("token endpoint gave no access_token".into()))?;
        let expires = json["expires_in"]
            .as_u64()
            .map(|s| Instant::now() + Duration::from_secs(s));
        Ok(Token {
            value: value.to_owned(),
            expires,
            fresh: true,
        })
    }
}
