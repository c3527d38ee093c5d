//! Attestation signatures: ed25519-dalek (sign, verify, verify_strict, batch) and ring.
//!
//! The signed message is exactly what a node signs: the context prefix plus an encoded
//! GREEN `AttestationPayload` (about 90 bytes).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use huren_bench::{payload, Fixture};
use huren_pki::attest::signing_input;
use prost::Message;

fn crypto(c: &mut Criterion) {
    let fixture = Fixture::new();
    let payload = payload(&fixture.province, &fixture.token, false, fixture.now).encode_to_vec();
    let message = signing_input(&payload);
    let seed = [42u8; 32];
    let dalek = SigningKey::from_bytes(&seed);
    let public = dalek.verifying_key();
    let signature = dalek.sign(&message);

    let mut g = c.benchmark_group("attestation_sign");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ed25519_dalek", |b| b.iter(|| dalek.sign(black_box(&message))));
    g.bench_function("huren_attestation_key_sign_bytes", |b| {
        b.iter_batched(|| payload.clone(), |p| fixture.key.sign_bytes(p), BatchSize::SmallInput)
    });
    let ring_key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).expect("ring key");
    g.bench_function("ring", |b| b.iter(|| ring_key.sign(black_box(&message))));
    g.finish();

    let mut g = c.benchmark_group("attestation_verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ed25519_dalek_verify", |b| b.iter(|| public.verify(black_box(&message), &signature)));
    g.bench_function("ed25519_dalek_verify_strict", |b| {
        b.iter(|| public.verify_strict(black_box(&message), &signature))
    });
    let ring_public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public.to_bytes());
    let sig_bytes = signature.to_bytes();
    g.bench_function("ring", |b| b.iter(|| ring_public.verify(black_box(&message), &sig_bytes)));
    g.finish();

    // Batch verification: per-signature cost when a verifier holds many at once (e.g. a
    // hub re-checking a queue of QRs). Distinct messages, one province key.
    let mut g = c.benchmark_group("attestation_verify_batch");
    for n in [16usize, 64, 256] {
        let messages: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut p = huren_bench::payload(&fixture.province, &[i as u8; 16], false, fixture.now);
                p.issued_at += i as i64;
                signing_input(&p.encode_to_vec())
            })
            .collect();
        let signatures: Vec<_> = messages.iter().map(|m| dalek.sign(m)).collect();
        let keys = vec![public; n];
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("ed25519_dalek_batch_{n}"), |b| {
            b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &signatures, &keys))
        });
        g.bench_function(format!("ed25519_dalek_one_by_one_{n}"), |b| {
            b.iter(|| refs.iter().zip(&signatures).all(|(m, s)| public.verify_strict(black_box(m), s).is_ok()))
        });
    }
    g.finish();

    // huren-pki's batch path (verify_strict's exact verdicts: canonical s, R and A in the
    // prime-order subgroup, then one random linear combination), per signature, against
    // verify_strict one by one. One province key, distinct messages.
    let mut g = c.benchmark_group("attestation_verify_strict_batch");
    for n in [1usize, 8, 64] {
        let messages: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut p = huren_bench::payload(&fixture.province, &[i as u8; 16], false, fixture.now);
                p.issued_at += i as i64;
                signing_input(&p.encode_to_vec())
            })
            .collect();
        let signatures: Vec<_> = messages.iter().map(|m| dalek.sign(m)).collect();
        let items: Vec<_> = messages
            .iter()
            .zip(&signatures)
            .map(|(message, signature)| huren_pki::batch::SignatureItem { key: &public, message, signature })
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("huren_pki_batch_{n}"), |b| {
            b.iter(|| huren_pki::batch::verify_strict_batch(black_box(&items)))
        });
        g.bench_function(format!("verify_strict_one_by_one_{n}"), |b| {
            b.iter(|| items.iter().all(|i| public.verify_strict(black_box(i.message), i.signature).is_ok()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = crypto
}
criterion_main!(benches);
