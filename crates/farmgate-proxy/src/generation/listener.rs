//! A listener as one generation built it: its TLS, its HTTP server settings, its routes and the
//! metric handles its requests count into.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use farmgate_acme::{Acme, AcmeCertificate};
use farmgate_admin::{Counter, Gauge, Metrics, RouteMetrics};
use farmgate_config::{Config, Listener, Route};
use farmgate_tls::{CertStore, GateStats, ServerTls, SniCerts};
use http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::error::BuildError;

use super::route;
use super::rules::RouteRules;

/// Streams one HTTP/2 client may have open at once (nginx's default too); more are refused
/// with RST_STREAM.
const H2_MAX_STREAMS: u32 = 128;
/// Streams an HTTP/2 client may reset before we take them; one more ends the connection with
/// GOAWAY ENHANCE_YOUR_CALM (h2's default, stated so it stays ours).
const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams we may have to reset for an HTTP/2 client's errors before GOAWAY
/// ENHANCE_YOUR_CALM (h2's default).
const H2_MAX_ERROR_RESETS: usize = 1024;

/// A listener's run-time state within one generation.
#[derive(Debug)]
pub(crate) struct ListenerRt {
    pub(crate) name: Arc<str>,
    pub(crate) config: Listener,
    pub(crate) tls: Option<ServerTls>,
    /// Serves HTTP/1.1 and HTTP/2 on this listener's connections.
    pub(crate) http: auto::Builder<TokioExecutor>,
    /// Each route's metric label and upstream name, in route order.
    route_labels: Vec<(String, Arc<str>)>,
    /// Each route's `request_headers` and `response_headers`.
    pub(crate) rules: RouteRules,
    /// Metric handles, resolved on first use (the registry belongs to the server, and a
    /// generation is built before it knows which server will run it).
    route_metrics: Vec<OnceLock<RouteMetrics>>,
    unrouted_metrics: OnceLock<RouteMetrics>,
    open_gauge: OnceLock<Gauge>,
    /// `farmgate_forwarded_kept_total` of this listener, once looked up.
    forwarded_kept: OnceLock<Counter>,
    /// A digest of what a connection is set up with (see [`ListenerRt::sets_up_like`]).
    setup: u64,
    /// `Keep-Alive: timeout=N` for HTTP/1.1 responses: how long a connection stays open
    /// between requests (`timeouts.request_header`, which hyper counts from the end of the
    /// previous response, bounded by `timeouts.idle`).
    pub(crate) keep_alive: HeaderValue,
}

impl ListenerRt {
    /// Build the listener `config` of `whole`; an ACME listener gets its certificate from
    /// `acme`, and returns it too. A gate's verifier counts into `gate_stats`.
    pub(crate) fn build(
        config: &Listener,
        whole: &Config,
        acme: &Acme,
        gate_stats: Arc<GateStats>,
    ) -> Result<(ListenerRt, Option<AcmeCertificate>), BuildError> {
        let (tls, certificate) = match &config.tls {
            Some(tls) => {
                let (store, certificate) = match (tls.acme(), whole.acme.as_ref()) {
                    (Some(cert), Some(settings)) => {
                        let certificate = acme.certificate(settings, cert)?;
                        (certificate.store(), Some(certificate))
                    }
                    _ => (Arc::new(CertStore::new(SniCerts::load(tls)?)), None),
                };
                let server = ServerTls::with_store(&config.name, tls, store, gate_stats)?;
                (Some(server), certificate)
            }
            None => (None, None),
        };
        let mut http = auto::Builder::new(TokioExecutor::new());
        // The request head: hyper answers 431 past max_request_header (its read buffer, which
        // the head must fit in) and closes a connection whose head is not complete within
        // timeouts.request_header, however it trickles in.
        let max_header = usize::try_from(config.limits.max_request_header).unwrap_or(usize::MAX);
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.timeouts.request_header)
            .max_buf_size(max_header)
            .max_headers(100);
        // HTTP/2 abuse ends the connection with GOAWAY (docs/operations.md, "Under attack").
        http.http2()
            .timer(TokioTimer::new())
            // RFC 8441: HTTP/2 clients may open WebSockets (extended CONNECT).
            .enable_connect_protocol()
            .max_concurrent_streams(H2_MAX_STREAMS)
            // The header block, HPACK-decoded; h2 also bounds its CONTINUATION frames by it.
            .max_header_list_size(u32::try_from(max_header).unwrap_or(u32::MAX))
            // Rapid reset (CVE-2023-44487): streams reset before we took them.
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            // Streams we had to reset for the client's protocol errors.
            .max_local_error_reset_streams(H2_MAX_ERROR_RESETS);
        let route_labels = config
            .routes
            .iter()
            .map(|r| {
                let upstream = Arc::from(whole.upstream(r.upstream).name.as_str());
                (route::label(r), upstream)
            })
            .collect();
        let setup = setup_digest(config, tls.as_ref());
        let kept = config.timeouts.request_header.min(config.timeouts.idle);
        let keep_alive = HeaderValue::from_str(&format!("timeout={}", kept.as_secs()))
            .unwrap_or(HeaderValue::from_static("timeout=0"));
        let listener = ListenerRt {
            setup,
            keep_alive,
            name: Arc::from(config.name.as_str()),
            tls,
            http,
            route_labels,
            rules: RouteRules::build(&config.routes),
            route_metrics: config.routes.iter().map(|_| OnceLock::new()).collect(),
            unrouted_metrics: OnceLock::new(),
            open_gauge: OnceLock::new(),
            forwarded_kept: OnceLock::new(),
            config: config.clone(),
        };
        Ok((listener, certificate))
    }

    /// Whether a connection set up by `self` is one `other` would set up too: the same
    /// certificates served, the same kind of TLS (none, server-only, or a gate's), the same
    /// timeouts. When a reload changes any of these, open connections are closed after their
    /// current request, so that every client reconnects to what the new configuration serves.
    /// A gate's trust, CRLs and allow-list are not part of it: open gate connections are
    /// checked again against them instead, and stay if they still pass.
    pub(crate) fn sets_up_like(&self, other: &ListenerRt) -> bool {
        self.setup == other.setup
    }

    /// The route a request for `host` and `path` takes, and its index.
    pub(crate) fn route(&self, host: &str, path: &str) -> Option<(usize, &Route)> {
        route::find(&self.config.routes, host, path)
    }

    /// The request counters of route `route` (`None`: requests answered before routing).
    pub(crate) fn route_metrics(&self, route: Option<usize>, metrics: &Metrics) -> &RouteMetrics {
        let found =
            route.and_then(|i| Some((self.route_metrics.get(i)?, self.route_labels.get(i)?)));
        match found {
            Some((slot, (label, upstream))) => {
                slot.get_or_init(|| metrics.route(&self.name, label, upstream))
            }
            None => self
                .unrouted_metrics
                .get_or_init(|| metrics.route(&self.name, "-", "-")),
        }
    }

    /// Count a request whose client-supplied forwarding headers were kept for a client in
    /// `trusted_proxies`: a relaxation, so counted.
    pub(crate) fn count_forwarded_kept(&self, metrics: &Metrics) {
        self.forwarded_kept
            .get_or_init(|| metrics.forwarded_kept(&self.name))
            .inc();
    }

    /// The open-connections gauge of this listener.
    pub(crate) fn open_gauge(&self, metrics: &Metrics) -> Gauge {
        self.open_gauge
            .get_or_init(|| metrics.open_connections(&self.name))
            .clone()
    }
}

/// The digest behind [`ListenerRt::sets_up_like`]. An ACME listener's certificates change in
/// place, in a store every generation shares, so they are not part of it.
fn setup_digest(config: &Listener, tls: Option<&ServerTls>) -> u64 {
    let mut digest = DefaultHasher::new();
    let timeouts = &config.timeouts;
    (timeouts.handshake, timeouts.request_header, timeouts.idle).hash(&mut digest);
    timeouts.send.hash(&mut digest);
    config.limits.max_request_header.hash(&mut digest);
    config.is_gate().hash(&mut digest);
    match (tls, config.tls.as_ref().and_then(|t| t.acme())) {
        (None, _) => 0u8.hash(&mut digest),
        (Some(_), Some(_)) => 1u8.hash(&mut digest),
        (Some(tls), None) => {
            2u8.hash(&mut digest);
            for key in tls.store().current().all() {
                for cert in &key.cert {
                    cert.as_ref().hash(&mut digest);
                }
            }
        }
    }
    digest.finish()
}
