//! Who may read the admin endpoint: the bearer-token check, and what a refusal costs (a `401`,
//! a count in `farmgate_admin_unauthorized_total`, a log line at most once a second).

use std::net::SocketAddr;

use http::HeaderMap;
use http::header::AUTHORIZATION;

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
}

impl Refusal {
    /// The `reason` label of `farmgate_admin_unauthorized_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Wrong => "wrong",
            Refusal::Unconfigured => "unconfigured",
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
        }
    }

    /// The `WWW-Authenticate` challenge of the `401` (RFC 6750 §3).
    pub(crate) fn challenge(self) -> &'static str {
        match self {
            Refusal::Missing | Refusal::Unconfigured => r#"Bearer realm="farmgate""#,
            Refusal::Wrong => r#"Bearer realm="farmgate", error="invalid_token""#,
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
    fn without_a_token_loopback_is_open_and_anything_else_closed() {
        assert_eq!(check(&HeaderMap::new(), None, true), Ok(()));
        assert_eq!(
            check(&with("Bearer anything"), None, false),
            Err(Refusal::Unconfigured)
        );
    }
}
