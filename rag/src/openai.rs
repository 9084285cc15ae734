//! OpenAI-compatible HTTP clients: [`OpenAiEmbedder`], an [`Embedder`] that calls a
//! remote `/embeddings` endpoint, and [`LlmClient`], a chat client for
//! `/chat/completions` (plain text, or JSON parsed into a caller's type).
//!
//! Both speak the API that OpenAI, Ollama (`http://127.0.0.1:11434/v1`), vLLM,
//! llama.cpp's server and LiteLLM share; an [`Endpoint`] names the server. The
//! knowledge base builds them from config in place of the local MiniLM when a remote
//! model is configured.
//!
//! Failures: connect errors, timeouts, `429` and `5xx` are retried with exponential
//! backoff (honouring `Retry-After`, each wait capped at [`MAX_BACKOFF`]), up to
//! [`Endpoint::retries`] times, each retry logged at `warn`. Other `4xx` fail at once.
//! Errors carry the HTTP status and the server's `error.message`. A chat answer that
//! is not valid JSON for the wanted shape gets one repair round trip
//! ([`LlmClient::complete_json`]).

use crate::embed::{EmbedError, Embedder};
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most inputs sent in one `/embeddings` request (OpenAI allows more, local servers
/// often fewer; 64 keeps request bodies and latency small).
pub const EMBED_BATCH: usize = 64;
/// First wait before a retry; doubled on each further attempt.
pub const BASE_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait before a retry, whatever the server's `Retry-After` says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How much of a non-JSON error body goes into an error message.
const ERROR_BODY_CHARS: usize = 300;

/// An OpenAI-compatible server.
#[derive(Clone)]
pub struct Endpoint {
    /// API root, e.g. `http://127.0.0.1:11434/v1`; `/embeddings` and
    /// `/chat/completions` are appended to it.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set (local servers need none).
    pub api_key: Option<String>,
    /// Limit on each request, from connecting to the end of the response body.
    pub timeout: Duration,
    /// Retries after the first attempt on connect errors, timeouts, 429 and 5xx.
    pub retries: u32,
}

impl Endpoint {
    /// `base_url` with no key, a 30 s timeout and 2 retries.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeout: Duration::from_secs(30),
            retries: 2,
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// Why a chat completion failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The server answered with an error status (after any retries).
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// No usable exchange with the server: bad base URL, connection refused or
    /// reset, a response body that is not the API's JSON.
    #[error("transport: {0}")]
    Transport(String),
    /// The request took longer than [`Endpoint::timeout`] (after any retries).
    #[error("request timed out")]
    Timeout,
    /// The model's answer was not JSON of the wanted shape, even after one repair.
    #[error("model did not answer with valid JSON: {0}")]
    InvalidJson(String),
    /// The model answered with no content.
    #[error("model returned an empty answer")]
    Empty,
}

// === impl Http ===

/// The HTTP client and the endpoint it talks to, with the retry policy; shared by
/// the embedder and the chat client.
#[derive(Debug, Clone)]
struct Http {
    client: reqwest::Client,
    endpoint: Endpoint,
}

/// One failed attempt, and whether another may succeed.
struct Attempt {
    error: LlmError,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Http {
    fn new(endpoint: Endpoint) -> Result<Self, LlmError> {
        let url = reqwest::Url::parse(&endpoint.base_url)
            .map_err(|e| LlmError::Transport(format!("base URL {:?}: {e}", endpoint.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(LlmError::Transport(format!(
                "base URL {:?}: scheme must be http or https",
                endpoint.base_url
            )));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("switchboard-rag/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Transport(format!("HTTP client: {e}")))?;
        Ok(Self { client, endpoint })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.endpoint.base_url.trim_end_matches('/'))
    }

    /// POSTs `body` as JSON to `path` and parses the answer as `R`, retrying as the
    /// module docs describe.
    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, LlmError> {
        let url = self.url(path);
        let body = serde_json::to_vec(body)
            .map_err(|e| LlmError::Transport(format!("encoding request: {e}")))?;
        let mut attempt = 0;
        let bytes = loop {
            match self.send_once(&url, body.clone()).await {
                Ok(bytes) => break bytes,
                Err(failed) if failed.retryable && attempt < self.endpoint.retries => {
                    let delay = backoff(attempt, failed.retry_after);
                    attempt += 1;
                    tracing::warn!(
                        url = %url,
                        attempt,
                        retries = self.endpoint.retries,
                        delay_ms = delay.as_millis() as u64,
                        error = %failed.error,
                        "request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(failed) => return Err(failed.error),
            }
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| LlmError::Transport(format!("unexpected response from {url}: {e}")))
    }

    async fn send_once(&self, url: &str, body: Vec<u8>) -> Result<Vec<u8>, Attempt> {
        let mut request = self
            .client
            .post(url)
            .timeout(self.endpoint.timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.endpoint.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(transport_failure)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(Attempt {
            error: LlmError::Http {
                status: status.as_u16(),
                message: error_message(&bytes, status.canonical_reason()),
            },
            retryable: status.as_u16() == 429 || status.is_server_error(),
            retry_after,
        })
    }
}

fn transport_failure(e: reqwest::Error) -> Attempt {
    if e.is_timeout() {
        Attempt {
            error: LlmError::Timeout,
            retryable: true,
            retry_after: None,
        }
    } else {
        Attempt {
            retryable: e.is_connect(),
            // The source chain says what went wrong ("connection refused").
            error: LlmError::Transport(error_chain(&e)),
            retry_after: None,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Wait before retry number `attempt + 1`: the server's `Retry-After` if it sent
/// one, else [`BASE_BACKOFF`]·2^attempt; never more than [`MAX_BACKOFF`].
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or_else(|| BASE_BACKOFF.saturating_mul(2u32.saturating_pow(attempt)))
        .min(MAX_BACKOFF)
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

/// The server's own words: `error.message` (OpenAI, vLLM), `error` as a string
/// (Ollama), else the start of the body, else the status's reason phrase.
fn error_message(body: &[u8], reason: Option<&str>) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let error = &json["error"];
        if let Some(message) = error["message"].as_str().or(error.as_str()) {
            return message.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return reason.unwrap_or("no message").to_owned();
    }
    match text.char_indices().nth(ERROR_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

// === impl OpenAiEmbedder ===

/// Embeddings from an OpenAI-compatible `/embeddings` endpoint, L2-normalised so
/// they suit a cosine collection like the local model's.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    http: Http,
    /// Sent as `model` in each request.
    model: String,
    /// `openai:{model}`: names the vector collection, so switching models never
    /// mixes vectors from two of them.
    model_id: String,
    /// Every vector must have this length; a mismatch is an error, not a silent
    /// truncation.
    dims: usize,
}

#[derive(Serialize)]
struct EmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    /// Position of the input this vector belongs to; servers need not keep order.
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// An embedder for `model` at `endpoint`, producing `dimensions`-long vectors
    /// (ask [`Self::probe`] when the dimension is not configured).
    pub fn new(endpoint: Endpoint, model: String, dimensions: usize) -> Result<Self, EmbedError> {
        if dimensions == 0 {
            return Err(EmbedError::Remote(
                "embedding dimensions must be at least 1".into(),
            ));
        }
        let http = Http::new(endpoint).map_err(|e| EmbedError::Remote(e.to_string()))?;
        Ok(Self {
            http,
            model_id: format!("openai:{model}"),
            model,
            dims: dimensions,
        })
    }

    /// Embeds `"probe"` once and returns the length of the vector `model` produces.
    pub async fn probe(endpoint: Endpoint, model: String) -> Result<usize, EmbedError> {
        let http = Http::new(endpoint).map_err(|e| EmbedError::Remote(e.to_string()))?;
        let vectors = request_batch(&http, &model, &["probe".to_owned()]).await?;
        match vectors.first().map(Vec::len) {
            Some(dims) if dims > 0 => Ok(dims),
            _ => Err(EmbedError::Remote(format!(
                "model {model} returned an empty vector"
            ))),
        }
    }

    async fn embed_all(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(EMBED_BATCH) {
            for mut vector in request_batch(&self.http, &self.model, batch).await? {
                if vector.len() != self.dims {
                    return Err(EmbedError::Remote(format!(
                        "model {} returned a {}-dimensional vector, expected {}",
                        self.model,
                        vector.len(),
                        self.dims
                    )));
                }
                normalise(&mut vector).map_err(|why| {
                    EmbedError::Remote(format!("model {} returned {why}", self.model))
                })?;
                out.push(vector);
            }
        }
        Ok(out)
    }
}

/// One request for `batch`; the vectors come back in input order, as sent.
async fn request_batch(
    http: &Http,
    model: &str,
    batch: &[String],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let response: EmbeddingResponse = http
        .post(
            "embeddings",
            &EmbeddingRequest {
                model,
                input: batch,
            },
        )
        .await
        .map_err(|e| EmbedError::Remote(e.to_string()))?;
    if response.data.len() != batch.len() {
        return Err(EmbedError::Remote(format!(
            "sent {} inputs, got {} embeddings back",
            batch.len(),
            response.data.len()
        )));
    }
    let mut ordered: Vec<Option<Vec<f32>>> = vec![None; batch.len()];
    for (position, item) in response.data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        match ordered.get_mut(index) {
            Some(slot @ None) => *slot = Some(item.embedding),
            Some(Some(_)) => {
                return Err(EmbedError::Remote(format!(
                    "embedding index {index} appears twice"
                )));
            }
            None => {
                return Err(EmbedError::Remote(format!(
                    "embedding index {index} out of range for {} inputs",
                    batch.len()
                )));
            }
        }
    }
    // Lengths match and no index repeats, so every slot is filled.
    Ok(ordered.into_iter().flatten().collect())
}

/// Scales `vector` to unit length.
fn normalise(vector: &mut [f32]) -> Result<(), &'static str> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() {
        return Err("a vector with non-finite components");
    }
    if norm == 0.0 {
        return Err("a zero vector");
    }
    vector.iter_mut().for_each(|x| *x /= norm);
    Ok(())
}

impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dims
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(self.embed_all(texts))
    }
}

// === impl LlmClient ===

/// Chat completions from an OpenAI-compatible `/chat/completions` endpoint.
#[derive(Debug, Clone)]
pub struct LlmClient {
    http: Http,
    /// Used when a [`ChatRequest`] names no model.
    default_model: String,
}

/// One system + user exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// Overrides the client's default model.
    pub model: Option<String>,
    /// Instructions; left out of the request when empty.
    pub system: String,
    pub user: String,
    pub temperature: f32,
    pub max_tokens: u32,
}

impl ChatRequest {
    /// A request on the default model, temperature 0 and at most 1024 tokens.
    pub fn new(system: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            model: None,
            system: system.into(),
            user: user.into(),
            temperature: 0.0,
            max_tokens: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Message {
    role: &'static str,
    content: String,
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [Message],
    temperature: f32,
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

impl LlmClient {
    pub fn new(endpoint: Endpoint, default_model: String) -> Result<Self, LlmError> {
        Ok(Self {
            http: Http::new(endpoint)?,
            default_model,
        })
    }

    /// The default model.
    pub fn model(&self) -> &str {
        &self.default_model
    }

    /// The model's answer to `req` (`choices[0].message.content`).
    pub async fn complete(&self, req: &ChatRequest) -> Result<String, LlmError> {
        self.chat(req, &first_messages(req), false).await
    }

    /// The model's answer to `req`, parsed as `T`. Asks for JSON mode (OpenAI then
    /// requires the word "JSON" somewhere in the prompt); tolerates code fences and
    /// prose around the object. If the answer does not parse as `T`, sends it back
    /// once with the parse error and asks again; a second failure is
    /// [`LlmError::InvalidJson`].
    pub async fn complete_json<T: DeserializeOwned>(
        &self,
        req: &ChatRequest,
    ) -> Result<T, LlmError> {
        let mut messages = first_messages(req);
        let answer = self.chat(req, &messages, true).await?;
        let error = match parse_json::<T>(&answer) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        tracing::warn!(
            model = self.model_for(req),
            error = %error,
            "answer was not valid JSON for the required shape, asking once more"
        );
        messages.push(Message {
            role: "assistant",
            content: answer,
        });
        messages.push(Message {
            role: "user",
            content: format!(
                "Your previous answer was not valid JSON for the required shape: {error}. \
                 Answer again with only the JSON object."
            ),
        });
        let answer = self.chat(req, &messages, true).await?;
        parse_json(&answer).map_err(|e| LlmError::InvalidJson(e.to_string()))
    }

    fn model_for<'a>(&'a self, req: &'a ChatRequest) -> &'a str {
        req.model.as_deref().unwrap_or(&self.default_model)
    }

    async fn chat(
        &self,
        req: &ChatRequest,
        messages: &[Message],
        json: bool,
    ) -> Result<String, LlmError> {
        let body = ChatBody {
            model: self.model_for(req),
            messages,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            stream: false,
            response_format: json.then(|| serde_json::json!({ "type": "json_object" })),
        };
        let response: ChatResponse = self.http.post("chat/completions", &body).await?;
        response
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .filter(|content| !content.trim().is_empty())
            .ok_or(LlmError::Empty)
    }
}

fn first_messages(req: &ChatRequest) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2);
    if !req.system.is_empty() {
        messages.push(Message {
            role: "system",
            content: req.system.clone(),
        });
    }
    messages.push(Message {
        role: "user",
        content: req.user.clone(),
    });
    messages
}

/// Parses `answer` as `T`: as it stands, else its outermost `{…}` (which strips
/// ```` ```json ```` fences and prose around the object).
fn parse_json<T: DeserializeOwned>(answer: &str) -> Result<T, serde_json::Error> {
    let answer = answer.trim();
    let direct = serde_json::from_str(answer);
    if direct.is_ok() {
        return direct;
    }
    match (answer.find('{'), answer.rfind('}')) {
        (Some(start), Some(end)) if start < end => serde_json::from_str(&answer[start..=end]),
        _ => direct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Shape {
        a: u32,
    }

    #[test]
    fn json_is_found_inside_fences_and_prose() {
        for answer in [
            r#"{"a": 1}"#,
            "```json\n{\"a\": 1}\n```",
            "```\n{\"a\": 1}\n```\n",
            "Sure! Here it is: {\"a\": 1} Hope that helps.",
        ] {
            assert_eq!(
                parse_json::<Shape>(answer).unwrap(),
                Shape { a: 1 },
                "{answer}"
            );
        }
        assert!(parse_json::<Shape>("no json here").is_err());
        assert!(parse_json::<Shape>(r#"{"b": 1}"#).is_err());
        assert_eq!(parse_json::<Vec<u32>>("[1, 2]").unwrap(), vec![1, 2]);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0, None), Duration::from_millis(200));
        assert_eq!(backoff(1, None), Duration::from_millis(400));
        assert_eq!(backoff(3, None), Duration::from_millis(1600));
        assert_eq!(backoff(10, None), MAX_BACKOFF);
        assert_eq!(backoff(40, None), MAX_BACKOFF);
        assert_eq!(
            backoff(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(backoff(0, Some(Duration::from_secs(120))), MAX_BACKOFF);
    }

    #[test]
    fn error_message_prefers_the_servers_words() {
        let openai = br#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#;
        assert_eq!(error_message(openai, Some("Bad Request")), "bad model");
        let ollama = br#"{"error":"model not found"}"#;
        assert_eq!(error_message(ollama, None), "model not found");
        assert_eq!(error_message(b"  oops \n", None), "oops");
        assert_eq!(error_message(b"", Some("Bad Gateway")), "Bad Gateway");
        let long = "x".repeat(1000);
        assert_eq!(
            error_message(long.as_bytes(), None).chars().count(),
            ERROR_BODY_CHARS + 1
        );
    }

    #[test]
    fn debug_redacts_the_api_key() {
        let endpoint = Endpoint {
            api_key: Some("sk-secret".into()),
            ..Endpoint::new("http://localhost/v1")
        };
        let shown = format!("{endpoint:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn normalise_makes_unit_vectors_and_rejects_zero() {
        let mut v = vec![3.0, 4.0];
        normalise(&mut v).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
        assert!(normalise(&mut [0.0, 0.0]).is_err());
        assert!(normalise(&mut [f32::NAN, 1.0]).is_err());
    }

    #[test]
    fn bad_base_urls_are_rejected() {
        assert!(LlmClient::new(Endpoint::new("not a url"), "m".into()).is_err());
        assert!(LlmClient::new(Endpoint::new("ftp://host/v1"), "m".into()).is_err());
        assert!(OpenAiEmbedder::new(Endpoint::new("http://h/v1"), "m".into(), 0).is_err());
    }
}
