//! Loading a province's statuses and tokens into its node in batches: the engine behind
//! `huren admin import`, `huren admin tokens` and `huren bench seed`.
//!
//! Rows (from [`rows`], or generated) become batches of at most `batch` items; up to
//! `in_flight` batches are at the node at once (`StatusAdmin.PublishStatuses` /
//! `IssueTokens`), each retried on a transient failure for up to `retry_for` — safe, as
//! every status item carries its id and a retried batch is skipped as already applied.
//! Answers are taken in input order: each batch's refusals (input line number, reason,
//! message) go to the refusals file and its tokens to the output file, and then the
//! checkpoint records the last line whose batch — and every one before it — was answered.
//! `--resume` starts after that line, with the same source id (so the same item ids) and
//! the counts so far; refusals and tokens the killed run wrote past it are dropped first.
//!
//! Layout: here the engine ([`run`]), the checkpoint and the counts; [`rows`] the file
//! formats; [`progress`] the progress bar or lines.

pub mod bench;
pub mod progress;
pub mod rows;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use huren_proto::pb;
use pb::status_admin_client::StatusAdminClient;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use self::progress::{Progress, ProgressMode};
use self::rows::LocalRefusal;
use crate::usage;

/// What a run has done so far: every line ends as one of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Applied by this import.
    pub accepted: u64,
    /// Refused (by the node or before sending); listed in the refusals file.
    pub refused: u64,
    /// Already applied by an earlier run (same item id): nothing written.
    pub skipped: u64,
    /// Not applied because another item of its all-or-nothing batch was refused.
    pub not_applied: u64,
}

impl Counts {
    fn short(&self) -> String {
        let mut s = format!("{} accepted, {} refused, {} skipped", self.accepted, self.refused, self.skipped);
        if self.not_applied > 0 {
            s.push_str(&format!(", {} not applied", self.not_applied));
        }
        s
    }

    /// Lines accounted for.
    pub fn total(&self) -> u64 {
        self.accepted + self.refused + self.skipped + self.not_applied
    }
}

/// The checkpoint file: where a killed or failed run stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// "statuses" or "tokens".
    pub kind: String,
    /// The source id the item ids are made of (`<source id>:<line>`).
    pub source_id: String,
    /// Every line up to this one was answered by the node (or refused before sending).
    pub line: u64,
    /// Counts up to that line.
    pub counts: Counts,
}

impl Checkpoint {
    /// Reads a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| usage(format!("reading {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| usage(format!("{} is not a checkpoint: {e}", path.display())))
    }

    /// Writes it in place atomically (a temporary file, then a rename).
    fn store(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("checkpoint-tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// Where a run starts: fresh, or after a checkpoint.
#[derive(Debug, Clone)]
pub struct Start {
    /// Item ids are `<source_id>:<line>` unless a row names its own.
    pub source_id: String,
    /// Lines up to this one are done.
    pub after_line: u64,
    /// Counts so far.
    pub counts: Counts,
}

impl Start {
    /// Decides where to start: after the checkpoint with `resume`; else fresh with
    /// `source_id`, refusing to overwrite the checkpoint of an unfinished run.
    pub fn decide(
        kind: &str,
        checkpoint: Option<&Path>,
        resume: bool,
        source_id: impl FnOnce() -> Result<String>,
    ) -> Result<Self> {
        match checkpoint {
            Some(path) if resume => {
                if !path.exists() {
                    return Err(usage(format!(
                        "--resume: no checkpoint at {} (the earlier run finished, or never started)",
                        path.display()
                    )));
                }
                let cp = Checkpoint::load(path)?;
                if cp.kind != kind {
                    return Err(usage(format!("{} is a checkpoint of a {} run, not {kind}", path.display(), cp.kind)));
                }
                Ok(Self { source_id: cp.source_id, after_line: cp.line, counts: cp.counts })
            }
            None if resume => Err(usage("--resume needs a checkpoint file (--checkpoint)")),
            Some(path) if path.exists() => Err(usage(format!(
                "{} holds the checkpoint of an unfinished run: continue it with --resume, or delete it to start over",
                path.display()
            ))),
            _ => Ok(Self { source_id: source_id()?, after_line: 0, counts: Counts::default() }),
        }
    }
}

/// What a batch item is on its way out.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A status change.
    Status(pb::PublishStatusItem),
    /// A token request.
    Token(pb::IssueTokenRequest),
    /// Refused before sending.
    Refused(LocalRefusal),
}

/// How issued tokens are written.
#[derive(Debug, Clone)]
pub enum TokenSink {
    /// One JSON object a line: line, subject_ref, token, expires_at, qr.
    Jsonl,
    /// `<province>:<token>` a line, as `huren bench lookup --tokens` reads them.
    Bench {
        /// The node's province.
        province: String,
    },
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Items per call.
    pub batch: usize,
    /// Calls at the node at once.
    pub in_flight: usize,
    /// Where the checkpoint goes (none: no resume possible).
    pub checkpoint: Option<PathBuf>,
    /// Where refusals go, one JSON object a line.
    pub refusals: PathBuf,
    /// Where issued tokens go (token runs).
    pub out: Option<PathBuf>,
    /// How tokens are written.
    pub sink: TokenSink,
    /// All-or-nothing batches (statuses).
    pub all_or_nothing: bool,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// Interval of plain progress lines.
    pub progress_every: Duration,
    /// How long one batch is retried on transient failures before the run stops.
    pub retry_for: Duration,
    /// Lines in the input, for the ETA.
    pub total_lines: Option<u64>,
    /// "statuses" or "tokens".
    pub kind: &'static str,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Every line's fate, this run and the ones it resumed.
    pub counts: Counts,
    /// Lines this run handled.
    pub lines: u64,
    /// This run's time.
    pub elapsed: Duration,
}

impl Summary {
    /// The final summary line.
    pub fn text(&self, refusals: &Path) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 { self.lines as f64 / secs } else { 0.0 };
        let mut s = format!(
            "done: {} accepted, {} refused, {} skipped as already applied",
            self.counts.accepted, self.counts.refused, self.counts.skipped
        );
        if self.counts.not_applied > 0 {
            s.push_str(&format!(", {} not applied (all-or-nothing batches)", self.counts.not_applied));
        }
        s.push_str(&format!("; {} lines in {secs:.1} s ({rate:.0} lines/s)", self.lines));
        if self.counts.refused > 0 {
            s.push_str(&format!("; refusals in {}", refusals.display()));
        }
        s
    }
}

struct Item {
    line: u64,
    payload: Payload,
}

struct Batch {
    seq: u64,
    last_line: u64,
    items: Vec<Item>,
}

#[derive(Debug)]
enum Outcome {
    Accepted(Option<pb::IssueTokenResponse>),
    Refused { reason: String, message: String },
    Skipped,
    NotApplied,
}

#[derive(Serialize, Deserialize)]
struct RefusalLine {
    line: u64,
    reason: String,
    message: String,
}

/// Keeps only the JSON lines of `path` whose `line` is at most `upto` (a resumed run
/// writes the rest again).
fn truncate_after(path: &Path, upto: u64) -> Result<()> {
    #[derive(Deserialize)]
    struct Line {
        line: u64,
    }
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<Line>(l).is_ok_and(|l| l.line <= upto))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).with_context(|| format!("rewriting {}", path.display()))
}

fn open_output(path: &Path, append: bool) -> Result<std::io::BufWriter<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| usage(format!("opening {}: {e}", path.display())))?;
    Ok(std::io::BufWriter::new(file))
}

fn transient(status: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(status.code(), Unavailable | Unknown | DeadlineExceeded | Cancelled | Aborted)
}

/// Sends one batch (retrying transient failures for `retry_for`); one outcome per item.
async fn send(
    mut client: StatusAdminClient<Channel>,
    items: &[Item],
    all_or_nothing: bool,
    retry_for: Duration,
) -> Result<Vec<Outcome>> {
    let mut outcomes: Vec<Option<Outcome>> = items
        .iter()
        .map(|i| match &i.payload {
            Payload::Refused(r) => Some(Outcome::Refused { reason: r.reason.to_owned(), message: r.message.clone() }),
            _ => None,
        })
        .collect();
    let sent: Vec<usize> = (0..items.len()).filter(|i| outcomes[*i].is_none()).collect();
    if sent.is_empty() || (all_or_nothing && sent.len() < items.len()) {
        for at in sent {
            outcomes[at] = Some(Outcome::NotApplied);
        }
        return Ok(outcomes.into_iter().flatten().collect());
    }
    let statuses: Vec<pb::PublishStatusItem> = sent
        .iter()
        .filter_map(|i| match &items[*i].payload {
            Payload::Status(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let tokens: Vec<pb::IssueTokenRequest> = sent
        .iter()
        .filter_map(|i| match &items[*i].payload {
            Payload::Token(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let answers = loop {
        let answer = if tokens.is_empty() {
            let mut request =
                tonic::Request::new(pb::PublishStatusesRequest { items: statuses.clone(), all_or_nothing });
            request.set_timeout(Duration::from_secs(60));
            client
                .publish_statuses(request)
                .await
                .map(|r| r.into_inner().results.into_iter().map(|r| (r.outcome, r.refusal, None)).collect::<Vec<_>>())
        } else {
            let mut request = tonic::Request::new(pb::IssueTokensRequest { items: tokens.clone() });
            request.set_timeout(Duration::from_secs(60));
            client
                .issue_tokens(request)
                .await
                .map(|r| r.into_inner().results.into_iter().map(|r| (r.outcome, r.refusal, r.token)).collect())
        };
        match answer {
            Ok(a) => break a,
            Err(status) if transient(&status) && started.elapsed() < retry_for => {
                tracing::debug!(code = ?status.code(), "batch failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(status) => bail!("node refused a batch: {:?}: {}", status.code(), status.message()),
        }
    };
    if answers.len() != sent.len() {
        bail!("node answered {} results for {} items", answers.len(), sent.len());
    }
    for (at, (outcome, refusal, token)) in sent.into_iter().zip(answers) {
        let refusal = refusal.unwrap_or_default();
        outcomes[at] = Some(match pb::ItemOutcome::try_from(outcome) {
            Ok(pb::ItemOutcome::Accepted) => Outcome::Accepted(token),
            Ok(pb::ItemOutcome::AlreadyApplied) => Outcome::Skipped,
            Ok(pb::ItemOutcome::NotApplied) => Outcome::NotApplied,
            Ok(pb::ItemOutcome::Refused) => Outcome::Refused { reason: refusal.reason, message: refusal.message },
            _ => bail!("node answered an unknown item outcome {outcome}"),
        });
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// Cuts `rows` (after `start.after_line`) into batches on a blocking thread.
fn batches(
    rows: Box<dyn Iterator<Item = (u64, Payload)> + Send>,
    after_line: u64,
    batch: usize,
    tx: tokio::sync::mpsc::Sender<Batch>,
) {
    let mut seq = 0;
    let mut items = Vec::with_capacity(batch);
    let mut sendable = 0;
    let mut last_line = after_line;
    for (line, payload) in rows.filter(|(line, _)| *line > after_line) {
        if !matches!(payload, Payload::Refused(_)) {
            sendable += 1;
        }
        last_line = line;
        items.push(Item { line, payload });
        if sendable >= batch {
            if tx.blocking_send(Batch { seq, last_line, items: std::mem::take(&mut items) }).is_err() {
                return;
            }
            seq += 1;
            sendable = 0;
        }
    }
    if !items.is_empty() {
        let _ = tx.blocking_send(Batch { seq, last_line, items });
    }
}

/// Imports `rows` (line number and payload, ascending lines) as `options` say, from `start`.
pub async fn run(
    client: StatusAdminClient<Channel>,
    rows: Box<dyn Iterator<Item = (u64, Payload)> + Send>,
    start: Start,
    options: &Options,
) -> Result<Summary> {
    if options.batch == 0 || options.in_flight == 0 {
        return Err(usage("--batch and --in-flight must be positive"));
    }
    let resumed = start.after_line > 0;
    if resumed {
        truncate_after(&options.refusals, start.after_line)?;
        if let (Some(out), TokenSink::Jsonl) = (&options.out, &options.sink) {
            truncate_after(out, start.after_line)?;
        }
    }
    let mut refusals = open_output(&options.refusals, resumed)?;
    let mut out = match &options.out {
        Some(path) => Some(open_output(path, resumed)?),
        None => None,
    };
    let mut progress =
        Progress::new(options.progress, options.kind, options.total_lines, start.after_line, options.progress_every);
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(options.in_flight);
    let (after, size) = (start.after_line, options.batch);
    let reader = tokio::task::spawn_blocking(move || batches(rows, after, size, tx));
    let mut in_flight = tokio::task::JoinSet::new();
    let mut answered: BTreeMap<u64, (Batch, Vec<Outcome>)> = BTreeMap::new();
    let mut next = 0u64;
    let mut input_done = false;
    let mut checkpoint = Checkpoint {
        kind: options.kind.to_owned(),
        source_id: start.source_id.clone(),
        line: start.after_line,
        counts: start.counts,
    };
    let failed = |checkpoint: &Checkpoint, e: anyhow::Error| {
        let resume = match &options.checkpoint {
            Some(path) => format!("; continue with --resume (checkpoint {})", path.display()),
            None => String::new(),
        };
        anyhow!("{e:#}; every line up to {} was answered{resume}", checkpoint.line)
    };
    loop {
        tokio::select! {
            batch = rx.recv(), if !input_done && in_flight.len() < options.in_flight => match batch {
                Some(batch) => {
                    let (client, aon, retry) = (client.clone(), options.all_or_nothing, options.retry_for);
                    in_flight.spawn(async move {
                        let outcomes = send(client, &batch.items, aon, retry).await;
                        (batch, outcomes)
                    });
                }
                None => input_done = true,
            },
            joined = in_flight.join_next(), if !in_flight.is_empty() => {
                let Some(joined) = joined else { continue };
                let (batch, outcomes) = joined.map_err(|e| anyhow!("a batch task failed: {e}"))?;
                let outcomes = outcomes.map_err(|e| failed(&checkpoint, e))?;
                answered.insert(batch.seq, (batch, outcomes));
                while let Some((batch, outcomes)) = answered.remove(&next) {
                    next += 1;
                    record(&batch, outcomes, &mut checkpoint.counts, &mut refusals, out.as_mut(), &options.sink)?;
                    checkpoint.line = batch.last_line;
                }
                refusals.flush()?;
                if let Some(out) = out.as_mut() {
                    out.flush()?;
                }
                if let Some(path) = &options.checkpoint {
                    checkpoint.store(path)?;
                }
                progress.update(checkpoint.line, &checkpoint.counts);
            }
            else => break,
        }
    }
    reader.await.map_err(|e| anyhow!("reading the input failed: {e}"))?;
    progress.finish();
    refusals.flush()?;
    if let Some(mut out) = out {
        out.flush()?;
        out.get_ref().sync_all()?;
    }
    if let Some(path) = &options.checkpoint {
        // Finished: nothing to resume. Running the same input again skips what it applied.
        let _ = std::fs::remove_file(path);
    }
    Ok(Summary {
        counts: checkpoint.counts,
        lines: checkpoint.counts.total() - start.counts.total(),
        elapsed: started.elapsed(),
    })
}

/// Counts a batch's outcomes and writes its refusals and tokens.
fn record(
    batch: &Batch,
    outcomes: Vec<Outcome>,
    counts: &mut Counts,
    refusals: &mut impl std::io::Write,
    mut out: Option<&mut std::io::BufWriter<std::fs::File>>,
    sink: &TokenSink,
) -> Result<()> {
    for (item, outcome) in batch.items.iter().zip(outcomes) {
        match outcome {
            Outcome::Accepted(token) => {
                counts.accepted += 1;
                if let (Some(out), Some(token), Payload::Token(req)) = (out.as_mut(), token, &item.payload) {
                    let text = huren_pki::qr::token_to_text(&token.token);
                    match sink {
                        TokenSink::Jsonl => writeln!(
                            out,
                            "{}",
                            serde_json::json!({
                                "line": item.line, "subject_ref": req.subject_ref, "token": text,
                                "expires_at": token.expires_at, "qr": token.qr,
                            })
                        )?,
                        TokenSink::Bench { province } => writeln!(out, "{province}:{text}")?,
                    }
                }
            }
            Outcome::Refused { reason, message } => {
                counts.refused += 1;
                serde_json::to_writer(&mut *refusals, &RefusalLine { line: item.line, reason, message })?;
                refusals.write_all(b"\n")?;
            }
            Outcome::Skipped => counts.skipped += 1,
            Outcome::NotApplied => counts.not_applied += 1,
        }
    }
    Ok(())
}

/// Hex SHA-256 of a file (the first 16 bytes) and its line count: the source id of its
/// item ids, and the total for the ETA.
pub fn digest_and_lines(path: &Path) -> Result<(String, u64)> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).map_err(|e| usage(format!("reading {}: {e}", path.display())))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1;
    }
    let digest = hasher.finalize();
    Ok((digest[..16].iter().map(|b| format!("{b:02x}")).collect(), lines))
}

/// A random source id (standard input without `--source-id`).
pub fn random_source_id() -> String {
    let bytes = huren_pki::qr::new_token().unwrap_or_default();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
