//! Runtime: the running server and everything that changes over its life.
//!
//! Worker threads and their listening sockets, the current generation and the reload path
//! (one ordered [`Server::reload`]: build off the workers, swap, start the new generation's
//! background work), the file watcher, graceful shutdown, and what the admin endpoint shows
//! (`/status`, `/upstreams`, scrape-time metrics) and changes (drains). The top layer: it drives inbound, generation and outbound
//! (docs/architecture.md).

mod control;
mod reload;
mod scrape;
mod server;
mod status;
mod upkeep;
mod watch;
mod workers;

pub use reload::{ReloadCounts, ReloadError, ReloadFailure};
pub use server::{Drained, ReloadObserver, Server};
pub use status::{
    AcmeStatus, CertificateStatus, ClientAuthStatus, CompatCount, DiscoveryFailureCount,
    DiscoveryStatus, DrainAnswer, FactStatus, FailureStatus, LastReload, ListenerRole,
    ListenerStatus, RefusalCount, RefusedStatus, Reloads, ServerHealth, ServerRotation,
    ServerStatus, Status, TrafficStatus, UpstreamServers, UpstreamStatus, UpstreamTlsStatus,
    Upstreams, WarningStatus,
};
pub use watch::watch;
pub use workers::Workers;
