//! The file formats of `huren admin import` and `huren admin tokens`: JSON Lines (one object
//! a line) or CSV (a header row naming the columns, in any order), read row by row with
//! their line numbers, and each row checked and turned into its wire item.
//!
//! Status rows: `subject_ref` (required), `status` (GREEN, YELLOW or RED), `rule_id`,
//! `valid_until` (Unix seconds; empty or 0: the node's default), `test_recency` (NONE,
//! WITHIN_24H, WITHIN_48H, WITHIN_72H), `authority` (optional check, as `UpsertStatus`),
//! `item_id` (optional; default `<source id>:<line>`). Token rows: `subject_ref`,
//! `lifetime_seconds`, `purpose`. Other columns or keys are refused.

use std::io::BufRead;

use huren_proto::pb;
use serde::Deserialize;

/// A row refused before it is sent: the reason (as in the refusals file) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRefusal {
    /// `UNPARSEABLE_ROW` or `INVALID_REQUEST`.
    pub reason: &'static str,
    /// What is wrong, without the row's content.
    pub message: String,
}

impl LocalRefusal {
    fn unparseable(message: impl std::fmt::Display) -> Self {
        Self { reason: "UNPARSEABLE_ROW", message: message.to_string() }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self { reason: "INVALID_REQUEST", message: message.into() }
    }
}

/// An input file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object a line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

impl Format {
    /// CSV for a `.csv` file name, else JSON Lines.
    pub fn guess(path: &str) -> Self {
        if path.to_ascii_lowercase().ends_with(".csv") {
            Format::Csv
        } else {
            Format::Jsonl
        }
    }
}

/// One row of a status file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRow {
    pub subject_ref: String,
    pub status: String,
    #[serde(default)]
    pub rule_id: Option<String>,
    #[serde(default)]
    pub valid_until: Option<i64>,
    #[serde(default)]
    pub test_recency: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub item_id: Option<String>,
}

/// One row of a token file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRow {
    pub subject_ref: String,
    #[serde(default)]
    pub lifetime_seconds: Option<u32>,
    #[serde(default)]
    pub purpose: Option<String>,
}

/// The subject reference, unless it is malformed or looks like an ID or phone number
/// (such a row is never sent).
fn subject_ref(s: &str) -> Result<String, LocalRefusal> {
    if huren_node::looks_like_personal_id(s) {
        return Err(LocalRefusal::invalid(
            "subject_ref looks like a resident ID or phone number; nodes hold pseudonymous references only (not sent)",
        ));
    }
    if s.is_empty() {
        return Err(LocalRefusal::invalid("subject_ref is empty"));
    }
    Ok(s.to_owned())
}

/// A status colour by name.
pub fn status(s: &str) -> Result<pb::HealthStatus, LocalRefusal> {
    pb::HealthStatus::from_str_name(&format!("HEALTH_STATUS_{}", s.trim().to_ascii_uppercase()))
        .filter(|s| *s != pb::HealthStatus::Unspecified)
        .ok_or_else(|| LocalRefusal::invalid("status must be GREEN, YELLOW or RED"))
}

fn test_recency(s: Option<&str>) -> Result<pb::TestRecency, LocalRefusal> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(pb::TestRecency::Unspecified),
        Some(s) => pb::TestRecency::from_str_name(&format!("TEST_RECENCY_{}", s.to_ascii_uppercase()))
            .filter(|s| *s != pb::TestRecency::Unspecified)
            .ok_or_else(|| LocalRefusal::invalid("test_recency must be NONE, WITHIN_24H, WITHIN_48H or WITHIN_72H")),
    }
}

impl StatusRow {
    /// The wire item; `default_id` unless the row names its own id.
    pub fn item(self, default_id: String) -> Result<pb::PublishStatusItem, LocalRefusal> {
        let change = pb::UpsertStatusRequest {
            subject_ref: subject_ref(&self.subject_ref)?,
            status: status(&self.status)? as i32,
            rule_id: self.rule_id.unwrap_or_default(),
            authority: self.authority.unwrap_or_default(),
            valid_until: self.valid_until.unwrap_or(0),
            test_recency: test_recency(self.test_recency.as_deref())? as i32,
        };
        let item_id = self.item_id.filter(|i| !i.is_empty()).unwrap_or(default_id);
        Ok(pb::PublishStatusItem { item_id, change: Some(change) })
    }
}

impl TokenRow {
    /// The wire item.
    pub fn item(self) -> Result<pb::IssueTokenRequest, LocalRefusal> {
        Ok(pb::IssueTokenRequest {
            subject_ref: subject_ref(&self.subject_ref)?,
            lifetime_seconds: self.lifetime_seconds.unwrap_or(0),
            purpose: self.purpose.unwrap_or_default(),
        })
    }
}

/// Rows of type `T` with their 1-based line numbers, from JSON Lines or CSV; blank lines are
/// skipped. A row that does not parse is an `Err` for that line; a file that cannot be read
/// ends the iteration with an `Err` of line 0.
pub fn read<T: serde::de::DeserializeOwned + Send + 'static>(
    input: Box<dyn BufRead + Send>,
    format: Format,
) -> Box<dyn Iterator<Item = (u64, Result<T, LocalRefusal>)> + Send> {
    match format {
        Format::Jsonl => {
            let mut failed = false;
            Box::new(
                input
                    .lines()
                    .enumerate()
                    .map_while(move |(i, line)| {
                        if failed {
                            return None;
                        }
                        let line_no = i as u64 + 1;
                        Some(match line {
                            Ok(text) if text.trim().is_empty() => None,
                            Ok(text) => Some((
                                line_no,
                                serde_json::from_str::<T>(&text).map_err(|e| {
                                    // serde_json names the key or the type at fault, never the value.
                                    LocalRefusal::unparseable(format!("not a valid row: {}", e.classify_message()))
                                }),
                            )),
                            Err(e) => {
                                failed = true;
                                Some((0, Err(LocalRefusal::unparseable(format!("reading the input: {e}")))))
                            }
                        })
                    })
                    .flatten(),
            )
        }
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
            let headers = match reader.headers() {
                Ok(h) => h.clone(),
                Err(e) => {
                    let refusal = LocalRefusal::unparseable(format!("reading the CSV header: {}", csv_error(&e)));
                    return Box::new(std::iter::once((0, Err(refusal))));
                }
            };
            Box::new(reader.into_records().map(move |record| match record {
                Ok(record) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let row = record
                        .deserialize::<T>(Some(&headers))
                        .map_err(|e| LocalRefusal::unparseable(format!("not a valid row: {}", csv_error(&e))));
                    (line, row)
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    (line, Err(LocalRefusal::unparseable(format!("not a valid row: {}", csv_error(&e)))))
                }
            }))
        }
    }
}

/// A CSV error without the field's value.
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(i) => format!("column {} {}", i + 1, deserialize_kind(err.kind())),
            None => deserialize_kind(err.kind()),
        },
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        _ => "unreadable CSV".to_owned(),
    }
}

fn deserialize_kind(kind: &csv::DeserializeErrorKind) -> String {
    match kind {
        csv::DeserializeErrorKind::Message(m) | csv::DeserializeErrorKind::Unsupported(m) => m.clone(),
        csv::DeserializeErrorKind::UnexpectedEndOfRow => "is missing".into(),
        csv::DeserializeErrorKind::InvalidUtf8(_) => "is not UTF-8".into(),
        csv::DeserializeErrorKind::ParseBool(_) => "is not a boolean".into(),
        csv::DeserializeErrorKind::ParseInt(_) => "is not an integer".into(),
        csv::DeserializeErrorKind::ParseFloat(_) => "is not a number".into(),
    }
}

/// What serde_json says about a bad row, without quoting it.
trait Classify {
    fn classify_message(&self) -> String;
}

impl Classify for serde_json::Error {
    fn classify_message(&self) -> String {
        let text = self.to_string();
        // "unknown field `x`, expected ..." and "missing field `x`" name keys, not values;
        // "invalid type: string \"...\"" would quote a value: keep only its kind.
        match text.split_once(": string \"") {
            Some((head, _)) => format!("{head}: a string where another type belongs"),
            None => text.split(" at line ").next().unwrap_or_default().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows<T: serde::de::DeserializeOwned + Send + 'static>(
        text: &str,
        format: Format,
    ) -> Vec<(u64, Result<T, LocalRefusal>)> {
        read::<T>(Box::new(std::io::Cursor::new(text.to_owned())), format).collect()
    }

    #[test]
    fn json_lines_and_csv_read_the_same_rows_with_their_line_numbers() {
        let jsonl = "{\"subject_ref\":\"ah-1\",\"status\":\"GREEN\"}\n\n{\"subject_ref\":\"ah-2\",\"status\":\"red\",\"rule_id\":\"R1\",\"valid_until\":5}\n{\"subject_ref\":\"ah-3\"}\n";
        let got = rows::<StatusRow>(jsonl, Format::Jsonl);
        assert_eq!(
            got.iter().map(|(l, r)| (*l, r.is_ok())).collect::<Vec<_>>(),
            vec![(1, true), (3, true), (4, false)]
        );
        let csv = "subject_ref,status,rule_id,valid_until\nah-1,GREEN,,\nah-2,red,R1,5\nah-3\n";
        let got = rows::<StatusRow>(csv, Format::Csv);
        assert_eq!(
            got.iter().map(|(l, r)| (*l, r.is_ok())).collect::<Vec<_>>(),
            vec![(2, true), (3, true), (4, false)]
        );
        let Ok(row) = got[1].1.clone() else { panic!() };
        let item = row.item("src:3".into()).unwrap();
        let change = item.change.unwrap();
        assert_eq!(
            (item.item_id.as_str(), change.status, change.rule_id.as_str(), change.valid_until),
            ("src:3", 3, "R1", 5)
        );
    }

    #[test]
    fn id_numbers_unknown_statuses_and_columns_are_refused_without_quoting_them() {
        let row = |subject: &str, status: &str| StatusRow {
            subject_ref: subject.into(),
            status: status.into(),
            rule_id: None,
            valid_until: None,
            test_recency: None,
            authority: None,
            item_id: None,
        };
        let err = row("34010419900101123X", "GREEN").item("x".into()).unwrap_err();
        assert_eq!(err.reason, "INVALID_REQUEST");
        assert!(!err.message.contains("3401041990"), "{}", err.message);
        assert!(row("ah-1", "PURPLE").item("x".into()).is_err());
        let got = rows::<StatusRow>(
            "{\"subject_ref\":\"ah-1\",\"status\":\"GREEN\",\"name\":\"Zhang San\"}\n",
            Format::Jsonl,
        );
        let err = got[0].1.as_ref().unwrap_err();
        assert!(err.message.contains("unknown field") && !err.message.contains("Zhang"), "{}", err.message);
        let got = rows::<StatusRow>("{\"subject_ref\":\"ah-1\",\"status\":7}\n", Format::Jsonl);
        assert!(got[0].1.is_err());
    }
}
