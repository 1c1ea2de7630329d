//! A generation: everything built from one configuration, swapped in as one snapshot.

use std::path::Path;
use std::sync::Arc;

use farmgate_acme::{Acme, AcmeCertificate};
use farmgate_config::{Config, UpstreamId};

use crate::error::{BuildError, LoadError};
use crate::listener::ListenerRt;
use crate::upstream::UpstreamRt;

/// What the proxy thinks of one server right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerState {
    /// Active health checks pass (always true without `health`).
    pub up: bool,
    /// Passively ejected after consecutive failures.
    pub ejected: bool,
}

/// A configuration put to work: TLS configurations loaded, verifiers and pools built. Building
/// one reads every file the configuration names, so a generation that exists is one that can
/// serve; `farmgate check` builds one and throws it away.
///
/// ACME certificates are not part of a generation but of the [`Acme`] state it was built with,
/// which outlives it: a reload builds the next generation with the same `Acme`
/// ([`Generation::load_with`]), so its listeners serve the same certificate stores and nothing is
/// ordered again.
#[derive(Debug)]
pub struct Generation {
    config: Config,
    pub(crate) listeners: Vec<Arc<ListenerRt>>,
    pub(crate) upstreams: Vec<UpstreamRt>,
    acme: Acme,
    /// Each ACME listener's name and certificate.
    acme_certificates: Vec<(String, AcmeCertificate)>,
}

impl Generation {
    /// Read the configuration file at `path`, validate it and build it: what `farmgate run`,
    /// `farmgate check` and every reload do, so they can never disagree. ACME listeners get a
    /// fresh [`Acme`] state.
    pub fn load(path: &Path) -> Result<Generation, LoadError> {
        Generation::load_with(path, &Acme::new())
    }

    /// [`Generation::load`], with the ACME state of the running server (a reload).
    pub fn load_with(path: &Path, acme: &Acme) -> Result<Generation, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(&text, path)?;
        Ok(Generation::build_with(config, acme)?)
    }

    /// Build everything `config` describes, or say what is wrong. ACME listeners get a fresh
    /// [`Acme`] state.
    pub fn build(config: Config) -> Result<Generation, BuildError> {
        Generation::build_with(config, &Acme::new())
    }

    /// [`Generation::build`], with the ACME state of the running server.
    pub fn build_with(config: Config, acme: &Acme) -> Result<Generation, BuildError> {
        let mut acme_certificates = Vec::new();
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let (listener, certificate) = ListenerRt::build(l, config.acme.as_ref(), acme)?;
            if let Some(certificate) = certificate {
                acme_certificates.push((l.name.clone(), certificate));
            }
            listeners.push(Arc::new(listener));
        }
        let upstreams = config
            .upstreams
            .iter()
            .map(UpstreamRt::build)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Generation {
            config,
            listeners,
            upstreams,
            acme: acme.clone(),
            acme_certificates,
        })
    }

    /// The ACME state this generation serves its ACME certificates from: statuses
    /// ([`Acme::status`]), changes, renewals on request.
    pub fn acme(&self) -> &Acme {
        &self.acme
    }

    /// Put this generation's ACME certificates into service (their renewal tasks run; those of
    /// certificates it no longer has stop).
    pub(crate) fn start_acme(&self) {
        self.acme.sync(
            self.acme_certificates
                .iter()
                .map(|(name, cert)| (name.as_str(), cert)),
        );
    }

    /// The configuration this generation was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The certificate chains each TLS listener serves (default first), by listener name.
    pub fn served_certificates(
        &self,
    ) -> Vec<(String, Vec<rustls_pki_types::CertificateDer<'static>>)> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.name.to_string(), l.tls.as_ref()?)))
            .flat_map(|(name, tls)| {
                let current = tls.store().current();
                current
                    .all()
                    .map(|k| (name.clone(), k.cert.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// How many connections upstream `name` has opened to its servers (`None`: no such upstream).
    pub fn upstream_connections(&self, name: &str) -> Option<u64> {
        self.upstreams
            .iter()
            .find(|u| &*u.name == name)
            .map(UpstreamRt::connections_opened)
    }

    /// How many connections upstream `name` holds idle in its pools (`None`: no such upstream).
    pub fn idle_connections(&self, name: &str) -> Option<usize> {
        self.upstreams
            .iter()
            .find(|u| &*u.name == name)
            .map(UpstreamRt::idle_connections)
    }

    /// Close the surplus idle backend connections of every upstream, as the server does every
    /// few seconds on its own: half of those no request took since the last sweep, keeping the
    /// most recently used one per worker. Returns how many were closed.
    pub fn sweep_idle_connections(&self) -> usize {
        self.upstreams.iter().map(|u| u.sweep_idle()).sum()
    }

    /// The health of server `address` of upstream `upstream`, if both exist.
    pub fn server_state(&self, upstream: &str, address: &str) -> Option<ServerState> {
        let u = self.upstreams.iter().find(|u| &*u.name == upstream)?;
        let s = u.servers.iter().find(|s| &*s.address == address)?;
        let now = crate::health::now_ms();
        Some(ServerState {
            up: s.health.is_up(),
            ejected: s.health.is_ejected(now),
        })
    }

    /// The TLS of listener `name` (`None`: no such listener, or it speaks plain HTTP); on a gate
    /// its verifier's counters are `listener_tls(name)?.verifier()?.stats()`.
    pub fn listener_tls(&self, name: &str) -> Option<&farmgate_tls::ServerTls> {
        self.listener(name)?.tls.as_ref()
    }

    pub(crate) fn upstream(&self, id: UpstreamId) -> &UpstreamRt {
        &self.upstreams[id.index()]
    }

    pub(crate) fn listener(&self, name: &str) -> Option<&Arc<ListenerRt>> {
        self.listeners.iter().find(|l| &*l.name == name)
    }
}
