//! Several gateway replicas behind one hub: [`Gateways`] sends each call to the replica
//! that answered last and, when it cannot be reached, to the next one.
//!
//! Only calls that change nothing go through here (`Lookup`, `GetTrustList`), so a call
//! that may or may not have reached a replica is safe to send again to another. A call
//! fails over when no replica answered it ([`should_fail_over`]): the connection or the
//! handshake failed, or the status is `UNAVAILABLE` or `CANCELLED` without a Huren reason
//! (a replica going down, a connection reset). A status that carries a reason in the
//! [`crate::ERROR_DOMAIN`] is the federation's answer — a refusal, or
//! `PROVINCE_UNAVAILABLE`, which every replica would give alike — and is returned as is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use pb::lookup_client::LookupClient;
use pb::trust_registry_client::TrustRegistryClient;
use tonic::transport::Channel;

use crate::hub::HubError;

/// How long a connection attempt to one replica may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Replica {
    endpoint: String,
    lookup: LookupClient<Channel>,
    registry: TrustRegistryClient<Channel>,
}

/// Lazily connected channels to one or more gateway replicas, with failover. Cheap to
/// clone; clones share which replica is preferred.
#[derive(Clone)]
pub struct Gateways {
    replicas: Arc<[Replica]>,
    preferred: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Gateways {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateways").field("endpoints", &self.endpoints().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// Whether a call that failed with `error` may be sent to another replica: nothing
/// answered it (connection or handshake failure, or `UNAVAILABLE` / `CANCELLED` without a
/// Huren reason). A refusal never fails over.
pub fn should_fail_over(error: &HubError) -> bool {
    match error {
        HubError::Connection(_) => true,
        HubError::Refused { code, reason: None, .. } => {
            matches!(code, tonic::Code::Unavailable | tonic::Code::Cancelled)
        }
        _ => false,
    }
}

/// Splits a `--gateway a,b,…` value into endpoints (spaces around commas are ignored,
/// empty items are dropped).
pub fn split_endpoints(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Gateways {
    /// Channels to every endpoint in `endpoints` (`host:port` or `https://host:port`),
    /// accepting only gateway identities of the federation whose certificates
    /// `revocations` does not revoke. Nothing connects until the first call.
    pub fn connect<S: AsRef<str>>(
        endpoints: &[S],
        identity: &TlsIdentity,
        revocations: Revocations,
    ) -> Result<Self, HubError> {
        if endpoints.is_empty() {
            return Err(HubError::Connection("no gateway endpoint given".into()));
        }
        let config = tls::client_config(identity, ExpectedPeer::AnyGateway, revocations)?;
        let replicas = endpoints
            .iter()
            .map(|endpoint| {
                let endpoint = endpoint.as_ref();
                let channel = tls::channel(endpoint, config.clone(), CONNECT_TIMEOUT)?;
                Ok(Replica {
                    endpoint: endpoint.to_owned(),
                    lookup: LookupClient::new(channel.clone()),
                    registry: TrustRegistryClient::new(channel),
                })
            })
            .collect::<Result<Vec<_>, HubError>>()?;
        Ok(Self { replicas: replicas.into(), preferred: Arc::new(AtomicUsize::new(0)) })
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.replicas.iter().map(|r| r.endpoint.as_str())
    }

    /// The endpoint the next call goes to first (the one that answered last).
    pub fn preferred(&self) -> &str {
        &self.replicas[self.preferred.load(Ordering::Relaxed) % self.replicas.len()].endpoint
    }

    /// `Lookup` on the preferred replica, failing over to the others.
    pub async fn lookup(&self, request: pb::LookupRequest) -> Result<pb::LookupResponse, HubError> {
        Ok(self.lookup_status(request).await?)
    }

    /// As [`Gateways::lookup`], with the last replica's gRPC status as it came.
    pub async fn lookup_status(&self, request: pb::LookupRequest) -> Result<pb::LookupResponse, tonic::Status> {
        let span = tracing::info_span!("huren.hub.lookup", province = %request.province);
        self.call(|replica| {
            let mut client = replica.lookup.clone();
            let mut request = tonic::Request::new(request.clone());
            span.in_scope(|| huren_runtime::tracectx::inject(&mut request));
            let span = span.clone();
            async move { Ok(tracing::Instrument::instrument(client.lookup(request), span).await?.into_inner()) }
        })
        .await
    }

    /// `LookupBatch` on the preferred replica, failing over to the others (a lookup changes
    /// nothing, so resending the whole manifest elsewhere is safe).
    pub async fn lookup_batch(&self, request: pb::LookupBatchRequest) -> Result<pb::LookupBatchResponse, HubError> {
        let span = tracing::info_span!("huren.hub.lookup_batch", tokens = request.tokens.len());
        let response = self
            .call(|replica| {
                let mut client = replica.lookup.clone();
                let mut request = tonic::Request::new(request.clone());
                span.in_scope(|| huren_runtime::tracectx::inject(&mut request));
                let span = span.clone();
                async move { Ok(tracing::Instrument::instrument(client.lookup_batch(request), span).await?.into_inner()) }
            })
            .await?;
        Ok(response)
    }

    /// `GetTrustList` on the preferred replica, failing over to the others.
    pub async fn get_trust_list(&self) -> Result<pb::SignedTrustList, HubError> {
        let list = self
            .call(|replica| {
                let mut client = replica.registry.clone();
                async move { Ok(client.get_trust_list(pb::GetTrustListRequest {}).await?.into_inner()) }
            })
            .await?;
        Ok(list)
    }

    /// Runs `call` on each replica in turn, starting with the preferred one, until one
    /// answers or the error is not one to fail over on; the last error otherwise.
    async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut(&Replica) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let n = self.replicas.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in (0..n).map(|k| (first + k) % n) {
            let replica = &self.replicas[i];
            match call(replica).await {
                Ok(answer) => {
                    if i != first {
                        tracing::info!(gateway = %replica.endpoint, "failed over to this gateway");
                        self.preferred.store(i, Ordering::Relaxed);
                    }
                    return Ok(answer);
                }
                Err(e) if should_fail_over(&HubError::from(e.clone())) => {
                    tracing::debug!(gateway = %replica.endpoint, error = %e, "gateway unreachable; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| tonic::Status::unavailable("no gateway endpoint given")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt as _};

    #[test]
    fn only_unanswered_calls_fail_over() {
        assert!(should_fail_over(&HubError::Connection("connection refused".into())));
        assert!(should_fail_over(&HubError::from(tonic::Status::unavailable("connection reset"))));
        assert!(should_fail_over(&HubError::from(tonic::Status::cancelled("h2 stream reset"))));

        let with_reason = |code, reason: &str| {
            let details = ErrorDetails::with_error_info(reason, crate::ERROR_DOMAIN, std::collections::HashMap::new());
            HubError::from(tonic::Status::with_error_details(code, "answered", details))
        };
        assert!(!should_fail_over(&with_reason(tonic::Code::Unavailable, "PROVINCE_UNAVAILABLE")));
        assert!(!should_fail_over(&with_reason(tonic::Code::PermissionDenied, "HUB_NOT_REGISTERED")));
        assert!(!should_fail_over(&with_reason(tonic::Code::NotFound, "TOKEN_UNKNOWN")));
        assert!(!should_fail_over(&HubError::from(tonic::Status::permission_denied("no"))));
        assert!(!should_fail_over(&HubError::from(tonic::Status::deadline_exceeded("slow"))));
    }

    #[test]
    fn a_gateway_list_splits_on_commas() {
        assert_eq!(split_endpoints("a:1, b:2,,https://c:3 "), ["a:1", "b:2", "https://c:3"]);
        assert!(split_endpoints(" , ").is_empty());
    }
}
