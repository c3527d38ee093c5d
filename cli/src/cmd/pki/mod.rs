//! `huren pki`: the coordinator's national PKI — root, provinces, role certificates,
//! revocations — and the registry it signs into the trust list. Registry edits live in
//! [`registry`], the signed list itself in [`trust_list`] (rendered whole by [`describe`]),
//! listings in [`list`], and the federation's state as the console sees it in [`status`].

pub mod describe;
pub mod list;

pub mod bundle;
pub mod registry;
pub mod status;
pub mod trust_list;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use huren_pki::ca::Validity;
use huren_pki::endpoint::HostName;
use huren_pki::registry::PkiDir;
use huren_pki::unix_now;

use crate::usage;
use registry::{HubRegistryCommand, KeyCommand, ProvinceCommand, PurposeCommand, RuleCommand};
use trust_list::TrustListCommand;

/// `huren pki --help`: the order of a coordinator's first day.
pub const FIRST_DAY: &str = "\
A coordinator's first day, in order:
  1. choose where each province node will listen (its endpoint goes into the trust list)
  2. huren pki init                                  national root; keep root/ca.key offline
  3. huren pki province add 340000 --name Anhui --endpoint https://10.1.0.5:7443
  4. huren pki rule add --id NHC-CC-2022-9 --title \"Close contact\" --may-assign RED \\
       --max-duration-seconds 1209600 --authority 340000/hefei-cdc
  5. huren pki hub register sd-jinan-highway-g3 --purpose transit.highway
  6. huren pki issue coordinator nhc                 your own identity, to upload trust lists
  7. huren pki trust-list sign                       then: huren pki trust-list show
  8. huren pki bundle node 340000 --out node-340000  and admin, authority, gateway, hub bundles:
                                                     hand each party its folder
  9. after the gateway runs: huren pki trust-list upload --gateway <host:port> with your
     coordinator certificate, after every change (sign, diff, upload)";

#[derive(Debug, Args)]
pub struct PkiArgs {
    /// The coordinator's PKI directory.
    #[arg(long, global = true, env = "HUREN_PKI_DIR", default_value = "huren-pki")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the national root CA.
    #[command(
        after_help = "Examples:\n  huren pki init\n  huren pki --dir /secure/huren-pki init --trust-domain huren.gov --days 7300"
    )]
    Init {
        /// SPIFFE trust domain of every identity the root vouches for.
        #[arg(long, default_value = huren_pki::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// Validity of the root certificate, in days (1..=36500).
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Provinces of the federation.
    #[command(
        after_help = "Examples:\n  huren pki province add 340000 --name Anhui --endpoint https://10.1.0.5:7443\n  huren pki province retire 410000"
    )]
    Province {
        #[command(subcommand)]
        command: ProvinceCommand,
    },
    /// The rule registry.
    #[command(
        after_help = "Example:\n  huren pki rule add --id NHC-CC-2022-9 --title \"Close contact\" --may-assign RED --max-duration-seconds 1209600 --authority 340000/hefei-cdc"
    )]
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// Issue a role certificate: node|admin <province-code>, authority <province-code>/<name>,
    /// gateway|hub|coordinator|auditor <name>.
    /// Writes <dir>/issued/<kind>-<name>/{cert,key}.pem (an authority's / written -).
    #[command(
        after_help = "Examples:\n  huren pki issue node 340000\n  huren pki issue authority 340000/hefei-cdc\n  huren pki issue hub sd-jinan-highway-g3 --purpose transit.highway"
    )]
    Issue {
        /// node, admin, authority, gateway, hub, coordinator or auditor.
        kind: String,
        /// Province code (node, admin), <province-code>/<name> (authority) or name.
        name: String,
        /// Validity of the certificate, in days (1..=36500).
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// For hubs: register the hub for this purpose too (repeatable).
        #[arg(long = "purpose")]
        purposes: Vec<String>,
        /// For nodes and gateways: a DNS name clients reach the server at, carried as a DNS
        /// SAN so stock TLS clients' hostname checks pass (repeatable). Without --dns and
        /// --ip, a node's certificate names the hosts of its province's registered endpoints.
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// For nodes and gateways: an IP address clients reach the server at, carried as an
        /// IP SAN (repeatable).
        #[arg(long = "ip")]
        ips: Vec<String>,
    },
    /// Transport hub registrations (which purposes each hub may declare).
    #[command(
        after_help = "Example:\n  huren pki hub register sd-jinan-highway-g3 --purpose transit.highway --province 370000"
    )]
    Hub {
        #[command(subcommand)]
        command: HubRegistryCommand,
    },
    /// The field policy: which attestation fields may cross a border, per purpose.
    #[command(
        after_help = "Example:\n  huren pki purpose set venue.entry --field version --field province --field status --field issued_at --field expires_at --field token_digest --field rule_id --field purpose"
    )]
    Purpose {
        #[command(subcommand)]
        command: PurposeCommand,
    },
    /// Retention windows (0 = built-in default).
    #[command(
        after_help = "Example (30 days, 180 days, 30 s):\n  huren pki retention --status-max-age-seconds 2592000 --audit-max-age-seconds 15552000 --cache-max-seconds 30"
    )]
    Retention {
        /// How long a node keeps a status record after its last change, seconds (0 = 30 days).
        #[arg(long, default_value_t = 0)]
        status_max_age_seconds: i64,
        /// How long a node serves transparency log entries, seconds (0 = 180 days); their
        /// leaf hashes stay.
        #[arg(long, default_value_t = 0)]
        audit_max_age_seconds: i64,
        /// Longest time a gateway caches an attestation, seconds (0 = 30 s).
        #[arg(long, default_value_t = 0)]
        cache_max_seconds: i64,
    },
    /// Bounds on every attestation's validity, checked by every verifier.
    #[command(after_help = "Example:\n  huren pki attestation-bounds --max-lifetime-seconds 1800")]
    AttestationBounds {
        /// Longest `expires_at - issued_at` accepted, seconds (0 = built-in default, 3600).
        #[arg(long, default_value_t = 0)]
        max_lifetime_seconds: i64,
    },
    /// How long nodes keep each subject's disclosure log (who checked them), signed into
    /// the trust list; nodes purge older records continuously.
    #[command(
        after_help = "Example:\n  huren pki disclosure-retention --max-age-seconds 2592000   # 30 days\n  huren pki trust-list sign"
    )]
    DisclosureRetention {
        /// Seconds a disclosure record is kept (0 = built-in default, 30 days).
        #[arg(long, default_value_t = 0)]
        max_age_seconds: i64,
    },
    /// Order the federation to end: gateways stop routing, nodes purge and hand in receipts.
    #[command(after_help = "Example:\n  huren pki sunset --at 1767225600 --reason \"Emergency measures ended\"")]
    Sunset {
        /// Effective time, Unix seconds (default: now).
        #[arg(long)]
        at: Option<i64>,
        /// Why the federation ends, as published in the trust list.
        #[arg(long)]
        reason: String,
    },
    /// Attestation keys: add (published), activate, retire, revoke.
    #[command(after_help = "Examples:\n  huren pki key add 340000\n  huren pki key activate 340000 80b3787c8cca1ac2")]
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Revoke a certificate: by role and name as issued here, or by serial.
    #[command(
        after_help = "Examples:\n  huren pki revoke hub sd-jinan-highway-g3\n  huren pki revoke --serial \"$(openssl x509 -serial -noout -in lost.pem)\""
    )]
    Revoke {
        /// node|admin|gateway|hub|coordinator|auditor
        kind: Option<String>,
        /// Province code (node, admin) or name.
        name: Option<String>,
        /// Serial number instead of kind and name, as openssl or a browser prints it:
        /// 8F1A…, 8f:1a:…, 008F1A…, 0x8F1A…, serial=8F1A… (`openssl x509 -serial`).
        #[arg(long, conflicts_with_all = ["kind", "name"])]
        serial: Option<String>,
    },
    /// The signed trust list.
    #[command(after_help = "Examples:\n  huren pki trust-list sign\n  huren pki trust-list show")]
    TrustList {
        #[command(subcommand)]
        command: TrustListCommand,
    },
    /// List provinces, hubs, keys, certificates or rules (keys and certificates with days left).
    #[command(
        after_help = "Examples:\n  huren pki list provinces\n  huren pki list keys --json            # soonest expiry first, with days left"
    )]
    List(list::ListArgs),
    /// The federation now, as the console shows it: nodes, trust-list sequences, breakers,
    /// expiries, traffic, sunset receipts (coordinator or auditor identity).
    #[command(
        after_help = "Example:\n  huren pki status --gateway 127.0.0.1:8443 --cert huren-pki/issued/coordinator-nhc/cert.pem \\\n    --key huren-pki/issued/coordinator-nhc/key.pem --ca huren-pki/root/ca.pem\n\nExits 1 when something needs attention (a node down, a key or certificate expired,\nreceipts missing after a sunset)."
    )]
    Status(status::StatusArgs),

    /// Write everything one party needs into one folder to hand over: certificate chain and
    /// key, national root, current trust list, a node's attestation keys, a filled-in
    /// configuration, and what to run.
    #[command(
        after_help = "Examples:\n  huren pki bundle node 340000 --out node-340000 --gateway 10.0.0.2:8443\n  huren pki bundle gateway national-1 --out gateway --listen 0.0.0.0:8443\n  huren pki bundle hub sd-jinan-highway-g3 --out hub"
    )]
    Bundle(bundle::BundleArgs),
}

/// Runs `huren pki …`.
pub async fn run(args: PkiArgs) -> Result<()> {
    let dir = args.dir;
    match args.command {
        PkiCommand::Init { trust_domain, days } => {
            let pki = PkiDir::init(&dir, &trust_domain, validity(days)?)?;
            println!("national root created: {}", pki.root_cert_path().display());
            println!("keep {} offline", dir.join("root/ca.key").display());
        }
        PkiCommand::Province { command } => registry::province(&dir, command)?,
        PkiCommand::Rule { command } => registry::rule(&dir, command)?,
        PkiCommand::Key { command } => registry::key(&dir, command)?,
        PkiCommand::Hub { command } => registry::hub(&dir, command)?,
        PkiCommand::Purpose { command } => registry::purpose(&dir, command)?,
        PkiCommand::Revoke { kind, name, serial } => {
            let pki = PkiDir::open(&dir)?;
            let serial = match (kind, name, serial) {
                (_, _, Some(serial)) => {
                    // A serial that is no serial is a usage error (exit 64), caught before
                    // the registry is touched.
                    let serial = huren_pki::serial::parse(&serial).map_err(usage)?;
                    pki.revoke_serial(&serial)?
                }
                (Some(kind), Some(name), None) => pki.revoke_issued(&kind, &name)?,
                _ => return Err(usage("give <kind> <name> or --serial <serial>")),
            };
            println!("certificate {serial} revoked; sign and upload a new trust list to publish it");
        }
        PkiCommand::Retention { status_max_age_seconds, audit_max_age_seconds, cache_max_seconds } => {
            PkiDir::open(&dir)?.set_retention(huren_pki::registry::RegistryRetention {
                status_max_age_seconds,
                audit_max_age_seconds,
                cache_max_seconds,
            })?;
            println!("retention set; sign and upload a new trust list to publish it");
        }
        PkiCommand::AttestationBounds { max_lifetime_seconds } => {
            PkiDir::open(&dir)?
                .set_attestation_bounds(huren_pki::registry::RegistryAttestationBounds { max_lifetime_seconds })?;
            println!("attestation bounds set; sign and upload a new trust list to publish it");
        }
        PkiCommand::DisclosureRetention { max_age_seconds } => {
            PkiDir::open(&dir)?.set_disclosure_retention(max_age_seconds)?;
            println!("disclosure retention set; sign and upload a new trust list to publish it");
        }
        PkiCommand::Sunset { at, reason } => {
            let at = at.unwrap_or_else(unix_now);
            PkiDir::open(&dir)?.set_sunset(at, &reason)?;
            println!(
                "sunset ordered for {}; sign and upload a new trust list to publish it",
                huren_client::rfc3339(at)
            );
        }
        PkiCommand::Issue { kind, name, days, purposes, dns, ips } => {
            let pki = PkiDir::open(&dir)?;
            let names = host_names(&kind, &dns, &ips)?;
            if !purposes.is_empty() {
                if kind != "hub" {
                    return Err(usage("--purpose is for hub certificates"));
                }
                pki.register_hub(&name, &purposes)?;
            }
            let issued = pki.issue_named(&kind, &name, names.as_deref(), validity(days)?)?;
            println!("{}", issued.identity);
            println!("cert:   {}", issued.cert.display());
            println!("key:    {}", issued.key.display());
            println!("serial: {}", issued.serial_hex);
            if matches!(kind.as_str(), "node" | "gateway") {
                let names: Vec<String> = issued.names.iter().map(ToString::to_string).collect();
                if names.is_empty() {
                    println!("names:  none (stock TLS clients cannot check this server's name; give --dns or --ip)");
                } else {
                    println!("names:  {}", names.join(", "));
                }
            }
        }
        PkiCommand::TrustList { command } => trust_list::run(&dir, command).await?,
        PkiCommand::List(args) => list::run(&dir, args)?,
        PkiCommand::Status(args) => status::run(&dir, args).await?,

        PkiCommand::Bundle(args) => bundle::run(&dir, args)?,
    }
    Ok(())
}

/// The `--dns` and `--ip` names of `pki issue`; `None` when neither was given (the
/// registry's defaults). Names for a role that serves nothing are a usage error.
fn host_names(kind: &str, dns: &[String], ips: &[String]) -> Result<Option<Vec<HostName>>> {
    if dns.is_empty() && ips.is_empty() {
        return Ok(None);
    }
    if !matches!(kind, "node" | "gateway") {
        return Err(usage("--dns and --ip are for server certificates (node, gateway)"));
    }
    let mut names = Vec::new();
    for name in dns {
        names.push(HostName::dns(name).map_err(usage)?);
    }
    for ip in ips {
        let ip = ip.parse().map_err(|_| usage(format!("--ip {ip:?} is not an IPv4 or IPv6 address")))?;
        names.push(HostName::Ip(ip));
    }
    Ok(Some(names))
}

/// A certificate or key validity of `days` (1 to 36500).
pub(crate) fn validity(days: i64) -> Result<Validity> {
    if !(1..=36_500).contains(&days) {
        return Err(usage("--days must be within 1..=36500"));
    }
    Ok(Validity::days(days))
}
