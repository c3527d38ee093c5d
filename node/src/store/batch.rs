//! Batched publishing, written once over any [`Backend`]: many status changes decided and
//! written in one atomic, durable transaction together with their transparency-log entries,
//! and idempotent through item ids; many token digests in one write (on Redis, one
//! transaction per shard of the token table).
//!
//! Idempotency: each item carries a caller-chosen id. [`Table::Applied`] maps a salted hash
//! of (caller, item id) to what the item got — version, log index, a salted fingerprint of
//! the change, time — written in the same transaction as the change. An item whose id is
//! found there is not decided again: it is [`ItemApplied::AlreadyApplied`] when the change is
//! the same, [`ItemApplied::IdReused`] when it differs. Nothing about a subject is stored
//! in the clear: both hashes use the store's commitment salt.
//!
//! Applied-item records are bookkeeping, not subject records: a retention purge drops those
//! older than the status retention window ([`purge_applied`]), the sunset drops all of them.

use std::collections::HashMap;

use prost::Message;
use sha2::{Digest, Sha256};

use super::backend::{Backend, Key, Reader as _, Table};
use super::{corrupt, log, log_entry, BackedStore, StatusRecord, StoreError, TokenRecord};

/// What was recorded when a batch item was applied.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct AppliedItem {
    /// The subject's version after the change.
    #[prost(uint64, tag = "1")]
    pub(crate) version: u64,
    /// The change's log index.
    #[prost(uint64, tag = "2")]
    pub(crate) index: u64,
    /// Salted SHA-256 of the change as sent.
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) fingerprint: Vec<u8>,
    /// Unix seconds when it was applied.
    #[prost(int64, tag = "4")]
    pub(crate) time: i64,
}

/// One status change of a batch, as the store sees it.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// The subject the change is for.
    pub subject_ref: String,
    /// The caller's id for this change.
    pub item_id: String,
    /// The change as sent (its fingerprint tells a retry from a reused id).
    pub content: Vec<u8>,
}

/// What became of one batch item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemApplied {
    /// Written and logged now.
    Accepted {
        /// The subject's version after it.
        version: u64,
        /// Its log index.
        index: u64,
    },
    /// Applied by an earlier call (the same change under the same id): nothing written.
    AlreadyApplied {
        /// The subject's version it got then.
        version: u64,
        /// Its log index.
        index: u64,
    },
    /// The id was applied earlier for a different change: nothing written.
    IdReused,
    /// The decision refused it: nothing written.
    Refused,
    /// Not written because another item was refused and the batch was all-or-nothing.
    NotApplied,
}

/// The outcome of a batch: one entry per item, and the log's size after it.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// Per item, in order.
    pub items: Vec<ItemApplied>,
    /// The log's size once the batch committed.
    pub tree_size: u64,
}

/// Decides item `i` given the subject's status inside the transaction: the record to
/// store, or `None` to refuse it (the caller keeps the reason). May be called again for
/// the same item when the backend runs the transaction again.
pub type Decide<'a> = dyn FnMut(usize, Option<&StatusRecord>) -> Option<StatusRecord> + 'a;

/// Most items in one batch (`StatusAdmin.PublishStatuses` refuses a larger one).
pub const MAX_BATCH_ITEMS: usize = 5000;

fn item_key(salt: &[u8], scope: &str, item_id: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"huren/batch-item/v1\0");
    h.update(salt);
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(item_id.as_bytes());
    h.finalize().to_vec()
}

fn fingerprint(salt: &[u8], content: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"huren/batch-content/v1\0");
    h.update(salt);
    h.update(content);
    h.finalize().to_vec()
}

impl<B: Backend> BackedStore<B> {
    /// Applies `items` for the caller `scope` in one transaction (see the module docs).
    /// Subjects must be distinct (the service refuses duplicates before). With
    /// `all_or_nothing`, one refused item (or reused id) leaves the batch unwritten.
    pub(crate) fn publish_in(
        &self,
        scope: &str,
        items: &[BatchItem],
        all_or_nothing: bool,
        now: i64,
        decide: &mut Decide<'_>,
    ) -> Result<BatchOutcome, StoreError> {
        let salt = self.salt.as_slice();
        let ids: Vec<Key> = items.iter().map(|i| Key::Bytes(item_key(salt, scope, &i.item_id))).collect();
        let prints: Vec<Vec<u8>> = items.iter().map(|i| fingerprint(salt, &i.content)).collect();
        let subjects: Vec<Key> = items.iter().map(|i| Key::text(&i.subject_ref)).collect();
        let commitments: Vec<[u8; 32]> =
            items.iter().map(|i| super::NodeStore::commitment(self, &i.subject_ref)).collect();
        // What the write reads first, read ahead (see `Backend::write_prefetched`).
        let prefetch = [(Table::Applied, ids.as_slice()), (Table::Status, subjects.as_slice())];
        self.backend.write_prefetched(&prefetch, &mut |w| {
            let mut out = vec![ItemApplied::Refused; items.len()];
            let mut open = Vec::with_capacity(items.len());
            for (at, applied) in w.get_many(Table::Applied, &ids)?.into_iter().enumerate() {
                match applied {
                    Some(bytes) => {
                        let applied = AppliedItem::decode(bytes.as_slice()).map_err(corrupt)?;
                        out[at] = if applied.fingerprint == prints[at] {
                            ItemApplied::AlreadyApplied { version: applied.version, index: applied.index }
                        } else {
                            ItemApplied::IdReused
                        };
                    }
                    None => open.push(at),
                }
            }
            let keys: Vec<Key> = open.iter().map(|at| subjects[*at].clone()).collect();
            let mut records = Vec::with_capacity(open.len());
            let mut failed = out.contains(&ItemApplied::IdReused);
            for (at, current) in open.iter().copied().zip(w.get_many(Table::Status, &keys)?) {
                let current = current.map(|b| StatusRecord::decode(b.as_slice()).map_err(corrupt)).transpose()?;
                match decide(at, current.as_ref()) {
                    Some(record) => {
                        let version = current.map_or(0, |c| c.version) + 1;
                        records.push((at, StatusRecord { version, ..record }));
                    }
                    None => failed = true,
                }
            }
            if all_or_nothing && failed {
                for (at, _) in &records {
                    out[*at] = ItemApplied::NotApplied;
                }
                return Ok(BatchOutcome { items: out, tree_size: log::size_in(w)? });
            }
            let entries = records.iter().map(|(at, r)| log_entry(commitments[*at], r)).collect();
            let first = log::append(w, entries)?;
            for (n, (at, record)) in records.iter().enumerate() {
                let index = first + n as u64;
                w.put(Table::Status, subjects[*at].clone(), record.encode_to_vec())?;
                let applied =
                    AppliedItem { version: record.version, index, fingerprint: prints[*at].clone(), time: now };
                w.put(Table::Applied, ids[*at].clone(), applied.encode_to_vec())?;
                out[*at] = ItemApplied::Accepted { version: record.version, index };
            }
            Ok(BatchOutcome { items: out, tree_size: first + records.len() as u64 })
        })
    }

    /// Records every token digest in one write: a spread token table (Redis) commits it shard
    /// by shard, and writing a digest again writes the same record.
    pub(crate) fn put_tokens_in(&self, tokens: &[([u8; 32], TokenRecord)]) -> Result<(), StoreError> {
        let values: Vec<(Key, Vec<u8>)> =
            tokens.iter().map(|(d, r)| (Key::Bytes(d.to_vec()), r.encode_to_vec())).collect();
        self.backend.write(&mut |w| {
            for (key, value) in &values {
                w.put(Table::Token, key.clone(), value.clone())?;
            }
            Ok(())
        })
    }

    /// Drops applied-item records older than `before` (all of them with `None`).
    pub(crate) fn purge_applied(&self, before: Option<i64>) -> Result<u64, StoreError> {
        if before.is_none() {
            let n = self.backend.reader()?.count(Table::Applied)?;
            self.backend.write(&mut |w| w.clear(Table::Applied))?;
            return Ok(n);
        }
        let mut stale: Vec<(Key, Vec<u8>)> = Vec::new();
        let mut deleted = 0;
        let mut flush = |stale: &mut Vec<(Key, Vec<u8>)>| -> Result<(), StoreError> {
            deleted += self.backend.delete_unchanged(Table::Applied, stale)?.into_iter().filter(|d| *d).count() as u64;
            stale.clear();
            Ok(())
        };
        self.backend.scan(Table::Applied, &mut |page| {
            for (key, value) in page {
                let applied = AppliedItem::decode(value.as_slice()).map_err(corrupt)?;
                if before.is_some_and(|t| applied.time < t) {
                    stale.push((key, value));
                }
            }
            if stale.len() >= log::PURGE_BATCH {
                flush(&mut stale)?;
            }
            Ok(())
        })?;
        if !stale.is_empty() {
            flush(&mut stale)?;
        }
        Ok(deleted)
    }
}

/// Subjects named more than once in `subjects`, with how often.
pub(crate) fn repeated<'a>(subjects: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for s in subjects {
        *seen.entry(s).or_default() += 1;
    }
    seen.retain(|_, n| *n > 1);
    seen
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Fixture, Kind};
    use super::super::{NodeStore, PurgePlan};
    use super::*;

    fn item(subject: &str, id: &str, content: &[u8]) -> BatchItem {
        BatchItem { subject_ref: subject.into(), item_id: id.into(), content: content.to_vec() }
    }

    fn record(status: i32) -> StatusRecord {
        StatusRecord {
            status,
            authority: "spiffe://huren.gov/province/340000/admin".into(),
            valid_until: 2_000_000_000,
            updated_at: 1_700_000_000,
            ..Default::default()
        }
    }

    /// Accepts every subject except those starting with "bad".
    fn decide_all(items: &[BatchItem]) -> impl FnMut(usize, Option<&StatusRecord>) -> Option<StatusRecord> + '_ {
        move |i, _| (!items[i].subject_ref.starts_with("bad")).then(|| record(1))
    }

    fn publish(store: &dyn NodeStore, scope: &str, items: &[BatchItem], all: bool) -> BatchOutcome {
        store.publish_statuses(scope, items, all, 1_700_000_000, &mut decide_all(items)).unwrap()
    }

    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod on_redb { $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Kind::Redb)) })* }
            mod on_fjall { $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Kind::Fjall)) })* }
            mod on_redis { $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Kind::Redis)) })* }
            mod on_redis_cluster {
                $(#[test] fn $name() { super::$name(&super::Fixture::new(super::Kind::RedisCluster)) })*
            }
        };
    }

    on_both_backends!(
        a_batch_applies_its_accepted_items_once_with_their_log_entries,
        all_or_nothing_writes_nothing_when_an_item_is_refused,
        the_sunset_drops_applied_ids_and_retention_drops_old_ones,
        concurrent_batches_over_the_same_subjects_count_every_change_once,
    );

    /// Writers publishing at once over the same subjects (a backend may read a batch's
    /// statuses ahead, while another batch commits): every accepted change bumps its
    /// subject's version by one and is logged once, none is decided on a stale status.
    fn concurrent_batches_over_the_same_subjects_count_every_change_once(fixture: &Fixture) {
        const WRITERS: usize = 4;
        const BATCHES: usize = 10;
        const SUBJECTS: usize = 100;
        let store: std::sync::Arc<dyn NodeStore> = fixture.open().into();
        let accepted: usize = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..WRITERS)
                .map(|t| {
                    let store = store.clone();
                    scope.spawn(move || {
                        let mut accepted = 0;
                        for b in 0..BATCHES {
                            let items: Vec<BatchItem> = (0..SUBJECTS / 2)
                                .map(|i| {
                                    let subject = format!("s-{}", (t * 7 + b * 13 + i) % SUBJECTS);
                                    item(&subject, &format!("w{t}:b{b}:{i}"), b"a")
                                })
                                .collect();
                            let out = publish(&*store, "admin", &items, false);
                            accepted += out.items.iter().filter(|o| matches!(o, ItemApplied::Accepted { .. })).count();
                        }
                        accepted
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).sum()
        });
        assert_eq!(accepted, WRITERS * BATCHES * SUBJECTS / 2);
        assert_eq!(store.log_head().unwrap().0, accepted as u64);
        let mut versions = 0;
        for s in 0..SUBJECTS {
            let subject = format!("s-{s}");
            let version = store.status(&subject).unwrap().map_or(0, |r| r.version);
            assert_eq!(store.subject_log(&store.commitment(&subject)).unwrap().len() as u64, version, "{subject}");
            versions += version;
        }
        assert_eq!(versions, accepted as u64, "a change was decided on a stale status");
    }

    fn a_batch_applies_its_accepted_items_once_with_their_log_entries(fixture: &Fixture) {
        let store = fixture.open();
        let items = [item("s-1", "f:1", b"a"), item("bad-2", "f:2", b"b"), item("s-3", "f:3", b"c")];
        let first = publish(&*store, "admin", &items, false);
        assert_eq!(
            first.items,
            vec![
                ItemApplied::Accepted { version: 1, index: 0 },
                ItemApplied::Refused,
                ItemApplied::Accepted { version: 1, index: 1 }
            ]
        );
        assert_eq!((first.tree_size, store.log_head().unwrap().0), (2, 2));
        assert!(store.status("bad-2").unwrap().is_none());
        // A retry (a resumed import) writes nothing and gets what the first call got.
        let again = publish(&*store, "admin", &items, false);
        assert_eq!(
            again.items,
            vec![
                ItemApplied::AlreadyApplied { version: 1, index: 0 },
                ItemApplied::Refused,
                ItemApplied::AlreadyApplied { version: 1, index: 1 }
            ]
        );
        assert_eq!(store.log_head().unwrap().0, 2);
        assert_eq!(store.status("s-1").unwrap().unwrap().version, 1);
        // The same id for another change is refused; another caller's ids are its own.
        assert_eq!(
            publish(&*store, "admin", &[item("s-1", "f:1", b"other")], false).items,
            vec![ItemApplied::IdReused]
        );
        assert_eq!(
            publish(&*store, "authority", &[item("s-1", "f:1", b"a")], false).items,
            vec![ItemApplied::Accepted { version: 2, index: 2 }]
        );
        // Each entry logs its subject once.
        for (subject, n) in [("s-1", 2), ("s-3", 1), ("bad-2", 0)] {
            assert_eq!(store.subject_log(&store.commitment(subject)).unwrap().len(), n, "{subject}");
        }
    }

    fn all_or_nothing_writes_nothing_when_an_item_is_refused(fixture: &Fixture) {
        let store = fixture.open();
        let items = [item("s-1", "f:1", b"a"), item("bad-2", "f:2", b"b")];
        let out = publish(&*store, "admin", &items, true);
        assert_eq!(out.items, vec![ItemApplied::NotApplied, ItemApplied::Refused]);
        assert_eq!((out.tree_size, store.log_head().unwrap().0), (0, 0));
        assert!(store.status("s-1").unwrap().is_none());
        // Nothing was recorded as applied: the fixed batch applies.
        let out = publish(&*store, "admin", &items[..1], true);
        assert_eq!(out.items, vec![ItemApplied::Accepted { version: 1, index: 0 }]);
    }

    fn the_sunset_drops_applied_ids_and_retention_drops_old_ones(fixture: &Fixture) {
        let store = fixture.open();
        let items = [item("s-1", "f:1", b"a")];
        store.publish_statuses("admin", &items, false, 100, &mut decide_all(&items)).unwrap();
        let later = [item("s-2", "f:2", b"a")];
        store.publish_statuses("admin", &later, false, 200, &mut decide_all(&later)).unwrap();
        store.purge(&PurgePlan { statuses_changed_before: Some(150), ..Default::default() }, &mut |_| {}).unwrap();
        // The old id is gone (its change would apply again), the newer one stays.
        assert!(matches!(publish(&*store, "admin", &items, false).items[0], ItemApplied::Accepted { .. }));
        assert!(matches!(publish(&*store, "admin", &later, false).items[0], ItemApplied::AlreadyApplied { .. }));
        store.purge(&PurgePlan { everything: true, ..Default::default() }, &mut |_| {}).unwrap();
        assert!(matches!(publish(&*store, "admin", &later, false).items[0], ItemApplied::Accepted { .. }));
    }
}
