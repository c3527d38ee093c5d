//! The statistics a coordinator looks at to spot a mass red-coding without epidemic
//! grounds: non-green status changes by rule and authority, and early lifts by lifted rule
//! and lifting authority (`huren audit stats`).

use std::collections::{BTreeMap, BTreeSet};

use huren_proto::pb;
use serde::Serialize;

/// Non-green assignments by rule and authority in a time window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Window start, Unix seconds (inclusive).
    pub since: i64,
    /// Window end, Unix seconds (exclusive).
    pub until: i64,
    /// Status changes in the window, green ones included.
    pub entries: u64,
    /// (status, rule, authority) → count, non-green only.
    pub non_green: Vec<StatsRow>,
    /// (lifted rule, lifting authority) → count: held statuses ended before they lapsed.
    pub lifts: Vec<LiftRow>,
}

/// One (lifted rule, lifting authority) group of [`Stats`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiftRow {
    /// The rule whose held status was lifted.
    pub lifted_rule_id: String,
    /// The authority identity that lifted it.
    pub authority: String,
    /// Lifts in the group.
    pub count: u64,
    /// Distinct subject commitments among them.
    pub distinct_subjects: u64,
}

/// One (status, rule, authority) group of [`Stats`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsRow {
    /// `YELLOW`, `RED` (or `UNKNOWN`).
    pub status: String,
    /// The rule cited.
    pub rule_id: String,
    /// The authority identity that applied it.
    pub authority: String,
    /// Changes in the group.
    pub count: u64,
    /// Distinct subject commitments among them.
    pub distinct_subjects: u64,
}

/// Counts non-green status changes in `[since, until)` by status, rule and authority,
/// largest first. Pure.
pub fn stats(entries: &[pb::LogEntry], since: i64, until: i64) -> Stats {
    type Key = (String, String, String);
    /// Changes, and the distinct subjects among them.
    type Counts = (u64, BTreeSet<Vec<u8>>);
    let mut rows: BTreeMap<Key, Counts> = BTreeMap::new();
    let mut lifted: BTreeMap<(String, String), Counts> = BTreeMap::new();
    let mut total = 0;
    for e in entries.iter().filter(|e| e.time >= since && e.time < until) {
        total += 1;
        if !e.lifted_rule_id.is_empty() {
            let row = lifted.entry((e.lifted_rule_id.clone(), e.authority.clone())).or_default();
            row.0 += 1;
            row.1.insert(e.subject_commitment.clone());
        }
        if e.status == pb::HealthStatus::Green as i32 {
            continue;
        }
        let status = pb::HealthStatus::try_from(e.status)
            .map(|s| s.as_str_name().trim_start_matches("HEALTH_STATUS_").to_owned())
            .unwrap_or_else(|_| "UNKNOWN".into());
        let row = rows.entry((status, e.rule_id.clone(), e.authority.clone())).or_default();
        row.0 += 1;
        row.1.insert(e.subject_commitment.clone());
    }
    let mut non_green: Vec<StatsRow> = rows
        .into_iter()
        .map(|((status, rule_id, authority), (count, subjects))| StatsRow {
            status,
            rule_id,
            authority,
            count,
            distinct_subjects: subjects.len() as u64,
        })
        .collect();
    non_green.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule_id.cmp(&b.rule_id)));
    let mut lifts: Vec<LiftRow> = lifted
        .into_iter()
        .map(|((lifted_rule_id, authority), (count, subjects))| LiftRow {
            lifted_rule_id,
            authority,
            count,
            distinct_subjects: subjects.len() as u64,
        })
        .collect();
    lifts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.lifted_rule_id.cmp(&b.lifted_rule_id)));
    Stats { since, until, entries: total, non_green, lifts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifts_are_counted_by_lifted_rule_and_lifter() {
        let entry = |subject: u8, status: pb::HealthStatus, lifted: &str, authority: &str| pb::LogEntry {
            subject_commitment: vec![subject; 32],
            status: status as i32,
            authority: authority.into(),
            lifted_rule_id: lifted.into(),
            time: 10,
            ..Default::default()
        };
        let entries = vec![
            entry(1, pb::HealthStatus::Green, "R", "hefei"),
            entry(2, pb::HealthStatus::Green, "R", "hefei"),
            entry(2, pb::HealthStatus::Yellow, "R", "hefei"),
            entry(3, pb::HealthStatus::Green, "", "admin"),
        ];
        let s = stats(&entries, 0, 20);
        assert_eq!(
            s.lifts,
            vec![LiftRow { lifted_rule_id: "R".into(), authority: "hefei".into(), count: 3, distinct_subjects: 2 }]
        );
        assert_eq!((s.entries, s.non_green.len()), (4, 1));
    }
}
