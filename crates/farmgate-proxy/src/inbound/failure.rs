//! A request farmgate answers itself because forwarding it failed or is impossible: who is at
//! fault decides the status, the log level and what the client is told.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::outbound::UpstreamFailure;

use super::client::HeadersError;

/// Why a request was not forwarded, or got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Strict HTTP: the request could be read differently by another parser.
    #[error("refused request: {0}")]
    Strict(&'static str),
    /// An upgrade or CONNECT farmgate does not pass.
    #[error("refused request: {0}")]
    Upgrade(&'static str),
    /// Neither `Host` nor `:authority`.
    #[error("request has no host")]
    NoHost,
    /// No route of the listener takes it.
    #[error("no route for host {host:?} path {path:?}")]
    NoRoute { host: String, path: String },
    /// The client made more requests than `requests_per_client` allows; it may try again
    /// after the duration.
    #[error("refused request: over requests_per_client (retry after {0:?})")]
    TooManyRequests(Duration),
    /// Content-Length over `max_request_body`.
    #[error("refused request: Content-Length over max_request_body ({limit} bytes)")]
    BodyTooLarge { limit: u64 },
    /// The upstream failed (or the client's body did, on its way there).
    #[error(transparent)]
    Upstream(#[from] UpstreamFailure),
    /// A gate cannot pass its verified client's identity on to the application.
    #[error("not forwarded: the client's identity headers cannot be built")]
    Identity(#[source] Arc<HeadersError>),
    /// The server switched protocols without a WebSocket handshake farmgate asked for and
    /// checked: no tunnel opens, and the client is not told to switch either.
    #[error(
        "{server} answered 101 Switching Protocols without completing a WebSocket handshake farmgate made; not passed on"
    )]
    UnexpectedSwitch { server: Arc<str> },
}

/// Who caused a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client sent something we refuse.
    Downstream,
    /// A backend failed or is unreachable.
    Upstream,
    /// Every server was busy: each such request is logged at debug, the upstream's summary
    /// once a second at warn.
    Saturated,
    /// We failed.
    Internal,
}

impl Failure {
    /// What the client is answered.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Failure::Strict(_) | Failure::Upgrade(_) | Failure::NoHost => StatusCode::BAD_REQUEST,
            Failure::NoRoute { .. } => StatusCode::NOT_FOUND,
            Failure::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Failure::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::Upstream(upstream) => upstream.status(),
            Failure::Identity(_) | Failure::UnexpectedSwitch { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// Who is at fault.
    pub(crate) fn fault(&self) -> Fault {
        match self {
            Failure::Strict(_)
            | Failure::Upgrade(_)
            | Failure::NoHost
            | Failure::NoRoute { .. }
            | Failure::TooManyRequests(_)
            | Failure::BodyTooLarge { .. } => Fault::Downstream,
            Failure::Upstream(upstream) if !upstream.server_at_fault() => Fault::Downstream,
            Failure::Upstream(UpstreamFailure::QueueTimeout { .. }) => Fault::Saturated,
            Failure::Upstream(_) | Failure::UnexpectedSwitch { .. } => Fault::Upstream,
            Failure::Identity(_) => Fault::Internal,
        }
    }

    /// How long the client should wait before it asks again (`Retry-After`), if it should.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::TooManyRequests(wait) => Some(*wait),
            _ => None,
        }
    }

    /// Whether the connection must close after the answer: the request could not be read
    /// safely (400), or its body was not read to its end (413, 408, a failed body).
    pub(crate) fn closes_connection(&self) -> bool {
        match self {
            Failure::Strict(_) | Failure::Upgrade(_) | Failure::NoHost => true,
            Failure::BodyTooLarge { .. } => true,
            Failure::Upstream(upstream) => !upstream.server_at_fault(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_told_what_it_did_wrong() {
        assert_eq!(
            Failure::Strict("two Host headers").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(Failure::NoHost.fault(), Fault::Downstream);
        let no_route = Failure::NoRoute {
            host: "a.test".into(),
            path: "/x".into(),
        };
        assert_eq!(no_route.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            no_route.to_string(),
            r#"no route for host "a.test" path "/x""#
        );
    }

    #[test]
    fn an_upstream_failure_keeps_its_status() {
        let failure = Failure::from(UpstreamFailure::NoHealthyServer {
            upstream: Arc::from("farm"),
        });
        assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failure.fault(), Fault::Upstream);
    }
}
