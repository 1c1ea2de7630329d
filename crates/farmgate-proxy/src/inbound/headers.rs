//! The headers a hop manages: hop-by-hop headers removed, `X-Forwarded-*` set (extended for a
//! trusted client, replaced for any other, whose `Forwarded` is dropped), and on a gate the
//! verified identity headers set after any client-supplied copies are dropped.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};
use hyper::body::Incoming;

use super::client::ConnInfo;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
const CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The position of `Keep-Alive` in [`HOP_BY_HOP`].
const KEEP_ALIVE_INDEX: usize = 1;
/// The position of `TE` in [`HOP_BY_HOP`].
const TE_INDEX: usize = 3;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The trailer fields gRPC answers end with (its status lives there).
const GRPC_TRAILERS: HeaderValue =
    HeaderValue::from_static("grpc-status, grpc-message, grpc-status-details-bin");

/// Rewrite a request's headers for its upstream; `tls` says whether it came over TLS,
/// `authority` is its host as the client sent it, and `trusted` whether the client may tell
/// us whom it forwards for (see [`trusts`]). Returns whether it kept the client's own
/// `X-Forwarded-For` or `Forwarded` (a trusted client sent one).
pub(crate) fn rewrite_request(
    req: &mut Request<Incoming>,
    conn: &ConnInfo,
    tls: bool,
    authority: &HeaderValue,
    trusted: bool,
) -> bool {
    let version = req.version();
    let headers = req.headers_mut();
    let present = Present::scan(headers);
    // `TE: trailers` says the client takes trailers; so do we, and pass them on: kept towards
    // the upstream (gRPC servers over HTTP/2 require it). Other transfer codings stay behind.
    let te_trailers = present.hop_by_hop[TE_INDEX]
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    present.remove_hop_by_hop(headers);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }

    // Only a trusted client may tell us whom it forwards for; anyone else's claims are
    // replaced (X-Forwarded-*) or dropped (Forwarded, which we do not write).
    if present.forwarded && !trusted {
        headers.remove(FORWARDED);
    }
    let prior = if trusted && present.forwarded_for {
        headers.get(&X_FORWARDED_FOR)
    } else {
        None
    };
    let xff = match prior {
        Some(prior) => {
            let mut v = prior.as_bytes().to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.peer_ip.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| conn.peer_ip.clone())
        }
        None => conn.peer_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR, xff);
    if !(trusted && present.forwarded_proto) {
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        headers.insert(X_FORWARDED_PROTO, proto);
    }
    if !(trusted && present.forwarded_host) {
        headers.insert(X_FORWARDED_HOST, authority.clone());
    }

    // Identity headers are ours alone: drop what the client sent, set the verified identity.
    if present.identity {
        headers.remove(&X_FORWARDED_CLIENT_CERT);
        headers.remove(&CLIENT_CERT);
        headers.remove(&CLIENT_CERT_CHAIN);
    }
    if let Some(client) = conn.verified() {
        headers.insert(X_FORWARDED_CLIENT_CERT, client.xfcc.clone());
        headers.insert(CLIENT_CERT, client.client_cert.clone());
    }

    // HTTP/2 clients carry the host in :authority; backends get it as Host, unchanged.
    if !present.host {
        headers.insert(header::HOST, authority.clone());
    }
    if version == Version::HTTP_2 || version == Version::HTTP_10 {
        *req.version_mut() = Version::HTTP_11;
    }
    trusted && (present.forwarded_for || present.forwarded)
}

/// Whether the client of `conn` may tell us whom it forwards for (keep and extend its
/// `X-Forwarded-For`, keep its `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded`): a
/// gate's verified client (the edge), or a client in the listener's `trusted_proxies`.
pub(crate) fn trusts(conn: &ConnInfo, listener: &farmgate_config::Listener) -> bool {
    // Where nobody is listed, as on most listeners, the client's address is not even looked at.
    conn.verified().is_some()
        || (!listener.trusted_proxies.is_empty() && listener.trusts_forwarding(conn.peer.ip()))
}

/// Which of the headers the proxy removes or sets a message carries, learnt in one pass over
/// its names, so that hashed lookups happen only for those present: most messages carry none
/// of them, or only `Connection: keep-alive`.
#[derive(Debug, Default)]
struct Present {
    /// Hop-by-hop headers present or named by `Connection`, by index in [`HOP_BY_HOP`].
    hop_by_hop: [bool; HOP_BY_HOP.len()],
    /// Other headers `Connection` names: hop-by-hop too.
    named: Vec<HeaderName>,
    forwarded_for: bool,
    forwarded_proto: bool,
    forwarded_host: bool,
    /// RFC 7239 `Forwarded`.
    forwarded: bool,
    /// Any of the client-identity headers.
    identity: bool,
    host: bool,
    /// The first `Content-Type` says gRPC (`application/grpc...`).
    grpc: bool,
    /// A `Trailer` header.
    trailer: bool,
}

impl Present {
    fn scan(headers: &HeaderMap) -> Present {
        let mut present = Present::default();
        let mut content_type = None;
        for (name, value) in headers.iter() {
            if let Some(i) = hop_by_hop_index(name.as_str()) {
                present.hop_by_hop[i] = true;
            }
            present.note(name.as_str(), true);
            if name == header::CONTENT_TYPE {
                // The first value, as `HeaderMap::get` gives it.
                content_type.get_or_insert(value);
            }
            if name != header::CONNECTION {
                continue;
            }
            let tokens = value.to_str().into_iter().flat_map(|v| v.split(','));
            for token in tokens.map(str::trim) {
                match HOP_BY_HOP
                    .iter()
                    .position(|h| h.as_str().eq_ignore_ascii_case(token))
                {
                    Some(i) => present.hop_by_hop[i] = true,
                    None => present
                        .named
                        .extend(HeaderName::from_bytes(token.as_bytes()).ok()),
                }
            }
        }
        present.grpc = content_type.is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        // A header that `Connection` names is removed, so it no longer counts as present.
        for name in std::mem::take(&mut present.named) {
            present.note(name.as_str(), false);
            present.named.push(name);
        }
        present
    }

    /// Record whether `name` (lower case) is there, if it is one the proxy sets. Inlined into
    /// the scan of every message's headers, where it runs once per header.
    #[inline(always)]
    fn note(&mut self, name: &str, there: bool) {
        let flag = match name {
            "x-forwarded-for" => &mut self.forwarded_for,
            "x-forwarded-proto" => &mut self.forwarded_proto,
            "x-forwarded-host" => &mut self.forwarded_host,
            "forwarded" => &mut self.forwarded,
            "x-forwarded-client-cert" | "client-cert" | "client-cert-chain" => {
                // Removal is harmless either way: keep the flag set.
                self.identity |= there;
                return;
            }
            "host" => &mut self.host,
            "content-type" => {
                // Set from the value by `scan`; removed, it no longer says anything.
                self.grpc &= there;
                return;
            }
            "trailer" => &mut self.trailer,
            _ => return,
        };
        *flag = there;
    }

    /// Remove the hop-by-hop headers found, including those `Connection` names.
    fn remove_hop_by_hop(&self, headers: &mut HeaderMap) {
        for name in &self.named {
            headers.remove(name);
        }
        let found = HOP_BY_HOP.iter().zip(self.hop_by_hop);
        for (name, _) in found.filter(|(_, found)| *found) {
            headers.remove(name);
        }
    }
}

/// Remove hop-by-hop headers, including those the Connection header names.
#[cfg(test)]
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    Present::scan(headers).remove_hop_by_hop(headers);
}

/// How a response from upstream goes on to the client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Onward {
    /// The client's hop is HTTP/1.x: it gets gRPC's trailer fields declared.
    pub(crate) http1: bool,
    /// The proxy sets its own `Keep-Alive` on the response afterwards (`forward::handle`),
    /// replacing any the server sent: no need to remove the server's first.
    pub(crate) own_keep_alive: bool,
}

/// Rewrite a response's headers for the client, in one pass over their names: hop-by-hop
/// headers removed, and for an HTTP/1.x client gRPC's trailer fields declared. An HTTP/1.1
/// hop sends only the trailer fields a response declares in `Trailer` (RFC 9110 §6.6.2; hyper
/// keeps to it). A gRPC answer from an HTTP/2 server declares none: declare gRPC's, so that
/// its status reaches an HTTP/1.1 client (an edge, over an HTTP/1.1 hop).
pub(crate) fn rewrite_response(headers: &mut HeaderMap, onward: Onward) {
    let mut present = Present::scan(headers);
    if onward.own_keep_alive {
        // Replaced by the proxy's own: removing it first would cost a hashed removal per
        // response (every farmgate gate, and `Connection: keep-alive`, name it).
        present.hop_by_hop[KEEP_ALIVE_INDEX] = false;
    }
    present.remove_hop_by_hop(headers);
    if onward.http1 && present.grpc && !present.trailer {
        headers.insert(header::TRAILER, GRPC_TRAILERS);
    }
}

/// The position of `name` (lower case, as header names are) in [`HOP_BY_HOP`]. A `match` on
/// the text compares lengths first, so most names are passed over in a few instructions.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    match name {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "proxy-connection" => Some(2),
        "te" => Some(3),
        "transfer-encoding" => Some(4),
        "upgrade" => Some(5),
        "proxy-authenticate" => Some(6),
        "proxy-authorization" => Some(7),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_tokens_name_headers_in_any_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive , X-Private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn a_header_connection_names_no_longer_counts_as_present() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Forwarded-Proto"),
        );
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1"));
        h.insert(CLIENT_CERT, HeaderValue::from_static(":eA==:"));
        let present = Present::scan(&h);
        present.remove_hop_by_hop(&mut h);
        assert!(!present.forwarded_proto);
        assert!(!h.contains_key(X_FORWARDED_PROTO));
        assert!(present.forwarded_for && present.identity);
        assert!(!present.forwarded_host && !present.host);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name.as_str()), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index("host"), None);
        assert_eq!(HOP_BY_HOP[TE_INDEX], header::TE);
        assert_eq!(HOP_BY_HOP[KEEP_ALIVE_INDEX], KEEP_ALIVE);
    }

    fn grpc_response(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        for (name, value) in extra {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    const HTTP1: Onward = Onward {
        http1: true,
        own_keep_alive: false,
    };

    #[test]
    fn grpc_trailers_are_declared_to_http1_clients_only_when_undeclared() {
        let mut h = grpc_response(&[]);
        rewrite_response(&mut h, HTTP1);
        assert_eq!(h.get(header::TRAILER), Some(&GRPC_TRAILERS));

        let mut h = grpc_response(&[]);
        let h2 = Onward {
            http1: false,
            ..HTTP1
        };
        rewrite_response(&mut h, h2);
        assert!(!h.contains_key(header::TRAILER));

        let mut h = grpc_response(&[("trailer", "grpc-status")]);
        rewrite_response(&mut h, HTTP1);
        assert_eq!(
            h.get(header::TRAILER),
            Some(&HeaderValue::from_static("grpc-status"))
        );

        // Named by Connection, Trailer goes, and gRPC's are declared instead.
        let mut h = grpc_response(&[("trailer", "x-other"), ("connection", "trailer")]);
        rewrite_response(&mut h, HTTP1);
        assert_eq!(h.get(header::TRAILER), Some(&GRPC_TRAILERS));

        // Named by Connection, Content-Type goes: nothing says gRPC any more.
        let mut h = grpc_response(&[("connection", "content-type")]);
        rewrite_response(&mut h, HTTP1);
        assert!(h.is_empty());

        // Only the first Content-Type counts, as `HeaderMap::get` sees it.
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.append(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        rewrite_response(&mut h, HTTP1);
        assert!(!h.contains_key(header::TRAILER));
    }

    #[test]
    fn a_keep_alive_the_proxy_replaces_is_left_for_it() {
        let response = || {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
            h
        };
        let mut h = response();
        rewrite_response(&mut h, HTTP1);
        assert!(h.is_empty());
        let mut h = response();
        let replaced = Onward {
            own_keep_alive: true,
            ..HTTP1
        };
        rewrite_response(&mut h, replaced);
        assert_eq!(h.keys().collect::<Vec<_>>(), [KEEP_ALIVE]);
    }
}
