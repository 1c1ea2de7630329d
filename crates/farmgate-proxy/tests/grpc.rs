//! HTTP/2 upstreams and gRPC end to end: a gRPC service behind a gate (`protocol = "h2"`,
//! cleartext), called through the edge by a client over TLS; unary and server-streaming calls,
//! trailers and status codes arrive, the service sees the verified identity. And an upstream set
//! to `h2` whose server speaks HTTP/1.1 only: a clear 502.

use std::net::SocketAddr;
use std::sync::Arc;

use farmgate_proxy::Server;
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::grpc::{GrpcService, call};
use farmgate_testkit::pki::TestPki;
use farmgate_testkit::ws::WsOrigin;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::farm::{BACKEND, EDGE, SITE, edge_listener, edge_upstream, gate_toml, start};
use crate::logs;

/// client → edge (upstream `protocol = edge_protocol`) → gate (`protocol = "h2"`) → gRPC.
struct GrpcFarm {
    pki: TestPki,
    service: GrpcService,
    _gate: Server,
    edge: Server,
    edge_addr: SocketAddr,
}

impl GrpcFarm {
    async fn start(edge_protocol: &str) -> GrpcFarm {
        logs::capture();
        let pki = TestPki::new();
        let service = GrpcService::start().await;
        let allow = format!("dns:{EDGE}");
        let text = gate_toml(
            "gate",
            &pki.server(BACKEND),
            &[&pki.ca_file()],
            &[&allow],
            "",
            service.addr,
        ) + "protocol = \"h2\"\n";
        let gate = start(pki.dir(), "gate", &text).await;
        let gate_addr = gate.local_addr("gate").unwrap();
        let text = edge_listener(&pki.server(SITE))
            + &edge_upstream(
                &[(gate_addr, 1)],
                &pki.ca_file(),
                &pki.client(EDGE),
                &format!("protocol = {edge_protocol:?}"),
            );
        let edge = start(pki.dir(), "edge", &text).await;
        let edge_addr = edge.local_addr("public").unwrap();
        GrpcFarm {
            pki,
            service,
            _gate: gate,
            edge,
            edge_addr,
        }
    }

    fn client(&self) -> TlsClient {
        TlsClient::new(&self.pki.ca_file(), SITE).http2()
    }
}

async fn calls_pass(edge_protocol: &str) {
    let farm = GrpcFarm::start(edge_protocol).await;
    let client = farm.client();

    let unary = call(&client, farm.edge_addr, "/echo.Echo/Unary", b"hello").await;
    assert_eq!(unary.http_status, 200);
    assert_eq!(unary.messages, [bytes::Bytes::from_static(b"hello")]);
    assert_eq!(unary.status(), "0", "{:?}", unary.trailers);

    let stream = call(&client, farm.edge_addr, "/echo.Echo/Stream", b"5").await;
    let expected: Vec<bytes::Bytes> = (0..5)
        .map(|i| bytes::Bytes::from(format!("message {i}")))
        .collect();
    assert_eq!(stream.messages, expected);
    assert_eq!(stream.status(), "0");

    let failed = call(&client, farm.edge_addr, "/echo.Echo/Fail", b"x").await;
    assert_eq!(failed.http_status, 200);
    assert!(failed.messages.is_empty());
    assert_eq!(failed.status(), "5");
    assert_eq!(failed.trailers["grpc-message"], "no such thing");

    // The service sees who called: the gate's identity headers, as metadata.
    let calls = farm.service.calls();
    assert_eq!(calls.len(), 3);
    for headers in &calls {
        let xfcc = headers["x-forwarded-client-cert"].to_str().unwrap();
        assert!(xfcc.contains("DNS=edge.farm.test"), "{xfcc}");
        assert_eq!(headers["te"], "trailers");
        assert_eq!(headers["content-type"], "application/grpc");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_pass_edge_and_gate_over_http2_hops() {
    calls_pass("h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_pass_an_http1_hop_between_edge_and_gate() {
    calls_pass("http1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_upstream_multiplexes_requests_over_one_connection() {
    let farm = Arc::new(GrpcFarm::start("h2").await);
    let client = farm.client();
    let mut calls = Vec::new();
    for i in 0..20 {
        let (farm, client) = (farm.clone(), client.clone());
        calls.push(tokio::spawn(async move {
            call(
                &client,
                farm.edge_addr,
                "/echo.Echo/Unary",
                format!("{i}").as_bytes(),
            )
            .await
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap().status(), "0");
    }
    assert_eq!(
        farm.edge.generation().upstream_connections("farm"),
        Some(1),
        "twenty concurrent calls share one HTTP/2 connection to the gate"
    );
}

/// An edge whose upstream says `protocol = "h2"`, in front of `servers` (with TLS when `tls`).
async fn h2_edge(pki: &TestPki, server: SocketAddr, tls: bool) -> Server {
    let upstream = if tls {
        edge_upstream(
            &[(server, 1)],
            &pki.ca_file(),
            &pki.client(EDGE),
            "protocol = \"h2\"",
        )
    } else {
        format!("[upstream.farm]\nservers = [\"{server}\"]\nprotocol = \"h2\"\n")
    };
    start(
        pki.dir(),
        "edge",
        &(edge_listener(&pki.server(SITE)) + &upstream),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_upstream_in_front_of_an_http1_only_server_is_a_clear_502() {
    logs::capture();
    let pki = TestPki::new();
    let browser = TlsClient::new(&pki.ca_file(), SITE);

    // Cleartext: the server reads the HTTP/2 preface as a malformed HTTP/1.1 request.
    let http1_only = WsOrigin::start().await;
    let edge = h2_edge(&pki, http1_only.addr, false).await;
    let answer = browser.get(edge.local_addr("public").unwrap(), "/").await;
    assert_eq!(answer.status, 502);
    let lines = logs::lines_with(&["does not speak HTTP/2", &http1_only.addr.to_string()]);
    assert!(!lines.is_empty(), "{}", logs::dump());
    assert!(
        lines[0].contains(r#"set protocol = "http1""#),
        "{}",
        lines[0]
    );

    // TLS: the server completes the handshake without choosing h2.
    let backend = pki.server(BACKEND);
    let tls_http1 = tls_http1_server(&backend).await;
    let edge = h2_edge(&pki, tls_http1, true).await;
    let answer = browser.get(edge.local_addr("public").unwrap(), "/").await;
    assert_eq!(answer.status, 502);
    let lines = logs::lines_with(&["did not select ALPN h2", &tls_http1.to_string()]);
    assert!(!lines.is_empty(), "{}", logs::dump());
}

/// A TLS server with `backend`'s certificate that offers ALPN `http/1.1` only and answers
/// HTTP/1.1.
async fn tls_http1_server(backend: &farmgate_testkit::pki::CertFiles) -> SocketAddr {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&backend.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&backend.key).unwrap();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = socket.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"http/1.1")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                }
            });
        }
    });
    addr
}
