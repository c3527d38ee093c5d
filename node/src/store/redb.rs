//! The embedded backend: one redb file, a table per kind of record (names and key types as
//! every earlier version wrote them, so an older file opens as it is; `log_nodes`, keyed by
//! (level, index), is added to it). Every write is a durable redb transaction: once a call
//! returns, the change survives a crash.
//!
//! redb reuses freed pages but never wipes them, so a deleted record's bytes can stay in
//! the file. [`NodeStore::rewrite`](super::NodeStore::rewrite) (run after every manual
//! purge and the sunset) copies what is still live into a fresh file, puts it in place and
//! overwrites the old file's bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use redb::{
    Database, MultimapTable, MultimapTableDefinition, ReadTransaction, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableError, WriteTransaction,
};

use super::backend::{wrong_key, Backend, Key, Page, Reader, Table, Writer};
use super::{BackedStore, StoreError};

const SUBJECTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("subjects");
const TOKENS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("tokens");
const LOG_ENTRIES: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("log_entries");
const LOG_HASHES: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("log_hashes");
/// (level ≥ 1, index) of a complete subtree → its hash.
pub(super) const LOG_NODES: TableDefinition<'static, (u8, u64), &[u8]> = TableDefinition::new("log_nodes");
const SUBJECT_LOG: MultimapTableDefinition<'static, &[u8], u64> = MultimapTableDefinition::new("subject_log");
pub(super) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// Applied batch items (see `super::batch`), added by this version.
const APPLIED: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("applied_items");

const DISCLOSURES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("disclosures");
const HUB_AGGREGATES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("hub_aggregates");

/// Records handed to a scan's callback at a time.
const SCAN_PAGE: usize = 1000;

/// The node store in a redb file; cheap to clone.
pub type Store = BackedStore<Redb>;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A redb file holding a node store.
#[derive(Clone)]
pub struct Redb {
    /// Replaced whole by [`Backend::rewrite`]; everything else only reads the lock.
    db: Arc<RwLock<Database>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Redb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl BackedStore<Redb> {
    /// Opens (or creates) the store file, creating its folder; computes the interior log hashes
    /// a file of an older version lacks (once; it takes a while for a long log).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |m: String| StoreError::Open { path: path.display().to_string(), message: m };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        // A rewrite interrupted before its file was put in place left only a partial copy.
        let _ = std::fs::remove_file(rewrite_path(path));
        let db = Database::create(path).map_err(|e| open_err(e.to_string()))?;
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(SUBJECTS).map_err(backend)?;
        tx.open_table(TOKENS).map_err(backend)?;
        tx.open_table(LOG_ENTRIES).map_err(backend)?;
        tx.open_table(LOG_HASHES).map_err(backend)?;
        tx.open_table(LOG_NODES).map_err(backend)?;
        tx.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
        tx.open_table(META).map_err(backend)?;
        tx.open_table(APPLIED).map_err(backend)?;

        tx.open_table(DISCLOSURES).map_err(backend)?;
        tx.open_table(HUB_AGGREGATES).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Self::open_in(Redb { db: Arc::new(RwLock::new(db)), path: Arc::new(path.to_owned()) })
    }

    /// What a store file holds, read without changing it (for `huren audit scan`: the
    /// node must be stopped).
    pub fn inspect(path: &Path) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        let db = Database::open(path)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), message: e.to_string() })?;
        Self::counts_in(&Redb { db: Arc::new(RwLock::new(db)), path: Arc::new(path.to_owned()) })
    }
}

impl Redb {
    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// A table an older file lacks reads as empty.
fn absent<T>(table: Result<T, TableError>) -> Result<Option<T>, StoreError> {
    match table {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(backend(e)),
    }
}

/// One read transaction: every read through it sees the same snapshot.
pub struct RedbReader {
    tx: ReadTransaction,
}

/// Reads `$keys` (all of the `$pat` kind) from table `$def` of `$tx`.
macro_rules! read_each {
    ($tx:expr, $def:expr, $table:expr, $keys:expr, $pat:pat => $key:expr) => {
        match absent($tx.open_table($def))? {
            None => Ok(vec![None; $keys.len()]),
            Some(t) => $keys
                .iter()
                .map(|k| match k {
                    $pat => Ok(t.get($key).map_err(backend)?.map(|v| v.value().to_vec())),
                    other => Err(wrong_key($table, other)),
                })
                .collect(),
        }
    };
}

fn len(table: Option<impl ReadableTableMetadata>) -> Result<u64, StoreError> {
    table.map_or(Ok(0), |t| t.len().map_err(backend))
}

impl Reader for RedbReader {
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tx = &self.tx;
        match table {
            Table::Status => read_each!(tx, SUBJECTS, table, keys, Key::Text(s) => s.as_str()),
            Table::Meta => read_each!(tx, META, table, keys, Key::Text(s) => s.as_str()),
            Table::Token => read_each!(tx, TOKENS, table, keys, Key::Bytes(b) => b.as_slice()),
            Table::Applied => read_each!(tx, APPLIED, table, keys, Key::Bytes(b) => b.as_slice()),
            Table::LogEntries => read_each!(tx, LOG_ENTRIES, table, keys, Key::Index(i) => *i),
            Table::LogHashes => read_each!(tx, LOG_HASHES, table, keys, Key::Index(i) => *i),
            Table::LogNodes => read_each!(tx, LOG_NODES, table, keys, Key::Node(n) => (n.level, n.index)),
            Table::SubjectLog => Err(StoreError::Backend("the subject index is read with subject_log".into())),
            Table::Disclosures => read_each!(tx, DISCLOSURES, table, keys, Key::Text(s) => s.as_str()),
            Table::HubAggregates => read_each!(tx, HUB_AGGREGATES, table, keys, Key::Text(s) => s.as_str()),
        }
    }

    fn subject_log(&mut self, commitment: &[u8]) -> Result<Vec<u64>, StoreError> {
        let Some(table) = absent(self.tx.open_multimap_table(SUBJECT_LOG))? else {
            return Ok(Vec::new());
        };
        let values = table.get(commitment).map_err(backend)?;
        values.map(|v| v.map(|g| g.value()).map_err(backend)).collect()
    }

    fn count(&mut self, table: Table) -> Result<u64, StoreError> {
        let tx = &self.tx;
        match table {
            Table::Status => len(absent(tx.open_table(SUBJECTS))?),
            Table::Token => len(absent(tx.open_table(TOKENS))?),
            Table::LogEntries => len(absent(tx.open_table(LOG_ENTRIES))?),
            Table::LogHashes => len(absent(tx.open_table(LOG_HASHES))?),
            Table::LogNodes => len(absent(tx.open_table(LOG_NODES))?),
            Table::SubjectLog => len(absent(tx.open_multimap_table(SUBJECT_LOG))?),
            Table::Meta => len(absent(tx.open_table(META))?),
            Table::Applied => len(absent(tx.open_table(APPLIED))?),

            Table::Disclosures => len(absent(tx.open_table(DISCLOSURES))?),
            Table::HubAggregates => len(absent(tx.open_table(HUB_AGGREGATES))?),
        }
    }
}

/// One write transaction, each table opened once, when first used.
struct RedbWriter<'tx> {
    tx: &'tx WriteTransaction,
    status: Option<redb::Table<'tx, &'static str, &'static [u8]>>,
    meta: Option<redb::Table<'tx, &'static str, &'static [u8]>>,
    tokens: Option<redb::Table<'tx, &'static [u8], &'static [u8]>>,
    entries: Option<redb::Table<'tx, u64, &'static [u8]>>,
    hashes: Option<redb::Table<'tx, u64, &'static [u8]>>,
    nodes: Option<redb::Table<'tx, (u8, u64), &'static [u8]>>,
    subjects: Option<MultimapTable<'tx, &'static [u8], u64>>,
    applied: Option<redb::Table<'tx, &'static [u8], &'static [u8]>>,

    disclosures: Option<redb::Table<'tx, &'static str, &'static [u8]>>,
    aggregates: Option<redb::Table<'tx, &'static str, &'static [u8]>>,
}

/// The table of `$self.$field`, opened on first use.
macro_rules! open {
    ($self:ident . $field:ident, $open:ident, $def:expr) => {{
        if $self.$field.is_none() {
            $self.$field = Some($self.tx.$open($def).map_err(backend)?);
        }
        $self.$field.as_mut().ok_or_else(|| backend("table not open"))?
    }};
}

/// Deletes the table of `$self.$field` (it must be closed for that) and creates it again, empty.
macro_rules! recreate {
    ($self:ident . $field:ident, $delete:ident, $open:ident, $def:expr) => {{
        $self.$field = None;
        $self.tx.$delete($def).map_err(backend)?;
        let _ = open!($self.$field, $open, $def);
    }};
}

/// Runs `$body` with `$t` the open table for `$table` and `$k` the redb form of `$key`.
macro_rules! with_table {
    ($self:ident, $table:expr, $key:expr, |$t:ident, $k:ident| $body:expr) => {
        match ($table, $key) {
            (Table::Status, Key::Text(s)) => {
                let ($t, $k) = (open!($self.status, open_table, SUBJECTS), s.as_str());
                $body
            }
            (Table::Meta, Key::Text(s)) => {
                let ($t, $k) = (open!($self.meta, open_table, META), s.as_str());
                $body
            }
            (Table::Token, Key::Bytes(b)) => {
                let ($t, $k) = (open!($self.tokens, open_table, TOKENS), b.as_slice());
                $body
            }
            (Table::Applied, Key::Bytes(b)) => {
                let ($t, $k) = (open!($self.applied, open_table, APPLIED), b.as_slice());
                $body
            }
            (Table::LogEntries, Key::Index(i)) => {
                let ($t, $k) = (open!($self.entries, open_table, LOG_ENTRIES), *i);
                $body
            }
            (Table::LogHashes, Key::Index(i)) => {
                let ($t, $k) = (open!($self.hashes, open_table, LOG_HASHES), *i);
                $body
            }
            (Table::LogNodes, Key::Node(n)) => {
                let ($t, $k) = (open!($self.nodes, open_table, LOG_NODES), (n.level, n.index));
                $body
            }
            (Table::Disclosures, Key::Text(s)) => {
                let ($t, $k) = (open!($self.disclosures, open_table, DISCLOSURES), s.as_str());
                $body
            }
            (Table::HubAggregates, Key::Text(s)) => {
                let ($t, $k) = (open!($self.aggregates, open_table, HUB_AGGREGATES), s.as_str());
                $body
            }
            (table, key) => return Err(wrong_key(table, key)),
        }
    };
}

impl<'tx> RedbWriter<'tx> {
    fn new(tx: &'tx WriteTransaction) -> Self {
        Self {
            tx,
            status: None,
            meta: None,
            tokens: None,
            entries: None,
            hashes: None,
            nodes: None,
            subjects: None,
            applied: None,

            disclosures: None,
            aggregates: None,
        }
    }
}

impl Writer for RedbWriter<'_> {
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(with_table!(self, table, key, |t, k| t.get(k).map_err(backend)?.map(|v| v.value().to_vec())));
        }
        Ok(out)
    }

    fn put(&mut self, table: Table, key: Key, value: Vec<u8>) -> Result<(), StoreError> {
        with_table!(self, table, &key, |t, k| t.insert(k, value.as_slice()).map_err(backend)?);
        Ok(())
    }

    fn delete(&mut self, table: Table, key: Key) -> Result<(), StoreError> {
        with_table!(self, table, &key, |t, k| t.remove(k).map_err(backend)?);
        Ok(())
    }

    fn index_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError> {
        open!(self.subjects, open_multimap_table, SUBJECT_LOG).insert(commitment, index).map_err(backend)?;
        Ok(())
    }

    fn unindex_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError> {
        open!(self.subjects, open_multimap_table, SUBJECT_LOG).remove(commitment, index).map_err(backend)?;
        Ok(())
    }

    fn clear(&mut self, table: Table) -> Result<(), StoreError> {
        match table {
            Table::Status => recreate!(self.status, delete_table, open_table, SUBJECTS),
            Table::Meta => recreate!(self.meta, delete_table, open_table, META),
            Table::Token => recreate!(self.tokens, delete_table, open_table, TOKENS),
            Table::LogEntries => recreate!(self.entries, delete_table, open_table, LOG_ENTRIES),
            Table::LogHashes => recreate!(self.hashes, delete_table, open_table, LOG_HASHES),
            Table::LogNodes => recreate!(self.nodes, delete_table, open_table, LOG_NODES),
            Table::SubjectLog => recreate!(self.subjects, delete_multimap_table, open_multimap_table, SUBJECT_LOG),
            Table::Applied => recreate!(self.applied, delete_table, open_table, APPLIED),

            Table::Disclosures => recreate!(self.disclosures, delete_table, open_table, DISCLOSURES),
            Table::HubAggregates => recreate!(self.aggregates, delete_table, open_table, HUB_AGGREGATES),
        }
        Ok(())
    }
}

/// Hands the records of one table to `page`, [`SCAN_PAGE`] at a time, from one snapshot.
fn scan_pages<K: redb::Key + 'static>(
    tx: &ReadTransaction,
    def: TableDefinition<'_, K, &'static [u8]>,
    key: impl for<'a> Fn(K::SelfType<'a>) -> Key,
    page: &mut Page<'_>,
) -> Result<(), StoreError> {
    let Some(table) = absent(tx.open_table(def))? else { return Ok(()) };
    let mut buf = Vec::with_capacity(SCAN_PAGE);
    for item in table.iter().map_err(backend)? {
        let (k, v) = item.map_err(backend)?;
        buf.push((key(k.value()), v.value().to_vec()));
        if buf.len() == SCAN_PAGE {
            page(std::mem::take(&mut buf))?;
        }
    }
    if !buf.is_empty() {
        page(buf)?;
    }
    Ok(())
}

impl Backend for Redb {
    type Reader<'a> = RedbReader;

    fn reader(&self) -> Result<RedbReader, StoreError> {
        Ok(RedbReader { tx: self.db().begin_read().map_err(backend)? })
    }

    fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Writer) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let tx = self.db().begin_write().map_err(backend)?;
        let out = f(&mut RedbWriter::new(&tx))?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    fn scan(&self, table: Table, page: &mut Page<'_>) -> Result<(), StoreError> {
        let tx = self.db().begin_read().map_err(backend)?;
        match table {
            Table::Status => scan_pages(&tx, SUBJECTS, Key::text, page),
            Table::Token => scan_pages(&tx, TOKENS, |k| Key::Bytes(k.to_vec()), page),
            Table::Applied => scan_pages(&tx, APPLIED, |k| Key::Bytes(k.to_vec()), page),

            Table::Disclosures => scan_pages(&tx, DISCLOSURES, Key::text, page),
            Table::HubAggregates => scan_pages(&tx, HUB_AGGREGATES, Key::text, page),
            other => Err(backend(format!("table {other:?} is not scanned"))),
        }
    }

    /// Replaces the store file by a fresh one holding only what is still live, then
    /// overwrites every byte of the old file with zeros: redb never wipes freed pages, so
    /// without this a deleted record's bytes would stay in the file until reused. Runs
    /// exclusively (calls wait); crash-safe (the fresh file is complete before an atomic
    /// rename puts it in place). Copies everything still held, so it costs a full pass.
    fn rewrite(&self) -> Result<(), StoreError> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        let path = self.path.as_path();
        let fresh_path = rewrite_path(path);
        let io =
            |what: &str, e: std::io::Error| StoreError::Backend(format!("rewriting {}: {what}: {e}", path.display()));
        let _ = std::fs::remove_file(&fresh_path);
        let fresh = Database::create(&fresh_path).map_err(backend)?;
        {
            let from = db.begin_read().map_err(backend)?;
            let to = fresh.begin_write().map_err(backend)?;
            copy_table(&from, &to, SUBJECTS)?;
            copy_table(&from, &to, TOKENS)?;
            copy_table(&from, &to, LOG_ENTRIES)?;
            copy_table(&from, &to, LOG_HASHES)?;
            copy_table(&from, &to, LOG_NODES)?;
            copy_table(&from, &to, META)?;
            copy_table(&from, &to, APPLIED)?;

            copy_table(&from, &to, DISCLOSURES)?;
            copy_table(&from, &to, HUB_AGGREGATES)?;
            {
                let mut target = to.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
                if let Some(source) = absent(from.open_multimap_table(SUBJECT_LOG))? {
                    for item in source.iter().map_err(backend)? {
                        let (key, values) = item.map_err(backend)?;
                        for value in values {
                            target.insert(key.value(), value.map_err(backend)?.value()).map_err(backend)?;
                        }
                    }
                }
            }
            to.commit().map_err(backend)?;
        }
        // Held open across the rename: the old bytes are overwritten through it once redb
        // has let go of them (closing a database writes to its file). The fresh database
        // stays open too, so nothing can fail between the rename and the swap.
        let old = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| io("opening the old file", e))?;
        std::fs::rename(&fresh_path, path).map_err(|e| io("putting the fresh file in place", e))?;
        *db = fresh;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing the folder", e))?;
        }
        wipe(old).map_err(|e| io("overwriting the old file", e))
    }
}

fn rewrite_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".rewrite");
    path.with_file_name(name)
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<'_, K, V>,
) -> Result<(), StoreError> {
    let mut target = to.open_table(table).map_err(backend)?;
    let Some(source) = absent(from.open_table(table))? else { return Ok(()) };
    for item in source.iter().map_err(backend)? {
        let (key, value) = item.map_err(backend)?;
        target.insert(key.value(), value.value()).map_err(backend)?;
    }
    Ok(())
}

/// Overwrites a file's every byte with zeros and syncs it.
pub(super) fn wipe(mut file: std::fs::File) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    let len = file.metadata()?.len();
    file.seek(std::io::SeekFrom::Start(0))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}
