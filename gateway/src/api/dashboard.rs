//! The pairing dashboard at `/`: one HTML page (inline CSS and JS, embedded in the
//! binary, no build step) that talks to the public API with the key a person enters.

use super::ApiResult;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

const PAGE: &str = include_str!("dashboard.html");

pub fn serve() -> ApiResult {
    let mut res = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())).boxed());
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}
