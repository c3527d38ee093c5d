//! What is about to expire: certificates, attestation keys, the trust list itself.
//!
//! Pure functions over a trust list and a party's own chain; servers call [`warn`]
//! periodically so operators see expiries in their logs well ahead of time. An expired
//! trust list degrades (a warning, service continues on the last good copy) rather
//! than stopping anything.

use std::time::Duration;

use huren_proto::pb;

use crate::tls::TlsIdentity;
use huren_pki::trust::TrustList;

/// Warn this long before a certificate or key expires.
pub const WARN_AHEAD_SECS: i64 = 14 * 86_400;

/// One thing that expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// What it is, e.g. `certificate spiffe://…/gateway/g1`, `attestation key 340000/ab12…`.
    pub what: String,
    /// Seconds until it expires (negative once expired).
    pub seconds_left: i64,
    /// Warn once fewer seconds than this are left.
    pub warn_within: i64,
}

/// Expiries of the own chain, every province CA and every non-revoked attestation key,
/// and of the trust list's `next_update`.
pub fn report(own: Option<&TlsIdentity>, trust: &TrustList, now: i64) -> Vec<Expiry> {
    let mut out = Vec::new();
    if let Some(own) = own {
        for (i, cert) in own.chain.iter().enumerate() {
            if let Ok(not_after) = huren_pki::ca::not_after(cert.as_ref()) {
                let what =
                    if i == 0 { format!("certificate {}", own.identity) } else { "issuing CA certificate".into() };
                out.push(Expiry { what, seconds_left: not_after - now, warn_within: WARN_AHEAD_SECS });
            }
        }
        if let Ok(not_after) = huren_pki::ca::not_after(own.root.as_ref()) {
            out.push(Expiry {
                what: "national root certificate".into(),
                seconds_left: not_after - now,
                warn_within: WARN_AHEAD_SECS,
            });
        }
    }
    for p in trust.provinces() {
        if let Ok(not_after) = huren_pki::ca::not_after(&p.ca_cert_der) {
            out.push(Expiry {
                what: format!("province CA {}", p.code),
                seconds_left: not_after - now,
                warn_within: WARN_AHEAD_SECS,
            });
        }
        for (kid, k) in &p.keys {
            if k.status != pb::KeyStatus::Revoked {
                out.push(Expiry {
                    what: format!("attestation key {}/{kid}", p.code),
                    seconds_left: k.not_after - now,
                    warn_within: WARN_AHEAD_SECS,
                });
            }
        }
    }
    // The list is meant to be replaced by next_update; past it, it is stale (not invalid).
    out.push(Expiry {
        what: "trust list (next_update)".into(),
        seconds_left: trust.raw().next_update - now,
        warn_within: 0,
    });
    out.sort_by_key(|e| e.seconds_left);
    out
}

/// Logs a warning for everything within its warning window; returns how many.
pub fn warn(own: Option<&TlsIdentity>, trust: &TrustList, now: i64) -> usize {
    let soon: Vec<_> = report(own, trust, now).into_iter().filter(|e| e.seconds_left <= e.warn_within).collect();
    for e in &soon {
        if e.seconds_left <= 0 {
            tracing::warn!(
                what = %e.what,
                expired_secs_ago = -e.seconds_left,
                "expired; continuing on the last good copy where possible"
            );
        } else {
            tracing::warn!(what = %e.what, seconds_left = e.seconds_left, "expires soon");
        }
    }
    soon.len()
}

/// Periodically warns about expiries until the returned guard is dropped.
pub fn spawn_monitor(
    own: Option<TlsIdentity>,
    live: crate::live::LiveTrust,
    every: Duration,
) -> crate::live::TaskGuard {
    crate::live::TaskGuard::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            warn(own.as_ref(), &live.current(), huren_pki::unix_now());
        }
    })
}

/// Registers `huren_expiry_seconds{what=…}` gauges (seconds until each certificate,
/// key and the trust list's next_update expire), computed at each collection.
pub fn register_gauges(meter: &opentelemetry::metrics::Meter, own: Option<TlsIdentity>, live: crate::live::LiveTrust) {
    let live_seq = live.clone();
    meter
        .i64_observable_gauge("huren_expiry")
        .with_description("Seconds until a certificate, attestation key or the trust list expires")
        .with_unit("s")
        .with_callback(move |observer| {
            for e in report(own.as_ref(), &live.current(), huren_pki::unix_now()) {
                observer.observe(e.seconds_left, &[opentelemetry::KeyValue::new("what", e.what)]);
            }
        })
        .build();
    meter
        .u64_observable_gauge("huren_trust_list_sequence")
        .with_description("Sequence number of the trust list in force")
        .with_callback(move |observer| observer.observe(live_seq.current().sequence(), &[]))
        .build();
}

#[cfg(test)]
mod tests {
    use super::*;
    use huren_pki::ca::Validity;
    use huren_pki::registry::PkiDir;

    #[test]
    fn warns_within_fourteen_days_of_an_expiry_and_once_the_list_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::init(dir.path(), "huren.gov", Validity::days(365)).unwrap();
        let code = "340000".parse().unwrap();
        pki.add_province(&code, "Anhui", &[], Validity::days(365)).unwrap();
        let key = pki.add_key(&code, Validity::days(30)).unwrap();
        let trust = pki.sign_trust_list().unwrap();
        let key_ends = trust.province(&code).unwrap().keys[&key.kid()].not_after;
        let now = huren_pki::unix_now();

        // A fresh federation: nothing is near its end.
        assert_eq!(warn(None, &trust, now), 0, "{:?}", report(None, &trust, now));
        // Thirteen days before the 30-day key ends, it (and only it) is due a warning.
        let soon = key_ends - 13 * 86_400;
        let due: Vec<_> = report(None, &trust, soon).into_iter().filter(|e| e.seconds_left <= e.warn_within).collect();
        assert_eq!(due.len(), 2, "the key, and the list past its next_update a week in: {due:?}");
        assert!(due.iter().any(|e| e.what == format!("attestation key 340000/{}", key.kid())), "{due:?}");
        assert!(due.iter().any(|e| e.what == "trust list (next_update)" && e.seconds_left < 0), "{due:?}");
        assert_eq!(warn(None, &trust, soon), 2);
        // Fifteen days before, the key is not yet due; only the (by then stale) list is.
        let early = key_ends - 15 * 86_400;
        assert!(trust.raw().next_update < early, "the list's next_update is a week out");
        let due_early: Vec<_> =
            report(None, &trust, early).into_iter().filter(|e| e.seconds_left <= e.warn_within).collect();
        assert_eq!(due_early.len(), 1, "{due_early:?}");
        assert_eq!(due_early[0].what, "trust list (next_update)");
    }
}
