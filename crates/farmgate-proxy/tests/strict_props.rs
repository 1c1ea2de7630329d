//! Property tests of strict HTTP at a hop, over real sockets: request heads put together from
//! the framing shapes two parsers could read differently (repeated or malformed
//! Content-Length, unknown or repeated transfer codings, both together, missing, repeated or
//! disagreeing Host, obs-fold, bare CR or LF, NUL and control bytes, unknown versions) never
//! reach the origin: the proxy answers 400 and closes. The proxy never panics: every
//! unambiguous shape is answered 200 by the origin, and the one ambiguity hyper resolves itself
//! (Content-Length beside chunked) reaches it re-framed, chunked wins. `PROPTEST_CASES=N`
//! raises the number of cases (CI's interop stage).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use farmgate_proxy::Server;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;
use proptest::prelude::*;

use crate::farm;

/// Longest wait for an answer before the case fails (a bound, not a delay).
const PATIENCE: Duration = Duration::from_secs(30);

/// The body every request with a body sends: 15 bytes, or "hello" read as chunked.
const BODY: &str = "5\r\nhello\r\n0\r\n\r\n";

/// A plain-HTTP proxy in front of an origin, on a runtime of its own, for every case.
struct Hop {
    addr: SocketAddr,
    origin: Origin,
    _server: Server,
    _pki: TestPki,
    _runtime: tokio::runtime::Runtime,
}

fn hop() -> &'static Hop {
    static HOP: OnceLock<Hop> = OnceLock::new();
    HOP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let pki = TestPki::new();
        let (origin, server) = runtime.block_on(async {
            let origin = Origin::start("app").await;
            let text = format!(
                "[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[[listener.route]]\nupstream = \"app\"\n[upstream.app]\nservers = [\"{}\"]\n",
                origin.addr
            );
            (origin, farm::start(pki.dir(), "strict", &text).await)
        });
        Hop {
            addr: server.local_addr("public").unwrap(),
            origin,
            _server: server,
            _pki: pki,
            _runtime: runtime,
        }
    })
}

/// One request head's framing.
#[derive(Debug, Clone)]
struct Shape {
    version: &'static str,
    /// `Some(authority)`: an absolute-form target `http://AUTHORITY/count`.
    absolute: Option<&'static str>,
    hosts: Vec<&'static str>,
    lengths: Vec<&'static str>,
    codings: Vec<&'static str>,
    /// A header line (or two) no parser may read two ways.
    bad_line: Option<&'static str>,
    /// A header line ended by a bare LF: RFC 9112 §2.2 lets a recipient take LF alone as a
    /// line end, and hyper does; what it forwards is re-serialised with CRLF, so the origin
    /// reads the same headers. Refused or forwarded, both are safe.
    lf_line: bool,
    /// How the framing headers' names are spelled.
    names: (&'static str, &'static str, &'static str),
}

impl Shape {
    fn request(&self) -> String {
        let target = match self.absolute {
            Some(authority) => format!("http://{authority}/count"),
            None => "/count".to_owned(),
        };
        let mut head = format!("POST {target} {}\r\nconnection: close\r\n", self.version);
        let (host, length, coding) = self.names;
        for h in &self.hosts {
            head.push_str(&format!("{host}: {h}\r\n"));
        }
        for l in &self.lengths {
            head.push_str(&format!("{length}: {l}\r\n"));
        }
        for c in &self.codings {
            head.push_str(&format!("{coding}: {c}\r\n"));
        }
        if let Some(line) = self.bad_line {
            head.push_str(line);
            head.push_str("\r\n");
        }
        if self.lf_line {
            head.push_str("x-lf: a\n");
        }
        head.push_str("\r\n");
        if !self.lengths.is_empty() || !self.codings.is_empty() {
            head.push_str(BODY);
        }
        head
    }

    /// Whether two parsers could read this request differently, so it must be refused.
    fn ambiguous(&self) -> bool {
        let well_formed_length =
            |l: &str| !l.is_empty() && l.len() < 19 && l.bytes().all(|b| b.is_ascii_digit());
        let host_agrees = match (self.absolute, self.hosts.first()) {
            (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
            _ => true,
        };
        !matches!(self.version, "HTTP/1.0" | "HTTP/1.1")
            || self.bad_line.is_some()
            || self.hosts.len() > 1
            // HTTP/1.1 requires Host; without any authority there is nothing to route by.
            || (self.hosts.is_empty() && (self.version == "HTTP/1.1" || self.absolute.is_none()))
            || !host_agrees
            || self.lengths.iter().any(|l| !well_formed_length(l))
            || !self.lengths.windows(2).all(|w| same_length(w[0], w[1]))
            || self.codings.len() > 1
            || self
                .codings
                .iter()
                .any(|c| !c.eq_ignore_ascii_case("chunked"))
    }
}

impl Shape {
    /// Repeated Content-Length headers of one value (RFC 9112 §6.3 lets a recipient take them
    /// as one, and hyper does, forwarding a single header): refused or forwarded, both safe.
    fn tolerated(&self) -> bool {
        self.lf_line || self.lengths.len() > 1
    }
}

/// Two well-formed Content-Length values that say the same number.
fn same_length(a: &str, b: &str) -> bool {
    a.parse::<u64>()
        .ok()
        .is_some_and(|a| b.parse::<u64>().ok() == Some(a))
}

fn shape() -> impl Strategy<Value = Shape> {
    let version = prop_oneof![
        8 => Just("HTTP/1.1"),
        1 => Just("HTTP/1.0"),
        1 => prop::sample::select(vec!["HTTP/1.2", "HTTP/2.0", "HTTP/3.0", "HTTP/0.9"]),
    ];
    let host = prop::sample::select(vec![
        "www.farm.test",
        "WWW.Farm.Test",
        "evil.example",
        "www.farm.test:8080",
    ]);
    let length = prop::sample::select(vec![
        "15",
        "015",
        "0",
        "+15",
        "-1",
        "0x0f",
        "15,15",
        "1 5",
        "",
        "15.0",
        "99999999999999999999",
    ]);
    let coding = prop::sample::select(vec![
        "chunked",
        "CHUNKED",
        "gzip",
        "gzip, chunked",
        "chunked, chunked",
        "identity",
        "chunked;x=1",
        "xchunked",
        "chunked, gzip",
    ]);
    let bad_line = prop::sample::select(vec![
        "x-folded: a\r\n b",
        "x-nul: a\0b",
        "x-ctl: a\x01b",
        "x-cr: a\rb",
        "x-del: a\x7fb",
        "x-space : b",
        " x-lead: b",
    ]);
    let names = prop::sample::select(vec![
        ("host", "content-length", "transfer-encoding"),
        ("Host", "Content-Length", "Transfer-Encoding"),
        ("HOST", "CONTENT-LENGTH", "TRANSFER-ENCODING"),
    ]);
    (
        version,
        prop::option::weighted(
            0.2,
            prop::sample::select(vec!["www.farm.test", "evil.example"]),
        ),
        prop::collection::vec(host, 0..3),
        prop::collection::vec(length, 0..3),
        prop::collection::vec(coding, 0..3),
        prop::option::weighted(0.2, bad_line),
        prop::bool::weighted(0.1),
        names,
    )
        .prop_map(
            |(version, absolute, hosts, lengths, mut codings, bad_line, lf_line, names)| {
                // HTTP/1.0 has no transfer codings; hyper refuses them there on its own terms.
                if version == "HTTP/1.0" {
                    codings.clear();
                }
                Shape {
                    version,
                    absolute,
                    hosts,
                    lengths,
                    codings,
                    bad_line,
                    lf_line,
                    names,
                }
            },
        )
}

/// Send `request` on a new connection; the whole answer.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    // The proxy may refuse and close before it has read everything we send.
    let _ = tcp.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

proptest! {
    #[test]
    fn ambiguous_framing_is_refused_and_never_forwarded(shape in shape()) {
        let hop = hop();
        let before = hop.origin.requests();
        let request = shape.request();
        let answer = exchange(hop.addr, &request);
        let status = answer.lines().next().unwrap_or_default().to_owned();
        if shape.ambiguous() {
            prop_assert!(
                status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.0 400"),
                "{request:?} got {answer:?}"
            );
            prop_assert_eq!(hop.origin.requests(), before, "{:?} was forwarded", request);
        } else if shape.tolerated() && status.contains(" 400 ") {
            prop_assert_eq!(hop.origin.requests(), before, "{:?} was forwarded", request);
        } else {
            prop_assert!(status.contains(" 200 "), "{request:?} got {answer:?}");
            if !shape.codings.is_empty() {
                // Chunked wins over any Content-Length: the origin read "hello".
                prop_assert!(answer.ends_with("\r\n\r\n5\n"), "{request:?} got {answer:?}");
            }
        }
    }
}
