//! `huren demo`: start a three-province federation on loopback, tell its story
//! ([`crate::demo`]), then keep serving (or, with `--once`, stop).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::cmd::shutdown_signal;
use crate::federation::FederationOptions;
use crate::{demo, UsageError};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run the story once and exit (0 when every step behaved as expected).
    #[arg(long)]
    pub once: bool,
    /// Print one JSON object with each step's outcome.
    #[arg(long)]
    pub json: bool,
    /// Keep the federation's files here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Record every message crossing the gateway to this file (JSON lines), for
    /// inspection: what really crosses a province border.
    #[arg(long)]
    pub capture: Option<PathBuf>,
    /// Once the federation serves, write where it is to this JSON file (written whole,
    /// then renamed into place): addresses, certificate paths, the trust list, the seeded
    /// travellers' tokens and QR strings. For scripts such as `examples/run.sh`.
    #[arg(long, conflicts_with = "once")]
    pub info: Option<PathBuf>,
}

/// Runs `huren demo`.
pub async fn run(args: DemoArgs) -> Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            if d.join("pki").exists() {
                bail!(UsageError(format!("{} already holds a demo federation; choose an empty folder", d.display())));
            }
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("huren-demo-").tempdir()?;
            temp.path().to_owned()
        }
    };
    // Tokens live an hour when the demo keeps serving, so the printed commands keep working.
    let lifetime = if args.once { 300 } else { 3600 };
    let mut options = FederationOptions::default();
    if let Some(path) = &args.capture {
        let capture =
            huren_gateway::FileCapture::create(path).with_context(|| format!("creating {}", path.display()))?;
        options.gateway.capture = Some(std::sync::Arc::new(capture));
    }
    let (federation, qrs, report) = demo::run(&dir, lifetime, options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        demo::print_human(&report);
    }
    if args.once {
        federation.shutdown().await?;
        if !report.ok {
            bail!("the demo story did not go as expected");
        }
        return Ok(());
    }
    if let Some(path) = &args.info {
        let text = serde_json::to_string_pretty(&demo::info(&federation, &qrs)?)?;
        huren_pki::fsio::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    let pki = federation.pki.path().to_owned();
    let hub_dir = pki.join("issued/hub-sd-jinan-highway-g3");
    eprintln!("\nThe federation keeps serving. Query it from another terminal, e.g.:");
    for (s, issued) in &qrs {
        eprintln!(
            "  huren hub lookup --gateway {} --cert {} --key {} --ca {} --purpose transit.highway {}:{}    # {}",
            federation.gateway_addr(),
            hub_dir.join("cert.pem").display(),
            hub_dir.join("key.pem").display(),
            pki.join("root/ca.pem").display(),
            s.province,
            huren_pki::qr::token_to_text(&issued.token),
            s.subject_ref,
        );
    }
    eprintln!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    federation.shutdown().await
}
