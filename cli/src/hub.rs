//! The transport hub's client: online lookups through the gateway and offline QR checks.
//!
//! A hub never takes the gateway's word for a status: it fetches the signed trust list,
//! verifies it against the national root it was configured with, and verifies every
//! attestation itself (signature, key status, validity, token binding, purpose).

use std::path::Path;
use std::time::Duration;

use huren_pki::attest::Attestation;
use huren_pki::qr::{QrError, Scanned};
use huren_pki::trust::{AttestationError, TrustListError};
use huren_pki::{unix_now, verify_attestation, Expected, ProvinceCode, TrustList, VerifyError};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use pb::lookup_client::LookupClient;
use pb::trust_registry_client::TrustRegistryClient;
use serde::Serialize;
use tonic::transport::Channel;

/// Purpose used when a hub does not say.
pub const DEFAULT_PURPOSE: &str = "transit.general";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    #[error("could not reach the gateway over mutual TLS (refused certificate, or gateway down): {0}")]
    Connection(String),
    #[error("gateway refused: {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("attestation did not verify: {0}")]
    Verify(#[from] VerifyError),
    #[error("trust list: {0}")]
    TrustList(#[from] TrustListError),
    #[error("trust list from the gateway is older (sequence {got}) than the one held ({held}); refused")]
    Rollback { got: u64, held: u64 },
    #[error("{0}")]
    Input(#[from] QrError),
    #[error("gateway answered without an attestation")]
    Empty,
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl HubError {
    /// The gRPC code of a refusal, if the gateway refused.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            HubError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl HubError {
    /// Whether the connection itself failed (TCP or TLS), before any RPC was answered.
    pub fn is_transport(&self) -> bool {
        matches!(self, HubError::Connection(_))
    }
}

impl From<tonic::Status> for HubError {
    fn from(s: tonic::Status) -> Self {
        // Transport failures carry their cause (TLS alert, refused connection) as sources.
        let mut parts = vec![s.message().to_owned()];
        let mut transport = false;
        let mut source = std::error::Error::source(&s);
        while let Some(e) = source {
            transport |= e.downcast_ref::<tonic::transport::Error>().is_some();
            let part = e.to_string();
            if !parts.contains(&part) {
                parts.push(part);
            }
            source = e.source();
        }
        let message = parts.join(": ");
        if transport {
            HubError::Connection(message)
        } else {
            HubError::Refused { code: s.code(), message }
        }
    }
}

/// A status the hub verified itself, with what the trust list says about it.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedStatus {
    pub province: String,
    pub province_name: String,
    pub status: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub purpose: String,
    pub rule_id: Option<String>,
    pub rule_title: Option<String>,
    pub rule_legal_basis: Option<String>,
    pub rule_exit_condition: Option<String>,
    pub test_recency: String,
    pub trust_list_sequence: u64,
}

impl VerifiedStatus {
    pub fn describe(a: &Attestation, trust: &TrustList) -> Self {
        let rule = a.rule_id.as_deref().and_then(|r| trust.rule(r));
        Self {
            province: a.province.to_string(),
            province_name: trust.province(&a.province).map(|p| p.name.clone()).unwrap_or_default(),
            status: a.status.to_string(),
            issued_at: a.issued_at,
            expires_at: a.expires_at,
            purpose: a.purpose.clone(),
            rule_id: a.rule_id.clone(),
            rule_title: rule.map(|r| r.title.clone()),
            rule_legal_basis: rule.map(|r| r.legal_basis.clone()),
            rule_exit_condition: rule.map(|r| r.exit_condition.clone()),
            test_recency: a.test_recency.as_str_name().trim_start_matches("TEST_RECENCY_").to_owned(),
            trust_list_sequence: trust.sequence(),
        }
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} — issued by {} {} for {}, valid until {}",
            self.status,
            self.province,
            self.province_name,
            self.purpose,
            rfc3339(self.expires_at)
        );
        if let Some(rule) = &self.rule_id {
            s.push_str(&format!(
                "; rule {rule}: {} ({})",
                self.rule_title.as_deref().unwrap_or("?"),
                self.rule_legal_basis.as_deref().unwrap_or("")
            ));
        }
        s
    }
}

/// Unix seconds as an RFC 3339 UTC time.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// Verifies a scanned QR offline against a saved trust list.
pub fn verify_offline(trust: &TrustList, qr: &str, now: i64) -> Result<VerifiedStatus, HubError> {
    let Scanned::Qr { province, token, qr } = Scanned::parse(qr)? else {
        return Err(HubError::Input(QrError::Prefix));
    };
    let signed = qr.attestation.ok_or(HubError::Empty)?;
    let attestation = verify_attestation(trust, &signed, &Expected::scanned(&province, &token), now)?;
    Ok(VerifiedStatus::describe(&attestation, trust))
}

/// A hub's connection to a gateway.
#[derive(Clone)]
pub struct HubClient {
    lookup: LookupClient<Channel>,
    registry: TrustRegistryClient<Channel>,
    root_der: Vec<u8>,
    trust: Option<TrustList>,
    cache: Option<std::path::PathBuf>,
    /// Serials revoked by the trust list held; checked on every handshake with a gateway.
    revocations: Revocations,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient").finish_non_exhaustive()
    }
}

impl HubClient {
    /// Connects lazily to `gateway` (`host:port` or `https://host:port`), accepting only
    /// a gateway identity of the federation whose certificate the trust list held (once
    /// there is one) does not revoke.
    pub fn connect(gateway: &str, identity: &TlsIdentity) -> Result<Self, HubError> {
        let revocations = Revocations::default();
        let config = tls::client_config(identity, ExpectedPeer::AnyGateway, revocations.clone())?;
        let channel = tls::channel(gateway, config, Duration::from_secs(3))?;
        Ok(Self {
            lookup: LookupClient::new(channel.clone()),
            registry: TrustRegistryClient::new(channel),
            root_der: identity.root.to_vec(),
            trust: None,
            cache: None,
            revocations,
        })
    }

    /// Starts from a previously saved trust list (verified against the root).
    pub fn with_trust_list(mut self, trust: TrustList) -> Self {
        self.adopt(trust);
        self
    }

    /// Uses `path` as the trust list cache: starts from it if it exists and verifies,
    /// and writes every newer verified list back to it.
    pub fn with_cache(mut self, path: &Path) -> Result<Self, HubError> {
        if path.exists() {
            self.adopt(TrustList::load(path, &self.root_der)?);
        }
        self.cache = Some(path.to_owned());
        Ok(self)
    }

    /// Holds `trust` from now on, and enforces its revocations on the next handshake.
    fn adopt(&mut self, trust: TrustList) {
        self.revocations.replace(trust.revoked_serials().clone());
        self.trust = Some(trust);
    }

    pub fn trust_list(&self) -> Option<&TrustList> {
        self.trust.as_ref()
    }

    /// Fetches the gateway's trust list, verifies it and keeps it unless it is older than
    /// the one held (rollback protection).
    pub async fn refresh_trust_list(&mut self) -> Result<&TrustList, HubError> {
        let signed = self.registry.get_trust_list(pb::GetTrustListRequest {}).await?.into_inner();
        let fetched = TrustList::verify(signed, &self.root_der)?;
        match &self.trust {
            Some(held) if fetched.sequence() < held.sequence() => {
                return Err(HubError::Rollback { got: fetched.sequence(), held: held.sequence() })
            }
            Some(held) if fetched.sequence() == held.sequence() => {}
            _ => {
                if let Some(path) = &self.cache {
                    fetched.save(path)?;
                }
                self.adopt(fetched);
            }
        }
        self.trust.as_ref().ok_or(HubError::Empty)
    }

    /// Looks a token up online and verifies the answer locally.
    pub async fn lookup(
        &mut self,
        province: &ProvinceCode,
        token: &[u8],
        purpose: &str,
    ) -> Result<VerifiedStatus, HubError> {
        if self.trust.is_none() {
            self.refresh_trust_list().await?;
        }
        let span = tracing::info_span!("huren.hub.lookup", province = %province);
        let mut request = tonic::Request::new(pb::LookupRequest {
            province: province.to_string(),
            token: token.to_vec(),
            purpose: purpose.into(),
        });
        span.in_scope(|| huren_runtime::tracectx::inject(&mut request));
        let response = tracing::Instrument::instrument(self.lookup.lookup(request), span).await?.into_inner();
        let signed = response.attestation.ok_or(HubError::Empty)?;
        let trust = self.trust.as_ref().ok_or(HubError::Empty)?;
        let expected = Expected::lookup(province, token, purpose);
        let attestation = match verify_attestation(trust, &signed, &expected, unix_now()) {
            // A key we have not seen yet: the province may have rotated since our copy of
            // the trust list; fetch the current one once and verify again.
            Err(VerifyError::Attestation(AttestationError::UnknownKey { .. })) => {
                self.refresh_trust_list().await?;
                let trust = self.trust.as_ref().ok_or(HubError::Empty)?;
                verify_attestation(trust, &signed, &expected, unix_now())?
            }
            other => other?,
        };
        let trust = self.trust.as_ref().ok_or(HubError::Empty)?;
        Ok(VerifiedStatus::describe(&attestation, trust))
    }

    /// Raw lookup returning the gateway's answer unverified (for tests and tooling).
    pub async fn lookup_raw(&mut self, request: pb::LookupRequest) -> Result<pb::LookupResponse, tonic::Status> {
        Ok(self.lookup.lookup(request).await?.into_inner())
    }
}
