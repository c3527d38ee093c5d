//! What is about to expire: certificates, attestation keys, the trust list itself.
//!
//! Pure functions over a trust list and a party's own chain; servers call [`warn`]
//! periodically so operators see expiries in their logs well ahead of time. An expired
//! trust list degrades (a warning, service continues on the last good copy) rather
//! than stopping anything.

use std::time::Duration;

use huren_proto::pb;

use crate::tls::TlsIdentity;
use crate::trust::TrustList;

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
            if let Ok(not_after) = crate::ca::not_after(cert.as_ref()) {
                let what =
                    if i == 0 { format!("certificate {}", own.identity) } else { "issuing CA certificate".into() };
                out.push(Expiry { what, seconds_left: not_after - now, warn_within: WARN_AHEAD_SECS });
            }
        }
        if let Ok(not_after) = crate::ca::not_after(own.root.as_ref()) {
            out.push(Expiry {
                what: "national root certificate".into(),
                seconds_left: not_after - now,
                warn_within: WARN_AHEAD_SECS,
            });
        }
    }
    for p in trust.provinces() {
        if let Ok(not_after) = crate::ca::not_after(&p.ca_cert_der) {
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
            warn(own.as_ref(), &live.current(), crate::unix_now());
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
            for e in report(own.as_ref(), &live.current(), crate::unix_now()) {
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
