//! The configuration exactly as written: serde structs with spans, no meaning attached yet.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently ignored key.
//! `crate::build` turns these into the typed [`crate::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub admin: Option<S<RawAdmin>>,
    pub log: Option<S<RawLog>>,
    pub server: Option<S<RawServer>>,
    pub acme: Option<S<RawAcme>>,
    #[serde(default)]
    pub listener: Vec<S<RawListener>>,
    #[serde(default)]
    pub upstream: BTreeMap<S<String>, S<RawUpstream>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: S<String>,
    pub token_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub format: Option<S<String>>,
    pub access: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub shutdown_grace: Option<S<String>>,
    pub workers: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub directory: Option<S<String>>,
    pub contact: Option<S<Vec<S<String>>>>,
    pub storage: Option<S<String>>,
    pub trust: Option<S<Vec<S<String>>>>,
    pub eab: Option<S<RawEab>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEab {
    pub kid: Option<S<String>>,
    pub hmac_key_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub name: Option<S<String>>,
    pub listen: Option<S<String>>,
    pub tls: Option<S<RawListenerTls>>,
    pub redirect_https: Option<S<bool>>,
    pub timeouts: Option<S<RawListenerTimeouts>>,
    pub limits: Option<S<RawListenerLimits>>,
    pub proxy_protocol: Option<S<RawProxyProtocol>>,
    pub trusted_proxies: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub route: Vec<S<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxyProtocol {
    pub from: S<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListenerLimits {
    pub max_connections: Option<S<i64>>,
    pub max_connections_per_client: Option<S<i64>>,
    pub requests_per_client: Option<S<RawRate>>,
    pub max_request_body: Option<S<String>>,
    pub max_request_header: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    pub rate: Option<S<i64>>,
    pub per: Option<S<String>>,
    pub burst: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListenerTimeouts {
    pub handshake: Option<S<String>>,
    pub request_header: Option<S<String>>,
    pub request_body: Option<S<String>>,
    pub send: Option<S<String>>,
    pub idle: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListenerTls {
    pub certificate: Option<S<String>>,
    pub private_key: Option<S<String>>,
    #[serde(default)]
    pub sni: Vec<S<RawSni>>,
    pub client_auth: Option<S<RawClientAuth>>,
    pub acme: Option<S<RawListenerAcme>>,
    pub ticket_keys: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSni {
    pub server_name: S<String>,
    pub certificate: S<String>,
    pub private_key: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientAuth {
    pub trust: Option<S<Vec<S<String>>>>,
    pub allow: Option<S<Vec<S<String>>>>,
    pub eku: Option<S<String>>,
    pub crl: Option<S<Vec<S<String>>>>,
    pub sources: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListenerAcme {
    pub domains: S<Vec<S<String>>>,
    pub profile: Option<S<String>>,
    pub challenge: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub host: Option<S<String>>,
    pub path_prefix: Option<S<String>>,
    pub upstream: S<String>,
    pub request_headers: Option<S<RawHeaderRules>>,
    pub response_headers: Option<S<RawHeaderRules>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderRules {
    /// Header name to value.
    pub set: Option<S<BTreeMap<S<String>, S<String>>>>,
    pub remove: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    /// Strings (`"10.0.0.1:8443"`) or tables (`{ address = "...", weight = 2 }`), read by hand so
    /// that a mistake in either form gets a precise message.
    pub servers: Option<S<Vec<S<toml::Value>>>>,
    pub discover: Option<S<RawDiscover>>,
    pub balance: Option<S<String>>,
    pub protocol: Option<S<String>>,
    pub hash_key: Option<S<String>>,
    pub max_connections_per_server: Option<S<i64>>,
    pub queue_timeout: Option<S<String>>,
    pub send_proxy: Option<S<String>>,
    pub health: Option<S<RawHealth>>,
    pub timeouts: Option<S<RawTimeouts>>,
    pub tls: Option<S<RawUpstreamTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiscover {
    pub dns: Option<S<String>>,
    pub srv: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub resolver: Option<S<String>>,
    pub min_ttl: Option<S<String>>,
    pub max_ttl: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub path: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<u32>>,
    pub fall: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub connect: Option<S<String>>,
    pub response_header: Option<S<String>>,
    pub idle: Option<S<String>>,
    pub tunnel_idle: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub server_name: Option<S<String>>,
    pub trust: Option<S<Vec<S<String>>>>,
    pub client_certificate: Option<S<String>>,
    pub client_key: Option<S<String>>,
}
