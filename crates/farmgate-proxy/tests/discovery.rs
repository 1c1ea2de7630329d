//! DNS discovery without a DNS server to answer: an upstream that never resolved has no server,
//! answers 503 with a reason that says so, and `/status` tells why. (Discovery against a real
//! DNS server is in the binary's interop tests, `interop_discovery`.)

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use farmgate_testkit::client::TlsClient;
use farmgate_testkit::pki::TestPki;

use crate::farm::{self, SITE};

#[tokio::test]
async fn an_upstream_dns_never_answered_for_answers_503_not_resolved() {
    let pki = TestPki::new();
    // A UDP port nothing answers on: the lookup fails (refused, or no answer in time).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = silent.local_addr().unwrap();
    drop(silent);
    let text = format!(
        r#"{listener}
[upstream.farm]
discover = {{ dns = "gates.farm.test", port = 8443, resolver = "{resolver}" }}
"#,
        listener = farm::edge_listener(&pki.server(SITE)),
    );
    let edge = farm::start(pki.dir(), "edge", &text).await;
    let addr = edge.local_addr("public").unwrap();

    let browser = TlsClient::new(&pki.ca_file(), SITE);
    let response = browser.get(addr, "/").await;
    assert_eq!(response.status, 503, "{}", response.body);

    let deadline = Instant::now() + Duration::from_secs(60);
    let discovery = loop {
        let status = edge.status();
        let discovery = status.upstreams[0].discovery.clone().unwrap();
        if discovery.failing > 0 {
            break discovery;
        }
        assert!(
            Instant::now() < deadline,
            "no failed lookup shown: {discovery:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!discovery.resolved);
    assert_eq!(discovery.last_answer_at, None);
    assert_eq!(discovery.resolver, resolver.to_string());
    assert_eq!(discovery.lookup, "dns gates.farm.test port 8443");
    let failure = discovery.last_failure.unwrap();
    assert!(
        ["timeout", "error"].contains(&failure.reason.as_str()),
        "{failure:?}"
    );
    assert!(edge.status().upstreams[0].servers.is_empty());
    let metrics = edge.metrics().encode();
    assert!(
        metrics.contains("farmgate_discovery_failures_total{upstream=\"farm\",reason=\"timeout\"}")
            || metrics
                .contains("farmgate_discovery_failures_total{upstream=\"farm\",reason=\"error\"}"),
        "{metrics}"
    );
}
