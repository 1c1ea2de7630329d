//! `listener.tls.client_auth`: a gate's client-certificate policy.

use std::ops::Range;

use farmgate_identity::{AllowList, AllowRule};

use super::Builder;
use crate::raw::{RawClientAuth, S};
use crate::{ClientAuth, EkuPolicy, Empty, Incomplete, Problem, Rule};

impl Builder<'_> {
    pub(super) fn client_auth(&mut self, raw: &S<RawClientAuth>) -> Option<ClientAuth> {
        const KEY: &str = "listener.tls.client_auth";
        let c = raw.get_ref();
        let trust = match &c.trust {
            Some(t) if !t.get_ref().is_empty() => self.trust(t, &format!("{KEY}.trust")),
            Some(t) => {
                self.problem(
                    t.span(),
                    format!("{KEY}.trust"),
                    Problem::Empty(Empty::Trust),
                );
                Vec::new()
            }
            None => {
                let problem = Problem::Incomplete(Incomplete::GateTrust);
                self.problem(raw.span(), KEY, problem);
                Vec::new()
            }
        };
        // An unknown word is reported; the allow-list is still checked, under the default.
        let eku = c
            .eku
            .as_ref()
            .and_then(|e| self.word(e, &format!("{KEY}.eku")))
            .unwrap_or(EkuPolicy::ClientAuth);
        let allow = self.allow(c, raw.span(), eku);
        let crl = c.crl.as_ref().map_or_else(Vec::new, |list| {
            if list.get_ref().is_empty() {
                self.problem(
                    list.span(),
                    format!("{KEY}.crl"),
                    Problem::Empty(Empty::Crl),
                );
            }
            list.get_ref()
                .iter()
                .map(|p| self.file(p, &format!("{KEY}.crl")))
                .collect()
        });
        let sources = c.sources.as_ref().map_or_else(Vec::new, |list| {
            self.ranges(list, &format!("{KEY}.sources"), Empty::Sources)
        });
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
            let problem = Problem::Incomplete(Incomplete::GateAllow);
            self.problem(table, "listener.tls.client_auth", problem);
            return None;
        };
        if list.get_ref().is_empty() {
            self.problem(list.span(), KEY, Problem::Empty(Empty::Allow));
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
                self.problem(list.span(), KEY, Problem::Rule(Rule::CompatNeedsExactEntry));
            }
            for (rule, entry) in rules.iter().zip(list.get_ref()) {
                if rule.is_wildcard() {
                    let problem = Rule::CompatWildcard(entry.get_ref().clone());
                    self.problem(entry.span(), KEY, Problem::Rule(problem));
                }
            }
        }
        Some(AllowList::new(rules))
    }
}
