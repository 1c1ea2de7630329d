//! Real TLS handshakes over loopback at a chosen time: a server (a backend presenting a chain,
//! or a gate with farmgate's client verifier) and a client (an edge with farmgate's upstream
//! verifier, presenting a client certificate when it has one).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// A clock stopped at one moment, for both ends.
#[derive(Debug)]
struct FixedTime(UnixTime);

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// A server presenting `chain` (leaf first) signed by `key`, optionally verifying clients with
/// `clients`. `Err` when rustls cannot use the key.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
    time: UnixTime,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let builder =
        ServerConfig::builder_with_details(farmgate_tls::provider(), Arc::new(FixedTime(time)))
            .with_safe_default_protocol_versions()?;
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}

/// A client verifying servers with `verifier` (as an upstream does), presenting `identity` if
/// given.
pub fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    time: UnixTime,
) -> Arc<ClientConfig> {
    let builder =
        ClientConfig::builder_with_details(farmgate_tls::provider(), Arc::new(FixedTime(time)))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier);
    Arc::new(match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// How one handshake ended, on each side.
#[derive(Debug)]
pub struct Outcome {
    /// The client's verdict (it judged the server's chain).
    pub client: Result<(), String>,
    /// The server's verdict (a gate judged the client's chain).
    pub server: Result<(), String>,
}

/// One handshake over loopback. The client reads the server's answer to its close_notify, so a
/// TLS 1.3 server's verdict on the client certificate arrives before either side returns. The
/// read timeouts only bound a peer that hangs (a failure either way); they synchronise nothing.
pub fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let backend = std::thread::spawn(move || -> Result<(), String> {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut conn = ServerConnection::new(server).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        conn.send_close_notify();
        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        let _ = stream.read(&mut [0u8; 64]);
        let _ = stream.flush();
        Ok(())
    });
    let mut tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut conn = ClientConnection::new(client, name).unwrap();
    let mut result = Ok(());
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            result = Err(e.to_string());
            break;
        }
    }
    if result.is_ok() {
        conn.send_close_notify();
        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        let _ = stream.flush();
        // The server's close_notify, or its alert refusing our certificate.
        if let Err(e) = stream.read(&mut [0u8; 64])
            && e.kind() != std::io::ErrorKind::UnexpectedEof
        {
            result = Err(e.to_string());
        }
    }
    drop(tcp);
    let server = backend.join().unwrap();
    Outcome {
        client: result,
        server,
    }
}
