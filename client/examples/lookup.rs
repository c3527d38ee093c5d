// Looks one traveller up through a gateway, as a transport hub, and prints the status
// the hub verified itself (the gateway's word is never taken).
//
//     cargo run -p huren-client --example lookup -- \
//         --gateway 127.0.0.1:8443 --cert hub/cert.pem --key hub/key.pem --ca root/ca.pem \
//         --purpose transit.highway 340000:<token>
//
// Every option can come from the environment instead: HUREN_GATEWAY, HUREN_CERT,
// HUREN_KEY, HUREN_CA, HUREN_PURPOSE, HUREN_TRUST_LIST_CACHE, HUREN_TRUST_DOMAIN. The
// input is `<province>:<token>` or a QR string `HRN1:…`. `huren demo` prints the
// certificate paths and tokens of its federation; run it and paste them here.
//
// (No inner attributes or `//!` docs: the end-to-end test `include!`s this file to run
// its `lookup` against a live federation.)

use std::path::PathBuf;
use std::process::ExitCode;

use huren_client::{HubClient, HubError, Scanned, TlsIdentity, VerifiedStatus, DEFAULT_PURPOSE};

/// What to look up, where, and as which hub.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Gateway address, `host:port`.
    pub gateway: String,
    /// The hub's certificate chain, PEM.
    pub cert: PathBuf,
    /// The hub's private key, PEM.
    pub key: PathBuf,
    /// The national root certificate, PEM.
    pub ca: PathBuf,
    /// The federation's trust domain.
    pub trust_domain: String,
    /// Purpose declared with the lookup.
    pub purpose: String,
    /// Where to keep the verified trust list between runs (optional).
    pub trust_list_cache: Option<PathBuf>,
    /// `<province>:<token>` or `HRN1:…`.
    pub input: String,
}

impl Options {
    /// Reads `--name value` arguments, falling back to `HUREN_<NAME>` variables; the one
    /// positional argument is the input.
    pub(crate) fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut named = std::collections::BTreeMap::new();
        let mut input = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.strip_prefix("--") {
                Some(name) => {
                    let value = args.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    named.insert(name.to_owned(), value);
                }
                None if input.is_none() => input = Some(arg),
                None => return Err(format!("unexpected argument {arg:?}")),
            }
        }
        let mut get = |name: &str| {
            named
                .remove(name)
                .or_else(|| std::env::var(format!("HUREN_{}", name.to_uppercase().replace('-', "_"))).ok())
        };
        let mut required =
            |name: &str| get(name).ok_or_else(|| format!("give --{name} (or HUREN_{})", name.to_uppercase()));
        let options = Self {
            gateway: required("gateway")?,
            cert: required("cert")?.into(),
            key: required("key")?.into(),
            ca: required("ca")?.into(),
            trust_domain: get("trust-domain").unwrap_or_else(|| huren_pki::DEFAULT_TRUST_DOMAIN.to_owned()),
            purpose: get("purpose").unwrap_or_else(|| DEFAULT_PURPOSE.to_owned()),
            trust_list_cache: get("trust-list-cache").map(PathBuf::from),
            input: input.ok_or("give the input: <province>:<token> or HRN1:…")?,
        };
        if let Some(name) = named.keys().next() {
            return Err(format!("unknown option --{name}"));
        }
        Ok(options)
    }
}

/// Connects with the hub certificate, brings the trust list up to date (keeping the
/// cached copy when the gateway serves an older one), looks the input up and verifies
/// the answer.
pub(crate) async fn lookup(options: &Options) -> Result<VerifiedStatus, Box<dyn std::error::Error>> {
    let scanned = Scanned::parse(&options.input)?;
    let identity = TlsIdentity::load(&options.cert, &options.key, &options.ca, &options.trust_domain)?;
    let mut hub = HubClient::connect(&options.gateway, &identity)?;
    if let Some(path) = &options.trust_list_cache {
        hub = hub.with_cache(path)?;
    }
    match hub.refresh_trust_list().await {
        Ok(list) => eprintln!("trust list sequence {}", list.sequence()),
        Err(e @ HubError::Rollback { .. }) => eprintln!("warning: {e}; using the cached trust list"),
        Err(e) => return Err(e.into()),
    }
    Ok(hub.lookup(scanned.province(), scanned.token(), &options.purpose).await?)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("lookup: {e}");
            return ExitCode::from(64);
        }
    };
    match lookup(&options).await {
        Ok(status) => {
            println!("{}", status.line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            // A refusal says why in a stable, machine-readable form when the server
            // attached a reason.
            if let Some(HubError::Refused { code, reason: Some(reason), .. }) = e.downcast_ref::<HubError>() {
                eprintln!("refused with {code:?}, reason {reason}");
            }
            eprintln!("lookup: {e}");
            ExitCode::FAILURE
        }
    }
}
