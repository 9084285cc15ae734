//! Reading request bodies and query strings, strictly.
//!
//! Bodies: `Content-Type: application/json` required when a body is present, the
//! configured size limit enforced from `Content-Length` and again while reading
//! (413), malformed JSON → 400 `malformed_json`, unknown fields → 422
//! `unknown_field`, wrong types or missing fields → 422 `invalid_field`.

use super::ApiError;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use serde::de::DeserializeOwned;

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body exceeds {limit} bytes"),
    )
}

/// Reads the whole body, at most `limit` bytes.
pub async fn read_bytes(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(limit))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_read_failed",
            format!("could not read request body: {e}"),
        )),
    }
}

fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// Parses a JSON body into `T`. With `optional`, an empty body reads as `{}`.
pub async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
    optional: bool,
) -> Result<T, ApiError> {
    let has_type = req.headers().contains_key(header::CONTENT_TYPE);
    let json_type = is_json(&req);
    let bytes = read_bytes(req, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) && optional {
        return parse_json(b"{}");
    }
    if !json_type && (has_type || !bytes.is_empty()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    parse_json(&bytes)
}

/// Maps serde_json's error categories to stable codes.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("request body is not valid JSON: {e}"),
            ),
            Category::Data if e.to_string().starts_with("unknown field") => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_field",
                e.to_string(),
            ),
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                e.to_string(),
            ),
        }
    })
}

/// Paging parameters shared by list routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: u32,
    pub after: Option<String>,
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// Parses the query string, refusing parameters the route does not know.
/// A path segment percent-decoded (`%2B` and a literal `+` both stay `+`).
pub fn decode_path(raw: &str) -> String {
    form_urlencoded::parse(format!("v={}", raw.replace('+', "%2B").replace('&', "%26")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub fn query_pairs(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(invalid_query(format!("unknown query parameter `{k}`")));
    }
    Ok(pairs)
}

pub fn invalid_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// Parses a `limit` parameter (1 to [`MAX_PAGE`]).
pub fn parse_limit(v: &str) -> Result<u32, ApiError> {
    v.parse()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| invalid_query(format!("`limit` must be between 1 and {MAX_PAGE}")))
}

pub fn page_query(query: Option<&str>) -> Result<PageQuery, ApiError> {
    let mut page = PageQuery {
        limit: DEFAULT_PAGE,
        after: None,
    };
    for (k, v) in query_pairs(query, &["limit", "after"])? {
        match k.as_str() {
            "limit" => page.limit = parse_limit(&v)?,
            _ => page.after = Some(v),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
    }

    #[test]
    fn json_errors_have_stable_codes() {
        assert_eq!(parse_json::<T>(b"{").unwrap_err().code, "malformed_json");
        assert_eq!(parse_json::<T>(b"").unwrap_err().code, "malformed_json");
        assert_eq!(
            parse_json::<T>(br#"{"name":1}"#).unwrap_err().code,
            "invalid_field"
        );
        assert_eq!(parse_json::<T>(br#"{}"#).unwrap_err().code, "invalid_field");
        assert_eq!(
            parse_json::<T>(br#"{"name":"a","x":1}"#).unwrap_err().code,
            "unknown_field"
        );
        assert!(parse_json::<T>(br#"{"name":"a"}"#).is_ok());
    }

    #[test]
    fn page_query_is_strict() {
        assert_eq!(page_query(None).unwrap().limit, DEFAULT_PAGE);
        let p = page_query(Some("limit=5&after=ten_x")).unwrap();
        assert_eq!((p.limit, p.after.as_deref()), (5, Some("ten_x")));
        assert_eq!(
            page_query(Some("limit=0")).unwrap_err().code,
            "invalid_query"
        );
        assert_eq!(
            page_query(Some("limit=abc")).unwrap_err().code,
            "invalid_query"
        );
        assert_eq!(
            page_query(Some("offset=3")).unwrap_err().code,
            "invalid_query"
        );
    }
}
