//! `huren pki list provinces|hubs|keys|certs|rules`: what the signed trust list (and the
//! PKI directory, for certificates) holds, as a table or `--json`. Keys and certificates
//! come with their expiry and days left ([`huren_console::inventory`], as the console
//! shows them).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, ValueEnum};
use huren_pki::registry::PkiDir;
use huren_pki::TrustList;
use serde_json::{json, Value};

use super::describe::trust_list_json;
use crate::cmd::read_root;
use crate::usage;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListWhat {
    Provinces,
    Hubs,
    Keys,
    Certs,
    Rules,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// What to list.
    pub what: ListWhat,
    /// Trust list file (default: the PKI directory's trust-list.bin).
    #[arg(long)]
    pub trust_list: Option<PathBuf>,
    /// National root certificate (default: the PKI directory's root).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `huren pki list …` on the PKI directory `dir`.
pub(crate) fn run(dir: &Path, args: ListArgs) -> Result<()> {
    let pki = PkiDir::open(dir).ok();
    let need_pki = || {
        pki.clone()
            .ok_or_else(|| usage(format!("{} is not a Huren PKI directory; give --trust-list and --ca", dir.display())))
    };
    let file = match &args.trust_list {
        Some(f) => f.clone(),
        None => need_pki()?.trust_list_path(),
    };
    let ca = match &args.ca {
        Some(c) => c.clone(),
        None => need_pki()?.root_cert_path(),
    };
    let trust = TrustList::load(&file, &read_root(&ca)?).map_err(usage)?;
    let rows = rows(&trust, pki.as_ref(), args.what, huren_pki::unix_now());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows, args.what));
    }
    Ok(())
}

/// The rows of one listing, as JSON objects.
pub fn rows(trust: &TrustList, pki: Option<&PkiDir>, what: ListWhat, now: i64) -> Vec<Value> {
    let full = trust_list_json(trust);
    let arr = |k: &str| full[k].as_array().cloned().unwrap_or_default();
    match what {
        ListWhat::Provinces => arr("provinces")
            .into_iter()
            .map(|p| {
                let ca_after = p["ca_certificate"]["not_after"].as_i64();
                let active: Vec<Value> = p["attestation_keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|k| k["status"] == "KEY_STATUS_ACTIVE")
                    .map(|k| k["kid"].clone())
                    .collect();
                json!({
                    "code": p["code"], "name": p["name"], "endpoints": p["endpoints"],
                    "active_keys": active,
                    "keys": p["attestation_keys"].as_array().map_or(0, Vec::len),
                    "ca_serial": p["ca_certificate"]["serial"],
                    "ca_not_after": ca_after,
                    "ca_days_left": ca_after.map(|t| huren_console::model::days_left(t, now)),
                })
            })
            .collect(),
        ListWhat::Hubs => arr("hubs"),
        ListWhat::Rules => arr("rules"),
        ListWhat::Keys => huren_console::inventory::keys(trust, now)
            .into_iter()
            .map(|k| serde_json::to_value(k).unwrap_or_default())
            .collect(),
        ListWhat::Certs => huren_console::inventory::certs(trust, pki, now)
            .into_iter()
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect(),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The rows as an aligned text table with the columns of `what`.
pub fn table(rows: &[Value], what: ListWhat) -> String {
    let columns: &[&str] = match what {
        ListWhat::Provinces => &["code", "name", "endpoints", "active_keys", "keys", "ca_days_left"],
        ListWhat::Hubs => &["id", "province", "purposes"],
        ListWhat::Keys => &["province", "kid", "status", "days_left"],
        ListWhat::Certs => &["what", "serial", "days_left", "revoked"],
        ListWhat::Rules => &["id", "may_assign", "lapses_to", "max_duration_seconds", "authorities", "may_lift"],
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| columns.iter().map(|c| cell(&r[*c])).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |vals: Vec<String>| {
        let mut l = vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ");
        l.truncate(l.trim_end().len());
        l + "\n"
    };
    let mut out = line(columns.iter().map(|c| c.to_string()).collect());
    for r in cells {
        out.push_str(&line(r));
    }
    out
}
