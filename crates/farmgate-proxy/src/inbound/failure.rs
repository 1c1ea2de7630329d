//! A request farmgate answers itself because forwarding it failed or is impossible: who is at
//! fault decides the status, the log level and what the client is told.

use std::sync::Arc;

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
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamFailure),
    /// A gate cannot pass its verified client's identity on to the application.
    #[error("not forwarded: the client's identity headers cannot be built")]
    Identity(#[source] Arc<HeadersError>),
}

/// Who caused a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client sent something we refuse.
    Downstream,
    /// A backend failed or is unreachable.
    Upstream,
    /// We failed.
    Internal,
}

impl Failure {
    /// What the client is answered.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Failure::Strict(_) | Failure::Upgrade(_) | Failure::NoHost => StatusCode::BAD_REQUEST,
            Failure::NoRoute { .. } => StatusCode::NOT_FOUND,
            Failure::Upstream(upstream) => upstream.status(),
            Failure::Identity(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Who is at fault.
    pub(crate) fn fault(&self) -> Fault {
        match self {
            Failure::Strict(_)
            | Failure::Upgrade(_)
            | Failure::NoHost
            | Failure::NoRoute { .. } => Fault::Downstream,
            Failure::Upstream(_) => Fault::Upstream,
            Failure::Identity(_) => Fault::Internal,
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
