//! The `gateway` setting of a server or agent that follows the federation's gateways:
//! one endpoint or several replicas.
//!
//! [`GatewayList`] reads from TOML as a string (`"gw1:8443"`, the older single form, or
//! `"gw1:8443,gw2:8443"`, which is also how `HUREN_<ROLE>_GATEWAY` sets it) or as an array
//! (`["gw1:8443", "gw2:8443"]`), and writes as the comma-separated string.

use serde::{Deserialize, Serialize};

/// One or more gateway endpoints (`host:port` or `https://host:port`), in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayList(Vec<String>);

impl Serialize for GatewayList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.join(","))
    }
}

impl GatewayList {
    /// The endpoints of `list`: comma-separated, spaces around items ignored, empty items
    /// dropped.
    pub fn parse(list: &str) -> Self {
        Self(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.0
    }

    /// Whether no endpoint is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks every endpoint is `host:port` or `https://host:port`; the error names the
    /// first one that is not.
    pub fn validate(&self) -> Result<(), crate::tls::TlsError> {
        self.0.iter().try_for_each(|e| crate::tls::endpoint_authority(e).map(drop))
    }
}

impl From<Vec<String>> for GatewayList {
    fn from(endpoints: Vec<String>) -> Self {
        Self(endpoints)
    }
}

impl<'de> Deserialize<'de> for GatewayList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::One(list) => Self::parse(&list),
            Form::Many(list) => Self(list.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Config {
        gateway: GatewayList,
    }

    fn read(text: &str) -> Vec<String> {
        toml::from_str::<Config>(text).unwrap().gateway.endpoints().to_vec()
    }

    #[test]
    fn reads_the_single_string_a_comma_list_and_an_array() {
        assert_eq!(read(r#"gateway = "gw1:8443""#), ["gw1:8443"]);
        assert_eq!(read(r#"gateway = "gw1:8443, https://gw2:8443""#), ["gw1:8443", "https://gw2:8443"]);
        assert_eq!(read(r#"gateway = ["gw1:8443", "gw2:8443"]"#), ["gw1:8443", "gw2:8443"]);
        assert!(toml::from_str::<Config>("gateway = 8443").is_err());
    }

    #[test]
    fn every_endpoint_is_validated() {
        assert!(GatewayList::parse("gw1:8443,https://gw2:8443").validate().is_ok());
        assert!(GatewayList::parse("gw1:8443,not an endpoint").validate().is_err());
    }
}
