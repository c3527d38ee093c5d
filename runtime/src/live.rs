//! The trust list as a live, persisted value.
//!
//! [`LiveTrust`] holds the newest verified list a party has seen. A new list is accepted
//! only if the national root signed it, it keeps the trust domain and its sequence is
//! strictly greater (rollback protection); it is persisted (atomically) *before* it is
//! used, so a restart resumes from the last good copy. Subscribers ([`LiveTrust::subscribe`])
//! see every accepted list; the [`Revocations`] handed to TLS verifiers follow it.
//! [`follow`] keeps a `LiveTrust` in step with a gateway's `TrustRegistry.Watch` stream;
//! [`follow_all`] with several gateways' at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huren_proto::pb;
use tokio::sync::watch;

use crate::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use huren_pki::trust::{TrustList, TrustListError};

/// Why an offered trust list was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The list does not verify against the national root, or its content is invalid.
    #[error(transparent)]
    Invalid(#[from] TrustListError),
    /// The list's sequence is not greater than the held one's: a replay or a rollback.
    #[error("trust list sequence {offered} is not newer than the held sequence {held} (rollback refused)")]
    Rollback {
        /// Sequence of the list offered.
        offered: u64,
        /// Sequence of the list held.
        held: u64,
    },
    /// The list is for another federation.
    #[error("trust list is for trust domain {offered:?}, not {held:?}")]
    TrustDomain {
        /// Trust domain of the list offered.
        offered: String,
        /// Trust domain of the list held.
        held: String,
    },
    /// The list is valid and newer but could not be written to the persist path.
    #[error("cannot persist the trust list, so it was not taken: {0}")]
    Persist(TrustListError),
}

struct Inner {
    tx: watch::Sender<Arc<TrustList>>,
    root_der: Vec<u8>,
    persist: Option<PathBuf>,
    revocations: Revocations,
    offer_lock: Mutex<()>,
}

/// A party's live trust list. Cheap to clone.
#[derive(Clone)]
pub struct LiveTrust(Arc<Inner>);

impl std::fmt::Debug for LiveTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTrust").field("sequence", &self.current().sequence()).finish_non_exhaustive()
    }
}

impl LiveTrust {
    /// Starts from `initial`, persisting it to `persist` (if given).
    pub fn new(initial: TrustList, root_der: Vec<u8>, persist: Option<PathBuf>) -> Result<Self, TrustListError> {
        if let Some(path) = &persist {
            initial.save(path)?;
        }
        let revocations = Revocations::new(initial.revoked_serials().clone());
        let (tx, _) = watch::channel(Arc::new(initial));
        Ok(Self(Arc::new(Inner { tx, root_der, persist, revocations, offer_lock: Mutex::new(()) })))
    }

    /// Starts from the newer of the persisted copy and the bootstrap file. Either one
    /// that is unreadable or no longer verifies is ignored (with a warning) as long as the
    /// other is usable; with neither usable, the bootstrap file's error is returned.
    pub fn open(root_der: Vec<u8>, persist: Option<PathBuf>, bootstrap: Option<&Path>) -> Result<Self, TrustListError> {
        let persisted = persist.as_deref().filter(|p| p.exists()).and_then(|p| match TrustList::load(p, &root_der) {
            Ok(list) => Some(list),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "persisted trust list unusable; ignoring it");
                None
            }
        });
        let initial = match (persisted, bootstrap) {
            (Some(p), Some(b)) if b.exists() => match TrustList::load(b, &root_der) {
                Ok(b) if b.sequence() > p.sequence() => b,
                Ok(_) => p,
                Err(e) => {
                    tracing::warn!(path = %b.display(), error = %e, "bootstrap trust list unusable; starting from the persisted copy");
                    p
                }
            },
            (Some(p), _) => p,
            (None, Some(b)) => TrustList::load(b, &root_der)?,
            (None, None) => {
                return Err(TrustListError::Io {
                    path: "(none)".into(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no trust list configured"),
                })
            }
        };
        Self::new(initial, root_der, persist)
    }

    /// The newest accepted list.
    pub fn current(&self) -> Arc<TrustList> {
        self.0.tx.borrow().clone()
    }

    /// A receiver that sees every list accepted from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<TrustList>> {
        self.0.tx.subscribe()
    }

    /// Serials revoked by the current list; live for TLS verifiers.
    pub fn revocations(&self) -> Revocations {
        self.0.revocations.clone()
    }

    /// The national root certificate (DER) every offered list must be signed by.
    pub fn root_der(&self) -> &[u8] {
        &self.0.root_der
    }

    /// Verifies and, if newer, persists and adopts a signed list. Returns the new sequence.
    pub fn offer(&self, signed: pb::SignedTrustList) -> Result<u64, OfferError> {
        let list = TrustList::verify(signed, &self.0.root_der)?;
        let _guard = self.0.offer_lock.lock().unwrap_or_else(|e| e.into_inner());
        let held = self.current();
        if list.trust_domain() != held.trust_domain() {
            return Err(OfferError::TrustDomain {
                offered: list.trust_domain().to_owned(),
                held: held.trust_domain().to_owned(),
            });
        }
        if list.sequence() <= held.sequence() {
            return Err(OfferError::Rollback { offered: list.sequence(), held: held.sequence() });
        }
        if let Some(path) = &self.0.persist {
            list.save(path).map_err(OfferError::Persist)?;
        }
        let sequence = list.sequence();
        self.0.revocations.replace(list.revoked_serials().clone());
        // Counts and codes only: what changed is for `trust-list diff`, not for the logs.
        tracing::info!(
            sequence,
            previous = held.sequence(),
            provinces = list.provinces().count(),
            revoked_serials = list.revoked_serials().len(),
            next_update = list.raw().next_update,
            sunset_at = list.sunset().map(|o| o.effective_at),
            "trust list updated"
        );
        self.0.tx.send_replace(Arc::new(list));
        Ok(sequence)
    }
}

/// Aborts the task it guards when dropped; [`TaskGuard::stop`] also waits for it to end
/// (so whatever it holds, a store say, is released when `stop` returns).
#[derive(Debug)]
pub struct TaskGuard(Option<tokio::task::JoinHandle<()>>);

impl TaskGuard {
    /// Spawns `task` on the runtime; it is aborted when the guard is dropped.
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(Some(tokio::spawn(task)))
    }

    /// Aborts the task and waits until it has ended.
    pub async fn stop(mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Keeps `live` in step with the gateway at `endpoint` (`TrustRegistry.Watch`),
/// reconnecting with a capped backoff. Runs until the guard is dropped.
pub fn follow(live: LiveTrust, endpoint: &str, identity: &TlsIdentity) -> Result<TaskGuard, tls::TlsError> {
    let config = tls::client_config(identity, ExpectedPeer::AnyGateway, live.revocations())?;
    let channel = tls::channel(endpoint, config, Duration::from_secs(3))?;
    let endpoint = endpoint.to_owned();
    Ok(TaskGuard::spawn(async move {
        let mut client = pb::trust_registry_client::TrustRegistryClient::new(channel);
        let mut backoff = Duration::from_millis(100);
        loop {
            let known_sequence = live.current().sequence();
            match client.watch(pb::WatchTrustListRequest { known_sequence }).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(signed)) => {
                                backoff = Duration::from_millis(100);
                                match live.offer(signed) {
                                    Ok(_) | Err(OfferError::Rollback { .. }) => {}
                                    Err(e) => tracing::warn!(%endpoint, error = %e, "trust list from gateway refused"),
                                }
                            }
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(%endpoint, error = %status, "trust list watch ended");
                                break;
                            }
                        }
                    }
                }
                Err(status) => tracing::debug!(%endpoint, error = %status, "trust list watch failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }))
}

/// Keeps `live` in step with every gateway in `endpoints` at once (one [`follow`] each):
/// whichever replica publishes a newer list first, it is taken, and older or equal ones
/// from the others are ignored, so the highest sequence wins. A replica that goes down
/// costs nothing while another one is up.
pub fn follow_all<S: AsRef<str>>(
    live: LiveTrust,
    endpoints: &[S],
    identity: &TlsIdentity,
) -> Result<Vec<TaskGuard>, tls::TlsError> {
    endpoints.iter().map(|endpoint| follow(live.clone(), endpoint.as_ref(), identity)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use huren_pki::ca::Validity;
    use huren_pki::registry::PkiDir as Pki;

    struct Fixture {
        _dir: tempfile::TempDir,
        pki: Pki,
        root: Vec<u8>,
        persist: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(&dir.path().join("pki"), "huren.gov", Validity::days(2)).unwrap();
        pki.add_province(&"340000".parse().unwrap(), "Anhui", &[], Validity::days(2)).unwrap();
        let root = pki.root_cert_der().unwrap();
        let persist = dir.path().join("persisted.bin");
        Fixture { _dir: dir, pki, root, persist }
    }

    #[test]
    fn starts_from_the_newer_copy_and_survives_an_unusable_bootstrap_file() {
        let f = fixture();
        let first = f.pki.sign_trust_list().unwrap();
        first.save(&f.persist).unwrap();
        let second = f.pki.sign_trust_list().unwrap();
        assert!(second.sequence() > first.sequence());
        let bootstrap = f.pki.trust_list_path();

        // The bootstrap file is newer: it wins, and is persisted.
        let live = LiveTrust::open(f.root.clone(), Some(f.persist.clone()), Some(&bootstrap)).unwrap();
        assert_eq!(live.current().sequence(), second.sequence());
        assert_eq!(TrustList::load(&f.persist, &f.root).unwrap().sequence(), second.sequence());

        // A damaged bootstrap file does not stop a node that has a good persisted copy.
        std::fs::write(&bootstrap, b"not a trust list").unwrap();
        let live = LiveTrust::open(f.root.clone(), Some(f.persist.clone()), Some(&bootstrap)).unwrap();
        assert_eq!(live.current().sequence(), second.sequence());

        // With neither usable, the bootstrap file's error is the answer.
        std::fs::write(&f.persist, b"also not a trust list").unwrap();
        let error = LiveTrust::open(f.root.clone(), Some(f.persist.clone()), Some(&bootstrap)).unwrap_err();
        assert!(!error.to_string().is_empty());
    }

    #[test]
    fn offers_of_older_or_equal_lists_are_refused_and_newer_ones_update_revocations() {
        let f = fixture();
        let old = f.pki.sign_trust_list().unwrap();
        let held = f.pki.sign_trust_list().unwrap();
        let live = LiveTrust::new(held.clone(), f.root.clone(), Some(f.persist.clone())).unwrap();

        for offered in [&old, &held] {
            match live.offer(offered.signed().clone()) {
                Err(OfferError::Rollback { offered: o, held: h }) => {
                    assert_eq!((o, h), (offered.sequence(), held.sequence()))
                }
                other => panic!("sequence {} was not refused as a rollback: {other:?}", offered.sequence()),
            }
        }
        assert_eq!(live.current().sequence(), held.sequence());

        let issued = f.pki.issue("hub", "lost-scanner", Validity::days(1)).unwrap();
        let cert = rustls_pki_types::CertificateDer::from(
            huren_pki::ca::pem_to_der(&std::fs::read_to_string(&issued.cert).unwrap()).unwrap(),
        );
        assert!(!live.revocations().any_revoked([&cert]));
        assert_eq!(f.pki.revoke_issued("hub", "lost-scanner").unwrap(), issued.serial_hex);
        let newer = f.pki.sign_trust_list().unwrap();
        assert_eq!(live.offer(newer.signed().clone()).unwrap(), newer.sequence());
        assert!(live.revocations().any_revoked([&cert]), "the next handshake refuses the revoked certificate");
        assert_eq!(TrustList::load(&f.persist, &f.root).unwrap().sequence(), newer.sequence());
    }

    #[test]
    fn a_list_naming_a_serial_in_another_spelling_revokes_the_same_certificate() {
        let f = fixture();
        let held = f.pki.sign_trust_list().unwrap();
        let live = LiveTrust::new(held.clone(), f.root.clone(), None).unwrap();
        let issued = f.pki.issue("hub", "scanner", Validity::days(1)).unwrap();
        let der = huren_pki::ca::pem_to_der(&std::fs::read_to_string(&issued.cert).unwrap()).unwrap();
        let cert = rustls_pki_types::CertificateDer::from(der);
        // What an older registry wrote (a `00` sign octet, upper case, colons): the same integer.
        let padded =
            issued.serial_hex.to_ascii_uppercase().as_bytes().chunks(2).fold(String::from("00"), |mut s, c| {
                s.push(':');
                s.push_str(std::str::from_utf8(c).unwrap());
                s
            });
        let mut list = held.raw().clone();
        list.sequence += 1;
        list.revoked_serials = vec![padded];
        let signed = huren_pki::trust::sign(&list, &f.pki.root().unwrap()).unwrap();
        live.offer(signed).unwrap();
        assert!(live.current().is_revoked(&issued.serial_hex));
        assert!(live.revocations().any_revoked([&cert]), "the padded serial did not revoke the certificate");
    }
}
