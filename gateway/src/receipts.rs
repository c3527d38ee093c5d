//! Deletion receipts handed in by nodes after a sunset, kept for coordinators and
//! auditors. Each is verified against the trust list before it is taken, persisted
//! (atomically) before it is acknowledged, and reloaded at start.

use std::path::PathBuf;
use std::sync::Mutex;

use huren_proto::pb;
use prost::Message;
use tokio::sync::watch;

/// The receipts a gateway holds.
#[derive(Debug)]
pub(crate) struct ReceiptStore {
    dir: Option<PathBuf>,
    receipts: Mutex<Vec<pb::SignedDeletionReceipt>>,
    count: watch::Sender<usize>,
}

impl ReceiptStore {
    /// Opens `dir` (if any), loading the receipts already there.
    pub(crate) fn open(dir: Option<PathBuf>) -> std::io::Result<Self> {
        let mut receipts = Vec::new();
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
            let mut paths: Vec<_> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "receipt")) {
                match pb::SignedDeletionReceipt::decode(std::fs::read(&path)?.as_slice()) {
                    Ok(r) => receipts.push(r),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "unreadable receipt skipped"),
                }
            }
        }
        let (count, _) = watch::channel(receipts.len());
        Ok(Self { dir, receipts: Mutex::new(receipts), count })
    }

    /// Persists and keeps a verified receipt; a byte-identical one is taken once.
    pub(crate) fn add(&self, province: &str, signed: pb::SignedDeletionReceipt) -> std::io::Result<()> {
        let mut receipts = self.receipts.lock().unwrap_or_else(|e| e.into_inner());
        if receipts.contains(&signed) {
            return Ok(());
        }
        if let Some(dir) = &self.dir {
            let digest = huren_translog::leaf_hash(&signed.receipt);
            let name = format!("{province}-{}.receipt", data_encoding::HEXLOWER.encode(&digest[..8]));
            huren_pki::fsio::write_atomic(&dir.join(name), &signed.encode_to_vec())?;
        }
        receipts.push(signed);
        self.count.send_replace(receipts.len());
        Ok(())
    }

    pub(crate) fn all(&self) -> Vec<pb::SignedDeletionReceipt> {
        self.receipts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The province of each sunset receipt held (one entry per receipt).
    pub(crate) fn sunset_provinces(&self) -> Vec<String> {
        let receipts = self.receipts.lock().unwrap_or_else(|e| e.into_inner());
        receipts
            .iter()
            .filter_map(|r| pb::DeletionReceipt::decode(r.receipt.as_slice()).ok())
            .filter(|r| r.reason == "sunset")
            .map(|r| r.province)
            .collect()
    }

    /// Number of receipts held, as it changes.
    pub(crate) fn watch(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }
}
