//! State shared across gateway replicas through Redis, with in-process fallbacks.
//!
//! - The attestation cache: signed minimal attestations only, keyed by a hash of
//!   (province, purpose, token) — never a token in clear — with a TTL no longer than the
//!   attestation's own expiry or the retention policy's cache cap. Each entry
//!   ([`CachedAttestation`]) carries the serials of the node certificate chain that served
//!   it (certificate serials, no personal data), so every replica drops it, unserved, once
//!   the trust list it holds revokes that certificate or its province CA.
//! - Verified once: beside the cache, in process, what this replica has already verified
//!   ([`Verified`]) for the exact attestation bytes a cache entry holds, so a hit
//!   re-checks only what can change ([`Verified::recheck`]) and never the signature again.
//!   Keyed like the cache, held no longer than the cache entry, bounded, swept and purged
//!   with it.
//! - Per-hub counters (request rate, unknown-token misses) over fixed windows.
//! - Trust-list fan-out: an upload taken by one replica is published to the others.
//!
//! Redis is optional and never a single point of failure: every operation has a short
//! timeout, and on any error the in-process cache and counters carry on (each replica
//! then limits on its own) and the state is reported as degraded. While Redis is known to
//! be down no lookup waits on it: every operation goes straight to the in-process
//! fallback, and a background probe (`PING`) marks Redis up again once it answers (the
//! connection manager reconnects by itself).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huren_pki::Verified;
use huren_proto::pb;
use huren_runtime::live::{LiveTrust, TaskGuard};
use prost::Message;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

/// Longest a Redis operation may take before the gateway falls back.
const REDIS_TIMEOUT: Duration = Duration::from_millis(150);
/// Longest a connection attempt or a probe may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between probes while Redis is down.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Entries the in-process cache holds at most.
const LOCAL_CACHE_CAPACITY: usize = 200_000;
/// How often expired in-process cache entries and counters are dropped.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Whether Redis is configured and answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    /// No Redis configured: in-process cache and local limits by design.
    Off,
    /// Configured and answering: shared cache and limits in use.
    Up,
    /// Configured but failing: in-process fallbacks in use.
    Degraded,
}

struct RedisLink {
    client: redis::Client,
    conn: tokio::sync::RwLock<Option<ConnectionManager>>,
    up: AtomicBool,
    /// The state as it changes (health, tests).
    state: tokio::sync::watch::Sender<RedisState>,
    /// Wakes the probe when Redis goes down.
    went_down: tokio::sync::Notify,
}

impl RedisLink {
    fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Records whether Redis answers; logs and publishes a change.
    fn set_up(&self, up: bool, why: &str) {
        if self.up.swap(up, Ordering::SeqCst) == up {
            return;
        }
        if up {
            tracing::info!("redis up; shared cache and limits in use");
        } else {
            tracing::warn!(cause = why, "redis down; using in-process cache and local limits until it answers again");
            self.went_down.notify_one();
        }
        self.state.send_replace(if up { RedisState::Up } else { RedisState::Degraded });
    }

    fn manager_config() -> redis::aio::ConnectionManagerConfig {
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500))
    }

    /// Connects if no connection manager exists yet, else `PING`s through it; marks
    /// Redis up when it answers. Returns whether it did.
    async fn probe(&self) -> bool {
        let existing = self.conn.read().await.clone();
        let answered = match existing {
            None => {
                let connect = ConnectionManager::new_with_config(self.client.clone(), Self::manager_config());
                match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect).await {
                    Ok(Ok(conn)) => {
                        *self.conn.write().await = Some(conn);
                        true
                    }
                    _ => false,
                }
            }
            Some(mut conn) => {
                let ping = redis::cmd("PING");
                let ping = ping.query_async::<String>(&mut conn);
                matches!(tokio::time::timeout(CONNECT_TIMEOUT, ping).await, Ok(Ok(_)))
            }
        };
        if answered {
            self.set_up(true, "");
        }
        answered
    }

    /// While Redis is up, waits for it to go down; while down, probes until it answers.
    async fn keep_probing(&self) {
        let mut first = true;
        loop {
            if self.is_up() {
                self.went_down.notified().await;
                continue;
            }
            if !self.probe().await {
                // Down from the start: no transition to log, so say it once here.
                if std::mem::take(&mut first) {
                    tracing::warn!("redis down at start; using in-process cache and local limits until it answers");
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            first = false;
        }
    }
}

/// The gateway's cache and counters.
pub(crate) struct Shared {
    prefix: String,
    redis: Option<Arc<RedisLink>>,
    cache: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    verified: Mutex<HashMap<String, VerifiedEntry>>,
    counters: Mutex<HashMap<String, (u64, Instant)>>,
    /// Time for the counting windows (shared by replicas through Redis, so wall-clock).
    clock: huren_runtime::clock::Clock,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("redis", &self.redis_state()).finish_non_exhaustive()
    }
}

/// An attestation this replica verified, for the exact bytes a cache entry holds.
#[derive(Clone)]
pub(crate) struct VerifiedEntry {
    /// The `SignedAttestation` bytes, as in [`CachedAttestation::attestation`].
    bytes: Arc<[u8]>,
    /// Those bytes, decoded.
    pub(crate) signed: Arc<pb::SignedAttestation>,
    /// What verifying them established.
    pub(crate) verified: Arc<Verified>,
    until: Instant,
}

/// What the cache holds for one lookup (in process and in Redis).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CachedAttestation {
    /// The `SignedAttestation` exactly as the node sent it.
    #[prost(bytes = "vec", tag = "1")]
    pub attestation: Vec<u8>,
    /// Canonical serials of the node's certificate chain (leaf, province CA) on the
    /// connection that answered.
    #[prost(string, repeated, tag = "2")]
    pub node_serials: Vec<String>,
}

/// The cache key for an attestation: a hash, so no token is ever a key. Per hub: a hub's
/// first lookup of a token reaches the home node, which records it in the subject's
/// disclosure log, so a cache hit is only ever that same hub asking again within the cache
/// window, never another hub's check going unrecorded. (`v3`; `v2` entries, shared between
/// hubs, and `v1` entries, bare attestations without the serving node, are never read.)
pub(crate) fn cache_key(prefix: &str, hub: &str, province: &str, purpose: &str, token: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"huren/cache/v3\0");
    h.update(hub.as_bytes());
    h.update([0]);
    h.update(province.as_bytes());
    h.update([0]);
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(token);
    format!("{prefix}att:{}", data_encoding::HEXLOWER.encode(&h.finalize()))
}

impl Shared {
    /// In-process only.
    pub(crate) fn local(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            redis: None,
            cache: Mutex::default(),
            verified: Mutex::default(),
            counters: Mutex::default(),
            clock: huren_runtime::clock::Clock::system(),
        }
    }

    /// With Redis at `url`; connects (and reconnects) in the background once
    /// [`Shared::spawn`] runs.
    pub(crate) fn with_redis(prefix: &str, url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let link = Arc::new(RedisLink {
            client,
            conn: tokio::sync::RwLock::new(None),
            up: AtomicBool::new(false),
            state: tokio::sync::watch::channel(RedisState::Degraded).0,
            went_down: tokio::sync::Notify::new(),
        });
        Ok(Self { redis: Some(link), ..Self::local(prefix) })
    }

    /// Counts windows on `clock` instead of the system clock.
    pub(crate) fn with_clock(mut self, clock: huren_runtime::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn redis_state(&self) -> RedisState {
        match &self.redis {
            None => RedisState::Off,
            Some(link) if link.is_up() => RedisState::Up,
            Some(_) => RedisState::Degraded,
        }
    }

    /// The Redis state as it changes (always `Off` without Redis).
    pub(crate) fn redis_states(&self) -> tokio::sync::watch::Receiver<RedisState> {
        match &self.redis {
            Some(link) => link.state.subscribe(),
            None => tokio::sync::watch::channel(RedisState::Off).1,
        }
    }

    /// Connects, probes while Redis is down, and follows trust-list fan-out. Runs until
    /// the guard is dropped.
    pub(crate) fn spawn(self: &Arc<Self>, live: LiveTrust) -> Option<TaskGuard> {
        let link = self.redis.clone()?;
        let this = self.clone();
        Some(TaskGuard::spawn(async move {
            tokio::join!(link.keep_probing(), this.follow_fan_out(&link, &live));
        }))
    }

    /// Subscribes to the fan-out channel whenever Redis is up, catches up on the newest
    /// list, then offers every list published until the subscription breaks.
    async fn follow_fan_out(&self, link: &RedisLink, live: &LiveTrust) {
        let channel = format!("{}trust-list", self.prefix);
        let latest = format!("{}trust-list:latest", self.prefix);
        let mut states = link.state.subscribe();
        let mut backoff = Duration::from_millis(100);
        loop {
            if states.wait_for(|s| *s == RedisState::Up).await.is_err() {
                return;
            }
            let subscribed = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let mut pubsub = link.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            match subscribed {
                Ok(Ok(mut pubsub)) => {
                    backoff = Duration::from_millis(100);
                    // Subscribed first, then caught up: nothing published in between is missed.
                    let mut p = redis::pipe();
                    p.get(&latest);
                    if let Some((Some(bytes),)) = self.run::<(Option<Vec<u8>>,)>(&p).await {
                        offer(live, &bytes);
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = futures::StreamExt::next(&mut messages).await {
                        offer(live, msg.get_payload_bytes());
                    }
                    link.set_up(false, "fan-out subscription ended");
                }
                Ok(Err(_)) | Err(_) => link.set_up(false, "cannot subscribe to trust-list fan-out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn conn(&self) -> Option<(Arc<RedisLink>, ConnectionManager)> {
        let link = self.redis.clone()?;
        let conn = link.conn.read().await.clone()?;
        Some((link, conn))
    }

    /// Runs `cmd` on Redis, or returns `None` at once while Redis is known to be down
    /// (the probe brings it back), or after [`REDIS_TIMEOUT`] on a failure.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Pipeline) -> Option<T> {
        if !self.redis.as_ref()?.is_up() {
            return None;
        }
        let (link, mut conn) = self.conn().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                link.set_up(false, &e.to_string());
                None
            }
            Err(_) => {
                link.set_up(false, "timeout");
                None
            }
        }
    }

    /// A cached encoded attestation, if any.
    pub(crate) async fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        if self.redis.is_some() {
            let mut p = redis::pipe();
            p.get(key);
            if let Some((value,)) = self.run::<(Option<Vec<u8>>,)>(&p).await {
                return value;
            }
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(key) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    /// Drops every in-process cache entry and rate counter whose time is up at `now`
    /// (expired entries are never served, and are not kept either); returns how many
    /// cache entries went.
    pub(crate) fn sweep_expired_at(&self, now: Instant) -> usize {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let before = cache.len();
        cache.retain(|_, (_, until)| *until > now);
        let swept = before - cache.len();
        drop(cache);
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, e| e.until > now);
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, (_, until)| *until > now);
        swept
    }

    /// Sweeps expired in-process entries every [`SWEEP_EVERY`] until dropped.
    pub(crate) fn spawn_sweeper(self: &Arc<Self>) -> TaskGuard {
        let shared = Arc::downgrade(self);
        TaskGuard::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = shared.upgrade() else { return };
                shared.sweep_expired_at(Instant::now());
            }
        })
    }

    /// In-process cache entries held now.
    #[cfg(test)]
    fn cached_entries(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Caches an encoded attestation for `ttl`.
    pub(crate) async fn cache_put(&self, key: &str, value: &[u8], ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        {
            let now = Instant::now();
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= LOCAL_CACHE_CAPACITY {
                cache.retain(|_, (_, until)| *until > now);
            }
            if cache.len() < LOCAL_CACHE_CAPACITY {
                cache.insert(key.to_owned(), (value.to_vec(), now + ttl));
            }
        }
        if self.redis.is_some() {
            let mut p = redis::pipe();
            p.cmd("SET").arg(key).arg(value).arg("PX").arg(ttl.as_millis().max(1) as u64).ignore();
            let _ = self.run::<()>(&p).await;
        }
    }

    /// Drops a cached attestation (here and in Redis) that the node's answer overturned.
    pub(crate) async fn cache_delete(&self, key: &str) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        self.forget_verified(key);
        if self.redis.is_some() {
            let mut p = redis::pipe();
            p.del(key).ignore();
            let _ = self.run::<()>(&p).await;
        }
    }

    /// What this replica verified for `key`, if it was exactly `bytes` (a cache entry
    /// another replica rewrote since is verified afresh).
    pub(crate) fn verified(&self, key: &str, bytes: &[u8]) -> Option<VerifiedEntry> {
        let memo = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        memo.get(key).filter(|e| *e.bytes == *bytes && e.until > Instant::now()).cloned()
    }

    /// Remembers that `signed` (encoded as `bytes`) verified, for as long as its cache
    /// entry lives (`ttl`).
    pub(crate) fn remember_verified(
        &self,
        key: &str,
        bytes: &[u8],
        signed: pb::SignedAttestation,
        verified: Verified,
        ttl: Duration,
    ) -> VerifiedEntry {
        let now = Instant::now();
        let entry = VerifiedEntry {
            bytes: bytes.into(),
            signed: Arc::new(signed),
            verified: Arc::new(verified),
            until: now + ttl,
        };
        if ttl.is_zero() {
            return entry;
        }
        let mut memo = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= LOCAL_CACHE_CAPACITY {
            memo.retain(|_, e| e.until > now);
        }
        if memo.len() < LOCAL_CACHE_CAPACITY {
            memo.insert(key.to_owned(), entry.clone());
        }
        entry
    }

    /// Forgets what was verified for `key`.
    pub(crate) fn forget_verified(&self, key: &str) {
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    fn window_key(&self, kind: &str, subject: &str, window: Duration) -> String {
        let now_ms = u128::try_from(self.clock.now()).unwrap_or(0) * 1000;
        let index = now_ms / window.as_millis().max(1);
        format!("{}{kind}:{subject}:{index}", self.prefix)
    }

    /// Adds one to a fixed-window counter (shared across replicas when Redis is up);
    /// returns the count in the current window.
    pub(crate) async fn incr(&self, kind: &str, subject: &str, window: Duration) -> u64 {
        self.incr_by(kind, subject, window, 1).await
    }

    /// Adds `n` to a fixed-window counter; returns the count in the current window.
    pub(crate) async fn incr_by(&self, kind: &str, subject: &str, window: Duration, n: u64) -> u64 {
        let key = self.window_key(kind, subject, window);
        if self.redis.is_some() {
            let mut p = redis::pipe();
            p.incr(&key, n).cmd("PEXPIRE").arg(&key).arg((window.as_millis() * 2) as u64).ignore();
            if let Some((n,)) = self.run::<(u64,)>(&p).await {
                return n;
            }
        }
        self.local_add(&key, n, window)
    }

    /// The count in the current window.
    pub(crate) async fn count(&self, kind: &str, subject: &str, window: Duration) -> u64 {
        let key = self.window_key(kind, subject, window);
        if self.redis.is_some() {
            let mut p = redis::pipe();
            p.get(&key);
            if let Some((n,)) = self.run::<(Option<u64>,)>(&p).await {
                return n.unwrap_or(0);
            }
        }
        self.local_add(&key, 0, window)
    }

    fn local_add(&self, key: &str, n: u64, window: Duration) -> u64 {
        let now = Instant::now();
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if counters.len() > 100_000 {
            counters.retain(|_, (_, until)| *until > now);
        }
        let entry = counters.entry(key.to_owned()).or_insert((0, now + window * 2));
        entry.0 += n;
        entry.0
    }

    /// Deletes every cached attestation and counter, in process and under the prefix in
    /// Redis (the sunset); returns how many Redis keys went.
    pub(crate) async fn purge_all(&self) -> u64 {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let Some((_, mut conn)) = self.conn().await else { return 0 };
        let pattern = format!("{}*", self.prefix);
        let keys: Vec<String> = {
            let iter: Result<redis::AsyncIter<'_, String>, _> =
                redis::AsyncCommands::scan_match(&mut conn, &pattern).await;
            match iter {
                Ok(mut iter) => {
                    let mut keys = Vec::new();
                    while let Some(Ok(k)) = iter.next_item().await {
                        keys.push(k);
                    }
                    keys
                }
                Err(e) => {
                    tracing::warn!(error = %e, "redis scan failed during sunset purge");
                    return 0;
                }
            }
        };
        let mut deleted = 0;
        for chunk in keys.chunks(500) {
            let n: Result<u64, _> = redis::AsyncCommands::del(&mut conn, chunk).await;
            deleted += n.unwrap_or(0);
        }
        deleted
    }

    /// Tells the other replicas about a newly accepted trust list.
    pub(crate) async fn publish_trust_list(&self, signed: &pb::SignedTrustList) {
        if self.redis.is_none() {
            return;
        }
        let bytes = signed.encode_to_vec();
        let mut p = redis::pipe();
        p.set(format!("{}trust-list:latest", self.prefix), &bytes)
            .ignore()
            .publish(format!("{}trust-list", self.prefix), &bytes)
            .ignore();
        if self.run::<()>(&p).await.is_none() {
            tracing::warn!("trust list not fanned out through redis; replicas follow via their own uploads/watch");
        }
    }
}

fn offer(live: &LiveTrust, bytes: &[u8]) {
    match pb::SignedTrustList::decode(bytes) {
        Ok(signed) => match live.offer(signed) {
            Ok(seq) => tracing::info!(sequence = seq, "trust list taken from fan-out"),
            Err(huren_runtime::live::OfferError::Rollback { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "trust list from fan-out refused"),
        },
        Err(e) => tracing::warn!(error = %e, "undecodable trust list on fan-out channel"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn expired_cache_entries_are_dropped_not_just_hidden() {
        let shared = Arc::new(Shared::local("huren-sweep-test:"));
        shared.cache_put("short", b"attestation-a", Duration::from_secs(30)).await;
        shared.cache_put("long", b"attestation-b", Duration::from_secs(300)).await;
        assert_eq!(shared.sweep_expired_at(Instant::now()), 0, "nothing is due yet");
        assert_eq!(shared.cached_entries(), 2);
        // Past the first entry's time it is gone from memory, not merely refused.
        assert_eq!(shared.sweep_expired_at(Instant::now() + Duration::from_secs(31)), 1);
        assert_eq!(shared.cached_entries(), 1);
        assert_eq!(shared.cache_get("long").await.as_deref(), Some(&b"attestation-b"[..]));
        assert_eq!(shared.sweep_expired_at(Instant::now() + Duration::from_secs(301)), 1);
        assert_eq!(shared.cached_entries(), 0);
    }

    /// A Redis stand-in on loopback: reads RESP commands, counts them by name and answers
    /// them in order (`PING` → PONG, `GET` → nil, `INCRBY` → 1, anything else → OK) — but
    /// only while `answering` is true; otherwise it holds the answers back, as a stalled
    /// (SIGSTOPped, partitioned) Redis would.
    struct StallingRedis {
        url: String,
        answering: tokio::sync::watch::Sender<bool>,
        seen: Arc<Mutex<HashMap<String, u64>>>,
    }

    impl StallingRedis {
        async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("redis://{}/", listener.local_addr().unwrap());
            let answering = tokio::sync::watch::channel(true).0;
            let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
            let (answers, counts) = (answering.clone(), seen.clone());
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (read, mut write) = tcp.into_split();
                    let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel::<&'static [u8]>();
                    let counts = counts.clone();
                    tokio::spawn(async move {
                        let mut read = tokio::io::BufReader::new(read);
                        while let Some(command) = read_command(&mut read).await {
                            *counts.lock().unwrap().entry(command.to_ascii_uppercase()).or_default() += 1;
                            let answer: &'static [u8] = match command.to_ascii_uppercase().as_str() {
                                "PING" => b"+PONG\r\n",
                                "GET" => b"$-1\r\n",
                                "INCR" | "INCRBY" => b":1\r\n",
                                _ => b"+OK\r\n",
                            };
                            if queue.send(answer).is_err() {
                                break;
                            }
                        }
                    });
                    let mut answering = answers.subscribe();
                    tokio::spawn(async move {
                        while let Some(answer) = queued.recv().await {
                            if answering.wait_for(|a| *a).await.is_err() || write.write_all(answer).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            Self { url, answering, seen }
        }

        fn seen(&self, command: &str) -> u64 {
            self.seen.lock().unwrap().get(command).copied().unwrap_or(0)
        }
    }

    /// The name of the next RESP command (an array of bulk strings), `None` at the end.
    async fn read_command(read: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> Option<String> {
        let mut line = String::new();
        read.read_line(&mut line).await.ok().filter(|n| *n > 0)?;
        let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
        let mut name = None;
        for _ in 0..n {
            line.clear();
            read.read_line(&mut line).await.ok()?;
            let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
            let mut arg = vec![0; len + 2];
            read.read_exact(&mut arg).await.ok()?;
            name.get_or_insert_with(|| String::from_utf8_lossy(&arg[..len]).into_owned());
        }
        name
    }

    #[tokio::test]
    async fn while_redis_is_down_no_call_waits_on_it_and_a_probe_brings_it_back() {
        let redis = StallingRedis::start().await;
        let shared = Shared::with_redis("t:", &redis.url).unwrap();
        let link = shared.redis.clone().unwrap();
        let mut states = shared.redis_states();
        assert!(link.probe().await, "connects to the stand-in");
        assert_eq!(shared.redis_state(), RedisState::Up);
        assert_eq!(shared.cache_get("t:att:x").await, None);
        assert_eq!(shared.incr("rate", "hub-a", Duration::from_secs(60)).await, 1);
        assert_eq!((redis.seen("GET"), redis.seen("INCRBY")), (1, 1), "served by Redis while up");

        // Redis stalls: the first call waits out its timeout and marks Redis down...
        redis.answering.send_replace(false);
        shared.cache_put("t:att:x", b"signed", Duration::from_secs(60)).await;
        assert_eq!(shared.redis_state(), RedisState::Degraded);
        assert_eq!(*states.borrow_and_update(), RedisState::Degraded);
        // ...and from then on nothing is sent to it: in-process cache and local counters.
        let (gets, incrs) = (redis.seen("GET"), redis.seen("INCRBY"));
        for _ in 0..20 {
            assert_eq!(shared.cache_get("t:att:x").await.as_deref(), Some(&b"signed"[..]), "in-process copy");
            shared.incr("rate", "hub-a", Duration::from_secs(60)).await;
            shared.count("miss", "hub-a", Duration::from_secs(60)).await;
        }
        assert_eq!(
            (redis.seen("GET"), redis.seen("INCRBY")),
            (gets, incrs),
            "calls waited on a Redis known to be down"
        );
        assert_eq!(shared.incr("rate", "hub-a", Duration::from_secs(60)).await, 21, "local counter");

        // The probe finds it answering again; calls go back to Redis.
        assert!(!link.probe().await, "a stalled Redis does not pass the probe");
        redis.answering.send_replace(true);
        assert!(link.probe().await, "the probe reaches Redis again");
        states.wait_for(|s| *s == RedisState::Up).await.unwrap();
        shared.cache_get("t:att:x").await;
        assert_eq!(redis.seen("GET"), gets + 1, "back on Redis");
    }
}
