//! Trust-list work on every lookup: `huren_pki::verify_attestation` (strict field-policy
//! check: wire-level field scan and per-purpose allowed fields; payload decoding,
//! structural checks, key lookup scoped by province, key status and validity, strict
//! Ed25519 signature, time window, rule registration), the lookups it is made of, the
//! trust list's own verification, and the QR string.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use huren_bench::{payload, Fixture, RULE};
use huren_pki::attest::Kid;
use huren_pki::qr::{decode_qr, encode_qr, Scanned};
use huren_pki::TrustList;
use huren_proto::pb;

fn trust(c: &mut Criterion) {
    let f = Fixture::new();

    let mut g = c.benchmark_group("trust_list_verify_attestation");
    g.throughput(Throughput::Elements(1));
    g.bench_function("green", |b| {
        b.iter(|| {
            huren_pki::verify_attestation(&f.trust, black_box(&f.green), &huren_pki::Expected::default(), f.now)
                .expect("ok")
        })
    });
    g.bench_function("red_with_rule", |b| {
        b.iter(|| {
            huren_pki::verify_attestation(&f.trust, black_box(&f.red), &huren_pki::Expected::default(), f.now)
                .expect("ok")
        })
    });
    // A cache hit once verified (issue 19): what can change is re-checked, not the
    // signature — against a full verification bound the same way.
    let province = f.province.clone();
    let expected = huren_pki::Expected::lookup(&province, &f.token, "transit.highway");
    let signed = f.key.sign(&payload(&f.province, &f.token, false, f.now));
    let verified = huren_pki::verify::verify_once(&f.trust, &signed, &expected, f.now).expect("verifies");
    g.bench_function("cache_hit_full_verify", |b| {
        b.iter(|| huren_pki::verify_attestation(&f.trust, black_box(&signed), &expected, f.now).expect("ok"))
    });
    g.bench_function("cache_hit_verified_once_recheck", |b| {
        b.iter(|| black_box(&verified).recheck(&f.trust, &expected, f.now).expect("ok").issued_at)
    });
    // The strict field-policy check on its own: wire-level field scan (unknown, repeated,
    // oversized) and the per-purpose allowed-field set.
    let decoded = <pb::AttestationPayload as prost::Message>::decode(f.green.payload.as_slice()).expect("payload");
    g.bench_function("strict_policy_wire_fields", |b| {
        b.iter(|| huren_pki::policy::wire_fields(black_box(&f.green.payload)).expect("ok"))
    });
    g.bench_function("strict_policy_field_check", |b| {
        b.iter(|| f.trust.field_policy().check(black_box(&decoded)).expect("ok"))
    });
    let mut forged = f.green.clone();
    forged.signature[0] ^= 1;
    g.bench_function("bad_signature_refused", |b| {
        b.iter(|| {
            huren_pki::verify_attestation(&f.trust, black_box(&forged), &huren_pki::Expected::default(), f.now)
                .expect_err("refused")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("trust_list_lookup");
    g.throughput(Throughput::Elements(1));
    let kid = Kid::from_slice(&f.green.kid).expect("kid");
    g.bench_function("province_and_key_of_34", |b| {
        b.iter(|| f.trust.province(black_box(&f.province)).and_then(|p| p.keys.get(&kid)).is_some())
    });
    g.bench_function("rule", |b| b.iter(|| f.trust.rule(black_box(RULE)).is_some()));
    g.bench_function("revoked_serial", |b| b.iter(|| f.trust.is_revoked(black_box("00ff00ff00ff00ff"))));
    let root = f.root_der.clone();
    let signed = f.trust.signed().clone();
    g.bench_function("verify_and_index_whole_list_34_provinces", |b| {
        b.iter(|| TrustList::verify(black_box(signed.clone()), &root).expect("ok"))
    });
    g.finish();

    let qr = pb::QrCode { attestation: Some(f.green.clone()), token: f.token.to_vec() };
    let text = encode_qr(&qr);
    let mut g = c.benchmark_group("qr");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("encode_{}_chars", text.len()), |b| b.iter(|| encode_qr(black_box(&qr))));
    g.bench_function("decode", |b| b.iter(|| decode_qr(black_box(&text)).expect("ok")));
    g.bench_function("scan_parse", |b| b.iter(|| Scanned::parse(black_box(&text)).expect("ok")));
    g.bench_function("scan_and_verify_offline", |b| {
        b.iter(|| {
            let scanned = Scanned::parse(black_box(&text)).expect("ok");
            let Scanned::Qr { qr, .. } = scanned else { unreachable!() };
            huren_pki::verify_attestation(
                &f.trust,
                qr.attestation.as_ref().expect("attestation"),
                &huren_pki::Expected::default(),
                f.now,
            )
            .expect("ok")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = trust
}
criterion_main!(benches);
