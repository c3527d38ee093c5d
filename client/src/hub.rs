//! The transport hub's client: online lookups through the gateway and offline QR checks.
//!
//! A hub never takes the gateway's word for a status: it fetches the signed trust list,
//! verifies it against the national root it was configured with, and verifies every
//! attestation itself (signature, key status, validity, token binding, purpose).

use std::path::{Path, PathBuf};

use huren_pki::qr::{QrError, Scanned};
use huren_pki::trust::{AttestationError, TrustListError};
use huren_pki::{unix_now, verify_attestation, Expected, ProvinceCode, TrustList, VerifyError};
use huren_proto::pb;
use huren_runtime::tls::{self, Revocations, TlsIdentity};

use crate::failover::Gateways;
use crate::status::VerifiedStatus;

/// Purpose used when a hub does not say.
pub const DEFAULT_PURPOSE: &str = "transit.general";

/// The `google.rpc.ErrorInfo` domain of Huren's refusal reasons.
pub const ERROR_DOMAIN: &str = huren_runtime::error::DOMAIN;

/// Why a lookup, a trust-list refresh or an offline check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No RPC was answered: the TCP connection or the mutual-TLS handshake failed.
    #[error("could not reach the gateway over mutual TLS (refused certificate, or gateway down): {0}")]
    Connection(String),
    /// The gateway answered with a gRPC error.
    #[error("gateway refused: {code:?}: {message}{}", reason_suffix(.reason.as_deref()))]
    Refused {
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message (with the causes of a transport-level failure, if any).
        message: String,
        /// The machine-readable reason of a `google.rpc.ErrorInfo` detail in the
        /// [`ERROR_DOMAIN`], when the server attached one.
        reason: Option<String>,
    },
    /// The attestation failed one of the verifier's checks.
    #[error("attestation did not verify: {0}")]
    Verify(#[from] VerifyError),
    /// The trust list did not verify, or could not be read or saved.
    #[error("trust list: {0}")]
    TrustList(#[from] TrustListError),
    /// The gateway served an older trust list than the one held (rollback refused).
    #[error("trust list from the gateway is older (sequence {got}) than the one held ({held}); refused")]
    Rollback {
        /// Sequence of the list the gateway served.
        got: u64,
        /// Sequence of the list held.
        held: u64,
    },
    /// The QR string or token is malformed.
    #[error("{0}")]
    Input(#[from] QrError),
    /// The gateway's answer (or the QR) carried no attestation.
    #[error("gateway answered without an attestation")]
    Empty,
    /// The client's TLS configuration or the gateway address is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A `LookupBatch` answer that does not answer each token once.
    #[error("gateway answered {got} tokens of {sent}")]
    BatchAnswers {
        /// Tokens sent.
        sent: usize,
        /// Answers received.
        got: usize,
    },
}

/// Most tokens one [`HubClient::lookup_batch`] may carry (the gateway's `LookupBatch` limit).
pub const MAX_BATCH_TOKENS: usize = 500;

/// `google.rpc.Status` as far as the client reads it; the details go on as they are.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// A per-token refusal of `LookupBatch` as the error a single `Lookup` would have given.
fn batch_refusal(bytes: Vec<u8>) -> HubError {
    match <RpcStatus as prost::Message>::decode(bytes.as_slice()) {
        Ok(s) => HubError::from(tonic::Status::with_details(tonic::Code::from(s.code), s.message, bytes.into())),
        Err(_) => HubError::Empty,
    }
}

fn reason_suffix(reason: Option<&str>) -> String {
    reason.map(|r| format!(" (reason {r})")).unwrap_or_default()
}

impl HubError {
    /// The gRPC code of a refusal, if the gateway refused.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            HubError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The `ErrorInfo` reason of a refusal, if the gateway refused and said why.
    pub fn reason(&self) -> Option<&str> {
        match self {
            HubError::Refused { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    /// Whether the connection itself failed (TCP or TLS), before any RPC was answered.
    pub fn is_transport(&self) -> bool {
        matches!(self, HubError::Connection(_))
    }
}

/// The reason of an `ErrorInfo` detail in Huren's domain; `None` when the status carries
/// no (decodable) details or none of ours.
fn refusal_reason(status: &tonic::Status) -> Option<String> {
    huren_runtime::error::details(status).map(|d| d.reason)
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
            HubError::Refused { code: s.code(), message, reason: refusal_reason(&s) }
        }
    }
}

/// Verifies a scanned QR (`HRN1:…`) offline against a saved trust list, at time `now`
/// (Unix seconds).
pub fn verify_offline(trust: &TrustList, qr: &str, now: i64) -> Result<VerifiedStatus, HubError> {
    let Scanned::Qr { province, token, qr } = Scanned::parse(qr)? else {
        return Err(HubError::Input(QrError::Prefix));
    };
    let signed = qr.attestation.ok_or(HubError::Empty)?;
    let attestation = verify_attestation(trust, &signed, &Expected::scanned(&province, &token), now)?;
    Ok(VerifiedStatus::describe(&attestation, trust))
}

/// A hub's connection to the gateway — to one replica or several, with failover
/// ([`HubClient::connect_any`]).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use huren_client::HubClient;
/// use huren_pki::qr::Scanned;
/// use huren_runtime::tls::TlsIdentity;
///
/// let identity = TlsIdentity::load(
///     "hub/cert.pem".as_ref(),
///     "hub/key.pem".as_ref(),
///     "root/ca.pem".as_ref(),
///     huren_pki::DEFAULT_TRUST_DOMAIN,
/// )?;
/// let mut hub = HubClient::connect("gateway.example:8443", &identity)?
///     .with_cache("trust-list.bin".as_ref())?;
/// let scanned = Scanned::parse("340000:AAAAAAAAAAAAAAAAAAAAAAAAAA")?;
/// let status = hub.lookup(scanned.province(), scanned.token(), "transit.highway").await?;
/// println!("{}", status.line());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HubClient {
    gateways: Gateways,
    root_der: Vec<u8>,
    trust: Option<TrustList>,
    cache: Option<PathBuf>,
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
        Self::connect_any(&[gateway], identity)
    }

    /// Connects lazily to several gateway replicas: each call goes to the one that
    /// answered last and fails over to the next when no replica answered it (connection
    /// or handshake failure, `UNAVAILABLE` or `CANCELLED` without a Huren reason; see
    /// [`crate::should_fail_over`]). A refusal is returned at once, never retried
    /// elsewhere. Lookups and trust-list reads change nothing, so resending one is safe.
    pub fn connect_any<S: AsRef<str>>(gateways: &[S], identity: &TlsIdentity) -> Result<Self, HubError> {
        let revocations = Revocations::default();
        Ok(Self {
            gateways: Gateways::connect(gateways, identity, revocations.clone())?,
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

    /// The trust list held, if any (for offline verification with [`verify_offline`]).
    pub fn trust_list(&self) -> Option<&TrustList> {
        self.trust.as_ref()
    }

    /// Fetches the gateway's trust list, verifies it and keeps it unless it is older than
    /// the one held (rollback protection: [`HubError::Rollback`], and the held list stays).
    pub async fn refresh_trust_list(&mut self) -> Result<&TrustList, HubError> {
        let signed = self.gateways.get_trust_list().await?;
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

    /// Looks a manifest up in one `LookupBatch` call (at most [`MAX_BATCH_TOKENS`] tokens,
    /// each with its province, all for `purpose`) and verifies every answer locally
    /// ([`huren_pki::verify_attestations`]: the verdicts of one-by-one verification, the
    /// signatures checked together). One result per token, in order: its verified status,
    /// or the refusal `lookup` would have returned for it. The outer error is for the call.
    pub async fn lookup_batch(
        &mut self,
        tokens: &[(ProvinceCode, Vec<u8>)],
        purpose: &str,
    ) -> Result<Vec<Result<VerifiedStatus, HubError>>, HubError> {
        if self.trust.is_none() {
            self.refresh_trust_list().await?;
        }
        let request = pb::LookupBatchRequest {
            purpose: purpose.into(),
            tokens: tokens
                .iter()
                .map(|(province, token)| pb::BatchToken { province: province.to_string(), token: token.clone() })
                .collect(),
        };
        let response = self.gateways.lookup_batch(request).await?;
        if response.answers.len() != tokens.len() {
            return Err(HubError::BatchAnswers { sent: tokens.len(), got: response.answers.len() });
        }
        let mut results: Vec<Option<Result<VerifiedStatus, HubError>>> = Vec::new();
        let mut signed = Vec::new();
        for (i, answer) in response.answers.into_iter().enumerate() {
            match answer.answer {
                Some(pb::token_answer::Answer::Attestation(a)) => {
                    results.push(None);
                    signed.push((i, a));
                }
                Some(pb::token_answer::Answer::Refusal(bytes)) => results.push(Some(Err(batch_refusal(bytes)))),
                None => results.push(Some(Err(HubError::Empty))),
            }
        }
        let verify = |trust: &TrustList| {
            let items: Vec<_> =
                signed.iter().map(|(i, a)| (a, Expected::lookup(&tokens[*i].0, &tokens[*i].1, purpose))).collect();
            huren_pki::verify_attestations(trust, &items, unix_now())
        };
        let mut verdicts = verify(self.trust.as_ref().ok_or(HubError::Empty)?);
        // A key not seen yet: the province may have rotated since our copy; fetch once.
        if verdicts.iter().any(|v| matches!(v, Err(VerifyError::Attestation(AttestationError::UnknownKey { .. })))) {
            self.refresh_trust_list().await?;
            verdicts = verify(self.trust.as_ref().ok_or(HubError::Empty)?);
        }
        let trust = self.trust.as_ref().ok_or(HubError::Empty)?;
        for ((i, _), verdict) in signed.iter().zip(verdicts) {
            results[*i] =
                Some(verdict.map(|v| VerifiedStatus::describe(&v.attestation, trust)).map_err(HubError::Verify));
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Err(HubError::Empty))).collect())
    }

    /// Looks a token up online and verifies the answer locally with
    /// [`huren_pki::verify_attestation`]; fetches the trust list first if none is held.
    pub async fn lookup(
        &mut self,
        province: &ProvinceCode,
        token: &[u8],
        purpose: &str,
    ) -> Result<VerifiedStatus, HubError> {
        if self.trust.is_none() {
            self.refresh_trust_list().await?;
        }
        let request =
            pb::LookupRequest { province: province.to_string(), token: token.to_vec(), purpose: purpose.into() };
        let response = self.gateways.lookup(request).await?;
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
        self.gateways.lookup_status(request).await
    }

    /// The gateway replicas this client talks to.
    pub fn gateways(&self) -> &Gateways {
        &self.gateways
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt as _};

    #[test]
    fn a_refusal_carries_code_message_and_the_huren_reason() {
        let details = ErrorDetails::with_error_info("UNKNOWN_TOKEN", ERROR_DOMAIN, std::collections::HashMap::new());
        let status = tonic::Status::with_error_details(tonic::Code::NotFound, "unknown token", details);
        let err = HubError::from(status);
        assert_eq!(err.code(), Some(tonic::Code::NotFound));
        assert_eq!(err.reason(), Some("UNKNOWN_TOKEN"));
        assert_eq!(err.to_string(), "gateway refused: NotFound: unknown token (reason UNKNOWN_TOKEN)");
    }

    #[test]
    fn a_refusal_without_details_or_from_another_domain_has_no_reason() {
        let err = HubError::from(tonic::Status::permission_denied("purpose not registered"));
        assert_eq!((err.code(), err.reason()), (Some(tonic::Code::PermissionDenied), None));
        assert_eq!(err.to_string(), "gateway refused: PermissionDenied: purpose not registered");

        let details = ErrorDetails::with_error_info("RATE", "example.com", std::collections::HashMap::new());
        let err = HubError::from(tonic::Status::with_error_details(tonic::Code::Unavailable, "busy", details));
        assert_eq!(err.reason(), None);

        let garbled = tonic::Status::with_details(tonic::Code::Internal, "oops", vec![0xff, 0x01].into());
        assert_eq!(HubError::from(garbled).reason(), None, "undecodable details are tolerated");
    }
}
