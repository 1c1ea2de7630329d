//! What to mint: [`CertSpec`] for leaf certificates, [`CaSpec`] for CAs.

use std::net::IpAddr;

use ipnet::IpNet;
use time::{Duration, OffsetDateTime};

use crate::KeyPair;

/// How long a client certificate from [`CertSpec::client`] or [`CertSpec::spiffe`] lives.
const CLIENT_DAYS: i64 = 30;
/// How long a server certificate from [`CertSpec::server`] lives.
const SERVER_DAYS: i64 = 90;
/// How long a CA from [`CaSpec::new`] lives.
const CA_DAYS: i64 = 3650;
/// Validity starts this long before "now", so clocks a little behind still accept it.
const BACKDATE: Duration = Duration::hours(1);

/// An extended key usage (EKU) purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// `id-kp-serverAuth`: TLS server.
    ServerAuth,
    /// `id-kp-clientAuth`: TLS client (what a gate requires of an edge).
    ClientAuth,
}

/// A leaf certificate to issue. Start from [`client`](Self::client), [`server`](Self::server)
/// or [`spiffe`](Self::spiffe) and adjust with the builder methods or the fields.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Subject common name; `None` leaves it out, as newer public certificates do.
    pub common_name: Option<String>,
    /// Subject organization.
    pub organization: Option<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP address subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// URI subject alternative names (e.g. SPIFFE IDs).
    pub uris: Vec<String>,
    /// Extended key usages; empty leaves out the EKU extension (any purpose).
    pub usages: Vec<Usage>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The key to certify; `None` generates a fresh ECDSA P-256 key.
    pub key: Option<KeyPair>,
    /// Where relying parties fetch the issuer's CRL (the CRL distribution points extension);
    /// empty leaves the extension out.
    pub crl_urls: Vec<String>,
}

impl CertSpec {
    /// A client certificate for `name`: CN and SAN `name` (an IP SAN if `name` is an IP
    /// address), clientAuth, valid 30 days from an hour ago.
    pub fn client(name: &str) -> Self {
        Self::named(name, Usage::ClientAuth, CLIENT_DAYS)
    }

    /// A server certificate for `name`: CN and SAN `name` (an IP SAN if `name` is an IP
    /// address), serverAuth, valid 90 days from an hour ago.
    pub fn server(name: &str) -> Self {
        Self::named(name, Usage::ServerAuth, SERVER_DAYS)
    }

    /// A SPIFFE-style client certificate: URI SAN `uri`, no CN, clientAuth, valid 30 days from
    /// an hour ago.
    pub fn spiffe(uri: &str) -> Self {
        let mut spec = Self::empty(Usage::ClientAuth, CLIENT_DAYS);
        spec.uris.push(uri.to_owned());
        spec
    }

    /// Sets the validity period.
    pub fn valid(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Replaces the extended key usages; an empty list leaves out the extension.
    pub fn usages(mut self, usages: &[Usage]) -> Self {
        self.usages = usages.to_vec();
        self
    }

    /// Adds a DNS SAN.
    pub fn dns(mut self, name: &str) -> Self {
        self.dns_names.push(name.to_owned());
        self
    }

    /// Removes all DNS SANs (e.g. for a CN-only certificate).
    pub fn no_dns(mut self) -> Self {
        self.dns_names.clear();
        self
    }

    /// Adds an IP address SAN.
    pub fn ip(mut self, address: IpAddr) -> Self {
        self.ip_addresses.push(address);
        self
    }

    /// Adds a URI SAN.
    pub fn uri(mut self, uri: &str) -> Self {
        self.uris.push(uri.to_owned());
        self
    }

    /// Sets the subject common name.
    pub fn common_name(mut self, name: &str) -> Self {
        self.common_name = Some(name.to_owned());
        self
    }

    /// Leaves the subject common name out.
    pub fn no_common_name(mut self) -> Self {
        self.common_name = None;
        self
    }

    /// Sets the subject organization.
    pub fn organization(mut self, name: &str) -> Self {
        self.organization = Some(name.to_owned());
        self
    }

    /// Certifies this key instead of a fresh one (a renewal that keeps the key, and its pin).
    pub fn with_key(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }

    /// Adds a CRL distribution point: the URL relying parties fetch the issuer's CRL from.
    pub fn crl_url(mut self, url: &str) -> Self {
        self.crl_urls.push(url.to_owned());
        self
    }

    /// A short description for error messages: the CN, else the first SAN.
    pub(crate) fn describe(&self) -> String {
        let first_san = self.dns_names.first().or(self.uris.first()).cloned();
        let first_ip = self.ip_addresses.first().map(IpAddr::to_string);
        self.common_name
            .clone()
            .or(first_san)
            .or(first_ip)
            .unwrap_or_else(|| "(no name)".to_owned())
    }

    fn named(name: &str, usage: Usage, days: i64) -> Self {
        let mut spec = Self::empty(usage, days).common_name(name);
        match name.parse::<IpAddr>() {
            Ok(ip) => spec.ip_addresses.push(ip),
            Err(_) => spec.dns_names.push(name.to_owned()),
        }
        spec
    }

    fn empty(usage: Usage, days: i64) -> Self {
        let not_before = OffsetDateTime::now_utc() - BACKDATE;
        Self {
            common_name: None,
            organization: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            usages: vec![usage],
            not_before,
            not_after: not_before + Duration::days(days),
            key: None,
            crl_urls: Vec::new(),
        }
    }
}

/// A CA certificate to create, as a root or an intermediate.
#[derive(Debug, Clone)]
pub struct CaSpec {
    /// Subject common name.
    pub name: String,
    /// How many intermediate CAs may follow this one (basicConstraints pathLenConstraint);
    /// `None` for no limit.
    pub path_len: Option<u8>,
    /// DNS name constraints: names (and their subdomains) that certificates below may hold.
    /// Empty (with `permitted_ips`) leaves out the name constraints extension.
    pub permitted_dns: Vec<String>,
    /// IP address name constraints: the ranges IP address SANs below may fall in. Once one is
    /// listed, a certificate below with an IP SAN outside every range is refused.
    pub permitted_ips: Vec<IpNet>,
    /// URI name constraints (RFC 5280 4.2.1.10): the hosts URI SANs below may name, e.g.
    /// `farm.internal` (a SPIFFE trust domain) or `.farm.internal` (any host below it).
    pub permitted_uri_hosts: Vec<String>,
    /// Extended key usages on the CA certificate itself, which constrain every certificate
    /// below it in verifiers such as webpki and OpenSSL. Empty leaves out the extension.
    pub usages: Vec<Usage>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The CA's key; `None` generates a fresh ECDSA P-256 key.
    pub key: Option<KeyPair>,
}

impl CaSpec {
    /// A CA named `name`: no path length limit, no name constraints, no EKU, valid ten years
    /// from an hour ago.
    pub fn new(name: &str) -> Self {
        let not_before = OffsetDateTime::now_utc() - BACKDATE;
        Self {
            name: name.to_owned(),
            path_len: None,
            permitted_dns: Vec::new(),
            permitted_ips: Vec::new(),
            permitted_uri_hosts: Vec::new(),
            usages: Vec::new(),
            not_before,
            not_after: not_before + Duration::days(CA_DAYS),
            key: None,
        }
    }

    /// Limits how many intermediate CAs may follow this one.
    pub fn path_len(mut self, path_len: u8) -> Self {
        self.path_len = Some(path_len);
        self
    }

    /// Adds a permitted DNS subtree to the name constraints.
    pub fn permit_dns(mut self, name: &str) -> Self {
        self.permitted_dns.push(name.to_owned());
        self
    }

    /// Adds a permitted IP address range to the name constraints.
    pub fn permit_ip(mut self, range: IpNet) -> Self {
        self.permitted_ips.push(range);
        self
    }

    /// Adds a permitted URI host to the name constraints (`farm.internal` for the SPIFFE IDs
    /// of trust domain `farm.internal`).
    pub fn permit_uri_host(mut self, host: &str) -> Self {
        self.permitted_uri_hosts.push(host.to_owned());
        self
    }

    /// Replaces the CA certificate's extended key usages.
    pub fn usages(mut self, usages: &[Usage]) -> Self {
        self.usages = usages.to_vec();
        self
    }

    /// Sets the validity period.
    pub fn valid(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Uses this key instead of a fresh one.
    pub fn with_key(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn client_names_cn_and_dns_san() {
        let spec = CertSpec::client("edge.farm.test");
        assert_eq!(spec.common_name.as_deref(), Some("edge.farm.test"));
        assert_eq!(spec.dns_names, ["edge.farm.test"]);
        assert_eq!(spec.usages, [Usage::ClientAuth]);
        assert_eq!(spec.not_after - spec.not_before, Duration::days(30));
        assert!(spec.not_before < OffsetDateTime::now_utc());
    }

    #[test]
    fn server_for_an_ip_address_gets_an_ip_san() {
        let spec = CertSpec::server("127.0.0.1");
        assert!(spec.dns_names.is_empty());
        assert_eq!(spec.ip_addresses, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(spec.usages, [Usage::ServerAuth]);
        assert_eq!(spec.not_after - spec.not_before, Duration::days(90));
    }

    #[test]
    fn spiffe_has_a_uri_and_no_cn() {
        let spec = CertSpec::spiffe("spiffe://farm/edge");
        assert_eq!(spec.common_name, None);
        assert_eq!(spec.uris, ["spiffe://farm/edge"]);
        assert_eq!(spec.describe(), "spiffe://farm/edge");
    }

    #[test]
    fn builders_adjust_the_spec() {
        let spec = CertSpec::client("a")
            .no_common_name()
            .no_dns()
            .dns("b")
            .usages(&[]);
        assert_eq!(spec.common_name, None);
        assert_eq!(spec.dns_names, ["b"]);
        assert!(spec.usages.is_empty());
        let ca = CaSpec::new("ca").path_len(0).permit_dns("farm.test");
        assert_eq!(ca.path_len, Some(0));
        assert_eq!(ca.permitted_dns, ["farm.test"]);
        assert!(ca.usages.is_empty());
    }
}
