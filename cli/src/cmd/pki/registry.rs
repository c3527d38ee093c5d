//! `huren pki province|rule|key|hub|purpose`: edits to the registry that the next
//! signed trust list publishes.

use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use huren_pki::registry::{PkiDir, RegistryRule};
use huren_pki::ProvinceCode;

use super::validity;
use crate::usage;

#[derive(Debug, Subcommand)]
pub enum ProvinceCommand {
    /// Admit a province: create its CA and first attestation key.
    #[command(after_help = "Example:\n  huren pki province add 340000 --name Anhui --endpoint https://10.1.0.5:7443")]
    Add {
        /// Six-digit GB/T 2260 province code, e.g. 340000.
        code: String,
        /// The province's name, e.g. Anhui.
        #[arg(long)]
        name: String,
        /// Node endpoint, e.g. https://10.0.0.5:7443 (repeatable).
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
        /// Validity of the province CA and its first attestation key, in days (1..=36500).
        #[arg(long, default_value_t = 1825)]
        days: i64,
    },
    /// Replace a province's node endpoints.
    #[command(
        after_help = "Example:\n  huren pki province set-endpoint 340000 https://10.1.0.5:7443 https://10.1.0.6:7443"
    )]
    SetEndpoint {
        /// Six-digit province code.
        code: String,
        /// Node endpoints, https://host:port or host:port.
        endpoints: Vec<String>,
    },
    /// Remove a province from the federation (its CA certificate is revoked).
    #[command(after_help = "Example:\n  huren pki province retire 410000")]
    Retire {
        /// Six-digit province code.
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add or replace a rule.
    #[command(
        after_help = "Example:\n  huren pki rule add --id NHC-CC-2022-9 --title \"Close contact of a confirmed case\" \\\n    --legal-basis \"NHC notice 2022/9\" --may-assign RED --max-duration-seconds 1209600 \\\n    --exit-condition \"14 days without symptoms\" --lapses-to GREEN --authority 340000/hefei-cdc"
    )]
    Add(RuleArgs),
}

// The registry entry of one rule: `huren pki rule add`.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Rule id, cited by every non-green status under it, e.g. NHC-CC-2022-9.
    #[arg(long)]
    pub id: String,
    /// Title, shown to hubs and travellers.
    #[arg(long)]
    pub title: String,
    /// The legal basis of the rule (a notice, a law and article).
    #[arg(long, default_value = "")]
    pub legal_basis: String,
    /// Status the rule may assign: YELLOW or RED (repeatable).
    #[arg(long = "may-assign")]
    pub may_assign: Vec<String>,
    /// Longest a status under the rule may last, seconds (required: a rule without it cannot
    /// be applied), e.g. 1209600 for 14 days.
    #[arg(long, default_value_t = 0)]
    pub max_duration_seconds: i64,
    /// How the status ends, in words (e.g. "two negative tests 24 h apart").
    #[arg(long, default_value = "")]
    pub exit_condition: String,
    /// Authority allowed to apply the rule, as <province-code>/<name> (repeatable; at
    /// least one). Only that authority's own certificate can then assign the status.
    #[arg(long = "authority")]
    pub authorities: Vec<String>,
    /// What the status becomes once it lapses (GREEN or YELLOW); default: no current status.
    #[arg(long)]
    pub lapses_to: Option<String>,
    /// Authorities that may lift the rule's status before it lapses, as
    /// <province-code>/<name> (comma-separated or repeated); default: the authorities that
    /// may apply it. The province admin never may.
    #[arg(long = "may-lift", value_delimiter = ',')]
    pub may_lift: Vec<String>,
}

impl From<RuleArgs> for RegistryRule {
    fn from(a: RuleArgs) -> Self {
        RegistryRule {
            id: a.id,
            title: a.title,
            legal_basis: a.legal_basis,
            may_assign: a.may_assign,
            max_duration_seconds: a.max_duration_seconds,
            exit_condition: a.exit_condition,
            authorities: a.authorities,
            lapses_to: a.lapses_to,
            may_lift: a.may_lift,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum HubRegistryCommand {
    /// Register (or re-register) a hub with the purposes it may declare.
    #[command(
        after_help = "Example:\n  huren pki hub register sd-jinan-highway-g3 --purpose transit.highway --province 370000"
    )]
    Register {
        /// The hub's id, as in its certificate (spiffe://<td>/hub/<id>).
        id: String,
        /// A purpose the hub may declare (repeatable): transit.rail, transit.highway,
        /// transit.air, transit.general, venue.entry, or one added with `pki purpose set`.
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// The province (code) where the hub checks travellers: lookups are then counted by
        /// province pair.
        #[arg(long)]
        province: Option<String>,
        /// The hub's name as travellers read it in their disclosure log, e.g.
        /// "Jinan West railway station".
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PurposeCommand {
    /// Set the attestation fields allowed for a purpose (adds the purpose if new).
    #[command(
        after_help = "Example:\n  huren pki purpose set transit.ferry --field version --field province --field status \\\n    --field issued_at --field expires_at --field token_digest --field rule_id --field purpose --field test_recency"
    )]
    Set {
        /// Purpose name, dotted lowercase words, e.g. transit.ferry.
        name: String,
        /// An allowed field (repeatable). Every purpose must allow version, province,
        /// status, issued_at, expires_at, token_digest, rule_id and purpose (without them
        /// an attestation cannot be checked); test_recency is the one optional field.
        #[arg(long = "field", required = true)]
        fields: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Prepare a rotation: generate a key and publish it (verifies, does not sign yet).
    #[command(after_help = "Example:\n  huren pki key add 340000")]
    Add {
        /// Six-digit province code.
        code: String,
        /// Validity of the key, in days (1..=36500).
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Make a key the one nodes sign with; the previously active key is retired.
    #[command(after_help = "Example:\n  huren pki key activate 340000 80b3787c8cca1ac2")]
    Activate {
        /// Six-digit province code.
        code: String,
        /// Key id, 16 hex digits (as `key add` and `trust-list show` print it).
        kid: String,
    },
    /// Stop signing with a key; it verifies until its not_after.
    #[command(after_help = "Example:\n  huren pki key retire 340000 80b3787c8cca1ac2")]
    Retire {
        /// Six-digit province code.
        code: String,
        /// Key id, 16 hex digits.
        kid: String,
    },
    /// Revoke a key: nothing it signed verifies any more, online or offline.
    #[command(after_help = "Example:\n  huren pki key revoke 340000 80b3787c8cca1ac2")]
    Revoke {
        /// Six-digit province code.
        code: String,
        /// Key id, 16 hex digits.
        kid: String,
    },
}

fn province_code(code: &str) -> Result<ProvinceCode> {
    code.parse().map_err(usage)
}

/// `huren pki province …`
pub(crate) fn province(dir: &Path, command: ProvinceCommand) -> Result<()> {
    match command {
        ProvinceCommand::Add { code, name, endpoints, days } => {
            let code = province_code(&code)?;
            let pki = PkiDir::open(dir)?;
            let key = pki.add_province(&code, &name, &endpoints, validity(days)?)?;
            println!("province {code} {name} admitted; attestation key {} (active)", key.kid());
            println!("sign a new trust list to publish it: huren pki trust-list sign");
        }
        ProvinceCommand::SetEndpoint { code, endpoints } => {
            let code = province_code(&code)?;
            PkiDir::open(dir)?.set_endpoints(&code, &endpoints)?;
            println!("province {code} endpoints set; sign a new trust list to publish them");
        }
        ProvinceCommand::Retire { code } => {
            let code = province_code(&code)?;
            PkiDir::open(dir)?.retire_province(&code)?;
            println!("province {code} retired and its CA revoked; sign and upload a new trust list to publish it");
        }
    }
    Ok(())
}

/// `huren pki rule …`
pub(crate) fn rule(dir: &Path, command: RuleCommand) -> Result<()> {
    let RuleCommand::Add(rule) = command;
    let id = rule.id.clone();
    PkiDir::open(dir)?.put_rule(rule.into())?;
    println!("rule {id} registered; sign a new trust list to publish it");
    Ok(())
}

/// `huren pki key …`
pub(crate) fn key(dir: &Path, command: KeyCommand) -> Result<()> {
    let pki = PkiDir::open(dir)?;
    let (code, kid, status) = match command {
        KeyCommand::Add { code, days } => {
            let code = province_code(&code)?;
            let key = pki.add_key(&code, validity(days)?)?;
            let kid = key.kid().hex();
            // Nothing is signed or uploaded yet: say what is still to do, in order.
            println!("key {kid} of province {code} added to the registry as published (verifies, signs nothing)");
            println!("still to do:");
            println!("  1. publish it: huren pki trust-list sign, then huren pki trust-list upload …");
            println!(
                "  2. give {} to the province node's key folder (or re-run huren pki bundle node {code})",
                pki.attestation_key_path(&code, &kid).display()
            );
            println!("  3. once the node holds it: huren pki key activate {code} {kid}, then sign and upload again");
            return Ok(());
        }
        KeyCommand::Activate { code, kid } => (code, kid, "active"),
        KeyCommand::Retire { code, kid } => (code, kid, "retired"),
        KeyCommand::Revoke { code, kid } => (code, kid, "revoked"),
    };
    let code = province_code(&code)?;
    pki.set_key_status(&code, &kid, status)?;
    println!("key {kid} of province {code} is now {status}; sign and upload a new trust list to publish it");
    Ok(())
}

/// `huren pki hub …`
pub(crate) fn hub(dir: &Path, command: HubRegistryCommand) -> Result<()> {
    let HubRegistryCommand::Register { id, purposes, province, name } = command;
    let province = province.as_deref().map(province_code).transpose()?;
    let pki = PkiDir::open(dir)?;
    pki.register_hub(&id, &purposes)?;
    pki.set_hub_province(&id, province.as_ref())?;
    if name.is_some() {
        pki.set_hub_name(&id, name.as_deref())?;
    }
    println!("hub {id} registered for {}; sign and upload a new trust list to publish it", purposes.join(", "));
    Ok(())
}

/// `huren pki purpose …`
pub(crate) fn purpose(dir: &Path, command: PurposeCommand) -> Result<()> {
    let PurposeCommand::Set { name, fields } = command;
    PkiDir::open(dir)?.set_purpose(&name, &fields)?;
    println!("purpose {name} allows {}; sign and upload a new trust list to publish it", fields.join(", "));
    Ok(())
}
