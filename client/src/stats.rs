//! The statistics a coordinator looks at to spot a mass red-coding without epidemic
//! grounds: non-green status changes by rule and authority (`huren audit stats`).

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
    let mut rows: BTreeMap<Key, (u64, BTreeSet<Vec<u8>>)> = BTreeMap::new();
    let mut total = 0;
    for e in entries.iter().filter(|e| e.time >= since && e.time < until) {
        total += 1;
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
    Stats { since, until, entries: total, non_green }
}
