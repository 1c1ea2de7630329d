//! Strict HTTP: refuse any request two parsers could read differently, before it is forwarded.
//!
//! hyper's parser already rejects malformed request lines, obs-fold, invalid header names,
//! control bytes in header values and conflicting Content-Length values (h2's HPACK decoder
//! builds values with `HeaderValue::from_bytes`, which refuses control bytes too; the `x-nul`
//! case of the failure tests proves it end to end). What it tolerates but a backend might read
//! differently is refused here with 400 and the connection closed, so no backend can be
//! desynchronised.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Request, Version};

/// Why a request is refused, in words for the log.
pub(crate) fn check<B>(req: &Request<B>) -> Result<(), &'static str> {
    if !matches!(
        req.version(),
        Version::HTTP_10 | Version::HTTP_11 | Version::HTTP_2
    ) {
        return Err("unsupported HTTP version");
    }
    // One pass over the headers (instead of a hashed lookup per rule): every request goes
    // through here at every hop.
    let facts = Facts::of(req.headers());
    if facts.hosts > 1 {
        return Err("two Host headers");
    }
    if facts.lengths > 0 && facts.codings > 0 {
        return Err("both Content-Length and Transfer-Encoding");
    }
    if facts.lengths > 1 {
        return Err("repeated Content-Length");
    }
    if let Some(cl) = facts.length
        && (cl.is_empty() || !cl.as_bytes().iter().all(u8::is_ascii_digit))
    {
        return Err("malformed Content-Length");
    }
    if facts.codings > 1 {
        return Err("repeated Transfer-Encoding");
    }
    if let Some(te) = facts.coding
        && !te.as_bytes().eq_ignore_ascii_case(b"chunked")
    {
        return Err("unknown or repeated transfer coding");
    }
    if req.version() != Version::HTTP_2 {
        match (facts.host, req.uri().authority()) {
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
    } else if let (Some(host), Some(authority)) = (facts.host, req.uri().authority())
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Err("Host disagrees with :authority");
    }
    Ok(())
}

/// What the rules look at in a request's headers: how many of each framing header, and the
/// first value of each.
#[derive(Default)]
struct Facts<'h> {
    hosts: usize,
    host: Option<&'h HeaderValue>,
    lengths: usize,
    length: Option<&'h HeaderValue>,
    codings: usize,
    coding: Option<&'h HeaderValue>,
}

impl<'h> Facts<'h> {
    fn of(headers: &'h HeaderMap) -> Facts<'h> {
        let mut facts = Facts::default();
        for (name, value) in headers {
            let (count, first) = if *name == HOST {
                (&mut facts.hosts, &mut facts.host)
            } else if *name == CONTENT_LENGTH {
                (&mut facts.lengths, &mut facts.length)
            } else if *name == TRANSFER_ENCODING {
                (&mut facts.codings, &mut facts.coding)
            } else {
                continue;
            };
            *count += 1;
            first.get_or_insert(value);
        }
        facts
    }
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
