//! Recording what crosses the gateway, for proof by inspection.
//!
//! With a [`CaptureSink`] configured, the gateway hands it every message it receives from
//! or sends to hubs and nodes, encoded exactly as on the wire. [`FileCapture`] writes one
//! JSON object per line: `{"rpc":"Lookup","direction":"hub->gateway","message":"<base64>"}`.
//! An auditor (or a test) can then decode every attestation and check it against the
//! field policy and against a list of personal data that must never appear.

use std::io::Write;
use std::sync::Mutex;

/// Receives every message that crosses the gateway.
pub trait CaptureSink: Send + Sync {
    /// Records one message of `rpc` (`Lookup`, `Attest`) going `direction`
    /// (`hub->gateway`, `gateway->node`, …), encoded exactly as on the wire.
    fn record(&self, rpc: &str, direction: &str, message: &[u8]);
}

/// Writes captured messages as JSON lines.
#[derive(Debug)]
pub struct FileCapture(Mutex<std::io::BufWriter<std::fs::File>>);

impl FileCapture {
    /// Writes to a new file at `path` (truncating one that exists).
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self(Mutex::new(std::io::BufWriter::new(std::fs::File::create(path)?))))
    }
}

impl CaptureSink for FileCapture {
    fn record(&self, rpc: &str, direction: &str, message: &[u8]) {
        let line = format!(
            "{{\"rpc\":\"{rpc}\",\"direction\":\"{direction}\",\"message\":\"{}\"}}\n",
            data_encoding::BASE64.encode(message)
        );
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = w.write_all(line.as_bytes()).and_then(|_| w.flush()) {
            tracing::error!(error = %e, "capture write failed");
        }
    }
}
