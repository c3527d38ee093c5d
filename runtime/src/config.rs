//! The one configuration loader of Huren's servers: a TOML file, then environment
//! overrides, then paths resolved and values validated.
//!
//! A server's configuration is a flat serde struct that implements [`Settings`] (its role,
//! its variable prefix, its optional keys, its path fields and its `validate`); [`load`]
//! and [`from_sources`] do the rest, and every failure is one [`ConfigError`].
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
//! Relative paths (from the file or the environment) are resolved against the config
//! file's folder.
//!
//! Errors are one line. A variable's value is only echoed for non-string keys (numbers,
//! booleans), never for strings, which may hold secrets such as a Redis password; a
//! `validate` never echoes a value that may be secret either (a URL with a password).
//!
//! [`from_sources`] is a pure function of the file text and the variables; [`load`] reads
//! the file and collects the process's variables for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize as _;

/// A server's configuration, as the loader needs to know it: a flat struct of top-level
/// keys, typically `#[serde(default, deny_unknown_fields)]`.
pub trait Settings: serde::Serialize + DeserializeOwned + Default {
    /// The server role that errors name: `invalid <ROLE> config: …`.
    const ROLE: &'static str;
    /// Prefix of the variables that override keys, e.g. `HUREN_NODE_`.
    const ENV_PREFIX: &'static str;
    /// Keys absent by default (`Option<String>`, `Option<PathBuf>` fields): read from the
    /// environment as strings, an empty value unsets them. Every other key must appear in
    /// `Self::default()`'s serialization.
    const OPTIONAL_KEYS: &'static [&'static str];
    /// For each of [`Self::OPTIONAL_KEYS`]: what setting it means and an example value, as
    /// [`default_toml`] prints it (commented out).
    const OPTIONAL_HELP: &'static [(&'static str, &'static str, &'static str)] = &[];

    /// The path fields, resolved against the config file's folder when relative.
    fn paths(&mut self) -> Vec<&mut PathBuf>;

    /// Checks the values together; a refusal names the key and never echoes a secret
    /// ([`ConfigError::invalid`]).
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Every key of `T` as TOML for `--print-default-config`: the keys with a default, with
/// their values, then each optional key ([`Settings::OPTIONAL_HELP`]: key, meaning,
/// example value) commented out under a line saying what it means — placed before any
/// table, so uncommenting one keeps it a top-level key.
pub fn default_toml<T: Settings>() -> Result<String, toml::ser::Error> {
    let text = toml::to_string_pretty(&T::default())?;
    let split = text.find("\n[").map(|i| i + 1).unwrap_or(text.len());
    let (keys, tables) = text.split_at(split);
    let mut out = String::from(keys);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !T::OPTIONAL_HELP.is_empty() {
        out.push_str("\n# Optional settings, absent by default:\n");
        for (key, meaning, example) in T::OPTIONAL_HELP {
            out.push_str(&format!("\n# {meaning}\n# {key} = {example}\n"));
        }
    }
    if !tables.is_empty() {
        out.push('\n');
        out.push_str(tables);
    }
    Ok(out)
}

/// Why a server's configuration was refused: one line, never a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file: TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What is wrong, with its line.
        message: String,
    },
    /// A value (from the file or the environment) that `validate` refused.
    #[error("invalid {role} config: {message}")]
    Invalid {
        /// The server role ([`Settings::ROLE`]).
        role: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A `HUREN_<ROLE>_<KEY>` variable that names no key or holds a value of the wrong type.
    #[error("invalid {role} config: {var}: {message}")]
    Env {
        /// The server role ([`Settings::ROLE`]).
        role: &'static str,
        /// The variable's name, e.g. `HUREN_GATEWAY_NODE_TIMEOUT_MS`.
        var: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// A value of `T`'s configuration refused by its `validate`.
    pub fn invalid<T: Settings>(message: impl Into<String>) -> Self {
        Self::Invalid { role: T::ROLE, message: message.into() }
    }

    /// The variable at fault and what is wrong with it, for an environment error.
    pub fn variable(&self) -> Option<(&str, &str)> {
        match self {
            Self::Env { var, message, .. } => Some((var, message)),
            _ => None,
        }
    }

    fn from_source<T: Settings>(path: &Path, e: Error) -> Self {
        match e {
            Error::Var { var, message } => Self::Env { role: T::ROLE, var, message },
            Error::File(message) => Self::Parse { path: path.to_owned(), message },
        }
    }
}

/// Reads the file at `path`, applies the `<ENV_PREFIX><KEY>` overrides from the process
/// environment, resolves relative paths and validates (see [`from_sources`]).
pub fn load<T: Settings>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let vars = environment(T::ENV_PREFIX).map_err(|e| ConfigError::from_source::<T>(path, e))?;
    from_sources(path, &text, vars)
}

/// The configuration from `text` (the file at `path`, which only names errors and anchors
/// relative paths) and the variables `vars`: `<ENV_PREFIX><KEY>` wins over the file, the
/// file over the defaults; other variables are ignored. No I/O: a pure function of its
/// arguments.
pub fn from_sources<T: Settings>(
    path: &Path,
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut config: T =
        parse(T::ENV_PREFIX, text, vars, T::OPTIONAL_KEYS).map_err(|e| ConfigError::from_source::<T>(path, e))?;
    if let Some(base) = path.parent() {
        for p in config.paths() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
    config.validate()?;
    Ok(config)
}

/// Checks that every key of `T` can be set from the environment by its documented name
/// (`<ENV_PREFIX><KEY>`), and that [`Settings::OPTIONAL_KEYS`] lists exactly the keys absent
/// by default. `full` sets every key, each to a value other than its default; `file` is
/// what the file says besides (what `validate` needs to pass, e.g. a required key). For
/// the servers' tests; the first mismatch is the error.
pub fn check_every_key_overridable<T: Settings>(full: T, file: &str) -> Result<(), String> {
    let table = |c: &T| toml::Table::try_from(c).map_err(|e| format!("not a TOML table: {e}"));
    let full = table(&full)?;
    let defaults = table(&T::default())?;
    let mut keys: Vec<&str> = defaults.keys().map(String::as_str).chain(T::OPTIONAL_KEYS.iter().copied()).collect();
    keys.sort_unstable();
    let mut all: Vec<&str> = full.keys().map(String::as_str).collect();
    all.sort_unstable();
    if keys != all {
        return Err(format!("OPTIONAL_KEYS does not list exactly the keys absent by default: {keys:?} vs {all:?}"));
    }
    for (key, value) in &full {
        if defaults.get(key) == Some(value) {
            return Err(format!("{key}: pick a value other than the default"));
        }
        let var = format!("{}{}", T::ENV_PREFIX, key.to_ascii_uppercase());
        let raw = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let c: T = from_sources(Path::new("/etc/huren/config.toml"), file, [(var.clone(), raw.clone())])
            .map_err(|e| format!("{var}={raw}: {e}"))?;
        if table(&c)?.get(key) != Some(value) {
            return Err(format!("{var} did not set {key}"));
        }
    }
    Ok(())
}

/// Why the file or the variables could not be read (before the role is known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Error {
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
fn environment(prefix: &str) -> Result<Vec<(String, String)>, Error> {
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
fn parse<T: DeserializeOwned + serde::Serialize + Default>(
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

/// How a server writes its log lines (`log_format` in `node.toml` and `gateway.toml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours only when writing to a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `span`), for
    /// log collectors.
    Json,
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

    /// A server configuration as the loader sees it: a path, an optional secret, a check.
    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Server {
        listen: String,
        cert: std::path::PathBuf,
        timeout_ms: u64,
        redis_url: Option<String>,
    }

    impl Default for Server {
        fn default() -> Self {
            Self { listen: "127.0.0.1:1".into(), cert: "server.pem".into(), timeout_ms: 5, redis_url: None }
        }
    }

    impl Settings for Server {
        const ROLE: &'static str = "test";
        const ENV_PREFIX: &'static str = "HUREN_TEST_";
        const OPTIONAL_KEYS: &'static [&'static str] = &["redis_url"];

        fn paths(&mut self) -> Vec<&mut std::path::PathBuf> {
            vec![&mut self.cert]
        }

        fn validate(&self) -> Result<(), ConfigError> {
            if self.timeout_ms == 0 {
                return Err(ConfigError::invalid::<Self>("timeout_ms must be positive"));
            }
            if self.redis_url.as_deref().is_some_and(|u| !u.starts_with("redis://")) {
                // The URL may carry a password: never echo it.
                return Err(ConfigError::invalid::<Self>("redis_url is not a redis:// URL"));
            }
            Ok(())
        }
    }

    fn server(text: &str, list: &[(&str, &str)]) -> Result<Server, ConfigError> {
        from_sources(Path::new("/etc/huren/test.toml"), text, vars(list))
    }

    #[test]
    fn the_loader_resolves_paths_and_names_the_role_the_file_and_the_variable() {
        let c = server("cert = \"tls/cert.pem\"\n", &[("HUREN_TEST_TIMEOUT_MS", "9")]).unwrap();
        assert_eq!((c.cert.as_path(), c.timeout_ms), (Path::new("/etc/huren/tls/cert.pem"), 9));
        let c = server("", &[("HUREN_TEST_CERT", "/abs/cert.pem")]).unwrap();
        assert_eq!(c.cert, Path::new("/abs/cert.pem"), "absolute paths stay");
        let c = server("", &[("HUREN_TEST_CERT", "env.pem")]).unwrap();
        assert_eq!(c.cert, Path::new("/etc/huren/env.pem"), "relative paths from the environment too");

        let err = server("\n\nlistne = 1\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(err.to_string().starts_with("/etc/huren/test.toml: line 3: unknown field `listne`"), "{err}");
        let err = server("", &[("HUREN_TEST_TIMEOUT_MS", "soon")]).unwrap_err();
        assert_eq!(err.to_string(), "invalid test config: HUREN_TEST_TIMEOUT_MS: expected an integer, got \"soon\"");
        assert_eq!(err.variable(), Some(("HUREN_TEST_TIMEOUT_MS", "expected an integer, got \"soon\"")));
        let err = server("", &[("HUREN_TEST_TIMEOUT_MS", "0")]).unwrap_err();
        assert_eq!(err.to_string(), "invalid test config: timeout_ms must be positive", "overrides are validated");
        let err = server("", &[("HUREN_TEST_REDIS_URL", "http://:hunter2@x/")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = server("", &[("HUREN_TEST_REDIS_ULR", "redis://:hunter2@x/")]).unwrap_err();
        assert!(err.to_string().starts_with("invalid test config: HUREN_TEST_REDIS_ULR: not a setting"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let err = load::<Server>(Path::new("/nonexistent/huren/test.toml")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read /nonexistent/huren/test.toml: "), "{err}");
    }

    #[test]
    fn every_key_overridable_finds_a_missing_optional_key_and_a_default_value() {
        let full = Server {
            listen: "0.0.0.0:2".into(),
            cert: "/c.pem".into(),
            timeout_ms: 7,
            redis_url: Some("redis://r/".into()),
        };
        assert_eq!(check_every_key_overridable(full, ""), Ok(()));
        let same = Server { redis_url: Some("redis://r/".into()), ..Server::default() };
        assert!(check_every_key_overridable(same, "").unwrap_err().contains("other than the default"));
        let partial = Server { listen: "0.0.0.0:2".into(), cert: "/c.pem".into(), timeout_ms: 7, redis_url: None };
        assert!(check_every_key_overridable(partial, "").unwrap_err().contains("OPTIONAL_KEYS"));
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
