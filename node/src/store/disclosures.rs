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
    /// `no_signing_key`, or [`SERVED_FROM_CACHE`].
    #[prost(string, tag = "6")]
    pub outcome: String,
    /// Checks this entry stands for (0 is read as 1): repeated checks by the same hub, for
    /// the same purpose, through the same gateway, with the same outcome, each within
    /// [`COALESCE_GAP_SECONDS`] of the previous one, are one entry.
    #[prost(uint64, tag = "7")]
    pub count: u64,
    /// The last of those checks, Unix seconds (0: the same as `time`).
    #[prost(int64, tag = "8")]
    pub last_time: i64,
}

impl DisclosureRecord {
    /// How many checks the entry stands for.
    pub fn checks(&self) -> u64 {
        self.count.max(1)
    }

    /// When the last of its checks was.
    pub fn last(&self) -> i64 {
        self.last_time.max(self.time)
    }

    fn same_check(&self, other: &DisclosureRecord) -> bool {
        (&self.hub_id, &self.hub_province, &self.purpose, &self.gateway, &self.outcome)
            == (&other.hub_id, &other.hub_province, &other.purpose, &other.gateway, &other.outcome)
    }
}

/// Repeated checks closer together than this join one entry.
pub const COALESCE_GAP_SECONDS: i64 = 60;
/// An entry spans at most this long (so a purge by age is never more than this late).
pub const COALESCE_SPAN_SECONDS: i64 = 3600;
/// Entries a subject's day holds at most; checks beyond it that join no entry are only
/// counted (`DisclosureLog::unitemized`). A hub checking one person every few seconds all
/// day makes 24 entries; this bound only stops a flood from growing one record without end.
pub const MAX_ENTRIES_PER_DAY: usize = 512;
/// The outcome of a check the gateway answered from its cache while the node could not
/// answer (stale-if-error), handed in later with `RecordDisclosures`: the hub was shown a
/// status this node had signed earlier. Its `time` is the gateway's when it served it.
pub const SERVED_FROM_CACHE: &str = "served_from_cache";

/// A subject's disclosure log, oldest first.
#[derive(Clone, PartialEq, Message)]
pub struct DisclosureLog {
    /// The checks.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<DisclosureRecord>,
    /// Checks that day beyond [`MAX_ENTRIES_PER_DAY`] entries that joined no entry.
    #[prost(uint64, tag = "2")]
    pub unitemized: u64,
    /// Ids of the newest batches appended (at most 8, oldest first): a batch
    /// written again is not appended twice. Random numbers, nothing about the subject.
    #[prost(fixed64, repeated, tag = "3")]
    pub batches: Vec<u64>,
}

impl DisclosureLog {
    /// Adds one check: it joins the newest entry of the same hub, purpose, gateway and
    /// outcome when it came within [`COALESCE_GAP_SECONDS`] of that entry's last check (and
    /// the entry spans less than [`COALESCE_SPAN_SECONDS`]), otherwise it is a new entry,
    /// or only counted once the day holds [`MAX_ENTRIES_PER_DAY`] entries. The bucket a
    /// write reads and rewrites thus stays small however often one subject is checked.
    pub fn add(&mut self, record: &DisclosureRecord) {
        let joins = |e: &DisclosureRecord| {
            e.same_check(record)
                && record.time >= e.time
                && record.time - e.last() <= COALESCE_GAP_SECONDS
                && record.time - e.time < COALESCE_SPAN_SECONDS
        };
        if let Some(entry) = self.entries.iter_mut().rev().find(|e| e.same_check(record)).filter(|e| joins(e)) {
            entry.count = entry.checks() + record.checks();
            entry.last_time = entry.last().max(record.last());
        } else if self.entries.len() < MAX_ENTRIES_PER_DAY {
            self.entries.push(record.clone());
        } else {
            self.unitemized += record.checks();
        }
    }
}

/// A subject's checks over a range of days.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectDisclosures {
    /// The itemised checks, newest first.
    pub entries: Vec<DisclosureRecord>,
    /// Checks that were only counted (a day past [`MAX_ENTRIES_PER_DAY`] entries).
    pub unitemized: u64,
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
                        log.add(record);
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
    ) -> Result<SubjectDisclosures, StoreError> {
        let (first, last) = (since.max(0).div_euclid(86_400), until.max(0).div_euclid(86_400));
        if last < first || last - first > 400 {
            return Err(StoreError::Range(format!("disclosures from {since} to {until}: at most 400 days")));
        }
        let keys: Vec<Key> = (first..=last).map(|day| Key::Text(bucket(subject_ref, day * 86_400))).collect();
        let mut out = SubjectDisclosures::default();
        for bytes in self.backend.reader()?.get_many(Table::Disclosures, &keys)?.into_iter().flatten() {
            let log = DisclosureLog::decode(bytes.as_slice()).map_err(corrupt)?;
            out.entries.extend(log.entries.into_iter().filter(|e| e.last() >= since));
            out.unitemized += log.unitemized;
        }
        out.entries.sort_by_key(|e| std::cmp::Reverse(e.time));
        Ok(out)
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
                    let keep = (!kept.is_empty()).then(|| {
                        DisclosureLog { entries: kept, unitemized: log.unitemized, batches: log.batches.clone() }
                            .encode_to_vec()
                    });
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
        super::super::tests::check_record(hub, time)
    }

    fn summary(log: &DisclosureLog) -> Vec<(&str, i64, i64, u64)> {
        log.entries.iter().map(|e| (e.hub_id.as_str(), e.time, e.last(), e.checks())).collect()
    }

    #[test]
    fn repeated_checks_join_one_entry_and_a_day_stays_bounded() {
        let mut log = DisclosureLog::default();
        // Every 30 s for 20 minutes: one entry.
        for t in (0..1200).step_by(30) {
            log.add(&check("h1", 1000 + t));
        }
        assert_eq!(summary(&log), vec![("h1", 1000, 2170, 40)]);
        // Another hub in between is its own entry and does not break h1's run.
        log.add(&check("h2", 2180));
        log.add(&check("h1", 2190));
        assert_eq!(summary(&log), vec![("h1", 1000, 2190, 41), ("h2", 2180, 2180, 1)]);
        // A gap longer than a minute starts a new entry, as does another outcome.
        log.add(&check("h1", 2190 + COALESCE_GAP_SECONDS + 1));
        let refused = DisclosureRecord { outcome: "no_current_status".into(), ..check("h1", 2260) };
        log.add(&refused);
        assert_eq!(log.entries.len(), 4);
        // An entry spans at most an hour however steady the checks.
        let mut steady = DisclosureLog::default();
        for t in (0..3 * 3600).step_by(20) {
            steady.add(&check("h1", t));
        }
        assert_eq!(steady.entries.len(), 3);
        assert!(steady.entries.iter().all(|e| e.last() - e.time < COALESCE_SPAN_SECONDS));
        assert_eq!(steady.entries.iter().map(DisclosureRecord::checks).sum::<u64>(), 3 * 180);
        // Past the bound, checks that join nothing are counted, not itemised.
        let mut flood = DisclosureLog::default();
        for n in 0..(MAX_ENTRIES_PER_DAY + 10) {
            flood.add(&check(&format!("hub-{n}"), 5));
        }
        assert_eq!(flood.entries.len(), MAX_ENTRIES_PER_DAY);
        assert_eq!(flood.unitemized, 10);
        flood.add(&check("hub-0", 6));
        assert_eq!((flood.entries.len(), flood.unitemized, flood.entries[0].checks()), (MAX_ENTRIES_PER_DAY, 10, 2));
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
        let s1: Vec<_> =
            store.disclosures("s-1", 0, 1000).unwrap().entries.into_iter().map(|d| (d.hub_id, d.time)).collect();
        assert_eq!(s1, vec![("h1".to_owned(), 300), ("h2".to_owned(), 200), ("h1".to_owned(), 100)]);
        assert_eq!(store.disclosures("s-1", 250, 1000).unwrap().entries.len(), 1);
        assert!(store.disclosures("s-3", 0, 1000).unwrap().entries.is_empty());
        // Another day's bucket.
        store.append_disclosures(3, &[("s-1".to_owned(), check("h3", 86_400 + 5))], &[]).unwrap();
        assert_eq!(store.disclosures("s-1", 0, 86_400 + 10).unwrap().entries[0].hub_id, "h3");
        assert_eq!(store.disclosures("s-1", 0, 1000).unwrap().entries.len(), 3);
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
        assert_eq!(store.disclosures("s-1", 0, 100_000).unwrap().entries.len(), 3);
        assert!(store.disclosures("s-2", 0, 1000).unwrap().entries.is_empty());
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
            assert_eq!(
                store.disclosures(subject, 0, 10_000).unwrap().entries,
                std::slice::from_ref(record),
                "{subject}"
            );
        }
        if let Some(places) = fixture.places_holding("disclosures") {
            assert!(places > 1, "the disclosure logs sit in {places} place(s)");
        }
        // The same checks in another batch are other checks (the same hub at the same time:
        // they join the entry).
        let checks = |subject: &str| -> u64 {
            store.disclosures(subject, 0, 10_000).unwrap().entries.iter().map(DisclosureRecord::checks).sum()
        };
        store.append_disclosures(8, &batch[..1], &[]).unwrap();
        assert_eq!(checks("subject-00"), 2);
        // A day log remembers the newest batches only.
        for id in 100..100 + BATCHES_KEPT as u64 {
            store.append_disclosures(id, &[("subject-01".to_owned(), check("h2", 2000 + id as i64))], &[]).unwrap();
        }
        store.append_disclosures(7, &batch[1..2], &[]).unwrap();
        assert_eq!(checks("subject-01"), 2 + BATCHES_KEPT as u64);
        assert_eq!(store.counts().unwrap()["disclosure_log"], 60);
        let out = store.purge(&PurgePlan { everything: true, ..Default::default() }, &mut |_| {}).unwrap();
        // Entries: one per subject, and subject-01's second hub (its checks a second apart joined one).
        assert_eq!(out.counts.get("disclosure"), Some(&61));
        assert_eq!(store.counts().unwrap()["disclosure_log"], 0);
    }

    #[test]
    fn on_redb_logs_are_kept_by_subject_and_purged_by_age() {
        logs_are_kept_by_subject_and_purged_by_age(&Fixture::new(Kind::Redb));
    }

    #[test]
    fn on_fjall_logs_are_kept_by_subject_and_purged_by_age() {
        logs_are_kept_by_subject_and_purged_by_age(&Fixture::new(Kind::Fjall));
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
    fn on_fjall_a_batch_written_again_is_appended_once() {
        a_batch_written_again_is_appended_once(&Fixture::new(Kind::Fjall));
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
