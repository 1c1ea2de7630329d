//! One order, start to finish, with instant-acme: place it (with the profile, and the
//! certificate it replaces when the CA offers renewal information), answer each authorization's
//! challenge, wait for validation, send a certificate request for a fresh key, download the chain.

use std::time::{Duration, SystemTime};

use farmgate_config::Challenge;
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus, Problem, RetryPolicy,
};

use crate::AcmeError;
use crate::cert::{self, Issued};
use crate::challenge::{Answers, Posted};
use crate::storage::Storage;

/// Longest wait for the CA to validate our answers.
const VALIDATION: Duration = Duration::from_secs(120);
/// Longest wait for the CA to issue once the request is sent.
const ISSUANCE: Duration = Duration::from_secs(120);

/// What to order.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// The directory URL, for messages.
    pub(crate) directory: &'a str,
    pub(crate) domains: &'a [String],
    pub(crate) profile: Option<&'a str>,
    pub(crate) challenge: Challenge,
    /// The certificate this one replaces (ARI), if the CA offers renewal information.
    pub(crate) replaces: Option<CertificateIdentifier<'static>>,
}

/// Order a certificate for `request` and return it with its new key; challenge answers are
/// posted in `answers` and in `storage`.
pub(crate) async fn order(
    account: &Account,
    request: Request<'_>,
    answers: &Answers,
    storage: &Storage,
) -> Result<Issued, AcmeError> {
    let server = |doing: &str, source| AcmeError::Server {
        doing: format!("{doing} ({})", request.directory),
        source,
    };
    let profile = profile(account, &request)?;
    let identifiers: Vec<Identifier> = request
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let new_order = || {
        let order = NewOrder::new(&identifiers);
        match profile {
            Some(p) => order.profile(p),
            None => order,
        }
    };
    let placed = match &request.replaces {
        Some(old) => match account.new_order(&new_order().replaces(old.clone())).await {
            Ok(order) => Ok(order),
            Err(e) => {
                // The CA may refuse the replacement (e.g. already replaced): a plain order works.
                tracing::debug!(
                    "order replacing {old} refused ({}); ordering without `replaces`",
                    crate::error::chain(&e)
                );
                account.new_order(&new_order()).await
            }
        },
        None => account.new_order(&new_order()).await,
    };
    let mut order = placed.map_err(|e| server("cannot place an order", e))?;

    let mut posted = Posted::new(answers, storage);
    let kind = match request.challenge {
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        Challenge::Http01 => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authorization = result.map_err(|e| server("cannot read an authorization", e))?;
        let domain = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::Authorization {
                    domain,
                    status: format!("{other:?}").to_ascii_lowercase(),
                });
            }
        }
        let mut challenge =
            authorization
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError::NoChallenge {
                    domain: domain.clone(),
                    challenge: request.challenge,
                })?;
        let key_authorization = challenge.key_authorization();
        match request.challenge {
            Challenge::Http01 => posted.http01(&challenge.token, key_authorization.as_str())?,
            Challenge::TlsAlpn01 => posted.alpn(
                &domain,
                key_authorization.as_str(),
                cert::alpn_challenge(&domain, key_authorization.digest().as_ref())?,
            )?,
        }
        tracing::debug!("answering {} for {domain}", request.challenge);
        challenge
            .set_ready()
            .await
            .map_err(|e| server("cannot tell the ACME server a challenge is ready", e))?;
    }

    let ready = order
        .poll_ready(&RetryPolicy::new().timeout(VALIDATION))
        .await;
    match ready {
        Ok(OrderStatus::Ready) => {}
        Ok(_) | Err(instant_acme::Error::Api(_)) => {
            return Err(AcmeError::Validation {
                challenge: request.challenge,
                failures: failures(&mut order).await,
            });
        }
        Err(e) => return Err(server("the order did not become ready", e)),
    }
    drop(posted);

    let (csr, key_pem) = cert::request(request.domains)?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| server("cannot send the certificate request", e))?;
    let chain = order
        .poll_certificate(&RetryPolicy::new().timeout(ISSUANCE))
        .await
        .map_err(|e| server("cannot download the certificate", e))?;
    let issued = Issued::from_pem(format!("{}\n{chain}", key_pem.trim_end())).map_err(|e| {
        AcmeError::Issued {
            source: Box::new(e),
        }
    })?;
    if !issued.serves(request.domains, SystemTime::now()) {
        return Err(AcmeError::Issued {
            source: format!(
                "it names {} and is valid until {}; asked for {}",
                issued.names(),
                crate::managed::when(issued.not_after()),
                request.domains.join(", ")
            )
            .into(),
        });
    }
    Ok(issued)
}

/// The profile to order: the configured one if the CA lists it; none (the CA's default, with a
/// warning) if the CA lists no profiles at all; an error if the CA lists others.
fn profile<'a>(account: &Account, request: &Request<'a>) -> Result<Option<&'a str>, AcmeError> {
    let Some(wanted) = request.profile else {
        return Ok(None);
    };
    let offered: Vec<&str> = account.profiles().map(|p| p.name).collect();
    if offered.is_empty() {
        tracing::warn!(
            "{} lists no certificate profiles; ordering its default instead of {wanted:?}",
            request.directory
        );
        return Ok(None);
    }
    if offered.contains(&wanted) {
        Ok(Some(wanted))
    } else {
        Err(AcmeError::UnknownProfile {
            profile: wanted.to_owned(),
            offered: offered.join(", "),
        })
    }
}

/// What the CA said about each failed challenge of an invalid order.
async fn failures(order: &mut Order) -> Vec<(String, Problem)> {
    let mut found = Vec::new();
    if let Some(problem) = &order.state().error {
        found.push(("the order".to_owned(), problem.clone()));
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        let domain = state.identifier().to_string();
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                found.push((domain.clone(), problem.clone()));
            }
        }
    }
    found
}
