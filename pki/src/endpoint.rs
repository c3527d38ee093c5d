//! Server endpoints as the trust list and configs write them: `https://host:port` or `host:port`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
