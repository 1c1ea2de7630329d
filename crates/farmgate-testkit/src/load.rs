//! A bounded load inside a test: a few concurrent keep-alive clients and one that opens a new
//! connection per request, until told to stop; every failure is recorded.
#![allow(clippy::expect_used)] // test support: a panicking load task is a test failure

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::client::TlsClient;
use tokio::task::JoinHandle;

/// What the load saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests answered 200.
    pub ok: u64,
    /// What went wrong with the others.
    pub failed: Vec<String>,
    /// Connections the server closed between two requests (not failures).
    pub reconnects: u64,
}

/// A running load.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Report>>,
}

impl Load {
    /// `keep_alive` clients on persistent connections plus one connecting per request, all
    /// sending GET `path` to `addr`.
    pub fn start(client: &TlsClient, addr: SocketAddr, keep_alive: usize, path: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..=keep_alive {
            let client = client.clone();
            let stop = stop.clone();
            let path = path.to_owned();
            let fresh_each_time = i == keep_alive;
            tasks.push(tokio::spawn(async move {
                let mut report = Report::default();
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        match client.try_connect(addr).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                report.failed.push(format!("connect: {e}"));
                                continue;
                            }
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    if !c.ready().await {
                        // Closed by the server between requests, as it may: reconnect.
                        report.reconnects += 1;
                        conn = None;
                        continue;
                    }
                    match c.try_get(&path).await {
                        Ok(r) if r.status == 200 => report.ok += 1,
                        Ok(r) => report
                            .failed
                            .push(format!("{}: {}", r.status, r.body.trim())),
                        Err(e) => {
                            report.failed.push(format!("request: {e} ({e:?})"));
                            conn = None;
                        }
                    }
                    if fresh_each_time {
                        conn = None;
                    }
                }
                report
            }));
        }
        Load { stop, tasks }
    }

    /// Stop and collect.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Report::default();
        for task in self.tasks {
            let r = task.await.expect("load task");
            total.ok += r.ok;
            total.failed.extend(r.failed);
            total.reconnects += r.reconnects;
        }
        total
    }
}

/// Assert the load lost nothing and did something.
#[track_caller]
pub fn assert_no_failures(report: &Report) {
    assert!(
        report.failed.is_empty(),
        "{} failed requests: {:#?}",
        report.failed.len(),
        &report.failed[..report.failed.len().min(10)]
    );
    assert!(report.ok > 0, "the load sent no request");
}
