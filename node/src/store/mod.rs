//! The node's minimal status projection: the [`NodeStore`] trait every backend serves, its
//! records and errors, and [`BackedStore`], the one implementation of it over a small storage
//! trait, with three backends: [`Store`], an embedded redb file (the default),
//! [`FjallStore`], an embedded fjall LSM database, and [`RedisStore`], keys under a prefix
//! in Redis.
//!
//! A store holds the current status of each subject (a province-internal pseudonymous
//! reference → colour, rule, authority, validity, test-recency bucket), token digests (the
//! SHA-256 of an opaque token → the subject it stands for and its expiry), and the node's
//! transparency log. No name, ID number or contact detail is ever stored, and tokens are kept
//! only as digests. Every acknowledged change is durable and logged: a status change and its
//! log entry commit in one transaction.
//!
//! Layout: `backend` (the storage trait: tables of keyed values, snapshot reads, atomic
//! writes, scans, compare-and-delete), `log` (the transparency log over it: append, proofs
//! from stored interior hashes in O(log n) reads, signed sizes, purges), `redb`, `fjall` and
//! `redis` (the three backends). Status records, tokens and purges are written once, here. A
//! backend may spread the tables whose writes need not commit with the log (tokens,
//! disclosure logs) over several places (Redis: shards), so no write mixes them with
//! the others, and the writes of those tables are idempotent.

mod backend;
mod batch;

mod disclosures;
pub mod fjall;
mod log;
pub mod redb;
pub mod redis;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use huren_proto::pb;
pub use huren_translog::Frontier;
use huren_translog::Hash;
use prost::Message;
use sha2::{Digest, Sha256};

use self::backend::{Backend, Key, Reader, Table};
pub(crate) use self::batch::repeated;
pub use self::batch::{BatchItem, BatchOutcome, Decide, ItemApplied, MAX_BATCH_ITEMS};

pub use self::disclosures::{
    DisclosureLog, DisclosureRecord, HubAggregateRecord, SubjectDisclosures, COALESCE_GAP_SECONDS,
    COALESCE_SPAN_SECONDS, MAX_ENTRIES_PER_DAY, SERVED_FROM_CACHE,
};
pub use self::fjall::FjallStore;
pub use self::redb::Store;
pub use self::redis::RedisStore;

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
    /// The colour, a `pb::HealthStatus` value.
    #[prost(int32, tag = "1")]
    pub status: i32,
    /// The registered rule that assigned a non-green status; empty for green.
    #[prost(string, tag = "2")]
    pub rule_id: String,
    /// Identity URI of who set it (an authority, or the province admin for green).
    #[prost(string, tag = "3")]
    pub authority: String,
    /// Unix seconds after which the status lapses (to the rule's `lapses_to`).
    #[prost(int64, tag = "4")]
    pub valid_until: i64,
    /// The test-recency bucket, a `pb::TestRecency` value.
    #[prost(int32, tag = "5")]
    pub test_recency: i32,
    /// Unix seconds of the last change: retention counts from it.
    #[prost(int64, tag = "6")]
    pub updated_at: i64,
    /// Increases by one with every change of this subject.
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
    /// The province-internal pseudonymous subject reference the token stands for.
    #[prost(string, tag = "1")]
    pub subject_ref: String,
    /// Unix seconds after which the token is unknown.
    #[prost(int64, tag = "2")]
    pub expires_at: i64,
}

/// Why the status store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be opened (the file is locked, unreadable, or Redis refused).
    #[error("status store {path}: {message}")]
    Open {
        /// The file path or Redis URL (without credentials).
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The backend failed (I/O, Redis connection, transaction).
    #[error("status store: {0}")]
    Backend(String),
    /// A stored record does not decode: the store was damaged or tampered with.
    #[error("status store holds a corrupt record: {0}")]
    Corrupt(String),
    /// A log range or tree size outside what the log holds.
    #[error("{0}")]
    Range(String),
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// What a node needs of its status store, whichever backend holds it. Every method blocks:
/// call it from a blocking task. Acknowledged means durable and logged: a status change
/// returns only once it and its transparency-log entry are stored together.
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
    /// The current status record of a subject, if any.
    fn status(&self, subject_ref: &str) -> Result<Option<StatusRecord>, StoreError>;
    /// Records a token digest for a subject.
    fn put_token(&self, digest: &[u8; 32], record: &TokenRecord) -> Result<(), StoreError>;
    /// What a token digest resolves to, if it was issued (expiry not checked here).
    fn token(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;
    /// Number of subjects held.
    fn subject_count(&self) -> Result<u64, StoreError>;
    /// Keeps the sunset's deletion receipt (no subject data) so it survives restarts.
    fn put_sunset_receipt(&self, receipt: &[u8]) -> Result<(), StoreError>;
    /// The sunset's deletion receipt, once the sunset purge has run.
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
    /// (sizes whose hashes are gone are left out).
    fn consistency_proofs(&self, size: u64) -> Result<Vec<(u64, Vec<Hash>)>, StoreError>;
    /// Makes sure no byte of a deleted record stays in what the backend keeps.
    fn rewrite(&self) -> Result<(), StoreError>;
    /// Records held, by kind: status, token, log_entry, log_hash, log_node (interior hashes
    /// of the log), subject_index, salt, disclosure_log (subject-days with a disclosure log),
    /// hub_aggregate.
    fn counts(&self) -> Result<BTreeMap<&'static str, u64>, StoreError>;
    /// Deletes what `plan` names, calling `progress` with the running total. Returns
    /// what was deleted, committed to as a Merkle tree.
    fn purge(&self, plan: &PurgePlan, progress: &mut dyn FnMut(u64)) -> Result<PurgeOutcome, StoreError>;
    /// Decides and applies a batch of status changes by the caller `scope` (its identity
    /// URI) in one transaction with their log entries, idempotent by item id: see the
    /// `batch` module. Subjects must be distinct.
    fn publish_statuses(
        &self,
        scope: &str,
        items: &[BatchItem],
        all_or_nothing: bool,
        now: i64,
        decide: &mut Decide<'_>,
    ) -> Result<BatchOutcome, StoreError>;
    /// Records many token digests, durably: in one transaction, or where the token table is
    /// spread (Redis) one per shard — a call that fails may have recorded some of them
    /// (digests of tokens never handed out, which expire unused).
    fn put_tokens(&self, tokens: &[([u8; 32], TokenRecord)]) -> Result<(), StoreError>;

    /// Appends each `(subject_ref, record)` to that subject's disclosure log, then adds the
    /// aggregate deltas (their `distinct_subjects` and `checks` add to what is stored).
    /// `batch_id` names the batch (a random number, the same when the same batch is written
    /// again): a subject's log that already holds it is not appended to twice, so a batch
    /// whose write failed part-way can be retried.
    fn append_disclosures(
        &self,
        batch_id: u64,
        batch: &[(String, DisclosureRecord)],
        aggregate_deltas: &[HubAggregateRecord],
    ) -> Result<(), StoreError>;
    /// A subject's disclosure records from `since` to `until` (at most 400 days apart),
    /// newest first.
    fn disclosures(&self, subject_ref: &str, since: i64, until: i64) -> Result<SubjectDisclosures, StoreError>;
    /// Per-hub aggregates of the hours starting in `[since, until)`.
    fn hub_aggregates(&self, since: i64, until: i64) -> Result<Vec<HubAggregateRecord>, StoreError>;
    /// Adds `n` to the count of disclosure records the node could not write.
    fn add_dropped_disclosures(&self, n: u64) -> Result<(), StoreError>;
    /// Disclosure records the node could not write, since the store was created.
    fn dropped_disclosures(&self) -> Result<u64, StoreError>;
}

/// What a purge deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgePlan {
    /// Status records last changed before this time.
    pub statuses_changed_before: Option<i64>,
    /// Tokens that expired before this time.
    pub tokens_expired_before: Option<i64>,
    /// Transparency-log entries made before this time (their leaf and interior hashes stay).
    pub log_entries_before: Option<i64>,
    /// Everything about subjects: statuses, tokens, log entries, leaf and interior hashes, the
    /// subject index and the commitment salt (the log's frontier stays, so its last head still
    /// holds).
    pub everything: bool,
    /// Disclosure-log records of checks made before this time.
    pub disclosures_before: Option<i64>,
    /// Per-hub aggregates of hours that started before this time.
    pub hub_aggregates_before: Option<i64>,
}

/// What a purge deleted.
#[derive(Debug, Clone, Default)]
pub struct PurgeOutcome {
    /// Deleted records by kind ("status", "token", "log_entry").
    pub counts: BTreeMap<&'static str, u64>,
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

    /// Records deleted, all kinds together.
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

/// SHA-256 over a domain label, the node-secret `salt` and the subject reference: what
/// every backend logs for a subject (links its entries, reveals nothing without the salt).
pub(crate) fn subject_commitment(salt: &[u8], subject_ref: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"huren/subject-commitment/v1\0");
    h.update(salt);
    h.update(subject_ref.as_bytes());
    h.finalize().into()
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

/// A record a purge deletes: its kind, time and deletion-commitment leaf.
type Deletion = (&'static str, i64, Hash);
/// Whether a purge deletes a record (given its key and value), and as what.
type Judge<'a> = dyn Fn(&Key, &[u8]) -> Result<Option<Deletion>, StoreError> + 'a;

const SALT: &str = "salt";
const SUNSET_RECEIPT: &str = "sunset_receipt";

/// A node store over one backend ([`Store`]: redb; [`FjallStore`]: fjall; [`RedisStore`]: Redis): the status tables
/// and the transparency log, written once over the backend's small storage trait.
pub struct BackedStore<B> {
    backend: B,
    salt: Arc<[u8; 32]>,
}

impl<B: Clone> Clone for BackedStore<B> {
    fn clone(&self) -> Self {
        Self { backend: self.backend.clone(), salt: self.salt.clone() }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for BackedStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.backend.fmt(f)
    }
}

impl<B: Backend> From<BackedStore<B>> for Arc<dyn NodeStore> {
    fn from(store: BackedStore<B>) -> Self {
        Arc::new(store)
    }
}

impl<B: Backend> BackedStore<B> {
    /// Opens the store in `backend`: creates the commitment salt if there is none (of two
    /// processes opening a fresh store at once, one salt wins), and computes the interior log
    /// hashes a store written by an older version lacks.
    fn open_in(backend: B) -> Result<Self, StoreError> {
        let mut fresh = [0u8; 32];
        getrandom::getrandom(&mut fresh).map_err(|e| StoreError::Backend(format!("randomness unavailable: {e}")))?;
        let salt = backend.write(&mut |w| match w.get(Table::Meta, Key::text(SALT))? {
            Some(salt) => Ok(salt),
            None => {
                w.put(Table::Meta, Key::text(SALT), fresh.to_vec())?;
                Ok(fresh.to_vec())
            }
        })?;
        let salt = <[u8; 32]>::try_from(salt.as_slice()).map_err(|_| corrupt("commitment salt"))?;
        log::backfill(&backend)?;
        Ok(Self { backend, salt: Arc::new(salt) })
    }

    /// Replaces each subject's status and logs it, in one transaction; a subject named twice
    /// counts on.
    fn upsert_all(&self, batch: &[(String, StatusRecord)]) -> Result<Vec<u64>, StoreError> {
        self.upsert_all_if(batch, None)?.ok_or_else(|| StoreError::Backend("status change not written".into()))
    }

    /// [`Self::upsert_all`] for one subject whose status must still be at version `expected`
    /// when given: the check and the write are one transaction. `None`: not written.
    fn upsert_all_if(
        &self,
        batch: &[(String, StatusRecord)],
        expected: Option<u64>,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let mut subjects: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (subject_ref, _) in batch {
            if seen.insert(subject_ref.as_str()) {
                subjects.push(subject_ref);
            }
        }
        let keys: Vec<Key> = subjects.iter().map(|s| Key::text(s)).collect();
        let commitments: Vec<[u8; 32]> = batch.iter().map(|(s, _)| self.commitment(s)).collect();
        self.backend.write_prefetched(&[(Table::Status, keys.as_slice())], &mut |w| {
            let mut latest: HashMap<&str, u64> = HashMap::with_capacity(subjects.len());
            for (subject, current) in subjects.iter().zip(w.get_many(Table::Status, &keys)?) {
                let version = match current {
                    Some(bytes) => StatusRecord::decode(bytes.as_slice()).map_err(corrupt)?.version,
                    None => 0,
                };
                latest.insert(subject, version);
            }
            if let (Some(expected), [(subject_ref, _)]) = (expected, batch) {
                if latest.get(subject_ref.as_str()).copied().unwrap_or(0) != expected {
                    return Ok(None);
                }
            }
            let mut versions = Vec::with_capacity(batch.len());
            let mut entries = Vec::with_capacity(batch.len());
            for ((subject_ref, record), commitment) in batch.iter().zip(&commitments) {
                let version = latest.get(subject_ref.as_str()).copied().unwrap_or(0) + 1;
                latest.insert(subject_ref, version);
                let record = StatusRecord { version, ..record.clone() };
                w.put(Table::Status, Key::text(subject_ref), record.encode_to_vec())?;
                entries.push(log_entry(*commitment, &record));
                versions.push(version);
            }
            // The status changes and their log entries commit together: acknowledged means logged.
            log::append(w, entries)?;
            Ok(Some(versions))
        })
    }

    /// Scans `table`, deleting (compare-and-delete, in batches) the records `judge` picks;
    /// notes each deletion in `out`.
    fn purge_table(
        &self,
        table: Table,
        judge: &Judge<'_>,
        out: &mut PurgeOutcome,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), StoreError> {
        let mut batch: backend::Records = Vec::new();
        let mut notes = Vec::new();
        let mut flush = |batch: &mut backend::Records, notes: &mut Vec<_>, out: &mut PurgeOutcome| {
            let deleted = self.backend.delete_unchanged(table, batch)?;
            for ((kind, time, leaf), flag) in notes.drain(..).zip(deleted) {
                if flag {
                    out.note(kind, time, leaf);
                }
            }
            batch.clear();
            progress(out.total());
            Ok::<(), StoreError>(())
        };
        self.backend.scan(table, &mut |page| {
            for (key, value) in page {
                if let Some(note) = judge(&key, &value)? {
                    batch.push((key, value));
                    notes.push(note);
                }
            }
            if batch.len() >= log::PURGE_BATCH {
                flush(&mut batch, &mut notes, out)?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            flush(&mut batch, &mut notes, out)?;
        }
        Ok(())
    }

    fn counts_in(backend: &B) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        let mut reader = backend.reader()?;
        let mut out = BTreeMap::new();
        for (kind, table) in [
            ("status", Table::Status),
            ("token", Table::Token),
            ("log_entry", Table::LogEntries),
            ("log_hash", Table::LogHashes),
            ("log_node", Table::LogNodes),
            ("subject_index", Table::SubjectLog),
            ("disclosure_log", Table::Disclosures),
            ("hub_aggregate", Table::HubAggregates),
        ] {
            out.insert(kind, reader.count(table)?);
        }
        out.insert("salt", u64::from(reader.get(Table::Meta, Key::text(SALT))?.is_some()));
        Ok(out)
    }
}

impl<B: Backend> NodeStore for BackedStore<B> {
    fn commitment(&self, subject_ref: &str) -> [u8; 32] {
        subject_commitment(self.salt.as_slice(), subject_ref)
    }

    fn log_head(&self) -> Result<(u64, Hash), StoreError> {
        log::head(&self.backend)
    }

    fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        log::root_at(&self.backend, size)
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        log::inclusion_proof(&self.backend, index, size)
    }

    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        log::consistency_proof(&self.backend, old, new)
    }

    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        log::entries(&self.backend, start, end)
    }

    fn subject_log(&self, commitment: &[u8; 32]) -> Result<Vec<u64>, StoreError> {
        self.backend.reader()?.subject_log(commitment)
    }

    fn upsert(&self, subject_ref: &str, record: StatusRecord) -> Result<u64, StoreError> {
        let versions = self.upsert_all(&[(subject_ref.to_owned(), record)])?;
        versions.first().copied().ok_or_else(|| StoreError::Backend("no version returned".into()))
    }

    fn upsert_if(&self, subject_ref: &str, expected: u64, record: StatusRecord) -> Result<Option<u64>, StoreError> {
        let versions = self.upsert_all_if(&[(subject_ref.to_owned(), record)], Some(expected))?;
        Ok(versions.and_then(|v| v.first().copied()))
    }

    fn upsert_batch(&self, batch: Vec<(String, StatusRecord)>) -> Result<Vec<u64>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.upsert_all(&batch)
    }

    fn status(&self, subject_ref: &str) -> Result<Option<StatusRecord>, StoreError> {
        let bytes = self.backend.reader()?.get(Table::Status, Key::text(subject_ref))?;
        bytes.map(|b| StatusRecord::decode(b.as_slice()).map_err(corrupt)).transpose()
    }

    fn put_token(&self, digest: &[u8; 32], record: &TokenRecord) -> Result<(), StoreError> {
        let value = record.encode_to_vec();
        self.backend.write(&mut |w| w.put(Table::Token, Key::Bytes(digest.to_vec()), value.clone()))
    }

    fn token(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let bytes = self.backend.reader()?.get(Table::Token, Key::Bytes(digest.to_vec()))?;
        bytes.map(|b| TokenRecord::decode(b.as_slice()).map_err(corrupt)).transpose()
    }

    fn subject_count(&self) -> Result<u64, StoreError> {
        self.backend.reader()?.count(Table::Status)
    }

    fn put_sunset_receipt(&self, receipt: &[u8]) -> Result<(), StoreError> {
        self.backend.write(&mut |w| w.put(Table::Meta, Key::text(SUNSET_RECEIPT), receipt.to_vec()))
    }

    fn sunset_receipt(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.reader()?.get(Table::Meta, Key::text(SUNSET_RECEIPT))
    }

    fn log_first_available(&self) -> Result<u64, StoreError> {
        log::first_available(&self.backend)
    }

    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        log::leaf_hashes(&self.backend, start, end)
    }

    fn record_signed_size(&self, size: u64) -> Result<(), StoreError> {
        log::record_signed_size(&self.backend, size)
    }

    fn signed_sizes(&self) -> Result<Vec<u64>, StoreError> {
        log::signed_sizes(&self.backend)
    }

    fn consistency_proofs(&self, size: u64) -> Result<Vec<(u64, Vec<Hash>)>, StoreError> {
        log::consistency_proofs(&self.backend, size)
    }

    fn rewrite(&self) -> Result<(), StoreError> {
        self.backend.rewrite()
    }

    fn counts(&self) -> Result<BTreeMap<&'static str, u64>, StoreError> {
        Self::counts_in(&self.backend)
    }

    fn publish_statuses(
        &self,
        scope: &str,
        items: &[BatchItem],
        all_or_nothing: bool,
        now: i64,
        decide: &mut Decide<'_>,
    ) -> Result<BatchOutcome, StoreError> {
        self.publish_in(scope, items, all_or_nothing, now, decide)
    }

    fn put_tokens(&self, tokens: &[([u8; 32], TokenRecord)]) -> Result<(), StoreError> {
        self.put_tokens_in(tokens)
    }

    /// Deletes what `plan` names in batches of atomic writes (statuses and tokens only if
    /// unchanged since judged, so a change made meanwhile survives), calling `progress` with
    /// the running total.
    fn purge(&self, plan: &PurgePlan, progress: &mut dyn FnMut(u64)) -> Result<PurgeOutcome, StoreError> {
        let mut out = PurgeOutcome::default();
        let statuses = |key: &Key, value: &[u8]| {
            let Key::Text(subject) = key else { return Err(corrupt("status key")) };
            let record = StatusRecord::decode(value).map_err(corrupt)?;
            Ok((plan.everything || plan.statuses_changed_before.is_some_and(|t| record.updated_at < t))
                .then(|| ("status", record.updated_at, deletion_leaf("status", &self.commitment(subject), value))))
        };
        self.purge_table(Table::Status, &statuses, &mut out, progress)?;
        let tokens = |key: &Key, value: &[u8]| {
            let Key::Bytes(digest) = key else { return Err(corrupt("token key")) };
            let record = TokenRecord::decode(value).map_err(corrupt)?;
            Ok((plan.everything || plan.tokens_expired_before.is_some_and(|t| record.expires_at < t))
                .then(|| ("token", record.expires_at, deletion_leaf("token", digest, value))))
        };
        self.purge_table(Table::Token, &tokens, &mut out, progress)?;
        log::purge_entries(&self.backend, plan, &mut out, progress)?;
        // Applied batch-item ids: bookkeeping without subject data, kept as long as statuses.
        if plan.everything {
            self.purge_applied(None)?;
        } else if plan.statuses_changed_before.is_some() {
            self.purge_applied(plan.statuses_changed_before)?;
        }

        self.purge_disclosures(plan, &mut out, progress)?;
        if plan.everything {
            self.backend.write(&mut |w| {
                log::purge_hashes(w)?;
                w.delete(Table::Meta, Key::text(SALT))
            })?;
        }
        Ok(out)
    }

    fn append_disclosures(
        &self,
        batch_id: u64,
        batch: &[(String, DisclosureRecord)],
        aggregate_deltas: &[HubAggregateRecord],
    ) -> Result<(), StoreError> {
        if batch.is_empty() && aggregate_deltas.is_empty() {
            return Ok(());
        }
        self.append_disclosures_in(batch_id, batch, aggregate_deltas)
    }

    fn disclosures(&self, subject_ref: &str, since: i64, until: i64) -> Result<SubjectDisclosures, StoreError> {
        self.disclosures_in(subject_ref, since, until)
    }

    fn hub_aggregates(&self, since: i64, until: i64) -> Result<Vec<HubAggregateRecord>, StoreError> {
        self.hub_aggregates_in(since, until)
    }

    fn add_dropped_disclosures(&self, n: u64) -> Result<(), StoreError> {
        self.add_dropped_in(n)
    }

    fn dropped_disclosures(&self) -> Result<u64, StoreError> {
        self.dropped_in()
    }
}
