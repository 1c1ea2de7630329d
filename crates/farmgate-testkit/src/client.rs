//! A TLS test client: HTTP/1.1 or HTTP/2 over rustls, with or without a client certificate, and
//! raw handshakes that report exactly how a server refused us.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a test failure

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::pki::CertFiles;

/// A request body for the test client.
pub type ClientBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A response read whole.
#[derive(Debug)]
pub struct TestResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

impl TestResponse {
    /// The value of header `name`, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// How a handshake attempt ended.
#[derive(Debug)]
pub enum Probe {
    /// The server answered our request: these are the first bytes.
    Answered(Vec<u8>),
    /// The TLS layer failed: the rustls error (e.g. an alert the server sent).
    Refused(rustls::Error),
    /// The connection failed otherwise (reset, closed without alert).
    Failed(std::io::Error),
}

/// A TLS client trusting one CA file.
#[derive(Clone, Debug)]
pub struct TlsClient {
    roots: Arc<rustls::RootCertStore>,
    server_name: ServerName<'static>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    http2: bool,
    tls12: bool,
    /// The local address to connect from (a client of its own on 127.0.0.0/8).
    source: Option<IpAddr>,
    /// Bytes written on each connection before anything else (a PROXY header).
    prefix: Option<Arc<[u8]>>,
}

impl TlsClient {
    /// Trust `ca` (PEM) and expect `server_name` on the server's certificate (also sent as SNI
    /// and as the Host header).
    pub fn new(ca: &Path, server_name: &str) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("read CA file") {
            roots
                .add(cert.expect("CA PEM"))
                .expect("CA usable as a root");
        }
        TlsClient {
            roots: Arc::new(roots),
            server_name: ServerName::try_from(server_name.to_owned()).expect("valid server name"),
            identity: None,
            http2: false,
            tls12: false,
            source: None,
            prefix: None,
        }
    }

    /// Connect from `ip` (e.g. `127.0.0.21`): limits count clients by address.
    pub fn from(mut self, ip: IpAddr) -> TlsClient {
        self.source = Some(ip);
        self
    }

    /// Start each connection with `prefix` before TLS, as a load balancer starts it with a
    /// PROXY header.
    pub fn with_prefix(mut self, prefix: &[u8]) -> TlsClient {
        self.prefix = Some(Arc::from(prefix));
        self
    }

    /// A TCP connection to `addr`, from this client's address if it has one, with this
    /// client's prefix written.
    pub async fn tcp(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let mut tcp = match self.source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = match ip {
                    IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                    IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
        };
        if let Some(prefix) = &self.prefix {
            tcp.write_all(prefix).await?;
        }
        Ok(tcp)
    }

    /// Present `files` as client certificate.
    pub fn with_client_cert(mut self, files: &CertFiles) -> TlsClient {
        let chain = CertificateDer::pem_file_iter(&files.cert)
            .expect("read certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_file(&files.key).expect("read key");
        self.identity = Some((chain, Arc::new(key)));
        self
    }

    /// Speak HTTP/2 (ALPN h2) instead of HTTP/1.1.
    pub fn http2(mut self) -> TlsClient {
        self.http2 = true;
        self
    }

    /// Use TLS 1.2 only (a client certificate refusal then arrives during the handshake).
    pub fn tls12(mut self) -> TlsClient {
        self.tls12 = true;
        self
    }

    fn config(&self) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12 {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(self.roots.clone());
        let mut config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .expect("client certificate and key"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = if self.http2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Arc::new(config)
    }

    /// Open a connection for several requests, or say why it failed.
    pub async fn try_connect(
        &self,
        addr: SocketAddr,
    ) -> Result<Connection, Box<dyn std::error::Error + Send + Sync>> {
        let stream = self.handshake(addr).await?;
        let io = TokioIo::new(stream);
        let sender = if self.http2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            (
                Sender::H2(sender),
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            (
                Sender::H1(sender),
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        };
        let (sender, driver) = sender;
        Ok(Connection {
            sender,
            host: self.server_name.to_str().into_owned(),
            http2: self.http2,
            driver: Some(driver),
        })
    }

    /// The serial number of the certificate the server presents now (a fresh handshake).
    pub async fn served_serial(&self, addr: SocketAddr) -> Vec<u8> {
        let stream = self.handshake(addr).await.expect("TLS handshake");
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .expect("server certificate")[0]
            .clone();
        serial_of(leaf.as_ref())
    }

    /// Connect twice with one client configuration (so a session from the first connection can
    /// be offered on the second): whether the second handshake was a resumption.
    pub async fn second_handshake_resumes(&self, addr: SocketAddr) -> bool {
        let config = self.config();
        self.one_request(config.clone(), addr).await;
        let second = self.one_request(config, addr).await;
        second.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// How many TLS 1.3 session tickets the server sends on one connection (with a request
    /// answered, so that tickets sent after the handshake have arrived).
    pub async fn tickets_per_connection(&self, addr: SocketAddr) -> usize {
        let store = Arc::new(CountingStore::default());
        let mut config = (*self.config()).clone();
        config.resumption = rustls::client::Resumption::store(store.clone());
        self.one_request(Arc::new(config), addr).await;
        store.tickets.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// One connection with `config`, one `GET /` on it, its answer read to the end (so that
    /// TLS 1.3 tickets, sent after the handshake, have arrived); the finished stream.
    async fn one_request(
        &self,
        config: Arc<ClientConfig>,
        addr: SocketAddr,
    ) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut stream = TlsConnector::from(config)
            .connect(self.server_name.clone(), tcp)
            .await
            .expect("TLS handshake");
        let host = self.server_name.to_str();
        let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
        stream
    }

    /// Complete a TLS handshake with `addr`.
    pub async fn handshake(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp(addr).await?;
        TlsConnector::from(self.config())
            .connect(self.server_name.clone(), tcp)
            .await
    }

    /// The server name this client asks for (SNI and Host).
    pub fn host(&self) -> String {
        self.server_name.to_str().into_owned()
    }

    /// Try to get anything out of `addr`: handshake, send a GET, read. With TLS 1.3 a refused
    /// client certificate is reported by an alert after the handshake, so reading is needed to
    /// see it.
    pub async fn probe(&self, addr: SocketAddr) -> Probe {
        let mut stream = match self.handshake(addr).await {
            Ok(s) => s,
            Err(e) => return classify(e),
        };
        let host = self.server_name.to_str();
        let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        if let Err(e) = stream.write_all(request.as_bytes()).await {
            return classify(e);
        }
        let mut buf = Vec::new();
        match stream.read_to_end(&mut buf).await {
            Ok(_) if !buf.is_empty() => Probe::Answered(buf),
            Ok(_) => Probe::Failed(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed without answer or alert",
            )),
            Err(e) if !buf.is_empty() => {
                let _ = e;
                Probe::Answered(buf)
            }
            Err(e) => classify(e),
        }
    }

    /// Open a connection for several requests.
    pub async fn connect(&self, addr: SocketAddr) -> Connection {
        self.try_connect(addr).await.expect("connection")
    }

    /// One GET on a fresh connection.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> TestResponse {
        self.connect(addr).await.get(path).await
    }
}

/// The serial number of a DER certificate, as its bytes.
fn serial_of(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).expect("certificate");
    cert.tbs_certificate.raw_serial().to_vec()
}

fn classify(e: std::io::Error) -> Probe {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Probe::Refused(tls.clone()),
        None => Probe::Failed(e),
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<ClientBody>),
    H2(hyper::client::conn::http2::SendRequest<ClientBody>),
}

/// An open connection to a server.
pub struct Connection {
    sender: Sender,
    host: String,
    http2: bool,
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("http2", &self.http2)
            .finish()
    }
}

impl Connection {
    /// Another handle on the same HTTP/2 connection, for concurrent requests (`None` on HTTP/1).
    pub fn try_clone(&self) -> Option<Connection> {
        match &self.sender {
            Sender::H2(s) => Some(Connection {
                sender: Sender::H2(s.clone()),
                host: self.host.clone(),
                http2: true,
                driver: None,
            }),
            Sender::H1(_) => None,
        }
    }

    /// A request builder with the right URI form and Host for this connection.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        if self.http2 {
            Request::builder()
                .method(method)
                .uri(format!("https://{}{}", self.host, path))
        } else {
            Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.host)
        }
    }

    /// Send a request, return the response with its body still streaming.
    pub async fn send(
        &mut self,
        req: Request<ClientBody>,
    ) -> hyper::Result<http::Response<Incoming>> {
        match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }

    /// GET `path` and read the whole response.
    pub async fn get(&mut self, path: &str) -> TestResponse {
        let req = self.request("GET", path).body(empty()).expect("request");
        self.fetch(req).await
    }

    /// Send `req` and read the whole response.
    pub async fn fetch(&mut self, req: Request<ClientBody>) -> TestResponse {
        self.try_fetch(req).await.expect("response")
    }

    /// Send `req` and read the whole response, or say what failed.
    pub async fn try_fetch(&mut self, req: Request<ClientBody>) -> hyper::Result<TestResponse> {
        let response = self.send(req).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(TestResponse {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// GET `path`, or say what failed.
    pub async fn try_get(&mut self, path: &str) -> hyper::Result<TestResponse> {
        let req = self.request("GET", path).body(empty()).expect("request");
        self.try_fetch(req).await
    }

    /// Wait until the server closes this connection.
    pub async fn closed(mut self) {
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
    }

    /// Wait until this connection can take a request; false if the server closed it (after a
    /// response with `Connection: close`, or a GOAWAY): a browser opens a new one then.
    pub async fn ready(&mut self) -> bool {
        match &mut self.sender {
            Sender::H1(s) => s.ready().await.is_ok(),
            Sender::H2(s) => s.ready().await.is_ok(),
        }
    }

    /// Whether the server has closed this connection (HTTP/1: the next request would fail).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// An empty request body.
pub fn empty() -> ClientBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// A client session store that counts the TLS 1.3 tickets it is given.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl Default for CountingStore {
    fn default() -> Self {
        CountingStore {
            inner: rustls::client::ClientSessionMemoryCache::new(16),
            tickets: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(server_name, value);
    }

    fn tls12_session(
        &self,
        server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(server_name)
    }
}
