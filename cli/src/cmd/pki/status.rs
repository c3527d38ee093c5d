//! `huren pki status`: the console's summary in the terminal — trust list, every
//! province's node health and sequence held, breakers, what expires first, traffic and
//! violations over the last hour, sunset receipts. Exits 1 when something needs attention
//! (gateway unreachable, a province down, an expired key or certificate, receipts missing
//! after a sunset), with the summary printed first.

use anyhow::{bail, Result};
use clap::Args;
use huren_console::model::{Health, ReceiptState, Tile};
use huren_console::Console;
use huren_pki::registry::PkiDir;

use crate::cmd::console::SourceArgs;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Print the whole picture as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `huren pki status` (`dir`: the PKI directory, used when it exists).
pub(crate) async fn run(dir: &std::path::Path, args: StatusArgs) -> Result<()> {
    let pki = PkiDir::open(dir).ok();
    let console = Console::new(args.sources.sources(pki)?);
    let o = console.overview().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else {
        print!("{}", text(&o));
    }
    let mut problems = Vec::new();
    if let Some(e) = &o.gateway.error {
        problems.push(format!("gateway unreachable ({e})"));
    }
    let down = o.provinces.iter().filter(|p| p.tile == Tile::Down).count();
    if down > 0 {
        problems.push(format!("{down} province(s) not serving"));
    }
    let expired = o.keys.iter().filter(|k| k.days_left < 0 && k.status == "active").count()
        + o.certs.iter().filter(|c| c.days_left < 0 && !c.revoked).count();
    if expired > 0 {
        problems.push(format!("{expired} expired key(s) or certificate(s)"));
    }
    if let Some(s) = o.sunset.as_ref().filter(|s| s.in_force) {
        let missing = s.receipts.iter().filter(|r| !matches!(r.state, ReceiptState::Verified { .. })).count();
        if missing > 0 {
            problems.push(format!("{missing} sunset receipt(s) missing or invalid"));
        }
    }
    if !problems.is_empty() {
        bail!("needs attention: {}", problems.join("; "));
    }
    Ok(())
}

/// The summary as text.
pub fn text(o: &huren_console::Overview) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let when = huren_client::rfc3339;
    match &o.trust {
        Some(t) => {
            let _ = writeln!(
                s,
                "trust list sequence {} (from the {}), signed {}, next update {}{}",
                t.sequence,
                t.source,
                when(t.issued_at),
                when(t.next_update),
                if t.stale { " — STALE" } else { "" }
            );
            let _ = writeln!(
                s,
                "{} provinces, {} hubs, {} rules, {} revoked",
                o.provinces.len(),
                t.hubs,
                t.rules,
                t.revoked
            );
        }
        None => s.push_str("no trust list: the gateway could not be asked and no PKI directory was found\n"),
    }
    match (&o.gateway.sequence, &o.gateway.error) {
        (Some(q), _) => {
            let _ = writeln!(s, "gateway {}: serves sequence {q}", o.gateway.address);
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "gateway {}: UNREACHABLE: {e}", o.gateway.address);
        }
        _ => {}
    }
    let _ = writeln!(s, "\n{:<8} {:<12} {:<13} {:>5} {:<10}", "province", "name", "node", "seq", "breaker");
    for p in &o.provinces {
        let health = match &p.health {
            Health::Serving => "serving".to_owned(),
            other => other.word().to_uppercase(),
        };
        let _ = writeln!(
            s,
            "{:<8} {:<12} {:<13} {:>5} {:<10}",
            p.code,
            p.name,
            health,
            p.sequence_held.map(|q| q.to_string()).unwrap_or_else(|| "-".into()),
            p.breaker.map(|b| b.word()).unwrap_or("-")
        );
    }
    if let Some(k) = o.keys.iter().find(|k| k.status != "revoked") {
        let _ =
            writeln!(s, "\nfirst key to expire: {}/{} ({}), {} days left", k.province, k.kid, k.status, k.days_left);
    }
    if let Some(c) = o.certs.iter().find(|c| !c.revoked) {
        let _ = writeln!(s, "first certificate to expire: {} (serial {}), {} days left", c.what, c.serial, c.days_left);
    }
    let t = &o.traffic;
    match &t.error {
        Some(e) => {
            let _ = writeln!(s, "\ntraffic: {e}");
        }
        None => {
            let lookups: u64 = t.lookups.iter().map(|l| l.count).sum();
            let violations: u64 = t.violations.iter().map(|v| v.count).sum();
            let window = if t.window_seconds == 0 {
                "since the gateway started".to_owned()
            } else {
                format!("over the last {} minutes", (t.window_seconds + 59) / 60)
            };
            let _ = writeln!(s, "\nlookups: {lookups}, policy violations: {violations} ({window})");
            for v in &t.violations {
                let _ = writeln!(s, "  violation {} {}: {}", v.province, v.reason, v.count);
            }
        }
    }
    if let Some(sun) = &o.sunset {
        let verified = sun.receipts.iter().filter(|r| matches!(r.state, ReceiptState::Verified { .. })).count();
        let _ = writeln!(
            s,
            "\nsunset {} {}: {verified} of {} receipts collected and verified",
            if sun.in_force { "in force since" } else { "ordered for" },
            when(sun.effective_at),
            sun.receipts.len()
        );
        for r in sun.receipts.iter().filter(|r| !matches!(r.state, ReceiptState::Verified { .. })) {
            let _ = writeln!(
                s,
                "  {}: {}",
                r.province,
                if r.state == ReceiptState::Missing { "missing" } else { "invalid" }
            );
        }
    }
    s
}
