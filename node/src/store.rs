//! The node's minimal status projection: the [`NodeStore`] trait every backend serves,
//! and [`Store`], its embedded redb file (the Redis backend is [`crate::redis_store`]).
//!
//! Two tables: `subjects` maps a province-internal pseudonymous reference to its current
//! status (colour, rule, authority, validity, test-recency bucket); `tokens` maps the
//! SHA-256 of an opaque token to the subject it stands for and its expiry. No name, ID
//! number or contact detail is ever stored here, and tokens are kept only as digests.
//! Every write is a durable redb transaction: once a call returns, the change survives a
//! crash.
//!
//! redb reuses freed pages but never wipes them, so a deleted record's bytes can stay in
//! the file. [`NodeStore::rewrite`] (run after every manual purge and the sunset) copies what
//! is still live into a fresh file, puts it in place and overwrites the old file's bytes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use huren_proto::pb;
pub use huren_translog::Frontier;
use huren_translog::{Hash, LeafSource, ProofError};
use prost::Message;
use redb::{
    Database, MultimapTableDefinition, ReadOnlyTable, ReadTransaction, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use sha2::{Digest, Sha256};

const SUBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("subjects");
const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
/// Transparency log: index → encoded `LogEntry`.
const LOG_ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("log_entries");
/// Transparency log: index → RFC 9162 leaf hash.
const LOG_HASHES: TableDefinition<u64, &[u8]> = TableDefinition::new("log_hashes");
/// Subject commitment → its log indices.
const SUBJECT_LOG: MultimapTableDefinition<&[u8], u64> = MultimapTableDefinition::new("subject_log");
/// "salt" (node-secret commitment salt), "frontier" (the log's right edge),
/// "first_available", "signed_sizes" (sizes of tree heads signed), "sunset_receipt".
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Tree sizes of the most recent signed heads the store remembers, all kept.
pub const RECENT_SIGNED_SIZES: usize = 32;
/// Older signed sizes remembered besides, thinned to stay spread over the log's history.
pub const OLDER_SIGNED_SIZES: usize = 32;

/// Bytes that every stored status record and log entry carries (the authority's
/// identity URI): where they turn up in a store file that holds no record, bytes of a
/// deleted record remain. See `huren audit scan`.
pub const RECORD_MARKERS: &[&[u8]] = &[b"spiffe://"];

/// Current status of one subject.
#[derive(Clone, PartialEq, Message)]
pub struct StatusRecord {
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(string, tag = "2")]
    pub rule_id: String,
    #[prost(string, tag = "3")]
    pub authority: String,
    #[prost(int64, tag = "4")]
    pub valid_until: i64,
    #[prost(int32, tag = "5")]
    pub test_recency: i32,
    #[prost(int64, tag = "6")]
    pub updated_at: i64,
    #[prost(uint64, tag = "7")]
    pub version: u64,
    /// Set when this change lifted a held non-green status early: that status's rule
    /// (logged as `LogEntry.lifted_rule_id`).
    #[prost(string, tag = "8")]
    pub lifted_rule_id: String,
}

/// What a token digest resolves to.
#[derive(Clone, PartialEq, Message)]
pub struct TokenRecord {
    #[prost(string, tag = "1")]
    pub subject_ref: String,
    #[prost(int64, tag = "2")]
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("status store {path}: {message}")]
    Open { path: String, message: String },
    #[error("status store: {0}")]
    Backend(String),
    #[error("status store holds a corrupt record: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Range(String),
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Handle to the redb store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Replaced whole by [`Store::rewrite`]; everything else only reads the lock.
    db: Arc<RwLock<Database>>,
    path: Arc<PathBuf>,
    salt: Arc<[u8; 32]>,
}

/// What a node needs of its status store, whichever backend holds it (redb here,
/// Redis in [`crate::redis_store`]). Every method blocks: call it from a blocking task.
/// Acknowledged means durable and logged: a status change returns only once it and its
/// transparency-log entry are stored together.
pub trait NodeStore: Send + Sync + std::fmt::Debug {
    /// The subject commitment logged for `subject_ref`: SHA-256 over a domain label, the
    /// node-secret salt and the reference. Links a subject's entries, reveals nothing.
    fn commitment(&self, subject_ref: &str) -> [u8; 32];
    /// Size and root of the transparency log.
    fn log_head(&self) -> Result<(u64, Hash), StoreError>;
    /// Root hash of the first `size` entries.
    fn root_at(&self, size: u64) -> Result<Hash, StoreError>;
    /// RFC 9162 inclusion proof of entry `index` in the tree of `size` entries.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError>;
    /// RFC 9162 consistency proof between the trees of `old` and `new` entries.
    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError>;
    /// Encoded log entries `[start, end)` still held.
    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Log indices of a subject's entries.
    fn subject_log(&self, commitment: &[u8; 32]) -> Result<Vec<u64>, StoreError>;
    /// Replaces a subject's status and logs it, atomically; returns the new version.
    fn upsert(&self, subject_ref: &str, record: StatusRecord) -> Result<u64, StoreError>;
    /// Like [`NodeStore::upsert`], but only while the subject's status is still at version
    /// `expected` (0: no status yet), the one the change was decided on; `None` when another
    /// change came first (nothing written: decide again on the newer status).
    fn upsert_if(&self, subject_ref: &str, expected: u64, record: StatusRecord) -> Result<Option<u64>, StoreError>;
    /// Replaces many subjects' statuses and logs them, atomically; returns each new
    /// version, in order.
    fn upsert_batch(&self, batch: Vec<(String, StatusRecord)>) -> Result<Vec<u64>, StoreError>;
    fn status(&self, subject_ref: &str) -> Result<Option<StatusRecord>, StoreError>;
    /// Records a token digest for a subject.
    fn put_token(&self, digest: &[u8; 32], record: &TokenRecord) -> Result<(), StoreError>;
    fn token(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;
    /// Number of subjects held.
    fn subject_count(&self) -> Result<u64, StoreError>;
    /// Keeps the sunset's deletion receipt (no subject data) so it survives restarts.
    fn put_sunset_receipt(&self, receipt: &[u8]) -> Result<(), StoreError>;
    fn sunset_receipt(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Index of the oldest log entry still held (entries before it were purged).
    fn log_first_available(&self) -> Result<u64, StoreError>;
    /// Leaf hashes `[start, end)` (held even for purged entries, until a sunset).
    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Remembers that a tree head of `size` entries was signed: the newest
    /// [`RECENT_SIGNED_SIZES`] all, at most [`OLDER_SIGNED_SIZES`] older ones, thinned.
    fn record_signed_size(&self, size: u64) -> Result<(), StoreError>;
    /// Sizes of signed tree heads remembered, ascending.
    fn signed_sizes(&self) -> Result<Vec<u64>, StoreError>;
    /// Consistency proofs from every remembered signed size below `size` to `size`
    /// (sizes whose leaf hashes are gone are left out).
    fn consistency_proofs(&self, size: u64) -> Result<Vec<(u64, Vec<Hash>)>, StoreError>;
    /// Makes sure no byte of a deleted record stays in what the backend keeps.
    fn rewrite(&self) -> Result<(), StoreError>;
    /// Records held, by kind: status, token, log_entry, log_hash, subject_index, salt.
    fn counts(&self) -> Result<std::collections::BTreeMap<&'static str, u64>, StoreError>;
    /// Deletes what `plan` names, calling `progress` with the running total. Returns
    /// what was deleted, committed to as a Merkle tree.
    fn purge(&self, plan: &PurgePlan, progress: &mut dyn FnMut(u64)) -> Result<PurgeOutcome, StoreError>;
}

impl From<Store> for Arc<dyn NodeStore> {
    fn from(store: Store) -> Self {
        Arc::new(store)
    }
}

/// Leaf hashes of the first `size` log entries, read in one transaction.
struct TxLeaves {
    table: ReadOnlyTable<u64, &'static [u8]>,
    size: u64,
}

impl LeafSource for TxLeaves {
    fn leaf_count(&self) -> u64 {
        self.size
    }
    fn leaf_hash(&self, index: u64) -> Result<Hash, ProofError> {
        let value = self
            .table
            .get(index)
            .map_err(|e| ProofError::Source(e.to_string()))?
            .ok_or_else(|| ProofError::Source(format!("log leaf {index} is missing")))?;
        <Hash>::try_from(value.value()).map_err(|_| ProofError::Source(format!("log leaf {index} is corrupt")))
    }
}

/// Appends entries to the log inside `tx` (tables opened and the frontier read and
/// written once per call, however many entries).
fn append_log(tx: &WriteTransaction, entries: Vec<pb::LogEntry>) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META).map_err(backend)?;
    let mut frontier = match meta.get("frontier").map_err(backend)? {
        Some(v) => Frontier::from_bytes(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        None => Frontier::new(),
    };
    let mut log = tx.open_table(LOG_ENTRIES).map_err(backend)?;
    let mut hashes = tx.open_table(LOG_HASHES).map_err(backend)?;
    let mut subjects = tx.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
    for mut entry in entries {
        let index = frontier.size();
        entry.index = index;
        let bytes = entry.encode_to_vec();
        let hash = huren_translog::leaf_hash(&bytes);
        frontier.push(hash);
        log.insert(index, bytes.as_slice()).map_err(backend)?;
        hashes.insert(index, hash.as_slice()).map_err(backend)?;
        subjects.insert(entry.subject_commitment.as_slice(), index).map_err(backend)?;
    }
    meta.insert("frontier", frontier.to_bytes().as_slice()).map_err(backend)?;
    Ok(())
}

pub(crate) fn log_entry(commitment: [u8; 32], record: &StatusRecord) -> pb::LogEntry {
    pb::LogEntry {
        subject_commitment: commitment.to_vec(),
        status: record.status,
        rule_id: record.rule_id.clone(),
        authority: record.authority.clone(),
        time: record.updated_at,
        index: 0,
        valid_until: record.valid_until,
        lifted_rule_id: record.lifted_rule_id.clone(),
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store file, creating its folder.
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
        tx.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
        let salt = {
            let mut meta = tx.open_table(META).map_err(backend)?;
            let existing = meta.get("salt").map_err(backend)?.map(|v| v.value().to_vec());
            match existing {
                Some(salt) => {
                    <[u8; 32]>::try_from(salt.as_slice()).map_err(|_| StoreError::Corrupt("commitment salt".into()))?
                }
                None => {
                    let mut salt = [0u8; 32];
                    getrandom::getrandom(&mut salt).map_err(|e| open_err(format!("randomness unavailable: {e}")))?;
                    meta.insert("salt", salt.as_slice()).map_err(backend)?;
                    salt
                }
            }
        };
        tx.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(RwLock::new(db)), path: Arc::new(path.to_owned()), salt: Arc::new(salt) })
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        self.db().begin_read().map_err(backend)
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        self.db().begin_write().map_err(backend)
    }

    /// Replaces a subject's status in one durable transaction with its log entry, if its
    /// version is still `expected` (when given); the write transaction is exclusive, so the
    /// check and the write see the same status.
    fn upsert_checked(
        &self,
        subject_ref: &str,
        expected: Option<u64>,
        mut record: StatusRecord,
    ) -> Result<Option<u64>, StoreError> {
        let tx = self.begin_write()?;
        let version = {
            let mut table = tx.open_table(SUBJECTS).map_err(backend)?;
            let previous = match table.get(subject_ref).map_err(backend)? {
                Some(v) => StatusRecord::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?.version,
                None => 0,
            };
            if expected.is_some_and(|e| e != previous) {
                None
            } else {
                record.version = previous + 1;
                table.insert(subject_ref, record.encode_to_vec().as_slice()).map_err(backend)?;
                Some(record.version)
            }
        };
        let Some(version) = version else {
            tx.abort().map_err(backend)?;
            return Ok(None);
        };
        // The status change and its log entry commit together: acknowledged means logged.
        append_log(&tx, vec![log_entry(self.commitment(subject_ref), &record)])?;
        tx.commit().map_err(backend)?;
        Ok(Some(version))
    }

    fn tx_leaves(&self, size: u64) -> Result<TxLeaves, StoreError> {
        let (current, _) = self.log_head()?;
        if size > current {
            return Err(StoreError::Range(format!("tree size {size} exceeds the log size {current}")));
        }
        let tx = self.begin_read()?;
        Ok(TxLeaves { table: tx.open_table(LOG_HASHES).map_err(backend)?, size })
    }
}

/// What a purge deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgePlan {
    /// Status records last changed before this time.
    pub statuses_changed_before: Option<i64>,
    /// Tokens that expired before this time.
    pub tokens_expired_before: Option<i64>,
    /// Transparency-log entries made before this time (their leaf hashes stay).
    pub log_entries_before: Option<i64>,
    /// Everything about subjects: statuses, tokens, log entries and leaf hashes, the subject
    /// index and the commitment salt (the log's frontier stays, so its last head still holds).
    pub everything: bool,
}

/// What a purge deleted.
#[derive(Debug, Clone, Default)]
pub struct PurgeOutcome {
    /// Deleted records by kind ("status", "token", "log_entry").
    pub counts: std::collections::BTreeMap<&'static str, u64>,
    /// Earliest and latest change time among the deleted records.
    pub range: Option<(i64, i64)>,
    /// Merkle tree over one leaf per deleted record, in deletion order.
    pub deleted: Frontier,
}

impl PurgeOutcome {
    pub(crate) fn note(&mut self, kind: &'static str, time: i64, leaf: Hash) {
        *self.counts.entry(kind).or_default() += 1;
        self.range = Some(match self.range {
            Some((a, b)) => (a.min(time), b.max(time)),
            None => (time, time),
        });
        self.deleted.push(leaf);
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// One leaf of the deleted-set commitment: kind, a key commitment and the record bytes.
pub(crate) fn deletion_leaf(kind: &str, key: &[u8], record: &[u8]) -> Hash {
    let mut data = Vec::with_capacity(kind.len() + 1 + key.len() + record.len());
    data.extend_from_slice(kind.as_bytes());
    data.push(0);
    data.extend_from_slice(key);
    data.extend_from_slice(record);
    huren_translog::leaf_hash(&data)
}

fn rewrite_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".rewrite");
    path.with_file_name(name)
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), StoreError> {
    let source = from.open_table(table).map_err(backend)?;
    let mut target = to.open_table(table).map_err(backend)?;
    for item in source.iter().map_err(backend)? {
        let (key, value) = item.map_err(backend)?;
        target.insert(key.value(), value.value()).map_err(backend)?;
    }
    Ok(())
}

/// Overwrites a file's every byte with zeros and syncs it.
fn wipe(mut file: std::fs::File) -> std::io::Result<()> {
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

pub(crate) fn encode_sizes(sizes: &[u64]) -> Vec<u8> {
    sizes.iter().flat_map(|s| s.to_be_bytes()).collect()
}

pub(crate) fn decode_sizes(bytes: &[u8]) -> Result<Vec<u64>, StoreError> {
    let chunks = bytes.chunks_exact(8);
    if !chunks.remainder().is_empty() {
        return Err(StoreError::Corrupt("signed_sizes".into()));
    }
    Ok(chunks.map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default())).collect())
}

/// Keeps at most [`RECENT_SIGNED_SIZES`] + [`OLDER_SIGNED_SIZES`] sizes (ascending): the
/// newest all, and of the older ones the first and those that leave the smallest gap
/// when dropped go first, so what stays is spread over the log's history.
pub(crate) fn thin_sizes(sizes: &mut Vec<u64>) {
    while sizes.len() > RECENT_SIGNED_SIZES + OLDER_SIGNED_SIZES {
        let older = sizes.len() - RECENT_SIGNED_SIZES;
        let drop = (1..older).min_by_key(|&i| sizes[i + 1] - sizes[i - 1]).unwrap_or(0);
        sizes.remove(drop);
    }
}

/// Deletions per write transaction during a purge.
pub(crate) const PURGE_BATCH: usize = 10_000;

/// SHA-256 over a domain label, the node-secret `salt` and the subject reference: what
/// every backend logs for a subject (links its entries, reveals nothing without the salt).
pub(crate) fn subject_commitment(salt: &[u8], subject_ref: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"huren/subject-commitment/v1\0");
    h.update(salt);
    h.update(subject_ref.as_bytes());
    h.finalize().into()
}

impl NodeStore for Store {
    /// The subject commitment logged for `subject_ref`: SHA-256 over a domain label, the
    /// node-secret salt and the reference. Links a subject's entries, reveals nothing.
    fn commitment(&self, subject_ref: &str) -> [u8; 32] {
        subject_commitment(self.salt.as_slice(), subject_ref)
    }

    /// Size and root of the transparency log.
    fn log_head(&self) -> Result<(u64, Hash), StoreError> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META).map_err(backend)?;
        let frontier = match meta.get("frontier").map_err(backend)? {
            Some(v) => Frontier::from_bytes(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => Frontier::new(),
        };
        Ok((frontier.size(), frontier.root()))
    }

    /// Root hash of the first `size` entries.
    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        huren_translog::root_of(&self.tx_leaves(size)?).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `size` entries.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        huren_translog::inclusion_proof_from(index, &self.tx_leaves(size)?)
            .map_err(|e| StoreError::Range(e.to_string()))
    }

    /// RFC 9162 consistency proof between the trees of `old` and `new` entries.
    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        huren_translog::consistency_proof_from(old, &self.tx_leaves(new)?).map_err(|e| StoreError::Range(e.to_string()))
    }

    /// Encoded log entries `[start, end)`.
    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(LOG_ENTRIES).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range(start..end).map_err(backend)? {
            let (_, v) = item.map_err(backend)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    /// Log indices of a subject's entries.
    fn subject_log(&self, commitment: &[u8; 32]) -> Result<Vec<u64>, StoreError> {
        let tx = self.begin_read()?;
        let table = tx.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
        let mut out = Vec::new();
        for v in table.get(commitment.as_slice()).map_err(backend)? {
            out.push(v.map_err(backend)?.value());
        }
        Ok(out)
    }

    /// Replaces a subject's status; returns the new per-subject version.
    fn upsert(&self, subject_ref: &str, record: StatusRecord) -> Result<u64, StoreError> {
        self.upsert_checked(subject_ref, None, record)?.ok_or_else(|| backend("status change not written"))
    }

    fn upsert_if(&self, subject_ref: &str, expected: u64, record: StatusRecord) -> Result<Option<u64>, StoreError> {
        self.upsert_checked(subject_ref, Some(expected), record)
    }

    /// Replaces many subjects' statuses in one durable transaction (bulk ingest);
    /// returns each subject's new version, in order.
    fn upsert_batch(&self, batch: Vec<(String, StatusRecord)>) -> Result<Vec<u64>, StoreError> {
        let tx = self.begin_write()?;
        let mut versions = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        {
            let mut table = tx.open_table(SUBJECTS).map_err(backend)?;
            for (subject_ref, mut record) in batch {
                let previous = match table.get(subject_ref.as_str()).map_err(backend)? {
                    Some(v) => StatusRecord::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?.version,
                    None => 0,
                };
                record.version = previous + 1;
                table.insert(subject_ref.as_str(), record.encode_to_vec().as_slice()).map_err(backend)?;
                versions.push(record.version);
                entries.push(log_entry(self.commitment(&subject_ref), &record));
            }
        }
        append_log(&tx, entries)?;
        tx.commit().map_err(backend)?;
        Ok(versions)
    }

    fn status(&self, subject_ref: &str) -> Result<Option<StatusRecord>, StoreError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(SUBJECTS).map_err(backend)?;
        match table.get(subject_ref).map_err(backend)? {
            Some(v) => Ok(Some(StatusRecord::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?)),
            None => Ok(None),
        }
    }

    /// Records a token digest for a subject.
    fn put_token(&self, digest: &[u8; 32], record: &TokenRecord) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut table = tx.open_table(TOKENS).map_err(backend)?;
            table.insert(digest.as_slice(), record.encode_to_vec().as_slice()).map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    fn token(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(TOKENS).map_err(backend)?;
        match table.get(digest.as_slice()).map_err(backend)? {
            Some(v) => Ok(Some(TokenRecord::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?)),
            None => Ok(None),
        }
    }

    /// Number of subjects held.
    fn subject_count(&self) -> Result<u64, StoreError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(SUBJECTS).map_err(backend)?;
        table.len().map_err(backend)
    }

    /// Keeps the sunset's deletion receipt (no subject data) so it survives restarts.
    fn put_sunset_receipt(&self, receipt: &[u8]) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        tx.open_table(META).map_err(backend)?.insert("sunset_receipt", receipt).map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn sunset_receipt(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META).map_err(backend)?;
        let value = meta.get("sunset_receipt").map_err(backend)?.map(|v| v.value().to_vec());
        Ok(value)
    }

    /// Index of the oldest log entry still held (entries before it were purged).
    fn log_first_available(&self) -> Result<u64, StoreError> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META).map_err(backend)?;
        let value = meta.get("first_available").map_err(backend)?.map(|v| v.value().to_vec());
        match value {
            Some(bytes) => {
                Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| StoreError::Corrupt("first_available".into()))?))
            }
            None => Ok(0),
        }
    }

    /// Leaf hashes `[start, end)` (held even for purged entries, until a sunset).
    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(LOG_HASHES).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range(start..end).map_err(backend)? {
            out.push(item.map_err(backend)?.1.value().to_vec());
        }
        Ok(out)
    }

    /// Remembers that a tree head of `size` entries was signed, so that a later deletion
    /// receipt can prove consistency from it. Sizes only; the newest
    /// [`RECENT_SIGNED_SIZES`] are all kept and at most [`OLDER_SIGNED_SIZES`] older ones,
    /// thinned where they lie closest together. Writes only for a size not yet kept.
    fn record_signed_size(&self, size: u64) -> Result<(), StoreError> {
        if size == 0 || self.signed_sizes()?.contains(&size) {
            return Ok(());
        }
        let tx = self.begin_write()?;
        {
            let mut meta = tx.open_table(META).map_err(backend)?;
            let mut sizes = match meta.get("signed_sizes").map_err(backend)? {
                Some(v) => decode_sizes(v.value())?,
                None => Vec::new(),
            };
            if let Err(at) = sizes.binary_search(&size) {
                sizes.insert(at, size);
                thin_sizes(&mut sizes);
                meta.insert("signed_sizes", encode_sizes(&sizes).as_slice()).map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    /// Sizes of signed tree heads remembered, ascending.
    fn signed_sizes(&self) -> Result<Vec<u64>, StoreError> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META).map_err(backend)?;
        let value = meta.get("signed_sizes").map_err(backend)?.map(|v| v.value().to_vec());
        value.map_or(Ok(Vec::new()), |bytes| decode_sizes(&bytes))
    }

    /// RFC 9162 consistency proofs from every remembered signed size below `size` to the
    /// tree of `size` entries, read in one transaction. A size whose leaf hashes are gone
    /// (after an earlier purge of everything) is left out.
    fn consistency_proofs(&self, size: u64) -> Result<Vec<(u64, Vec<Hash>)>, StoreError> {
        let leaves = self.tx_leaves(size)?;
        let mut out = Vec::new();
        for old in self.signed_sizes()?.into_iter().filter(|s| *s < size) {
            match huren_translog::consistency_proof_from(old, &leaves) {
                Ok(proof) => out.push((old, proof)),
                Err(ProofError::Source(e)) => {
                    tracing::warn!(old_size = old, error = %e, "no consistency proof from a signed size: leaves missing")
                }
                Err(e) => return Err(StoreError::Corrupt(e.to_string())),
            }
        }
        Ok(out)
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
            copy_table(&from, &to, META)?;
            {
                let source = from.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
                let mut target = to.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
                for item in source.iter().map_err(backend)? {
                    let (key, values) = item.map_err(backend)?;
                    for value in values {
                        target.insert(key.value(), value.map_err(backend)?.value()).map_err(backend)?;
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

    /// Records held, by kind: status, token, log_entry, log_hash, subject_index, salt.
    fn counts(&self) -> Result<std::collections::BTreeMap<&'static str, u64>, StoreError> {
        Self::counts_in(&self.db())
    }

    /// Deletes what `plan` names, in batches of durable transactions, calling `progress`
    /// with the running total. Returns what was deleted, committed to as a Merkle tree.
    fn purge(&self, plan: &PurgePlan, progress: &mut dyn FnMut(u64)) -> Result<PurgeOutcome, StoreError> {
        let mut out = PurgeOutcome::default();
        // Statuses.
        loop {
            let tx = self.begin_write()?;
            let mut batch = Vec::new();
            {
                let mut table = tx.open_table(SUBJECTS).map_err(backend)?;
                for item in table.iter().map_err(backend)? {
                    let (k, v) = item.map_err(backend)?;
                    let record = StatusRecord::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if plan.everything || plan.statuses_changed_before.is_some_and(|t| record.updated_at < t) {
                        batch.push((k.value().to_owned(), v.value().to_vec(), record.updated_at));
                        if batch.len() == PURGE_BATCH {
                            break;
                        }
                    }
                }
                for (key, bytes, time) in &batch {
                    table.remove(key.as_str()).map_err(backend)?;
                    out.note("status", *time, deletion_leaf("status", &self.commitment(key), bytes));
                }
            }
            tx.commit().map_err(backend)?;
            progress(out.total());
            if batch.len() < PURGE_BATCH {
                break;
            }
        }
        // Tokens.
        loop {
            let tx = self.begin_write()?;
            let mut batch = Vec::new();
            {
                let mut table = tx.open_table(TOKENS).map_err(backend)?;
                for item in table.iter().map_err(backend)? {
                    let (k, v) = item.map_err(backend)?;
                    let record = TokenRecord::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if plan.everything || plan.tokens_expired_before.is_some_and(|t| record.expires_at < t) {
                        batch.push((k.value().to_vec(), v.value().to_vec(), record.expires_at));
                        if batch.len() == PURGE_BATCH {
                            break;
                        }
                    }
                }
                for (key, bytes, time) in &batch {
                    table.remove(key.as_slice()).map_err(backend)?;
                    out.note("token", *time, deletion_leaf("token", key, bytes));
                }
            }
            tx.commit().map_err(backend)?;
            progress(out.total());
            if batch.len() < PURGE_BATCH {
                break;
            }
        }
        // Log entries, oldest first; their leaf hashes stay unless everything goes.
        loop {
            let first = self.log_first_available()?;
            let tx = self.begin_write()?;
            let deleted;
            let mut next = first;
            {
                let mut entries = tx.open_table(LOG_ENTRIES).map_err(backend)?;
                let mut index = tx.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
                let mut batch = Vec::new();
                for item in entries.range(first..).map_err(backend)? {
                    let (k, v) = item.map_err(backend)?;
                    let entry = pb::LogEntry::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if !(plan.everything || plan.log_entries_before.is_some_and(|t| entry.time < t)) {
                        break;
                    }
                    batch.push((k.value(), v.value().to_vec(), entry));
                    if batch.len() == PURGE_BATCH {
                        break;
                    }
                }
                for (i, bytes, entry) in &batch {
                    entries.remove(*i).map_err(backend)?;
                    index.remove(entry.subject_commitment.as_slice(), *i).map_err(backend)?;
                    out.note("log_entry", entry.time, huren_translog::leaf_hash(bytes));
                    next = i + 1;
                }
                deleted = batch.len();
                let mut meta = tx.open_table(META).map_err(backend)?;
                meta.insert("first_available", next.to_be_bytes().as_slice()).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            progress(out.total());
            if deleted < PURGE_BATCH {
                break;
            }
        }
        if plan.everything {
            let tx = self.begin_write()?;
            tx.delete_table(LOG_HASHES).map_err(backend)?;
            tx.delete_multimap_table(SUBJECT_LOG).map_err(backend)?;
            tx.open_table(LOG_HASHES).map_err(backend)?;
            tx.open_multimap_table(SUBJECT_LOG).map_err(backend)?;
            tx.open_table(META).map_err(backend)?.remove("salt").map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        Ok(out)
    }
}

impl Store {
    /// What a store file holds, read without changing it (for `huren audit scan`: the
    /// node must be stopped).
    pub fn inspect(path: &Path) -> Result<std::collections::BTreeMap<&'static str, u64>, StoreError> {
        let db = Database::open(path)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), message: e.to_string() })?;
        Self::counts_in(&db)
    }

    fn counts_in(db: &Database) -> Result<std::collections::BTreeMap<&'static str, u64>, StoreError> {
        let tx = db.begin_read().map_err(backend)?;
        let mut out = std::collections::BTreeMap::new();
        out.insert("status", tx.open_table(SUBJECTS).map_err(backend)?.len().map_err(backend)?);
        out.insert("token", tx.open_table(TOKENS).map_err(backend)?.len().map_err(backend)?);
        out.insert("log_entry", tx.open_table(LOG_ENTRIES).map_err(backend)?.len().map_err(backend)?);
        out.insert("log_hash", tx.open_table(LOG_HASHES).map_err(backend)?.len().map_err(backend)?);
        out.insert("subject_index", tx.open_multimap_table(SUBJECT_LOG).map_err(backend)?.len().map_err(backend)?);
        out.insert("salt", u64::from(tx.open_table(META).map_err(backend)?.get("salt").map_err(backend)?.is_some()));
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The Redis server of the tests (`HUREN_TEST_REDIS`, else the local default).
    pub(crate) fn redis_url() -> String {
        std::env::var("HUREN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    #[derive(Clone, Copy)]
    pub(crate) enum Backend {
        Redb,
        Redis,
    }

    /// A store location of one backend: a temporary folder, or a unique key prefix on the
    /// test Redis whose keys are deleted when the fixture drops.
    pub(crate) struct Fixture {
        backend: Backend,
        dir: tempfile::TempDir,
        prefix: String,
    }

    impl Fixture {
        pub(crate) fn new(backend: Backend) -> Self {
            let mut random = [0u8; 8];
            getrandom::getrandom(&mut random).unwrap();
            let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
            Self { backend, dir: tempfile::tempdir().unwrap(), prefix: format!("huren-test:{suffix}:") }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("s.redb")
        }

        pub(crate) fn prefix(&self) -> &str {
            &self.prefix
        }

        pub(crate) fn open(&self) -> Box<dyn NodeStore> {
            match self.backend {
                Backend::Redb => Box::new(Store::open(&self.path()).unwrap()),
                Backend::Redis => Box::new(crate::redis_store::RedisStore::open(&redis_url(), &self.prefix).unwrap()),
            }
        }

        /// Whether redb leaves a deleted record's bytes behind until a rewrite.
        fn keeps_freed_bytes(&self) -> bool {
            matches!(self.backend, Backend::Redb)
        }

        fn connection(&self) -> redis::Connection {
            redis::Client::open(redis_url()).unwrap().get_connection().unwrap()
        }

        fn redis_keys(&self, conn: &mut redis::Connection) -> Vec<String> {
            let mut keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(conn).unwrap();
            keys.sort();
            keys
        }

        /// Whether what the store keeps (the redb file's bytes; every key, field, member
        /// and value under the Redis prefix) contains `needle`.
        fn holds(&self, needle: &[u8]) -> bool {
            let contains = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            match self.backend {
                Backend::Redb => contains(&std::fs::read(self.path()).unwrap()),
                Backend::Redis => {
                    let mut conn = self.connection();
                    self.redis_keys(&mut conn).into_iter().any(|key| {
                        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
                        let parts: Vec<Vec<u8>> = match kind.as_str() {
                            "hash" => redis::cmd("HGETALL").arg(&key).query(&mut conn).unwrap(),
                            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(&mut conn).unwrap(),
                            "string" => vec![redis::cmd("GET").arg(&key).query(&mut conn).unwrap()],
                            other => panic!("unexpected {other} key {key}"),
                        };
                        contains(key.as_bytes()) || parts.iter().any(|p| contains(p))
                    })
                }
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if let Backend::Redis = self.backend {
                let mut conn = self.connection();
                for key in self.redis_keys(&mut conn) {
                    let _: () = redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
                }
            }
        }
    }

    /// Runs each named test body against both backends: `on_redb::<name>`, `on_redis::<name>`.
    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod on_redb {
                $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Backend::Redb)) })*
            }
            mod on_redis {
                $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Backend::Redis)) })*
            }
        };
    }

    on_both_backends!(
        upsert_bumps_version_and_survives_reopen,
        a_conditional_upsert_writes_only_over_the_version_it_was_decided_on,
        signed_sizes_keep_the_newest_and_a_spread_of_older_ones,
        purge_and_rewrite_leave_no_byte_of_a_deleted_record,
        log_proofs_and_subject_index_agree,
        proofs_hold_over_a_log_longer_than_one_read,
    );

    fn proofs_hold_over_a_log_longer_than_one_read(fixture: &Fixture) {
        let store = fixture.open();
        let batch: Vec<(String, StatusRecord)> =
            (0..9000).map(|i| (format!("s-{i}"), StatusRecord { status: 1, ..Default::default() })).collect();
        store.upsert_batch(batch).unwrap();
        let (size, root) = store.log_head().unwrap();
        assert_eq!((size, store.root_at(size).unwrap()), (9000, root));
        let leaves = store.leaf_hashes(0, size).unwrap();
        for index in [0u64, 4095, 4096, 8999] {
            let leaf = <Hash>::try_from(leaves[index as usize].as_slice()).unwrap();
            let proof = store.inclusion_proof(index, size).unwrap();
            huren_translog::verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
        }
        let old = store.root_at(5000).unwrap();
        let proof = store.consistency_proof(5000, size).unwrap();
        huren_translog::verify_consistency(5000, size, &old, &root, &proof).unwrap();
    }

    fn upsert_bumps_version_and_survives_reopen(fixture: &Fixture) {
        {
            let store = fixture.open();
            let rec = StatusRecord { status: 3, rule_id: "r".into(), ..Default::default() };
            assert_eq!(store.upsert("subj-1", rec.clone()).unwrap(), 1);
            assert_eq!(store.upsert("subj-1", rec).unwrap(), 2);
            store.put_token(&[7; 32], &TokenRecord { subject_ref: "subj-1".into(), expires_at: 9 }).unwrap();
        }
        let store = fixture.open();
        assert_eq!(store.status("subj-1").unwrap().unwrap().version, 2);
        assert_eq!(store.token(&[7; 32]).unwrap().unwrap().subject_ref, "subj-1");
        assert!(store.status("nobody").unwrap().is_none());
        assert_eq!(store.subject_count().unwrap(), 1);
        let batch = (0..100).map(|i| (format!("s-{i}"), StatusRecord { status: 1, ..Default::default() })).collect();
        assert_eq!(store.upsert_batch(batch).unwrap(), vec![1; 100]);
        assert_eq!(store.subject_count().unwrap(), 101);
        assert_eq!(store.log_head().unwrap().0, 102, "every change is logged");
        let twice = vec![("s-1".to_owned(), StatusRecord::default()), ("s-1".to_owned(), StatusRecord::default())];
        assert_eq!(store.upsert_batch(twice).unwrap(), vec![2, 3], "a batch naming a subject twice counts on");
    }

    fn a_conditional_upsert_writes_only_over_the_version_it_was_decided_on(fixture: &Fixture) {
        let store = fixture.open();
        let red = StatusRecord { status: 3, rule_id: "r".into(), ..Default::default() };
        assert_eq!(store.upsert_if("subj-1", 1, red.clone()).unwrap(), None, "no status yet: version 0");
        assert_eq!(store.upsert_if("subj-1", 0, red.clone()).unwrap(), Some(1));
        assert_eq!(store.upsert_if("subj-1", 0, red.clone()).unwrap(), None, "another change came first");
        assert_eq!(store.log_head().unwrap().0, 1, "a refused write logs nothing");
        let lift = StatusRecord { status: 1, lifted_rule_id: "r".into(), ..Default::default() };
        assert_eq!(store.upsert_if("subj-1", 1, lift).unwrap(), Some(2));
        let entry = pb::LogEntry::decode(store.log_entries(1, 2).unwrap()[0].as_slice()).unwrap();
        assert_eq!((entry.status, entry.lifted_rule_id.as_str(), entry.index), (1, "r", 1));
        let plain = pb::LogEntry::decode(store.log_entries(0, 1).unwrap()[0].as_slice()).unwrap();
        assert!(plain.lifted_rule_id.is_empty());
    }

    fn signed_sizes_keep_the_newest_and_a_spread_of_older_ones(fixture: &Fixture) {
        let store = fixture.open();
        store.record_signed_size(0).unwrap();
        assert!(store.signed_sizes().unwrap().is_empty(), "the empty tree needs no proof");
        for size in 1..=1000 {
            store.record_signed_size(size).unwrap();
            store.record_signed_size(size).unwrap();
        }
        let sizes = store.signed_sizes().unwrap();
        assert_eq!(sizes.len(), RECENT_SIGNED_SIZES + OLDER_SIGNED_SIZES);
        assert!(sizes.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sizes[0], 1, "the oldest stays");
        assert_eq!(sizes[OLDER_SIGNED_SIZES..], (969..=1000).collect::<Vec<_>>()[..], "the newest all stay");
        let widest = sizes[..=OLDER_SIGNED_SIZES].windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(widest <= 64, "older sizes are spread out, not bunched: widest gap {widest}");
    }

    fn purge_and_rewrite_leave_no_byte_of_a_deleted_record(fixture: &Fixture) {
        let store = fixture.open();
        let record = StatusRecord {
            status: 1,
            authority: "spiffe://huren.gov/province/340000/admin".into(),
            ..Default::default()
        };
        for i in 0..50 {
            store.upsert(&format!("subject-ref-{i:04}"), record.clone()).unwrap();
        }
        for i in 0..300u16 {
            let mut digest = [9; 32];
            digest[..2].copy_from_slice(&i.to_be_bytes());
            store.put_token(&digest, &TokenRecord { subject_ref: format!("token-ref-{i:04}"), expires_at: 5 }).unwrap();
        }
        store.record_signed_size(50).unwrap();
        let keeps = fixture.keeps_freed_bytes();

        // A partial purge: the tokens go (redb keeps their bytes in freed pages until the rewrite).
        let plan = PurgePlan { tokens_expired_before: Some(10), ..Default::default() };
        let outcome = store.purge(&plan, &mut |_| {}).unwrap();
        assert_eq!(outcome.counts.get("token"), Some(&300));
        assert_eq!(fixture.holds(b"token-ref-"), keeps, "redb keeps freed bytes, or this test would prove nothing");
        store.rewrite().unwrap();
        assert!(!fixture.holds(b"token-ref-"), "a deleted token's bytes remain");
        assert!(fixture.holds(b"subject-ref-0049"), "live records are carried over");
        assert_eq!((store.subject_count().unwrap(), store.log_head().unwrap().0), (50, 50));

        // Everything: no subject reference, no record is left.
        let outcome = store.purge(&PurgePlan { everything: true, ..Default::default() }, &mut |_| {}).unwrap();
        assert_eq!((outcome.counts.get("status"), outcome.counts.get("log_entry")), (Some(&50), Some(&50)));
        assert_eq!(fixture.holds(RECORD_MARKERS[0]), keeps, "redb keeps freed bytes, or this test would prove nothing");
        store.rewrite().unwrap();
        for needle in [&b"subject-ref-00"[..], RECORD_MARKERS[0]] {
            assert!(!fixture.holds(needle), "{} remains", String::from_utf8_lossy(needle));
        }
        assert!(store.counts().unwrap().values().all(|n| *n == 0), "{:?}", store.counts().unwrap());
        assert_eq!(store.log_head().unwrap().0, 50, "the log's frontier stays");
        assert_eq!(store.signed_sizes().unwrap(), [50]);
        store.put_sunset_receipt(b"receipt").unwrap();

        // The store works on after a rewrite, and across a reopen.
        store.upsert("after", record).unwrap();
        drop(store);
        let reopened = fixture.open();
        assert_eq!((reopened.subject_count().unwrap(), reopened.log_head().unwrap().0), (1, 51));
        assert_eq!(reopened.sunset_receipt().unwrap().as_deref(), Some(&b"receipt"[..]));
    }

    fn log_proofs_and_subject_index_agree(fixture: &Fixture) {
        let store = fixture.open();
        for i in 0..20 {
            let record = StatusRecord { status: 1, updated_at: i, ..Default::default() };
            store.upsert(&format!("subject-{}", i % 3), record).unwrap();
        }
        let (size, root) = store.log_head().unwrap();
        assert_eq!(size, 20);
        assert_eq!(store.root_at(size).unwrap(), root);
        let leaves: Vec<Hash> =
            store.leaf_hashes(0, size).unwrap().into_iter().map(|h| <Hash>::try_from(h.as_slice()).unwrap()).collect();
        for index in [0, 7, 19] {
            let proof = store.inclusion_proof(index, size).unwrap();
            huren_translog::verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
        }
        let old_root = store.root_at(9).unwrap();
        let proof = store.consistency_proof(9, size).unwrap();
        huren_translog::verify_consistency(9, size, &old_root, &root, &proof).unwrap();
        assert!(matches!(store.root_at(21), Err(StoreError::Range(_))));
        assert_eq!(store.subject_log(&store.commitment("subject-1")).unwrap(), [1, 4, 7, 10, 13, 16, 19]);
        let entries = store.log_entries(0, 100).unwrap();
        assert_eq!(entries.len(), 20);
        let entry = pb::LogEntry::decode(entries[4].as_slice()).unwrap();
        assert_eq!((entry.index, entry.subject_commitment), (4, store.commitment("subject-1").to_vec()));

        // Retention: old entries go, their leaf hashes and the proofs stay.
        let outcome =
            store.purge(&PurgePlan { log_entries_before: Some(5), ..Default::default() }, &mut |_| {}).unwrap();
        assert_eq!(outcome.counts.get("log_entry"), Some(&5));
        assert_eq!(store.log_first_available().unwrap(), 5);
        assert_eq!(store.log_entries(0, 100).unwrap().len(), 15);
        assert_eq!(store.subject_log(&store.commitment("subject-1")).unwrap(), [7, 10, 13, 16, 19]);
        let proof_1 = store.inclusion_proof(1, size).unwrap();
        huren_translog::verify_inclusion(&leaves[1], 1, size, &proof_1, &root).unwrap();
        assert!(store.consistency_proofs(size).unwrap().is_empty());
        store.record_signed_size(9).unwrap();
        assert_eq!(store.consistency_proofs(size).unwrap(), [(9, proof)]);
    }
}
