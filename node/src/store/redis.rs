//! The Redis backend: the same records, log and projection as the redb [`super::Store`],
//! behind the same [`super::NodeStore`], as keys under one prefix (by default
//! `huren-node:<province>:`):
//!
//! | key               | type       | holds                                                   |
//! |-------------------|------------|---------------------------------------------------------|
//! | `status`          | hash       | pseudonymous subject reference → encoded `StatusRecord` |
//! | `token`           | hash       | SHA-256 of a token → encoded `TokenRecord`              |
//! | `log:entries`     | hash       | log index (decimal) → encoded `LogEntry`                |
//! | `log:hashes`      | hash       | log index (decimal) → RFC 9162 leaf hash                |
//! | `log:nodes`       | hash       | `level:index` (decimal) of a complete subtree → its hash |
//! | `log:subjects`    | sorted set | commitment ‖ index (big-endian), all score 0            |
//! | [`META_KEY`]      | hash       | salt, frontier, nodes_size, first_available, signed_sizes, sunset_receipt, disclosures_dropped |
//! | `applied`         | hash       | salted hash of (caller, batch item id) → encoded applied item |
//! | `disclosures`     | hash       | `<subject ref>/<day>` → encoded `DisclosureLog` (that day's checks) |
//! | `hub_aggregates`  | hash       | `hour/hub/province/purpose` → encoded `HubAggregateRecord` |
//!
//! A write runs as one `MULTI`/`EXEC` under `WATCH` of every hash it read: a status
//! change reads the status hash and the meta hash (which holds the frontier), so another
//! writer on the same prefix makes the transaction abort and it is retried from fresh
//! reads, and no two entries get one index and no acknowledged change is lost or left
//! unlogged. Purges delete a status or token only if it still holds the bytes that were
//! judged (a compare-and-delete script), so a change made meanwhile survives. Durability
//! across a Redis crash is Redis's own: run it with `appendonly yes` and `appendfsync
//! always` (the store warns at open otherwise).
//!
//! [`NodeStore::rewrite`](super::NodeStore::rewrite) does nothing here: a deleted key or
//! field is gone from the keyspace at once, and what Redis's persistence files still hold
//! is rewritten by Redis itself (`BGREWRITEAOF`, the next RDB snapshot), outside the
//! node's reach.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::backend::{wrong_key, Backend, Key, Page, Reader, Table, Writer};
use super::{BackedStore, StoreError};

/// The key (under the prefix) holding the commitment salt, the log's frontier and the
/// other node metadata; after a sunset it holds no subject data and no salt.
pub const META_KEY: &str = "meta";

/// The node store in Redis.
pub type RedisStore = BackedStore<Redis>;

/// How often a write transaction is retried when another writer changed what it read.
const MAX_ATTEMPTS: usize = 64;
/// Bound on connecting and on each reply: a hung Redis fails the call (the client is told
/// to retry) instead of holding a blocking thread forever. A reply lost to it may still
/// have been applied; a retried status change is then logged twice, never lost.
const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Fields asked for per `HMGET`, written per `HSET`/`HDEL`, members per `ZADD`/`ZREM`.
const CHUNK: usize = 4096;

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

/// A node store's keys in Redis. One connection, used by one call at a time (calls run on
/// blocking threads); it is opened again after a failure.
pub struct Redis {
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
    prefix: String,
    keys: Keys,
    /// On Redis Cluster: how to find the master that holds the store's slot.
    cluster: Option<cluster::Slot>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

struct Keys {
    status: String,
    token: String,
    entries: String,
    hashes: String,
    nodes: String,
    subjects: String,
    meta: String,
    applied: String,

    disclosures: String,
    aggregates: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            status: format!("{prefix}status"),
            token: format!("{prefix}token"),
            entries: format!("{prefix}log:entries"),
            hashes: format!("{prefix}log:hashes"),
            nodes: format!("{prefix}log:nodes"),
            subjects: format!("{prefix}log:subjects"),
            meta: format!("{prefix}{META_KEY}"),
            applied: format!("{prefix}applied"),

            disclosures: format!("{prefix}disclosures"),
            aggregates: format!("{prefix}hub_aggregates"),
        }
    }

    fn of(&self, table: Table) -> &str {
        match table {
            Table::Status => &self.status,
            Table::Token => &self.token,
            Table::LogEntries => &self.entries,
            Table::LogHashes => &self.hashes,
            Table::LogNodes => &self.nodes,
            Table::SubjectLog => &self.subjects,
            Table::Meta => &self.meta,
            Table::Applied => &self.applied,

            Table::Disclosures => &self.disclosures,
            Table::HubAggregates => &self.aggregates,
        }
    }
}

/// The hash field of `key` in `table`.
fn field(table: Table, key: &Key) -> Result<Vec<u8>, StoreError> {
    Ok(match (table, key) {
        (Table::Status | Table::Meta | Table::Disclosures | Table::HubAggregates, Key::Text(s)) => {
            s.as_bytes().to_vec()
        }
        (Table::Token | Table::Applied, Key::Bytes(b)) => b.clone(),
        (Table::LogEntries | Table::LogHashes, Key::Index(i)) => i.to_string().into_bytes(),
        (Table::LogNodes, Key::Node(n)) => format!("{}:{}", n.level, n.index).into_bytes(),
        (table, key) => return Err(wrong_key(table, key)),
    })
}

fn subject_member(commitment: &[u8], index: u64) -> Vec<u8> {
    let mut m = commitment.to_vec();
    m.extend_from_slice(&index.to_be_bytes());
    m
}

impl BackedStore<Redis> {
    /// Connects to `url` and opens (or creates) the store under `prefix`, creating the
    /// commitment salt if there is none; computes the interior log hashes a store written by
    /// an older version lacks (once).
    ///
    /// On Redis Cluster (the server at `url` reports `cluster_enabled:1`) every key of the
    /// store lives in one hash slot: a prefix without a hash tag is wrapped in one
    /// (`huren-node:340000:` becomes `{huren-node:340000:}`), and the store talks to the
    /// master holding that slot, found again after a failover (see [`cluster`]).
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let mut redis = Redis::connect_to(url, prefix)?;
        let conn = redis.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = conn.as_mut() {
            warn_if_not_durable(conn);
        }
        Self::open_in(redis)
    }

    /// What the store under `prefix` holds, by kind, read without changing anything
    /// (for `huren audit scan`).
    pub fn inspect(url: &str, prefix: &str) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        Self::counts_in(&Redis::connect_to(url, prefix)?)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.backend.prefix
    }
}

impl Redis {
    /// Connects to `url` (on a cluster: to the master of the store's slot).
    fn connect_to(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let open_err = |m: String| StoreError::Open { path: format!("{url} {prefix}*"), message: m };
        let client = redis::Client::open(url).map_err(|e| open_err(e.to_string()))?;
        let mut conn = connect(&client, prefix).map_err(|e| open_err(e.to_string()))?;
        let (prefix, cluster) = if cluster::enabled(&mut conn).map_err(|e| open_err(e.to_string()))? {
            let prefix = cluster::tagged(prefix);
            let slot = cluster::Slot::new(&client, &prefix).map_err(|e| open_err(e.to_string()))?;
            conn = connect(&slot.master(&mut conn).map_err(|e| open_err(e.to_string()))?, &prefix)
                .map_err(|e| open_err(e.to_string()))?;
            (prefix, Some(slot))
        } else {
            (prefix.to_owned(), None)
        };
        Ok(Redis { client, conn: Mutex::new(Some(conn)), keys: Keys::new(&prefix), prefix, cluster })
    }

    /// A fresh connection: to the server, or on a cluster to the master now holding the slot.
    fn reconnect(&self) -> Result<redis::Connection, StoreError> {
        let mut conn = connect(&self.client, &self.prefix).map_err(backend)?;
        if let Some(slot) = &self.cluster {
            conn = connect(&slot.master(&mut conn).map_err(backend)?, &self.prefix).map_err(backend)?;
        }
        Ok(conn)
    }

    /// Runs `f` on the connection, reconnecting first if the last call broke it.
    fn with<T>(&self, f: impl FnOnce(&mut redis::Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.reconnect()?);
        }
        let conn = guard.as_mut().ok_or_else(|| backend("no connection"))?;
        let out = f(conn);
        if let Err(StoreError::Backend(_)) = &out {
            // Unknown state (a WATCH left set, a half-read reply): start afresh next time.
            *guard = None;
        }
        out
    }
}

/// Fields of hash `key`, `None` where absent, [`CHUNK`] per `HMGET`.
fn hmget(conn: &mut redis::Connection, key: &str, fields: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let mut out = Vec::with_capacity(fields.len());
    for chunk in fields.chunks(CHUNK) {
        let part: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(key).arg(chunk).query(conn).map_err(backend)?;
        out.extend(part);
    }
    Ok(out)
}

/// Reads call by call, each on the shared connection.
pub struct RedisReader<'a> {
    redis: &'a Redis,
}

impl Reader for RedisReader<'_> {
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let fields = keys.iter().map(|k| field(table, k)).collect::<Result<Vec<_>, _>>()?;
        self.redis.with(|conn| hmget(conn, self.redis.keys.of(table), &fields))
    }

    fn subject_log(&mut self, commitment: &[u8]) -> Result<Vec<u64>, StoreError> {
        let mut min = b"[".to_vec();
        min.extend_from_slice(&subject_member(commitment, 0));
        let mut max = b"[".to_vec();
        max.extend_from_slice(&subject_member(commitment, u64::MAX));
        let members: Vec<Vec<u8>> = self.redis.with(|conn| {
            redis::cmd("ZRANGEBYLEX").arg(&self.redis.keys.subjects).arg(min).arg(max).query(conn).map_err(backend)
        })?;
        members
            .iter()
            .map(|m| {
                m.get(commitment.len()..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt("subject index entry"))
            })
            .collect()
    }

    fn count(&mut self, table: Table) -> Result<u64, StoreError> {
        let command = if table == Table::SubjectLog { "ZCARD" } else { "HLEN" };
        self.redis.with(|conn| redis::cmd(command).arg(self.redis.keys.of(table)).query(conn).map_err(backend))
    }
}

/// One optimistic transaction: reads watch their hash and see the writes buffered so far;
/// the writes go out in one `MULTI`/`EXEC` at the end.
struct RedisWriter<'c> {
    conn: &'c mut redis::Connection,
    keys: &'c Keys,
    watched: BTreeSet<Table>,
    cleared: BTreeSet<Table>,
    /// Per table, field → value to set (`None`: to delete).
    writes: BTreeMap<Table, HashMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Subject index member → whether it is to be present.
    members: HashMap<Vec<u8>, bool>,
}

impl Writer for RedisWriter<'_> {
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let fields = keys.iter().map(|k| field(table, k)).collect::<Result<Vec<_>, _>>()?;
        let mut out = vec![None; fields.len()];
        let mut unread = Vec::new();
        let written = self.writes.get(&table);
        for (at, f) in fields.iter().enumerate() {
            match written.and_then(|w| w.get(f)) {
                Some(value) => out[at] = value.clone(),
                None if self.cleared.contains(&table) => {}
                None => unread.push(at),
            }
        }
        if !unread.is_empty() {
            let key = self.keys.of(table);
            if self.watched.insert(table) {
                redis::cmd("WATCH").arg(key).exec(self.conn).map_err(backend)?;
            }
            let asked: Vec<Vec<u8>> = unread.iter().map(|at| fields[*at].clone()).collect();
            for (at, value) in unread.into_iter().zip(hmget(self.conn, key, &asked)?) {
                out[at] = value;
            }
        }
        Ok(out)
    }

    fn put(&mut self, table: Table, key: Key, value: Vec<u8>) -> Result<(), StoreError> {
        self.writes.entry(table).or_default().insert(field(table, &key)?, Some(value));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: Key) -> Result<(), StoreError> {
        self.writes.entry(table).or_default().insert(field(table, &key)?, None);
        Ok(())
    }

    fn index_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError> {
        self.members.insert(subject_member(commitment, index), true);
        Ok(())
    }

    fn unindex_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError> {
        self.members.insert(subject_member(commitment, index), false);
        Ok(())
    }

    fn clear(&mut self, table: Table) -> Result<(), StoreError> {
        self.cleared.insert(table);
        self.writes.remove(&table);
        if table == Table::SubjectLog {
            self.members.clear();
        }
        Ok(())
    }
}

impl RedisWriter<'_> {
    /// Sends the buffered writes in one `MULTI`/`EXEC`; `false` when a watched hash changed
    /// meanwhile (nothing was written).
    fn commit(self) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut commands = 0;
        for table in &self.cleared {
            pipe.cmd("DEL").arg(self.keys.of(*table)).ignore();
            commands += 1;
        }
        for (table, fields) in &self.writes {
            let key = self.keys.of(*table);
            let (set, unset): (Vec<_>, Vec<_>) = fields.iter().partition(|(_, v)| v.is_some());
            for chunk in set.chunks(CHUNK) {
                pipe.cmd("HSET").arg(key);
                for (f, v) in chunk {
                    pipe.arg(f.as_slice()).arg(v.as_deref().unwrap_or_default());
                }
                pipe.ignore();
                commands += 1;
            }
            for chunk in unset.chunks(CHUNK) {
                pipe.cmd("HDEL").arg(key).arg(chunk.iter().map(|(f, _)| f.as_slice()).collect::<Vec<_>>()).ignore();
                commands += 1;
            }
        }
        let (add, remove): (Vec<_>, Vec<_>) = self.members.iter().partition(|(_, present)| **present);
        for chunk in add.chunks(CHUNK) {
            pipe.cmd("ZADD").arg(&self.keys.subjects);
            for (member, _) in chunk {
                pipe.arg(0).arg(member.as_slice());
            }
            pipe.ignore();
            commands += 1;
        }
        for chunk in remove.chunks(CHUNK) {
            let members: Vec<&[u8]> = chunk.iter().map(|(m, _)| m.as_slice()).collect();
            pipe.cmd("ZREM").arg(&self.keys.subjects).arg(members).ignore();
            commands += 1;
        }
        if commands == 0 {
            if !self.watched.is_empty() {
                redis::cmd("UNWATCH").exec(self.conn).map_err(backend)?;
            }
            return Ok(true);
        }
        // EXEC answers nil when a watched key changed: nothing was written.
        let done: Option<()> = pipe.query(self.conn).map_err(backend)?;
        Ok(done.is_some())
    }
}

impl Backend for Redis {
    type Reader<'a> = RedisReader<'a>;

    fn reader(&self) -> Result<RedisReader<'_>, StoreError> {
        Ok(RedisReader { redis: self })
    }

    fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Writer) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.with(|conn| {
            for _ in 0..MAX_ATTEMPTS {
                let mut w = RedisWriter {
                    conn: &mut *conn,
                    keys: &self.keys,
                    watched: BTreeSet::new(),
                    cleared: BTreeSet::new(),
                    writes: BTreeMap::new(),
                    members: HashMap::new(),
                };
                match f(&mut w) {
                    Ok(out) => {
                        if w.commit()? {
                            return Ok(out);
                        }
                    }
                    Err(e) => {
                        // A corrupt record ends the attempt: leave no WATCH behind on the connection.
                        let _ = redis::cmd("UNWATCH").exec(w.conn);
                        return Err(e);
                    }
                }
            }
            Err(backend(format!("write kept conflicting with other writers ({MAX_ATTEMPTS} attempts)")))
        })
    }

    fn scan(&self, table: Table, page: &mut Page<'_>) -> Result<(), StoreError> {
        let key = self.keys.of(table);
        let mut cursor = "0".to_owned();
        loop {
            let (next, items): (String, Vec<Vec<u8>>) = self.with(|conn| {
                redis::cmd("HSCAN").arg(key).arg(&cursor).arg("COUNT").arg(1000).query(conn).map_err(backend)
            })?;
            let mut records = Vec::with_capacity(items.len() / 2);
            for pair in items.chunks_exact(2) {
                let key = match table {
                    Table::Status | Table::Disclosures | Table::HubAggregates => {
                        Key::Text(String::from_utf8(pair[0].clone()).map_err(|_| corrupt("text key"))?)
                    }
                    Table::Token | Table::Applied => Key::Bytes(pair[0].clone()),
                    other => return Err(backend(format!("table {other:?} is not scanned"))),
                };
                records.push((key, pair[1].clone()));
            }
            page(records)?;
            if next == "0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn delete_unchanged(&self, table: Table, records: &[(Key, Vec<u8>)]) -> Result<Vec<bool>, StoreError> {
        let mut flags = Vec::with_capacity(records.len());
        for chunk in records.chunks(CHUNK) {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(COMPARE_AND_DELETE).arg(1).arg(self.keys.of(table));
            for (key, value) in chunk {
                cmd.arg(field(table, key)?).arg(value.as_slice());
            }
            let done: Vec<i64> = self.with(|conn| cmd.query(conn).map_err(backend))?;
            flags.extend(done.into_iter().map(|f| f == 1));
        }
        Ok(flags)
    }

    /// Nothing to do: a deleted field or key is gone from Redis's keyspace at once, and
    /// rewriting its persistence files (AOF rewrite, RDB snapshot) is Redis's concern.
    fn rewrite(&self) -> Result<(), StoreError> {
        Ok(())
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

/// Redis Cluster: the store's keys share one hash tag, so they sit in one slot and a
/// transaction (`WATCH`/`MULTI`/`EXEC` over several keys) runs on the one master that holds
/// it — the log's sequencer (the frontier in the meta hash) is in one place, and a status
/// change commits with its log entry. A store scales out across a cluster by provinces (or
/// several node stores, each with its own tag); one store's keys do not spread further.
pub mod cluster {
    use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo as _, RedisResult, Value};

    /// Whether the server runs in cluster mode.
    pub(crate) fn enabled(conn: &mut redis::Connection) -> RedisResult<bool> {
        let info: String = redis::cmd("INFO").arg("cluster").query(conn)?;
        Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
    }

    /// The hash tag of `prefix`: what is between its first `{` and the next `}`, if not empty.
    pub fn hash_tag(prefix: &str) -> Option<&str> {
        let open = prefix.find('{')?;
        let close = prefix[open + 1..].find('}')?;
        Some(&prefix[open + 1..open + 1 + close]).filter(|t| !t.is_empty())
    }

    /// `prefix` with a hash tag: unchanged if it has one, else wrapped whole in braces.
    pub fn tagged(prefix: &str) -> String {
        if hash_tag(prefix).is_some() {
            prefix.to_owned()
        } else {
            format!("{{{prefix}}}")
        }
    }

    /// The slot a store's keys hash to, and how to reach the server first named.
    pub(crate) struct Slot {
        seed: ConnectionInfo,
        tag: String,
    }

    impl Slot {
        pub(crate) fn new(client: &redis::Client, prefix: &str) -> RedisResult<Self> {
            let tag = hash_tag(prefix).unwrap_or(prefix).to_owned();
            Ok(Self { seed: client.get_connection_info().clone().into_connection_info()?, tag })
        }

        /// A client for the master holding the slot, as `conn` (any cluster node) sees it now.
        pub(crate) fn master(&self, conn: &mut redis::Connection) -> RedisResult<redis::Client> {
            let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&self.tag).query(conn)?;
            let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(conn)?;
            for range in ranges {
                let Value::Array(parts) = range else { continue };
                let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                    (parts.first(), parts.get(1), parts.get(2))
                else {
                    continue;
                };
                if !(*start..=*end).contains(&slot) {
                    continue;
                }
                let host = match master.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => continue,
                };
                let Some(Value::Int(port)) = master.get(1) else { continue };
                let port = u16::try_from(*port).unwrap_or_default();
                let addr = match self.seed.addr() {
                    ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
                        ConnectionAddr::TcpTls { host, port, insecure: *insecure, tls_params: tls_params.clone() }
                    }
                    _ => ConnectionAddr::Tcp(host, port),
                };
                return redis::Client::open(self.seed.clone().set_addr(addr));
            }
            Err(redis::RedisError::from((redis::ErrorKind::Client, "no cluster master holds the store's slot")))
        }
    }
}
