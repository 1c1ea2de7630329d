//! Strict HTTP: refuse any request two parsers could read differently, before it is forwarded.
//!
//! hyper's parser already rejects malformed request lines, obs-fold, invalid header names and
//! conflicting Content-Length values. What it tolerates but a backend might read differently is
//! refused here with 400 and the connection closed, so no backend can be desynchronised.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Request, Version};

/// Why a request is refused, in words for the log.
pub(crate) fn check<B>(req: &Request<B>) -> Result<(), &'static str> {
    let headers = req.headers();
    if !matches!(
        req.version(),
        Version::HTTP_10 | Version::HTTP_11 | Version::HTTP_2
    ) {
        return Err("unsupported HTTP version");
    }
    if headers.get_all(HOST).iter().count() > 1 {
        return Err("two Host headers");
    }
    let lengths = headers.get_all(CONTENT_LENGTH).iter().count();
    let codings = headers.get_all(TRANSFER_ENCODING).iter().count();
    if lengths > 0 && codings > 0 {
        return Err("both Content-Length and Transfer-Encoding");
    }
    if lengths > 1 {
        return Err("repeated Content-Length");
    }
    if let Some(cl) = headers.get(CONTENT_LENGTH)
        && (cl.is_empty() || !cl.as_bytes().iter().all(u8::is_ascii_digit))
    {
        return Err("malformed Content-Length");
    }
    if codings > 1 {
        return Err("repeated Transfer-Encoding");
    }
    if let Some(te) = headers.get(TRANSFER_ENCODING)
        && !te.as_bytes().eq_ignore_ascii_case(b"chunked")
    {
        return Err("unknown or repeated transfer coding");
    }
    if has_control_bytes(headers) {
        return Err("control character in a header value");
    }
    if req.version() != Version::HTTP_2 {
        match (headers.get(HOST), req.uri().authority()) {
            (None, _) if req.version() == Version::HTTP_11 => return Err("missing Host header"),
            (Some(host), Some(authority))
                if !host
                    .as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
            {
                return Err("Host disagrees with the request target");
            }
            _ => {}
        }
    } else if let (Some(host), Some(authority)) = (headers.get(HOST), req.uri().authority())
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Err("Host disagrees with :authority");
    }
    Ok(())
}

/// NUL, CR, LF and other control bytes (except horizontal tab) in any header value.
fn has_control_bytes(headers: &HeaderMap) -> bool {
    headers.values().any(|v| {
        v.as_bytes()
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/x").version(Version::HTTP_11);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_default()
    }

    #[test]
    fn ordinary_request_passes() {
        assert_eq!(
            check(&req(&[("host", "a.example"), ("content-length", "3")])),
            Ok(())
        );
        assert_eq!(
            check(&req(&[
                ("host", "a.example"),
                ("transfer-encoding", "chunked")
            ])),
            Ok(())
        );
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let cases: &[&[(&str, &str)]] = &[
            &[
                ("host", "a"),
                ("content-length", "3"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                ("host", "a"),
                ("content-length", "3"),
                ("content-length", "3"),
            ],
            &[("host", "a"), ("content-length", "+3")],
            &[("host", "a"), ("transfer-encoding", "gzip, chunked")],
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("host", "a"), ("host", "b")],
            &[],
        ];
        for headers in cases {
            assert!(check(&req(headers)).is_err(), "{headers:?}");
        }
    }

    #[test]
    fn host_must_match_absolute_target() {
        let r = Request::builder()
            .uri("http://a.example/x")
            .header("host", "b.example")
            .body(())
            .unwrap_or_default();
        assert!(check(&r).is_err());
    }
}
