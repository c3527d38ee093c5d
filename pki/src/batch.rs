//! Batch verification of Ed25519 signatures with exactly `verify_strict`'s verdicts.
//!
//! [`verify_strict_batch`] answers, for each `(key, message, signature)`, what
//! `VerifyingKey::verify_strict` would answer — never more, never less — but checks the
//! signatures that can be batched with one random linear combination (one multiscalar
//! multiplication, the keys shared by several signatures folded into one term each).
//!
//! Why "exactly" needs care: `verify_strict` is cofactorless (`R == [s]B - [k]A`, compared
//! as encodings) and refuses small-order `R` and `A` and non-canonical `s`; a plain batch
//! equation `Σ zᵢ([sᵢ]B - Rᵢ - [kᵢ]Aᵢ) = 0` can pass when points carry small-order
//! (torsion) components that cancel, and accepts non-canonical encodings. So a signature
//! enters the batch equation only if
//! - `s` is canonical (`s < ℓ`),
//! - `R` is canonically encoded, decompresses, and lies in the prime-order subgroup
//!   (not the identity),
//! - `A` (checked once per distinct key in the batch) is not weak and lies in the
//!   prime-order subgroup;
//!
//! every other signature is checked on its own with `verify_strict`. Over the prime-order
//! subgroup the batch equation with secret uniformly random 128-bit `zᵢ` holds for a set
//! containing a bad signature with probability at most 2⁻¹²⁸, and always holds for a set
//! of good ones. When the equation fails, every batched signature is checked on its own,
//! so only the bad ones are refused.
//!
//! The subgroup check on `R` costs a scalar multiplication per signature; it is the price
//! of agreeing with `verify_strict` (see BENCHMARKS.md for what is left of the gain).

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// One signature to check: the key, the exact signed bytes, the signature.
#[derive(Debug, Clone, Copy)]
pub struct SignatureItem<'a> {
    /// The signer's public key.
    pub key: &'a VerifyingKey,
    /// The exact bytes signed (for attestations, [`crate::attest::signing_input`]).
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

impl SignatureItem<'_> {
    fn verify_strict(&self) -> bool {
        self.key.verify_strict(self.message, self.signature).is_ok()
    }
}

/// A signature admitted to the batch equation.
struct Batched {
    index: usize,
    /// Which distinct key (index into the batch's key list).
    key: usize,
    s: Scalar,
    r: EdwardsPoint,
    k: Scalar,
}

/// For each item, whether `verify_strict` accepts it (see the module doc).
pub fn verify_strict_batch(items: &[SignatureItem<'_>]) -> Vec<bool> {
    if items.len() < 2 {
        return items.iter().map(SignatureItem::verify_strict).collect();
    }
    let mut verdicts = vec![false; items.len()];
    // Distinct keys: (compressed bytes, point if it may be batched).
    let mut keys: Vec<(&[u8; 32], Option<EdwardsPoint>)> = Vec::new();
    let mut batched = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let key = match keys.iter().position(|(bytes, _)| *bytes == item.key.as_bytes()) {
            Some(key) => key,
            None => {
                let point = item.key.to_edwards();
                let usable = !item.key.is_weak() && point.is_torsion_free();
                keys.push((item.key.as_bytes(), usable.then_some(point)));
                keys.len() - 1
            }
        };
        match keys[key].1.is_some().then(|| admit(item)).flatten() {
            Some((s, r, k)) => batched.push(Batched { index, key, s, r, k }),
            None => verdicts[index] = item.verify_strict(),
        }
    }
    if batched.len() < 2 {
        for b in &batched {
            verdicts[b.index] = items[b.index].verify_strict();
        }
        return verdicts;
    }
    let holds = match random_weights(batched.len()) {
        Some(z) => batch_equation_holds(&batched, &keys, &z),
        // No randomness: no batch equation, each on its own.
        None => false,
    };
    for b in &batched {
        verdicts[b.index] = holds || items[b.index].verify_strict();
    }
    verdicts
}

/// `(s, R, k)` for a signature that may enter the batch equation, `None` for one that
/// must be checked on its own.
fn admit(item: &SignatureItem<'_>) -> Option<(Scalar, EdwardsPoint, Scalar)> {
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*item.signature.s_bytes()))?;
    let r_bytes = item.signature.r_bytes();
    if !canonical_y(r_bytes) {
        return None;
    }
    let r = CompressedEdwardsY(*r_bytes).decompress()?;
    if r.is_small_order() || !torsion_free(&r) {
        return None;
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(item.key.as_bytes());
    h.update(item.message);
    Some((s, r, Scalar::from_hash(h)))
}

/// Whether the encoded `y` (top bit, the sign of `x`, aside) is below p = 2²⁵⁵ - 19. (The
/// other non-canonical form, a set sign bit with `x = 0`, is only the identity or the
/// point of order 2, refused as small-order.)
fn canonical_y(bytes: &[u8; 32]) -> bool {
    !(bytes[0] >= 0xed && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f)
}

/// `[ℓ]P == 0`, computed as `[ℓ-1]P + P` in variable time (the inputs are public).
fn torsion_free(p: &EdwardsPoint) -> bool {
    (EdwardsPoint::vartime_multiscalar_mul([-Scalar::ONE], [*p]) + p).is_identity()
}

/// Secret uniformly random 128-bit weights, one per batched signature.
fn random_weights(n: usize) -> Option<Vec<Scalar>> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).ok()?;
    Some(
        (0..n as u64)
            .map(|i| {
                let block = Sha512::new().chain_update(seed).chain_update(i.to_le_bytes()).finalize();
                let mut z = [0u8; 32];
                z[..16].copy_from_slice(&block[..16]);
                Scalar::from_bytes_mod_order(z)
            })
            .collect(),
    )
}

/// `[-Σ zᵢsᵢ]B + Σ zᵢRᵢ + Σ_A [Σ_{i: Aᵢ = A} zᵢkᵢ]A == 0`.
fn batch_equation_holds(batched: &[Batched], keys: &[(&[u8; 32], Option<EdwardsPoint>)], z: &[Scalar]) -> bool {
    let mut b_coefficient = Scalar::ZERO;
    let mut key_coefficients = vec![Scalar::ZERO; keys.len()];
    let mut scalars = Vec::with_capacity(1 + batched.len() + keys.len());
    let mut points = Vec::with_capacity(1 + batched.len() + keys.len());
    for (b, z) in batched.iter().zip(z) {
        b_coefficient += z * b.s;
        key_coefficients[b.key] += z * b.k;
        scalars.push(*z);
        points.push(b.r);
    }
    scalars.push(-b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    for ((_, point), coefficient) in keys.iter().zip(key_coefficients) {
        if let Some(point) = point {
            scalars.push(coefficient);
            points.push(*point);
        }
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn single(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
        key.verify_strict(message, signature).is_ok()
    }

    fn batch(cases: &[(VerifyingKey, Vec<u8>, Signature)]) -> Vec<bool> {
        let items: Vec<_> =
            cases.iter().map(|(key, message, signature)| SignatureItem { key, message, signature }).collect();
        verify_strict_batch(&items)
    }

    fn singles(cases: &[(VerifyingKey, Vec<u8>, Signature)]) -> Vec<bool> {
        cases.iter().map(|(k, m, s)| single(k, m, s)).collect()
    }

    /// A signature made by the key holder with `R = [r]B + T` (T a torsion point) and
    /// `s = r + k·a` for `k = H(R‖A‖M)`: the prime-order parts agree, the cofactorless
    /// equation is off by exactly `T`, so `verify_strict` refuses it — what a compromised
    /// signer could send to split a batch verifier from a single one.
    fn with_torsion_r(signing: &SigningKey, message: &[u8], torsion: usize) -> Signature {
        let a = signing.to_scalar();
        let r = Scalar::hash_from_bytes::<Sha512>(message);
        let big_r = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[torsion];
        let mut h = Sha512::new();
        h.update(big_r.compress().as_bytes());
        h.update(signing.verifying_key().as_bytes());
        h.update(message);
        let s = r + Scalar::from_hash(h) * a;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.compress().as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature::from_bytes(&bytes)
    }

    /// A small-order (weak) key and a signature satisfying the cofactorless equation for it
    /// when one of the candidates hashes right (else any signature): verify_strict refuses both.
    fn small_order_key_signature(message: &[u8], torsion: usize) -> (VerifyingKey, Signature) {
        let a = EIGHT_TORSION[torsion];
        let key = VerifyingKey::from_bytes(a.compress().as_bytes()).unwrap();
        let s = Scalar::from(7u64);
        // R must hash into k, so search for an R with [s]B - [k]A == R: take R = [s]B - [k]A
        // for A of order dividing 8 — [k]A depends on k mod 8 only; try candidates.
        for t in &EIGHT_TORSION {
            let r = ED25519_BASEPOINT_POINT * s - t;
            let mut h = Sha512::new();
            h.update(r.compress().as_bytes());
            h.update(key.as_bytes());
            h.update(message);
            let k = Scalar::from_hash(h);
            if a * k == *t {
                let mut bytes = [0u8; 64];
                bytes[..32].copy_from_slice(r.compress().as_bytes());
                bytes[32..].copy_from_slice(s.as_bytes());
                return (key, Signature::from_bytes(&bytes));
            }
        }
        // Fall back: any signature (the test only needs agreement with verify_strict).
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(ED25519_BASEPOINT_POINT.compress().as_bytes());
        (key, Signature::from_bytes(&bytes))
    }

    #[test]
    fn good_signatures_pass_and_one_bad_is_found_among_them() {
        let signers = [key(1), key(2), key(3)];
        let mut cases: Vec<_> = (0..20u8)
            .map(|i| {
                let signer = &signers[usize::from(i) % 3];
                let message = vec![i; 40];
                let signature = signer.sign(&message);
                (signer.verifying_key(), message, signature)
            })
            .collect();
        assert_eq!(batch(&cases), vec![true; 20]);
        // Wrong message for one, a flipped signature bit for another.
        cases[4].1[0] ^= 1;
        let mut bytes = cases[11].2.to_bytes();
        bytes[40] ^= 0x10;
        cases[11].2 = Signature::from_bytes(&bytes);
        let verdicts = batch(&cases);
        let expected: Vec<bool> = (0..20).map(|i| i != 4 && i != 11).collect();
        assert_eq!(verdicts, expected);
        assert_eq!(verdicts, singles(&cases));
    }

    #[test]
    fn non_canonical_s_is_refused_as_verify_strict_refuses_it() {
        let signer = key(5);
        let message = b"payload".to_vec();
        let good = signer.sign(&message);
        // s + ℓ: the same value mod ℓ, a second encoding (malleability).
        let l = -Scalar::ONE; // ℓ - 1
        let s = Scalar::from_canonical_bytes(*good.s_bytes()).unwrap();
        let mut s_plus_l = [0u8; 32];
        let mut carry = 0u16;
        let (a, b) = ((s + Scalar::ZERO).to_bytes(), l.to_bytes());
        for i in 0..32 {
            // s + (ℓ - 1) + 1, byte by byte (fits in 253 bits: s < ℓ).
            let sum = u16::from(a[i]) + u16::from(b[i]) + carry + u16::from(i == 0);
            s_plus_l[i] = sum as u8;
            carry = sum >> 8;
        }
        let mut bytes = good.to_bytes();
        bytes[32..].copy_from_slice(&s_plus_l);
        let malleated = Signature::from_bytes(&bytes);
        let cases = vec![
            (signer.verifying_key(), message.clone(), good),
            (signer.verifying_key(), message.clone(), malleated),
            (signer.verifying_key(), message, good),
        ];
        assert_eq!(batch(&cases), vec![true, false, true]);
        assert_eq!(batch(&cases), singles(&cases));
    }

    #[test]
    fn small_order_and_mixed_order_points_agree_with_verify_strict() {
        let signer = key(9);
        let mut cases = Vec::new();
        for t in 1..8 {
            let message = vec![t as u8; 33];
            cases.push((signer.verifying_key(), message.clone(), with_torsion_r(&signer, &message, t)));
            let (weak, signature) = small_order_key_signature(&message, t);
            cases.push((weak, message.clone(), signature));
            cases.push((signer.verifying_key(), message.clone(), signer.sign(&message)));
        }
        let want = singles(&cases);
        for _ in 0..8 {
            assert_eq!(batch(&cases), want);
        }
        assert_eq!(want.iter().filter(|v| **v).count(), 7, "only the honest signatures pass");
    }

    #[test]
    fn torsion_that_a_plain_batch_equation_would_cancel_is_still_refused() {
        // R carrying the point of order 2, alone or twice among good signatures: a plain
        // batch equation Σ zᵢ(...) = 0 misses it whenever the weights are even (or their
        // sum is), about one time in two; verify_strict always refuses it.
        let signer = key(9);
        let good = |i: u8| {
            let message = vec![i; 20];
            (signer.verifying_key(), message.clone(), signer.sign(&message))
        };
        let torsion = |m: &[u8]| (signer.verifying_key(), m.to_vec(), with_torsion_r(&signer, m, 4));
        let alone = vec![good(1), torsion(b"alone"), good(2)];
        let twice = vec![good(1), torsion(b"a"), torsion(b"b"), good(2)];
        for _ in 0..32 {
            assert_eq!(batch(&alone), vec![true, false, true]);
            assert_eq!(batch(&twice), vec![true, false, false, true]);
        }
    }

    #[test]
    fn a_small_order_r_is_refused() {
        let signer = key(3);
        let message = b"m".to_vec();
        let mut bytes = signer.sign(&message).to_bytes();
        bytes[..32].copy_from_slice(EIGHT_TORSION[2].compress().as_bytes());
        let cases = vec![
            (signer.verifying_key(), message.clone(), Signature::from_bytes(&bytes)),
            (signer.verifying_key(), message.clone(), signer.sign(&message)),
        ];
        assert_eq!(batch(&cases), vec![false, true]);
    }

    /// One generated case: which key, what to sign, and how to spoil it.
    #[derive(Debug, Clone)]
    enum Spoil {
        None,
        Message,
        SignatureBit(usize),
        TorsionR(usize),
        SmallOrderR(usize),
        NonCanonicalS,
        SmallOrderKey(usize),
    }

    fn spoil() -> impl Strategy<Value = Spoil> {
        prop_oneof![
            4 => Just(Spoil::None),
            1 => Just(Spoil::Message),
            1 => (0usize..512).prop_map(Spoil::SignatureBit),
            1 => (1usize..8).prop_map(Spoil::TorsionR),
            1 => (0usize..8).prop_map(Spoil::SmallOrderR),
            1 => Just(Spoil::NonCanonicalS),
            1 => (0usize..8).prop_map(Spoil::SmallOrderKey),
        ]
    }

    fn make(signer: &SigningKey, message: Vec<u8>, spoil: &Spoil) -> (VerifyingKey, Vec<u8>, Signature) {
        let good = signer.sign(&message);
        let mut bytes = good.to_bytes();
        let mut key = signer.verifying_key();
        let mut message = message;
        match spoil {
            Spoil::None => {}
            Spoil::Message => message.push(0),
            Spoil::SignatureBit(bit) => bytes[bit / 8] ^= 1 << (bit % 8),
            Spoil::TorsionR(t) => bytes = with_torsion_r(signer, &message, *t).to_bytes(),
            Spoil::SmallOrderR(t) => bytes[..32].copy_from_slice(EIGHT_TORSION[*t].compress().as_bytes()),
            Spoil::NonCanonicalS => bytes[63] |= 0xf0,
            Spoil::SmallOrderKey(t) => {
                let (weak, signature) = small_order_key_signature(&message, *t);
                key = weak;
                bytes = signature.to_bytes();
            }
        }
        (key, message, Signature::from_bytes(&bytes))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Batch and single verdicts agree on any mix of good and spoiled signatures.
        #[test]
        fn batch_verdicts_equal_single_verdicts(
            cases in prop::collection::vec((0u8..4, prop::collection::vec(any::<u8>(), 0..64), spoil()), 0..24)
        ) {
            let signers: Vec<SigningKey> = (1..=4).map(key).collect();
            let cases: Vec<_> =
                cases.into_iter().map(|(k, m, s)| make(&signers[usize::from(k)], m, &s)).collect();
            prop_assert_eq!(batch(&cases), singles(&cases));
        }
    }
}
