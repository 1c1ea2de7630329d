//! What a gate's verifier decided, counted: refusals by reason, and the acceptances that needed
//! WebPKI compatibility mode, by the allow entry that admitted them. Plain atomics and a small
//! map behind a mutex; the metrics registry reads them, the handshake path only adds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::RefusalReason;

/// Counters of one gate's client-certificate verifier. Shared by every handshake on the
/// listener; read with [`GateStats::snapshot`].
#[derive(Debug, Default)]
pub struct GateStats {
    accepted: AtomicU64,
    refused: [AtomicU64; RefusalReason::ALL.len()],
    /// Keyed by the allow entry (`dns:NAME`, `spki-sha256:PIN`), so the number of keys is bounded
    /// by the configuration, not by what clients present.
    relaxed: Mutex<BTreeMap<String, u64>>,
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
            let mut relaxed = self.relaxed.lock().unwrap_or_else(|e| e.into_inner());
            *relaxed.entry(entry.to_owned()).or_default() += 1;
        }
    }

    /// Count one refused client certificate.
    pub fn record_refused(&self, reason: RefusalReason) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
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
        let relaxed = self.relaxed.lock().unwrap_or_else(|e| e.into_inner());
        relaxed.get(entry).copied().unwrap_or(0)
    }

    /// All acceptances so far that needed compatibility mode.
    pub fn relaxed_total(&self) -> u64 {
        let relaxed = self.relaxed.lock().unwrap_or_else(|e| e.into_inner());
        relaxed.values().sum()
    }

    /// Every counter, for export.
    pub fn snapshot(&self) -> GateStatsSnapshot {
        let relaxed = self.relaxed.lock().unwrap_or_else(|e| e.into_inner());
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
}
