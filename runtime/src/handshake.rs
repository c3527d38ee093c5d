//! Admission of TLS handshakes: who may hold one of a server's handshake slots, and for
//! how long.
//!
//! A connection that never finishes its handshake (an idle socket, a ClientHello trickled
//! one byte a second) costs the attacker nothing, so slots must not be hoardable:
//! - at most [`HandshakeLimits::max_pending_per_source`] handshakes in progress per source
//!   (an IPv4 address, an IPv6 /64); a connection over that is closed at once;
//! - when all [`HandshakeLimits::max_pending`] slots are taken, a new connection evicts the
//!   oldest handshake in progress (which is closed) instead of waiting behind it;
//! - the deadline for the whole handshake (not per read) shrinks as slots run out: the full
//!   [`HandshakeLimits::timeout`] while at most half the slots are taken, falling linearly
//!   to [`HandshakeLimits::min_timeout`] when all are. It is fixed when the connection is
//!   accepted; older handshakes with a longer deadline are the first evicted anyway.
//!
//! [`Pending`] is the table of handshakes in progress; [`crate::tls::incoming_with`] admits
//! every accepted connection through it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// Limits on TLS handshakes in progress at one server (node or gateway alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Handshakes in progress at once; when all are taken, a new connection evicts the
    /// oldest one.
    pub max_pending: usize,
    /// Handshakes in progress at once from one source (IPv4 address, IPv6 /64); a
    /// connection over this is closed at once.
    pub max_pending_per_source: usize,
    /// Deadline for a whole handshake while at most half the slots are taken.
    pub timeout: Duration,
    /// Deadline for a whole handshake accepted when all slots are taken.
    pub min_timeout: Duration,
}

/// Default of [`HandshakeLimits::max_pending`].
pub const DEFAULT_MAX_PENDING: usize = 512;
/// Default of [`HandshakeLimits::max_pending_per_source`].
pub const DEFAULT_MAX_PENDING_PER_SOURCE: usize = 64;
/// Default of [`HandshakeLimits::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`HandshakeLimits::min_timeout`].
pub const DEFAULT_MIN_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            max_pending: DEFAULT_MAX_PENDING,
            max_pending_per_source: DEFAULT_MAX_PENDING_PER_SOURCE,
            timeout: DEFAULT_TIMEOUT,
            min_timeout: DEFAULT_MIN_TIMEOUT,
        }
    }
}

/// Why a set of [`HandshakeLimits`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidHandshakeLimits(String);

impl HandshakeLimits {
    /// From the config keys `handshake_max_pending`, `handshake_max_pending_per_source`,
    /// `handshake_timeout_ms` and `handshake_min_timeout_ms`, validated; the error names
    /// the key.
    pub fn from_config(
        max_pending: u64,
        max_pending_per_source: u64,
        timeout_ms: u64,
        min_timeout_ms: u64,
    ) -> Result<Self, InvalidHandshakeLimits> {
        let limits = Self {
            max_pending: usize::try_from(max_pending).unwrap_or(usize::MAX),
            max_pending_per_source: usize::try_from(max_pending_per_source).unwrap_or(usize::MAX),
            timeout: Duration::from_millis(timeout_ms),
            min_timeout: Duration::from_millis(min_timeout_ms),
        };
        limits.validate()?;
        Ok(limits)
    }

    /// Checks the limits together.
    pub fn validate(&self) -> Result<(), InvalidHandshakeLimits> {
        let err = |m: &str| Err(InvalidHandshakeLimits(m.to_owned()));
        if !(1..=65_536).contains(&self.max_pending) {
            return err("handshake_max_pending must be within 1..=65536");
        }
        if self.max_pending_per_source == 0 || self.max_pending_per_source > self.max_pending {
            return err("handshake_max_pending_per_source must be within 1..=handshake_max_pending");
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(600) {
            return err("handshake_timeout_ms must be within 100..=600000");
        }
        if self.min_timeout < Duration::from_millis(10) || self.min_timeout > self.timeout {
            return err("handshake_min_timeout_ms must be within 10..=handshake_timeout_ms");
        }
        Ok(())
    }

    /// Deadline for a handshake accepted while `pending` handshakes (itself included) are
    /// in progress: the full timeout up to half the slots, then falling linearly to the
    /// minimum at all of them.
    pub fn deadline(&self, pending: usize) -> Duration {
        let max = self.max_pending.max(1);
        let half = max / 2;
        if pending <= half {
            return self.timeout;
        }
        let over = (pending.min(max) - half) as f64 / (max - half).max(1) as f64;
        let span = self.timeout.saturating_sub(self.min_timeout);
        self.timeout.saturating_sub(span.mul_f64(over)).max(self.min_timeout)
    }
}

/// Where a connection comes from, as far as the per-source cap is concerned: an IPv4
/// address (also when mapped into IPv6), or an IPv6 /64 (what one subscriber gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let mut octets = v6.octets();
                    octets[8..].fill(0);
                    Self(IpAddr::V6(octets.into()))
                }
            },
        }
    }
}

/// The handshakes in progress at one server.
#[derive(Debug)]
pub struct Pending {
    limits: HandshakeLimits,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// In arrival order: the first entry is the oldest, evicted first.
    order: BTreeMap<u64, (Source, oneshot::Sender<()>)>,
    per_source: HashMap<Source, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<oneshot::Sender<()>> {
        let (source, evict) = self.order.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        Some(evict)
    }
}

/// What became of a new connection.
#[derive(Debug)]
pub enum Admission {
    /// It may handshake within `deadline`, holding `slot` meanwhile.
    Admitted {
        /// Its place in the table; dropping it frees the place.
        slot: Slot,
        /// Deadline for its whole handshake.
        deadline: Duration,
        /// Whether the oldest handshake in progress was evicted to make room.
        evicted_oldest: bool,
    },
    /// Its source holds as many handshakes as it may: close it.
    SourceFull,
}

/// A handshake's place in the [`Pending`] table.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    pending: Arc<Pending>,
    evicted: oneshot::Receiver<()>,
}

impl Slot {
    /// Resolves when this handshake is evicted to make room for a newer connection.
    pub async fn evicted(&mut self) {
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pending.lock().remove(self.id);
    }
}

impl Pending {
    /// An empty table under `limits`.
    pub fn new(limits: HandshakeLimits) -> Arc<Self> {
        Arc::new(Self { limits, table: Mutex::new(Table::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves consistent counts (no await inside).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handshakes in progress.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether no handshake is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits a new connection from `ip`: refused if its source is at its cap; otherwise
    /// given a slot, evicting the oldest handshake in progress if every slot is taken.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let source = Source::from(ip);
        let mut table = self.lock();
        if table.per_source.get(&source).copied().unwrap_or(0) >= self.limits.max_pending_per_source {
            return Admission::SourceFull;
        }
        let mut evicted_oldest = false;
        while table.order.len() >= self.limits.max_pending.max(1) {
            let Some(oldest) = table.order.keys().next().copied() else { break };
            if let Some(evict) = table.remove(oldest) {
                let _ = evict.send(());
                evicted_oldest = true;
            }
        }
        let id = table.next;
        table.next += 1;
        let (tx, rx) = oneshot::channel();
        table.order.insert(id, (source, tx));
        *table.per_source.entry(source).or_default() += 1;
        let deadline = self.limits.deadline(table.order.len());
        drop(table);
        Admission::Admitted { slot: Slot { id, pending: self.clone(), evicted: rx }, deadline, evicted_oldest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_source: usize) -> HandshakeLimits {
        HandshakeLimits { max_pending: max, max_pending_per_source: per_source, ..HandshakeLimits::default() }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_deadline_is_full_up_to_half_the_slots_then_shrinks_to_the_minimum() {
        let l = HandshakeLimits::default();
        assert_eq!(l.deadline(1), Duration::from_secs(10));
        assert_eq!(l.deadline(256), Duration::from_secs(10));
        assert_eq!(l.deadline(384), Duration::from_millis(5_500));
        assert_eq!(l.deadline(512), Duration::from_secs(1));
        assert_eq!(l.deadline(10_000), Duration::from_secs(1));
        let one = HandshakeLimits { max_pending: 1, max_pending_per_source: 1, ..l };
        assert_eq!(one.deadline(1), Duration::from_secs(1));
    }

    #[test]
    fn a_source_over_its_cap_is_refused_and_others_are_not() {
        let pending = Pending::new(limits(8, 2));
        let a: Vec<_> = (0..2).map(|_| pending.admit(ip("127.0.0.2"))).collect();
        assert!(a.iter().all(|x| matches!(x, Admission::Admitted { .. })));
        assert!(matches!(pending.admit(ip("127.0.0.2")), Admission::SourceFull));
        assert!(matches!(pending.admit(ip("127.0.0.1")), Admission::Admitted { .. }));
        drop(a);
        assert!(matches!(pending.admit(ip("127.0.0.2")), Admission::Admitted { .. }), "slots come back");
        // One IPv6 /64 is one source; an IPv4-mapped address is its IPv4 address.
        let _v6 = [pending.admit(ip("2001:db8::1")), pending.admit(ip("2001:db8::2:3"))];
        assert!(matches!(pending.admit(ip("2001:db8::ffff")), Admission::SourceFull));
        assert!(matches!(pending.admit(ip("2001:db8:0:1::1")), Admission::Admitted { .. }));
        assert_eq!(Source::from(ip("::ffff:127.0.0.2")), Source::from(ip("127.0.0.2")));
    }

    #[tokio::test]
    async fn a_new_connection_evicts_the_oldest_when_all_slots_are_taken() {
        let pending = Pending::new(limits(3, 3));
        let mut slots = Vec::new();
        for _ in 0..3 {
            match pending.admit(ip("127.0.0.2")) {
                Admission::Admitted { slot, evicted_oldest: false, .. } => slots.push(slot),
                other => panic!("{other:?}"),
            }
        }
        let Admission::Admitted { slot: _newest, evicted_oldest: true, deadline } = pending.admit(ip("127.0.0.1"))
        else {
            panic!("not admitted")
        };
        assert_eq!(deadline, HandshakeLimits::default().min_timeout, "all slots taken: the shortest deadline");
        assert_eq!(pending.len(), 3);
        slots[0].evicted().await; // the oldest is told, and only it
        assert!(slots[1].evicted.try_recv().is_err() && slots[2].evicted.try_recv().is_err());
        drop(slots);
        assert_eq!(pending.len(), 1, "an evicted slot is not freed twice");
    }

    #[test]
    fn limits_are_validated() {
        assert!(HandshakeLimits::default().validate().is_ok());
        assert_eq!(HandshakeLimits::from_config(512, 64, 10_000, 1_000), Ok(HandshakeLimits::default()));
        for (args, key) in [
            ((0, 1, 10_000, 1_000), "handshake_max_pending "),
            ((8, 9, 10_000, 1_000), "handshake_max_pending_per_source"),
            ((8, 0, 10_000, 1_000), "handshake_max_pending_per_source"),
            ((8, 8, 50, 10), "handshake_timeout_ms"),
            ((8, 8, 1_000, 2_000), "handshake_min_timeout_ms"),
        ] {
            let err = HandshakeLimits::from_config(args.0, args.1, args.2, args.3).unwrap_err();
            assert!(err.to_string().starts_with(key), "{args:?}: {err}");
        }
    }
}
