//! The node's status projection in Redis: the same records, log and projection as the
//! redb [`crate::store::Store`], behind the same [`NodeStore`] trait.
//!
//! Every key lives under one prefix (by default `huren-node:<province>:`):
//!
//! | key               | type       | holds                                                   |
//! |-------------------|------------|---------------------------------------------------------|
//! | `status`          | hash       | pseudonymous subject reference → encoded `StatusRecord` |
//! | `token`           | hash       | SHA-256 of a token → encoded `TokenRecord`              |
//! | `log:entries`     | hash       | log index (decimal) → encoded `LogEntry`                |
//! | `log:hashes`      | hash       | log index (decimal) → RFC 9162 leaf hash                |
//! | `log:subjects`    | sorted set | commitment ‖ index (big-endian), all score 0            |
//! | [`META_KEY`]      | hash       | salt, frontier, first_available, signed_sizes, sunset_receipt |
//!
//! A status change, its log entry, leaf hash, subject index entry and the new frontier
//! are written in one `MULTI`/`EXEC` under `WATCH` of the status hash and the meta hash
//! (which holds the frontier): another writer on the same prefix makes the transaction
//! abort and it is retried from fresh reads, so no two entries get one index and no
//! acknowledged change is lost or left unlogged. Purges delete a status or token only if
//! it still holds the bytes that were judged (a compare-and-delete script), so a change
//! made meanwhile survives. Durability across a Redis crash is Redis's own: run it with
//! `appendonly yes` and `appendfsync always` (the store warns at open otherwise).
//!
//! [`NodeStore::rewrite`] does nothing here: a deleted key or field is gone from the
//! keyspace at once, and what Redis's persistence files still hold is rewritten by
//! Redis itself (`BGREWRITEAOF`, the next RDB snapshot), outside the node's reach.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use huren_proto::pb;
use huren_translog::{Frontier, Hash, LeafSource, ProofError};
use prost::Message;

use crate::store::{
    decode_sizes, deletion_leaf, encode_sizes, log_entry, thin_sizes, NodeStore, PurgeOutcome, PurgePlan, StatusRecord,
    StoreError, TokenRecord, PURGE_BATCH,
};

/// The key (under the prefix) holding the commitment salt, the log's frontier and the
/// other node metadata; after a sunset it holds no subject data and no salt.
pub const META_KEY: &str = "meta";

/// How often a write transaction is retried when another writer changed what it read.
const MAX_ATTEMPTS: usize = 64;
/// Bound on connecting and on each reply: a hung Redis fails the call (the client is told
/// to retry) instead of holding a blocking thread forever. A reply lost to it may still
/// have been applied; a retried status change is then logged twice, never lost.
const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Fields asked for per `HMGET`.
const READ_CHUNK: u64 = 4096;

/// Deletes `ARGV[2i-1]` from hash `KEYS[1]` if it still holds `ARGV[2i]`; returns one flag per pair.
const COMPARE_AND_DELETE: &str = r"
local out = {}
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
";

/// A record a purge deletes: its kind, time and deletion-commitment leaf.
type Deletion = (&'static str, i64, Hash);
/// Whether a purge deletes a hash field (given its name and value), and as what.
type Judge<'a> = dyn Fn(&[u8], &[u8]) -> Result<Option<Deletion>, StoreError> + 'a;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The default key prefix of a province's node store.
pub fn default_prefix(province: &str) -> String {
    format!("huren-node:{province}:")
}

/// Handle to a node store in Redis. One connection, used by one call at a time (calls
/// run on blocking threads); it is opened again after a failure.
pub struct RedisStore {
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
    prefix: String,
    salt: [u8; 32],
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

struct Keys {
    status: String,
    token: String,
    entries: String,
    hashes: String,
    subjects: String,
    meta: String,
}

/// Leaf hashes of the first `size` entries, fetched a chunk at a time as a proof asks
/// for them (so memory stays bounded however long the log). A missing leaf is an error
/// only when a proof needs it; a Redis failure is kept apart in `failed`, so that it is
/// never mistaken for a purged leaf.
struct LazyLeaves<'a> {
    store: &'a RedisStore,
    size: u64,
    chunk: std::cell::RefCell<(u64, Vec<Option<Hash>>)>,
    failed: std::cell::RefCell<Option<StoreError>>,
}

impl LazyLeaves<'_> {
    fn fetch(&self, start: u64) -> Result<Vec<Option<Hash>>, StoreError> {
        let end = self.size.min(start + READ_CHUNK);
        let raw = self.store.with(|conn| hmget_range(conn, &self.store.keys().hashes, start, end))?;
        raw.into_iter()
            .zip(start..)
            .map(|(v, i)| {
                v.map(|b| <Hash>::try_from(b.as_slice()).map_err(|_| corrupt(format!("log leaf {i}")))).transpose()
            })
            .collect()
    }

    /// The proof's result, unless reading a leaf failed meanwhile.
    fn checked<T>(&self, result: Result<T, ProofError>) -> Result<Result<T, ProofError>, StoreError> {
        match self.failed.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }
}

impl LeafSource for LazyLeaves<'_> {
    fn leaf_count(&self) -> u64 {
        self.size
    }
    fn leaf_hash(&self, index: u64) -> Result<Hash, ProofError> {
        let mut chunk = self.chunk.borrow_mut();
        let start = index - index % READ_CHUNK;
        if chunk.0 != start || chunk.1.is_empty() {
            match self.fetch(start) {
                Ok(leaves) => *chunk = (start, leaves),
                Err(e) => {
                    let message = e.to_string();
                    *self.failed.borrow_mut() = Some(e);
                    return Err(ProofError::Source(message));
                }
            }
        }
        chunk
            .1
            .get((index - start) as usize)
            .copied()
            .flatten()
            .ok_or_else(|| ProofError::Source(format!("log leaf {index} is missing")))
    }
}

fn subject_member(commitment: &[u8], index: u64) -> Vec<u8> {
    let mut m = commitment.to_vec();
    m.extend_from_slice(&index.to_be_bytes());
    m
}

fn frontier_of(bytes: Option<Vec<u8>>) -> Result<Frontier, StoreError> {
    match bytes {
        Some(b) => Frontier::from_bytes(&b).map_err(corrupt),
        None => Ok(Frontier::new()),
    }
}

impl RedisStore {
    /// Connects to `url` and opens (or creates) the store under `prefix`, creating the
    /// commitment salt if there is none.
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let open_err = |m: String| StoreError::Open { path: format!("{url} {prefix}*"), message: m };
        let client = redis::Client::open(url).map_err(|e| open_err(e.to_string()))?;
        let mut conn = connect(&client, prefix).map_err(|e| open_err(e.to_string()))?;
        let meta = format!("{prefix}{META_KEY}");
        let mut fresh = [0u8; 32];
        getrandom::getrandom(&mut fresh).map_err(|e| open_err(format!("randomness unavailable: {e}")))?;
        // HSETNX: of two nodes starting at once on a fresh prefix, one salt wins.
        redis::cmd("HSETNX").arg(&meta).arg("salt").arg(fresh.as_slice()).exec(&mut conn).map_err(backend)?;
        let salt: Option<Vec<u8>> = redis::cmd("HGET").arg(&meta).arg("salt").query(&mut conn).map_err(backend)?;
        let salt =
            salt.and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok()).ok_or_else(|| corrupt("commitment salt"))?;
        warn_if_not_durable(&mut conn);
        Ok(Self { client, conn: Mutex::new(Some(conn)), prefix: prefix.to_owned(), salt })
    }

    /// What the store under `prefix` holds, by kind, read without changing anything
    /// (for `huren audit scan`).
    pub fn inspect(url: &str, prefix: &str) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let mut conn = connect(&client, prefix).map_err(backend)?;
        counts_in(&mut conn, &keys(prefix))
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn keys(&self) -> Keys {
        keys(&self.prefix)
    }

    /// Runs `f` on the connection, reconnecting first if the last call broke it.
    fn with<T>(&self, f: impl FnOnce(&mut redis::Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(connect(&self.client, &self.prefix).map_err(backend)?);
        }
        let conn = guard.as_mut().ok_or_else(|| backend("no connection"))?;
        let out = f(conn);
        if let Err(StoreError::Backend(_)) = &out {
            // Unknown state (a WATCH left set, a half-read reply): start afresh next time.
            *guard = None;
        }
        out
    }

    fn leaves(&self, size: u64) -> Result<LazyLeaves<'_>, StoreError> {
        let (current, _) = self.log_head()?;
        if size > current {
            return Err(StoreError::Range(format!("tree size {size} exceeds the log size {current}")));
        }
        let empty = std::cell::RefCell::new((0, Vec::new()));
        Ok(LazyLeaves { store: self, size, chunk: empty, failed: std::cell::RefCell::new(None) })
    }

    /// Reads previous versions and the frontier under WATCH, then writes everything in
    /// one transaction; retried when another writer got in between. With `expected`, every
    /// subject's status must still be at that version (0: none yet), else nothing is written
    /// and the answer is `None` (a conditional change: one subject).
    fn upsert_all(
        &self,
        batch: Vec<(String, StatusRecord)>,
        expected: Option<u64>,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let k = self.keys();
        self.with(|conn| {
            let unwatch = |conn: &mut redis::Connection, e: StoreError| {
                // A corrupt record ends the attempt: leave no WATCH behind on the connection.
                let _ = redis::cmd("UNWATCH").exec(conn);
                e
            };
            for _ in 0..MAX_ATTEMPTS {
                redis::cmd("WATCH").arg(&k.status).arg(&k.meta).exec(conn).map_err(backend)?;
                let mut frontier = match frontier_of(hget(conn, &k.meta, "frontier")?) {
                    Ok(f) => f,
                    Err(e) => return Err(unwatch(conn, e)),
                };
                let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
                let mut pipe = redis::pipe();
                pipe.atomic();
                let mut versions = Vec::with_capacity(batch.len());
                for (subject_ref, record) in &batch {
                    let previous = match latest.get(subject_ref.as_str()) {
                        Some(v) => *v,
                        None => match hget(conn, &k.status, subject_ref)? {
                            Some(bytes) => match StatusRecord::decode(bytes.as_slice()) {
                                Ok(previous) => previous.version,
                                Err(e) => return Err(unwatch(conn, corrupt(e))),
                            },
                            None => 0,
                        },
                    };
                    if expected.is_some_and(|e| e != previous) {
                        redis::cmd("UNWATCH").exec(conn).map_err(backend)?;
                        return Ok(None);
                    }
                    let mut record = record.clone();
                    record.version = previous + 1;
                    latest.insert(subject_ref, record.version);
                    versions.push(record.version);
                    let mut entry = log_entry(self.commitment(subject_ref), &record);
                    let index = frontier.size();
                    entry.index = index;
                    let bytes = entry.encode_to_vec();
                    let hash = huren_translog::leaf_hash(&bytes);
                    frontier.push(hash);
                    pipe.cmd("HSET").arg(&k.status).arg(subject_ref).arg(record.encode_to_vec()).ignore();
                    pipe.cmd("HSET").arg(&k.entries).arg(index).arg(bytes).ignore();
                    pipe.cmd("HSET").arg(&k.hashes).arg(index).arg(hash.as_slice()).ignore();
                    pipe.cmd("ZADD")
                        .arg(&k.subjects)
                        .arg(0)
                        .arg(subject_member(&entry.subject_commitment, index))
                        .ignore();
                }
                pipe.cmd("HSET").arg(&k.meta).arg("frontier").arg(frontier.to_bytes()).ignore();
                // EXEC answers nil when a watched key changed: nothing was written.
                let done: Option<()> = pipe.query(conn).map_err(backend)?;
                if done.is_some() {
                    return Ok(Some(versions));
                }
            }
            Err(backend(format!("status change kept conflicting with other writers ({MAX_ATTEMPTS} attempts)")))
        })
    }

    /// Scans hash `key`, deleting (compare-and-delete) the fields `judge` picks, in
    /// batches; notes each deletion in `out`.
    fn purge_hash(
        &self,
        key: &str,
        judge: &Judge<'_>,
        out: &mut PurgeOutcome,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), StoreError> {
        let mut cursor = "0".to_owned();
        let mut batch: Vec<(Vec<u8>, Vec<u8>, Deletion)> = Vec::new();
        loop {
            let (next, items): (String, Vec<Vec<u8>>) = self.with(|conn| {
                redis::cmd("HSCAN").arg(key).arg(&cursor).arg("COUNT").arg(1000).query(conn).map_err(backend)
            })?;
            for pair in items.chunks_exact(2) {
                if let Some(note) = judge(&pair[0], &pair[1])? {
                    batch.push((pair[0].clone(), pair[1].clone(), note));
                }
            }
            let last = next == "0";
            if batch.len() >= PURGE_BATCH || (last && !batch.is_empty()) {
                let flags: Vec<i64> = self.with(|conn| {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(COMPARE_AND_DELETE).arg(1).arg(key);
                    for (field, value, _) in &batch {
                        cmd.arg(field.as_slice()).arg(value.as_slice());
                    }
                    cmd.query(conn).map_err(backend)
                })?;
                for ((_, _, (kind, time, leaf)), flag) in batch.drain(..).zip(flags) {
                    if flag == 1 {
                        out.note(kind, time, leaf);
                    }
                }
                progress(out.total());
            }
            if last {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl From<RedisStore> for Arc<dyn NodeStore> {
    fn from(store: RedisStore) -> Self {
        Arc::new(store)
    }
}

/// A connection with [`IO_TIMEOUT`], named `huren-node:<prefix>` for `CLIENT LIST`.
fn connect(client: &redis::Client, prefix: &str) -> redis::RedisResult<redis::Connection> {
    let mut conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let name: String = format!("huren-node:{prefix}").chars().filter(|c| c.is_ascii_graphic()).collect();
    redis::cmd("CLIENT").arg("SETNAME").arg(name).exec(&mut conn)?;
    Ok(conn)
}

fn keys(prefix: &str) -> Keys {
    Keys {
        status: format!("{prefix}status"),
        token: format!("{prefix}token"),
        entries: format!("{prefix}log:entries"),
        hashes: format!("{prefix}log:hashes"),
        subjects: format!("{prefix}log:subjects"),
        meta: format!("{prefix}{META_KEY}"),
    }
}

fn hget(
    conn: &mut redis::Connection,
    key: &str,
    field: impl redis::ToRedisArgs,
) -> Result<Option<Vec<u8>>, StoreError> {
    redis::cmd("HGET").arg(key).arg(field).query(conn).map_err(backend)
}

/// Fields `start..end` (decimal indices) of hash `key`, `None` where absent.
fn hmget_range(
    conn: &mut redis::Connection,
    key: &str,
    start: u64,
    end: u64,
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let mut out = Vec::with_capacity(end.saturating_sub(start).min(1 << 20) as usize);
    let mut at = start;
    while at < end {
        let to = end.min(at + READ_CHUNK);
        let part: Vec<Option<Vec<u8>>> =
            redis::cmd("HMGET").arg(key).arg((at..to).collect::<Vec<u64>>()).query(conn).map_err(backend)?;
        out.extend(part);
        at = to;
    }
    Ok(out)
}

fn counts_in(conn: &mut redis::Connection, k: &Keys) -> Result<BTreeMap<&'static str, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for (kind, key) in [("status", &k.status), ("token", &k.token), ("log_entry", &k.entries), ("log_hash", &k.hashes)]
    {
        let n: u64 = redis::cmd("HLEN").arg(key).query(conn).map_err(backend)?;
        out.insert(kind, n);
    }
    let n: u64 = redis::cmd("ZCARD").arg(&k.subjects).query(conn).map_err(backend)?;
    out.insert("subject_index", n);
    let salt: bool = redis::cmd("HEXISTS").arg(&k.meta).arg("salt").query(conn).map_err(backend)?;
    out.insert("salt", u64::from(salt));
    Ok(out)
}

/// Warns when Redis would not keep an acknowledged write across its own crash. A
/// server that refuses `CONFIG GET` (managed Redis) is taken at its operator's word.
fn warn_if_not_durable(conn: &mut redis::Connection) {
    let get = |conn: &mut redis::Connection, name: &str| -> Option<String> {
        let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(conn).ok()?;
        v.get(1).cloned()
    };
    let appendonly = get(conn, "appendonly");
    let fsync = get(conn, "appendfsync");
    if appendonly.as_deref() == Some("no") || fsync.as_deref().is_some_and(|f| f != "always") {
        tracing::warn!(
            appendonly = appendonly.as_deref().unwrap_or("?"),
            appendfsync = fsync.as_deref().unwrap_or("?"),
            "redis node store: acknowledged changes survive a Redis crash only with appendonly yes and \
             appendfsync always"
        );
    }
}

impl NodeStore for RedisStore {
    fn commitment(&self, subject_ref: &str) -> [u8; 32] {
        crate::store::subject_commitment(self.salt.as_slice(), subject_ref)
    }

    fn log_head(&self) -> Result<(u64, Hash), StoreError> {
        let frontier = self.with(|conn| frontier_of(hget(conn, &self.keys().meta, "frontier")?))?;
        Ok((frontier.size(), frontier.root()))
    }

    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        let leaves = self.leaves(size)?;
        leaves.checked(huren_translog::root_of(&leaves))?.map_err(corrupt)
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let leaves = self.leaves(size)?;
        leaves
            .checked(huren_translog::inclusion_proof_from(index, &leaves))?
            .map_err(|e| StoreError::Range(e.to_string()))
    }

    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        let leaves = self.leaves(new)?;
        leaves
            .checked(huren_translog::consistency_proof_from(old, &leaves))?
            .map_err(|e| StoreError::Range(e.to_string()))
    }

    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(|conn| {
            let k = self.keys();
            let size = frontier_of(hget(conn, &k.meta, "frontier")?)?.size();
            let end = end.min(size);
            Ok(hmget_range(conn, &k.entries, start, end)?.into_iter().flatten().collect())
        })
    }

    fn subject_log(&self, commitment: &[u8; 32]) -> Result<Vec<u64>, StoreError> {
        let mut min = b"[".to_vec();
        min.extend_from_slice(&subject_member(commitment, 0));
        let mut max = b"[".to_vec();
        max.extend_from_slice(&subject_member(commitment, u64::MAX));
        let members: Vec<Vec<u8>> = self.with(|conn| {
            redis::cmd("ZRANGEBYLEX").arg(&self.keys().subjects).arg(min).arg(max).query(conn).map_err(backend)
        })?;
        members
            .iter()
            .map(|m| {
                m.get(32..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt("subject index entry"))
            })
            .collect()
    }

    fn upsert(&self, subject_ref: &str, record: StatusRecord) -> Result<u64, StoreError> {
        let versions = self.upsert_all(vec![(subject_ref.to_owned(), record)], None)?;
        versions.and_then(|v| v.first().copied()).ok_or_else(|| backend("no version returned"))
    }

    fn upsert_if(&self, subject_ref: &str, expected: u64, record: StatusRecord) -> Result<Option<u64>, StoreError> {
        match self.upsert_all(vec![(subject_ref.to_owned(), record)], Some(expected))? {
            Some(versions) => versions.first().copied().map(Some).ok_or_else(|| backend("no version returned")),
            None => Ok(None),
        }
    }

    fn upsert_batch(&self, batch: Vec<(String, StatusRecord)>) -> Result<Vec<u64>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.upsert_all(batch, None)?.ok_or_else(|| backend("no versions returned"))
    }

    fn status(&self, subject_ref: &str) -> Result<Option<StatusRecord>, StoreError> {
        let bytes = self.with(|conn| hget(conn, &self.keys().status, subject_ref))?;
        bytes.map(|b| StatusRecord::decode(b.as_slice()).map_err(corrupt)).transpose()
    }

    fn put_token(&self, digest: &[u8; 32], record: &TokenRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            redis::cmd("HSET")
                .arg(&self.keys().token)
                .arg(digest.as_slice())
                .arg(record.encode_to_vec())
                .exec(conn)
                .map_err(backend)
        })
    }

    fn token(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let bytes = self.with(|conn| hget(conn, &self.keys().token, digest.as_slice()))?;
        bytes.map(|b| TokenRecord::decode(b.as_slice()).map_err(corrupt)).transpose()
    }

    fn subject_count(&self) -> Result<u64, StoreError> {
        self.with(|conn| redis::cmd("HLEN").arg(&self.keys().status).query(conn).map_err(backend))
    }

    fn put_sunset_receipt(&self, receipt: &[u8]) -> Result<(), StoreError> {
        self.with(|conn| {
            redis::cmd("HSET").arg(&self.keys().meta).arg("sunset_receipt").arg(receipt).exec(conn).map_err(backend)
        })
    }

    fn sunset_receipt(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|conn| hget(conn, &self.keys().meta, "sunset_receipt"))
    }

    fn log_first_available(&self) -> Result<u64, StoreError> {
        match self.with(|conn| hget(conn, &self.keys().meta, "first_available"))? {
            Some(bytes) => Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| corrupt("first_available"))?)),
            None => Ok(0),
        }
    }

    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(|conn| {
            let k = self.keys();
            let size = frontier_of(hget(conn, &k.meta, "frontier")?)?.size();
            Ok(hmget_range(conn, &k.hashes, start, end.min(size))?.into_iter().flatten().collect())
        })
    }

    fn record_signed_size(&self, size: u64) -> Result<(), StoreError> {
        if size == 0 || self.signed_sizes()?.contains(&size) {
            return Ok(());
        }
        let meta = self.keys().meta;
        self.with(|conn| {
            for _ in 0..MAX_ATTEMPTS {
                redis::cmd("WATCH").arg(&meta).exec(conn).map_err(backend)?;
                let mut sizes = hget(conn, &meta, "signed_sizes")?.map_or(Ok(Vec::new()), |b| decode_sizes(&b))?;
                let Err(at) = sizes.binary_search(&size) else {
                    redis::cmd("UNWATCH").exec(conn).map_err(backend)?;
                    return Ok(());
                };
                sizes.insert(at, size);
                thin_sizes(&mut sizes);
                let done: Option<()> = redis::pipe()
                    .atomic()
                    .cmd("HSET")
                    .arg(&meta)
                    .arg("signed_sizes")
                    .arg(encode_sizes(&sizes))
                    .ignore()
                    .query(conn)
                    .map_err(backend)?;
                if done.is_some() {
                    return Ok(());
                }
            }
            Err(backend("signed sizes kept conflicting with other writers"))
        })
    }

    fn signed_sizes(&self) -> Result<Vec<u64>, StoreError> {
        self.with(|conn| hget(conn, &self.keys().meta, "signed_sizes"))?.map_or(Ok(Vec::new()), |b| decode_sizes(&b))
    }

    fn consistency_proofs(&self, size: u64) -> Result<Vec<(u64, Vec<Hash>)>, StoreError> {
        let leaves = self.leaves(size)?;
        let mut out = Vec::new();
        for old in self.signed_sizes()?.into_iter().filter(|s| *s < size) {
            match leaves.checked(huren_translog::consistency_proof_from(old, &leaves))? {
                Ok(proof) => out.push((old, proof)),
                Err(ProofError::Source(e)) => {
                    tracing::warn!(old_size = old, error = %e, "no consistency proof from a signed size: leaves missing")
                }
                Err(e) => return Err(corrupt(e)),
            }
        }
        Ok(out)
    }

    /// Nothing to do: a deleted field or key is gone from Redis's keyspace at once, and
    /// rewriting its persistence files (AOF rewrite, RDB snapshot) is Redis's concern.
    fn rewrite(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn counts(&self) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        self.with(|conn| counts_in(conn, &self.keys()))
    }

    fn purge(&self, plan: &PurgePlan, progress: &mut dyn FnMut(u64)) -> Result<PurgeOutcome, StoreError> {
        let k = self.keys();
        let mut out = PurgeOutcome::default();
        let statuses = |key: &[u8], value: &[u8]| -> Result<Option<Deletion>, StoreError> {
            let record = StatusRecord::decode(value).map_err(corrupt)?;
            let subject = std::str::from_utf8(key).map_err(|_| corrupt("status key"))?;
            Ok((plan.everything || plan.statuses_changed_before.is_some_and(|t| record.updated_at < t))
                .then(|| ("status", record.updated_at, deletion_leaf("status", &self.commitment(subject), value))))
        };
        self.purge_hash(&k.status, &statuses, &mut out, progress)?;
        let tokens = |key: &[u8], value: &[u8]| -> Result<Option<Deletion>, StoreError> {
            let record = TokenRecord::decode(value).map_err(corrupt)?;
            Ok((plan.everything || plan.tokens_expired_before.is_some_and(|t| record.expires_at < t))
                .then(|| ("token", record.expires_at, deletion_leaf("token", key, value))))
        };
        self.purge_hash(&k.token, &tokens, &mut out, progress)?;
        // Log entries, oldest first; entries never change, so no compare is needed.
        loop {
            let first = self.log_first_available()?;
            let (size, _) = self.log_head()?;
            let end = size.min(first + PURGE_BATCH as u64);
            let raw = self.with(|conn| hmget_range(conn, &k.entries, first, end))?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            let mut next = first;
            let mut stopped = false;
            for (i, bytes) in (first..end).zip(raw) {
                let Some(bytes) = bytes else {
                    next = i + 1;
                    continue;
                };
                let entry = pb::LogEntry::decode(bytes.as_slice()).map_err(corrupt)?;
                if !(plan.everything || plan.log_entries_before.is_some_and(|t| entry.time < t)) {
                    stopped = true;
                    break;
                }
                pipe.cmd("HDEL").arg(&k.entries).arg(i).ignore();
                pipe.cmd("ZREM").arg(&k.subjects).arg(subject_member(&entry.subject_commitment, i)).ignore();
                out.note("log_entry", entry.time, huren_translog::leaf_hash(&bytes));
                next = i + 1;
            }
            pipe.cmd("HSET").arg(&k.meta).arg("first_available").arg(next.to_be_bytes().as_slice()).ignore();
            self.with(|conn| pipe.query::<()>(conn).map_err(backend))?;
            progress(out.total());
            if stopped || end >= size {
                break;
            }
        }
        if plan.everything {
            self.with(|conn| {
                redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(&k.hashes)
                    .arg(&k.subjects)
                    .ignore()
                    .cmd("HDEL")
                    .arg(&k.meta)
                    .arg("salt")
                    .ignore()
                    .query::<()>(conn)
                    .map_err(backend)
            })?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{Backend, Fixture};

    /// Two handles on one prefix (two processes, say) writing at once: WATCH makes the
    /// loser retry, so every change gets its own log index and no version is handed out twice.
    #[test]
    fn concurrent_writers_on_one_prefix_lose_nothing() {
        let fixture = Fixture::new(Backend::Redis);
        let stores: Vec<Arc<dyn NodeStore>> = (0..2).map(|_| Arc::from(fixture.open())).collect();
        let writers: Vec<_> = stores
            .iter()
            .cloned()
            .enumerate()
            .map(|(w, store)| {
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| {
                            let subject = format!("subject-{}", i % 5);
                            let record =
                                StatusRecord { status: 1, updated_at: (w * 1000 + i) as i64, ..Default::default() };
                            store.upsert(&subject, record).unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let versions: Vec<u64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        let store = &stores[0];
        assert_eq!(store.log_head().unwrap().0, 200, "every acknowledged change is logged once");
        let mut total = 0;
        for s in 0..5 {
            let latest = store.status(&format!("subject-{s}")).unwrap().unwrap().version;
            assert_eq!(latest, 40, "subject-{s}: a version was handed out twice or lost");
            total += store.subject_log(&store.commitment(&format!("subject-{s}"))).unwrap().len();
        }
        assert_eq!(total, 200);
        assert_eq!(versions.len(), 200);
        let (size, root) = store.log_head().unwrap();
        assert_eq!(store.root_at(size).unwrap(), root, "the stored leaves and the frontier agree");
    }

    /// Redis drops the node's connection: the call that finds out fails (the client is
    /// told to retry), the next one connects again and finds everything in place.
    #[test]
    fn a_dropped_connection_is_opened_again() {
        let fixture = Fixture::new(Backend::Redis);
        let store = RedisStore::open(&crate::store::tests::redis_url(), fixture.prefix()).unwrap();
        store.upsert("subject-1", StatusRecord { status: 2, ..Default::default() }).unwrap();
        let mut admin = redis::Client::open(crate::store::tests::redis_url()).unwrap().get_connection().unwrap();
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
        let name = format!("name=huren-node:{}", fixture.prefix());
        let ids: Vec<&str> = clients
            .lines()
            .filter(|l| l.split(' ').any(|f| f == name))
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .collect();
        assert_eq!(ids.len(), 1, "the store's connection, by name: {clients}");
        let killed: u64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(ids[0]).query(&mut admin).unwrap();
        assert_eq!(killed, 1);
        let first = store.status("subject-1");
        assert!(first.is_err() || first.as_ref().unwrap().is_some(), "{first:?}");
        assert_eq!(store.status("subject-1").unwrap().unwrap().status, 2);
        assert_eq!(store.upsert("subject-1", StatusRecord::default()).unwrap(), 2);
    }
}
