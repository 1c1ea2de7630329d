//! Who may use the admin endpoint: the bearer-token check, the browser check on changes, and
//! what a refusal costs (a `401` or `403`, a count in `farmgate_admin_unauthorized_total`, a log
//! line at most once a second).

use std::net::SocketAddr;

use http::header::{AUTHORIZATION, ORIGIN};
use http::{HeaderMap, Method, Request, StatusCode};

use crate::throttle::{Throttle, unlogged};
use crate::{Metrics, Token};

/// Why a request to a guarded path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token that is not the configured one.
    Wrong,
    /// No token is configured, yet the endpoint listens beyond loopback: a reload removed
    /// `token_file` (or `[admin]`) but the endpoint stays where it started until a restart.
    Unconfigured,
    /// A change (a drain) from a browser (it sent `Origin`) with no token configured: any web
    /// page the operator visits could send it to a loopback endpoint.
    Browser,
}

impl Refusal {
    /// The `reason` label of `farmgate_admin_unauthorized_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Wrong => "wrong",
            Refusal::Unconfigured => "unconfigured",
            Refusal::Browser => "browser",
        }
    }

    /// The status of the answer: `401`, or `403` when no token could help.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::Missing | Refusal::Wrong | Refusal::Unconfigured => StatusCode::UNAUTHORIZED,
            Refusal::Browser => StatusCode::FORBIDDEN,
        }
    }

    /// The rule in words, for the log and the body of the `401`.
    pub(crate) fn words(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "no bearer token: send Authorization: Bearer TOKEN, TOKEN being the content of \
                 [admin] token_file"
            }
            Refusal::Wrong => "wrong bearer token: it is not the content of [admin] token_file",
            Refusal::Unconfigured => {
                "no [admin] token_file is configured since a reload, but the endpoint still \
                 listens beyond loopback: set token_file and reload, or restart to move it"
            }
            Refusal::Browser => {
                "a browser (the request has an Origin header) may not drain or undrain servers \
                 unless [admin] token_file is set: use curl, or set a token"
            }
        }
    }

    /// The `WWW-Authenticate` challenge of a `401` (RFC 6750 §3).
    pub(crate) fn challenge(self) -> Option<&'static str> {
        match self {
            Refusal::Missing | Refusal::Unconfigured => Some(r#"Bearer realm="farmgate""#),
            Refusal::Wrong => Some(r#"Bearer realm="farmgate", error="invalid_token""#),
            Refusal::Browser => None,
        }
    }
}

/// Whether a request with `headers` may read a guarded path, given the token in force and
/// whether the endpoint listens on loopback only. Without a token, loopback is open and
/// anything else is closed.
pub(crate) fn check(
    headers: &HeaderMap,
    token: Option<&Token>,
    loopback: bool,
) -> Result<(), Refusal> {
    let Some(token) = token else {
        return if loopback {
            Ok(())
        } else {
            Err(Refusal::Unconfigured)
        };
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()));
    match presented {
        None => Err(Refusal::Missing),
        Some(presented) if token.matches(presented) => Ok(()),
        Some(_) => Err(Refusal::Wrong),
    }
}

/// Whether `req` may change something (any method but `GET` and `HEAD`) from where it comes:
/// without a token, not from a browser. Browsers send `Origin` with every `POST`, and a web
/// page may `POST` to any address without asking (a "simple" cross-site request), loopback
/// included; with a token it cannot, as it cannot know it.
pub(crate) fn check_browser<B>(req: &Request<B>, token_configured: bool) -> Result<(), Refusal> {
    let reads = req.method() == Method::GET || req.method() == Method::HEAD;
    if reads || token_configured || !req.headers().contains_key(ORIGIN) {
        Ok(())
    } else {
        Err(Refusal::Browser)
    }
}

/// The credentials of an `Authorization` value of the `Bearer` scheme (case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Counts refusals and logs them, at most one line a second.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    log: Throttle,
}

impl Refusals {
    /// Count `refusal` of `what` (method and path) from `peer`, and log it unless a line was
    /// logged less than a second ago.
    pub(crate) fn note(&self, metrics: &Metrics, refusal: Refusal, what: &str, peer: SocketAddr) {
        metrics.admin_unauthorized(refusal.label());
        if let Some(n) = self.log.admit() {
            tracing::warn!(
                "admin endpoint: refused {what} from {peer}: {}{}",
                refusal.words(),
                unlogged(n)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    #[test]
    fn only_the_bearer_scheme_with_the_token_passes() {
        let token = Token::new("s3cret").unwrap();
        let check = |h: &HeaderMap| check(h, Some(&token), true);
        assert_eq!(check(&with("Bearer s3cret")), Ok(()));
        assert_eq!(check(&with("bearer  s3cret ")), Ok(()));
        assert_eq!(check(&with("Bearer s3cre")), Err(Refusal::Wrong));
        assert_eq!(check(&with("Bearer ")), Err(Refusal::Wrong));
        assert_eq!(check(&with("Basic czNjcmV0")), Err(Refusal::Missing));
        assert_eq!(check(&with("s3cret")), Err(Refusal::Missing));
        assert_eq!(check(&HeaderMap::new()), Err(Refusal::Missing));
    }

    #[test]
    fn without_a_token_a_browser_may_read_but_not_drain() {
        let req = |method: Method, origin: bool| {
            let mut req = Request::builder()
                .method(method)
                .uri("/upstreams/farm/servers/a/drain");
            if origin {
                req = req.header(ORIGIN, "https://evil.example");
            }
            req.body(()).unwrap()
        };
        assert_eq!(
            check_browser(&req(Method::POST, true), false),
            Err(Refusal::Browser)
        );
        assert_eq!(check_browser(&req(Method::POST, false), false), Ok(()));
        assert_eq!(check_browser(&req(Method::POST, true), true), Ok(()));
        assert_eq!(check_browser(&req(Method::GET, true), false), Ok(()));
        assert_eq!(Refusal::Browser.status(), StatusCode::FORBIDDEN);
        assert_eq!(Refusal::Browser.challenge(), None);
    }

    #[test]
    fn without_a_token_loopback_is_open_and_anything_else_closed() {
        assert_eq!(check(&HeaderMap::new(), None, true), Ok(()));
        assert_eq!(
            check(&with("Bearer anything"), None, false),
            Err(Refusal::Unconfigured)
        );
    }
}
