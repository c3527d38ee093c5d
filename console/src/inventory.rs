//! What the federation is made of, read from the trust list and (optionally) the
//! coordinator's PKI directory: attestation keys and certificates with their expiry.
//! Pure apart from reading certificate files; `huren pki list` prints the same rows.

use std::path::Path;

use huren_pki::registry::PkiDir;
use huren_pki::TrustList;
use huren_proto::pb;

use crate::model::{days_left, CertRow, KeyRow};

/// Every attestation key of every province, soonest expiry first.
pub fn keys(trust: &TrustList, now: i64) -> Vec<KeyRow> {
    let mut rows: Vec<KeyRow> = trust
        .raw()
        .provinces
        .iter()
        .flat_map(|p| {
            p.attestation_keys.iter().map(move |k| KeyRow {
                province: p.code.clone(),
                kid: data_encoding::HEXLOWER.encode(&k.kid),
                status: pb::KeyStatus::try_from(k.status)
                    .map(|s| s.as_str_name().trim_start_matches("KEY_STATUS_").to_ascii_lowercase())
                    .unwrap_or_else(|_| "unknown".into()),
                not_before: k.not_before,
                not_after: k.not_after,
                days_left: days_left(k.not_after, now),
            })
        })
        .collect();
    rows.sort_by(|a, b| (a.not_after, &a.province, &a.kid).cmp(&(b.not_after, &b.province, &b.kid)));
    rows
}

fn cert_row(what: String, der: &[u8], trust: &TrustList, now: i64) -> Option<CertRow> {
    let serial = huren_pki::ca::serial_hex(der).ok()?;
    let not_after = huren_pki::ca::not_after(der).ok()?;
    Some(CertRow { what, revoked: trust.is_revoked(&serial), serial, not_after, days_left: days_left(not_after, now) })
}

/// The first certificate of a PEM file (the leaf of a chain), DER.
fn first_cert(path: &Path) -> Option<Vec<u8>> {
    let pem = std::fs::read_to_string(path).ok()?;
    huren_pki::ca::pem_to_der(&pem).ok()
}

/// Certificates, soonest expiry first: each province CA in the trust list, and with the
/// PKI directory also the national root and every leaf issued there (`issued/<kind>-<name>`).
pub fn certs(trust: &TrustList, pki: Option<&PkiDir>, now: i64) -> Vec<CertRow> {
    let mut rows: Vec<CertRow> = trust
        .raw()
        .provinces
        .iter()
        .filter_map(|p| cert_row(format!("province-ca {}", p.code), &p.ca_cert, trust, now))
        .collect();
    if let Some(pki) = pki {
        rows.extend(first_cert(&pki.root_cert_path()).and_then(|der| cert_row("root".into(), &der, trust, now)));
        let mut issued: Vec<_> = std::fs::read_dir(pki.path().join("issued"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("cert.pem").exists())
            .collect();
        issued.sort();
        for dir in issued {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            rows.extend(first_cert(&dir.join("cert.pem")).and_then(|der| cert_row(name, &der, trust, now)));
        }
    }
    rows.sort_by(|a, b| (a.not_after, &a.what).cmp(&(b.not_after, &b.what)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use huren_pki::ca::Validity;

    #[test]
    fn keys_and_certificates_with_days_left_soonest_first() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::init(dir.path(), "huren.gov", Validity::days(365)).unwrap();
        let code = "340000".parse().unwrap();
        pki.add_province(&code, "Anhui", &[], Validity::days(200)).unwrap();
        pki.issue("hub", "h1", Validity::days(10)).unwrap();
        let trust = pki.sign_trust_list().unwrap();
        let now = huren_pki::unix_now();
        let keys = keys(&trust, now);
        assert_eq!(keys.len(), 1);
        assert_eq!((keys[0].province.as_str(), keys[0].status.as_str()), ("340000", "active"));
        let certs = certs(&trust, Some(&pki), now);
        let what: Vec<&str> = certs.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(what, ["hub-h1", "province-ca 340000", "root"], "soonest expiry first");
        assert!((9..=10).contains(&certs[0].days_left), "{:?}", certs[0]);
        assert!(!certs[0].revoked);
    }
}
