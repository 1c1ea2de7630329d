//! The bench's WebSocket tool: an echo origin to put behind the gates, and a load client that
//! measures echoed messages per second and their round-trip latency through a chain.
//!
//! ```text
//! wsbench echo --listen 127.0.0.1:PORT
//! wsbench load --url wss://127.0.0.1:PORT/ws --ca ca.pem --connections 64 --size 32 --duration 10
//! ```
//!
//! `load` opens every connection first, then on each sends one binary message, waits for its
//! echo, and sends the next, until the duration is over. It prints one line (bench/table.py
//! reads it) and exits 1 if a connection failed or an echo went wrong.

#![forbid(unsafe_code)]

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Bytes, Message};

type BoxError = Box<dyn Error + Send + Sync>;

/// How long a connection may take to open, and an echo to come back, before it counts as failed.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "WebSocket echo origin and load client for bench/run.sh")]
struct Cli {
    /// Runtime worker threads (1: a single-threaded runtime).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Accept plain WebSocket connections on any path and send every data message back.
    Echo {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Echo messages over many connections for a while; print messages/s and latency.
    Load(Load),
}

#[derive(clap::Args)]
struct Load {
    /// ws://HOST:PORT/PATH or wss://HOST:PORT/PATH.
    #[arg(long)]
    url: String,
    /// PEM file of the CA that the wss:// server's certificate must chain to.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Seconds of echoing, after every connection is open.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match cli.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let result = runtime.map_err(BoxError::from).and_then(|rt| {
        rt.block_on(async {
            match cli.mode {
                Mode::Echo { listen } => echo(listen).await,
                Mode::Load(load) => run_load(load).await,
            }
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsbench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- echo origin

async fn echo(listen: SocketAddr) -> Result<(), BoxError> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = echo_one(stream).await {
                eprintln!("wsbench echo: {peer}: {e}");
            }
        });
    }
}

async fn echo_one(stream: TcpStream) -> Result<(), BoxError> {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    // tungstenite answers pings and close frames by itself; data goes back as it came.
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_binary() || message.is_text() {
            ws.send(message).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- load client

/// What one connection did while the load ran.
#[derive(Default)]
struct Outcome {
    /// Round trips, in microseconds.
    rtts: Vec<u32>,
    error: Option<BoxError>,
}

async fn run_load(load: Load) -> Result<(), BoxError> {
    let duration = Duration::try_from_secs_f64(load.duration)?;
    let target = Target::new(&load)?;
    let payload: Bytes = (0..load.size).map(|i| (i % 251) as u8).collect();

    // Open every connection before the clock starts, all at once as a crowd of clients would.
    let opening = (0..load.connections).map(|_| timeout(PATIENCE, target.connect()));
    let mut failed = 0;
    let mut first_error: Option<BoxError> = None;
    let mut open = Vec::new();
    for result in futures_util::future::join_all(opening).await {
        match result.map_err(BoxError::from).and_then(|r| r) {
            Ok(ws) => open.push(ws),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }

    let started = Instant::now();
    let deadline = started
        .checked_add(duration)
        .ok_or("--duration is too long")?;
    let tasks: Vec<_> = open
        .into_iter()
        .map(|ws| tokio::spawn(echo_until(ws, payload.clone(), deadline)))
        .collect();
    let mut rtts = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let outcome = task.await.unwrap_or_else(|e| Outcome {
            rtts: Vec::new(),
            error: Some(e.into()),
        });
        rtts.extend(outcome.rtts);
        if let Some(e) = outcome.error {
            errors += 1;
            first_error.get_or_insert(e);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();

    rtts.sort_unstable();
    let percentile = |q: f64| {
        let i = ((q * rtts.len() as f64) as usize).min(rtts.len().saturating_sub(1));
        rtts.get(i).map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    println!(
        "wsbench: {} connections ({failed} failed), {}-byte messages, {elapsed:.2} s: {} messages, \
         {:.1} messages/s, p50 {:.3} ms, p99 {:.3} ms, {errors} errors",
        load.connections,
        load.size,
        rtts.len(),
        rtts.len() as f64 / elapsed,
        percentile(0.50),
        percentile(0.99),
    );
    match first_error {
        Some(e) => Err(format!("{} connection(s) failed; the first: {e}", failed + errors).into()),
        None if rtts.is_empty() => Err("no message came back".into()),
        None => Ok(()),
    }
}

/// Where the load goes, and how to get there.
struct Target {
    url: String,
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Target {
    fn new(load: &Load) -> Result<Target, BoxError> {
        let request = load.url.as_str().into_client_request()?;
        let uri = request.uri();
        let host = uri.host().ok_or("the URL has no host")?.to_owned();
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => return Err("the URL must start with ws:// or wss://".into()),
        };
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure {
            let ca = load.ca.as_ref().ok_or("wss:// needs --ca")?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)? {
                roots.add(cert?)?;
            }
            let mut config = ClientConfig::builder_with_provider(Arc::new(
                crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Target {
            url: load.url.clone(),
            addr: format!("{host}:{port}"),
            tls,
        })
    }

    async fn connect(&self) -> Result<WebSocketStream<Box<dyn Io>>, BoxError> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
            None => Box::new(tcp),
        };
        let request = self.url.as_str().into_client_request()?;
        Ok(tokio_tungstenite::client_async(request, stream).await?.0)
    }
}

/// A connection to the target, over TLS or not.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Send `payload`, wait for it to come back, again, until `deadline`; then close.
async fn echo_until(
    mut ws: WebSocketStream<Box<dyn Io>>,
    payload: Bytes,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    while Instant::now() < deadline {
        let sent = Instant::now();
        match timeout(PATIENCE, round_trip(&mut ws, &payload)).await {
            Ok(Ok(())) => {
                let us = sent.elapsed().as_micros();
                outcome.rtts.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(Err(e)) => {
                outcome.error = Some(e);
                return outcome;
            }
            Err(_) => {
                outcome.error = Some(format!("no echo within {PATIENCE:?}").into());
                return outcome;
            }
        }
    }
    // A polite close; the figures are taken whatever the answer.
    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
    outcome
}

async fn round_trip(
    ws: &mut WebSocketStream<Box<dyn Io>>,
    payload: &Bytes,
) -> Result<(), BoxError> {
    ws.send(Message::Binary(payload.clone())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(echoed))) if echoed == *payload => return Ok(()),
            Some(Ok(Message::Binary(_) | Message::Text(_))) => {
                return Err("the echo differs from the message sent".into());
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("the server closed the connection ({frame:?})").into());
            }
            Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the connection ended".into()),
        }
    }
}
