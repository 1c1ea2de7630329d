//! PROXY protocol in: the header a layer-4 load balancer writes before a connection's first
//! byte (v1 text or v2 binary, HAProxy's specification), naming the client it relays. Read
//! only from the sources of `proxy_protocol.from`, before TLS and within the listener's
//! `timeouts.handshake`; from any other source, a connection's bytes are never read as one.
//! See docs/architecture.md ("A request's path").

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ppp::{PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header accepted, TLVs included: a v1 header is 107 bytes at most; a v2
/// header from HAProxy, a cloud balancer or IPVS is some tens of bytes, a few hundred with
/// TLS details.
const MAX_HEADER: usize = 4096;

/// How much is looked at in one read: the whole header, and the start of what follows, in
/// nearly every case (the specification asks receivers for 536 bytes at least).
const PEEK: usize = 536;

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// A relayed connection: from `client`, to `destination` (the address the client
    /// connected to, at the balancer).
    Proxied {
        client: SocketAddr,
        destination: SocketAddr,
    },
    /// The balancer's own connection (a v2 `LOCAL` command, v1 `UNKNOWN`, or an address
    /// family other than TCP over IPv4 or IPv6): its real peer is the client.
    Local,
}

/// Why a connection from a `proxy_protocol` source was closed before its header was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    /// Nothing, or not all of the header, arrived in time.
    #[error("no complete PROXY header within {0:?} (listener timeouts.handshake)")]
    Timeout(Duration),
    /// The connection ended before the header did.
    #[error("the connection closed before its PROXY header ended")]
    Closed,
    /// The first bytes are a TLS handshake: the balancer sends no PROXY header.
    #[error(
        "the connection starts with a TLS handshake, not a PROXY header: is PROXY protocol \
         (e.g. HAProxy's send-proxy-v2) on at the balancer?"
    )]
    Tls,
    /// The first bytes are neither a PROXY header nor TLS.
    #[error("the connection does not start with a PROXY header")]
    Missing,
    /// A v1 header that does not parse.
    #[error("malformed PROXY v1 header")]
    V1(#[source] v1::BinaryParseError),
    /// A v2 header that does not parse.
    #[error("malformed PROXY v2 header")]
    V2(#[source] v2::ParseError),
    /// A v2 header naming a UDP connection.
    #[error("the PROXY v2 header names a datagram (UDP) connection, not a stream")]
    Datagram,
    /// Longer than [`MAX_HEADER`].
    #[error("the PROXY header is longer than {MAX_HEADER} bytes")]
    TooLong,
    /// Reading failed.
    #[error("reading the PROXY header failed")]
    Read(#[source] io::Error),
}

/// Read the PROXY header `tcp` starts with, within `limit`, and nothing after it: the bytes
/// that follow (a TLS ClientHello, an HTTP request) stay in the socket for what reads next.
pub(crate) async fn read(tcp: &mut TcpStream, limit: Duration) -> Result<Header, ProxyHeaderError> {
    match tokio::time::timeout(limit, read_header(tcp)).await {
        Ok(read) => read,
        Err(_) => Err(ProxyHeaderError::Timeout(limit)),
    }
}

/// Peek at what has arrived; if it holds the whole header, consume exactly the header. If it
/// holds only part of one, consume that part (it is all header) and wait for more, so that
/// a header split over several segments costs no busy loop.
async fn read_header(tcp: &mut TcpStream) -> Result<Header, ProxyHeaderError> {
    let mut buf = [0u8; PEEK];
    // The header bytes consumed so far, when it came in pieces.
    let mut consumed: Vec<u8> = Vec::new();
    loop {
        let n = tcp.peek(&mut buf).await.map_err(ProxyHeaderError::Read)?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        let seen: &[u8] = if consumed.is_empty() {
            &buf[..n]
        } else {
            consumed.extend_from_slice(&buf[..n]);
            &consumed
        };
        match parse(seen)? {
            Some((header, len)) => {
                // The header ends within what was peeked: take exactly its remaining bytes.
                let before = seen.len() - n;
                let rest = len - before;
                tcp.read_exact(&mut buf[..rest])
                    .await
                    .map_err(ProxyHeaderError::Read)?;
                return Ok(header);
            }
            None if seen.len() >= MAX_HEADER => return Err(ProxyHeaderError::TooLong),
            None => {
                if consumed.is_empty() {
                    consumed.extend_from_slice(&buf[..n]);
                }
                // All of it belongs to the header: take it out of the socket.
                tcp.read_exact(&mut buf[..n])
                    .await
                    .map_err(ProxyHeaderError::Read)?;
            }
        }
    }
}

/// The header at the start of `bytes` and its length; `None` if `bytes` is the start of one
/// (more must be read).
fn parse(bytes: &[u8]) -> Result<Option<(Header, usize)>, ProxyHeaderError> {
    // A TLS record starts 0x16 0x03: say so rather than "malformed", it is the common mistake.
    if bytes.first() == Some(&0x16) {
        return Err(ProxyHeaderError::Tls);
    }
    // Each version by its signature (or the start of it, while it arrives).
    let signed = |signature: &[u8]| bytes.starts_with(signature) || signature.starts_with(bytes);
    let (header, len) = if signed(v2::PROTOCOL_PREFIX) {
        match v2::Header::try_from(bytes) {
            Ok(h) => (of_v2(&h)?, h.len()),
            Err(e) if e.is_incomplete() => return Ok(None),
            Err(e) => return Err(ProxyHeaderError::V2(e)),
        }
    } else if signed(v1::PROTOCOL_PREFIX.as_bytes()) {
        match v1::Header::try_from(bytes) {
            Ok(h) => (of_v1(&h.addresses), h.header.len()),
            Err(e) if e.is_incomplete() => return Ok(None),
            Err(e) => return Err(ProxyHeaderError::V1(e)),
        }
    } else {
        return Err(ProxyHeaderError::Missing);
    };
    Ok(Some((header, len)))
}

fn of_v1(addresses: &v1::Addresses) -> Header {
    match addresses {
        v1::Addresses::Tcp4(a) => of_v4(a),
        v1::Addresses::Tcp6(a) => of_v6(a),
        v1::Addresses::Unknown => Header::Local,
    }
}

fn of_v2(header: &v2::Header<'_>) -> Result<Header, ProxyHeaderError> {
    if header.command == v2::Command::Local {
        return Ok(Header::Local);
    }
    if header.protocol == v2::Protocol::Datagram {
        return Err(ProxyHeaderError::Datagram);
    }
    Ok(match &header.addresses {
        v2::Addresses::IPv4(a) => of_v4(a),
        v2::Addresses::IPv6(a) => of_v6(a),
        // The specification: use the connection's real addresses.
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Header::Local,
    })
}

/// IPv4 addresses, as both versions carry them.
fn of_v4(a: &v1::IPv4) -> Header {
    Header::Proxied {
        client: SocketAddr::from((a.source_address, a.source_port)),
        destination: SocketAddr::from((a.destination_address, a.destination_port)),
    }
}

/// IPv6 addresses, as both versions carry them.
fn of_v6(a: &v1::IPv6) -> Header {
    Header::Proxied {
        client: SocketAddr::from((a.source_address, a.source_port)),
        destination: SocketAddr::from((a.destination_address, a.destination_port)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    fn proxied(client: &str, destination: &str) -> Header {
        Header::Proxied {
            client: client.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    fn v2_header(command: v2::Command, client: &str, destination: &str) -> Vec<u8> {
        let client: SocketAddr = client.parse().unwrap();
        let destination: SocketAddr = destination.parse().unwrap();
        v2::Builder::with_addresses(
            v2::Version::Two | command,
            v2::Protocol::Stream,
            (client, destination),
        )
        .build()
        .unwrap()
    }

    #[test]
    fn v1_and_v2_name_the_client_and_say_how_long_they_are() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n\x16\x03\x01";
        assert_eq!(
            parse(v1).unwrap(),
            Some((proxied("192.0.2.7:51234", "10.0.0.1:443"), v1.len() - 3))
        );
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\nGET";
        assert_eq!(
            parse(v6).unwrap().unwrap().0,
            proxied("[2001:db8::7]:51234", "[2001:db8::1]:443")
        );
        let mut v2 = v2_header(v2::Command::Proxy, "192.0.2.7:51234", "10.0.0.1:443");
        let len = v2.len();
        v2.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&v2).unwrap(),
            Some((proxied("192.0.2.7:51234", "10.0.0.1:443"), len))
        );
    }

    #[test]
    fn a_local_or_unknown_header_leaves_the_real_peer() {
        let local = v2_header(v2::Command::Local, "10.0.0.9:1", "10.0.0.1:443");
        assert_eq!(parse(&local).unwrap().unwrap().0, Header::Local);
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap(),
            Some((Header::Local, 15))
        );
    }

    #[test]
    fn the_start_of_a_header_asks_for_more() {
        let v2 = v2_header(v2::Command::Proxy, "192.0.2.7:51234", "10.0.0.1:443");
        for cut in [1, 12, 16, v2.len() - 1] {
            assert_eq!(parse(&v2[..cut]).unwrap(), None, "{cut} bytes");
        }
        for part in [
            &b"P"[..],
            b"PROXY TCP4 192.0",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r",
        ] {
            assert_eq!(parse(part).unwrap(), None, "{part:?}");
        }
    }

    #[tokio::test]
    async fn a_header_in_pieces_is_read_whole_and_what_follows_stays_in_the_socket() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut balancer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut tcp, _) = listener.accept().await.unwrap();
        let header = v2_header(v2::Command::Proxy, "192.0.2.7:51234", "10.0.0.1:443");
        let (first, second) = (header[..10].to_vec(), header[10..].to_vec());
        let writer = tokio::spawn(async move {
            balancer.write_all(&first).await.unwrap();
            balancer.flush().await.unwrap();
            tokio::task::yield_now().await;
            let mut rest = second;
            rest.extend_from_slice(b"\x16\x03\x01");
            balancer.write_all(&rest).await.unwrap();
            balancer
        });
        let read = read(&mut tcp, Duration::from_secs(60)).await.unwrap();
        assert_eq!(read, proxied("192.0.2.7:51234", "10.0.0.1:443"));
        let mut next = [0u8; 3];
        tcp.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"\x16\x03\x01", "the TLS bytes are still there");
        drop(writer.await.unwrap());
    }

    #[test]
    fn anything_else_is_refused_and_tls_is_named() {
        assert!(matches!(
            parse(b"\x16\x03\x01\x02\x00"),
            Err(ProxyHeaderError::Tls)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyHeaderError::Missing)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 192.0.2.300 10.0.0.1 1 2\r\n"),
            Err(ProxyHeaderError::V1(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r\rX"),
            Err(ProxyHeaderError::V1(_))
        ));
        let mut v3 = v2_header(v2::Command::Proxy, "192.0.2.7:1", "10.0.0.1:2");
        v3[12] = 0x31;
        assert!(matches!(parse(&v3), Err(ProxyHeaderError::V2(_))));
        let udp = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Datagram,
            (
                "192.0.2.7:1".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:2".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        assert!(matches!(parse(&udp), Err(ProxyHeaderError::Datagram)));
    }
}
