//! TOML configuration with environment overrides: `<PREFIX><KEY>` (upper case) replaces
//! the top-level key `<key>`, its value read as TOML when it parses as such (numbers,
//! booleans, arrays) and as a plain string otherwise.

use serde::de::DeserializeOwned;

/// Parses `text` as TOML, applies overrides from `vars`, and deserializes. A key whose
/// default is a string takes the variable's raw value (so `HUREN_NODE_PROVINCE=340000`
/// stays a string); other keys read it as a TOML value when it parses as one.
pub fn parse<T: DeserializeOwned + serde::Serialize + Default>(
    prefix: &str,
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, String> {
    let defaults = toml::Table::try_from(T::default()).unwrap_or_default();
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    for (name, value) in vars {
        let Some(key) = name.strip_prefix(prefix) else { continue };
        let key = key.to_ascii_lowercase();
        let parsed = if matches!(defaults.get(&key), Some(toml::Value::String(_))) {
            toml::Value::String(value)
        } else {
            toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value))
        };
        table.insert(key, parsed);
    }
    T::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, serde::Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct C {
        listen: String,
        timeout_ms: u64,
        cache: bool,
    }

    #[test]
    fn environment_overrides_win() {
        let text = "listen = \"127.0.0.1:1\"\ntimeout_ms = 5\ncache = true\n";
        let vars = vec![
            ("HUREN_X_TIMEOUT_MS".to_owned(), "250".to_owned()),
            ("HUREN_X_LISTEN".to_owned(), "8443".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let c: C = parse("HUREN_X_", text, vars).unwrap();
        assert_eq!(c, C { listen: "8443".into(), timeout_ms: 250, cache: true }, "string keys stay strings");
        let err = parse::<C>("HUREN_X_", text, vec![("HUREN_X_TIMEOUT_MS".into(), "soon".into())]).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
        let err = parse::<C>("HUREN_X_", text, vec![("HUREN_X_LISTNE".into(), "x".into())]).unwrap_err();
        assert!(err.contains("unknown field `listne`"), "{err}");
    }
}
