//! The LSM backend: the node store in a fjall database (a pure-Rust log-structured merge
//! tree), one keyspace per table, each write one atomic fjall write batch
//! (`store = "fjall"`, the folder `status.fjall/` in `data_dir`). Random keys in several
//! tables, which is what every status change writes, cost an LSM tree appends to one journal
//! instead of page rewrites in several B-trees.
//!
//! Layout of the folder: `CURRENT` names the live generation, a folder `gNNNNNNNN/` holding one
//! fjall database; any other `g…` folder is what an interrupted [`NodeStore::rewrite`](super::NodeStore::rewrite) left (its
//! unfinished copy, or the old generation not yet wiped) and is wiped and removed at open.
//! Keyspaces (uncompressed, so `huren audit scan` reads what is stored):
//!
//! | keyspace         | key                                   | value                      |
//! |------------------|---------------------------------------|----------------------------|
//! | `subjects`       | subject reference (UTF-8)             | encoded `StatusRecord`     |
//! | `tokens`         | SHA-256 of a token                    | encoded `TokenRecord`      |
//! | `log_entries`    | log index, 8 bytes big-endian         | encoded `LogEntry`         |
//! | `log_hashes`     | log index, 8 bytes big-endian         | RFC 9162 leaf hash         |
//! | `log_nodes`      | level (1 byte) ‖ index (8 bytes BE)   | interior hash              |
//! | `subject_log`    | commitment ‖ log index (8 bytes BE)   | empty                      |
//! | `meta`           | name (UTF-8)                          | salt, frontier, …          |
//! | `applied_items`  | salted hash of (caller, item id)      | encoded applied item       |
//! | `disclosures`    | `<subject ref>/<day>`                 | encoded `DisclosureLog`    |
//! | `hub_aggregates` | `hour/hub/province/purpose`           | encoded `HubAggregateRecord` |
//! | `counts`         | keyspace name                         | records it holds, u64 BE   |
//!
//! Indices are big-endian so keys sort as numbers (a subject's log indices come out of a
//! prefix scan in order). An LSM tree cannot count its keys without reading them all, so
//! every write keeps `counts` exact in the same batch: a put or delete first asks whether
//! the key exists (answered from what the write already read or wrote; for the log's
//! growing keys, from the largest key held, read once per write; a subject-index key is new
//! by construction, its log index just appended; else a point read that bloom filters make
//! cheap for absent keys).
//!
//! Writes: one at a time (a mutex), each over a snapshot taken once it holds the mutex. What
//! it writes is held in its own ordered overlay, which its reads consult first, and goes to
//! fjall as one write batch at the end: atomic (one sequence number, visible to readers all
//! at once) and inserted into the memtables once, in key order. (fjall's own
//! transactions insert every write twice, into the transaction's memtable and then the
//! keyspace's: measured 1.3× slower at 1 M subjects, BENCHMARKS.md.)
//!
//! Durability: every write (`Backend::write`) is one fjall write batch committed with
//! `PersistMode::SyncAll`: the journal is written and `fsync`ed before the call returns, so
//! an acknowledged change survives a crash of the process or the machine (fjall replays its
//! journal at open). fjall's default (`PersistMode::Buffer`, a write to OS buffers) would
//! survive a process crash only, and is not used. Reads see a snapshot; fjall's lock file keeps a second process
//! off the folder.
//!
//! What stays on disk after a delete: an LSM tree writes a delete as a tombstone and drops
//! the old value only when compaction reaches it, and the journal keeps every write until
//! its memtables are flushed, so a deleted record's bytes stay in files for a while.
//! [`NodeStore::rewrite`](super::NodeStore::rewrite) (after every manual purge and the sunset) therefore does what the
//! redb backend does: it copies what is still live into a fresh generation, makes that the
//! live one (an atomic rename of `CURRENT`), then overwrites every byte of every file of the
//! old generation with zeros before removing it. Like redb's, this guarantees the files the
//! store keeps hold no deleted record; what the file system or the disk keeps of blocks it
//! freed earlier (fjall's own compactions unlink files without overwriting them) is outside
//! any backend's reach.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use super::backend::{wrong_key, Backend, Key, Page, Reader, Table, Writer};
use super::{BackedStore, StoreError};

/// The node store in a fjall database; cheap to clone.
pub type FjallStore = BackedStore<Fjall>;

/// Records handed to a scan's callback at a time.
const SCAN_PAGE: usize = 1000;
/// Records per batch when [`Backend::rewrite`] copies the live generation.
const COPY_BATCH: usize = 10_000;
/// Names the live generation's folder.
const CURRENT: &str = "CURRENT";
/// fjall's block cache, bytes (its default is 32 MiB): the status table's blocks that point
/// reads and status changes at population scale come back to.
const CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Every table, in the order of [`slot`].
const TABLES: [Table; 10] = [
    Table::Status,
    Table::Token,
    Table::LogEntries,
    Table::LogHashes,
    Table::LogNodes,
    Table::SubjectLog,
    Table::Meta,
    Table::Applied,
    Table::Disclosures,
    Table::HubAggregates,
];

fn slot(table: Table) -> usize {
    match table {
        Table::Status => 0,
        Table::Token => 1,
        Table::LogEntries => 2,
        Table::LogHashes => 3,
        Table::LogNodes => 4,
        Table::SubjectLog => 5,
        Table::Meta => 6,
        Table::Applied => 7,
        Table::Disclosures => 8,
        Table::HubAggregates => 9,
    }
}

fn keyspace_name(table: Table) -> &'static str {
    match table {
        Table::Status => "subjects",
        Table::Token => "tokens",
        Table::LogEntries => "log_entries",
        Table::LogHashes => "log_hashes",
        Table::LogNodes => "log_nodes",
        Table::SubjectLog => "subject_log",
        Table::Meta => "meta",
        Table::Applied => "applied_items",
        Table::Disclosures => "disclosures",
        Table::HubAggregates => "hub_aggregates",
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("fjall: {e}"))
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The bytes of `key` in `table` (see the module's table).
fn encode(table: Table, key: &Key) -> Result<Vec<u8>, StoreError> {
    match (table, key) {
        (Table::Status | Table::Meta | Table::Disclosures | Table::HubAggregates, Key::Text(s)) => {
            Ok(s.as_bytes().to_vec())
        }
        (Table::Token | Table::Applied, Key::Bytes(b)) => Ok(b.clone()),
        (Table::LogEntries | Table::LogHashes, Key::Index(i)) => Ok(i.to_be_bytes().to_vec()),
        (Table::LogNodes, Key::Node(n)) => {
            let mut out = Vec::with_capacity(9);
            out.push(n.level);
            out.extend_from_slice(&n.index.to_be_bytes());
            Ok(out)
        }
        (table, key) => Err(wrong_key(table, key)),
    }
}

/// The key of a scanned record of `table`.
fn decode(table: Table, bytes: &[u8]) -> Result<Key, StoreError> {
    match table {
        Table::Status | Table::Meta | Table::Disclosures | Table::HubAggregates => {
            let text = std::str::from_utf8(bytes).map_err(|_| corrupt(format!("a {table:?} key is not UTF-8")))?;
            Ok(Key::text(text))
        }
        Table::Token | Table::Applied => Ok(Key::Bytes(bytes.to_vec())),
        other => Err(backend(format!("table {other:?} is not scanned"))),
    }
}

fn subject_key(commitment: &[u8], index: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(commitment.len() + 8);
    key.extend_from_slice(commitment);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn count_of(bytes: Option<fjall::Slice>) -> Result<u64, StoreError> {
    match bytes {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(&*b).map(u64::from_be_bytes).map_err(|_| corrupt("a record count")),
    }
}

/// One fjall database: a generation of the store.
struct Generation {
    /// Its folder, `gNNNNNNNN`, in the store's folder.
    dir: PathBuf,
    db: Database,
    /// The keyspace of each table, in the order of [`TABLES`].
    tables: Vec<Keyspace>,
    counts: Keyspace,
    /// Held by the one write at a time (see [`Backend::write`]), with what the latest writes
    /// wrote.
    writer: Mutex<Committed>,
    /// Writes committed so far (the same as `writer`'s count; read without the lock).
    committed: AtomicU64,
    /// Hashes the keys writes wrote (one random key per generation).
    hasher: std::collections::hash_map::RandomState,
}

/// The tables whose values a write may read ahead ([`Backend::write_prefetched`]): the
/// keys a write writes in them are listed for the writes after it.
const PREFETCHED: [Table; 3] = [Table::Status, Table::Applied, Table::Token];

/// Committed writes kept in [`Committed::recent`]: a read ahead older than these is dropped.
const RECENT_WRITES: usize = 8;

/// What the latest writes wrote, for values read ahead of a write
/// ([`Backend::write_prefetched`]) to be checked against.
#[derive(Default)]
struct Committed {
    /// Writes committed so far.
    count: u64,
    /// The latest [`RECENT_WRITES`] writes, oldest first: each one's number and the hashes
    /// of the keys it wrote in the [`PREFETCHED`] tables (`None`: too many to list; it
    /// counts as having written every key).
    recent: VecDeque<(u64, Option<HashSet<u64>>)>,
}

impl Generation {
    fn key_hash(&self, table: Table, key: &[u8]) -> u64 {
        self.hasher.hash_one((slot(table), key))
    }
}

impl Generation {
    fn open(dir: &Path) -> Result<Self, StoreError> {
        // Opened from a thread of lower priority, whose niceness fjall's flush and compaction
        // threads inherit: they give way to lookups (`crate::priority`).
        let path = dir.to_owned();
        let db = crate::priority::run_lowered(move || Database::builder(path).cache_size(CACHE_BYTES).open())
            .map_err(backend)?
            .map_err(backend)?;
        let tables = TABLES
            .iter()
            .map(|t| db.keyspace(keyspace_name(*t), KeyspaceCreateOptions::default).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        let counts = db.keyspace("counts", KeyspaceCreateOptions::default).map_err(backend)?;
        Ok(Self {
            dir: dir.to_owned(),
            db,
            tables,
            counts,
            writer: Mutex::new(Committed::default()),
            committed: AtomicU64::new(0),
            hasher: Default::default(),
        })
    }

    fn keyspace(&self, table: Table) -> &Keyspace {
        &self.tables[slot(table)]
    }
}

/// A fjall database holding a node store.
#[derive(Clone)]
pub struct Fjall {
    /// The live generation, replaced whole by [`Backend::rewrite`]. A write holds the read
    /// lock until it commits; a read or a scan page holds its own reference to the
    /// generation it reads, and a rewrite waits for those before wiping the old one.
    live: Arc<RwLock<Arc<Generation>>>,
    /// The store's folder.
    root: Arc<PathBuf>,
}

impl std::fmt::Debug for Fjall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore").finish_non_exhaustive()
    }
}

impl BackedStore<Fjall> {
    /// Opens (or creates) the store in the folder `dir` (`data_dir/status.fjall`), creating
    /// it; wipes and removes what an interrupted rewrite left; computes the interior log
    /// hashes a store lacks.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_in(Fjall::open(dir)?)
    }

    /// What a store folder holds (for `huren audit scan`: the node must be stopped, or
    /// fjall's lock refuses). Opening replays the journal, so it may write to the folder;
    /// it never creates a store where there is none.
    pub fn inspect(dir: &Path) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        let open_err = |m: String| StoreError::Open { path: dir.display().to_string(), message: m };
        let name = current(dir).map_err(open_err)?.ok_or_else(|| open_err(format!("no {CURRENT} file")))?;
        let generation = Generation::open(&dir.join(name)).map_err(|e| open_err(e.to_string()))?;
        Self::counts_in(&Fjall { live: Arc::new(RwLock::new(Arc::new(generation))), root: Arc::new(dir.to_owned()) })
    }
}

impl Fjall {
    /// The backend in the folder `dir`, created if there is none; wipes and removes what an
    /// interrupted rewrite left.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |m: String| StoreError::Open { path: dir.display().to_string(), message: m };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let name = match current(dir).map_err(open_err)? {
            Some(name) => name,
            None => {
                if !generations(dir).map_err(|e| open_err(e.to_string()))?.is_empty() {
                    return Err(open_err(format!(
                        "{CURRENT} is missing but generation folders exist: refusing to guess which holds the store"
                    )));
                }
                let first = generation_name(1);
                set_current(dir, &first).map_err(|e| open_err(e.to_string()))?;
                first
            }
        };
        let _ = std::fs::remove_file(dir.join(format!("{CURRENT}.tmp")));
        for stale in generations(dir).map_err(|e| open_err(e.to_string()))? {
            if stale.file_name().is_some_and(|n| *n != *name) {
                wipe_dir(&stale).map_err(|e| open_err(format!("wiping {}: {e}", stale.display())))?;
            }
        }
        let generation = Generation::open(&dir.join(&name)).map_err(|e| open_err(e.to_string()))?;
        Ok(Fjall { live: Arc::new(RwLock::new(Arc::new(generation))), root: Arc::new(dir.to_owned()) })
    }

    fn generation(&self) -> Arc<Generation> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn generation_name(n: u64) -> String {
    format!("g{n:08}")
}

fn generation_number(name: &str) -> Option<u64> {
    name.strip_prefix('g').filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()
}

/// The live generation's name, from `CURRENT` (`None`: no such file).
fn current(dir: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(dir.join(CURRENT)) {
        Ok(text) => {
            let name = text.trim();
            if generation_number(name).is_none() {
                return Err(format!("{CURRENT} does not name a generation"));
            }
            Ok(Some(name.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {CURRENT}: {e}")),
    }
}

/// Makes `name` the live generation: written aside, synced, renamed over `CURRENT`, the
/// folder synced (a crash leaves the old name or the new one).
fn set_current(dir: &Path, name: &str) -> std::io::Result<()> {
    huren_pki::fsio::write_atomic(&dir.join(CURRENT), format!("{name}\n").as_bytes())
}

/// The generation folders in `dir`.
fn generations(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_dir() && name.to_str().and_then(generation_number).is_some() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Overwrites every byte of every file under `dir` with zeros, syncs, and removes it all.
fn wipe_dir(dir: &Path) -> std::io::Result<()> {
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                super::redb::wipe(std::fs::OpenOptions::new().write(true).open(entry.path())?)?;
            }
        }
    }
    std::fs::remove_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Reads from one snapshot.
pub struct FjallReader {
    generation: Arc<Generation>,
    snapshot: fjall::Snapshot,
}

impl Reader for FjallReader {
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if table == Table::SubjectLog {
            return Err(StoreError::Backend("the subject index is read with subject_log".into()));
        }
        let keyspace = self.generation.keyspace(table);
        keys.iter()
            .map(|k| Ok(self.snapshot.get(keyspace, encode(table, k)?).map_err(backend)?.map(|v| v.to_vec())))
            .collect()
    }

    fn subject_log(&mut self, commitment: &[u8]) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for item in self.snapshot.prefix(self.generation.keyspace(Table::SubjectLog), commitment) {
            let key = item.key().map_err(backend)?;
            // Commitments all have one length; a longer one sharing the prefix is not this subject's.
            if key.len() != commitment.len() + 8 {
                continue;
            }
            let index = <[u8; 8]>::try_from(&key[commitment.len()..]).map_err(|_| corrupt("a subject index key"))?;
            out.push(u64::from_be_bytes(index));
        }
        Ok(out)
    }

    fn count(&mut self, table: Table) -> Result<u64, StoreError> {
        count_of(self.snapshot.get(&self.generation.counts, keyspace_name(table)).map_err(backend)?)
    }
}

/// One write: its writes held here until the commit (so its reads see them), over the
/// snapshot taken when it began (no other write runs meanwhile), with what it learnt of
/// which keys exist (to keep the counts).
struct FjallWriter<'g> {
    generation: &'g Generation,
    snapshot: fjall::Snapshot,
    /// Per table (in the order of [`TABLES`]): what this write put (`Some`) or deleted
    /// (`None`), the last write of each key; in key order, the order the commit inserts
    /// them in (neighbouring inserts into a memtable's skiplist find their place faster).
    writes: [BTreeMap<Vec<u8>, Option<Vec<u8>>>; TABLES.len()],
    /// Per table: values read ahead of the write that no write committed since changed.
    prefetched: [HashMap<Vec<u8>, Option<Vec<u8>>>; TABLES.len()],
    /// Per table: whether a key exists as this write sees it, for keys it read (and wrote
    /// since); any other key is asked of the overlay, then of the snapshot.
    exists: [HashMap<Vec<u8>, bool>; TABLES.len()],
    /// Records added (negative: removed) per table, in the order of [`TABLES`].
    deltas: [i64; TABLES.len()],
    /// The largest key of each append group ([`append_group`]) as this write sees it: a
    /// key above it is absent without a read.
    largest: HashMap<(usize, Vec<u8>), Option<Vec<u8>>>,
}

/// The keys of the log's tables grow: log indices, and subtree indices within a level. The
/// group of keys `key` is appended to (its prefix: none, or the level), if any.
fn append_group(table: Table, key: &[u8]) -> Option<&[u8]> {
    match table {
        Table::LogEntries | Table::LogHashes => Some(&[]),
        Table::LogNodes => key.get(..1),
        _ => None,
    }
}

impl FjallWriter<'_> {
    /// The value of `key` in `table` as this write sees it.
    fn read(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(written) = self.writes[slot(table)].get(key) {
            return Ok(written.clone());
        }
        if let Some(read) = self.prefetched[slot(table)].get(key) {
            return Ok(read.clone());
        }
        let value = self.snapshot.get(self.generation.keyspace(table), key).map_err(backend)?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Whether `key` exists in `table` now, as this write sees it.
    fn exists(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        if let Some(written) = self.writes[slot(table)].get(key) {
            return Ok(written.is_some());
        }
        if let Some(known) = self.exists[slot(table)].get(key) {
            return Ok(*known);
        }
        if let Some(read) = self.prefetched[slot(table)].get(key) {
            return Ok(read.is_some());
        }
        if let Some(group) = append_group(table, key) {
            let keyspace = self.generation.keyspace(table);
            let snapshot = &self.snapshot;
            let largest = match self.largest.entry((slot(table), group.to_vec())) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let last = snapshot.prefix(keyspace, group).next_back().map(|item| item.key()).transpose();
                    e.insert(last.map_err(backend)?.map(|k| k.to_vec()))
                }
            };
            if largest.as_deref().is_none_or(|l| key > l) {
                // An append: absent, and the largest from now on.
                *largest = Some(key.to_vec());
                return Ok(false);
            }
        }
        self.snapshot.contains_key(self.generation.keyspace(table), key).map_err(backend)
    }

    fn put_raw(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        if !self.exists(table, &key)? {
            self.deltas[slot(table)] += 1;
        }
        self.writes[slot(table)].insert(key, Some(value));
        Ok(())
    }

    /// Puts a key this write knows to be new (no read to count it).
    fn put_new(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.deltas[slot(table)] += 1;
        self.writes[slot(table)].insert(key, Some(value));
    }

    fn delete_raw(&mut self, table: Table, key: Vec<u8>) -> Result<(), StoreError> {
        if self.exists(table, &key)? {
            self.deltas[slot(table)] -= 1;
            self.writes[slot(table)].insert(key, None);
        }
        Ok(())
    }

    /// Writes everything, with the deltas added to the stored counts, in one atomic batch,
    /// durably, and notes what it wrote in `committed` (held by this write).
    fn commit(self, committed: &mut Committed) -> Result<(), StoreError> {
        let generation = self.generation;
        let mut batch = generation.db.batch().durability(Some(PersistMode::SyncAll));
        for table in TABLES {
            let delta = self.deltas[slot(table)];
            if delta == 0 {
                continue;
            }
            let name = keyspace_name(table);
            let now = count_of(self.snapshot.get(&generation.counts, name).map_err(backend)?)?;
            let next = now
                .checked_add_signed(delta)
                .ok_or_else(|| corrupt(format!("the count of {name} ({now}) is below what was deleted")))?;
            batch.insert(&generation.counts, name, next.to_be_bytes());
        }
        let listed: usize = PREFETCHED.iter().map(|t| self.writes[slot(*t)].len()).sum();
        let mut written = (listed <= MAX_LISTED_WRITES).then(|| HashSet::with_capacity(listed));
        for (table, writes) in TABLES.iter().zip(self.writes) {
            let keyspace = generation.keyspace(*table);
            for (key, value) in writes {
                if let Some(written) = written.as_mut().filter(|_| PREFETCHED.contains(table)) {
                    written.insert(generation.key_hash(*table, &key));
                }
                match value {
                    Some(value) => batch.insert(keyspace, key, value),
                    None => batch.remove(keyspace, key),
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit().map_err(backend)?;
        committed.count += 1;
        generation.committed.store(committed.count, Ordering::Release);
        if committed.recent.len() == RECENT_WRITES {
            committed.recent.pop_front();
        }
        committed.recent.push_back((committed.count, written));
        Ok(())
    }
}

/// Keys a write lists for reads ahead to be checked against; a larger write (a purge, a
/// rewrite's copy) drops every value read ahead of the writes after it.
const MAX_LISTED_WRITES: usize = 200_000;

impl Writer for FjallWriter<'_> {
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if table == Table::SubjectLog {
            return Err(StoreError::Backend("the subject index is read with subject_log".into()));
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let key = encode(table, key)?;
            let value = self.read(table, &key)?;
            self.exists[slot(table)].insert(key, value.is_some());
            out.push(value);
        }
        Ok(out)
    }

    fn put(&mut self, table: Table, key: Key, value: Vec<u8>) -> Result<(), StoreError> {
        if table == Table::SubjectLog {
            return Err(wrong_key(table, &key));
        }
        let key = encode(table, &key)?;
        self.put_raw(table, key, value)
    }

    fn delete(&mut self, table: Table, key: Key) -> Result<(), StoreError> {
        if table == Table::SubjectLog {
            return Err(wrong_key(table, &key));
        }
        let key = encode(table, &key)?;
        self.delete_raw(table, key)
    }

    /// A log index is indexed once, when its entry is appended: the key is new unless this
    /// write deleted it, and is put without a read.
    fn index_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError> {
        let key = subject_key(commitment, index);
        match self.writes[slot(Table::SubjectLog)].get(&key) {
            Some(_) => self.put_raw(Table::SubjectLog, key, Vec::new()),
            None => {
                self.put_new(Table::SubjectLog, key, Vec::new());
                Ok(())
            }
        }
    }

    fn unindex_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError> {
        self.delete_raw(Table::SubjectLog, subject_key(commitment, index))
    }

    /// One tombstone per record (held in memory until the write commits).
    fn clear(&mut self, table: Table) -> Result<(), StoreError> {
        let keyspace = self.generation.keyspace(table);
        let mut held = 0i64;
        let mut tombstones = BTreeMap::new();
        for item in self.snapshot.iter(keyspace) {
            let key = item.key().map_err(backend)?.to_vec();
            if !matches!(self.writes[slot(table)].get(&key), Some(None)) {
                held += 1;
            }
            tombstones.insert(key, None);
        }
        for (key, value) in std::mem::take(&mut self.writes[slot(table)]) {
            if value.is_some() && !tombstones.contains_key(&key) {
                held += 1;
            }
            tombstones.insert(key, None);
        }
        self.writes[slot(table)] = tombstones;
        self.deltas[slot(table)] -= held;
        self.exists[slot(table)].clear();
        self.prefetched[slot(table)].clear();
        self.largest.retain(|(s, _), _| *s != slot(table));
        Ok(())
    }
}

impl Backend for Fjall {
    type Reader<'a> = FjallReader;

    fn reader(&self) -> Result<FjallReader, StoreError> {
        let generation = self.generation();
        let snapshot = generation.db.snapshot();
        Ok(FjallReader { generation, snapshot })
    }

    fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Writer) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // Held until the commit: a rewrite waits for the write, so it never copies a
        // generation that a write then changes. `f` acts only through the writer, so
        // nothing here takes the lock again.
        self.write_prefetched(&[], f)
    }

    /// Reads `prefetch` from a snapshot before taking the one-writer lock (so while another
    /// write runs), then keeps each value unless a write committed since wrote its key.
    fn write_prefetched<T>(
        &self,
        prefetch: &[(Table, &[Key])],
        f: &mut dyn FnMut(&mut dyn Writer) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Held until the commit: a rewrite waits for the write, so it never copies a
        // generation that a write then changes. `f` acts only through the writer, so
        // nothing here takes the lock again.
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        let ahead = ReadAhead::read(&live, prefetch)?;
        write_on(&live, ahead, f)
    }

    /// Pages in key order, each page read from a fresh snapshot after the last key handed
    /// out (so `page` may delete meanwhile).
    fn scan(&self, table: Table, page: &mut Page<'_>) -> Result<(), StoreError> {
        if !matches!(table, Table::Status | Table::Token | Table::Applied | Table::Disclosures | Table::HubAggregates) {
            return Err(backend(format!("table {table:?} is not scanned")));
        }
        let mut after: Option<Vec<u8>> = None;
        loop {
            let records = {
                let generation = self.generation();
                let snapshot = generation.db.snapshot();
                let keyspace = generation.keyspace(table);
                let items = match after.take() {
                    None => snapshot.iter(keyspace),
                    Some(last) => snapshot.range(keyspace, (Bound::Excluded(last), Bound::Unbounded)),
                };
                let mut records = Vec::with_capacity(SCAN_PAGE);
                for item in items.take(SCAN_PAGE) {
                    let (key, value) = item.into_inner().map_err(backend)?;
                    records.push((decode(table, &key)?, value.to_vec()));
                    after = Some(key.to_vec());
                }
                records
            };
            let full = records.len() == SCAN_PAGE;
            if !records.is_empty() {
                page(records)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Copies what is live into a fresh generation, makes it the live one, then overwrites
    /// every file of the old generation with zeros and removes it (see the module's doc).
    /// Runs exclusively (calls wait); crash-safe (`CURRENT` names the old generation until
    /// the fresh one is complete and synced; whichever is not named is wiped at the next
    /// open). Copies everything still held, so it costs a full pass.
    fn rewrite(&self) -> Result<(), StoreError> {
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        let old = live.clone();
        let number = old.dir.file_name().and_then(|n| n.to_str()).and_then(generation_number).unwrap_or(0);
        let name = generation_name(number + 1);
        let dir = self.root.join(&name);
        let io = |what: &str, e: std::io::Error| {
            StoreError::Backend(format!("rewriting {}: {what}: {e}", self.root.display()))
        };
        if dir.exists() {
            wipe_dir(&dir).map_err(|e| io("removing an unfinished copy", e))?;
        }
        let fresh = match Generation::open(&dir).and_then(|fresh| copy_live(&old, &fresh).map(|()| fresh)) {
            Ok(fresh) => fresh,
            Err(e) => {
                let _ = wipe_dir(&dir);
                return Err(e);
            }
        };
        set_current(&self.root, &name).map_err(|e| io("naming the fresh generation", e))?;
        *live = Arc::new(fresh);
        drop(live);
        // Every call that took the old generation finishes with it; then it closes (fjall
        // stops its workers and lets go of its files) and its bytes are overwritten.
        let mut old = old;
        let old = loop {
            match Arc::try_unwrap(old) {
                Ok(generation) => break generation,
                Err(still_used) => {
                    old = still_used;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        };
        let old_dir = old.dir.clone();
        drop(old);
        wipe_dir(&old_dir).map_err(|e| io("overwriting the old generation", e))
    }
}

/// Values read ahead of a write, from a snapshot taken without the one-writer lock
/// ([`Backend::write_prefetched`]).
struct ReadAhead {
    /// Writes committed before the snapshot was taken: only later ones can have changed
    /// what it shows.
    since: u64,
    /// Per table (in the order of [`TABLES`]): key → value (`None`: absent).
    values: [HashMap<Vec<u8>, Option<Vec<u8>>>; TABLES.len()],
}

impl ReadAhead {
    /// Reads the keys of `prefetch` in the [`PREFETCHED`] tables (others are left to the
    /// write).
    fn read(generation: &Generation, prefetch: &[(Table, &[Key])]) -> Result<Self, StoreError> {
        // The count first, then the snapshot: the snapshot holds at least every write
        // counted (a write is counted once committed).
        let since = generation.committed.load(Ordering::Acquire);
        let mut values: [HashMap<Vec<u8>, Option<Vec<u8>>>; TABLES.len()] = std::array::from_fn(|_| HashMap::new());
        if !prefetch.is_empty() {
            let snapshot = generation.db.snapshot();
            for (table, keys) in prefetch.iter().filter(|(t, _)| PREFETCHED.contains(t)) {
                let keyspace = generation.keyspace(*table);
                // In key order: neighbouring reads share the memtables' skiplist paths and
                // the tables' index and data blocks.
                let mut encoded = keys.iter().map(|k| encode(*table, k)).collect::<Result<Vec<_>, _>>()?;
                encoded.sort_unstable();
                for key in encoded {
                    let value = snapshot.get(keyspace, &key).map_err(backend)?.map(|v| v.to_vec());
                    values[slot(*table)].insert(key, value);
                }
            }
        }
        Ok(Self { since, values })
    }

    /// Drops every value a write committed after the read ahead may have changed: all of
    /// them when one of those writes is no longer in `committed`'s list, or listed none.
    fn still_valid(
        mut self,
        generation: &Generation,
        committed: &Committed,
    ) -> [HashMap<Vec<u8>, Option<Vec<u8>>>; TABLES.len()] {
        let since = self.since;
        if committed.count == since || self.values.iter().all(HashMap::is_empty) {
            return self.values;
        }
        let complete = committed.recent.front().is_some_and(|(first, _)| *first <= since + 1);
        let later: Vec<&Option<HashSet<u64>>> =
            committed.recent.iter().filter(|(n, _)| *n > since).map(|(_, w)| w).collect();
        if !complete || later.iter().any(|w| w.is_none()) {
            self.values.iter_mut().for_each(HashMap::clear);
            return self.values;
        }
        for table in PREFETCHED {
            self.values[slot(table)].retain(|key, _| {
                let hash = generation.key_hash(table, key);
                !later.iter().any(|w| w.as_ref().is_some_and(|w| w.contains(&hash)))
            });
        }
        self.values
    }
}

/// Runs the write `f` in `generation` once no other write runs, with what was read `ahead`
/// that is still valid, and commits it.
fn write_on<T>(
    generation: &Generation,
    ahead: ReadAhead,
    f: &mut dyn FnMut(&mut dyn Writer) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // One write at a time, and its snapshot taken once it is the one: what it reads is all
    // that was committed.
    let mut committed = generation.writer.lock().unwrap_or_else(|e| e.into_inner());
    let prefetched = ahead.still_valid(generation, &committed);
    let mut writer = FjallWriter {
        generation,
        snapshot: generation.db.snapshot(),
        writes: std::array::from_fn(|_| BTreeMap::new()),
        prefetched,
        exists: std::array::from_fn(|_| HashMap::new()),
        deltas: [0; TABLES.len()],
        largest: HashMap::new(),
    };
    let out = f(&mut writer)?;
    writer.commit(&mut committed)?;
    Ok(out)
}

/// Copies every record of `from` (one snapshot) into `to`, with exact counts, and syncs `to`.
fn copy_live(from: &Generation, to: &Generation) -> Result<(), StoreError> {
    let snapshot = from.db.snapshot();
    let mut counts = Vec::new();
    for table in TABLES {
        let target = to.keyspace(table);
        let mut n = 0u64;
        let mut batch = to.db.batch();
        for item in snapshot.iter(from.keyspace(table)) {
            let (key, value) = item.into_inner().map_err(backend)?;
            batch.insert(target, key, value);
            n += 1;
            if batch.len() == COPY_BATCH {
                std::mem::replace(&mut batch, to.db.batch()).commit().map_err(backend)?;
            }
        }
        batch.commit().map_err(backend)?;
        counts.push((keyspace_name(table), n));
    }
    let mut batch = to.db.batch();
    for (name, n) in counts {
        batch.insert(&to.counts, name, n.to_be_bytes());
    }
    batch.commit().map_err(backend)?;
    to.db.persist(PersistMode::SyncAll).map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(backend: &Fjall, key: &str, value: &[u8]) {
        backend.write(&mut |w| w.put(Table::Status, Key::text(key), value.to_vec())).unwrap();
    }

    fn keys(names: &[&str]) -> Vec<Key> {
        names.iter().map(|k| Key::text(k)).collect()
    }

    /// What a write reading `names` sees, given what was read ahead of it.
    fn seen(backend: &Fjall, ahead: ReadAhead, names: &[&str]) -> Vec<Option<Vec<u8>>> {
        write_on(&backend.generation(), ahead, &mut |w| w.get_many(Table::Status, &keys(names))).unwrap()
    }

    fn open() -> (tempfile::TempDir, Fjall) {
        let dir = tempfile::tempdir().unwrap();
        let backend = Fjall::open(&dir.path().join("s.fjall")).unwrap();
        (dir, backend)
    }

    /// A value read ahead of a write (while other writes ran) is used only where no write
    /// committed since wrote its key: a changed value, and a key that appeared, are read
    /// again.
    #[test]
    fn a_value_read_ahead_that_a_later_write_changed_is_read_again() {
        let (_dir, backend) = open();
        put(&backend, "a", b"1");
        put(&backend, "b", b"1");
        let ahead = ReadAhead::read(&backend.generation(), &[(Table::Status, &keys(&["a", "b", "c"]))]).unwrap();
        put(&backend, "a", b"2");
        put(&backend, "c", b"2");
        assert_eq!(
            seen(&backend, ahead, &["a", "b", "c"]),
            vec![Some(b"2".to_vec()), Some(b"1".to_vec()), Some(b"2".to_vec())]
        );
    }

    /// When more writes committed since the read ahead than are remembered, none of its
    /// values is trusted.
    #[test]
    fn a_read_ahead_older_than_the_writes_remembered_is_dropped_whole() {
        let (_dir, backend) = open();
        put(&backend, "a", b"1");
        let ahead = ReadAhead::read(&backend.generation(), &[(Table::Status, &keys(&["a"]))]).unwrap();
        put(&backend, "a", b"2");
        for n in 0..RECENT_WRITES {
            put(&backend, &format!("other-{n}"), b"x");
        }
        assert_eq!(seen(&backend, ahead, &["a"]), vec![Some(b"2".to_vec())]);
    }
}
