//! Network values: CIDR ranges for `sources`, backend addresses.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use farmgate_identity::DnsName;
use ipnet::IpNet;

/// An address range such as `10.0.0.0/24` or `::1/128` (an [`IpNet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange(IpNet);

impl IpRange {
    /// Parse `ADDR/PREFIX` or a bare address (a range of one).
    pub fn parse(text: &str) -> Option<IpRange> {
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .ok()?;
        Some(IpRange(net))
    }

    /// Whether `ip` lies in this range. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        self.0.contains(&ip)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a backend listens: an IP socket address, or a host name and port resolved when connecting.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// `10.0.0.11:8443`, `[::1]:8443`
    Socket(SocketAddr),
    /// `app.internal:8080`
    Name {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Address {
    /// Parse `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (HOST a [`DnsName`], not a wildcard).
    pub fn parse(text: &str) -> Option<Address> {
        if let Ok(sa) = text.parse::<SocketAddr>() {
            return Some(Address::Socket(sa));
        }
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse::<u16>().ok()?;
        let host = DnsName::parse(host).ok().filter(|h| !h.is_wildcard())?;
        Some(Address::Name {
            host: host.into(),
            port,
        })
    }

    /// The host part: the IP address or the name.
    pub fn host(&self) -> String {
        match self {
            Address::Socket(sa) => sa.ip().to_string(),
            Address::Name { host, .. } => host.clone(),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Address::Socket(sa) => sa.port(),
            Address::Name { port, .. } => *port,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Socket(sa) => write!(f, "{sa}"),
            Address::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()))
    }

    #[test]
    fn ranges() {
        let r = IpRange::parse("10.0.0.0/24");
        assert!(r.is_some_and(|r| r.contains(ip("10.0.0.77"))));
        assert!(r.is_some_and(|r| !r.contains(ip("10.0.1.1"))));
        assert!(r.is_some_and(|r| r.contains(ip("::ffff:10.0.0.5"))));
        assert!(IpRange::parse("0.0.0.0/0").is_some_and(|r| r.contains(ip("192.0.2.1"))));
        assert!(IpRange::parse("::1").is_some_and(|r| r.contains(ip("::1"))));
        assert!(IpRange::parse("10.0.0.0/33").is_none());
        assert!(IpRange::parse("ten/8").is_none());
        assert!(IpRange::parse("::/0").is_some_and(|r| r.contains(ip("2001:db8::1"))));
        assert!(IpRange::parse("2001:db8::/32").is_some_and(|r| !r.contains(ip("10.0.0.1"))));
    }

    #[test]
    fn ranges_print_as_written() {
        for (text, shown) in [
            ("10.0.0.0/24", "10.0.0.0/24"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("::1", "::1/128"),
        ] {
            assert_eq!(
                IpRange::parse(text).map(|r| r.to_string()).as_deref(),
                Some(shown)
            );
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("10.0.0.1:8443")
                .map(|a| a.to_string())
                .as_deref(),
            Some("10.0.0.1:8443")
        );
        assert_eq!(
            Address::parse("App.Internal:80")
                .map(|a| a.to_string())
                .as_deref(),
            Some("app.internal:80")
        );
        assert!(Address::parse("10.0.0.1").is_none());
        assert!(Address::parse("host:99999").is_none());
        assert!(Address::parse("bad_host:80").is_none());
        assert!(Address::parse("*.farm.internal:80").is_none());
        assert!(Address::parse(":80").is_none());
    }
}
