//! The Redis backend: the same records, log and projection as the redb [`super::Store`],
//! behind the same [`super::NodeStore`], as keys under one prefix (by default
//! `huren-node:<province>:`), in two groups.
//!
//! **The sequencer's keys** hold everything a status change commits together with its
//! transparency-log entry, and sit under the prefix itself (on Redis Cluster: in one hash
//! slot, so one `MULTI`/`EXEC` spans them; see [`cluster`]):
//!
//! | key               | type       | holds                                                   |
//! |-------------------|------------|---------------------------------------------------------|
//! | `status`          | hash       | pseudonymous subject reference → encoded `StatusRecord` |
//! | `log:entries`     | hash       | log index (decimal) → encoded `LogEntry`                |
//! | `log:hashes`      | hash       | log index (decimal) → RFC 9162 leaf hash                |
//! | `log:nodes`       | hash       | `level:index` (decimal) of a complete subtree → its hash |
//! | `log:subjects`    | sorted set | commitment ‖ index (big-endian), all score 0            |
//! | [`META_KEY`]      | hash       | salt, frontier, nodes_size, first_available, signed_sizes, sunset_receipt, disclosures_dropped, `shards` |
//! | `applied`         | hash       | salted hash of (caller, batch item id) → encoded applied item |
//! | `hub_aggregates`  | hash       | `hour/hub/province/purpose` → encoded `HubAggregateRecord` |
//!
//! **The spread keys** hold the tables whose writes never need to commit with the log: the
//! token digests (issued every morning for the whole population: the largest write volume)
//! and the disclosure logs (one record per check). Each is split into N shard hashes, N
//! fixed when the store is created and recorded in the meta hash (`shards`, decimal):
//! [`DEFAULT_SHARDS`] for a new store, on a single server as on a cluster, so a store's
//! layout does not depend on where it runs and every test of a single server exercises the
//! spread code; [`RedisStore::open_with_shards`] asks for another N and refuses a store
//! created with a different one. A store created before shards existed has no `shards`
//! field: it counts as one shard, under the names it always had (`token`, `disclosures`).
//! Shard `k`'s keys carry the shard prefix `<prefix>shard<k>:` on a single server
//! (`huren-node:340000:shard7:token`), and on Redis Cluster the prefix with `shard<k>` added
//! inside its hash tag (`{huren-node:340000:shard7}token`): each shard is a slot of its own,
//! and the cluster spreads the slots over its masters.
//!
//! | key (per shard)   | type       | holds                                          | shard of a record |
//! |-------------------|------------|------------------------------------------------|-------------------|
//! | `token`           | hash       | SHA-256 of a token → encoded `TokenRecord`     | the digest's first two bytes (big-endian) mod N |
//! | `disclosures`     | hash       | `<subject ref>/<day>` → encoded `DisclosureLog` (that day's checks) | the first two bytes of SHA-256 of the subject reference, mod N: a subject's days share a shard |
//!
//! **Transactions.** A write touches the sequencer's keys or spread keys, never both (a write
//! that tries is refused: a bug). On the sequencer's keys it runs as one `MULTI`/`EXEC` under
//! `WATCH` of every hash it read: a status change reads the status hash and the meta hash
//! (which holds the frontier), so another writer on the same prefix makes the transaction
//! abort and it is retried from fresh reads, and no two entries get one index and no
//! acknowledged change is lost or left unlogged. On spread keys it runs as one
//! `MULTI`/`EXEC` per shard it touches, one after the other: each shard's part is atomic,
//! the whole is not. A failure part-way leaves the earlier shards' parts written, and a
//! `WATCH` conflict in a later shard runs the whole write again over what the earlier ones
//! committed; so every spread write is idempotent: a token digest maps to the same record
//! however often it is written (and a retried `IssueTokens` issues fresh tokens: the digests
//! of undelivered ones expire unused), and a disclosure batch is remembered by its id in
//! each day log it reached.
//!
//! Purges delete a status or token only if it still holds the bytes that were judged, and
//! trim a day's disclosure log only if it still holds what was judged (compare-and-delete and
//! compare-and-replace scripts, per shard, without `WATCH`), so a change made meanwhile
//! survives and a busy writer does not make a purge start over. Durability
//! across a Redis crash is Redis's own: run it (every master of a cluster) with `appendonly
//! yes` and `appendfsync always` (the store warns at open otherwise).
//!
//! **Connections.** One per route — the sequencer's keys, and each shard — opened when first
//! used and opened again after a failure (on a cluster: to the master holding that slot now):
//! up to 1 + N per node process. Write transactions run one at a time in a process; reads run
//! between them, each on its route's connection.
//!
//! [`NodeStore::rewrite`](super::NodeStore::rewrite) does nothing here: a deleted key or
//! field is gone from the keyspace at once, and what Redis's persistence files still hold
//! is rewritten by Redis itself (`BGREWRITEAOF`, the next RDB snapshot), outside the
//! node's reach.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::backend::{wrong_key, Backend, Key, Page, Reader, Replacement, Table, Writer};
use super::{BackedStore, StoreError};

/// The key (under the prefix) holding the commitment salt, the log's frontier and the
/// other node metadata; after a sunset it holds no subject data and no salt.
pub const META_KEY: &str = "meta";

/// Shards of each spread table in a store created by [`RedisStore::open`]: enough for the
/// slots to fall on every master of a cluster of a few, few enough that a batch of tokens
/// costs a handful of round trips.
pub const DEFAULT_SHARDS: u16 = 16;
/// Most shards a store may have.
pub const MAX_SHARDS: u16 = 1024;
/// The meta field recording the shard count, in decimal.
const SHARDS_FIELD: &str = "shards";

/// The route of the sequencer's keys; shard `k` is route `1 + k`.
const SEQUENCER: usize = 0;

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

/// For each quadruple of `ARGV` (field, value judged, `1` to set or `0` to delete, new
/// value): if hash `KEYS[1]` still holds the value judged, sets or deletes the field; returns
/// one flag per quadruple.
const COMPARE_AND_REPLACE: &str = r"
local out = {}
for i = 1, #ARGV, 4 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    if ARGV[i + 2] == '1' then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 3])
    else
      redis.call('HDEL', KEYS[1], ARGV[i])
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
";
/// Records per compare-and-replace script (a script blocks the server while it runs).
const REPLACE_CHUNK: usize = 512;

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

/// The prefix of shard `k`'s keys (see the module docs); a store of one shard keeps
/// `prefix`, the names of a store created before shards existed.
fn shard_prefix(prefix: &str, on_cluster: bool, shards: u16, k: u16) -> String {
    if shards == 1 {
        return prefix.to_owned();
    }
    match cluster::tag_span(prefix).filter(|_| on_cluster) {
        Some(tag) => format!("{}shard{k}{}", &prefix[..tag.end], &prefix[tag.end..]),
        None => format!("{prefix}shard{k}:"),
    }
}

/// The shard of `key` in spread `table` (see the module docs).
fn shard(table: Table, key: &Key, shards: u16) -> Result<u16, StoreError> {
    let by: [u8; 2] = match (table, key) {
        // A digest is uniformly random already.
        (Table::Token, Key::Bytes(digest)) if digest.len() >= 2 => [digest[0], digest[1]],
        (Table::Disclosures, Key::Text(bucket)) => {
            let subject = bucket.rsplit_once('/').map_or(bucket.as_str(), |(s, _)| s);
            let h = Sha256::digest(subject.as_bytes());
            [h[0], h[1]]
        }
        (table, key) => return Err(wrong_key(table, key)),
    };
    Ok(u16::from_be_bytes(by) % shards.max(1))
}

/// A node store's keys in Redis: the sequencer's, and each shard's, each reached through
/// its own connection (see the module docs).
pub struct Redis {
    client: redis::Client,
    prefix: String,
    keys: Keys,
    /// [`SEQUENCER`], then one per shard.
    routes: Vec<Route>,
    /// Held by a write transaction, so one runs at a time and takes its routes' connections
    /// without waiting on another's.
    writing: Mutex<()>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("shards", &self.shards())
            .finish_non_exhaustive()
    }
}

/// A group of keys in one slot, and the connection that reaches it (opened when first used,
/// dropped after a failure).
struct Route {
    /// What its connections call themselves (`CLIENT SETNAME huren-node:<name>`).
    name: String,
    /// On Redis Cluster: how to find the master holding the route's slot.
    slot: Option<cluster::Slot>,
    conn: Mutex<Option<redis::Connection>>,
}

impl Route {
    /// A fresh connection: to the server, or on a cluster to the master now holding the slot.
    fn connect(&self, client: &redis::Client) -> Result<redis::Connection, StoreError> {
        let mut conn = connect(client, &self.name).map_err(backend)?;
        if let Some(slot) = &self.slot {
            conn = connect(&slot.master(&mut conn).map_err(backend)?, &self.name).map_err(backend)?;
        }
        Ok(conn)
    }

    /// The route's connection, locked; opened if there is none.
    fn lock(&self, client: &redis::Client) -> Result<MutexGuard<'_, Option<redis::Connection>>, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.connect(client)?);
        }
        Ok(guard)
    }
}

struct Keys {
    status: String,
    entries: String,
    hashes: String,
    nodes: String,
    subjects: String,
    meta: String,
    applied: String,
    aggregates: String,
    /// Per shard.
    token: Vec<String>,
    disclosures: Vec<String>,
}

impl Keys {
    fn new(prefix: &str, shard_prefixes: &[String]) -> Self {
        Self {
            status: format!("{prefix}status"),
            entries: format!("{prefix}log:entries"),
            hashes: format!("{prefix}log:hashes"),
            nodes: format!("{prefix}log:nodes"),
            subjects: format!("{prefix}log:subjects"),
            meta: format!("{prefix}{META_KEY}"),
            applied: format!("{prefix}applied"),
            aggregates: format!("{prefix}hub_aggregates"),
            token: shard_prefixes.iter().map(|p| format!("{p}token")).collect(),
            disclosures: shard_prefixes.iter().map(|p| format!("{p}disclosures")).collect(),
        }
    }

    /// The key of `table` on `route` (one of [`Redis::routes_of`] the table).
    fn of(&self, table: Table, route: usize) -> &str {
        let shard = route.saturating_sub(1);
        match table {
            Table::Status => &self.status,
            Table::Token => &self.token[shard],
            Table::LogEntries => &self.entries,
            Table::LogHashes => &self.hashes,
            Table::LogNodes => &self.nodes,
            Table::SubjectLog => &self.subjects,
            Table::Meta => &self.meta,
            Table::Applied => &self.applied,
            Table::Disclosures => &self.disclosures[shard],
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
    /// Connects to `url` and opens (or creates, with [`DEFAULT_SHARDS`]) the store under
    /// `prefix`, creating the commitment salt if there is none; computes the interior log
    /// hashes a store written by an older version lacks (once).
    ///
    /// On Redis Cluster (the server at `url` reports `cluster_enabled:1`) the sequencer's
    /// keys live in one hash slot: a prefix without a hash tag is wrapped in one
    /// (`huren-node:340000:` becomes `{huren-node:340000:}`), and the store talks to the
    /// master holding that slot, and to the masters holding its shards' slots, found again
    /// after a failover (see [`cluster`]).
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::open_as(url, prefix, None)
    }

    /// [`Self::open`] for a store of `shards` shards (1 to [`MAX_SHARDS`]): a new store is
    /// created with them, one created with another count is refused.
    pub fn open_with_shards(url: &str, prefix: &str, shards: u16) -> Result<Self, StoreError> {
        Self::open_as(url, prefix, Some(shards))
    }

    fn open_as(url: &str, prefix: &str, shards: Option<u16>) -> Result<Self, StoreError> {
        let redis = Redis::connect_to(url, prefix, Layout::Open(shards))?;
        if let Ok(mut conn) = redis.routes[SEQUENCER].lock(&redis.client) {
            if let Some(conn) = conn.as_mut() {
                warn_if_not_durable(conn);
            }
        }
        Self::open_in(redis)
    }

    /// What the store under `prefix` holds, by kind, read without changing anything
    /// (for `huren audit scan`).
    pub fn inspect(url: &str, prefix: &str) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        Self::counts_in(&Redis::connect_to(url, prefix, Layout::Inspect)?)
    }

    /// The key prefix (on a cluster: with its hash tag).
    pub fn prefix(&self) -> &str {
        &self.backend.prefix
    }

    /// How many shards each spread table has (see the module docs).
    pub fn shards(&self) -> u16 {
        self.backend.shards()
    }
}

/// How a connection takes the store's shard count.
#[derive(Clone, Copy)]
enum Layout {
    /// As recorded; for a new store, the count given or [`DEFAULT_SHARDS`], recorded; the
    /// count given must be the one recorded.
    Open(Option<u16>),
    /// As recorded, writing nothing (one shard if none is).
    Inspect,
}

/// The store's shard count, recorded in its meta hash `meta` on `conn` (see [`Layout`]).
fn shard_count(conn: &mut redis::Connection, meta: &str, layout: Layout) -> Result<u16, String> {
    let parse = |text: Option<String>| -> Result<Option<u16>, String> {
        text.map(|t| {
            t.parse::<u16>().ok().filter(|n| (1..=MAX_SHARDS).contains(n)).ok_or(format!("corrupt shard count {t:?}"))
        })
        .transpose()
    };
    let recorded: Option<String> =
        redis::cmd("HGET").arg(meta).arg(SHARDS_FIELD).query(conn).map_err(|e| e.to_string())?;
    let n = match (parse(recorded)?, layout) {
        (Some(n), _) => n,
        (None, Layout::Inspect) => 1,
        (None, Layout::Open(asked)) => {
            // A store written before shards existed keeps its one hash per table.
            let older: bool = redis::cmd("EXISTS").arg(meta).query(conn).map_err(|e| e.to_string())?;
            let n = if older { 1 } else { asked.unwrap_or(DEFAULT_SHARDS) };
            // Of two processes creating the store at once, one count wins.
            redis::cmd("HSETNX")
                .arg(meta)
                .arg(SHARDS_FIELD)
                .arg(n.to_string())
                .exec(conn)
                .map_err(|e| e.to_string())?;
            let now: Option<String> =
                redis::cmd("HGET").arg(meta).arg(SHARDS_FIELD).query(conn).map_err(|e| e.to_string())?;
            parse(now)?.ok_or("the shard count was not recorded")?
        }
    };
    match layout {
        Layout::Open(Some(asked)) if asked != n => Err(format!(
            "the store has {n} shards, {asked} were asked for (the count is fixed when a store is created)"
        )),
        _ => Ok(n),
    }
}

impl Redis {
    /// Connects to `url` (on a cluster: to the master of the sequencer's slot) and reads the
    /// store's shard count.
    fn connect_to(url: &str, prefix: &str, layout: Layout) -> Result<Self, StoreError> {
        let open_err = |m: String| StoreError::Open { path: format!("{url} {prefix}*"), message: m };
        if let Layout::Open(Some(n)) = layout {
            if !(1..=MAX_SHARDS).contains(&n) {
                return Err(open_err(format!("a store has 1 to {MAX_SHARDS} shards, not {n}")));
            }
        }
        let client = redis::Client::open(url).map_err(|e| open_err(e.to_string()))?;
        let mut conn = connect(&client, prefix).map_err(|e| open_err(e.to_string()))?;
        let on_cluster = cluster::enabled(&mut conn).map_err(|e| open_err(e.to_string()))?;
        let prefix = if on_cluster { cluster::tagged(prefix) } else { prefix.to_owned() };
        let slot = |of: &str| on_cluster.then(|| cluster::Slot::new(&client, of)).transpose();
        let sequencer = slot(&prefix).map_err(|e| open_err(e.to_string()))?;
        if let Some(slot) = &sequencer {
            conn = connect(&slot.master(&mut conn).map_err(|e| open_err(e.to_string()))?, &prefix)
                .map_err(|e| open_err(e.to_string()))?;
        }
        let shards = shard_count(&mut conn, &format!("{prefix}{META_KEY}"), layout).map_err(open_err)?;
        let shard_prefixes: Vec<String> = (0..shards).map(|k| shard_prefix(&prefix, on_cluster, shards, k)).collect();
        let mut routes = vec![Route { name: prefix.clone(), slot: sequencer, conn: Mutex::new(Some(conn)) }];
        for (k, p) in shard_prefixes.iter().enumerate() {
            let slot = slot(p).map_err(|e| open_err(e.to_string()))?;
            routes.push(Route { name: format!("{prefix}shard{k}"), slot, conn: Mutex::new(None) });
        }
        Ok(Redis { client, keys: Keys::new(&prefix, &shard_prefixes), prefix, routes, writing: Mutex::new(()) })
    }

    fn shards(&self) -> u16 {
        u16::try_from(self.routes.len() - 1).unwrap_or(u16::MAX)
    }

    /// The route holding `key` of `table`.
    fn route_of(&self, table: Table, key: &Key) -> Result<usize, StoreError> {
        if table.spread() {
            Ok(1 + usize::from(shard(table, key, self.shards())?))
        } else {
            Ok(SEQUENCER)
        }
    }

    /// The routes holding records of `table`.
    fn routes_of(&self, table: Table) -> Range<usize> {
        if table.spread() {
            1..self.routes.len()
        } else {
            SEQUENCER..SEQUENCER + 1
        }
    }

    /// Runs `f` on `route`'s connection, opening one first if the last call broke it.
    fn with<T>(
        &self,
        route: usize,
        f: impl FnOnce(&mut redis::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.routes[route].lock(&self.client)?;
        let conn = guard.as_mut().ok_or_else(|| backend("no connection"))?;
        let out = f(conn);
        if let Err(StoreError::Backend(_)) = &out {
            // Unknown state (a WATCH left set, a half-read reply): start afresh next time.
            *guard = None;
        }
        out
    }

    /// Runs `script` on `keys` of `table`, one `EVAL` per route and `chunk` keys, with each
    /// key's field followed by what `args` adds for it; one flag per key.
    fn compare_and(
        &self,
        table: Table,
        script: &str,
        chunk: usize,
        keys: &[Key],
        args: &mut dyn FnMut(usize, &mut redis::Cmd),
    ) -> Result<Vec<bool>, StoreError> {
        let mut flags = vec![false; keys.len()];
        for (route, (ats, fields)) in self.group(table, keys)? {
            for (ats, fields) in ats.chunks(chunk).zip(fields.chunks(chunk)) {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(script).arg(1).arg(self.keys.of(table, route));
                for (at, f) in ats.iter().zip(fields) {
                    cmd.arg(f.as_slice());
                    args(*at, &mut cmd);
                }
                let done: Vec<i64> = self.with(route, |conn| cmd.query(conn).map_err(backend))?;
                for (at, flag) in ats.iter().zip(done) {
                    flags[*at] = flag == 1;
                }
            }
        }
        Ok(flags)
    }

    /// Positions and fields of `keys` of `table`, by route.
    fn group(&self, table: Table, keys: &[Key]) -> Result<ByRoute, StoreError> {
        let mut by_route = ByRoute::new();
        for (at, key) in keys.iter().enumerate() {
            let (ats, fields) = by_route.entry(self.route_of(table, key)?).or_default();
            ats.push(at);
            fields.push(field(table, key)?);
        }
        Ok(by_route)
    }
}

/// Per route: positions of keys in a call, and their fields.
type ByRoute = BTreeMap<usize, (Vec<usize>, Vec<Vec<u8>>)>;
/// A transaction's writes to one hash: field → value to set (`None`: to delete).
type Fields = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// The `MULTI`/`EXEC` pipeline of `route` in `pipes`, begun if there is none.
fn pipe(pipes: &mut BTreeMap<usize, redis::Pipeline>, route: usize) -> &mut redis::Pipeline {
    pipes.entry(route).or_insert_with(|| {
        let mut p = redis::pipe();
        p.atomic();
        p
    })
}

/// Fields of hash `key`, `None` where absent, [`CHUNK`] per `HMGET`.
fn hmget(conn: &mut redis::Connection, key: &str, fields: &[Vec<u8>]) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
    let mut out = Vec::with_capacity(fields.len());
    for chunk in fields.chunks(CHUNK) {
        let part: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(key).arg(chunk).query(conn)?;
        out.extend(part);
    }
    Ok(out)
}

/// Reads call by call, each on its route's connection.
pub struct RedisReader<'a> {
    redis: &'a Redis,
}

impl Reader for RedisReader<'_> {
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let redis = self.redis;
        let mut out = vec![None; keys.len()];
        for (route, (ats, fields)) in redis.group(table, keys)? {
            let values =
                redis.with(route, |conn| hmget(conn, redis.keys.of(table, route), &fields).map_err(backend))?;
            for (at, value) in ats.into_iter().zip(values) {
                out[at] = value;
            }
        }
        Ok(out)
    }

    fn subject_log(&mut self, commitment: &[u8]) -> Result<Vec<u64>, StoreError> {
        let mut min = b"[".to_vec();
        min.extend_from_slice(&subject_member(commitment, 0));
        let mut max = b"[".to_vec();
        max.extend_from_slice(&subject_member(commitment, u64::MAX));
        let members: Vec<Vec<u8>> = self.redis.with(SEQUENCER, |conn| {
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
        let redis = self.redis;
        let command = if table == Table::SubjectLog { "ZCARD" } else { "HLEN" };
        let mut n = 0;
        for route in redis.routes_of(table) {
            n += redis.with(route, |conn| {
                redis::cmd(command).arg(redis.keys.of(table, route)).query::<u64>(conn).map_err(backend)
            })?;
        }
        Ok(n)
    }
}

/// One optimistic transaction: reads watch their hash and see the writes buffered so far;
/// the writes go out in one `MULTI`/`EXEC` per route at the end.
struct RedisWriter<'r> {
    redis: &'r Redis,
    /// The connections of the routes touched so far, held until the transaction ends.
    conns: BTreeMap<usize, MutexGuard<'r, Option<redis::Connection>>>,
    watched: BTreeSet<(usize, Table)>,
    cleared: BTreeSet<Table>,
    /// Per route and table, field → value to set (`None`: to delete).
    writes: BTreeMap<(usize, Table), Fields>,
    /// Subject index member → whether it is to be present.
    members: HashMap<Vec<u8>, bool>,
}

impl<'r> RedisWriter<'r> {
    fn new(redis: &'r Redis) -> Self {
        Self {
            redis,
            conns: BTreeMap::new(),
            watched: BTreeSet::new(),
            cleared: BTreeSet::new(),
            writes: BTreeMap::new(),
            members: HashMap::new(),
        }
    }

    /// Takes `route`'s connection for the rest of the transaction. A transaction may not
    /// mix the sequencer's keys with spread ones: one `MULTI`/`EXEC` cannot span slots.
    fn touch(&mut self, route: usize) -> Result<(), StoreError> {
        if let Some(first) = self.conns.keys().next() {
            if (*first == SEQUENCER) != (route == SEQUENCER) {
                return Err(StoreError::Backend(
                    "redis: a write may not mix the sequencer's tables with spread ones (a bug)".into(),
                ));
            }
        }
        if !self.conns.contains_key(&route) {
            let guard = self.redis.routes[route].lock(&self.redis.client)?;
            self.conns.insert(route, guard);
        }
        Ok(())
    }

    /// Runs `f` on `route`'s connection; a failure drops the connection (its state is unknown).
    fn on<T>(
        &mut self,
        route: usize,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.touch(route)?;
        let guard = self.conns.get_mut(&route).ok_or_else(|| backend("route not held"))?;
        let conn = guard.as_mut().ok_or_else(|| backend("no connection"))?;
        f(conn).map_err(|e| {
            **guard = None;
            backend(e)
        })
    }

    /// Ends every `WATCH` this transaction left (best effort: a connection that fails it is dropped).
    fn unwatch(&mut self) {
        for guard in self.conns.values_mut() {
            if let Some(conn) = guard.as_mut() {
                if redis::cmd("UNWATCH").exec(conn).is_err() {
                    **guard = None;
                }
            }
        }
    }

    /// Sends the buffered writes, one `MULTI`/`EXEC` per route; `false` when a watched hash
    /// changed meanwhile (that route wrote nothing, earlier ones did: see the module docs).
    fn commit(&mut self) -> Result<bool, StoreError> {
        let redis = self.redis;
        let mut pipes: BTreeMap<usize, redis::Pipeline> = BTreeMap::new();
        for table in &self.cleared {
            for route in redis.routes_of(*table) {
                pipe(&mut pipes, route).cmd("DEL").arg(redis.keys.of(*table, route)).ignore();
            }
        }
        for ((route, table), fields) in &self.writes {
            let key = redis.keys.of(*table, *route);
            let (set, unset): (Vec<_>, Vec<_>) = fields.iter().partition(|(_, v)| v.is_some());
            for chunk in set.chunks(CHUNK) {
                let p = pipe(&mut pipes, *route);
                p.cmd("HSET").arg(key);
                for (f, v) in chunk {
                    p.arg(f.as_slice()).arg(v.as_deref().unwrap_or_default());
                }
                p.ignore();
            }
            for chunk in unset.chunks(CHUNK) {
                pipe(&mut pipes, *route)
                    .cmd("HDEL")
                    .arg(key)
                    .arg(chunk.iter().map(|(f, _)| f.as_slice()).collect::<Vec<_>>())
                    .ignore();
            }
        }
        let (add, remove): (Vec<_>, Vec<_>) = self.members.iter().partition(|(_, present)| **present);
        for chunk in add.chunks(CHUNK) {
            let p = pipe(&mut pipes, SEQUENCER);
            p.cmd("ZADD").arg(&redis.keys.subjects);
            for (member, _) in chunk {
                p.arg(0).arg(member.as_slice());
            }
            p.ignore();
        }
        for chunk in remove.chunks(CHUNK) {
            let members: Vec<&[u8]> = chunk.iter().map(|(m, _)| m.as_slice()).collect();
            pipe(&mut pipes, SEQUENCER).cmd("ZREM").arg(&redis.keys.subjects).arg(members).ignore();
        }
        // Routes only read: end their WATCH.
        let idle: Vec<usize> = self
            .conns
            .keys()
            .filter(|r| !pipes.contains_key(r) && self.watched.iter().any(|(w, _)| w == *r))
            .copied()
            .collect();
        for route in idle {
            self.on(route, |conn| redis::cmd("UNWATCH").exec(conn))?;
        }
        for (route, p) in &pipes {
            // EXEC answers nil when a watched key changed: nothing of this route was written.
            let done: Option<()> = self.on(*route, |conn| p.query(conn))?;
            if done.is_none() {
                self.unwatch();
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Writer for RedisWriter<'_> {
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let redis = self.redis;
        let mut out = vec![None; keys.len()];
        for (route, (ats, fields)) in redis.group(table, keys)? {
            self.touch(route)?;
            let written = self.writes.get(&(route, table));
            let mut unread = Vec::new();
            for (at, f) in ats.into_iter().zip(fields) {
                match written.and_then(|w| w.get(&f)) {
                    Some(value) => out[at] = value.clone(),
                    None if self.cleared.contains(&table) => {}
                    None => unread.push((at, f)),
                }
            }
            if unread.is_empty() {
                continue;
            }
            let key = redis.keys.of(table, route);
            if self.watched.insert((route, table)) {
                self.on(route, |conn| redis::cmd("WATCH").arg(key).exec(conn))?;
            }
            let asked: Vec<Vec<u8>> = unread.iter().map(|(_, f)| f.clone()).collect();
            let values = self.on(route, |conn| hmget(conn, key, &asked))?;
            for ((at, _), value) in unread.into_iter().zip(values) {
                out[at] = value;
            }
        }
        Ok(out)
    }

    fn put(&mut self, table: Table, key: Key, value: Vec<u8>) -> Result<(), StoreError> {
        let route = self.redis.route_of(table, &key)?;
        self.touch(route)?;
        self.writes.entry((route, table)).or_default().insert(field(table, &key)?, Some(value));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: Key) -> Result<(), StoreError> {
        let route = self.redis.route_of(table, &key)?;
        self.touch(route)?;
        self.writes.entry((route, table)).or_default().insert(field(table, &key)?, None);
        Ok(())
    }

    fn index_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError> {
        self.touch(SEQUENCER)?;
        self.members.insert(subject_member(commitment, index), true);
        Ok(())
    }

    fn unindex_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError> {
        self.touch(SEQUENCER)?;
        self.members.insert(subject_member(commitment, index), false);
        Ok(())
    }

    fn clear(&mut self, table: Table) -> Result<(), StoreError> {
        for route in self.redis.routes_of(table) {
            self.touch(route)?;
        }
        self.cleared.insert(table);
        self.writes.retain(|(_, t), _| *t != table);
        if table == Table::SubjectLog {
            self.members.clear();
        }
        Ok(())
    }
}

impl Backend for Redis {
    type Reader<'a> = RedisReader<'a>;

    fn reader(&self) -> Result<RedisReader<'_>, StoreError> {
        Ok(RedisReader { redis: self })
    }

    fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Writer) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..MAX_ATTEMPTS {
            let mut w = RedisWriter::new(self);
            let done = f(&mut w).and_then(|out| w.commit().map(|ok| ok.then_some(out)));
            match done {
                Ok(Some(out)) => return Ok(out),
                Ok(None) => {}
                Err(e) => {
                    // Leave no WATCH behind on the connections kept.
                    w.unwatch();
                    return Err(e);
                }
            }
        }
        Err(backend(format!("write kept conflicting with other writers ({MAX_ATTEMPTS} attempts)")))
    }

    fn scan(&self, table: Table, page: &mut Page<'_>) -> Result<(), StoreError> {
        let text = |b: Vec<u8>| String::from_utf8(b).map(Key::Text).map_err(|_| corrupt("text key"));
        for route in self.routes_of(table) {
            let key = self.keys.of(table, route);
            let mut cursor = "0".to_owned();
            loop {
                let (next, items): (String, Vec<Vec<u8>>) = self.with(route, |conn| {
                    redis::cmd("HSCAN").arg(key).arg(&cursor).arg("COUNT").arg(1000).query(conn).map_err(backend)
                })?;
                let mut records = Vec::with_capacity(items.len() / 2);
                let mut items = items.into_iter();
                while let (Some(k), Some(value)) = (items.next(), items.next()) {
                    let key = match table {
                        Table::Status | Table::Disclosures | Table::HubAggregates => text(k)?,
                        Table::Token | Table::Applied => Key::Bytes(k),
                        other => return Err(backend(format!("table {other:?} is not scanned"))),
                    };
                    records.push((key, value));
                }
                page(records)?;
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    fn delete_unchanged(&self, table: Table, records: &[(Key, Vec<u8>)]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<Key> = records.iter().map(|(k, _)| k.clone()).collect();
        self.compare_and(table, COMPARE_AND_DELETE, CHUNK, &keys, &mut |at, cmd| {
            cmd.arg(records[at].1.as_slice());
        })
    }

    /// One script per shard and chunk: atomic per record, without `WATCH`, so writers of the
    /// same shards do not make it start over.
    fn replace_unchanged(&self, table: Table, records: &[Replacement]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<Key> = records.iter().map(|(k, ..)| k.clone()).collect();
        self.compare_and(table, COMPARE_AND_REPLACE, REPLACE_CHUNK, &keys, &mut |at, cmd| {
            let (_, judged, new) = &records[at];
            cmd.arg(judged.as_slice())
                .arg(if new.is_some() { "1" } else { "0" })
                .arg(new.as_deref().unwrap_or_default());
        })
    }

    /// Nothing to do: a deleted field or key is gone from Redis's keyspace at once, and
    /// rewriting its persistence files (AOF rewrite, RDB snapshot) is Redis's concern.
    fn rewrite(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A connection with [`IO_TIMEOUT`], named `huren-node:<name>` for `CLIENT LIST`.
fn connect(client: &redis::Client, name: &str) -> redis::RedisResult<redis::Connection> {
    let mut conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let name: String = format!("huren-node:{name}").chars().filter(|c| c.is_ascii_graphic()).collect();
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

/// Redis Cluster: the sequencer's keys share one hash tag, so they sit in one slot and a
/// transaction (`WATCH`/`MULTI`/`EXEC` over several keys) runs on the one master that holds
/// it — the log's sequencer (the frontier in the meta hash) is in one place, and a status
/// change commits with its log entry. Each shard of the spread tables has a hash tag of its
/// own (the sequencer's with `shard<k>` added), so the cluster places the shards' slots on
/// its masters as it places any slot: the token digests and disclosure logs spread over the
/// cluster, the sequencer's keys stay on one master. Each route (the sequencer's keys, a
/// shard) finds the master holding its slot with `CLUSTER SLOTS`, and finds it again after a
/// failover (a `MOVED` reply fails the call and drops the connection).
pub mod cluster {
    use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo as _, RedisResult, Value};

    /// Whether the server runs in cluster mode.
    pub(crate) fn enabled(conn: &mut redis::Connection) -> RedisResult<bool> {
        let info: String = redis::cmd("INFO").arg("cluster").query(conn)?;
        Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
    }

    /// Where the hash tag of `key` lies (between its first `{` and the next `}`, if not empty).
    pub(crate) fn tag_span(key: &str) -> Option<std::ops::Range<usize>> {
        let open = key.find('{')?;
        let close = key[open + 1..].find('}')?;
        Some(open + 1..open + 1 + close).filter(|r| !r.is_empty())
    }

    /// The hash tag of `prefix`: what is between its first `{` and the next `}`, if not empty.
    pub fn hash_tag(prefix: &str) -> Option<&str> {
        tag_span(prefix).map(|r| &prefix[r])
    }

    /// `prefix` with a hash tag: unchanged if it has one, else wrapped whole in braces.
    pub fn tagged(prefix: &str) -> String {
        if hash_tag(prefix).is_some() {
            prefix.to_owned()
        } else {
            format!("{{{prefix}}}")
        }
    }

    /// The slot a group of keys hashes to, and how to reach the server first named.
    pub(crate) struct Slot {
        seed: ConnectionInfo,
        tag: String,
    }

    impl Slot {
        /// The slot of the keys under `prefix`.
        pub(crate) fn new(client: &redis::Client, prefix: &str) -> RedisResult<Self> {
            let tag = hash_tag(prefix).unwrap_or(prefix).to_owned();
            Ok(Self { seed: client.get_connection_info().clone().into_connection_info()?, tag })
        }

        /// A client for the master holding the slot, as `conn` (any cluster node) sees it now.
        pub(crate) fn master(&self, conn: &mut redis::Connection) -> RedisResult<redis::Client> {
            let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&self.tag).query(conn)?;
            for (range, host, port) in self.ranges(conn)? {
                if range.contains(&slot) {
                    return self.client(host, port);
                }
            }
            Err(redis::RedisError::from((redis::ErrorKind::Client, "no cluster master holds the store's slot")))
        }

        /// A client for each master of the cluster, as `conn` sees it now (for tests that look
        /// at every key of a store).
        #[cfg(test)]
        pub(crate) fn masters(&self, conn: &mut redis::Connection) -> RedisResult<Vec<redis::Client>> {
            let mut seen = std::collections::BTreeSet::new();
            let mut out = Vec::new();
            for (_, host, port) in self.ranges(conn)? {
                if seen.insert((host.clone(), port)) {
                    out.push(self.client(host, port)?);
                }
            }
            Ok(out)
        }

        /// `CLUSTER SLOTS`: each slot range with its master's host and port.
        fn ranges(
            &self,
            conn: &mut redis::Connection,
        ) -> RedisResult<Vec<(std::ops::RangeInclusive<i64>, String, u16)>> {
            let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(conn)?;
            let mut out = Vec::new();
            for range in ranges {
                let Value::Array(parts) = range else { continue };
                let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                    (parts.first(), parts.get(1), parts.get(2))
                else {
                    continue;
                };
                let host = match master.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => continue,
                };
                let Some(Value::Int(port)) = master.get(1) else { continue };
                out.push((*start..=*end, host, u16::try_from(*port).unwrap_or_default()));
            }
            Ok(out)
        }

        /// A client for `host:port`, with the seed's TLS settings and credentials.
        fn client(&self, host: String, port: u16) -> RedisResult<redis::Client> {
            let addr = match self.seed.addr() {
                ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
                    ConnectionAddr::TcpTls { host, port, insecure: *insecure, tls_params: tls_params.clone() }
                }
                _ => ConnectionAddr::Tcp(host, port),
            };
            redis::Client::open(self.seed.clone().set_addr(addr))
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::super::tests::{Fixture, Kind};
    use super::super::{DisclosureRecord, NodeStore as _, PurgePlan, StatusRecord, TokenRecord};
    use super::*;

    fn token(i: u32) -> ([u8; 32], TokenRecord) {
        let digest: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
        (digest, TokenRecord { subject_ref: format!("ref-{i}"), expires_at: 100 })
    }

    fn keeps_its_shard_count(kind: Kind) {
        let fixture = Fixture::new(kind);
        let url = fixture.url();
        let store = RedisStore::open_with_shards(&url, fixture.prefix(), 4).unwrap();
        assert_eq!(store.shards(), 4);
        let tokens: Vec<_> = (0..200).map(token).collect();
        store.put_tokens(&tokens).unwrap();
        drop(store);
        let store = RedisStore::open(&url, fixture.prefix()).unwrap();
        assert_eq!(store.shards(), 4, "the count recorded at creation, not the default");
        assert!(tokens.iter().all(|(d, r)| store.token(d).unwrap().as_ref() == Some(r)));
        assert_eq!(RedisStore::inspect(&url, fixture.prefix()).unwrap()["token"], 200);
        for other in [1, 8, DEFAULT_SHARDS] {
            let err = RedisStore::open_with_shards(&url, fixture.prefix(), other).unwrap_err();
            assert!(matches!(&err, StoreError::Open { message, .. } if message.contains("has 4 shards")), "{err}");
        }
        for out_of_range in [0, MAX_SHARDS + 1] {
            assert!(RedisStore::open_with_shards(&url, fixture.prefix(), out_of_range).is_err());
        }
    }

    #[test]
    fn on_redis_a_store_keeps_the_shard_count_it_was_created_with() {
        keeps_its_shard_count(Kind::Redis);
    }

    #[test]
    fn on_redis_cluster_a_store_keeps_the_shard_count_it_was_created_with() {
        keeps_its_shard_count(Kind::RedisCluster);
    }

    /// A store written before shards existed (no `shards` in its meta hash, one `token` hash)
    /// opens as one shard and finds its tokens; it is not re-keyed.
    #[test]
    fn a_store_from_before_shards_opens_as_one_shard() {
        let fixture = Fixture::new(Kind::Redis);
        let url = fixture.url();
        let store = RedisStore::open_with_shards(&url, fixture.prefix(), 1).unwrap();
        store.upsert("subject-1", StatusRecord { status: 1, ..Default::default() }).unwrap();
        let (digest, record) = token(1);
        store.put_token(&digest, &record).unwrap();
        drop(store);
        let mut conn = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
        let meta = format!("{}{META_KEY}", fixture.prefix());
        let _: () = redis::cmd("HDEL").arg(&meta).arg(SHARDS_FIELD).query(&mut conn).unwrap();
        let exists: bool = redis::cmd("EXISTS").arg(format!("{}token", fixture.prefix())).query(&mut conn).unwrap();
        assert!(exists, "one shard keeps the name `token`");

        let store = RedisStore::open(&url, fixture.prefix()).unwrap();
        assert_eq!(store.shards(), 1);
        assert_eq!(store.token(&digest).unwrap(), Some(record));
        assert_eq!(store.status("subject-1").unwrap().unwrap().version, 1);
        assert!(RedisStore::open_with_shards(&url, fixture.prefix(), DEFAULT_SHARDS).is_err());
    }

    /// One `MULTI`/`EXEC` cannot span slots: a write mixing a status with a token is refused
    /// whole, on any server.
    #[test]
    fn a_write_may_not_mix_the_sequencer_tables_with_spread_ones() {
        let fixture = Fixture::new(Kind::Redis);
        let store = RedisStore::open(&fixture.url(), fixture.prefix()).unwrap();
        let (digest, record) = token(1);
        let err = store
            .backend
            .write(&mut |w| {
                w.put(Table::Status, Key::text("subject-1"), StatusRecord::default().encode_to_vec())?;
                w.put(Table::Token, Key::Bytes(digest.to_vec()), record.encode_to_vec())
            })
            .unwrap_err();
        assert!(err.to_string().contains("may not mix"), "{err}");
        assert!(store.status("subject-1").unwrap().is_none());
        assert!(store.token(&digest).unwrap().is_none());
        // Each kind on its own is written.
        store.put_token(&digest, &record).unwrap();
        store.upsert("subject-1", StatusRecord::default()).unwrap();
    }

    fn check(time: i64) -> DisclosureRecord {
        super::super::tests::check_record("h1", time)
    }

    /// A retention purge (one node process) while another appends today's checks to the same
    /// shards without pause: the purge is not starved (it watches nothing), the appends its
    /// trims conflict with run again, and every old check is deleted and counted exactly
    /// once, no new one lost or doubled.
    fn a_purge_racing_appends_counts_each_check_once(kind: Kind) {
        let fixture = Fixture::new(kind);
        let url = fixture.url();
        let open = || std::sync::Arc::new(RedisStore::open(&url, fixture.prefix()).unwrap());
        let (purger, appender) = (open(), open());
        let subjects: Vec<String> = (0..3000).map(|i| format!("s-{i:04}")).collect();
        let old: Vec<(String, DisclosureRecord)> = subjects.iter().map(|s| (s.clone(), check(100))).collect();
        appender.append_disclosures(1, &old, &[]).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (started, first) = std::sync::mpsc::channel();
        let writer = {
            let (appender, stop, subjects) = (appender.clone(), stop.clone(), subjects.clone());
            std::thread::spawn(move || {
                let mut id = 2;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch: Vec<_> = subjects.iter().step_by(97).map(|s| (s.clone(), check(86_400 + id))).collect();
                    appender.append_disclosures(id as u64, &batch, &[]).unwrap();
                    let _ = started.send(());
                    id += 1;
                }
                (id - 2) as u64
            })
        };
        first.recv().unwrap();
        let plan = PurgePlan { disclosures_before: Some(86_400), ..Default::default() };
        let out = purger.purge(&plan, &mut |_| {});
        // Stopped before anything can fail, so no append outlives the fixture.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let appended = writer.join().unwrap();
        let out = out.unwrap();
        assert_eq!(out.counts.get("disclosure"), Some(&3000), "with {appended} batches appended meanwhile");
        assert!(subjects.iter().all(|s| purger.disclosures(s, 0, 86_399).unwrap().entries.is_empty()));
        // Checks a second apart by one hub join one entry: count checks, not entries.
        let checks = |s: &String| -> u64 {
            purger.disclosures(s, 86_400, 200_000).unwrap().entries.iter().map(DisclosureRecord::checks).sum()
        };
        let kept: u64 = subjects.iter().map(checks).sum();
        assert_eq!(kept, appended * subjects.iter().step_by(97).count() as u64, "no new check lost");
    }

    #[test]
    fn on_redis_a_purge_racing_appends_counts_each_check_once() {
        a_purge_racing_appends_counts_each_check_once(Kind::Redis);
    }

    #[test]
    fn on_redis_cluster_a_purge_racing_appends_counts_each_check_once() {
        a_purge_racing_appends_counts_each_check_once(Kind::RedisCluster);
    }
}
