//! `farmgate demo`: the farm it describes is the farm it runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use farmgate_testkit::client::{Probe, TlsClient};

use crate::cli::Running;
use crate::operations::plain_get;

/// What the banner tells the user.
struct Banner {
    ca: PathBuf,
    edge: SocketAddr,
    gate: SocketAddr,
    /// The edge's dashboard, then the gates'.
    dashboards: (SocketAddr, SocketAddr),
}

fn read_banner(process: &mut Running) -> Banner {
    let edge_line = process.wait_for("  edge      https://localhost:");
    let port: u16 = edge_line
        .split("https://localhost:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let gate_line = process.wait_for("  gate      https://");
    let gate = gate_line
        .split("https://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let curl = process.wait_for("curl --cacert");
    let ca = curl.split_whitespace().nth(2).unwrap();
    let watch = process.wait_for("Watch it in a browser:");
    let mut dashboards = watch.split("http://").skip(1).map(|rest| {
        rest.split('/')
            .next()
            .unwrap()
            .parse::<SocketAddr>()
            .unwrap()
    });
    let dashboards = (dashboards.next().unwrap(), dashboards.next().unwrap());
    process.wait_for("Press Ctrl-C to stop.");
    Banner {
        ca: PathBuf::from(ca),
        edge: SocketAddr::from(([127, 0, 0, 1], port)),
        gate: gate.trim_end_matches('/').parse().unwrap(),
        dashboards,
    }
}

#[tokio::test]
async fn demo_serves_the_farm_it_describes_and_stops_on_ctrl_c() {
    let mut process = Running::spawn(&["demo", "--port", "0", "--backends", "2"]);
    let banner = read_banner(&mut process);
    let browser = TlsClient::new(&banner.ca, "localhost");
    let first = browser.get(banner.edge, "/").await;
    let second = browser.get(banner.edge, "/").await;
    assert_eq!(first.status, 200);
    assert!(
        first.body.starts_with("hello from backend-1"),
        "{}",
        first.body
    );
    assert!(
        second.body.starts_with("hello from backend-2"),
        "{}",
        second.body
    );
    assert!(
        first
            .body
            .contains("verified the caller as: DNS=edge.demo.farm"),
        "{}",
        first.body
    );

    let probe = TlsClient::new(&banner.ca, "backend.demo.farm")
        .probe(banner.gate)
        .await;
    assert!(
        matches!(
            probe,
            Probe::Refused(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))
        ),
        "{probe:?}"
    );

    // The dashboards the banner names: the edge's lists the gate it sent to, the gates'
    // the refusal of the probe above.
    let (edge_admin, gates_admin) = banner.dashboards;
    let (status_line, page) = plain_get(edge_admin, "/").await;
    assert!(status_line.contains(" 200 "), "{status_line}");
    assert!(page.contains("<title>"), "{page}");
    let (_, status) = plain_get(edge_admin, "/status").await;
    assert!(status.contains(&banner.gate.to_string()), "{status}");
    let (_, metrics) = plain_get(gates_admin, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("reason=\"no_certificate\"") && !l.ends_with(" 0")),
        "{metrics}"
    );

    process.signal("INT");
    let status = process.wait();
    assert_eq!(status.code(), Some(0));
}
