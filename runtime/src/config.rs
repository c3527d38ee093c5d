//! TOML configuration with environment overrides.
//!
//! `<PREFIX><KEY>` (the top-level key in upper case, e.g. `HUREN_GATEWAY_REDIS_URL` for
//! `redis_url`) replaces that key: the environment wins over the file, the file over the
//! defaults. How a value is read depends on the key's type, taken from the defaults (plus
//! the optional string keys the caller names, whose default is absent):
//! - string keys (strings, paths, addresses, URLs): the raw value, so
//!   `HUREN_NODE_PROVINCE=340000` stays a string; a quoted TOML string
//!   (`HUREN_NODE_PROVINCE='"340000"'`) is unquoted. An empty value for an optional key
//!   removes the key (back to absent).
//! - every other key: a TOML value of the key's type (`250`, `true`, `["a"]`); anything
//!   else is an error naming the variable and the type expected.
//!
//! A variable with the prefix that names no key is an error — a typo must not be silently
//! ignored — except the variables Kubernetes injects for a Service whose name matches the
//! prefix (`huren-gateway` → `HUREN_GATEWAY_SERVICE_HOST`, `HUREN_GATEWAY_PORT_8443_TCP`, …),
//! which are no configuration keys and are skipped.
//!
//! Errors are one line. A variable's value is only echoed for non-string keys (numbers,
//! booleans), never for strings, which may hold secrets such as a Redis password.
//!
//! [`parse`] is a pure function of the file text and the variables; [`environment`] collects
//! the process's variables for it.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize as _;

/// Why a configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file: TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{0}")]
    File(String),
    /// An environment variable: no such key, or a value of the wrong type.
    #[error("{var}: {message}")]
    Var {
        /// The variable's name, e.g. `HUREN_GATEWAY_NODE_TIMEOUT_MS`.
        var: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The process's environment variables whose names start with `prefix`.
pub fn environment(prefix: &str) -> Result<Vec<(String, String)>, Error> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) => return Err(Error::Var { var: name, message: "the value is not valid UTF-8".into() }),
        }
    }
    Ok(vars)
}

/// Parses `text` as TOML, applies the overrides among `vars` (variables without `prefix`
/// are ignored) and deserializes. `optional_strings` names the keys whose default is
/// absent (`Option<String>`, `Option<PathBuf>` fields); every other key must appear in
/// `T::default()`'s serialization. `T` is a flat struct of top-level keys, typically
/// `#[serde(default, deny_unknown_fields)]`.
pub fn parse<T: DeserializeOwned + serde::Serialize + Default>(
    prefix: &str,
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
    optional_strings: &[&str],
) -> Result<T, Error> {
    let defaults = toml::Table::try_from(T::default())
        .map_err(|e| Error::File(format!("the defaults are not a TOML table: {e}")))?;
    let file: BTreeMap<String, toml::Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| Error::File(located(text, e.span(), e.message())))?;

    // Overrides first: a key set in the environment may fix a bad value in the file.
    let mut overrides: BTreeMap<String, Option<toml::Value>> = BTreeMap::new();
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(prefix) else { continue };
        let key = rest.to_ascii_lowercase();
        let optional = optional_strings.contains(&key.as_str());
        let known = rest == key.to_ascii_uppercase() && (optional || defaults.contains_key(&key));
        if !known {
            if is_kubernetes_service_link(rest, &raw) {
                continue;
            }
            let mut keys: Vec<&str> =
                defaults.keys().map(String::as_str).chain(optional_strings.iter().copied()).collect();
            keys.sort_unstable();
            keys.dedup();
            let message = format!("not a setting; the settings are {prefix}<KEY> for the keys {}", keys.join(", "));
            return Err(Error::Var { var, message });
        }
        let value = match defaults.get(&key) {
            None | Some(toml::Value::String(_)) if optional && raw.is_empty() => None,
            None | Some(toml::Value::String(_)) => Some(toml::Value::String(unquote(raw))),
            Some(default) => {
                let value = read_value(&raw, default).ok_or_else(|| Error::Var {
                    var: var.clone(),
                    message: format!("expected {}, got {raw:?}", expected(default)),
                })?;
                // The type is right; the field may still refuse it (a negative u64, a u32 overflow).
                deserialize_one::<T>(&defaults, &key, value.clone())
                    .map_err(|e| Error::Var { var: var.clone(), message: format!("{raw:?}: {}", e.message()) })?;
                Some(value)
            }
        };
        overrides.insert(key, value);
    }

    // Then the file's keys that the environment leaves alone, in file order, one at a time
    // so that the error names the key and its line.
    let mut in_file: Vec<(&String, &toml::Spanned<toml::Value>)> =
        file.iter().filter(|(key, _)| !overrides.contains_key(*key)).collect();
    in_file.sort_by_key(|(_, v)| v.span().start);
    for (key, value) in in_file {
        if let Err(e) = deserialize_one::<T>(&defaults, key, value.get_ref().clone()) {
            return Err(Error::File(format!("{}: {}", line_of(text, value.span().start), e.message())));
        }
    }

    let mut table: toml::Table = file.into_iter().map(|(k, v)| (k, v.into_inner())).collect();
    for (key, value) in overrides {
        match value {
            Some(value) => table.insert(key, value),
            None => table.remove(&key),
        };
    }
    T::deserialize(toml::Value::Table(table)).map_err(|e| Error::File(one_line(e.message())))
}

/// Deserializes the defaults with `key` set to `value`: whether that field takes the value.
fn deserialize_one<T: DeserializeOwned>(
    defaults: &toml::Table,
    key: &str,
    value: toml::Value,
) -> Result<T, toml::de::Error> {
    let mut table = defaults.clone();
    table.insert(key.to_owned(), value);
    T::deserialize(toml::Value::Table(table))
}

/// A string key's value: a quoted TOML string unquoted, anything else as it is.
fn unquote(raw: String) -> String {
    match toml::Value::deserialize(toml::de::ValueDeserializer::new(&raw)) {
        Ok(toml::Value::String(s)) => s,
        _ => raw,
    }
}

/// `raw` as a TOML value of the same type as `default` (an integer is taken for a float).
fn read_value(raw: &str, default: &toml::Value) -> Option<toml::Value> {
    let value = toml::Value::deserialize(toml::de::ValueDeserializer::new(raw)).ok()?;
    match (default, value) {
        (toml::Value::Float(_), toml::Value::Integer(i)) => Some(toml::Value::Float(i as f64)),
        (default, value) if std::mem::discriminant(default) == std::mem::discriminant(&value) => Some(value),
        _ => None,
    }
}

fn expected(default: &toml::Value) -> &'static str {
    match default {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a TOML date-time",
        toml::Value::Array(_) => "a TOML array such as [\"a\", \"b\"]",
        toml::Value::Table(_) => "an inline TOML table such as { a = 1 }",
    }
}

/// Whether `<rest>` = `value` is a variable Kubernetes sets for a Service named like the
/// prefix, by name *and* value (so that a mistaken `HUREN_GATEWAY_PORT=9443` is refused
/// as no setting rather than skipped): `SERVICE_HOST` (an address), `SERVICE_PORT` and
/// `SERVICE_PORT_<NAME>` (a port), `PORT` and `PORT_<n>_<PROTO>` (`tcp://…`), and
/// `PORT_<n>_<PROTO>_PROTO` (`tcp`), `…_PORT` (a port), `…_ADDR` (an address).
fn is_kubernetes_service_link(rest: &str, value: &str) -> bool {
    let port = || !value.is_empty() && value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit());
    let address = || !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':');
    let url = || ["tcp://", "udp://", "sctp://"].iter().any(|scheme| value.starts_with(scheme));
    match rest {
        "SERVICE_HOST" => return address(),
        "SERVICE_PORT" => return port(),
        "PORT" => return url(),
        _ => {}
    }
    if let Some(name) = rest.strip_prefix("SERVICE_PORT_") {
        return !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            && port();
    }
    let Some(rest) = rest.strip_prefix("PORT_") else { return false };
    let parts: Vec<&str> = rest.split('_').collect();
    let (number, protocol, suffix) = match parts.as_slice() {
        [n, p] => (n, p, None),
        [n, p, s] => (n, p, Some(*s)),
        _ => return false,
    };
    let named =
        !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) && matches!(*protocol, "TCP" | "UDP" | "SCTP");
    named
        && match suffix {
            None => url(),
            Some("PROTO") => value.eq_ignore_ascii_case(protocol),
            Some("PORT") => port(),
            Some("ADDR") => address(),
            Some(_) => false,
        }
}

/// "line L" of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    format!("line {}", text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1)
}

/// A TOML error on one line: "line L, column C: message".
fn located(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    match span {
        Some(span) => {
            let at = span.start.min(text.len());
            let line_start = text.as_bytes()[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = text.get(line_start..at).map_or(at - line_start, |s| s.chars().count()) + 1;
            format!("{}, column {column}: {}", line_of(text, at), one_line(message))
        }
        None => one_line(message),
    }
}

fn one_line(message: &str) -> String {
    message.trim().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct C {
        listen: String,
        timeout_ms: u64,
        port: u16,
        cache: bool,
        ratio: f64,
        tags: Vec<String>,
        url: Option<String>,
    }

    impl Default for C {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:1".into(),
                timeout_ms: 5,
                port: 1,
                cache: true,
                ratio: 0.5,
                tags: vec!["a".into()],
                url: None,
            }
        }
    }

    const OPTIONAL: &[&str] = &["url"];

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn parse_c(text: &str, list: &[(&str, &str)]) -> Result<C, Error> {
        parse("HUREN_X_", text, vars(list), OPTIONAL)
    }

    fn var_error(text: &str, list: &[(&str, &str)]) -> (String, String) {
        match parse_c(text, list) {
            Err(Error::Var { var, message }) => (var, message),
            other => panic!("expected a variable error, got {other:?}"),
        }
    }

    #[test]
    fn environment_wins_over_file_and_file_over_defaults() {
        let text = "listen = \"127.0.0.1:2\"\ntimeout_ms = 7\nurl = \"redis://file/\"\n";
        let c = parse_c(
            text,
            &[
                ("HUREN_X_TIMEOUT_MS", "250"),
                ("HUREN_X_CACHE", "false"),
                ("HUREN_X_RATIO", "2"),
                ("HUREN_X_TAGS", "[\"b\", \"c\"]"),
                ("OTHER", "x"),
                ("HUREN_Y_LISTEN", "x"),
            ],
        )
        .unwrap();
        let want = C {
            listen: "127.0.0.1:2".into(),
            timeout_ms: 250,
            port: 1,
            cache: false,
            ratio: 2.0,
            tags: vec!["b".into(), "c".into()],
            url: Some("redis://file/".into()),
        };
        assert_eq!(c, want);
        assert_eq!(parse_c("", &[]).unwrap(), C::default());
    }

    #[test]
    fn string_keys_take_the_raw_value_or_an_unquoted_toml_string() {
        let c = parse_c("", &[("HUREN_X_LISTEN", "8443"), ("HUREN_X_URL", "redis://:p@h:6379/")]).unwrap();
        assert_eq!((c.listen.as_str(), c.url.as_deref()), ("8443", Some("redis://:p@h:6379/")));
        let c = parse_c("", &[("HUREN_X_LISTEN", "\"340000\""), ("HUREN_X_URL", "'x y'")]).unwrap();
        assert_eq!((c.listen.as_str(), c.url.as_deref()), ("340000", Some("x y")));
        // A trailing document after the string is no TOML string: taken as it is.
        let c = parse_c("", &[("HUREN_X_LISTEN", "\"a\"\ntimeout_ms = 9")]).unwrap();
        assert_eq!((c.listen.as_str(), c.timeout_ms), ("\"a\"\ntimeout_ms = 9", 5));
        // An empty value unsets an optional key, even one the file sets.
        let c = parse_c("url = \"redis://file/\"\n", &[("HUREN_X_URL", "")]).unwrap();
        assert_eq!(c.url, None);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_type() {
        let (var, message) = var_error("", &[("HUREN_X_TIMEOUT_MS", "soon")]);
        assert_eq!((var.as_str(), message.as_str()), ("HUREN_X_TIMEOUT_MS", "expected an integer, got \"soon\""));
        let (_, message) = var_error("", &[("HUREN_X_TIMEOUT_MS", "-1")]);
        assert!(message.starts_with("\"-1\": ") && message.contains("u64"), "{message}");
        let (_, message) = var_error("", &[("HUREN_X_PORT", "70000")]);
        assert!(message.contains("u16"), "{message}");
        let (_, message) = var_error("", &[("HUREN_X_CACHE", "yes")]);
        assert_eq!(message, "expected true or false, got \"yes\"");
        let (_, message) = var_error("", &[("HUREN_X_RATIO", "\"1\"")]);
        assert!(message.starts_with("expected a number"), "{message}");
        let (_, message) = var_error("", &[("HUREN_X_TAGS", "b")]);
        assert!(message.starts_with("expected a TOML array"), "{message}");
        let (_, message) = var_error("", &[("HUREN_X_TAGS", "[1]")]);
        assert!(message.contains("expected a string"), "{message}");
        let err = parse_c("", &[("HUREN_X_TIMEOUT_MS", "soon")]).unwrap_err().to_string();
        assert_eq!(err, "HUREN_X_TIMEOUT_MS: expected an integer, got \"soon\"");
    }

    #[test]
    fn unknown_variables_are_refused_without_echoing_the_value() {
        for name in ["HUREN_X_LISTNE", "HUREN_X_listen", "HUREN_X_", "HUREN_X_SERVICE_HOSTS", "HUREN_X_PORT_80_HTTP"] {
            let (var, message) = var_error("", &[(name, "secret-value")]);
            assert_eq!(var, name);
            assert!(message.starts_with("not a setting") && message.contains("listen, port, ratio"), "{message}");
            assert!(!message.contains("secret-value"), "{message}");
        }
    }

    #[test]
    fn kubernetes_service_links_are_not_settings() {
        let links = [
            ("HUREN_X_SERVICE_HOST", "10.0.0.1"),
            ("HUREN_X_SERVICE_PORT", "8443"),
            ("HUREN_X_SERVICE_PORT_GRPC", "8443"),
            ("HUREN_X_PORT", "tcp://10.0.0.1:8443"),
            ("HUREN_X_PORT_8443_TCP", "tcp://10.0.0.1:8443"),
            ("HUREN_X_PORT_8443_TCP_PROTO", "tcp"),
            ("HUREN_X_PORT_8443_TCP_PORT", "8443"),
            ("HUREN_X_PORT_8443_TCP_ADDR", "10.0.0.1"),
        ];
        // `HUREN_X_PORT` is a setting of `C`: the key wins over the pattern.
        let (var, message) = var_error("", &links);
        assert_eq!(var, "HUREN_X_PORT", "{message}");
        let links: Vec<_> = links.into_iter().filter(|(k, _)| *k != "HUREN_X_PORT").collect();
        assert_eq!(parse_c("", &links).unwrap(), C::default());
        // The same names with values Kubernetes would not set are settings mistakes, refused.
        for (name, value) in [
            ("HUREN_X_PORT_8443_TCP", "9443"),
            ("HUREN_X_SERVICE_HOST", "gateway.example"),
            ("HUREN_X_PORT_8443_TCP_PROTO", "udp"),
            ("HUREN_X_SERVICE_PORT", "eight"),
        ] {
            let (var, message) = var_error("", &[(name, value)]);
            assert_eq!(var, name);
            assert!(message.starts_with("not a setting"), "{name}={value}: {message}");
        }
    }

    #[test]
    fn file_errors_are_one_line_with_the_line_number() {
        let err = parse_c("listen = \"a\"\ntimeout_ms = \"x\"\n", &[]).unwrap_err();
        let Error::File(message) = err else { panic!("{err:?}") };
        assert!(message.starts_with("line 2: ") && message.contains("u64"), "{message}");
        let Error::File(message) = parse_c("\n\nlistne = 1\n", &[]).unwrap_err() else { panic!() };
        assert!(message.starts_with("line 3: unknown field `listne`"), "{message}");
        let Error::File(message) = parse_c("listen = \n", &[]).unwrap_err() else { panic!() };
        assert!(message.starts_with("line 1, column "), "{message}");
        assert!(!message.contains('\n'), "{message}");
        // The environment overrides a bad file value rather than tripping over it.
        assert_eq!(parse_c("timeout_ms = \"x\"\n", &[("HUREN_X_TIMEOUT_MS", "9")]).unwrap().timeout_ms, 9);
    }
}
