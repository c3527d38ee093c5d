//! The whole trust list as JSON (`huren pki trust-list show --json`) and a field-by-field
//! diff of two lists (`trust-list diff`): every field of the signed list, nothing
//! summarised, so a reviewer sees exactly what a signature would publish.
//!
//! [`trust_list_json`] renders one list; [`diff`] walks two renderings side by side, with
//! the lists of provinces, keys, rules and hubs matched by their ids rather than by
//! position, and prints one line per changed field (`+` added, `-` removed, `~` changed).

use huren_pki::TrustList;
use huren_proto::pb;
use serde_json::{json, Map, Value};

/// A health status's name (`GREEN`, …; `UNSPECIFIED` for 0).
fn status_name(v: i32) -> String {
    pb::HealthStatus::try_from(v)
        .map(|s| s.as_str_name().trim_start_matches("HEALTH_STATUS_").to_owned())
        .unwrap_or_else(|_| format!("UNKNOWN({v})"))
}

/// A key status's proto name (`KEY_STATUS_ACTIVE`, …), as `show` has always printed it.
pub(crate) fn key_status_name(v: i32) -> String {
    pb::KeyStatus::try_from(v).map(|s| s.as_str_name().to_owned()).unwrap_or_else(|_| format!("UNKNOWN({v})"))
}

/// Every field of the trust list: provinces (sorted by code) with their CA certificate and
/// keys, rules (with `may_assign`, `lapses_to`, the lifters as listed and in force), hubs,
/// the field policy, retention, attestation bounds, the sunset order and revoked serials.
/// Retention and bounds are shown as set (`null`: not set) and as in force.
pub fn trust_list_json(list: &TrustList) -> Value {
    let raw = list.raw();
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    let mut provinces: Vec<Value> = raw
        .provinces
        .iter()
        .map(|p| {
            let ca = &p.ca_cert;
            json!({
                "code": p.code,
                "name": p.name,
                "endpoints": p.endpoints,
                "ca_certificate": {
                    "serial": huren_pki::ca::serial_hex(ca).ok(),
                    "not_after": huren_pki::ca::not_after(ca).ok(),
                },
                "attestation_keys": p.attestation_keys.iter().map(|k| json!({
                    "kid": hex(&k.kid),
                    "public_key": hex(&k.public_key),
                    "status": key_status_name(k.status),
                    "not_before": k.not_before,
                    "not_after": k.not_after,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    provinces.sort_by(|a, b| a["code"].as_str().cmp(&b["code"].as_str()));
    let mut revoked: Vec<&String> = raw.revoked_serials.iter().collect();
    revoked.sort();
    let mut policy = Map::new();
    for p in raw.field_policy.iter().flat_map(|f| &f.purposes) {
        policy.insert(p.purpose.clone(), json!(p.fields));
    }
    let retention = list.retention();
    json!({
        "version": raw.version,
        "sequence": raw.sequence,
        "issued_at": raw.issued_at,
        "next_update": raw.next_update,
        "trust_domain": raw.trust_domain,
        "provinces": provinces,
        "rules": raw.rules.iter().map(|r| json!({
            "id": r.id,
            "title": r.title,
            "legal_basis": r.legal_basis,
            "may_assign": r.may_assign.iter().map(|s| status_name(*s)).collect::<Vec<_>>(),
            "max_duration_seconds": r.max_duration_seconds,
            "exit_condition": r.exit_condition,
            // What the status becomes when it lapses; null: no current status.
            "lapses_to": (r.lapses_to != 0).then(|| status_name(r.lapses_to)),
            "authorities": r.authorities,
            // Who may lift its status before it lapses (the authorities when not set).
            "may_lift": TrustList::lifters(r),
            "may_lift_listed": r.may_lift,
        })).collect::<Vec<_>>(),
        "hubs": raw.hubs.iter().map(|h| json!({
            "id": h.id,
            "purposes": h.purposes,
            "province": (!h.province.is_empty()).then_some(&h.province),
        })).collect::<Vec<_>>(),
        "field_policy": policy,
        "retention": {
            "set": raw.retention.map(|r| json!({
                "status_max_age_seconds": r.status_max_age_seconds,
                "audit_max_age_seconds": r.audit_max_age_seconds,
                "cache_max_seconds": r.cache_max_seconds,
                "disclosure_max_age_seconds": r.disclosure_max_age_seconds,
            })),
            "status_max_age_seconds": retention.status_max_age,
            "audit_max_age_seconds": retention.audit_max_age,
            "cache_max_seconds": retention.cache_max,
            // The disclosure log's window in force (the built-in default when none is set).
            "disclosure_max_age_seconds": list.disclosure_max_age(),
        },
        // The bound in force (the built-in default when the list sets none), and as set.
        "attestation_bounds": {
            "max_lifetime_seconds": list.attestation_bounds().max_lifetime,
            "set": raw.attestation_bounds.map(|b| b.max_lifetime_seconds),
        },
        "sunset": raw.sunset.as_ref().map(|s| json!({"effective_at": s.effective_at, "reason": s.reason})),
        "revoked_serials": revoked,
    })
}

/// Every changed field between two lists, one line each: `sequence <old> -> <new>` first,
/// then `+ path: value`, `- path: value`, `~ path: old -> new`, and revocations as
/// `+ revoked certificate <serial>` (`- … (un-revoked!)` for one taken back).
pub fn diff(old: &TrustList, new: &TrustList) -> Vec<String> {
    let (mut a, mut b) = (trust_list_json(old), trust_list_json(new));
    let mut out = vec![format!("sequence {} -> {}", old.sequence(), new.sequence())];
    for v in [&mut a, &mut b] {
        if let Some(o) = v.as_object_mut() {
            o.remove("sequence");
        }
    }
    let serials = |v: &Value| -> Vec<String> {
        v["revoked_serials"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
    };
    let (ra, rb) = (serials(&a), serials(&b));
    walk("", Some(&a), Some(&b), &mut out);
    out.extend(rb.iter().filter(|s| !ra.contains(s)).map(|s| format!("+ revoked certificate {s}")));
    out.extend(ra.iter().filter(|s| !rb.contains(s)).map(|s| format!("- revoked certificate {s} (un-revoked!)")));
    out
}

/// The field that names an element of the list at `path` (lists of objects diffed by id).
fn id_field(path: &str) -> Option<&'static str> {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    match last {
        "provinces" => Some("code"),
        "attestation_keys" => Some("kid"),
        "rules" | "hubs" => Some("id"),
        _ => None,
    }
}

fn keyed<'a>(v: &'a Value, id: &str) -> Option<Vec<(String, &'a Value)>> {
    v.as_array()?.iter().map(|e| Some((e.get(id)?.as_str()?.to_owned(), e))).collect()
}

fn find<'v>(list: &[(String, &'v Value)], id: &str) -> Option<&'v Value> {
    list.iter().find(|(k, _)| k == id).map(|(_, v)| *v)
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    if path == "revoked_serials" {
        return; // one line per serial, by `diff`
    }
    let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(&join(k), a.get(k), b.get(k), out);
            }
        }
        (Some(a), Some(b)) if a != b => {
            let lists = id_field(path).and_then(|id| Some((keyed(a, id)?, keyed(b, id)?)));
            match lists {
                Some((xs, ys)) => {
                    let mut ids: Vec<&String> = xs.iter().chain(ys.iter()).map(|(k, _)| k).collect();
                    ids.sort();
                    ids.dedup();
                    for id in ids {
                        walk(&format!("{path}[{id}]"), find(&xs, id), find(&ys, id), out);
                    }
                }
                None => out.push(format!("~ {path}: {a} -> {b}")),
            }
        }
        (None, Some(b)) => out.push(format!("+ {path}: {b}")),
        (Some(a), None) => out.push(format!("- {path}: {a}")),
        _ => {}
    }
}
