//! What the node store needs of the place that keeps its data: a handful of tables of keyed
//! byte values, a set of log indices per subject commitment, snapshot reads, atomic
//! read-modify-write transactions, paged scans and compare-and-delete (or -replace). The status tables and the
//! one transparency log ([`super::log`]) are written once over this; [`super::redb`] (an
//! embedded file), [`super::fjall`] (an embedded LSM database) and [`super::redis`] (keys
//! under a prefix) implement it.

use huren_translog::NodeId;

use super::StoreError;

/// The tables a node store keeps. Each takes one kind of [`Key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Pseudonymous subject reference ([`Key::Text`]) → encoded `StatusRecord`.
    Status,
    /// SHA-256 of a token ([`Key::Bytes`]) → encoded `TokenRecord`. Spread (see
    /// [`Table::spread`]).
    Token,
    /// Log index ([`Key::Index`]) → encoded `LogEntry`.
    LogEntries,
    /// Log index ([`Key::Index`]) → RFC 9162 leaf hash.
    LogHashes,
    /// Complete subtree of the log above the leaves ([`Key::Node`], level ≥ 1) → its hash.
    LogNodes,
    /// Subject commitment → log indices: a set, read and written only through
    /// [`Reader::subject_log`] and [`Writer::index_subject`] / [`Writer::unindex_subject`].
    SubjectLog,
    /// Name ([`Key::Text`]) → bytes: the commitment salt, the log's frontier and the other
    /// node metadata (see [`super::log`]).
    Meta,
    /// Salted hash of (caller, item id) ([`Key::Bytes`]) → encoded `AppliedItem`: which
    /// batch items were applied, so a retried batch writes nothing twice (see
    /// [`super::batch`]).
    Applied,
    /// `<subject ref>/<day>` ([`Key::Text`]) → encoded `DisclosureLog`: who checked the
    /// subject that day (never keyed by a token). Spread (see [`Table::spread`]), by the
    /// subject reference (the part before the last `/`).
    Disclosures,
    /// `<hour>/<hub>/<province>/<purpose>` ([`Key::Text`]) → encoded `HubAggregateRecord`:
    /// distinct subjects per hub, hour and purpose, without subject identity.
    HubAggregates,
}

impl Table {
    /// Whether a backend may spread the table over several places that one transaction
    /// cannot span (Redis: shards on the masters of a cluster). A write touches spread
    /// tables or the others, never both; its part in each place is atomic, the whole may not
    /// be, so a write of a spread table must be safe to run again over its own partial result.
    pub fn spread(self) -> bool {
        matches!(self, Table::Token | Table::Disclosures)
    }
}

/// A key in one [`Table`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Text(String),
    Bytes(Vec<u8>),
    Index(u64),
    Node(NodeId),
}

impl Key {
    /// A text key (a subject reference or a meta name).
    pub fn text(name: &str) -> Self {
        Key::Text(name.to_owned())
    }
}

/// Records of a table, key and value, as a scan hands them out.
pub(crate) type Records = Vec<(Key, Vec<u8>)>;

/// A record to replace if unchanged: its key, the value judged, the value to put (`None`:
/// delete it).
pub(crate) type Replacement = (Key, Vec<u8>, Option<Vec<u8>>);

/// What a scan hands each page of records to.
pub(crate) type Page<'a> = dyn FnMut(Records) -> Result<(), StoreError> + 'a;

/// A key of the wrong kind for its table: a bug in the store, not in the data.
pub(crate) fn wrong_key(table: Table, key: &Key) -> StoreError {
    StoreError::Backend(format!("{key:?} is not a key of table {table:?}"))
}

/// Reads from one consistent view where the backend has one (a redb read transaction), or
/// call by call (Redis).
pub trait Reader {
    /// The values of `keys` in `table`, in order, `None` where absent.
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    fn get(&mut self, table: Table, key: Key) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(table, std::slice::from_ref(&key))?.pop().flatten())
    }

    /// The log indices recorded for a subject commitment, ascending.
    fn subject_log(&mut self, commitment: &[u8]) -> Result<Vec<u64>, StoreError>;

    /// How many records `table` holds (for [`Table::SubjectLog`]: index entries).
    fn count(&mut self, table: Table) -> Result<u64, StoreError>;
}

/// The inside of one atomic write: reads see the transaction's own writes.
pub trait Writer {
    /// The values of `keys` in `table`, in order, as this transaction sees them. On Redis the
    /// table is watched from here on: another writer changing it makes the transaction run
    /// again (see [`Backend::write`]).
    fn get_many(&mut self, table: Table, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    fn get(&mut self, table: Table, key: Key) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(table, std::slice::from_ref(&key))?.pop().flatten())
    }

    fn put(&mut self, table: Table, key: Key, value: Vec<u8>) -> Result<(), StoreError>;

    fn delete(&mut self, table: Table, key: Key) -> Result<(), StoreError>;

    /// Records log index `index` under a subject commitment. Called once per index, when its
    /// entry is appended (a backend may count the record new without a read).
    fn index_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError>;

    fn unindex_subject(&mut self, commitment: &[u8], index: u64) -> Result<(), StoreError>;

    /// Deletes every record of `table`.
    fn clear(&mut self, table: Table) -> Result<(), StoreError>;
}

/// Where a node store keeps its tables. Every method blocks.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    type Reader<'a>: Reader
    where
        Self: 'a;

    fn reader(&self) -> Result<Self::Reader<'_>, StoreError>;

    /// Runs `f` and commits what it wrote, atomically and durably (as durably as the backend
    /// is configured to be). When another writer changed a table `f` read meanwhile (Redis),
    /// nothing is written and `f` runs again, so `f` must act only through the writer. A
    /// write of [spread](Table::spread) tables is atomic per place only: a failure may leave
    /// part of it written, and `f` may run again over that part.
    fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Writer) -> Result<T, StoreError>) -> Result<T, StoreError>;

    /// [`Backend::write`], with the values of `prefetch` read ahead where the backend can do
    /// that without holding up other writes (fjall: from a snapshot, before the write waits
    /// for its turn; a value some write committed meanwhile changed is dropped and read
    /// again in the write). `f`'s reads of those keys see exactly what they would have seen.
    /// The default reads nothing ahead.
    fn write_prefetched<T>(
        &self,
        prefetch: &[(Table, &[Key])],
        f: &mut dyn FnMut(&mut dyn Writer) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _ = prefetch;
        self.write(f)
    }

    /// Hands every record of `table` ([`Table::Status`], [`Table::Token`], [`Table::Applied`],
    /// [`Table::Disclosures`] or [`Table::HubAggregates`]) to `page`, a page at
    /// a time. `page` may delete records meanwhile ([`Backend::delete_unchanged`]).
    fn scan(&self, table: Table, page: &mut Page<'_>) -> Result<(), StoreError>;

    /// Deletes each record of `table` that still holds the value given, atomically; one flag per
    /// record, whether it was deleted (a record changed since it was read stays).
    /// The default reads and deletes in one [`Backend::write`].
    fn delete_unchanged(&self, table: Table, records: &[(Key, Vec<u8>)]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<Key> = records.iter().map(|(k, _)| k.clone()).collect();
        self.write(&mut |w| {
            let mut flags = Vec::with_capacity(records.len());
            for ((key, value), now) in records.iter().zip(w.get_many(table, &keys)?) {
                let unchanged = now.as_deref() == Some(value.as_slice());
                if unchanged {
                    w.delete(table, key.clone())?;
                }
                flags.push(unchanged);
            }
            Ok(flags)
        })
    }

    /// Replaces each record of `table` that still holds the value judged with the value given
    /// (deletes it for `None`); one flag per record, whether it was replaced (a record changed
    /// since it was read stays). Atomic per record at least; the default is one
    /// [`Backend::write`], which a backend spreading `table` overrides (a spread write that
    /// runs again would find its own earlier part changed, and not count it).
    fn replace_unchanged(&self, table: Table, records: &[Replacement]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<Key> = records.iter().map(|(k, ..)| k.clone()).collect();
        self.write(&mut |w| {
            let mut flags = Vec::with_capacity(records.len());
            for ((key, judged, new), now) in records.iter().zip(w.get_many(table, &keys)?) {
                let unchanged = now.as_deref() == Some(judged.as_slice());
                if unchanged {
                    match new {
                        Some(value) => w.put(table, key.clone(), value.clone())?,
                        None => w.delete(table, key.clone())?,
                    }
                }
                flags.push(unchanged);
            }
            Ok(flags)
        })
    }

    /// Makes sure no byte of a deleted record stays in what the backend keeps.
    fn rewrite(&self) -> Result<(), StoreError>;
}
