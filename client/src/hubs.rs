//! Which hubs over-check: a pure ranking of a node's per-hub aggregates
//! (`Transparency/GetHubAggregates`) against the trust list's hub registrations.
//!
//! Each hub is ranked by the distinct subjects it checked in the window (summed over its
//! hours and purposes), and flagged when
//! - its busiest hour is far above its own baseline: more than [`OverCheck::factor`] times
//!   the median of its hourly counts, and at least [`OverCheck::min_subjects`] subjects;
//! - it checked travellers while registered in another province than the one its checks
//!   carried, or while registered in no province at all (a hub's checks carry the province
//!   its registration named when it asked, so a difference means it was moved, or the
//!   gateway was wrong);
//! - it is not (or no longer) registered, or it checked for a purpose it is not registered for.
//!
//! A flag's words ([`HubFlag`]'s `Display`) are what `huren audit hubs` prints and what the
//! console's Hubs page shows; [`OverCheck::DEFAULT`] and [`DEFAULT_HUB_WINDOW`] are the
//! defaults of both.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use huren_proto::pb;
use serde::Serialize;

use crate::TrustList;

/// When a busy hour counts as over-checking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverCheck {
    /// How many times its median hour a hub's busiest hour must be to be flagged.
    pub factor: f64,
    /// Fewest distinct subjects in the busiest hour for a flag (small hubs vary a lot).
    pub min_subjects: u64,
}

impl OverCheck {
    /// Three times the median hour, and at least 20 subjects.
    pub const DEFAULT: OverCheck = OverCheck { factor: 3.0, min_subjects: 20 };
}

impl Default for OverCheck {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How far back hubs are ranked unless told otherwise: the last 7 days.
pub const DEFAULT_HUB_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// Why a hub is flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HubFlag {
    /// Its busiest hour is far above its own median hour.
    AboveBaseline {
        /// Start of the busiest hour (Unix seconds).
        hour: i64,
        /// Distinct subjects in that hour.
        subjects: u64,
        /// Median distinct subjects per active hour.
        median: u64,
    },
    /// Its checks carried a province other than the one it is registered in (or it is
    /// registered in none).
    OutsideRegisteredProvince {
        /// The province its checks carried.
        checked_in: String,
        /// The province it is registered in (empty: none).
        registered: String,
    },
    /// The trust list has no registration for it.
    NotRegistered,
    /// It checked for a purpose it is not registered for.
    PurposeNotRegistered {
        /// The purpose.
        purpose: String,
    },
}

/// The flag in words, one line (times in UTC).
impl fmt::Display for HubFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubFlag::AboveBaseline { hour, subjects, median } => {
                write!(f, "{subjects} subjects in the hour from {} (median {median})", crate::rfc3339(*hour))
            }
            HubFlag::OutsideRegisteredProvince { checked_in, registered } => write!(
                f,
                "checked in {} but registered in {}",
                if checked_in.is_empty() { "no province" } else { checked_in },
                if registered.is_empty() { "none" } else { registered }
            ),
            HubFlag::NotRegistered => f.write_str("not registered"),
            HubFlag::PurposeNotRegistered { purpose } => write!(f, "purpose {purpose} not registered"),
        }
    }
}

/// One hub's line in the ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubRank {
    /// The hub's `<id>`.
    pub hub_id: String,
    /// Its registered name (empty if none).
    pub name: String,
    /// Distinct subjects checked, summed over its hours and purposes.
    pub distinct_subjects: u64,
    /// Checks, repeated ones included.
    pub checks: u64,
    /// Hours with at least one check.
    pub active_hours: u64,
    /// Why it is flagged (empty: not flagged).
    pub flags: Vec<HubFlag>,
}

/// Ranks the hubs in `aggregates` by distinct subjects checked (most first, then by id)
/// and flags over-checking (see the module docs).
pub fn rank_hubs(aggregates: &[pb::HubAggregate], trust: &TrustList, rule: OverCheck) -> Vec<HubRank> {
    let mut by_hub: BTreeMap<&str, Vec<&pb::HubAggregate>> = BTreeMap::new();
    for a in aggregates {
        by_hub.entry(a.hub_id.as_str()).or_default().push(a);
    }
    let mut out: Vec<HubRank> = by_hub
        .into_iter()
        .map(|(hub, rows)| {
            let mut hourly: BTreeMap<i64, u64> = BTreeMap::new();
            for r in &rows {
                *hourly.entry(r.hour).or_default() += r.distinct_subjects;
            }
            let mut flags = Vec::new();
            let mut counts: Vec<u64> = hourly.values().copied().collect();
            counts.sort_unstable();
            let median = counts.get(counts.len().saturating_sub(1) / 2).copied().unwrap_or(0);
            if let Some((&hour, &subjects)) = hourly.iter().max_by_key(|(h, n)| (**n, std::cmp::Reverse(**h))) {
                if subjects >= rule.min_subjects && (subjects as f64) > rule.factor * median as f64 {
                    flags.push(HubFlag::AboveBaseline { hour, subjects, median });
                }
            }
            match trust.hub_purposes(hub) {
                None => flags.push(HubFlag::NotRegistered),
                Some(purposes) => {
                    let registered = trust.hub_province(hub).map(ToString::to_string).unwrap_or_default();
                    let mut seen = std::collections::BTreeSet::new();
                    for r in &rows {
                        if (r.hub_province != registered || registered.is_empty())
                            && seen.insert(("province", r.hub_province.clone()))
                        {
                            flags.push(HubFlag::OutsideRegisteredProvince {
                                checked_in: r.hub_province.clone(),
                                registered: registered.clone(),
                            });
                        }
                        if !purposes.contains(&r.purpose) && seen.insert(("purpose", r.purpose.clone())) {
                            flags.push(HubFlag::PurposeNotRegistered { purpose: r.purpose.clone() });
                        }
                    }
                }
            }
            HubRank {
                hub_id: hub.to_owned(),
                name: trust.hub_name(hub).unwrap_or_default().to_owned(),
                distinct_subjects: rows.iter().map(|r| r.distinct_subjects).sum(),
                checks: rows.iter().map(|r| r.checks).sum(),
                active_hours: hourly.len() as u64,
                flags,
            }
        })
        .collect();
    out.sort_by(|a, b| b.distinct_subjects.cmp(&a.distinct_subjects).then_with(|| a.hub_id.cmp(&b.hub_id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trust list (signed by a throwaway root) registering `hubs` as (id, province, purposes).
    fn trust(hubs: &[(&str, &str, &[&str])]) -> TrustList {
        let dir = tempfile::tempdir().unwrap();
        let pki = huren_pki::registry::PkiDir::init(dir.path(), "huren.gov", huren_pki::ca::Validity::days(1)).unwrap();
        for (id, province, purposes) in hubs {
            let purposes: Vec<String> = purposes.iter().map(|p| p.to_string()).collect();
            pki.register_hub(id, &purposes).unwrap();
            if !province.is_empty() {
                pki.set_hub_province(id, Some(&province.parse().unwrap())).unwrap();
            }
        }
        if hubs.iter().any(|(id, ..)| *id == "jinan-west") {
            pki.set_hub_name("jinan-west", Some("Jinan West railway station")).unwrap();
        }
        pki.sign_trust_list().unwrap()
    }

    fn row(hour: i64, hub: &str, province: &str, purpose: &str, subjects: u64) -> pb::HubAggregate {
        pb::HubAggregate {
            hour: hour * 3600,
            hub_id: hub.into(),
            hub_province: province.into(),
            purpose: purpose.into(),
            distinct_subjects: subjects,
            checks: subjects + 1,
        }
    }

    #[test]
    fn hubs_are_ranked_and_a_spike_above_the_own_baseline_is_flagged() {
        let trust = trust(&[("jinan-west", "370000", &["transit.rail"]), ("qingdao-bank", "370000", &["venue.entry"])]);
        let mut rows: Vec<_> = (0..10).map(|h| row(h, "jinan-west", "370000", "transit.rail", 100)).collect();
        // Steady at 10 an hour, then 60 in one hour.
        rows.extend((0..9).map(|h| row(h, "qingdao-bank", "370000", "venue.entry", 10)));
        rows.push(row(9, "qingdao-bank", "370000", "venue.entry", 60));
        let ranked = rank_hubs(&rows, &trust, OverCheck::default());
        assert_eq!(ranked.iter().map(|r| r.hub_id.as_str()).collect::<Vec<_>>(), ["jinan-west", "qingdao-bank"]);
        assert_eq!((ranked[0].distinct_subjects, ranked[0].checks, ranked[0].active_hours), (1000, 1010, 10));
        assert_eq!(ranked[0].name, "Jinan West railway station");
        assert!(ranked[0].flags.is_empty(), "a steady large hub is not over-checking: {:?}", ranked[0].flags);
        assert_eq!(ranked[1].flags, vec![HubFlag::AboveBaseline { hour: 9 * 3600, subjects: 60, median: 10 }]);
    }

    #[test]
    fn a_small_spike_is_not_flagged() {
        let trust = trust(&[("tiny", "370000", &["transit.rail"])]);
        let rows = vec![row(0, "tiny", "370000", "transit.rail", 1), row(1, "tiny", "370000", "transit.rail", 15)];
        assert!(rank_hubs(&rows, &trust, OverCheck::default())[0].flags.is_empty());
        let strict = OverCheck { factor: 3.0, min_subjects: 10 };
        assert_eq!(rank_hubs(&rows, &trust, strict)[0].flags.len(), 1);
    }

    #[test]
    fn checks_outside_the_registered_province_or_purpose_and_unregistered_hubs_are_flagged() {
        let trust = trust(&[("moved", "370000", &["transit.rail"]), ("nowhere", "", &["transit.rail"])]);
        let rows = vec![
            row(0, "moved", "410000", "transit.rail", 5),
            row(0, "moved", "370000", "venue.entry", 5),
            row(0, "nowhere", "", "transit.rail", 5),
            row(0, "ghost", "370000", "transit.rail", 5),
        ];
        let ranked = rank_hubs(&rows, &trust, OverCheck::default());
        let flags = |id: &str| ranked.iter().find(|r| r.hub_id == id).unwrap().flags.clone();
        assert_eq!(
            flags("moved"),
            vec![
                HubFlag::OutsideRegisteredProvince { checked_in: "410000".into(), registered: "370000".into() },
                HubFlag::PurposeNotRegistered { purpose: "venue.entry".into() },
            ]
        );
        assert_eq!(
            flags("nowhere"),
            vec![HubFlag::OutsideRegisteredProvince { checked_in: String::new(), registered: String::new() }]
        );
        assert_eq!(flags("ghost"), vec![HubFlag::NotRegistered]);
    }

    #[test]
    fn flags_read_as_one_line_each() {
        let texts: Vec<String> = [
            HubFlag::AboveBaseline { hour: 1_800_000_000, subjects: 60, median: 10 },
            HubFlag::OutsideRegisteredProvince { checked_in: "410000".into(), registered: "370000".into() },
            HubFlag::OutsideRegisteredProvince { checked_in: String::new(), registered: String::new() },
            HubFlag::NotRegistered,
            HubFlag::PurposeNotRegistered { purpose: "venue.entry".into() },
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            texts,
            [
                "60 subjects in the hour from 2027-01-15T08:00:00Z (median 10)".to_owned(),
                "checked in 410000 but registered in 370000".to_owned(),
                "checked in no province but registered in none".to_owned(),
                "not registered".to_owned(),
                "purpose venue.entry not registered".to_owned(),
            ]
        );
    }
}
