//! A generation: everything built from one configuration, swapped in as one snapshot.
//!
//! Building one reads every file the configuration names and builds every TLS configuration,
//! verifier, route table and upstream pool, off the workers; nothing in it changes after that
//! but counters, health and drains. What must outlive a generation is either handed to the
//! build ([`Lasting`]: ACME certificates, gate and server counters, drained servers and their
//! requests in flight, the slots and queues of `max_connections_per_server`, what DNS
//! answered) or carried over by [`Generation::inherit`] (server health, and the servers DNS
//! gave an upstream that still discovers alike).
//! See docs/architecture.md.

mod certificate;
mod listener;
mod route;
mod rules;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use farmgate_acme::{Acme, AcmeCertificate};
use farmgate_admin::Token;
use farmgate_config::{Config, UpstreamId};
use farmgate_doctor::advice::Warning;
use farmgate_tls::GateStats;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::{BuildError, LoadError};
use crate::outbound::{
    Discovery, Drain, Queue, ServerRt, ServerSource, ServerStats, UpstreamRt, now_ms,
};

pub(crate) use certificate::{InUse, Role};
pub(crate) use listener::ListenerRt;
pub(crate) use route::label as route_label;

/// What the proxy thinks of one server right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerState {
    /// Active health checks pass (always true without `health`).
    pub up: bool,
    /// Passively ejected after consecutive failures.
    pub ejected: bool,
}

/// State that outlives generations: every generation a server builds gets the same one, so a
/// reload keeps the ACME certificates (nothing is ordered again), a gate's counters keep
/// counting (the new verifier counts into the old one's counters) and so do each server's
/// traffic counters, a drained server stays drained, and requests in flight on a server count
/// (against its `max_connections_per_server` too) whichever generation they started on.
/// Clones share it.
#[derive(Debug, Clone)]
pub struct Lasting {
    acme: Acme,
    /// Each gate listener's verifier counters, by listener name.
    gate_stats: Arc<Mutex<BTreeMap<String, Arc<GateStats>>>>,
    /// Each server's traffic counters, by upstream name and server address.
    server_stats: Arc<Mutex<BTreeMap<ServerKey, Arc<ServerStats>>>>,
    /// Each server's drain and requests in flight, by upstream name and server address.
    drains: Arc<Mutex<BTreeMap<ServerKey, Arc<Drain>>>>,
    /// Each capped upstream's queue, with its servers' slots, by upstream name.
    queues: Arc<Mutex<BTreeMap<String, Arc<Queue>>>>,
    /// Each discovered upstream's DNS answers and failures, by upstream name.
    discoveries: Arc<Mutex<BTreeMap<String, Arc<Discovery>>>>,
    /// Generations built with this state and not yet dropped.
    alive: Arc<watch::Sender<usize>>,
}

/// A server by its upstream's name and its address.
type ServerKey = (String, String);

impl Default for Lasting {
    fn default() -> Self {
        Lasting {
            acme: Acme::new(),
            gate_stats: Arc::default(),
            server_stats: Arc::default(),
            drains: Arc::default(),
            queues: Arc::default(),
            discoveries: Arc::default(),
            alive: Arc::new(watch::channel(0).0),
        }
    }
}

impl Lasting {
    /// The ACME state: statuses ([`Acme::status`]), changes, renewals on request.
    pub fn acme(&self) -> &Acme {
        &self.acme
    }

    /// How many generations built with this state are alive: the one serving, plus those
    /// that requests in progress (or, once they exist, tunnels) still hold.
    pub fn generations_alive(&self) -> usize {
        *self.alive.borrow()
    }

    /// [`Lasting::generations_alive`], as it changes.
    pub fn generations(&self) -> watch::Receiver<usize> {
        self.alive.subscribe()
    }

    /// The counters of gate listener `name`, the same for every generation.
    fn gate_stats(&self, name: &str) -> Arc<GateStats> {
        let mut stats = self.gate_stats.lock();
        stats.entry(name.to_owned()).or_default().clone()
    }

    /// The traffic counters of server `address` of upstream `upstream`, the same for every
    /// generation.
    fn server_stats(&self, upstream: &str, address: &str) -> Arc<ServerStats> {
        let mut stats = self.server_stats.lock();
        let key = (upstream.to_owned(), address.to_owned());
        stats.entry(key).or_default().clone()
    }

    /// The drain (and requests in flight) of server `address` of upstream `upstream`, the same
    /// for every generation.
    fn drain(&self, upstream: &str, address: &str) -> Arc<Drain> {
        let mut drains = self.drains.lock();
        let key = (upstream.to_owned(), address.to_owned());
        drains.entry(key).or_default().clone()
    }

    /// Forget the drains of servers `config` no longer has; called when a generation built
    /// from `config` is swapped in, not when it is built, so that a reload that fails keeps
    /// every drain (requests in flight on a forgotten server still count on its old one).
    fn keep_drains(&self, config: &Config) {
        self.drains
            .lock()
            .retain(|(upstream, address), _| has_server(config, upstream, address));
    }

    /// The queue (and servers' slots) of upstream `upstream`, the same for every generation.
    fn queue(&self, upstream: &str) -> Arc<Queue> {
        let mut queues = self.queues.lock();
        queues.entry(upstream.to_owned()).or_default().clone()
    }

    /// What DNS answered upstream `upstream` so far, the same for every generation (a reload
    /// that changes the question starts it afresh: `Discovery::ask`).
    fn discovery(&self, upstream: &str) -> Arc<Discovery> {
        let mut discoveries = self.discoveries.lock();
        discoveries.entry(upstream.to_owned()).or_default().clone()
    }

    /// Forget the discovery state of upstreams `config` does not discover; called when a
    /// generation built from `config` is swapped in.
    fn keep_discoveries(&self, config: &Config) {
        self.discoveries.lock().retain(|upstream, _| {
            config
                .upstreams
                .iter()
                .any(|u| u.name == *upstream && u.discover.is_some())
        });
    }

    /// Forget the queues of upstreams `config` does not cap (requests holding their slots
    /// keep them); called when a generation built from `config` is swapped in.
    fn keep_queues(&self, config: &Config) {
        self.queues.lock().retain(|upstream, _| {
            config
                .upstreams
                .iter()
                .any(|u| u.name == *upstream && u.max_connections_per_server.is_some())
        });
    }

    /// Forget the counters of servers `config` no longer lists (generations still serving
    /// them keep theirs until they end); called when a generation built from `config` is
    /// swapped in. Those of a discovered upstream go as DNS drops them
    /// ([`UpstreamServers::keep`]).
    fn keep_server_stats(&self, config: &Config) {
        self.server_stats
            .lock()
            .retain(|(upstream, address), _| has_server(config, upstream, address));
    }
}

/// Whether `config` may have server `address` in upstream `upstream`: it lists it, or the
/// upstream's servers come from DNS (whose state goes as DNS drops them).
fn has_server(config: &Config, upstream: &str, address: &str) -> bool {
    config.upstreams.iter().any(|u| {
        u.name == *upstream
            && (u.discover.is_some() || u.servers.iter().any(|s| s.address.to_string() == *address))
    })
}

/// What outlives generations for the servers of one upstream: its part of [`Lasting`], by
/// server address.
#[derive(Debug)]
struct UpstreamServers {
    lasting: Lasting,
    upstream: String,
}

impl ServerSource for UpstreamServers {
    fn stats(&self, address: &str) -> Arc<ServerStats> {
        self.lasting.server_stats(&self.upstream, address)
    }

    fn drain(&self, address: &str) -> Arc<Drain> {
        self.lasting.drain(&self.upstream, address)
    }

    fn keep(&self, addresses: &[&str]) {
        let kept = |upstream: &String, address: &String| {
            *upstream != self.upstream || addresses.contains(&address.as_str())
        };
        self.lasting
            .server_stats
            .lock()
            .retain(|(upstream, address), _| kept(upstream, address));
        // An operator's drain holds for an address DNS gives back later, and a server's count
        // in flight until its requests end; the rest goes, or pods coming and going would
        // grow this without end.
        self.lasting
            .drains
            .lock()
            .retain(|(upstream, address), drain| {
                kept(upstream, address) || drain.is_draining() || drain.in_flight() > 0
            });
    }
}

/// A configuration put to work: TLS configurations loaded, verifiers and pools built. Building
/// one reads every file the configuration names, so a generation that exists is one that can
/// serve; `farmgate check` builds one and throws it away.
#[derive(Debug)]
pub struct Generation {
    config: Config,
    pub(crate) listeners: Vec<Arc<ListenerRt>>,
    pub(crate) upstreams: Vec<UpstreamRt>,
    lasting: Lasting,
    /// Each ACME listener's name and certificate.
    acme_certificates: Vec<(String, AcmeCertificate)>,
    /// What `farmgate check` warns about, found when this generation was built.
    warnings: Vec<Warning>,
    /// The admin endpoint's bearer token, read from `[admin] token_file`.
    admin_token: Option<Arc<Token>>,
}

impl Generation {
    /// Read the configuration file at `path`, validate it and build it: what `farmgate run`,
    /// `farmgate check` and every reload do, so they can never disagree.
    pub fn load(path: &Path) -> Result<Generation, LoadError> {
        Generation::load_with(path, &Lasting::default())
    }

    /// [`Generation::load`], with the state of the running server (a reload).
    pub fn load_with(path: &Path, lasting: &Lasting) -> Result<Generation, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(&text, path)?;
        Ok(Generation::build_with(config, lasting)?)
    }

    /// Build everything `config` describes, or say what is wrong.
    pub fn build(config: Config) -> Result<Generation, BuildError> {
        Generation::build_with(config, &Lasting::default())
    }

    /// [`Generation::build`], with the state of the running server.
    pub fn build_with(config: Config, lasting: &Lasting) -> Result<Generation, BuildError> {
        let admin_token = admin_token(&config)?;
        let mut acme_certificates = Vec::new();
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let stats = lasting.gate_stats(&l.name);
            let (listener, certificate) = ListenerRt::build(l, &config, &lasting.acme, stats)?;
            if let Some(certificate) = certificate {
                acme_certificates.push((l.name.clone(), certificate));
            }
            listeners.push(Arc::new(listener));
        }
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let queue = u.max_connections_per_server.map(|_| lasting.queue(&u.name));
                let discovery = u.discover.as_ref().map(|_| lasting.discovery(&u.name));
                let source = Arc::new(UpstreamServers {
                    lasting: lasting.clone(),
                    upstream: u.name.clone(),
                });
                UpstreamRt::build(u, source, queue, discovery)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let warnings = farmgate_doctor::advice::warnings(&config, time::OffsetDateTime::now_utc());
        lasting.alive.send_modify(|n| *n += 1);
        Ok(Generation {
            config,
            listeners,
            upstreams,
            lasting: lasting.clone(),
            acme_certificates,
            warnings,
            admin_token,
        })
    }

    /// Take over what the running generation `old` knows and this one must not forget: the
    /// health of every server they share (same upstream name, same address), so a reload
    /// neither revives a dead server nor forgets an ejection; and the servers DNS found for
    /// an upstream both discover alike, so the reload leaves no window without servers. And,
    /// as this generation is about to be swapped in, put its `max_connections_per_server` on
    /// the slots the generations share, and forget the counters and drains of servers it no
    /// longer has (not when it is built: a reload that fails later must change nothing).
    /// Counters and drains of the servers it keeps need no copy: they are the same
    /// [`Lasting`] ones.
    pub(crate) fn inherit(&self, old: &Generation) {
        self.lasting.keep_server_stats(&self.config);
        self.lasting.keep_queues(&self.config);
        self.lasting.keep_drains(&self.config);
        self.lasting.keep_discoveries(&self.config);
        for upstream in &self.upstreams {
            upstream.take_servers(old.upstream_named(&upstream.name));
            upstream.apply_cap();
        }
        for upstream in &self.upstreams {
            let Some(previous) = old.upstream_named(&upstream.name) else {
                continue;
            };
            let before = previous.servers();
            for server in &upstream.servers().servers {
                if let Some(b) = before.servers.iter().find(|b| b.address == server.address) {
                    server.health.inherit(&b.health);
                }
            }
        }
    }

    /// The state this generation shares with the others of its server.
    pub fn lasting(&self) -> &Lasting {
        &self.lasting
    }

    /// The ACME state this generation serves its ACME certificates from.
    pub fn acme(&self) -> &Acme {
        &self.lasting.acme
    }

    /// Put this generation's ACME certificates into service (their renewal tasks run; those of
    /// certificates it no longer has stop).
    pub(crate) fn start_acme(&self) {
        self.lasting.acme.sync(
            self.acme_certificates
                .iter()
                .map(|(name, cert)| (name.as_str(), cert)),
        );
    }

    /// The configuration this generation was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What `farmgate check` warns about in this configuration, as found when it was built.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The bearer token the admin endpoint requires while this generation serves (`None`
    /// without `[admin] token_file`).
    pub fn admin_token(&self) -> Option<&Arc<Token>> {
        self.admin_token.as_ref()
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

    /// Every leaf certificate the listeners serve right now and every upstream client
    /// certificate.
    pub(crate) fn certificates(&self) -> Vec<InUse> {
        certificate::in_use(&self.listeners, &self.upstreams)
    }

    /// How many connections upstream `name` has opened to its servers (`None`: no such upstream).
    pub fn upstream_connections(&self, name: &str) -> Option<u64> {
        self.upstream_named(name)
            .map(UpstreamRt::connections_opened)
    }

    /// How many connections upstream `name` holds idle in its pools (`None`: no such upstream).
    #[cfg(any(test, feature = "test-util"))]
    pub fn idle_connections(&self, name: &str) -> Option<usize> {
        self.upstream_named(name).map(UpstreamRt::idle_connections)
    }

    /// Close the surplus idle backend connections of every upstream, as the server does every
    /// few seconds on its own: half of those no request took since the last sweep, keeping the
    /// most recently used one per worker. Returns how many were closed.
    #[cfg(any(test, feature = "test-util"))]
    pub fn sweep_idle_connections(&self) -> usize {
        self.sweep_idle()
    }

    /// See [`Generation::sweep_idle_connections`].
    pub(crate) fn sweep_idle(&self) -> usize {
        self.upstreams.iter().map(UpstreamRt::sweep_idle).sum()
    }

    /// The health of server `address` of upstream `upstream`, if both exist.
    pub fn server_state(&self, upstream: &str, address: &str) -> Option<ServerState> {
        let (_, s) = self.server_named(upstream, address)?;
        Some(ServerState {
            up: s.health.is_up(),
            ejected: s.health.is_ejected(now_ms()),
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

    /// Server `address` of upstream `upstream` as it is now, with its upstream, if both exist.
    pub(crate) fn server_named(
        &self,
        upstream: &str,
        address: &str,
    ) -> Option<(&UpstreamRt, Arc<ServerRt>)> {
        let u = self.upstream_named(upstream)?;
        let s = u
            .servers()
            .servers
            .iter()
            .find(|s| &*s.address == address)?
            .clone();
        Some((u, s))
    }

    pub(crate) fn upstream_named(&self, name: &str) -> Option<&UpstreamRt> {
        self.upstreams.iter().find(|u| &*u.name == name)
    }

    pub(crate) fn listener(&self, name: &str) -> Option<&Arc<ListenerRt>> {
        self.listeners.iter().find(|l| &*l.name == name)
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.lasting.alive.send_modify(|n| *n -= 1);
    }
}

/// The token in `[admin] token_file`, if the configuration names one.
fn admin_token(config: &Config) -> Result<Option<Arc<Token>>, BuildError> {
    let Some(file) = config.admin.as_ref().and_then(|a| a.token_file.as_ref()) else {
        return Ok(None);
    };
    let token = Token::read(&file.path).map_err(|source| BuildError::AdminToken {
        at: file.at.clone(),
        path: file.path.clone(),
        source,
    })?;
    Ok(Some(Arc::new(token)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{Lasting, ServerSource as _, UpstreamServers};

    #[test]
    fn dns_dropping_a_server_forgets_its_drain_unless_it_still_matters() {
        let lasting = Lasting::default();
        let source = UpstreamServers {
            lasting: lasting.clone(),
            upstream: "farm".to_owned(),
        };
        source.drain("10.0.0.1:8443");
        source.drain("10.0.0.2:8443").start(1);
        let busy = source.drain("10.0.0.3:8443").enter();
        source.drain("10.0.0.4:8443");
        let other = UpstreamServers {
            lasting: lasting.clone(),
            upstream: "other".to_owned(),
        };
        other.drain("10.0.0.1:8443");

        // DNS now gives only .4.
        source.keep(&["10.0.0.4:8443"]);
        let mut left: Vec<(String, String)> = lasting.drains.lock().keys().cloned().collect();
        left.sort();
        let expected = [
            ("farm", "10.0.0.2:8443"), // drained by the operator: holds if DNS gives it back
            ("farm", "10.0.0.3:8443"), // a request still in flight counts on it
            ("farm", "10.0.0.4:8443"),
            ("other", "10.0.0.1:8443"),
        ];
        assert_eq!(left, expected.map(|(u, a)| (u.to_owned(), a.to_owned())));
        drop(busy);
        source.keep(&["10.0.0.4:8443"]);
        assert_eq!(lasting.drains.lock().len(), 3);
    }
}
