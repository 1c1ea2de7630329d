//! Talking to the ACME server: the HTTPS client instant-acme sends its requests through (we
//! build it, so the server is verified against the bundled Mozilla roots plus `[acme] trust`,
//! with timeouts), the account (registered once, kept in storage, reused), and the directory
//! probe `farmgate check` runs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use farmgate_config::{Acme as Settings, Trust};
use farmgate_tls::TrustStore;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, BytesResponse, HttpClient, NewAccount,
};
use serde::{Deserialize, Serialize};

use crate::storage::{self, Storage};
use crate::{AcmeError, eab, lock};

/// Longest wait for a TCP connection to the ACME server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one response from the ACME server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// instant-acme's HTTP client: hyper over rustls, trusting what the configuration says.
struct Https {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
}

impl HttpClient for Https {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.client.request(req);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no response within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}

/// An HTTPS client for the ACME server of `settings`.
fn https(settings: &Settings) -> Result<Box<dyn HttpClient>, AcmeError> {
    let mut trust = vec![Trust::Mozilla];
    trust.extend(settings.trust.iter().cloned());
    let roots = TrustStore::load(&trust, &settings.at)?.root_store();
    let tls = rustls::ClientConfig::builder_with_provider(farmgate_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| {
            farmgate_tls::TlsError::from(farmgate_tls::TlsErrorKind::Build {
                at: settings.at.clone(),
                source,
            })
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Box::new(Https {
        client: Client::builder(TokioExecutor::new()).build(connector),
    }))
}

/// What an account file holds.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    /// The directory the account belongs to (also inside the credentials; here for people).
    directory: String,
    /// The contacts registered, to notice a change in the configuration.
    contact: Vec<String>,
    credentials: AccountCredentials,
}

/// The account for `settings`: read from storage, or registered (agreeing to the CA's terms of
/// service, which configuring the CA implies) and stored. Registration happens under the
/// account's lock file, so edges sharing the storage register once.
pub(crate) async fn account(settings: &Settings, storage: &Storage) -> Result<Account, AcmeError> {
    let directory = settings.directory.as_str();
    let path = storage.account(&storage::account_stem(directory));
    let _lock = lock::acquire(&Storage::lock_for(&path)).await?;
    let server = |doing: &str, source| AcmeError::Server {
        doing: format!("{doing} {directory}"),
        source,
    };
    if let Some(bytes) = storage::read(&path)? {
        let parse = || {
            serde_json::from_slice::<StoredAccount>(&bytes).map_err(|source| AcmeError::Damaged {
                path: path.clone(),
                source: Box::new(source),
            })
        };
        let stored = parse()?;
        let account = Account::builder_with_http(https(settings)?)
            .from_credentials(stored.credentials)
            .await
            .map_err(|e| server("cannot reach the ACME server", e))?;
        if stored.contact != settings.contact {
            let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
            account
                .update_contacts(&contact)
                .await
                .map_err(|e| server("cannot update the account's contacts at", e))?;
            // The credentials are unchanged; only the contacts on record are.
            save(&path, settings, parse()?.credentials)?;
            tracing::info!("ACME account {}: contacts updated", account.id());
        }
        return Ok(account);
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let binding = settings.eab.as_ref().map(eab::key).transpose()?;
    let (account, credentials) = Account::builder_with_http(https(settings)?)
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_owned(),
            binding.as_ref(),
        )
        .await
        .map_err(|e| server("cannot register an account with", e))?;
    save(&path, settings, credentials)?;
    tracing::info!(
        "registered ACME account {} with {directory}; its key is in {}",
        account.id(),
        path.display()
    );
    Ok(account)
}

fn save(
    path: &std::path::Path,
    settings: &Settings,
    credentials: AccountCredentials,
) -> Result<(), AcmeError> {
    let stored = StoredAccount {
        directory: settings.directory.as_str().to_owned(),
        contact: settings.contact.clone(),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&stored).map_err(|source| AcmeError::Damaged {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    storage::write(path, &json)
}

/// What `farmgate check` learns from the ACME server's directory.
#[derive(Debug)]
#[non_exhaustive]
pub enum DirectoryCheck {
    /// The directory answered; these are the profiles it lists (possibly none).
    Ok {
        /// Profile names.
        profiles: Vec<String>,
    },
    /// Something answered at the URL, but not with an ACME directory: the URL is wrong.
    NotAcme(instant_acme::Error),
    /// The server could not be reached; `run` would start and keep retrying.
    Unreachable(instant_acme::Error),
}

/// Fetch the directory of `settings` (without registering anything), for `farmgate check`.
pub async fn check_directory(settings: &Settings) -> Result<DirectoryCheck, AcmeError> {
    let http = https(settings)?;
    let (_, key) = instant_acme::Key::generate_pkcs8().map_err(|source| AcmeError::Server {
        doing: "cannot make a key to read the directory with".into(),
        source,
    })?;
    // Reading an account's parts fetches and parses the directory, and sends nothing else.
    let probe = Account::builder_with_http(http)
        .from_parts(String::new(), key, settings.directory.as_str().to_owned())
        .await;
    Ok(match probe {
        Ok(account) => DirectoryCheck::Ok {
            profiles: account.profiles().map(|p| p.name.to_owned()).collect(),
        },
        Err(e @ instant_acme::Error::Json(_)) => DirectoryCheck::NotAcme(e),
        Err(e) => DirectoryCheck::Unreachable(e),
    })
}
