//! The auditor's tools: signed tree heads, consistency and inclusion proofs, full log
//! verification and the statistics a coordinator looks at to spot a mass red-coding
//! without epidemic grounds.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use huren_pki::{Identity, ProvinceCode, Role, TrustList};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use huren_translog::Hash;
use pb::transparency_client::TransparencyClient;
use prost::Message;
use serde::Serialize;
use tonic::transport::Channel;

/// Entries fetched per call when reading a whole log.
const PAGE: u64 = 5_000;

fn hashes(proof: &[Vec<u8>]) -> Result<Vec<Hash>> {
    proof.iter().map(|h| <Hash>::try_from(h.as_slice()).map_err(|_| anyhow!("proof hash is not 32 bytes"))).collect()
}

fn root(head: &pb::TreeHead) -> Result<Hash> {
    <Hash>::try_from(head.root_hash.as_slice()).map_err(|_| anyhow!("tree head root is not 32 bytes"))
}

/// An auditor's connection to one province node.
#[derive(Clone)]
pub struct AuditClient {
    client: TransparencyClient<Channel>,
    province: ProvinceCode,
    trust: TrustList,
}

impl std::fmt::Debug for AuditClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditClient").field("province", &self.province).finish_non_exhaustive()
    }
}

impl AuditClient {
    /// Connects to `province`'s node at `endpoint` (or the trust list's endpoint).
    pub fn connect(
        endpoint: Option<&str>,
        province: &ProvinceCode,
        identity: &TlsIdentity,
        trust: TrustList,
    ) -> Result<Self> {
        let entry = trust.province(province).ok_or_else(|| anyhow!("province {province} is not in the trust list"))?;
        let endpoint = match endpoint {
            Some(e) => e.to_owned(),
            None => entry.endpoints.first().cloned().ok_or_else(|| anyhow!("province {province} lists no endpoint"))?,
        };
        let expected = ExpectedPeer::Exactly(Identity::new(trust.trust_domain(), Role::Node(province.clone())));
        let config = tls::client_config(identity, expected, Revocations::default())?;
        let channel = tls::channel(&endpoint, config, Duration::from_secs(3))?;
        Ok(Self { client: TransparencyClient::new(channel), province: province.clone(), trust })
    }

    /// Fetches and verifies the node's signed tree head.
    pub async fn tree_head(&mut self) -> Result<(pb::SignedTreeHead, pb::TreeHead)> {
        let signed = self.client.get_tree_head(pb::GetTreeHeadRequest {}).await?.into_inner();
        let head = self.verify_head(&signed)?;
        Ok((signed, head))
    }

    /// Checks a tree head's signature (province key in the trust list) and province.
    pub fn verify_head(&self, signed: &pb::SignedTreeHead) -> Result<pb::TreeHead> {
        let head = self.trust.verify_tree_head(signed).context("tree head signature")?;
        if head.province != self.province.as_str() {
            bail!("tree head is for province {}, not {}", head.province, self.province);
        }
        Ok(head)
    }

    /// Verifies that `new` extends `old` (RFC 9162 consistency proof from the node).
    pub async fn verify_consistency(&mut self, old: &pb::SignedTreeHead, new: &pb::SignedTreeHead) -> Result<()> {
        let (old, new) = (self.verify_head(old)?, self.verify_head(new)?);
        if old.tree_size > new.tree_size {
            bail!("old tree head ({}) is larger than the new one ({})", old.tree_size, new.tree_size);
        }
        if old.tree_size == 0 || old.tree_size == new.tree_size {
            if old.tree_size == new.tree_size && old.root_hash != new.root_hash {
                bail!("two tree heads of size {} disagree: the log was rewritten", old.tree_size);
            }
            return Ok(());
        }
        let proof = self
            .client
            .get_consistency_proof(pb::ConsistencyProofRequest { old_size: old.tree_size, new_size: new.tree_size })
            .await?
            .into_inner();
        huren_translog::verify_consistency(
            old.tree_size,
            new.tree_size,
            &root(&old)?,
            &root(&new)?,
            &hashes(&proof.hashes)?,
        )
        .map_err(|e| anyhow!("the log is not append-only between sizes {} and {}: {e}", old.tree_size, new.tree_size))
    }

    /// Downloads every entry of `head`'s tree, recomputes the root from the entries
    /// themselves and returns them: any altered, dropped or inserted entry shows.
    pub async fn fetch_verified(&mut self, head: &pb::TreeHead) -> Result<Vec<pb::LogEntry>> {
        let mut leaves = Vec::with_capacity(head.tree_size as usize);
        let mut entries = Vec::with_capacity(head.tree_size as usize);
        let mut start = 0;
        while start < head.tree_size {
            let end = (start + PAGE).min(head.tree_size);
            let page = self.client.get_entries(pb::GetEntriesRequest { start, end }).await?.into_inner();
            if (page.purged_leaf_hashes.len() + page.entries.len()) as u64 != end - start {
                bail!(
                    "node returned {} entries for [{start}, {end})",
                    page.entries.len() + page.purged_leaf_hashes.len()
                );
            }
            // Entries purged under the retention policy still count through their leaf hashes.
            leaves.extend(hashes(&page.purged_leaf_hashes)?);
            for bytes in page.entries {
                leaves.push(huren_translog::leaf_hash(&bytes));
                entries.push(pb::LogEntry::decode(bytes.as_slice()).context("log entry does not decode")?);
            }
            start = end;
        }
        if huren_translog::root(&leaves) != root(head)? {
            bail!(
                "log entries do not match the signed tree head of size {}: the log was tampered with",
                head.tree_size
            );
        }
        let first = head.tree_size - entries.len() as u64;
        for (i, e) in entries.iter().enumerate() {
            if e.index != first + i as u64 {
                bail!("log entry at position {} claims index {}", first + i as u64, e.index);
            }
        }
        Ok(entries)
    }
}

/// Verifies a subject's entries (from `GetSubjectEntries`) against the signed head.
pub fn verify_subject_entries(trust: &TrustList, response: &pb::SubjectEntriesResponse) -> Result<Vec<pb::LogEntry>> {
    let signed = response.tree_head.as_ref().ok_or_else(|| anyhow!("no tree head in the answer"))?;
    let head = trust.verify_tree_head(signed)?;
    let mut out = Vec::new();
    for e in &response.entries {
        let entry = pb::LogEntry::decode(e.entry.as_slice())?;
        huren_translog::verify_inclusion(
            &huren_translog::leaf_hash(&e.entry),
            entry.index,
            head.tree_size,
            &hashes(&e.inclusion_proof)?,
            &root(&head)?,
        )
        .map_err(|err| anyhow!("entry {} is not in the signed log: {err}", entry.index))?;
        out.push(entry);
    }
    Ok(out)
}

/// Non-green assignments by rule and authority.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub since: i64,
    pub until: i64,
    pub entries: u64,
    /// (status, rule, authority) → count, non-green only.
    pub non_green: Vec<StatsRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsRow {
    pub status: String,
    pub rule_id: String,
    pub authority: String,
    pub count: u64,
    pub distinct_subjects: u64,
}

/// Counts non-green status changes in `[since, until)` by status, rule and authority,
/// largest first. Pure.
pub fn stats(entries: &[pb::LogEntry], since: i64, until: i64) -> Stats {
    type Key = (String, String, String);
    let mut rows: BTreeMap<Key, (u64, std::collections::BTreeSet<Vec<u8>>)> = BTreeMap::new();
    let mut total = 0;
    for e in entries.iter().filter(|e| e.time >= since && e.time < until) {
        total += 1;
        if e.status == pb::HealthStatus::Green as i32 {
            continue;
        }
        let status = pb::HealthStatus::try_from(e.status)
            .map(|s| s.as_str_name().trim_start_matches("HEALTH_STATUS_").to_owned())
            .unwrap_or_else(|_| "UNKNOWN".into());
        let row = rows.entry((status, e.rule_id.clone(), e.authority.clone())).or_default();
        row.0 += 1;
        row.1.insert(e.subject_commitment.clone());
    }
    let mut non_green: Vec<StatsRow> = rows
        .into_iter()
        .map(|((status, rule_id, authority), (count, subjects))| StatsRow {
            status,
            rule_id,
            authority,
            count,
            distinct_subjects: subjects.len() as u64,
        })
        .collect();
    non_green.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule_id.cmp(&b.rule_id)));
    Stats { since, until, entries: total, non_green }
}

/// What `verify-receipt` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedReceipt {
    pub province: String,
    pub time: i64,
    pub reason: String,
    pub deleted: BTreeMap<String, u64>,
    pub remaining: BTreeMap<String, u64>,
    pub range_start: i64,
    pub range_end: i64,
    pub deleted_root: String,
    pub final_tree_size: u64,
    pub final_root: String,
    /// Earlier tree sizes the receipt proves its final log consistent with.
    pub consistency_from: Vec<u64>,
    /// Size of the saved tree head the final log was checked against, if one was given.
    pub consistent_with_saved_head: Option<u64>,
}

/// Checks a deletion receipt: signature by a non-revoked key of its province in the trust
/// list, dated within that key's validity window; the final tree head's signature (and
/// its key's window); for a sunset, that nothing remains; every consistency proof in it
/// well-formed; and — given a tree head saved earlier — that the final log is an
/// append-only extension of it (RFC 9162 consistency proof carried in the receipt, for
/// exactly the saved size).
pub fn verify_receipt(
    trust: &TrustList,
    signed: &pb::SignedDeletionReceipt,
    saved_head: Option<&pb::SignedTreeHead>,
) -> Result<CheckedReceipt> {
    // Signature, key (listed, not revoked, valid at the receipt's and the head's own
    // dates) and, for a sunset, that nothing remains: checked by the trust list, exactly
    // as the gateway checks receipts handed in to it.
    let receipt = trust.verify_receipt(signed).context("deletion receipt refused")?;
    let signed_head = receipt.final_tree_head.as_ref().ok_or_else(|| anyhow!("receipt carries no final tree head"))?;
    let head = trust.verify_tree_head(signed_head).context("final tree head")?;
    let final_root = root(&head)?;
    for proof in &receipt.consistency {
        if proof.old_size == 0 || proof.old_size >= head.tree_size {
            bail!("receipt carries a consistency proof from size {} to size {}", proof.old_size, head.tree_size);
        }
        hashes(&proof.hashes)?;
    }
    let mut consistent_with_saved_head = None;
    if let Some(saved) = saved_head {
        let saved = trust.verify_tree_head(saved).context("saved tree head")?;
        if saved.province != receipt.province {
            bail!("saved tree head is for province {}, the receipt for {}", saved.province, receipt.province);
        }
        let saved_root = root(&saved)?;
        if saved.tree_size > head.tree_size {
            bail!(
                "the receipt's final log ({} entries) is behind a head seen earlier ({})",
                head.tree_size,
                saved.tree_size
            );
        }
        if saved.tree_size == head.tree_size {
            if saved_root != final_root {
                bail!("the receipt's final log differs from the head seen earlier at the same size");
            }
        } else if saved.tree_size == 0 {
            if saved_root != huren_translog::empty_root() {
                bail!("the saved tree head of the empty log has a wrong root");
            }
        } else {
            let proof = receipt.consistency.iter().find(|c| c.old_size == saved.tree_size).ok_or_else(|| {
                anyhow!(
                    "the receipt carries no consistency proof from tree size {} (its proofs are from {:?}): \
                     consistency with the saved head cannot be checked",
                    saved.tree_size,
                    receipt.consistency.iter().map(|c| c.old_size).collect::<Vec<_>>()
                )
            })?;
            huren_translog::verify_consistency(
                saved.tree_size,
                head.tree_size,
                &saved_root,
                &final_root,
                &hashes(&proof.hashes)?,
            )
            .map_err(|e| {
                anyhow!(
                    "the receipt's final log ({} entries) is not an append-only extension of the saved head ({}): {e}",
                    head.tree_size,
                    saved.tree_size
                )
            })?;
        }
        consistent_with_saved_head = Some(saved.tree_size);
    }
    let map = |c: &[pb::DeletedCount]| c.iter().map(|c| (c.kind.clone(), c.count)).collect();
    Ok(CheckedReceipt {
        province: receipt.province.clone(),
        time: receipt.time,
        reason: receipt.reason.clone(),
        deleted: map(&receipt.counts),
        remaining: map(&receipt.remaining),
        range_start: receipt.range_start,
        range_end: receipt.range_end,
        deleted_root: data_encoding::HEXLOWER.encode(&receipt.deleted_root),
        final_tree_size: head.tree_size,
        final_root: data_encoding::HEXLOWER.encode(&head.root_hash),
        consistency_from: receipt.consistency.iter().map(|c| c.old_size).collect(),
        consistent_with_saved_head,
    })
}

/// Counts what a (stopped) node's data folder still holds, by kind.
pub fn scan_node_data(dir: &std::path::Path) -> Result<BTreeMap<&'static str, u64>> {
    let path = dir.join("status.redb");
    if !path.exists() {
        bail!("{} holds no status store", dir.display());
    }
    huren_node::Store::inspect(&path)
        .map_err(|e| anyhow!("cannot read {} (is the node still running?): {e}", path.display()))
}

/// Bytes found where no record should be: in which file, what, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawFinding {
    pub file: String,
    /// The pattern found, as text (lossy).
    pub pattern: String,
    pub occurrences: u64,
}

/// Reads every file under a (stopped) node's data folder byte by byte: the store files
/// for the bytes every status record and log entry carries
/// ([`huren_node::store::RECORD_MARKERS`]), every file for each of `patterns` (subject
/// references an auditor was given, say). A store the node says is empty can still hold
/// a deleted record's bytes in freed pages; this finds them.
pub fn scan_node_data_raw(dir: &std::path::Path, patterns: &[Vec<u8>]) -> Result<Vec<RawFinding>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let store = path.extension().is_some_and(|e| e == "redb");
        let mut wanted: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).filter(|p| !p.is_empty()).collect();
        if store {
            wanted.extend(huren_node::store::RECORD_MARKERS.iter().copied());
        }
        for (pattern, occurrences) in count_in_file(&path, &wanted)? {
            out.push(RawFinding {
                file: path.display().to_string(),
                pattern: String::from_utf8_lossy(pattern).into_owned(),
                occurrences,
            });
        }
    }
    Ok(out)
}

/// Occurrences of each (non-empty) pattern in a file, read in chunks: each position is
/// tried as a match start exactly once, with enough of the next chunk in view to finish
/// any match that starts near a chunk's end.
fn count_in_file<'a>(path: &std::path::Path, patterns: &[&'a [u8]]) -> Result<Vec<(&'a [u8], u64)>> {
    use std::io::Read as _;
    const CHUNK: usize = 1 << 20;
    let Some(longest) = patterns.iter().map(|p| p.len()).max().filter(|n| *n > 0) else {
        return Ok(Vec::new());
    };
    let read_err = || format!("reading {}", path.display());
    let mut file = std::fs::File::open(path).with_context(read_err)?;
    let mut counts = vec![0u64; patterns.len()];
    // Not yet tried as match starts: carried over from the previous chunk.
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + longest);
    loop {
        let carried = buf.len();
        buf.resize(carried + CHUNK, 0);
        let n = file.read(&mut buf[carried..]).with_context(read_err)?;
        buf.truncate(carried + n);
        let at_end = n == 0;
        // Starts below `limit` have every byte a match could need in view.
        let limit = if at_end { buf.len() } else { buf.len().saturating_sub(longest - 1) };
        for (p, count) in patterns.iter().zip(counts.iter_mut()).filter(|(p, _)| !p.is_empty()) {
            let mut at = 0;
            while let Some(k) = buf[at..limit].iter().position(|b| *b == p[0]) {
                at += k;
                if buf[at..].starts_with(p) {
                    *count += 1;
                }
                at += 1;
            }
        }
        if at_end {
            break;
        }
        buf.drain(..limit);
    }
    Ok(patterns.iter().copied().zip(counts).filter(|(_, n)| *n > 0).collect())
}

/// Counts the keys under `prefix` on a Redis server that can hold subject data: every
/// key but a node store's metadata key once it no longer holds the commitment salt
/// (after a sunset it keeps only the log's frontier, signed tree-head sizes and the
/// deletion receipt; see [`huren_node::redis_store`]).
pub async fn scan_redis(url: &str, prefix: &str) -> Result<u64> {
    let client = redis::Client::open(url).with_context(|| format!("redis url {url}"))?;
    let mut conn = client.get_multiplexed_async_connection().await.context("connecting to redis")?;
    let mut iter: redis::AsyncIter<String> =
        redis::AsyncCommands::scan_match(&mut conn, format!("{prefix}*")).await.context("SCAN")?;
    let mut keys = Vec::new();
    while let Some(item) = iter.next_item().await {
        keys.push(item.context("SCAN")?);
    }
    drop(iter);
    let meta = format!("{prefix}{}", huren_node::redis_store::META_KEY);
    let mut n = 0;
    for key in keys {
        if key == meta {
            let salt: bool =
                redis::cmd("HEXISTS").arg(&key).arg("salt").query_async(&mut conn).await.context("HEXISTS")?;
            if !salt {
                continue;
            }
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_scan_counts_patterns_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![0u8; (1 << 20) - 3];
        bytes.extend_from_slice(b"ah-0001");
        bytes.extend_from_slice(&[0u8; 100]);
        bytes.extend_from_slice(b"spiffe://x ah-0001");
        std::fs::write(dir.path().join("status.redb"), &bytes).unwrap();
        std::fs::create_dir(dir.path().join("receipts")).unwrap();
        std::fs::write(dir.path().join("receipts/r.receipt"), b"spiffe:// ah-0001").unwrap();
        let found = scan_node_data_raw(dir.path(), &[b"ah-0001".to_vec(), Vec::new()]).unwrap();
        let summary: Vec<(String, String, u64)> = found
            .into_iter()
            .map(|f| (f.file.rsplit('/').next().unwrap().to_owned(), f.pattern, f.occurrences))
            .collect();
        assert_eq!(
            summary,
            [
                ("r.receipt".to_owned(), "ah-0001".to_owned(), 1),
                ("status.redb".to_owned(), "ah-0001".to_owned(), 2),
                ("status.redb".to_owned(), "spiffe://".to_owned(), 1),
            ],
            "markers are looked for in store files only; patterns everywhere"
        );
    }
}
