//! `listener.tls.client_auth`: a gate's client-certificate policy.

use std::ops::Range;

use farmgate_identity::{AllowList, AllowRule};

use super::Builder;
use crate::raw::{RawClientAuth, S};
use crate::{ClientAuth, EkuPolicy, IpRange, Problem};

impl Builder<'_> {
    pub(super) fn client_auth(&mut self, raw: &S<RawClientAuth>) -> Option<ClientAuth> {
        const KEY: &str = "listener.tls.client_auth";
        let c = raw.get_ref();
        let trust = match &c.trust {
            Some(t) if !t.get_ref().is_empty() => self.trust(t, &format!("{KEY}.trust")),
            Some(t) => {
                self.invalid(
                    t.span(),
                    &format!("{KEY}.trust"),
                    "trust must name at least one CA file, \"mozilla\" or \"system\"".into(),
                );
                Vec::new()
            }
            None => {
                self.invalid(raw.span(), KEY, "missing required key `trust`: a gate must say which CAs issue its clients' certificates".into());
                Vec::new()
            }
        };
        let eku = match c.eku.as_ref().map(|e| (e, e.get_ref().as_str())) {
            None | Some((_, "client_auth")) => EkuPolicy::ClientAuth,
            Some((_, "client_or_server_auth")) => EkuPolicy::ClientOrServerAuth,
            Some((e, other)) => {
                self.invalid(e.span(), &format!("{KEY}.eku"), format!("unknown eku {other:?}; expected \"client_auth\" (default) or \"client_or_server_auth\" (WebPKI compatibility mode)"));
                EkuPolicy::ClientAuth
            }
        };
        let allow = self.allow(c, raw.span(), eku);
        let crl = c.crl.as_ref().map_or_else(Vec::new, |list| {
            if list.get_ref().is_empty() {
                self.invalid(
                    list.span(),
                    &format!("{KEY}.crl"),
                    "crl is empty; list the CRL files (PEM or DER) of the CAs in trust, or remove the key".into(),
                );
            }
            list.get_ref()
                .iter()
                .map(|p| self.file(p, &format!("{KEY}.crl")))
                .collect()
        });
        let sources = self.sources(c.sources.as_ref());
        Some(ClientAuth {
            trust,
            allow: allow?,
            eku,
            crl,
            sources,
            at: self.at(raw.span(), KEY),
        })
    }

    fn allow(
        &mut self,
        c: &RawClientAuth,
        table: Range<usize>,
        eku: EkuPolicy,
    ) -> Option<AllowList> {
        const KEY: &str = "listener.tls.client_auth.allow";
        let Some(list) = &c.allow else {
            self.invalid(table, "listener.tls.client_auth", "missing required key `allow`: list the identities allowed in, e.g. allow = [\"dns:edge.example.com\"]".into());
            return None;
        };
        if list.get_ref().is_empty() {
            self.invalid(
                list.span(),
                KEY,
                "allow is empty, so no client could ever get in; list the identities allowed in"
                    .into(),
            );
            return None;
        }
        let before = self.errors.len();
        let rules: Vec<AllowRule> = list
            .get_ref()
            .iter()
            .filter_map(|entry| match entry.get_ref().parse::<AllowRule>() {
                Ok(rule) => Some(rule),
                Err(source) => {
                    let text = entry.get_ref().clone();
                    self.problem(entry.span(), KEY, Problem::Identity { text, source });
                    None
                }
            })
            .collect();
        if self.errors.len() > before {
            return None;
        }
        if eku == EkuPolicy::ClientOrServerAuth {
            if !rules.iter().any(AllowRule::is_exact_name_or_pin) {
                self.invalid(list.span(), KEY, "eku = \"client_or_server_auth\" accepts public server certificates, so it needs at least one exact dns: or spki-sha256: entry; cn: and uri: entries cannot identify such a certificate".into());
            }
            for (rule, entry) in rules.iter().zip(list.get_ref()) {
                if rule.is_wildcard() {
                    self.invalid(entry.span(), KEY, format!("{:?}: eku = \"client_or_server_auth\" only accepts exact names, not wildcards", entry.get_ref()));
                }
            }
        }
        Some(AllowList::new(rules))
    }

    fn sources(&mut self, list: Option<&S<Vec<S<String>>>>) -> Vec<IpRange> {
        let Some(list) = list else { return Vec::new() };
        if list.get_ref().is_empty() {
            self.invalid(
                list.span(),
                "listener.tls.client_auth.sources",
                "sources is empty, which would refuse nobody; list the ranges to admit, or remove the key to admit every address".into(),
            );
        }
        list.get_ref()
            .iter()
            .filter_map(|r| {
                let range = IpRange::parse(r.get_ref().trim());
                if range.is_none() {
                    self.invalid(
                        r.span(),
                        "listener.tls.client_auth.sources",
                        format!("{:?} is not an address range; write e.g. \"10.0.0.0/24\" or \"192.0.2.7\"", r.get_ref()),
                    );
                }
                range
            })
            .collect()
    }
}
