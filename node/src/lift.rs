//! Who may lift a status: policy as data (each rule's `may_lift` in the trust list) and
//! one pure decision, [`decide`], that the `UpsertStatus` handler applies to the status a
//! subject holds now.
//!
//! A subject *holds* a non-green status while it is current (`valid_until` in the future),
//! and also after it lapsed when its rule's exit (`lapses_to`) is itself non-green (that
//! exit holds until the subject is re-assessed). A change **lifts** a held status when it
//! leaves the subject less restricted, or for less time, than the held status would:
//!
//! - GREEN over a held status is always a lift;
//! - under the same rule, a milder status or an earlier end is a lift; re-assigning the
//!   same (or a more severe) status until at least as late — extending it — is not (the
//!   rule's ordinary assign check applies);
//! - under another rule, only an *escalation* is not a lift: a strictly more severe status,
//!   until at least the held one's end, whose rule lapses to something at least as severe
//!   as the held rule's exit. Anything else under another rule (the same colour, a milder
//!   one, a shorter one, one that lapses to GREEN where the held one lapses to YELLOW) would
//!   end the held rule's restriction early, so it is a lift of the held rule.
//!
//! A lift is for the authorities that the held rule's `may_lift` names (by default those
//! that may apply it), each with its own certificate; the province admin identity never
//! may. A held status whose rule is no longer in the registry has lost its legal basis
//! (gateways already refuse attestations citing it): replacing it is still logged as a lift
//! of that rule, but anyone who may set the new status may do it.

use huren_pki::attest::Status;
use huren_pki::{AuthorityRef, Identity, TrustList};
use huren_proto::pb;

use crate::error::StatusChangeRefused;
use crate::store::StatusRecord;

/// A non-green status a subject holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) status: Status,
    pub(crate) rule_id: String,
    /// When it ends; `None`: it is its rule's non-green exit, held until re-assessed.
    pub(crate) until: Option<i64>,
}

/// The non-green status `current` amounts to at `now`, if any (see the module docs).
pub(crate) fn held(current: Option<&StatusRecord>, trust: &TrustList, now: i64) -> Option<Held> {
    let current = current?;
    let status = Status::from_pb(current.status).filter(|s| *s != Status::Green)?;
    if current.valid_until > now {
        return Some(Held { status, rule_id: current.rule_id.clone(), until: Some(current.valid_until) });
    }
    let exit = trust.rule(&current.rule_id).map(|r| r.lapses_to).and_then(Status::from_pb)?;
    (exit != Status::Green).then(|| Held { status: exit, rule_id: current.rule_id.clone(), until: None })
}

/// A requested change, as far as lifting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replacement<'a> {
    pub(crate) status: Status,
    /// Empty for GREEN.
    pub(crate) rule_id: &'a str,
    pub(crate) valid_until: i64,
}

/// How restrictive a status is: GREEN < YELLOW < RED.
fn severity(status: Status) -> u8 {
    match status {
        Status::Green => 0,
        Status::Yellow => 2,
        Status::Red => 3,
    }
}

/// How restrictive a rule's exit is: GREEN < no current status (re-assess) < YELLOW < RED.
fn exit_severity(rule: Option<&pb::Rule>) -> u8 {
    match rule.map(|r| r.lapses_to).and_then(Status::from_pb) {
        Some(status) => severity(status),
        None => 1,
    }
}

/// Whether `new` would lift `held` (see the module docs).
pub(crate) fn is_lift(held: &Held, new: &Replacement<'_>, trust: &TrustList) -> bool {
    if new.status == Status::Green {
        return true;
    }
    let lasts = held.until.is_none_or(|until| new.valid_until >= until);
    if new.rule_id == held.rule_id {
        // The same rule lapses to the same exit: only a milder colour or an earlier end lifts.
        return severity(new.status) < severity(held.status) || !lasts;
    }
    let escalation = severity(new.status) > severity(held.status)
        && held.until.is_some()
        && lasts
        && exit_severity(trust.rule(new.rule_id)) >= exit_severity(trust.rule(&held.rule_id));
    !escalation
}

/// Decides whether `caller` may make the change `new` over what the subject holds
/// (`held`); `Ok(Some(rule))` when the change lifts a status held under `rule` (the log
/// entry records it), `Ok(None)` when it lifts nothing.
pub(crate) fn decide(
    held: Option<&Held>,
    new: &Replacement<'_>,
    caller: &Identity,
    trust: &TrustList,
) -> Result<Option<String>, StatusChangeRefused> {
    let Some(held) = held else { return Ok(None) };
    if !is_lift(held, new, trust) {
        return Ok(None);
    }
    let Some(rule) = trust.rule(&held.rule_id) else {
        // Withdrawn from the registry: no legal basis is left to protect.
        return Ok(Some(held.rule_id.clone()));
    };
    let lifters = TrustList::lifters(rule);
    let allowed = caller
        .role
        .authority()
        .is_some_and(|me| lifters.iter().any(|a| a.parse::<AuthorityRef>().is_ok_and(|a| a == me)));
    if allowed {
        Ok(Some(held.rule_id.clone()))
    } else {
        Err(StatusChangeRefused::LiftNotAllowed {
            rule_id: held.rule_id.clone(),
            status: held.status,
            may_lift: lifters.to_vec(),
            caller: Box::new(caller.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const RED_RULE: &str = "NHC-CC-2022-9";
    const YELLOW_RULE: &str = "NHC-SC-2022-9";
    const STICKY_RULE: &str = "STICKY-YELLOW";
    const GONE_RULE: &str = "WITHDRAWN";

    fn rule(id: &str, may_assign: &[Status], authorities: &[&str], may_lift: &[&str], lapses_to: Status) -> pb::Rule {
        pb::Rule {
            id: id.into(),
            title: id.into(),
            may_assign: may_assign.iter().map(|s| s.to_pb() as i32).collect(),
            max_duration_seconds: 14 * 86_400,
            authorities: authorities.iter().map(|a| (*a).to_owned()).collect(),
            may_lift: may_lift.iter().map(|a| (*a).to_owned()).collect(),
            lapses_to: lapses_to.to_pb() as i32,
            ..Default::default()
        }
    }

    /// A trust list with only rules: what the decision reads.
    fn trust() -> TrustList {
        let rules = vec![
            // Assigned by two CDCs; only the provincial CDC may lift it early.
            rule(
                RED_RULE,
                &[Status::Red],
                &["340000/hefei-cdc", "340000/bengbu-cdc"],
                &["340000/hefei-cdc"],
                Status::Green,
            ),
            // No may_lift: those who may assign it may lift it.
            rule(YELLOW_RULE, &[Status::Yellow], &["340000/community-office"], &[], Status::Green),
            // Lapses to YELLOW: the exit holds until re-assessed.
            rule(STICKY_RULE, &[Status::Red], &["340000/hefei-cdc"], &[], Status::Yellow),
        ];
        let list = pb::TrustList {
            version: huren_pki::trust::TRUST_LIST_VERSION,
            trust_domain: "huren.gov".into(),
            rules,
            ..Default::default()
        };
        let root = huren_pki::ca::new_root("huren.gov", huren_pki::ca::Validity::days(1)).unwrap();
        let root_der = huren_pki::ca::pem_to_der(&root.cert_pem).unwrap();
        TrustList::verify(huren_pki::trust::sign(&list, &root).unwrap(), &root_der).unwrap()
    }

    fn id(uri: &str) -> Identity {
        uri.parse().unwrap()
    }

    fn admin() -> Identity {
        id("spiffe://huren.gov/province/340000/admin")
    }

    fn authority(name: &str) -> Identity {
        id(&format!("spiffe://huren.gov/province/340000/authority/{name}"))
    }

    fn record(status: Status, rule_id: &str, valid_until: i64) -> StatusRecord {
        StatusRecord { status: status.to_pb() as i32, rule_id: rule_id.into(), valid_until, ..Default::default() }
    }

    fn green() -> Replacement<'static> {
        Replacement { status: Status::Green, rule_id: "", valid_until: NOW + 86_400 }
    }

    fn red_until(until: i64) -> Held {
        Held { status: Status::Red, rule_id: RED_RULE.into(), until: Some(until) }
    }

    #[test]
    fn what_a_subject_holds() {
        let t = trust();
        assert_eq!(held(None, &t, NOW), None);
        assert_eq!(held(Some(&record(Status::Green, "", NOW + 10)), &t, NOW), None);
        assert_eq!(held(Some(&record(Status::Red, RED_RULE, NOW + 10)), &t, NOW), Some(red_until(NOW + 10)));
        // Lapsed to GREEN: nothing held; lapsed to YELLOW: the exit holds, with no end.
        assert_eq!(held(Some(&record(Status::Red, RED_RULE, NOW)), &t, NOW), None);
        assert_eq!(
            held(Some(&record(Status::Red, STICKY_RULE, NOW - 5)), &t, NOW),
            Some(Held { status: Status::Yellow, rule_id: STICKY_RULE.into(), until: None })
        );
        // Lapsed under a withdrawn rule: no exit, nothing held.
        assert_eq!(held(Some(&record(Status::Red, GONE_RULE, NOW - 5)), &t, NOW), None);
    }

    #[test]
    fn the_admin_may_not_lift_and_names_who_may() {
        let err = decide(Some(&red_until(NOW + 3600)), &green(), &admin(), &trust()).unwrap_err();
        assert_eq!(
            err,
            StatusChangeRefused::LiftNotAllowed {
                rule_id: RED_RULE.into(),
                status: Status::Red,
                may_lift: vec!["340000/hefei-cdc".into()],
                caller: Box::new(admin()),
            }
        );
        let text = err.to_string();
        assert!(text.contains(RED_RULE) && text.contains("340000/hefei-cdc"), "{text}");
    }

    #[test]
    fn only_the_named_lifters_may_lift() {
        let t = trust();
        let red = red_until(NOW + 3600);
        // bengbu-cdc may assign the rule but is not among its lifters; another province's
        // namesake is not the lifter either.
        assert!(decide(Some(&red), &green(), &authority("bengbu-cdc"), &t).is_err());
        let other = id("spiffe://huren.gov/province/370000/authority/hefei-cdc");
        assert!(decide(Some(&red), &green(), &other, &t).is_err());
        assert_eq!(decide(Some(&red), &green(), &authority("hefei-cdc"), &t), Ok(Some(RED_RULE.into())));
        // No may_lift: the authorities of the rule lift it.
        let yellow = Held { status: Status::Yellow, rule_id: YELLOW_RULE.into(), until: Some(NOW + 60) };
        assert_eq!(decide(Some(&yellow), &green(), &authority("community-office"), &t), Ok(Some(YELLOW_RULE.into())));
        assert!(decide(Some(&yellow), &green(), &authority("hefei-cdc"), &t).is_err());
    }

    #[test]
    fn nothing_held_nothing_to_lift() {
        let t = trust();
        assert_eq!(decide(None, &green(), &admin(), &t), Ok(None));
        let lapsed = held(Some(&record(Status::Red, RED_RULE, NOW - 1)), &t, NOW);
        assert_eq!(decide(lapsed.as_ref(), &green(), &admin(), &t), Ok(None));
    }

    #[test]
    fn re_assigning_the_same_rule_to_extend_it_is_no_lift_but_shortening_or_softening_is() {
        let t = trust();
        let red = red_until(NOW + 3600);
        let bengbu = authority("bengbu-cdc");
        let again = |status, valid_until| Replacement { status, rule_id: RED_RULE, valid_until };
        assert_eq!(decide(Some(&red), &again(Status::Red, NOW + 7200), &bengbu, &t), Ok(None));
        assert_eq!(decide(Some(&red), &again(Status::Red, NOW + 3600), &bengbu, &t), Ok(None));
        assert!(decide(Some(&red), &again(Status::Red, NOW + 60), &bengbu, &t).is_err());
        assert!(decide(Some(&red), &again(Status::Yellow, NOW + 7200), &bengbu, &t).is_err());
        assert_eq!(
            decide(Some(&red), &again(Status::Red, NOW + 60), &authority("hefei-cdc"), &t),
            Ok(Some(RED_RULE.into()))
        );
        // A status held as its rule's exit comes back to that exit: re-assigning it is no lift.
        let sticky = Held { status: Status::Yellow, rule_id: STICKY_RULE.into(), until: None };
        let renew = Replacement { status: Status::Red, rule_id: STICKY_RULE, valid_until: NOW + 60 };
        assert_eq!(decide(Some(&sticky), &renew, &bengbu, &t), Ok(None));
    }

    #[test]
    fn an_escalation_under_another_rule_is_no_lift_anything_else_is() {
        let t = trust();
        let yellow = Held { status: Status::Yellow, rule_id: YELLOW_RULE.into(), until: Some(NOW + 3600) };
        let bengbu = authority("bengbu-cdc");
        let red = |valid_until| Replacement { status: Status::Red, rule_id: RED_RULE, valid_until };
        // YELLOW → RED under the close-contact rule, at least as long: an escalation.
        assert_eq!(decide(Some(&yellow), &red(NOW + 3600), &bengbu, &t), Ok(None));
        // ... but a short RED that lapses to GREEN before the YELLOW would end lifts it.
        let err = decide(Some(&yellow), &red(NOW + 60), &bengbu, &t).unwrap_err();
        assert!(matches!(err, StatusChangeRefused::LiftNotAllowed { ref rule_id, .. } if rule_id == YELLOW_RULE));
        // The same colour under another rule replaces the held rule: a lift.
        let held_red = red_until(NOW + 3600);
        let sticky = Replacement { status: Status::Red, rule_id: STICKY_RULE, valid_until: NOW + 7200 };
        assert!(decide(Some(&held_red), &sticky, &authority("bengbu-cdc"), &t).is_err());
        assert_eq!(decide(Some(&held_red), &sticky, &authority("hefei-cdc"), &t), Ok(Some(RED_RULE.into())));
        // A milder status under another rule: a lift.
        let milder = Replacement { status: Status::Yellow, rule_id: YELLOW_RULE, valid_until: NOW + 7200 };
        assert!(decide(Some(&held_red), &milder, &authority("community-office"), &t).is_err());
        // An escalation to a rule that lapses to GREEN, over one whose exit is YELLOW: a lift.
        let sticky_yellow = Held { status: Status::Yellow, rule_id: STICKY_RULE.into(), until: Some(NOW + 60) };
        assert!(decide(Some(&sticky_yellow), &red(NOW + 7200), &bengbu, &t).is_err());
        // Over an exit held until re-assessment, nothing under another rule lasts as long.
        let exit = Held { status: Status::Yellow, rule_id: STICKY_RULE.into(), until: None };
        assert!(decide(Some(&exit), &red(NOW + 7200), &bengbu, &t).is_err());
    }

    #[test]
    fn a_withdrawn_rule_protects_nothing_but_its_lift_is_recorded() {
        let gone = Held { status: Status::Red, rule_id: GONE_RULE.into(), until: Some(NOW + 3600) };
        assert_eq!(decide(Some(&gone), &green(), &admin(), &trust()), Ok(Some(GONE_RULE.into())));
    }
}
