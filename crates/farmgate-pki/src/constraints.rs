//! The name constraints extension (RFC 5280 4.2.1.10) of a CA that constrains URI names, which
//! rcgen cannot write: permitted DNS names, IP ranges and URI hosts, critical, in DER written
//! with yasna (rcgen's own DER writer).

use rcgen::CustomExtension;
use yasna::Tag;

use crate::CaSpec;

/// id-ce-nameConstraints.
const OID: [u64; 4] = [2, 5, 29, 30];

/// The critical name constraints extension permitting `spec`'s DNS names, IP ranges and URI
/// hosts.
pub(crate) fn name_constraints(spec: &CaSpec) -> CustomExtension {
    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // permittedSubtrees [0] GeneralSubtrees
            w.next().write_tagged_implicit(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    for name in &spec.permitted_dns {
                        // GeneralSubtree { base: dNSName [2] IA5String }
                        w.next().write_sequence(|w| {
                            w.next().write_tagged_implicit(Tag::context(2), |w| {
                                w.write_ia5_string(name)
                            });
                        });
                    }
                    for range in &spec.permitted_ips {
                        // iPAddress [7] OCTET STRING: the address, then the mask
                        let mut bytes = octets(range.network());
                        bytes.extend(octets(range.netmask()));
                        w.next().write_sequence(|w| {
                            w.next()
                                .write_tagged_implicit(Tag::context(7), |w| w.write_bytes(&bytes));
                        });
                    }
                    for host in &spec.permitted_uri_hosts {
                        // uniformResourceIdentifier [6] IA5String: a host, or .domain
                        w.next().write_sequence(|w| {
                            w.next().write_tagged_implicit(Tag::context(6), |w| {
                                w.write_ia5_string(host)
                            });
                        });
                    }
                });
            });
        });
    });
    let mut extension = CustomExtension::from_oid_content(&OID, der);
    extension.set_criticality(true);
    extension
}

fn octets(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer as _;

    use crate::{Authority, CaSpec};

    #[test]
    fn every_kind_of_subtree_is_written_and_reads_back() {
        let spec = CaSpec::new("farm CA")
            .permit_dns("farm.internal")
            .permit_ip("10.0.0.0/8".parse().unwrap())
            .permit_uri_host("farm.internal");
        let ca = Authority::new_root(&spec).unwrap();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(ca.cert_der()).unwrap();
        let nc = cert.name_constraints().unwrap().unwrap();
        assert!(nc.critical);
        let bases: Vec<String> = nc
            .value
            .permitted_subtrees
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| match &s.base {
                GeneralName::DNSName(n) => format!("dns:{n}"),
                GeneralName::URI(u) => format!("uri:{u}"),
                GeneralName::IPAddress(b) => format!("ip:{b:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            bases,
            [
                "dns:farm.internal",
                "ip:[10, 0, 0, 0, 255, 0, 0, 0]",
                "uri:farm.internal"
            ]
        );
        assert!(nc.value.excluded_subtrees.is_none());
    }
}
