//! A route's header rules (`request_headers`, `response_headers`): headers to set and headers
//! to remove, parsed once when the configuration is read.

use http::{HeaderName, HeaderValue};

/// Headers a route sets and removes on the requests it forwards or the responses it returns.
/// Names and values are checked when the configuration loads: what is here is sendable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Each header replaces any of the same name, in the order written.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed, every value of each.
    pub remove: Vec<HeaderName>,
}

impl HeaderRules {
    /// Whether the rules change nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// Why farmgate keeps a header to itself: a rule may neither set nor remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managed {
    /// The identity a gate verified (`x-forwarded-client-cert`, `client-cert`,
    /// `client-cert-chain`): only the gate writes it.
    Identity,
    /// A hop-by-hop header (RFC 9110 §7.6.1): it describes one connection.
    HopByHop,
    /// A header that frames the message or names its target (`content-length`, `host`):
    /// changing it could make two parsers read the message differently.
    Framing,
    /// `x-forwarded-*`: set by farmgate from what it saw.
    Forwarded,
}

impl Managed {
    /// Whether farmgate manages `name` (lower-case), and why.
    pub fn of(name: &str) -> Option<Managed> {
        match name {
            "x-forwarded-client-cert" | "client-cert" | "client-cert-chain" => {
                Some(Managed::Identity)
            }
            "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization" => Some(Managed::HopByHop),
            "content-length" | "host" => Some(Managed::Framing),
            "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" => {
                Some(Managed::Forwarded)
            }
            _ => None,
        }
    }

    /// Why, in words.
    pub fn why(self) -> &'static str {
        match self {
            Managed::Identity => {
                "it carries the client identity a gate verified, which only the gate writes"
            }
            Managed::HopByHop => "it is a hop-by-hop header, which describes one connection",
            Managed::Framing => {
                "it frames the message or names its target, and changing it could desynchronise \
                 a backend"
            }
            Managed::Forwarded => "farmgate sets it from what it saw on the connection",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_headers_are_named() {
        assert_eq!(
            Managed::of("x-forwarded-client-cert"),
            Some(Managed::Identity)
        );
        assert_eq!(Managed::of("transfer-encoding"), Some(Managed::HopByHop));
        assert_eq!(Managed::of("content-length"), Some(Managed::Framing));
        assert_eq!(Managed::of("strict-transport-security"), None);
        assert!(HeaderRules::default().is_empty());
    }
}
