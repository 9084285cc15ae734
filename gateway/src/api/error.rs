//! [`ApiError`] and the one place errors become HTTP responses.
//!
//! Every error leaves the gateway as `{"error":{"code":"…","message":"…"}}` with a
//! stable snake_case code. Internal failures are logged with the request's span and
//! answered with a generic message: details never reach the client. The errors of
//! the layers below (storage, sessions, the send queue, the knowledge base) become
//! HTTP here, through `From`, and nowhere else.

use super::{ResBody, full};
use http::{HeaderValue, Response, StatusCode, header};
use switchboard_actors::StoreError;
use switchboard_actors::channels::{ChannelError, UnknownChannel};
use switchboard_actors::outbound::QueueError;
use switchboard_actors::scopes::Scope;
use switchboard_actors::sessions::SessionError;
use switchboard_rag::embed::EmbedError;
use switchboard_rag::kb::KbError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, rounded up, for 429 and 503.
    pub retry_after: Option<u64>,
    /// Allowed methods, for 405.
    pub allow: Option<String>,
    /// The scope that was missing, for 403 `insufficient_scope`.
    pub scope: Option<Scope>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
            scope: None,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
    }

    pub fn method_not_allowed(allow: String) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        }
    }

    pub fn unauthenticated(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn invalid_credentials(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
    }

    /// 403 for a key without the scope a route (or a key it asks for) needs; the
    /// scope is named in the message and in `WWW-Authenticate` (RFC 6750).
    pub fn insufficient_scope(scope: Scope) -> Self {
        Self {
            scope: Some(scope),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this API key lacks the scope `{scope}`"),
            )
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry later",
            )
        }
    }

    /// Logs the cause and returns a generic 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn into_response(self) -> Response<ResBody> {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(scope) = self.scope {
            error["required_scope"] = scope.as_str().into();
        }
        let body = serde_json::json!({ "error": error });
        let mut res = full(self.status, body.to_string().into_bytes());
        let headers = res.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            headers.insert(header::ALLOW, allow);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(scope) = self.scope
            && let Ok(v) = HeaderValue::from_str(&format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
            ))
        {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::new(StatusCode::CONFLICT, "conflict", what),
            other => Self::internal(other),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotRunning => Self::new(
                StatusCode::CONFLICT,
                "session_not_running",
                "the session is not running",
            ),
            SessionError::Timeout => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "session_busy",
                "the session did not answer in time; retry",
            ),
            SessionError::Rejected(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected_by_network", m)
            }
            SessionError::Bounced { why, .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "recipient_bounced", why)
            }
            SessionError::Unsupported(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "not_supported", m)
            }
            SessionError::Busy(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "session_busy", m),
            SessionError::Failed(m) => Self::new(StatusCode::CONFLICT, "session_failed", m),
            SessionError::Later(at) => {
                let wait = (at - switchboard_actors::clock::now_ms()).max(0) as u64;
                Self {
                    retry_after: Some(wait.div_ceil(1000).max(1)),
                    ..Self::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "cap_reached",
                        format!(
                            "the account's safety caps allow this at {}",
                            switchboard_actors::clock::rfc3339(at)
                        ),
                    )
                }
            }
        }
    }
}

impl From<UnknownChannel> for ApiError {
    fn from(e: UnknownChannel) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_channel",
            e.to_string(),
        )
    }
}

/// A channel's own answer where no session is involved yet (checking a new
/// session's config).
impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Config(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_session_config",
                e.to_string(),
            ),
            other => SessionError::from(other).into(),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::SessionNotRunning { .. } => {
                Self::new(StatusCode::CONFLICT, "session_not_working", e.to_string())
            }
            QueueError::NotSupported(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "not_supported", m)
            }
            QueueError::ReplyToNotFound(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reply_to_not_found",
                e.to_string(),
            ),
            QueueError::KeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ),
            QueueError::QueueFull {
                queued,
                retry_after_secs,
            } => Self {
                retry_after: Some(retry_after_secs),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "send_queue_full",
                    format!("{queued} sends are already queued"),
                )
            },
            QueueError::Internal(m) => Self::internal(m),
        }
    }
}

impl From<KbError> for ApiError {
    fn from(e: KbError) -> Self {
        match e {
            KbError::Empty => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty_document",
                "the document has no text to index",
            ),
            KbError::Unavailable(_) | KbError::Embed(EmbedError::Files(_)) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "knowledge_base_unavailable",
                e.to_string(),
            ),
            KbError::Embed(EmbedError::Remote(_)) => {
                Self::new(StatusCode::BAD_GATEWAY, "embedding_failed", e.to_string())
            }
            other => Self::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_layers_map_to_stable_codes() {
        let e = ApiError::from(QueueError::SessionNotRunning {
            status: "STOPPED".into(),
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::CONFLICT, "session_not_working")
        );
        assert!(e.message.contains("STOPPED"));
        let e = ApiError::from(QueueError::QueueFull {
            queued: 10,
            retry_after_secs: 3,
        });
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, "send_queue_full", Some(3))
        );
        let e = ApiError::from(QueueError::NotSupported("no".into()));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNPROCESSABLE_ENTITY, "not_supported")
        );
        let e = ApiError::from(SessionError::Timeout);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "session_busy")
        );
        let e = ApiError::from(KbError::Empty);
        assert_eq!(e.code, "empty_document");
        let e = ApiError::from(QueueError::Internal("secret detail".into()));
        assert_eq!(e.code, "internal");
        assert!(!e.message.contains("secret"));
    }
}
