//! Server endpoints as the trust list and configs write them: `https://host:port` or `host:port`,
//! and the [`HostName`]s a server certificate carries for them (DNS and IP SANs), so stock
//! TLS clients can check the server with an ordinary hostname check.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An endpoint that is not `host:port` (optionally behind `https://`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint {0:?} is not host:port (optionally https://host:port)")]
pub struct InvalidEndpoint(pub String);

/// `host:port` of an endpoint written as `https://host:port` or `host:port`. The host is a
/// DNS name, an IPv4 address or a bracketed IPv6 address; the port is required.
pub fn endpoint_authority(endpoint: &str) -> Result<String, InvalidEndpoint> {
    let invalid = || InvalidEndpoint(endpoint.to_owned());
    let rest = endpoint.strip_prefix("https://").unwrap_or(endpoint).trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
    port.parse::<u16>().map_err(|_| invalid())?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'),
    };
    if !host_ok {
        return Err(invalid());
    }
    Ok(format!("{host}:{port}"))
}

/// A name a server certificate carries besides its identity (its URI SAN): a DNS name or
/// an IP address a client connects to, checked by stock TLS clients' hostname verification.
/// Huren's own clients check the URI SAN instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostName {
    /// A DNS name (lowercase, no trailing dot, no wildcard), carried as a `dNSName` SAN.
    Dns(String),
    /// An IPv4 or IPv6 address, carried as an `iPAddress` SAN.
    Ip(IpAddr),
}

/// A string that is neither an IP address nor a DNS name a certificate may carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an IP address nor a DNS name (labels of a-z, 0-9 and '-', at most 253 characters)")]
pub struct InvalidHostName(pub String);

fn valid_dns_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        // A name of digits and dots only would read as an IPv4 address.
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl HostName {
    /// A DNS name (lower-cased; a trailing dot dropped), refused if it is an IP address
    /// or not a valid host name.
    pub fn dns(name: &str) -> Result<Self, InvalidHostName> {
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        if valid_dns_name(&lower) {
            Ok(Self::Dns(lower))
        } else {
            Err(InvalidHostName(name.chars().take(80).collect()))
        }
    }

    /// The host of an endpoint (`https://host:port`, `host:port`, `[v6]:port`).
    pub fn of_endpoint(endpoint: &str) -> Result<Self, InvalidEndpoint> {
        let authority = endpoint_authority(endpoint)?;
        let host = authority.rsplit_once(':').map(|(h, _)| h).unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.parse().map_err(|_| InvalidEndpoint(endpoint.to_owned()))
    }
}

impl FromStr for HostName {
    type Err = InvalidHostName;
    /// An IP address if it parses as one, else a DNS name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => Ok(Self::Ip(ip)),
            Err(_) => Self::dns(s),
        }
    }
}

impl fmt::Display for HostName {
    /// `DNS:<name>` or `IP:<address>`, as openssl prints SANs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostName::Dns(name) => write!(f, "DNS:{name}"),
            HostName::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_of_endpoints_and_arguments() {
        assert_eq!(
            HostName::of_endpoint("https://Node.AH.example:7443").unwrap(),
            HostName::dns("node.ah.example").unwrap()
        );
        assert_eq!(HostName::of_endpoint("10.1.0.5:7443").unwrap(), HostName::Ip("10.1.0.5".parse().unwrap()));
        assert_eq!(HostName::of_endpoint("https://[::1]:7443").unwrap(), HostName::Ip("::1".parse().unwrap()));
        assert_eq!("localhost.".parse::<HostName>().unwrap(), HostName::Dns("localhost".into()));
        assert_eq!("127.0.0.1".parse::<HostName>().unwrap().to_string(), "IP:127.0.0.1");
        for bad in ["", "-a.example", "a..b", "*.example", "a_b.example", "10.1.0.256", "spiffe://huren.gov/x"] {
            assert!(HostName::dns(bad).is_err(), "{bad:?} accepted as a DNS name");
        }
    }

    #[test]
    fn accepts_host_port_with_or_without_scheme() {
        assert_eq!(endpoint_authority("https://node.ah.example:7443/").unwrap(), "node.ah.example:7443");
        assert_eq!(endpoint_authority("127.0.0.1:7443").unwrap(), "127.0.0.1:7443");
        assert_eq!(endpoint_authority("[::1]:7443").unwrap(), "[::1]:7443");
    }

    #[test]
    fn refuses_what_is_not_host_port() {
        for bad in
            ["node", "node:", ":7443", "node:99999", "https://node:7443/path", "user@node:7443", "[zz]:1", "http://a:1"]
        {
            assert!(endpoint_authority(bad).is_err(), "{bad} accepted");
        }
    }
}
