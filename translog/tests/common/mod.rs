//! An independent, deliberately naive RFC 6962 / RFC 9162 reference, written straight from the
//! definitions on slices, with sha2 called directly: the crate's answers are checked against it.
#![allow(dead_code)]

use sha2::{Digest, Sha256};

pub(crate) type H = [u8; 32];

pub(crate) fn ref_leaf(data: &[u8]) -> H {
    let mut bytes = vec![0x00];
    bytes.extend_from_slice(data);
    Sha256::digest(&bytes).into()
}

pub(crate) fn ref_node(left: &H, right: &H) -> H {
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(left);
    bytes.extend_from_slice(right);
    Sha256::digest(&bytes).into()
}

/// The largest power of two strictly below `n`, by counting up.
pub(crate) fn ref_k(n: usize) -> usize {
    assert!(n > 1);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]).
pub(crate) fn ref_mth(d: &[H]) -> H {
    match d.len() {
        0 => Sha256::digest(b"").into(),
        1 => d[0],
        n => {
            let k = ref_k(n);
            ref_node(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
        }
    }
}

/// PATH(m, D[n]).
pub(crate) fn ref_path(m: usize, d: &[H]) -> Vec<H> {
    let n = d.len();
    assert!(m < n);
    if n == 1 {
        return vec![];
    }
    let k = ref_k(n);
    if m < k {
        let mut p = ref_path(m, &d[..k]);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &d[k..]);
        p.push(ref_mth(&d[..k]));
        p
    }
}

/// PROOF(m, D[n]) for 0 < m < n.
pub(crate) fn ref_proof(m: usize, d: &[H]) -> Vec<H> {
    assert!(0 < m && m < d.len());
    ref_subproof(m, d, true)
}

fn ref_subproof(m: usize, d: &[H], b: bool) -> Vec<H> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![ref_mth(d)] };
    }
    let k = ref_k(n);
    if m <= k {
        let mut p = ref_subproof(m, &d[..k], b);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &d[k..], false);
        p.push(ref_mth(&d[..k]));
        p
    }
}

/// `n` distinct leaf hashes, varied by `seed`.
pub(crate) fn leaves(seed: u64, n: u64) -> Vec<H> {
    (0..n)
        .map(|i| {
            let mut data = seed.to_le_bytes().to_vec();
            data.extend_from_slice(&i.to_le_bytes());
            ref_leaf(&data)
        })
        .collect()
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

pub(crate) fn h(s: &str) -> H {
    unhex(s).try_into().expect("32 bytes of hex")
}

/// The root of every prefix `D[0:1]`, …, `D[0:n]` in O(n log n), from a table of perfect subtrees
/// built bottom-up: by the definition's split, the tree of `s = 2^a + 2^b + …` leaves
/// (`a > b > …`) has root `node(T_a, node(T_b, …))`, `T_x` being perfect subtrees from the left.
pub(crate) fn ref_prefix_roots(d: &[H]) -> Vec<H> {
    let mut levels = vec![d.to_vec()];
    while levels.last().expect("a level").len() > 1 {
        let next = levels.last().expect("a level").chunks_exact(2).map(|pair| ref_node(&pair[0], &pair[1])).collect();
        levels.push(next);
    }
    (1..=d.len())
        .map(|s| {
            let mut parts = vec![];
            let mut start = 0;
            for level in (0..levels.len()).rev() {
                let width = 1 << level;
                if s & width != 0 {
                    parts.push(levels[level][start / width]);
                    start += width;
                }
            }
            let mut acc = parts.pop().expect("s > 0");
            while let Some(left) = parts.pop() {
                acc = ref_node(&left, &acc);
            }
            acc
        })
        .collect()
}
