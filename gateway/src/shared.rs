//! State shared across gateway replicas through Redis, with in-process fallbacks.
//!
//! - The attestation cache: signed minimal attestations only, keyed by a hash of
//!   (province, purpose, token) — never a token in clear — with a TTL no longer than the
//!   attestation's own expiry or the retention policy's cache cap.
//! - Per-hub counters (request rate, unknown-token misses) over fixed windows.
//! - Trust-list fan-out: an upload taken by one replica is published to the others.
//!
//! Redis is optional and never a single point of failure: every operation has a short
//! timeout, and on any error the in-process cache and counters carry on (each replica
//! then limits on its own), the state is reported as degraded, and the connection
//! manager reconnects in the background.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huren_pki::live::{LiveTrust, TaskGuard};
use huren_proto::pb;
use prost::Message;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

/// Longest a Redis operation may take before the gateway falls back.
const REDIS_TIMEOUT: Duration = Duration::from_millis(150);
/// Entries the in-process cache holds at most.
const LOCAL_CACHE_CAPACITY: usize = 200_000;

/// Whether Redis is configured and answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    /// No Redis configured: in-process cache and local limits by design.
    Off,
    Up,
    /// Configured but failing: in-process fallbacks in use.
    Degraded,
}

struct RedisLink {
    client: redis::Client,
    conn: tokio::sync::RwLock<Option<ConnectionManager>>,
    up: AtomicBool,
}

/// The gateway's cache and counters.
pub struct Shared {
    prefix: String,
    redis: Option<Arc<RedisLink>>,
    cache: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    counters: Mutex<HashMap<String, (u64, Instant)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("redis", &self.redis_state()).finish_non_exhaustive()
    }
}

/// The cache key for an attestation: a hash, so no token is ever a key.
pub fn cache_key(prefix: &str, province: &str, purpose: &str, token: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"huren/cache/v1\0");
    h.update(province.as_bytes());
    h.update([0]);
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(token);
    format!("{prefix}att:{}", data_encoding::HEXLOWER.encode(&h.finalize()))
}

impl Shared {
    /// In-process only.
    pub fn local(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned(), redis: None, cache: Mutex::default(), counters: Mutex::default() }
    }

    /// With Redis at `url`; connects (and reconnects) in the background.
    pub fn with_redis(prefix: &str, url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let link = Arc::new(RedisLink { client, conn: tokio::sync::RwLock::new(None), up: AtomicBool::new(false) });
        Ok(Self { redis: Some(link), ..Self::local(prefix) })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn redis_state(&self) -> RedisState {
        match &self.redis {
            None => RedisState::Off,
            Some(link) if link.up.load(Ordering::Relaxed) => RedisState::Up,
            Some(_) => RedisState::Degraded,
        }
    }

    /// Keeps trying to connect until a connection manager exists (it then reconnects by
    /// itself), and follows trust-list fan-out. Runs until the guard is dropped.
    pub fn spawn(self: &Arc<Self>, live: LiveTrust) -> Option<TaskGuard> {
        let link = self.redis.clone()?;
        let channel = format!("{}trust-list", self.prefix);
        let latest = format!("{}trust-list:latest", self.prefix);
        Some(TaskGuard::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                if link.conn.read().await.is_none() {
                    match tokio::time::timeout(Duration::from_secs(2), ConnectionManager::new(link.client.clone()))
                        .await
                    {
                        Ok(Ok(conn)) => {
                            *link.conn.write().await = Some(conn);
                            link.up.store(true, Ordering::Relaxed);
                            tracing::info!("redis connected");
                        }
                        _ => link.up.store(false, Ordering::Relaxed),
                    }
                }
                // Catch up on the newest list, then follow the channel until it breaks.
                if let Some(mut conn) = link.conn.read().await.clone() {
                    let bytes: Result<Option<Vec<u8>>, _> =
                        tokio::time::timeout(REDIS_TIMEOUT, redis::AsyncCommands::get(&mut conn, &latest))
                            .await
                            .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "timeout"))));
                    if let Ok(Some(bytes)) = bytes {
                        offer(&live, &bytes);
                    }
                }
                if let Ok(mut pubsub) = link.client.get_async_pubsub().await {
                    if pubsub.subscribe(&channel).await.is_ok() {
                        backoff = Duration::from_millis(100);
                        let mut messages = pubsub.on_message();
                        while let Some(msg) = futures::StreamExt::next(&mut messages).await {
                            let bytes: Vec<u8> = msg.get_payload_bytes().to_vec();
                            offer(&live, &bytes);
                        }
                    }
                }
                link.up.store(false, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }))
    }

    async fn conn(&self) -> Option<(Arc<RedisLink>, ConnectionManager)> {
        let link = self.redis.clone()?;
        let conn = link.conn.read().await.clone()?;
        Some((link, conn))
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Pipeline) -> Option<T> {
        let (link, mut conn) = self.conn().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                link.up.store(true, Ordering::Relaxed);
                Some(v)
            }
            Ok(Err(e)) => {
                if link.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis failing; using in-process cache and local limits");
                }
                None
            }
            Err(_) => {
                if link.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!("redis timing out; using in-process cache and local limits");
                }
                None
            }
        }
    }

    /// A cached encoded attestation, if any.
    pub async fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
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

    /// Caches an encoded attestation for `ttl`.
    pub async fn cache_put(&self, key: &str, value: &[u8], ttl: Duration) {
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

    fn window_key(&self, kind: &str, subject: &str, window: Duration) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let index = now.as_millis() / window.as_millis().max(1);
        format!("{}{kind}:{subject}:{index}", self.prefix)
    }

    /// Adds one to a fixed-window counter (shared across replicas when Redis is up);
    /// returns the count in the current window.
    pub async fn incr(&self, kind: &str, subject: &str, window: Duration) -> u64 {
        let key = self.window_key(kind, subject, window);
        if self.redis.is_some() {
            let mut p = redis::pipe();
            p.incr(&key, 1u64).cmd("PEXPIRE").arg(&key).arg((window.as_millis() * 2) as u64).ignore();
            if let Some((n,)) = self.run::<(u64,)>(&p).await {
                return n;
            }
        }
        self.local_add(&key, 1, window)
    }

    /// The count in the current window.
    pub async fn count(&self, kind: &str, subject: &str, window: Duration) -> u64 {
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
    pub async fn purge_all(&self) -> u64 {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let Some((_, mut conn)) = self.conn().await else { return 0 };
        let pattern = format!("{}*", self.prefix);
        let keys: Vec<String> = {
            let iter: Result<redis::AsyncIter<String>, _> = redis::AsyncCommands::scan_match(&mut conn, &pattern).await;
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
    pub async fn publish_trust_list(&self, signed: &pb::SignedTrustList) {
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
            Err(huren_pki::live::OfferError::Rollback { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "trust list from fan-out refused"),
        },
        Err(e) => tracing::warn!(error = %e, "undecodable trust list on fan-out channel"),
    }
}
