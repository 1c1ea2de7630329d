//! URI name constraints on trust anchors, which rustls-webpki does not evaluate: it refuses
//! every URI name below a CA that constrains URIs, even one inside the constraint. A trust
//! anchor's URI subtrees are therefore taken out of the constraints webpki sees (it still
//! enforces the DNS and IP ones) and checked here, on every path webpki accepts
//! (RFC 5280 4.2.1.10: a URI constraint names a host, or with a leading period the hosts of a
//! domain, and applies to the host of each URI name). An intermediate's URI constraints stay
//! webpki's: it fails closed on them.
//!
//! DER is read and written with yasna (as rcgen does), never by hand.

use yasna::{ASN1Result, BERReaderSeq, Tag};

/// The URI subtrees of one anchor's name constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UriConstraints {
    permitted: Vec<String>,
    excluded: Vec<String>,
}

/// An anchor's name constraints (the content of the NameConstraints SEQUENCE, as a webpki
/// `TrustAnchor` holds it), split: what webpki should still see (`None`: nothing), and the URI
/// subtrees taken out. `None` when the constraints hold no URI subtree, or cannot be read (then
/// webpki gets them unchanged and decides).
pub(crate) fn split(content: &[u8]) -> Option<(Option<Vec<u8>>, UriConstraints)> {
    let wrapped = yasna::construct_der(|w| w.write_sequence(|w| w.next().write_der(content)));
    let (permitted, excluded) = yasna::parse_der(&wrapped, |r| {
        r.read_sequence(|r| {
            let permitted = subtrees(r, 0)?;
            let excluded = subtrees(r, 1)?;
            Ok((permitted, excluded))
        })
    })
    .ok()?;
    let (keep_permitted, permitted_uris) = partition(permitted);
    let (keep_excluded, excluded_uris) = partition(excluded);
    if permitted_uris.is_empty() && excluded_uris.is_empty() {
        return None;
    }
    let mut rest = Vec::new();
    for (tag, kept) in [(0, &keep_permitted), (1, &keep_excluded)] {
        if !kept.is_empty() {
            rest.extend(yasna::construct_der(|w| {
                w.write_tagged_implicit(Tag::context(tag), |w| {
                    w.write_sequence(|w| {
                        for subtree in kept.iter() {
                            w.next().write_der(subtree);
                        }
                    });
                });
            }));
        }
    }
    let uris = UriConstraints {
        permitted: permitted_uris,
        excluded: excluded_uris,
    };
    Some(((!rest.is_empty()).then_some(rest), uris))
}

impl UriConstraints {
    /// Whether URI name `uri` is allowed: its host inside a permitted subtree (when there are
    /// any) and inside no excluded one.
    pub(crate) fn allows(&self, uri: &str) -> bool {
        let Some(host) = host(uri) else {
            // No host to match: outside every permitted subtree.
            return self.permitted.is_empty();
        };
        (self.permitted.is_empty() || self.permitted.iter().any(|base| matches(&host, base)))
            && !self.excluded.iter().any(|base| matches(&host, base))
    }
}

/// The GeneralSubtrees tagged `[tag]`, each as its DER, or none.
fn subtrees(r: &mut BERReaderSeq<'_, '_>, tag: u64) -> ASN1Result<Vec<Vec<u8>>> {
    Ok(r.read_optional(|r| {
        r.read_tagged_implicit(Tag::context(tag), |r| {
            r.collect_sequence_of(|r| r.read_der())
        })
    })?
    .unwrap_or_default())
}

/// The subtrees whose base is not a URI (kept as DER), and the URI bases.
fn partition(subtrees: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut kept = Vec::new();
    let mut uris = Vec::new();
    for subtree in subtrees {
        match uri_base(&subtree) {
            Some(uri) => uris.push(uri),
            None => kept.push(subtree),
        }
    }
    (kept, uris)
}

/// The base of a GeneralSubtree, if it is a uniformResourceIdentifier `[6] IA5String`.
fn uri_base(subtree: &[u8]) -> Option<String> {
    yasna::parse_der(subtree, |r| {
        r.read_sequence(|r| {
            let base = r.next().read_der()?;
            // minimum and maximum, which RFC 5280 forbids writing; read past them.
            let _ = r.read_optional(|r| r.read_der())?;
            let _ = r.read_optional(|r| r.read_der())?;
            Ok(base)
        })
    })
    .ok()
    .and_then(|base| {
        yasna::parse_der(&base, |r| {
            r.read_tagged_implicit(Tag::context(6), |r| r.read_ia5_string())
        })
        .ok()
    })
    .map(|base| base.to_ascii_lowercase())
}

/// The host of `scheme://[userinfo@]host[:port]/...`, lower-case.
fn host(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

/// RFC 5280: `.example.com` matches any host below example.com; `example.com` that host only.
fn matches(host: &str, base: &str) -> bool {
    match base.strip_prefix('.') {
        Some(domain) => host.len() > domain.len() + 1 && host.ends_with(base),
        None => host == base,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The content of a NameConstraints extension from farmgate-pki.
    fn content(spec: &farmgate_pki::CaSpec) -> Vec<u8> {
        let ca = farmgate_pki::Authority::new_root(spec).unwrap();
        let der = rustls_pki_types::CertificateDer::from(ca.cert_der().to_vec());
        let anchor = webpki::anchor_from_trusted_cert(&der).unwrap();
        anchor.name_constraints.unwrap().as_ref().to_vec()
    }

    #[test]
    fn uri_subtrees_are_taken_out_and_the_rest_kept() {
        let both = farmgate_pki::CaSpec::new("a")
            .permit_dns("farm.internal")
            .permit_uri_host("farm.internal");
        let (rest, uris) = split(&content(&both)).unwrap();
        assert_eq!(uris.permitted, ["farm.internal"]);
        let dns_only = content(&farmgate_pki::CaSpec::new("b").permit_dns("farm.internal"));
        assert_eq!(
            rest.unwrap(),
            dns_only,
            "the DNS subtree, as rcgen writes it alone"
        );
        assert_eq!(split(&dns_only), None, "nothing to take out");

        let uri_only = farmgate_pki::CaSpec::new("c").permit_uri_host("farm.internal");
        let (rest, _) = split(&content(&uri_only)).unwrap();
        assert_eq!(rest, None);
        assert_eq!(split(b"\x01garbage"), None);
    }

    #[test]
    fn uris_match_by_host() {
        let exact = UriConstraints {
            permitted: vec!["farm.internal".into()],
            excluded: Vec::new(),
        };
        assert!(exact.allows("spiffe://farm.internal/edge"));
        assert!(exact.allows("spiffe://FARM.internal./edge"));
        assert!(!exact.allows("spiffe://sub.farm.internal/edge"));
        assert!(!exact.allows("spiffe://evil.internal/edge"));
        assert!(!exact.allows("urn:uuid:1"));
        let below = UriConstraints {
            permitted: vec![".farm.internal".into()],
            excluded: vec!["bad.farm.internal".into()],
        };
        assert!(below.allows("https://a.farm.internal:8443/x"));
        assert!(!below.allows("https://farm.internal/"));
        assert!(!below.allows("https://bad.farm.internal/"));
    }
}
