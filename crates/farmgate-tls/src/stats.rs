//! What a gate's verifier decided, counted: refusals by reason, and the acceptances that needed
//! WebPKI compatibility mode, by the allow entry that admitted them; and the last few refused
//! clients. Plain atomics, and a small map and a small ring behind mutexes (taken only for
//! compatibility-mode acceptances and refusals); the metrics registry and `/status` read them,
//! the handshake path only adds.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use farmgate_identity::PeerIdentity;

use crate::RefusalReason;

/// How many refused clients a [`GateStats`] remembers (the most recent ones).
pub const RECENT_REFUSALS: usize = 16;

/// Counters of one gate's client-certificate verifier. Shared by every handshake on the
/// listener; read with [`GateStats::snapshot`].
#[derive(Debug, Default)]
pub struct GateStats {
    accepted: AtomicU64,
    refused: [AtomicU64; RefusalReason::ALL.len()],
    /// Keyed by the allow entry (`dns:NAME`, `spki-sha256:PIN`), so the number of keys is bounded
    /// by the configuration, not by what clients present.
    relaxed: Mutex<BTreeMap<String, u64>>,
    /// The last [`RECENT_REFUSALS`] refused clients, oldest first.
    recent: Mutex<VecDeque<RefusedClient>>,
}

/// A client a gate refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedClient {
    /// When.
    pub at: SystemTime,
    /// Which rule it failed.
    pub reason: RefusalReason,
    /// Who its certificate says it is, when it presented one that could be read.
    pub identity: Option<PeerIdentity>,
    /// Where it connected from, when the handshake ran inside
    /// [`handshake_from`](crate::handshake_from).
    pub source: Option<SocketAddr>,
}

/// The counters of a [`GateStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GateStatsSnapshot {
    /// Client certificates accepted, strictly or in compatibility mode.
    pub accepted: u64,
    /// Client certificates refused, for every reason (zeros included), in [`RefusalReason::ALL`]
    /// order.
    pub refused: Vec<(RefusalReason, u64)>,
    /// Acceptances that needed compatibility mode (the chain permits serverAuth, not clientAuth),
    /// by the allow entry that admitted the client, e.g. `("dns:edge.example.com", 3)`.
    pub relaxed: Vec<(String, u64)>,
}

impl GateStats {
    /// Count one accepted client certificate; `relaxed_by` is the allow entry that admitted it
    /// when the acceptance needed compatibility mode.
    pub fn record_accepted(&self, relaxed_by: Option<&str>) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(entry) = relaxed_by {
            let mut relaxed = self.relaxed.lock();
            *relaxed.entry(entry.to_owned()).or_default() += 1;
        }
    }

    /// Count one refused client certificate.
    pub fn record_refused(&self, reason: RefusalReason) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Count one refused client and remember it among the [`RECENT_REFUSALS`] most recent:
    /// its certificate's identity (if it had a readable one) and its address (if known).
    pub fn record_refusal(
        &self,
        reason: RefusalReason,
        identity: Option<&PeerIdentity>,
        source: Option<SocketAddr>,
    ) {
        self.record_refused(reason);
        let refused = RefusedClient {
            at: SystemTime::now(),
            reason,
            identity: identity.cloned(),
            source,
        };
        let mut recent = self.recent.lock();
        if recent.len() == RECENT_REFUSALS {
            recent.pop_front();
        }
        recent.push_back(refused);
    }

    /// The most recent refused clients, oldest first.
    pub fn recent_refusals(&self) -> Vec<RefusedClient> {
        let recent = self.recent.lock();
        recent.iter().cloned().collect()
    }

    /// Client certificates accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Client certificates refused so far for `reason`.
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused[reason.index()].load(Ordering::Relaxed)
    }

    /// Acceptances so far that needed compatibility mode and were admitted by allow entry
    /// `entry` (as written in the configuration's canonical form, e.g. `dns:edge.example.com`).
    pub fn relaxed(&self, entry: &str) -> u64 {
        let relaxed = self.relaxed.lock();
        relaxed.get(entry).copied().unwrap_or(0)
    }

    /// All acceptances so far that needed compatibility mode.
    pub fn relaxed_total(&self) -> u64 {
        let relaxed = self.relaxed.lock();
        relaxed.values().sum()
    }

    /// Every counter, for export.
    pub fn snapshot(&self) -> GateStatsSnapshot {
        let relaxed = self.relaxed.lock();
        GateStatsSnapshot {
            accepted: self.accepted(),
            refused: RefusalReason::ALL
                .iter()
                .map(|&reason| (reason, self.refused(reason)))
                .collect(),
            relaxed: relaxed.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refusals_by_reason_and_relaxations_by_entry() {
        let stats = GateStats::default();
        stats.record_refused(RefusalReason::Purpose);
        stats.record_refused(RefusalReason::Purpose);
        stats.record_refused(RefusalReason::Revoked);
        stats.record_accepted(None);
        stats.record_accepted(Some("dns:edge.example.com"));
        stats.record_accepted(Some("dns:edge.example.com"));
        assert_eq!(stats.refused(RefusalReason::Purpose), 2);
        assert_eq!(stats.refused(RefusalReason::Revoked), 1);
        assert_eq!(stats.refused(RefusalReason::UnknownCa), 0);
        assert_eq!(stats.accepted(), 3);
        assert_eq!(stats.relaxed("dns:edge.example.com"), 2);
        assert_eq!(stats.relaxed_total(), 2);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.refused.len(), RefusalReason::ALL.len());
        assert_eq!(
            snapshot.relaxed,
            vec![("dns:edge.example.com".to_owned(), 2)]
        );
    }

    #[test]
    fn remembers_the_most_recent_refused_clients() {
        let stats = GateStats::default();
        let source: SocketAddr = ([192, 0, 2, 1], 5000).into();
        stats.record_refusal(RefusalReason::NoCertificate, None, Some(source));
        for _ in 0..RECENT_REFUSALS {
            stats.record_refusal(RefusalReason::UnknownCa, None, None);
        }
        let recent = stats.recent_refusals();
        assert_eq!(recent.len(), RECENT_REFUSALS);
        assert!(recent.iter().all(|r| r.reason == RefusalReason::UnknownCa));
        assert_eq!(stats.refused(RefusalReason::NoCertificate), 1);
        assert_eq!(
            stats.refused(RefusalReason::UnknownCa),
            RECENT_REFUSALS as u64
        );
    }
}
