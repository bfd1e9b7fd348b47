//! Request bodies: `Content-Encoding: gzip` inflated with a cap at the body limit, so a
//! small compressed body cannot become an unbounded one.

use std::borrow::Cow;
use std::io::Read;

use axum::http::{HeaderMap, StatusCode, header};

/// Whether the body says it is gzip-compressed.
pub(crate) fn is_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

/// The plain bytes of a body; gzip bodies are inflated up to `limit` bytes.
pub(crate) fn plain<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, (StatusCode, String)> {
    if !is_gzip(headers) {
        return Ok(Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, format!("body inflates past {limit} bytes")));
    }
    Ok(Cow::Owned(out))
}
