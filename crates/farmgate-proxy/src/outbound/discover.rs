//! DNS discovery (`discover`): asking DNS for an upstream's servers, and what is kept of the
//! answers.
//!
//! [`Lookup`] asks: every A and AAAA record of a name (`dns`, each address a server on
//! `port`), or the SRV records of a name (`srv`: those of the lowest priority, each target's
//! addresses servers on the record's port, with its weight). It asks the DNS server named in
//! `resolver`, or the system's (`/etc/resolv.conf`), never from a cache of its own: each
//! question goes to the server, and the answer's TTL, clamped to `[min_ttl, max_ttl]`
//! ([`clamp_ttl`]), says when to ask again.
//!
//! [`Discovery`] keeps, per upstream and across reloads that ask the same question, the last
//! good answer and the failures since start. The **last-good rule**: a failure (no answer in
//! time, SERVFAIL or another error code, NXDOMAIN, no records, no address for any SRV target,
//! no resolver configuration) never changes the servers; the last good answer keeps serving,
//! the failure is counted by reason, logged once per change of state (failing with another
//! reason, or answering again), and asked again after [`retry_after`]. An upstream that never
//! had an answer has no server, and its requests are answered 503 (`not_resolved`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use farmgate_config::{Discover, Lookup};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::{ResolveError, TokioResolver};
use parking_lot::Mutex;

use super::failure::Seconds;
use super::set::Found;

/// How long one question waits for the DNS server before it is asked again.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Times one question is asked before the lookup fails.
const QUERY_ATTEMPTS: usize = 2;
/// The longest a whole lookup (an SRV question and its targets') may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// After failures, the longest wait before asking again (unless `max_ttl` is shorter).
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Why a lookup found no server. Its label is the `reason` of
/// `farmgate_discovery_failures_total`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupFailure {
    /// The system's resolver configuration could not be read.
    #[error("cannot read the system's resolver configuration (/etc/resolv.conf)")]
    Config(#[source] ResolveError),
    /// The DNS server did not answer in time.
    #[error("no answer from the DNS server within {}", Seconds(*after))]
    Timeout { after: Duration },
    /// The name does not exist.
    #[error("{name} does not exist (NXDOMAIN)")]
    NxDomain { name: String },
    /// The name exists, without the records asked for (or without any address behind them).
    #[error("{name} has no {what}")]
    Empty { name: String, what: &'static str },
    /// The DNS server answered with an error code.
    #[error("the DNS server answered {code}")]
    Server { code: ResponseCode },
    /// The DNS server could not be asked (unreachable, refused, a malformed answer...).
    #[error("cannot ask the DNS server")]
    Error(#[source] ResolveError),
}

/// The labels of [`LookupFailure`], in order: what `farmgate_discovery_failures_total`
/// reports (zeros included) and `/status` counts.
pub(crate) const REASONS: [&str; 6] = [
    "resolver_config",
    "timeout",
    "nxdomain",
    "no_records",
    "server_error",
    "error",
];

impl LookupFailure {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            LookupFailure::Config(_) => REASONS[0],
            LookupFailure::Timeout { .. } => REASONS[1],
            LookupFailure::NxDomain { .. } => REASONS[2],
            LookupFailure::Empty { .. } => REASONS[3],
            LookupFailure::Server { .. } => REASONS[4],
            LookupFailure::Error(_) => REASONS[5],
        }
    }

    /// Classify hickory's error for a question about `name` asking for `what`.
    fn from_resolve(e: ResolveError, name: &str, what: &'static str) -> LookupFailure {
        let Some(proto) = e.proto() else {
            return LookupFailure::Error(e);
        };
        match proto.kind() {
            ProtoErrorKind::Timeout => LookupFailure::Timeout {
                after: QUERY_TIMEOUT,
            },
            ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
                ResponseCode::NXDomain => LookupFailure::NxDomain {
                    name: name.to_owned(),
                },
                ResponseCode::NoError => LookupFailure::Empty {
                    name: name.to_owned(),
                    what,
                },
                code => LookupFailure::Server { code },
            },
            _ => LookupFailure::Error(e),
        }
    }
}

/// The servers DNS gave, and how long the answer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// Sorted by address, each address once.
    pub(crate) servers: Vec<Found>,
    /// The shortest TTL of the records behind it, before clamping.
    pub(crate) ttl: Duration,
}

/// The resolver of one `discover` table.
#[derive(Debug)]
pub(crate) struct Resolver {
    resolver: TokioResolver,
    lookup: Lookup,
}

impl Resolver {
    /// A resolver asking `discover.resolver`, or the system's. Reads `/etc/resolv.conf` for
    /// the latter.
    pub(crate) fn new(discover: &Discover) -> Result<Resolver, LookupFailure> {
        let mut builder = match discover.resolver {
            Some(server) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
                let config = ResolverConfig::from_parts(None, Vec::new(), servers);
                let mut builder =
                    TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
                // The operator named the DNS server: ask it, not /etc/hosts.
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder
            }
            None => TokioResolver::builder_tokio().map_err(LookupFailure::Config)?,
        };
        let options = builder.options_mut();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // Every lookup asks the server: a cached answer could outlive `max_ttl`.
        options.cache_size = 0;
        options.timeout = QUERY_TIMEOUT;
        options.attempts = QUERY_ATTEMPTS;
        Ok(Resolver {
            resolver: builder.build(),
            lookup: discover.lookup.clone(),
        })
    }

    /// Ask DNS for the servers; an answer without any is a failure.
    pub(crate) async fn resolve(&self) -> Result<Answer, LookupFailure> {
        let asked = async {
            match &self.lookup {
                Lookup::Dns { name, port } => self.addresses(name, *port).await,
                Lookup::Srv { name } => self.srv(name).await,
            }
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, asked)
            .await
            .unwrap_or(Err(LookupFailure::Timeout {
                after: LOOKUP_TIMEOUT,
            }))
    }

    /// Every A and AAAA record of `name`, each a server on `port`.
    async fn addresses(&self, name: &str, port: u16) -> Result<Answer, LookupFailure> {
        let ips = self
            .resolver
            .lookup_ip(name)
            .await
            .map_err(|e| LookupFailure::from_resolve(e, name, "A or AAAA records"))?;
        let ttl = ips.valid_until().saturating_duration_since(Instant::now());
        let found_name: Arc<str> = Arc::from(name);
        let servers = ips.iter().map(|ip| Found {
            address: SocketAddr::new(ip, port),
            weight: 1,
            name: found_name.clone(),
        });
        answer(servers, ttl).ok_or_else(|| LookupFailure::Empty {
            name: name.to_owned(),
            what: "A or AAAA records",
        })
    }

    /// The SRV records of `name` of the lowest priority, each target's addresses servers on
    /// the record's port with its weight. A target without an address is left out; none with
    /// one at all is a failure.
    async fn srv(&self, name: &str) -> Result<Answer, LookupFailure> {
        let records = self
            .resolver
            .srv_lookup(name)
            .await
            .map_err(|e| LookupFailure::from_resolve(e, name, "SRV records"))?;
        let now = Instant::now();
        let mut ttl = records
            .as_lookup()
            .valid_until()
            .saturating_duration_since(now);
        let first = records.iter().map(|r| r.priority()).min();
        let mut servers = Vec::new();
        // "." as a target says the service is not available there (RFC 2782).
        for record in records
            .iter()
            .filter(|r| Some(r.priority()) == first && !r.target().is_root())
        {
            let target = record.target().to_ascii();
            let target = target.strip_suffix('.').unwrap_or(&target);
            let ips = match self.resolver.lookup_ip(record.target().clone()).await {
                Ok(ips) => ips,
                Err(e) => {
                    let why = LookupFailure::from_resolve(e, target, "A or AAAA records");
                    tracing::debug!("SRV target {target} of {name} left out: {why}");
                    continue;
                }
            };
            ttl = ttl.min(ips.valid_until().saturating_duration_since(now));
            let found_name: Arc<str> = Arc::from(target);
            servers.extend(ips.iter().map(|ip| Found {
                address: SocketAddr::new(ip, record.port()),
                weight: u32::from(record.weight()).max(1),
                name: found_name.clone(),
            }));
        }
        answer(servers, ttl).ok_or_else(|| LookupFailure::Empty {
            name: name.to_owned(),
            what: "SRV record whose target has an address",
        })
    }
}

/// `servers` sorted by address, each address once (the first found); `None` if there is none.
fn answer(servers: impl IntoIterator<Item = Found>, ttl: Duration) -> Option<Answer> {
    let mut servers: Vec<Found> = servers.into_iter().collect();
    servers.sort_by_key(|f| f.address);
    servers.dedup_by_key(|f| f.address);
    (!servers.is_empty()).then_some(Answer { servers, ttl })
}

/// When to ask again after an answer with `ttl`: the TTL, but no sooner than `min_ttl` and no
/// later than `max_ttl`.
pub(crate) fn clamp_ttl(ttl: Duration, min_ttl: Duration, max_ttl: Duration) -> Duration {
    ttl.max(min_ttl).min(max_ttl)
}

/// When to ask again after `failures` failed lookups in a row (at least 1): `min_ttl`,
/// doubling with each failure, at most `max_ttl` and [`MAX_RETRY`] (but never below
/// `min_ttl`).
pub(crate) fn retry_after(failures: u32, min_ttl: Duration, max_ttl: Duration) -> Duration {
    let doubled = min_ttl.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(max_ttl).min(MAX_RETRY).max(min_ttl)
}

/// What an upstream's discovery knows, shared by the generations that ask the same question.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The question the answers are for.
    discover: Option<Discover>,
    /// The last good answer and when it came.
    good: Option<(Answer, SystemTime)>,
    /// Failed lookups since the last good answer.
    failing: u32,
    /// The last failure.
    last_failure: Option<Failed>,
    /// Failures since start, by label (kept whatever the question).
    failures: BTreeMap<&'static str, u64>,
}

/// A failed lookup, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    pub(crate) at: SystemTime,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// What discovery knows now, for `/status` and the metrics.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    /// The last good answer, when it came, and its TTL.
    pub(crate) good: Option<(Answer, SystemTime)>,
    /// Failed lookups since the last good answer.
    pub(crate) failing: u32,
    pub(crate) last_failure: Option<Failed>,
    /// Failures since start, by label of [`REASONS`].
    pub(crate) failures: Vec<(&'static str, u64)>,
}

/// What a lookup's outcome changes, for the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing worth a line.
    Quiet,
    /// The first answer, or one after failures.
    Answering,
    /// A failure after answers (or after a failure for another reason).
    Failing,
}

impl Discovery {
    /// Serve `discover` from now on: what was found for another question is forgotten (the
    /// failure counts stay).
    pub(crate) fn ask(&self, discover: &Discover) {
        let mut state = self.state.lock();
        if state
            .discover
            .as_ref()
            .is_some_and(|d| d.asks_like(discover))
        {
            return;
        }
        state.discover = Some(discover.clone());
        state.good = None;
        state.failing = 0;
        state.last_failure = None;
    }

    /// The last good answer, if DNS ever gave one for this question.
    pub(crate) fn last_good(&self) -> Option<Answer> {
        self.state.lock().good.as_ref().map(|(a, _)| a.clone())
    }

    /// A good answer came: it replaces the last one. Returns what changed and when to ask
    /// again.
    pub(crate) fn answered(
        &self,
        answer: Answer,
        bounds: (Duration, Duration),
    ) -> (Change, Duration) {
        let mut state = self.state.lock();
        let change = if state.failing > 0 || state.good.is_none() {
            Change::Answering
        } else {
            Change::Quiet
        };
        let next = clamp_ttl(answer.ttl, bounds.0, bounds.1);
        state.good = Some((answer, SystemTime::now()));
        state.failing = 0;
        (change, next)
    }

    /// A lookup failed: the last good answer stays. Returns what changed and when to ask
    /// again.
    pub(crate) fn failed(
        &self,
        failure: &LookupFailure,
        bounds: (Duration, Duration),
    ) -> (Change, Duration) {
        let mut state = self.state.lock();
        let reason = failure.label();
        *state.failures.entry(reason).or_default() += 1;
        let same = state.failing > 0
            && state
                .last_failure
                .as_ref()
                .is_some_and(|f| f.reason == reason);
        state.failing = state.failing.saturating_add(1);
        state.last_failure = Some(Failed {
            at: SystemTime::now(),
            reason,
            message: super::Chain(failure).to_string(),
        });
        let change = if same { Change::Quiet } else { Change::Failing };
        (change, retry_after(state.failing, bounds.0, bounds.1))
    }

    /// What it knows now.
    pub(crate) fn known(&self) -> Known {
        let state = self.state.lock();
        Known {
            good: state.good.clone(),
            failing: state.failing,
            last_failure: state.last_failure.clone(),
            failures: REASONS
                .iter()
                .map(|&r| (r, state.failures.get(r).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::path::Path;

    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_ttl_is_kept_within_min_ttl_and_max_ttl() {
        let (min, max) = (secs(1), secs(300));
        assert_eq!(clamp_ttl(secs(30), min, max), secs(30));
        assert_eq!(clamp_ttl(Duration::ZERO, min, max), min, "TTL 0 (Consul)");
        assert_eq!(clamp_ttl(Duration::from_millis(400), min, max), min);
        assert_eq!(clamp_ttl(secs(86_400), min, max), max);
        assert_eq!(clamp_ttl(secs(7), secs(7), secs(7)), secs(7));
    }

    #[test]
    fn retries_back_off_from_min_ttl_within_the_bounds() {
        let tries: Vec<u64> = (1..=8)
            .map(|n| retry_after(n, secs(1), secs(300)).as_secs())
            .collect();
        assert_eq!(tries, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            retry_after(5, secs(1), secs(10)),
            secs(10),
            "max_ttl is shorter"
        );
        assert_eq!(
            retry_after(1, secs(60), secs(300)),
            secs(60),
            "never below min_ttl"
        );
        assert_eq!(retry_after(u32::MAX, secs(1), secs(300)), secs(30));
    }

    fn discover(name: &str) -> Discover {
        let text = format!(
            "[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[listener.route]]\nupstream = \"farm\"\n[upstream.farm]\ndiscover = {{ dns = \"{name}\", port = 8443 }}\n"
        );
        let config = farmgate_config::Config::parse(&text, Path::new("f.toml")).unwrap();
        config.upstreams[0].discover.clone().unwrap()
    }

    fn answer_of(addresses: &[&str], ttl: u64) -> Answer {
        let servers = addresses.iter().map(|a| Found {
            address: a.parse().unwrap(),
            weight: 1,
            name: Arc::from("gates.farm.internal"),
        });
        answer(servers, secs(ttl)).unwrap()
    }

    #[test]
    fn the_last_good_answer_stays_through_failures() {
        let bounds = (secs(1), secs(300));
        let d = Discovery::default();
        d.ask(&discover("gates.farm.internal"));
        assert_eq!(d.last_good(), None, "never answered");
        let nx = LookupFailure::NxDomain {
            name: "gates.farm.internal".into(),
        };
        assert_eq!(d.failed(&nx, bounds), (Change::Failing, secs(1)));

        let first = answer_of(&["127.0.0.12:8443", "127.0.0.11:8443"], 30);
        assert_eq!(
            d.answered(first.clone(), bounds),
            (Change::Answering, secs(30))
        );
        let timeout = LookupFailure::Timeout { after: secs(2) };
        assert_eq!(d.failed(&timeout, bounds), (Change::Failing, secs(1)));
        assert_eq!(
            d.failed(&timeout, bounds),
            (Change::Quiet, secs(2)),
            "logged once"
        );
        let servfail = LookupFailure::Server {
            code: ResponseCode::ServFail,
        };
        assert_eq!(
            d.failed(&servfail, bounds),
            (Change::Failing, secs(4)),
            "another reason"
        );
        let empty = LookupFailure::Empty {
            name: "gates.farm.internal".into(),
            what: "A or AAAA records",
        };
        d.failed(&empty, bounds);
        assert_eq!(
            d.last_good(),
            Some(first),
            "every failure keeps the last good answer"
        );

        let known = d.known();
        assert_eq!(known.failing, 4);
        assert_eq!(known.last_failure.map(|f| f.reason), Some("no_records"));
        let count = |r: &str| {
            known
                .failures
                .iter()
                .find(|(l, _)| *l == r)
                .map(|(_, n)| *n)
        };
        assert_eq!(
            (
                count("nxdomain"),
                count("timeout"),
                count("server_error"),
                count("error")
            ),
            (Some(1), Some(2), Some(1), Some(0))
        );

        let second = answer_of(&["127.0.0.13:8443"], 0);
        assert_eq!(
            d.answered(second.clone(), bounds),
            (Change::Answering, secs(1))
        );
        assert_eq!(d.answered(second.clone(), bounds).0, Change::Quiet);
        assert_eq!(d.known().failing, 0);
        assert_eq!(d.last_good(), Some(second));
    }

    #[test]
    fn another_question_forgets_the_answers_but_not_the_counts() {
        let bounds = (secs(1), secs(300));
        let d = Discovery::default();
        d.ask(&discover("gates.farm.internal"));
        d.answered(answer_of(&["127.0.0.11:8443"], 30), bounds);
        d.failed(&LookupFailure::Timeout { after: secs(2) }, bounds);
        d.ask(&discover("gates.farm.internal"));
        assert!(
            d.last_good().is_some(),
            "the same question keeps its answer"
        );
        d.ask(&discover("other.farm.internal"));
        assert_eq!(d.last_good(), None);
        let known = d.known();
        assert_eq!(known.failing, 0);
        assert!(known.failures.contains(&("timeout", 1)));
    }

    #[test]
    fn an_answer_lists_each_address_once_in_order() {
        let a = answer_of(
            &["127.0.0.13:8443", "127.0.0.11:8443", "127.0.0.13:8443"],
            5,
        );
        let addresses: Vec<String> = a.servers.iter().map(|f| f.address.to_string()).collect();
        assert_eq!(addresses, ["127.0.0.11:8443", "127.0.0.13:8443"]);
        assert!(
            answer(Vec::new(), secs(5)).is_none(),
            "no server is no answer"
        );
    }
}
