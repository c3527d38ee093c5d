//! SPIFFE-style identities carried as the single URI SAN of every Huren certificate.

use std::fmt;
use std::str::FromStr;

/// Trust domain used when none is configured.
pub const DEFAULT_TRUST_DOMAIN: &str = "huren.gov";

/// A GB/T 2260 six-digit province code, e.g. `340000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProvinceCode(String);

/// A string that is not a province code; holds (at most 16 characters of) the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid province code {0:?}: expected six digits (GB/T 2260), e.g. 340000")]
pub struct InvalidProvinceCode(pub String);

impl ProvinceCode {
    /// The six digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProvinceCode {
    type Err = InvalidProvinceCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0') {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidProvinceCode(s.chars().take(16).collect()))
        }
    }
}

impl fmt::Display for ProvinceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The role an identity plays in the federation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A province node (serves Attestation and StatusAdmin).
    Node(ProvinceCode),
    /// A province's internal health-code backend (calls its own node's StatusAdmin:
    /// GREEN statuses and tokens).
    Admin(ProvinceCode),
    /// A public-health authority of a province (a city CDC, say): the only identity that
    /// may assign a non-green status, and only under a rule that names it. Issued by its
    /// province's CA; written `<code>/<name>` on the command line and in rules.
    Authority {
        /// The province whose CA issued it and whose statuses it may assign.
        province: ProvinceCode,
        /// Its name within the province, e.g. `hefei-cdc`.
        name: String,
    },
    /// A national gateway replica.
    Gateway(String),
    /// A transport hub (calls gateway Lookup).
    Hub(String),
    /// A national coordinator (manages the trust list).
    Coordinator(String),
    /// An auditor (reads logs and receipts).
    Auditor(String),
}

impl Role {
    /// The role's kind as used on the command line: `node`, `admin`, `gateway`, ….
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Node(_) => "node",
            Role::Admin(_) => "admin",
            Role::Authority { .. } => "authority",
            Role::Gateway(_) => "gateway",
            Role::Hub(_) => "hub",
            Role::Coordinator(_) => "coordinator",
            Role::Auditor(_) => "auditor",
        }
    }

    /// The province a province-scoped identity belongs to.
    pub fn province(&self) -> Option<&ProvinceCode> {
        match self {
            Role::Node(p) | Role::Admin(p) | Role::Authority { province: p, .. } => Some(p),
            _ => None,
        }
    }
}

/// An authority as rules name it: `<province code>/<name>`, e.g. `340000/hefei-cdc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthorityRef {
    /// The authority's province.
    pub province: ProvinceCode,
    /// Its name within the province, e.g. `hefei-cdc`.
    pub name: String,
}

impl FromStr for AuthorityRef {
    type Err = InvalidIdentity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (code, name) = s.split_once('/').ok_or_else(|| InvalidIdentity::Authority(s.chars().take(80).collect()))?;
        Ok(Self { province: code.parse()?, name: checked_name(name)? })
    }
}

impl fmt::Display for AuthorityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.province, self.name)
    }
}

impl Role {
    /// The authority this role is, if it is one.
    pub fn authority(&self) -> Option<AuthorityRef> {
        match self {
            Role::Authority { province, name } => Some(AuthorityRef { province: province.clone(), name: name.clone() }),
            _ => None,
        }
    }
}

/// A parsed identity: trust domain plus role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The SPIFFE trust domain, e.g. `huren.gov`; every party checks it against its own.
    pub trust_domain: String,
    /// What the identity is and, for province roles, which province it belongs to.
    pub role: Role,
}

/// Why a URI, role kind or name is not a valid Huren identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidIdentity {
    /// The URI does not start with `spiffe://`.
    #[error("identity must be a spiffe:// URI")]
    NotSpiffe,
    /// The trust domain is missing, empty or not lowercase DNS characters.
    #[error("identity has an empty or invalid trust domain")]
    TrustDomain,
    /// The path after the trust domain is not one of the known role paths.
    #[error("identity path {0:?} is not one of province/<code>/node, province/<code>/admin, province/<code>/authority/<name>, gateway/<name>, hub/<id>, coordinator/<name>, auditor/<name>")]
    Path(String),
    /// The province code in the path or argument is invalid.
    #[error(transparent)]
    Province(#[from] InvalidProvinceCode),
    /// A role name fails [`valid_name`].
    #[error("identity name {0:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.'")]
    Name(String),
    /// [`Identity::from_kind`] was given a kind it does not know.
    #[error("unknown role {0:?}: expected node, admin, authority, gateway, hub, coordinator or auditor")]
    UnknownRole(String),
    /// An authority reference without the `/` between province code and name.
    #[error("authority {0:?} must be written <province code>/<name>, e.g. 340000/hefei-cdc")]
    Authority(String),
}

/// Checks a role name (gateway, hub, … names) for the allowed alphabet.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

fn checked_name(name: &str) -> Result<String, InvalidIdentity> {
    if valid_name(name) {
        Ok(name.to_owned())
    } else {
        Err(InvalidIdentity::Name(name.chars().take(80).collect()))
    }
}

impl Identity {
    /// Builds an identity from a role kind (`node`, `hub`, …) and its argument
    /// (province code for `node`/`admin`, `<code>/<name>` for `authority`, a name otherwise).
    pub fn from_kind(trust_domain: &str, kind: &str, arg: &str) -> Result<Self, InvalidIdentity> {
        let role = match kind {
            "node" => Role::Node(arg.parse()?),
            "admin" => Role::Admin(arg.parse()?),
            "authority" => {
                let AuthorityRef { province, name } = arg.parse()?;
                Role::Authority { province, name }
            }
            "gateway" => Role::Gateway(checked_name(arg)?),
            "hub" => Role::Hub(checked_name(arg)?),
            "coordinator" => Role::Coordinator(checked_name(arg)?),
            "auditor" => Role::Auditor(checked_name(arg)?),
            other => return Err(InvalidIdentity::UnknownRole(other.chars().take(32).collect())),
        };
        Ok(Self { trust_domain: trust_domain.to_owned(), role })
    }

    /// Builds an identity without checking the trust domain or role names; untrusted
    /// input goes through [`Identity::from_kind`] or [`str::parse`] instead.
    pub fn new(trust_domain: &str, role: Role) -> Self {
        Self { trust_domain: trust_domain.to_owned(), role }
    }

    /// The `spiffe://` URI of this identity.
    pub fn uri(&self) -> String {
        self.to_string()
    }

    /// URI identifying a province CA (carried as the CA certificate's URI SAN).
    pub fn province_ca_uri(trust_domain: &str, code: &ProvinceCode) -> String {
        format!("spiffe://{trust_domain}/province/{code}")
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let td = &self.trust_domain;
        match &self.role {
            Role::Node(p) => write!(f, "spiffe://{td}/province/{p}/node"),
            Role::Admin(p) => write!(f, "spiffe://{td}/province/{p}/admin"),
            Role::Authority { province, name } => write!(f, "spiffe://{td}/province/{province}/authority/{name}"),
            Role::Gateway(n) => write!(f, "spiffe://{td}/gateway/{n}"),
            Role::Hub(n) => write!(f, "spiffe://{td}/hub/{n}"),
            Role::Coordinator(n) => write!(f, "spiffe://{td}/coordinator/{n}"),
            Role::Auditor(n) => write!(f, "spiffe://{td}/auditor/{n}"),
        }
    }
}

impl FromStr for Identity {
    type Err = InvalidIdentity;
    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let rest = uri.strip_prefix("spiffe://").ok_or(InvalidIdentity::NotSpiffe)?;
        let (td, path) = rest.split_once('/').ok_or(InvalidIdentity::TrustDomain)?;
        if td.is_empty()
            || !td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        {
            return Err(InvalidIdentity::TrustDomain);
        }
        let parts: Vec<&str> = path.split('/').collect();
        let bad = || InvalidIdentity::Path(path.chars().take(80).collect());
        let role = match parts.as_slice() {
            ["province", code, "node"] => Role::Node(code.parse()?),
            ["province", code, "admin"] => Role::Admin(code.parse()?),
            ["province", code, "authority", n] => Role::Authority { province: code.parse()?, name: checked_name(n)? },
            ["gateway", n] => Role::Gateway(checked_name(n)?),
            ["hub", n] => Role::Hub(checked_name(n)?),
            ["coordinator", n] => Role::Coordinator(checked_name(n)?),
            ["auditor", n] => Role::Auditor(checked_name(n)?),
            _ => return Err(bad()),
        };
        Ok(Self { trust_domain: td.to_owned(), role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_role() {
        for uri in [
            "spiffe://huren.gov/province/340000/node",
            "spiffe://huren.gov/province/440000/admin",
            "spiffe://huren.gov/province/340000/authority/hefei-cdc",
            "spiffe://huren.gov/gateway/national-1",
            "spiffe://huren.gov/hub/sd-highway-jinan",
            "spiffe://huren.gov/coordinator/nhc",
            "spiffe://huren.gov/auditor/third-party",
        ] {
            let id: Identity = uri.parse().unwrap();
            assert_eq!(id.to_string(), uri);
        }
    }

    #[test]
    fn rejects_malformed() {
        for uri in [
            "https://huren.gov/hub/x",
            "spiffe://huren.gov/province/34000/node",
            "spiffe://huren.gov/province/340000/root",
            "spiffe://huren.gov/hub/UPPER",
            "spiffe://huren.gov/hub/a/b",
            "spiffe://huren.gov/province/340000/authority",
            "spiffe://huren.gov/province/340000/authority/Hefei",
            "spiffe:///hub/a",
        ] {
            assert!(uri.parse::<Identity>().is_err(), "{uri} accepted");
        }
    }

    #[test]
    fn authorities_are_province_scoped() {
        let id = Identity::from_kind("huren.gov", "authority", "340000/hefei-cdc").unwrap();
        assert_eq!(id.to_string(), "spiffe://huren.gov/province/340000/authority/hefei-cdc");
        assert_eq!(id.role.province().map(ProvinceCode::as_str), Some("340000"));
        assert_eq!(id.role.authority().unwrap().to_string(), "340000/hefei-cdc");
        for bad in ["hefei-cdc", "34000/hefei-cdc", "340000/", "340000/Hefei CDC"] {
            assert!(bad.parse::<AuthorityRef>().is_err(), "{bad} accepted");
        }
    }
}
