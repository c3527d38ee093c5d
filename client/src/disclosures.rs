//! A traveller's disclosure log as people read it: one line per check, the hub by its
//! registered name, the purpose, and the time in China Standard Time (UTC+8, the one time
//! zone of every province) to the minute.

use huren_proto::pb;

/// "Jinan West railway station, transit.rail, 2026-12-01 08:14": the hub's registered
/// name (its id when the trust list gives none), the purpose and the time (UTC+8), and
/// what was disclosed when it was not a status. An entry standing for repeated checks
/// ends in "08:14 to 08:52 (37 checks)".
pub fn disclosure_line(d: &pb::Disclosure) -> String {
    let who = if d.hub_name.is_empty() { d.hub_id.as_str() } else { d.hub_name.as_str() };
    let mut line = format!("{who}, {}, {}", d.purpose, china_minutes(d.time));
    if d.count > 1 {
        let last = china_minutes(d.last_time.max(d.time));
        let until = if last[..10] == china_minutes(d.time)[..10] { &last[11..] } else { last.as_str() };
        line.push_str(&format!(" to {until} ({} checks)", d.count));
    }
    match d.outcome.as_str() {
        "" | "attested" => {}
        // The hub was shown a status the node had signed earlier: a status was disclosed.
        "served_from_cache" => {
            line.push_str(" (shown from the gateway's cache while the home province's node was unreachable)")
        }
        other => line.push_str(&format!(" (nothing disclosed: {})", other.replace('_', " "))),
    }
    line
}

/// `YYYY-MM-DD HH:MM` in UTC+8.
pub fn china_minutes(unix: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
        }
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_reads_as_name_purpose_and_beijing_time() {
        let d = pb::Disclosure {
            hub_id: "jinan-west".into(),
            hub_name: "Jinan West railway station".into(),
            hub_province: "370000".into(),
            purpose: "transit.rail".into(),
            // 2026-12-01 00:14:30 UTC
            time: 1_796_084_070,
            gateway: "spiffe://huren.gov/gateway/national-1".into(),
            outcome: "attested".into(),
            count: 1,
            last_time: 1_796_084_070,
        };
        assert_eq!(disclosure_line(&d), "Jinan West railway station, transit.rail, 2026-12-01 08:14");
        let repeated = pb::Disclosure { count: 37, last_time: d.time + 38 * 60, ..d.clone() };
        assert_eq!(
            disclosure_line(&repeated),
            "Jinan West railway station, transit.rail, 2026-12-01 08:14 to 08:52 (37 checks)"
        );
        let cached = pb::Disclosure { outcome: "served_from_cache".into(), ..d.clone() };
        assert_eq!(
            disclosure_line(&cached),
            "Jinan West railway station, transit.rail, 2026-12-01 08:14 (shown from the gateway's cache while the \
             home province's node was unreachable)"
        );
        let unnamed = pb::Disclosure { hub_name: String::new(), outcome: "no_current_status".into(), ..d };
        assert_eq!(
            disclosure_line(&unnamed),
            "jinan-west, transit.rail, 2026-12-01 08:14 (nothing disclosed: no current status)"
        );
    }
}
