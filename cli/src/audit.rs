//! The auditor's library surface: the transparency client, receipts and statistics
//! from [`huren_client`] (re-exported, for callers of `huren_cli::audit`), and what needs a
//! node's own storage — scans of a stopped node's data folder and of a Redis prefix for
//! subject records left behind (`huren audit scan`).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

pub use huren_client::{
    stats, verify_receipt, verify_subject_entries, AuditClient, AuditError, CheckedReceipt, LiftRow, ReceiptError,
    Stats, StatsRow,
};

/// Counts what a (stopped) node's data folder still holds, by kind: its `status.redb`, or
/// its `status.fjall/` folder.
pub fn scan_node_data(dir: &std::path::Path) -> Result<BTreeMap<&'static str, u64>> {
    let (redb, fjall) = (dir.join("status.redb"), dir.join("status.fjall"));
    let (path, counts) = if redb.exists() {
        (&redb, huren_node::Store::inspect(&redb))
    } else if fjall.exists() {
        (&fjall, huren_node::FjallStore::inspect(&fjall))
    } else {
        bail!("{} holds no status store", dir.display());
    };
    counts.map_err(|e| anyhow!("cannot read {} (is the node still running?): {e}", path.display()))
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
        let store = path.extension().is_some_and(|e| e == "redb")
            || path.strip_prefix(dir).is_ok_and(|p| p.starts_with("status.fjall"));
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
    let mut iter: redis::AsyncIter<'_, String> =
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

    /// A node on `store = "fjall"`: the counts come from its folder, and every file in it
    /// is a store file whose record fragments the raw scan reports.
    #[test]
    fn a_fjall_data_folder_is_counted_and_its_files_scanned_for_fragments() {
        use huren_node::NodeStore as _;
        let dir = tempfile::tempdir().unwrap();
        let record = huren_node::store::StatusRecord {
            status: 1,
            authority: "spiffe://huren.gov/province/340000/admin".into(),
            ..Default::default()
        };
        huren_node::FjallStore::open(&dir.path().join("status.fjall")).unwrap().upsert("ah-0001", record).unwrap();
        let counts = scan_node_data(dir.path()).unwrap();
        assert_eq!((counts["status"], counts["log_entry"]), (1, 1));
        let found = scan_node_data_raw(dir.path(), &[b"ah-0001".to_vec()]).unwrap();
        let patterns: std::collections::BTreeSet<&str> = found.iter().map(|f| f.pattern.as_str()).collect();
        assert_eq!(patterns, ["ah-0001", "spiffe://"].into(), "{found:?}");
        assert!(found.iter().all(|f| f.file.contains("status.fjall")), "{found:?}");
    }
}

/// One receipt fetched from a gateway and what verifying it found.
#[derive(Debug, Clone, Serialize)]
pub struct FetchedReceipt {
    /// The province the receipt names (`unknown` when it does not decode).
    pub province: String,
    /// Where it was saved.
    pub file: String,
    /// Its content once every check passed, or why it was refused.
    #[serde(flatten)]
    pub outcome: FetchOutcome,
}

/// What verifying a fetched receipt found.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum FetchOutcome {
    /// Every check of `huren audit verify-receipt` passed.
    Verified {
        /// Always true.
        verified: bool,
        /// The receipt's content.
        receipt: CheckedReceipt,
    },
    /// A check failed.
    Refused {
        /// Always false.
        verified: bool,
        /// Why.
        error: String,
    },
}

/// Fetches every deletion receipt the gateway holds (`TrustRegistry/ListReceipts`, as a
/// coordinator or auditor), verifies each against `trust` exactly as `huren audit
/// verify-receipt` does ([`verify_receipt`]), and saves each under `out`: verified ones as
/// `<province>-<time>-<reason>.receipt`, refused ones under `out/refused/` (kept as
/// evidence, never mixed with verified ones).
pub async fn fetch_receipts(
    identity: &huren_runtime::tls::TlsIdentity,
    gateway: &str,
    trust: &huren_pki::TrustList,
    out: &std::path::Path,
) -> Result<Vec<FetchedReceipt>> {
    use huren_proto::pb;
    use prost::Message as _;
    let config = huren_runtime::tls::client_config(
        identity,
        huren_runtime::tls::ExpectedPeer::AnyGateway,
        huren_runtime::tls::Revocations::new(trust.revoked_serials().clone()),
    )?;
    let channel =
        huren_runtime::tls::channel(gateway, config, std::time::Duration::from_secs(3)).map_err(crate::usage)?;
    let receipts = pb::trust_registry_client::TrustRegistryClient::new(channel)
        .list_receipts(pb::ListReceiptsRequest {})
        .await
        .map_err(|s| anyhow!("gateway refused to list receipts: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .receipts;
    let mut fetched = Vec::new();
    for (i, signed) in receipts.iter().enumerate() {
        let decoded = pb::DeletionReceipt::decode(signed.receipt.as_slice()).ok();
        // A code only (it names a file): anything else is `unknown`.
        let province_label = decoded
            .as_ref()
            .and_then(|r| r.province.parse::<huren_pki::ProvinceCode>().ok())
            .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
        let (path, outcome) = match verify_receipt(trust, signed, None) {
            Ok(receipt) => (
                out.join(format!("{}-{}-{}.receipt", receipt.province, receipt.time, safe(&receipt.reason))),
                FetchOutcome::Verified { verified: true, receipt },
            ),
            Err(e) => (
                out.join("refused").join(format!("{province_label}-{i}.receipt")),
                FetchOutcome::Refused { verified: false, error: e.to_string() },
            ),
        };
        huren_pki::fsio::write_atomic(&path, &signed.encode_to_vec())
            .with_context(|| format!("writing {}", path.display()))?;
        fetched.push(FetchedReceipt { province: province_label, file: path.display().to_string(), outcome });
    }
    Ok(fetched)
}

/// A reason label safe in a file name.
fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
