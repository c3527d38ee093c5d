//! The node's transparency log, written once over any [`Backend`]: append (entry, leaf hash,
//! subject index, and the hash of every subtree the entry completes), tree heads, inclusion and
//! consistency proofs, signed sizes remembered and thinned, and the purge of old entries.
//!
//! Proofs read stored hashes, never recompute subtrees: a leaf's append stores, besides its
//! leaf hash ([`Table::LogHashes`]), each complete subtree it closes ([`Table::LogNodes`], keyed
//! by level and index, as Go's sumdb `tlog`), so a proof or an old root costs O(log n) reads
//! in one batch, whatever the log's length ([`huren_translog::inclusion_proof_from_nodes`]).
//! Interior hashes are hashes of leaf hashes: like the leaf hashes they carry no record and
//! outlive purged entries, and a purge of everything deletes them with the leaf hashes.
//!
//! Metadata ([`Table::Meta`]): `frontier` (the log's right edge: its size and root),
//! `nodes_size` (the log size up to which every interior hash is stored), `first_available`
//! (the oldest entry still held), `signed_sizes` (sizes of signed tree heads remembered).
//! A store written before interior hashes were kept has no `nodes_size`: opening it computes
//! them from the leaf hashes, once, in batches that resume where they stopped
//! ([`backfill`]).

use std::cell::RefCell;

use huren_proto::pb;
use huren_translog::{Frontier, Hash, NodeId, NodeSource, ProofError};
use prost::Message;

use super::backend::{Backend, Key, Reader, Table, Writer};
use super::{PurgeOutcome, PurgePlan, StoreError, OLDER_SIGNED_SIZES, RECENT_SIGNED_SIZES};

/// Deletions per write transaction during a purge.
pub(crate) const PURGE_BATCH: usize = 10_000;
/// Leaves whose interior hashes one backfill transaction computes.
const BACKFILL_BATCH: u64 = 1 << 17;

const FRONTIER: &str = "frontier";
const NODES_SIZE: &str = "nodes_size";
const FIRST_AVAILABLE: &str = "first_available";
const SIGNED_SIZES: &str = "signed_sizes";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn frontier_of(bytes: Option<Vec<u8>>) -> Result<Frontier, StoreError> {
    bytes.map_or(Ok(Frontier::new()), |b| Frontier::from_bytes(&b).map_err(corrupt))
}

fn u64_of(bytes: Option<Vec<u8>>, what: &str) -> Result<u64, StoreError> {
    bytes.map_or(Ok(0), |b| b.try_into().map(u64::from_be_bytes).map_err(|_| corrupt(what)))
}

fn hash_of(bytes: Vec<u8>, what: impl FnOnce() -> String) -> Result<Hash, StoreError> {
    Hash::try_from(bytes.as_slice()).map_err(|_| corrupt(what()))
}

fn indices(start: u64, end: u64) -> Vec<Key> {
    (start..end).map(Key::Index).collect()
}

/// Appends `entries` (their `index` set here) inside the write `w`: meta read and written once
/// per call, however many entries. Returns the index of the first one (the log's size before).
pub(crate) fn append(w: &mut dyn Writer, entries: Vec<pb::LogEntry>) -> Result<u64, StoreError> {
    let mut meta = w.get_many(Table::Meta, &[Key::text(FRONTIER), Key::text(NODES_SIZE)])?.into_iter();
    let mut frontier = frontier_of(meta.next().flatten())?;
    let first = frontier.size();
    let nodes_size = u64_of(meta.next().flatten(), NODES_SIZE)?;
    let complete = nodes_size == frontier.size();
    for mut entry in entries {
        let index = frontier.size();
        entry.index = index;
        let bytes = entry.encode_to_vec();
        let leaf = huren_translog::leaf_hash(&bytes);
        let mut completed = Vec::new();
        frontier.push_with(leaf, |id, hash| completed.push((id, hash)));
        w.put(Table::LogEntries, Key::Index(index), bytes)?;
        w.put(Table::LogHashes, Key::Index(index), leaf.to_vec())?;
        for (id, hash) in completed {
            w.put(Table::LogNodes, Key::Node(id), hash.to_vec())?;
        }
        w.index_subject(&entry.subject_commitment, index)?;
    }
    w.put(Table::Meta, Key::text(FRONTIER), frontier.to_bytes())?;
    if complete {
        // Every interior hash up to here was stored: it still is.
        w.put(Table::Meta, Key::text(NODES_SIZE), frontier.size().to_be_bytes().to_vec())?;
    }
    Ok(first)
}

/// The log's size, as the write `w` sees it.
pub(crate) fn size_in(w: &mut dyn Writer) -> Result<u64, StoreError> {
    Ok(frontier_of(w.get(Table::Meta, Key::text(FRONTIER))?)?.size())
}

/// The log's frontier, as `r` sees it.
pub(crate) fn frontier(r: &mut impl Reader) -> Result<Frontier, StoreError> {
    frontier_of(r.get(Table::Meta, Key::text(FRONTIER))?)
}

/// Stored subtree hashes (level 0 from [`Table::LogHashes`], the others from
/// [`Table::LogNodes`]) through a reader. A hash not held is [`ProofError::Source`]; a read that
/// failed, or a stored hash of the wrong length, is kept in `failed` so it is never taken for a
/// purged hash.
struct StoredNodes<'r, R> {
    reader: RefCell<&'r mut R>,
    failed: RefCell<Option<StoreError>>,
}

impl<'r, R: Reader> StoredNodes<'r, R> {
    fn new(reader: &'r mut R) -> Self {
        Self { reader: RefCell::new(reader), failed: RefCell::new(None) }
    }

    fn read(&self, nodes: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        let mut reader = self.reader.borrow_mut();
        let mut out = vec![None; nodes.len()];
        for (table, leaves) in [(Table::LogHashes, true), (Table::LogNodes, false)] {
            let at: Vec<usize> = (0..nodes.len()).filter(|i| (nodes[*i].level == 0) == leaves).collect();
            if at.is_empty() {
                continue;
            }
            let keys: Vec<Key> =
                at.iter().map(|i| if leaves { Key::Index(nodes[*i].index) } else { Key::Node(nodes[*i]) }).collect();
            for (i, value) in at.into_iter().zip(reader.get_many(table, &keys)?) {
                out[i] = value.map(|v| hash_of(v, || format!("log hash {:?}", nodes[i]))).transpose()?;
            }
        }
        Ok(out)
    }

    /// The proof's result, unless a read failed meanwhile.
    fn checked<T>(&self, result: Result<T, ProofError>) -> Result<Result<T, ProofError>, StoreError> {
        match self.failed.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }
}

impl<R: Reader> NodeSource for StoredNodes<'_, R> {
    fn node_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
        let hashes = self.read(nodes).map_err(|e| {
            let message = e.to_string();
            *self.failed.borrow_mut() = Some(e);
            ProofError::Source(message)
        })?;
        nodes
            .iter()
            .zip(hashes)
            .map(|(n, h)| {
                h.ok_or_else(|| {
                    ProofError::Source(format!("the log no longer holds the hash of leaves {:?}", n.leaves()))
                })
            })
            .collect()
    }
}

/// Checks `size` against the log's size as `r` sees it.
fn within(r: &mut impl Reader, size: u64) -> Result<(), StoreError> {
    let current = frontier(r)?.size();
    if size > current {
        return Err(StoreError::Range(format!("tree size {size} exceeds the log size {current}")));
    }
    Ok(())
}

/// Size and root of the log.
pub(crate) fn head<B: Backend>(backend: &B) -> Result<(u64, Hash), StoreError> {
    let frontier = frontier(&mut backend.reader()?)?;
    Ok((frontier.size(), frontier.root()))
}

/// Root of the first `size` entries.
pub(crate) fn root_at<B: Backend>(backend: &B, size: u64) -> Result<Hash, StoreError> {
    let mut reader = backend.reader()?;
    within(&mut reader, size)?;
    let nodes = StoredNodes::new(&mut reader);
    nodes.checked(huren_translog::root_from_nodes(size, &nodes))?.map_err(corrupt)
}

/// RFC 9162 inclusion proof of entry `index` in the tree of `size` entries.
pub(crate) fn inclusion_proof<B: Backend>(backend: &B, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
    let mut reader = backend.reader()?;
    within(&mut reader, size)?;
    let nodes = StoredNodes::new(&mut reader);
    nodes
        .checked(huren_translog::inclusion_proof_from_nodes(index, size, &nodes))?
        .map_err(|e| StoreError::Range(e.to_string()))
}

/// RFC 9162 consistency proof between the trees of `old` and `new` entries.
pub(crate) fn consistency_proof<B: Backend>(backend: &B, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
    let mut reader = backend.reader()?;
    within(&mut reader, new)?;
    let nodes = StoredNodes::new(&mut reader);
    nodes
        .checked(huren_translog::consistency_proof_from_nodes(old, new, &nodes))?
        .map_err(|e| StoreError::Range(e.to_string()))
}

/// Consistency proofs from every remembered signed size below `size` to `size`, read in one
/// view; a size whose hashes are gone (purged with everything) is left out.
pub(crate) fn consistency_proofs<B: Backend>(backend: &B, size: u64) -> Result<Vec<(u64, Vec<Hash>)>, StoreError> {
    let mut reader = backend.reader()?;
    within(&mut reader, size)?;
    let sizes = signed_sizes_in(&mut reader)?;
    let nodes = StoredNodes::new(&mut reader);
    let mut out = Vec::new();
    for old in sizes.into_iter().filter(|s| *s < size) {
        match nodes.checked(huren_translog::consistency_proof_from_nodes(old, size, &nodes))? {
            Ok(proof) => out.push((old, proof)),
            Err(ProofError::Source(e)) => {
                tracing::warn!(old_size = old, error = %e, "no consistency proof from a signed size: hashes missing")
            }
            Err(e) => return Err(corrupt(e)),
        }
    }
    Ok(out)
}

/// Values of `table` (indexed by log index) in `[start, end)` still held, `end` capped at the
/// log's size.
fn held_range<B: Backend>(backend: &B, table: Table, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut reader = backend.reader()?;
    let end = end.min(frontier(&mut reader)?.size());
    if start >= end {
        return Ok(Vec::new());
    }
    Ok(reader.get_many(table, &indices(start, end))?.into_iter().flatten().collect())
}

/// Encoded log entries `[start, end)` still held.
pub(crate) fn entries<B: Backend>(backend: &B, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    held_range(backend, Table::LogEntries, start, end)
}

/// Leaf hashes `[start, end)` still held.
pub(crate) fn leaf_hashes<B: Backend>(backend: &B, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    held_range(backend, Table::LogHashes, start, end)
}

/// Index of the oldest entry still held.
pub(crate) fn first_available<B: Backend>(backend: &B) -> Result<u64, StoreError> {
    u64_of(backend.reader()?.get(Table::Meta, Key::text(FIRST_AVAILABLE))?, FIRST_AVAILABLE)
}

fn encode_sizes(sizes: &[u64]) -> Vec<u8> {
    sizes.iter().flat_map(|s| s.to_be_bytes()).collect()
}

fn decode_sizes(bytes: &[u8]) -> Result<Vec<u64>, StoreError> {
    let chunks = bytes.chunks_exact(8);
    if !chunks.remainder().is_empty() {
        return Err(corrupt(SIGNED_SIZES));
    }
    Ok(chunks.map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default())).collect())
}

/// Keeps at most [`RECENT_SIGNED_SIZES`] + [`OLDER_SIGNED_SIZES`] sizes (ascending): the
/// newest all, and of the older ones the first and those that leave the smallest gap
/// when dropped go first, so what stays is spread over the log's history.
fn thin_sizes(sizes: &mut Vec<u64>) {
    while sizes.len() > RECENT_SIGNED_SIZES + OLDER_SIGNED_SIZES {
        let older = sizes.len() - RECENT_SIGNED_SIZES;
        let drop = (1..older).min_by_key(|&i| sizes[i + 1] - sizes[i - 1]).unwrap_or(0);
        sizes.remove(drop);
    }
}

fn signed_sizes_in(r: &mut impl Reader) -> Result<Vec<u64>, StoreError> {
    r.get(Table::Meta, Key::text(SIGNED_SIZES))?.map_or(Ok(Vec::new()), |b| decode_sizes(&b))
}

/// Sizes of signed tree heads remembered, ascending.
pub(crate) fn signed_sizes<B: Backend>(backend: &B) -> Result<Vec<u64>, StoreError> {
    signed_sizes_in(&mut backend.reader()?)
}

/// Remembers that a tree head of `size` entries was signed; writes only for a size not yet kept.
pub(crate) fn record_signed_size<B: Backend>(backend: &B, size: u64) -> Result<(), StoreError> {
    if size == 0 || signed_sizes(backend)?.contains(&size) {
        return Ok(());
    }
    backend.write(&mut |w| {
        let mut sizes = w.get(Table::Meta, Key::text(SIGNED_SIZES))?.map_or(Ok(Vec::new()), |b| decode_sizes(&b))?;
        if let Err(at) = sizes.binary_search(&size) {
            sizes.insert(at, size);
            thin_sizes(&mut sizes);
            w.put(Table::Meta, Key::text(SIGNED_SIZES), encode_sizes(&sizes))?;
        }
        Ok(())
    })
}

/// Deletes log entries the plan names, oldest first, a batch per transaction; their leaf and
/// interior hashes stay (see [`purge_hashes`] for a purge of everything).
pub(crate) fn purge_entries<B: Backend>(
    backend: &B,
    plan: &PurgePlan,
    out: &mut PurgeOutcome,
    progress: &mut dyn FnMut(u64),
) -> Result<(), StoreError> {
    loop {
        let first = first_available(backend)?;
        let (size, _) = head(backend)?;
        let end = size.min(first + PURGE_BATCH as u64);
        let raw = backend.reader()?.get_many(Table::LogEntries, &indices(first, end))?;
        let mut batch = Vec::new();
        let mut next = first;
        let mut stopped = false;
        for (i, bytes) in (first..end).zip(raw) {
            let Some(bytes) = bytes else {
                next = i + 1;
                continue;
            };
            let entry = pb::LogEntry::decode(bytes.as_slice()).map_err(corrupt)?;
            if !(plan.everything || plan.log_entries_before.is_some_and(|t| entry.time < t)) {
                stopped = true;
                break;
            }
            next = i + 1;
            batch.push((i, bytes, entry));
        }
        // Entries never change once written: deleting what was read needs no compare.
        backend.write(&mut |w| {
            for (i, _, entry) in &batch {
                w.delete(Table::LogEntries, Key::Index(*i))?;
                w.unindex_subject(&entry.subject_commitment, *i)?;
            }
            w.put(Table::Meta, Key::text(FIRST_AVAILABLE), next.to_be_bytes().to_vec())
        })?;
        for (_, bytes, entry) in &batch {
            out.note("log_entry", entry.time, huren_translog::leaf_hash(bytes));
        }
        progress(out.total());
        if stopped || end >= size {
            return Ok(());
        }
    }
}

/// Inside a purge of everything: the leaf and interior hashes and the subject index go (the
/// frontier stays, so the log's last head still holds and the log can grow on).
pub(crate) fn purge_hashes(w: &mut dyn Writer) -> Result<(), StoreError> {
    w.clear(Table::LogHashes)?;
    w.clear(Table::LogNodes)?;
    w.clear(Table::SubjectLog)
}

/// The right edge of a tree whose hashes may be missing (purged leaves): what [`backfill`]
/// grows. A node over a missing hash is missing too.
struct PartialFrontier {
    size: u64,
    nodes: Vec<Option<Hash>>,
}

impl PartialFrontier {
    fn push(&mut self, leaf: Option<Hash>, completed: &mut Vec<(NodeId, Hash)>) {
        let index = self.size;
        self.size += 1;
        let keep = self.nodes.len() - index.trailing_ones() as usize;
        let mut level = 0u8;
        let merged = self.nodes.drain(keep..).rev().fold(leaf, |right, left| {
            level += 1;
            let node = left.zip(right).map(|(l, r)| huren_translog::node_hash(&l, &r));
            if let Some(hash) = node {
                completed.push((NodeId::new(level, index >> level), hash));
            }
            node
        });
        self.nodes.push(merged);
    }
}

/// Computes the interior hashes a store written before they were kept lacks, from its leaf
/// hashes, in batches of [`BACKFILL_BATCH`] leaves that each commit with their progress
/// (`nodes_size`), so an interrupted backfill resumes. Subtrees over purged leaves stay
/// missing (their proofs were gone already). Returns how many leaves it went through.
pub(crate) fn backfill<B: Backend>(backend: &B) -> Result<u64, StoreError> {
    let mut done_total = 0;
    loop {
        let (start, size) = {
            let mut reader = backend.reader()?;
            let start = u64_of(reader.get(Table::Meta, Key::text(NODES_SIZE))?, NODES_SIZE)?;
            (start, frontier(&mut reader)?.size())
        };
        if start >= size {
            if done_total > 0 {
                tracing::info!(entries = size, "transparency log: interior hashes computed");
            }
            return Ok(done_total);
        }
        if done_total == 0 {
            tracing::info!(
                from = start,
                to = size,
                "transparency log: computing the interior hashes proofs read (once)"
            );
        }
        let end = size.min(start + BACKFILL_BATCH);
        let mut completed = Vec::new();
        {
            let mut reader = backend.reader()?;
            let edge = huren_translog::range_nodes(0, start);
            let mut partial = PartialFrontier { size: start, nodes: StoredNodes::new(&mut reader).read(&edge)? };
            let leaves = reader.get_many(Table::LogHashes, &indices(start, end))?;
            for (i, leaf) in (start..end).zip(leaves) {
                let leaf = leaf.map(|b| hash_of(b, || format!("log leaf {i}"))).transpose()?;
                partial.push(leaf, &mut completed);
            }
        }
        let advanced = backend.write(&mut |w| {
            let now = u64_of(w.get(Table::Meta, Key::text(NODES_SIZE))?, NODES_SIZE)?;
            if now != start {
                // Another process on the same store moved on meanwhile.
                return Ok(false);
            }
            for (id, hash) in &completed {
                w.put(Table::LogNodes, Key::Node(*id), hash.to_vec())?;
            }
            w.put(Table::Meta, Key::text(NODES_SIZE), end.to_be_bytes().to_vec())?;
            Ok(true)
        })?;
        if advanced {
            done_total += end - start;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_frontier_over_present_leaves_completes_what_a_frontier_does() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| huren_translog::leaf_hash(&i.to_be_bytes())).collect();
        let mut expected = Vec::new();
        let mut frontier = Frontier::new();
        let mut got = Vec::new();
        let mut partial = PartialFrontier { size: 0, nodes: Vec::new() };
        for leaf in &leaves {
            frontier.push_with(*leaf, |id, hash| expected.push((id, hash)));
            partial.push(Some(*leaf), &mut got);
        }
        assert_eq!(got, expected);
        assert_eq!(partial.nodes.iter().flatten().copied().collect::<Vec<_>>(), frontier.subtree_roots());

        // Leaf 5 missing: nothing above it is completed, everything else is.
        let mut got = Vec::new();
        let mut partial = PartialFrontier { size: 0, nodes: Vec::new() };
        for (i, leaf) in leaves.iter().enumerate() {
            partial.push(Some(*leaf).filter(|_| i != 5), &mut got);
        }
        let over_5 = |id: &NodeId| id.leaves().contains(&5);
        assert_eq!(got, expected.iter().filter(|(id, _)| !over_5(id)).copied().collect::<Vec<_>>());
    }

    #[test]
    fn signed_sizes_encode_and_thin() {
        let mut sizes: Vec<u64> = (1..=200).collect();
        thin_sizes(&mut sizes);
        assert_eq!(sizes.len(), RECENT_SIGNED_SIZES + OLDER_SIGNED_SIZES);
        assert_eq!(decode_sizes(&encode_sizes(&sizes)).unwrap(), sizes);
        assert!(matches!(decode_sizes(&[0; 9]), Err(StoreError::Corrupt(_))));
    }
}
