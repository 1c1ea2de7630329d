//! An upstream at run time: its servers, balancer and pooled client.

use std::sync::Arc;
use std::time::Duration;

use farmgate_balance::RoundRobin;
use farmgate_config::{Timeouts, Upstream};
use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::ServerName;

use crate::body::Body;
use crate::connect::{ConnectError, Connector};
use crate::error::{BuildError, Failure};

/// ALPN offered to backends. HTTP/1.1 only: the pooled client keys connections by backend
/// address, and HTTP/2 would carry that address as `:authority` instead of the client's host.
const UPSTREAM_ALPN: &[&[u8]] = &[b"http/1.1"];

/// One server of an upstream.
#[derive(Debug)]
pub(crate) struct ServerRt {
    /// `10.0.0.11:8443`, for logs.
    pub(crate) address: Arc<str>,
    authority: Authority,
}

/// An upstream ready to take requests.
#[derive(Debug)]
pub(crate) struct UpstreamRt {
    pub(crate) name: Arc<str>,
    servers: Vec<ServerRt>,
    balancer: RoundRobin,
    client: Client<Connector, Body>,
    connector: Connector,
    scheme: Scheme,
    timeouts: Timeouts,
}

impl UpstreamRt {
    pub(crate) fn build(config: &Upstream) -> Result<UpstreamRt, BuildError> {
        let (tls, server_name) = match &config.tls {
            Some(tls) => {
                let client = farmgate_tls::upstream_client_config(tls, UPSTREAM_ALPN)?;
                let name = match &tls.server_name {
                    Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                        BuildError::ServerName {
                            at: tls.at.clone(),
                            name: n.clone(),
                        }
                    })?),
                    None => None,
                };
                (Some(client), name)
            }
            None => (None, None),
        };
        let scheme = if tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let connector = Connector::new(tls, server_name, config.timeouts.connect);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.timeouts.idle)
            .pool_max_idle_per_host(usize::MAX)
            .set_host(false)
            .build(connector.clone());
        let servers = config
            .servers
            .iter()
            .map(|s| {
                let text = s.address.to_string();
                let authority =
                    Authority::try_from(text.as_str()).map_err(|_| BuildError::ServerName {
                        at: config.at.clone(),
                        name: text.clone(),
                    })?;
                Ok(ServerRt {
                    address: Arc::from(text),
                    authority,
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let weights: Vec<u32> = config.servers.iter().map(|s| s.weight).collect();
        Ok(UpstreamRt {
            name: Arc::from(config.name.as_str()),
            servers,
            balancer: RoundRobin::new(&weights),
            client,
            connector,
            scheme,
            timeouts: config.timeouts,
        })
    }

    /// Connections opened to this upstream's servers so far.
    pub(crate) fn connections_opened(&self) -> u64 {
        self.connector.opened()
    }

    /// The server for the next request.
    pub(crate) fn pick(&self) -> Option<&ServerRt> {
        self.balancer.pick(|_| true).map(|i| &self.servers[i])
    }

    /// Send `req` (origin-form URI) to `server` over a pooled connection.
    pub(crate) async fn send(
        &self,
        server: &ServerRt,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, Failure> {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(server.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = http::Uri::from_parts(parts)
            .map_err(|e| Failure::internal(format!("cannot build the upstream URI: {e}")))?;
        let wait = self.timeouts.response_header;
        match tokio::time::timeout(wait, self.client.request(req)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(classify(&e, &server.address)),
            Err(_) => Err(Failure::timeout(format!(
                "backend {} sent no response header within {}",
                server.address,
                show(wait)
            ))),
        }
    }
}

fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Turn a client error into the status and the cause in words.
fn classify(e: &hyper_util::client::legacy::Error, server: &str) -> Failure {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(connect) = s.downcast_ref::<ConnectError>() {
            return connect_failure(connect);
        }
        source = s.source();
    }
    // TLS 1.3: a gate refuses our certificate after we consider the handshake done, so the alert
    // arrives when we read the response.
    if let Some(tls) = farmgate_tls::explain::find_tls_error(e) {
        return Failure::bad_gateway(format!(
            "{} (backend {server})",
            farmgate_tls::explain::upstream_failure(tls, server)
        ));
    }
    Failure::bad_gateway(format!(
        "backend {server} failed before responding: {}",
        chain(e)
    ))
}

fn connect_failure(e: &ConnectError) -> Failure {
    match e {
        ConnectError::Tls {
            addr,
            server_name,
            source,
        } => {
            let why = match farmgate_tls::explain::find_tls_error(source) {
                Some(tls) => farmgate_tls::explain::upstream_failure(tls, server_name),
                None => format!("TLS handshake failed: {source}"),
            };
            Failure::bad_gateway(format!("{why} (backend {addr})"))
        }
        ConnectError::Tcp { addr, source } => {
            let why = match source.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ => source.to_string(),
            };
            Failure::bad_gateway(format!("cannot connect to backend {addr}: {why}"))
        }
        other => Failure::bad_gateway(chain(other)),
    }
}

/// An error and its sources, joined with ": ".
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
