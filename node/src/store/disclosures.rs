//! The disclosure log and the per-hub aggregates, over the same backend as the statuses.
//!
//! - [`Table::Disclosures`]: one `DisclosureLog` per subject and day, keyed
//!   `<subject ref>/<day>` (the pseudonymous reference, never a token; `day` = Unix days,
//!   zero-padded): who checked the subject, when, for what purpose, through which
//!   gateway, and what was disclosed. A batch of checks is appended in one write (read the
//!   touched subject-days, append, put): a day's bucket keeps that read-modify-write small
//!   however long the retention window, and a subject's last N days are N point reads.
//!   The table may be spread (Redis keeps it in shards by subject, see
//!   [`super::redis`]), so that write is atomic per shard only, and it is idempotent: each
//!   batch carries an id that every day log it reached remembers (the newest
//!   [`BATCHES_KEPT`]), and a batch written again — a retry after a write that failed
//!   part-way — is not appended to those a second time.
//! - [`Table::HubAggregates`]: one `HubAggregateRecord` per (hour, hub, hub province,
//!   purpose): distinct subjects and checks. The counts are added as deltas the writer
//!   computed (see `crate::disclosure`); nothing in them names a subject. They are added
//!   in a write of their own, after the batch's day logs: a node that dies between the two
//!   leaves that batch's checks out of the counts; a batch retried after its deltas were
//!   added (its reply lost) counts twice.
//! - A meta counter of disclosure records the node could not write (`disclosures_dropped`).
//!
//! Purges trim each subject's log to the retention window (compare-and-set per subject-day,
//! [`Backend::replace_unchanged`], so an append made meanwhile survives) and delete aggregates past the audit window; the
//! sunset deletes both tables.

use std::collections::HashMap;

use prost::Message;

use super::backend::{Backend, Key, Reader as _, Replacement, Table};
use super::{corrupt, deletion_leaf, BackedStore, PurgeOutcome, PurgePlan, StoreError};

/// One check of a subject's status by a hub.
#[derive(Clone, PartialEq, Message)]
pub struct DisclosureRecord {
    /// The hub's `<id>`, as the gateway authenticated it.
    #[prost(string, tag = "1")]
    pub hub_id: String,
    /// The province the hub is registered in (empty if none).
    #[prost(string, tag = "2")]
    pub hub_province: String,
    /// The purpose the hub declared (and is registered for).
    #[prost(string, tag = "3")]
    pub purpose: String,
    /// Node clock at the check, Unix seconds.
    #[prost(int64, tag = "4")]
    pub time: i64,
    /// The gateway identity (URI) that forwarded the check.
    #[prost(string, tag = "5")]
    pub gateway: String,
    /// What the hub was told: `attested`, `no_current_status`, `purpose_not_in_policy`,
    /// `no_signing_key`.
    #[prost(string, tag = "6")]
    pub outcome: String,
}

/// A subject's disclosure log, oldest first.
#[derive(Clone, PartialEq, Message)]
pub struct DisclosureLog {
    /// The checks.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<DisclosureRecord>,
    /// Ids of the newest batches appended (at most 8, oldest first): a batch
    /// written again is not appended twice. Random numbers, nothing about the subject.
    #[prost(fixed64, repeated, tag = "2")]
    pub batches: Vec<u64>,
}

/// Batch ids a day log remembers ([`DisclosureLog::batches`]): more than the batches that can touch one subject-day
/// while one batch is retried (the writer retries a batch before it takes the next one).
pub(super) const BATCHES_KEPT: usize = 8;

/// Distinct subjects (and checks) of one hub in one hour for one purpose.
#[derive(Clone, PartialEq, Eq, Hash, Message)]
pub struct HubAggregateRecord {
    /// Start of the hour, Unix seconds.
    #[prost(int64, tag = "1")]
    pub hour: i64,
    /// The hub's `<id>`.
    #[prost(string, tag = "2")]
    pub hub_id: String,
    /// The hub's registered province, as the gateway said (empty if none).
    #[prost(string, tag = "3")]
    pub hub_province: String,
    /// The purpose.
    #[prost(string, tag = "4")]
    pub purpose: String,
    /// Distinct subjects checked (within one node run; see `crate::disclosure`).
    #[prost(uint64, tag = "5")]
    pub distinct_subjects: u64,
    /// Checks, repeated ones included.
    #[prost(uint64, tag = "6")]
    pub checks: u64,
}

/// The key of `subject_ref`'s bucket for the day of `time` (subject references hold no `/`).
fn bucket(subject_ref: &str, time: i64) -> String {
    format!("{subject_ref}/{:06}", time.div_euclid(86_400))
}

/// The subject reference of a bucket key.
fn subject_of(key: &str) -> Result<&str, StoreError> {
    key.rsplit_once('/').map(|(s, _)| s).ok_or_else(|| corrupt("disclosure key"))
}

impl HubAggregateRecord {
    /// The record's key: hour first, so keys sort by time.
    pub(crate) fn key(&self) -> String {
        format!("{:012}/{}/{}/{}", self.hour, self.hub_id, self.hub_province, self.purpose)
    }
}

const DROPPED: &str = "disclosures_dropped";

fn u64_of(bytes: Option<Vec<u8>>) -> Result<u64, StoreError> {
    match bytes {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b.as_slice()).map(u64::from_be_bytes).map_err(|_| corrupt("dropped counter")),
    }
}

impl<B: Backend> BackedStore<B> {
    /// Appends each `(subject_ref, record)` to the subject's log — unless that log already
    /// holds batch `batch_id` — then adds the aggregate deltas (`distinct_subjects`, `checks`
    /// of each record are added to what is stored), in two writes (see the module docs).
    pub(super) fn append_disclosures_in(
        &self,
        batch_id: u64,
        batch: &[(String, DisclosureRecord)],
        deltas: &[HubAggregateRecord],
    ) -> Result<(), StoreError> {
        let mut subjects: Vec<String> = batch.iter().map(|(s, r)| bucket(s, r.time)).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let keys: Vec<Key> = subjects.iter().map(|s| Key::text(s)).collect();
        if !keys.is_empty() {
            self.backend.write(&mut |w| {
                let mut logs: HashMap<&str, DisclosureLog> = HashMap::with_capacity(subjects.len());
                for (subject, bytes) in subjects.iter().map(String::as_str).zip(w.get_many(Table::Disclosures, &keys)?)
                {
                    let log = match bytes {
                        Some(b) => DisclosureLog::decode(b.as_slice()).map_err(corrupt)?,
                        None => DisclosureLog::default(),
                    };
                    // Already appended by an earlier run of this batch.
                    if !log.batches.contains(&batch_id) {
                        logs.insert(subject, log);
                    }
                }
                for (subject, record) in batch {
                    if let Some(log) = logs.get_mut(bucket(subject, record.time).as_str()) {
                        log.entries.push(record.clone());
                    }
                }
                for (subject, log) in &mut logs {
                    log.batches.push(batch_id);
                    let over = log.batches.len().saturating_sub(BATCHES_KEPT);
                    log.batches.drain(..over);
                    w.put(Table::Disclosures, Key::text(subject), log.encode_to_vec())?;
                }
                Ok(())
            })?;
        }
        if deltas.is_empty() {
            return Ok(());
        }
        let agg_keys: Vec<Key> = deltas.iter().map(|d| Key::Text(d.key())).collect();
        self.backend.write(&mut |w| {
            for (delta, current) in deltas.iter().zip(w.get_many(Table::HubAggregates, &agg_keys)?) {
                let mut record = match current {
                    Some(b) => HubAggregateRecord::decode(b.as_slice()).map_err(corrupt)?,
                    None => HubAggregateRecord { distinct_subjects: 0, checks: 0, ..delta.clone() },
                };
                record.distinct_subjects += delta.distinct_subjects;
                record.checks += delta.checks;
                w.put(Table::HubAggregates, Key::Text(delta.key()), record.encode_to_vec())?;
            }
            Ok(())
        })
    }

    /// A subject's checks at or after `since` (and up to `until`), newest first.
    pub(super) fn disclosures_in(
        &self,
        subject_ref: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<DisclosureRecord>, StoreError> {
        let (first, last) = (since.max(0).div_euclid(86_400), until.max(0).div_euclid(86_400));
        if last < first || last - first > 400 {
            return Err(StoreError::Range(format!("disclosures from {since} to {until}: at most 400 days")));
        }
        let keys: Vec<Key> = (first..=last).map(|day| Key::Text(bucket(subject_ref, day * 86_400))).collect();
        let mut entries = Vec::new();
        for bytes in self.backend.reader()?.get_many(Table::Disclosures, &keys)?.into_iter().flatten() {
            let log = DisclosureLog::decode(bytes.as_slice()).map_err(corrupt)?;
            entries.extend(log.entries.into_iter().filter(|e| e.time >= since));
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.time));
        Ok(entries)
    }

    /// Aggregates of the hours in `[since, until)`, by hour, hub and purpose.
    pub(super) fn hub_aggregates_in(&self, since: i64, until: i64) -> Result<Vec<HubAggregateRecord>, StoreError> {
        let mut out = Vec::new();
        self.backend.scan(Table::HubAggregates, &mut |page| {
            for (_, value) in page {
                let record = HubAggregateRecord::decode(value.as_slice()).map_err(corrupt)?;
                if record.hour >= since && record.hour < until {
                    out.push(record);
                }
            }
            Ok(())
        })?;
        out.sort_by(|a, b| (a.hour, &a.hub_id, &a.purpose).cmp(&(b.hour, &b.hub_id, &b.purpose)));
        Ok(out)
    }

    /// Adds `n` to the count of disclosure records that could not be written.
    pub(super) fn add_dropped_in(&self, n: u64) -> Result<(), StoreError> {
        self.backend.write(&mut |w| {
            let held = u64_of(w.get(Table::Meta, Key::text(DROPPED))?)?;
            w.put(Table::Meta, Key::text(DROPPED), (held + n).to_be_bytes().to_vec())
        })
    }

    /// Disclosure records that could not be written, since the store was created.
    pub(super) fn dropped_in(&self) -> Result<u64, StoreError> {
        u64_of(self.backend.reader()?.get(Table::Meta, Key::text(DROPPED))?)
    }

    /// Trims every subject's disclosure log to what `plan` keeps (nothing when
    /// `everything`), one batch of subjects per atomic write, each rewritten only if it
    /// still holds what was judged; deletes aggregates past the plan's window.
    pub(super) fn purge_disclosures(
        &self,
        plan: &PurgePlan,
        out: &mut PurgeOutcome,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), StoreError> {
        if plan.everything || plan.disclosures_before.is_some() {
            let cutoff = if plan.everything { i64::MAX } else { plan.disclosures_before.unwrap_or(i64::MIN) };
            // Per subject-day: (key, bytes judged, bytes to keep (None: delete)), and the
            // deletions to note once it is trimmed.
            let mut pending: Vec<Replacement> = Vec::new();
            let mut notes: Vec<Vec<(i64, super::Hash)>> = Vec::new();
            let mut flush = |pending: &mut Vec<Replacement>,
                             notes: &mut Vec<Vec<(i64, super::Hash)>>,
                             out: &mut PurgeOutcome|
             -> Result<(), StoreError> {
                // Compare-and-set per subject-day, so an append made meanwhile survives (and,
                // unlike a transaction watching the whole table, a busy writer does not make
                // the purge start over).
                let flags = self.backend.replace_unchanged(Table::Disclosures, pending)?;
                for (deleted, flag) in notes.drain(..).zip(flags) {
                    if flag {
                        for (time, leaf) in deleted {
                            out.note("disclosure", time, leaf);
                        }
                    }
                }
                pending.clear();
                progress(out.total());
                Ok(())
            };
            self.backend.scan(Table::Disclosures, &mut |page| {
                for (key, value) in page {
                    let Key::Text(name) = key else { return Err(corrupt("disclosure key")) };
                    let log = DisclosureLog::decode(value.as_slice()).map_err(corrupt)?;
                    let (kept, gone): (Vec<_>, Vec<_>) = log.entries.into_iter().partition(|e| e.time >= cutoff);
                    if gone.is_empty() {
                        continue;
                    }
                    let commitment = super::subject_commitment(self.salt.as_slice(), subject_of(&name)?);
                    notes.push(
                        gone.iter()
                            .map(|e| (e.time, deletion_leaf("disclosure", &commitment, &e.encode_to_vec())))
                            .collect(),
                    );
                    let keep = (!kept.is_empty())
                        .then(|| DisclosureLog { entries: kept, batches: log.batches.clone() }.encode_to_vec());
                    pending.push((Key::Text(name), value, keep));
                }
                if pending.len() >= super::log::PURGE_BATCH {
                    flush(&mut pending, &mut notes, out)?;
                }
                Ok(())
            })?;
            if !pending.is_empty() {
                flush(&mut pending, &mut notes, out)?;
            }
        }
        if plan.everything || plan.hub_aggregates_before.is_some() {
            let cutoff = if plan.everything { i64::MAX } else { plan.hub_aggregates_before.unwrap_or(i64::MIN) };
            let judge = |key: &Key, value: &[u8]| {
                let Key::Text(name) = key else { return Err(corrupt("hub aggregate key")) };
                let record = HubAggregateRecord::decode(value).map_err(corrupt)?;
                Ok((record.hour < cutoff)
                    .then(|| ("hub_aggregate", record.hour, deletion_leaf("hub_aggregate", name.as_bytes(), value))))
            };
            self.purge_table(Table::HubAggregates, &judge, out, progress)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Fixture, Kind};
    use super::super::PurgePlan;
    use super::*;

    fn check(hub: &str, time: i64) -> DisclosureRecord {
        DisclosureRecord {
            hub_id: hub.into(),
            hub_province: "370000".into(),
            purpose: "transit.rail".into(),
            time,
            gateway: "spiffe://huren.gov/gateway/g".into(),
            outcome: "attested".into(),
        }
    }

    fn delta(hour: i64, hub: &str, distinct: u64, checks: u64) -> HubAggregateRecord {
        HubAggregateRecord {
            hour,
            hub_id: hub.into(),
            hub_province: "370000".into(),
            purpose: "transit.rail".into(),
            distinct_subjects: distinct,
            checks,
        }
    }

    fn logs_are_kept_by_subject_and_purged_by_age(fixture: &Fixture) {
        let store = fixture.open();
        let batch = vec![
            ("s-1".to_owned(), check("h1", 100)),
            ("s-2".to_owned(), check("h1", 150)),
            ("s-1".to_owned(), check("h2", 200)),
        ];
        store.append_disclosures(1, &batch, &[delta(0, "h1", 2, 2), delta(0, "h2", 1, 1)]).unwrap();
        store.append_disclosures(2, &[("s-1".to_owned(), check("h1", 300))], &[delta(0, "h1", 0, 1)]).unwrap();
        let s1: Vec<_> = store.disclosures("s-1", 0, 1000).unwrap().into_iter().map(|d| (d.hub_id, d.time)).collect();
        assert_eq!(s1, vec![("h1".to_owned(), 300), ("h2".to_owned(), 200), ("h1".to_owned(), 100)]);
        assert_eq!(store.disclosures("s-1", 250, 1000).unwrap().len(), 1);
        assert!(store.disclosures("s-3", 0, 1000).unwrap().is_empty());
        // Another day's bucket.
        store.append_disclosures(3, &[("s-1".to_owned(), check("h3", 86_400 + 5))], &[]).unwrap();
        assert_eq!(store.disclosures("s-1", 0, 86_400 + 10).unwrap()[0].hub_id, "h3");
        assert_eq!(store.disclosures("s-1", 0, 1000).unwrap().len(), 3);
        let aggs: Vec<_> = store
            .hub_aggregates(0, 3600)
            .unwrap()
            .into_iter()
            .map(|a| (a.hub_id, a.distinct_subjects, a.checks))
            .collect();
        assert_eq!(aggs, vec![("h1".to_owned(), 2, 3), ("h2".to_owned(), 1, 1)]);
        assert!(store.hub_aggregates(3600, 7200).unwrap().is_empty());

        // Retention: checks before 160 go; s-2's log goes whole, s-1 keeps two.
        let plan = PurgePlan { disclosures_before: Some(160), ..Default::default() };
        let out = store.purge(&plan, &mut |_| {}).unwrap();
        assert_eq!(out.counts.get("disclosure"), Some(&2));
        assert_eq!(out.range, Some((100, 150)));
        assert_eq!(store.disclosures("s-1", 0, 100_000).unwrap().len(), 3);
        assert!(store.disclosures("s-2", 0, 1000).unwrap().is_empty());
        // s-1's two days.
        assert_eq!(store.counts().unwrap().get("disclosure_log"), Some(&2));

        // Sunset: nothing remains, and the counts say what went.
        store.add_dropped_disclosures(3).unwrap();
        assert_eq!(store.dropped_disclosures().unwrap(), 3);
        let out = store.purge(&PurgePlan { everything: true, ..Default::default() }, &mut |_| {}).unwrap();
        assert_eq!((out.counts.get("disclosure"), out.counts.get("hub_aggregate")), (Some(&3), Some(&2)));
        let counts = store.counts().unwrap();
        assert_eq!((counts["disclosure_log"], counts["hub_aggregate"]), (0, 0));
    }

    /// A batch written again under its id — whole, or after a write that reached only some
    /// subjects (a spread table's earlier shards) — lands once in each subject's log.
    fn a_batch_written_again_is_appended_once(fixture: &Fixture) {
        let store = fixture.open();
        let batch: Vec<(String, DisclosureRecord)> =
            (0..60).map(|i| (format!("subject-{i:02}"), check("h1", 1000 + i))).collect();
        store.append_disclosures(7, &batch[..25], &[]).unwrap();
        store.append_disclosures(7, &batch, &[delta(0, "h1", 60, 60)]).unwrap();
        store.append_disclosures(7, &batch, &[]).unwrap();
        for (subject, record) in &batch {
            assert_eq!(store.disclosures(subject, 0, 10_000).unwrap(), std::slice::from_ref(record), "{subject}");
        }
        if let Some(places) = fixture.places_holding("disclosures") {
            assert!(places > 1, "the disclosure logs sit in {places} place(s)");
        }
        // The same checks in another batch are other checks.
        store.append_disclosures(8, &batch[..1], &[]).unwrap();
        assert_eq!(store.disclosures("subject-00", 0, 10_000).unwrap().len(), 2);
        // A day log remembers the newest batches only.
        for id in 100..100 + BATCHES_KEPT as u64 {
            store.append_disclosures(id, &[("subject-01".to_owned(), check("h2", 2000 + id as i64))], &[]).unwrap();
        }
        store.append_disclosures(7, &batch[1..2], &[]).unwrap();
        assert_eq!(store.disclosures("subject-01", 0, 10_000).unwrap().len(), 2 + BATCHES_KEPT);
        assert_eq!(store.counts().unwrap()["disclosure_log"], 60);
        let out = store.purge(&PurgePlan { everything: true, ..Default::default() }, &mut |_| {}).unwrap();
        assert_eq!(out.counts.get("disclosure"), Some(&(60 + 1 + 1 + BATCHES_KEPT as u64)));
        assert_eq!(store.counts().unwrap()["disclosure_log"], 0);
    }

    #[test]
    fn on_redb_logs_are_kept_by_subject_and_purged_by_age() {
        logs_are_kept_by_subject_and_purged_by_age(&Fixture::new(Kind::Redb));
    }

    #[test]
    fn on_redis_logs_are_kept_by_subject_and_purged_by_age() {
        logs_are_kept_by_subject_and_purged_by_age(&Fixture::new(Kind::Redis));
    }

    #[test]
    fn on_redis_cluster_logs_are_kept_by_subject_and_purged_by_age() {
        logs_are_kept_by_subject_and_purged_by_age(&Fixture::new(Kind::RedisCluster));
    }

    #[test]
    fn on_redb_a_batch_written_again_is_appended_once() {
        a_batch_written_again_is_appended_once(&Fixture::new(Kind::Redb));
    }

    #[test]
    fn on_redis_a_batch_written_again_is_appended_once() {
        a_batch_written_again_is_appended_once(&Fixture::new(Kind::Redis));
    }

    #[test]
    fn on_redis_cluster_a_batch_written_again_is_appended_once() {
        a_batch_written_again_is_appended_once(&Fixture::new(Kind::RedisCluster));
    }
}
