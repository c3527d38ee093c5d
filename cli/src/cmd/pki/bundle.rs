//! `huren pki bundle <kind> <name> --out <dir>`: everything one party needs, in one folder
//! to hand over — its certificate chain and key (issued now unless already issued), the
//! national root certificate, the current signed trust list, for a node its province's
//! attestation keys, for a node or a gateway a filled-in configuration, and a `README.txt`
//! saying what to run. The folder and the private files are readable by the owner only.
//!
//! Paths in the configuration are relative to the folder (configurations resolve relative
//! paths against their own folder), so the folder can be copied anywhere as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use huren_pki::registry::PkiDir;
use huren_pki::ProvinceCode;

use super::validity;
use crate::usage;

/// `huren pki bundle`.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The party: node or admin <province-code>, authority <province-code>/<name>,
    /// gateway, hub, coordinator or auditor <name>.
    #[arg(value_parser = ["node", "admin", "authority", "gateway", "hub", "coordinator", "auditor"])]
    pub kind: String,
    /// Province code (node, admin), <province-code>/<name> (authority) or name.
    pub name: String,
    /// Folder to write (created; files in it are replaced). Default: bundle-<kind>-<name>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// For node and gateway configurations: the gRPC address to listen on, ip:port
    /// (default: a node's endpoint from the registry; a gateway's 0.0.0.0:8443).
    #[arg(long)]
    pub listen: Option<String>,
    /// For node and gateway configurations: the plain-HTTP admin endpoint (/metrics,
    /// /healthz, /readyz), ip:port (default: the server's built-in default).
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// For a node: the gateway it follows the trust list from, host:port (default: none —
    /// the node then keeps the list in the bundle until given a newer one).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Validity of a certificate issued for the bundle, in days (1..=36500). A certificate
    /// issued earlier (`huren pki issue`) is reused as it is.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
}

/// What one file of a bundle is.
struct Written {
    path: PathBuf,
    what: &'static str,
}

/// Runs `huren pki bundle` on the PKI directory `dir`.
pub(crate) fn run(dir: &Path, args: BundleArgs) -> Result<()> {
    let pki = PkiDir::open(dir)?;
    let trust_list = pki.trust_list_path();
    if !trust_list.exists() {
        return Err(usage("no trust list has been signed yet: run `huren pki trust-list sign` first"));
    }
    let issued = pki.issued_dir(&args.kind, &args.name);
    let (cert, key) = (issued.join("cert.pem"), issued.join("key.pem"));
    let fresh = if cert.exists() && key.exists() {
        None
    } else {
        Some(pki.issue(&args.kind, &args.name, validity(args.days)?)?)
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bundle-{}-{}", args.kind, args.name.replace('/', "-"))));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    private_dir(&out)?;

    let mut written = Vec::new();
    let mut copy = |from: &Path, name: &str, what: &'static str, private: bool| -> Result<()> {
        let to = out.join(name);
        let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        huren_pki::fsio::write_atomic(&to, &bytes).with_context(|| format!("writing {}", to.display()))?;
        set_mode(&to, if private { 0o600 } else { 0o644 })?;
        written.push(Written { path: to, what });
        Ok(())
    };
    copy(&cert, "cert.pem", "certificate chain (leaf first)", false)?;
    copy(&key, "key.pem", "private key (owner-only)", true)?;
    copy(&pki.root_cert_path(), "ca.pem", "national root certificate", false)?;
    copy(&trust_list, "trust-list.bin", "current signed trust list", false)?;

    let mut config = None;
    match args.kind.as_str() {
        "node" => {
            let code: ProvinceCode = args.name.parse().map_err(usage)?;
            let registry = pki.registry()?;
            let province = registry.provinces.iter().find(|p| p.code == code.as_str()).ok_or_else(|| {
                usage(format!("province {code} is not registered (run `huren pki province add` first)"))
            })?;
            let keys = out.join("attestation-keys");
            std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
            private_dir(&keys)?;
            for k in province.keys.iter().filter(|k| matches!(k.status.as_str(), "published" | "active")) {
                let name = format!("attestation-{}.key", k.kid);
                copy(
                    &pki.attestation_key_path(&code, &k.kid),
                    &format!("attestation-keys/{name}"),
                    "attestation key (owner-only)",
                    true,
                )?;
            }
            let listen = match &args.listen {
                Some(l) => l.clone(),
                None => {
                    let endpoint = province.endpoints.first().ok_or_else(|| {
                        usage(format!(
                            "province {code} has no endpoint: give --listen ip:port, or set one with `huren pki province set-endpoint`"
                        ))
                    })?;
                    listen_for(endpoint)?
                }
            };
            let mut text = format!(
                "# Province {code} ({}) node: written by `huren pki bundle`; paths are relative to this file.\n\
                 # Every setting: `huren node --print-default-config`.\n\
                 province = \"{code}\"\nlisten = \"{listen}\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\nca = \"ca.pem\"\n\
                 # A folder: every attestation-*.key in it; the trust list says which one signs.\n\
                 attestation_key = \"attestation-keys\"\ntrust_list = \"trust-list.bin\"\ndata_dir = \"data\"\n",
                province.name
            );
            if let Some(a) = &args.admin_listen {
                text.push_str(&format!("admin_listen = \"{a}\"\n"));
            }
            if let Some(g) = &args.gateway {
                text.push_str(&format!("# Follow the trust list the gateway publishes.\ngateway = \"{g}\"\n"));
            }
            config = Some(("node.toml", text, format!("huren node --config {}", out.join("node.toml").display())));
        }
        "gateway" => {
            let listen = args.listen.clone().unwrap_or_else(|| "0.0.0.0:8443".to_owned());
            let mut text = format!(
                "# Gateway {}: written by `huren pki bundle`; paths are relative to this file.\n\
                 # Every setting: `huren gateway --print-default-config`.\n\
                 listen = \"{listen}\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\nca = \"ca.pem\"\n\
                 trust_list = \"trust-list.bin\"\ndata_dir = \"data\"\n",
                args.name
            );
            if let Some(a) = &args.admin_listen {
                text.push_str(&format!("admin_listen = \"{a}\"\n"));
            }
            config =
                Some(("gateway.toml", text, format!("huren gateway --config {}", out.join("gateway.toml").display())));
        }
        _ => {}
    }
    if let Some((name, text, _)) = &config {
        let path = out.join(name);
        huren_pki::fsio::write_atomic(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        set_mode(&path, 0o644)?;
        written.push(Written { path, what: "configuration, filled in" });
    }
    let next = next_steps(&args, &out, config.as_ref().map(|c| c.2.as_str()));
    let readme = out.join("README.txt");
    let identity =
        fresh.as_ref().map(|f| f.identity.to_string()).unwrap_or_else(|| format!("{} {}", args.kind, args.name));
    let mut text = format!("Huren bundle for {identity}\n\nFiles:\n");
    for w in &written {
        text.push_str(&format!("  {:<40} {}\n", w.path.strip_prefix(&out).unwrap_or(&w.path).display(), w.what));
    }
    text.push_str(&format!("\nNext:\n{next}"));
    huren_pki::fsio::write_atomic(&readme, text.as_bytes()).with_context(|| format!("writing {}", readme.display()))?;
    set_mode(&readme, 0o644)?;

    match &fresh {
        Some(f) => println!("issued {} (serial {})", f.identity, f.serial_hex),
        None => println!("using the certificate issued earlier in {}", issued.display()),
    }
    println!("bundle for {} {} written to {}:", args.kind, args.name, out.display());
    for w in &written {
        println!("  {:<48} {}", w.path.display(), w.what);
    }
    println!("next (also in {}):", readme.display());
    print!("{next}");
    Ok(())
}

/// What the receiving party does with the bundle.
fn next_steps(args: &BundleArgs, out: &Path, run: Option<&str>) -> String {
    let o = out.display();
    let tls = format!("--cert {o}/cert.pem --key {o}/key.pem --ca {o}/ca.pem");
    match args.kind.as_str() {
        "node" => format!(
            "  1. copy {o} to the node's machine, keep it owner-only (it holds the TLS and attestation keys)\n\
             \x20 2. start the node: {}\n\
             \x20 3. the province backend publishes statuses with its admin bundle (huren pki bundle admin {})\n",
            run.unwrap_or_default(),
            args.name
        ),
        "gateway" => format!(
            "  1. copy {o} to the gateway's machine, keep it owner-only\n\
             \x20 2. start the gateway: {}\n\
             \x20 3. publish each new trust list to it: huren pki trust-list upload --gateway <host:port> with a coordinator bundle\n",
            run.unwrap_or_default()
        ),
        "hub" => format!(
            "  1. copy {o} to the hub; the hub must be registered (huren pki hub register {} --purpose …)\n\
             \x20 2. look up: huren hub lookup --gateway <host:port> {tls} --trust-list-cache {o}/trust-list.bin --purpose <purpose> 'HRN1:…'\n\
             \x20 3. offline: huren hub verify --trust-list {o}/trust-list.bin --ca {o}/ca.pem 'HRN1:…'\n",
            args.name
        ),
        "admin" | "authority" => format!(
            "  1. copy {o} to the province's health-code backend, keep it owner-only\n\
             \x20 2. publish: huren admin status --node <host:port> {tls} <subject-ref> GREEN\n"
        ),
        "coordinator" => format!("  1. upload trust lists: huren pki trust-list upload --gateway <host:port> {tls}\n"),
        _ => format!("  1. audit: huren audit tree-head --province <code> --trust-list {o}/trust-list.bin {tls}\n"),
    }
}

/// The listen address for a node whose endpoint is `endpoint`: its own ip:port, or every
/// interface on that port when the endpoint names a host.
fn listen_for(endpoint: &str) -> Result<String> {
    let authority = huren_pki::endpoint::endpoint_authority(endpoint)
        .map_err(|_| usage(format!("endpoint {endpoint:?} is not https://host:port")))?;
    if authority.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(authority);
    }
    let port = authority.rsplit(':').next().unwrap_or("7443");
    Ok(format!("0.0.0.0:{port}"))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the permissions of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

/// Makes a folder owner-only.
fn private_dir(path: &Path) -> Result<()> {
    set_mode(path, 0o700)
}
