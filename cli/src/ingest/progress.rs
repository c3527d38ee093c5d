//! Progress of an import: a bar with rate and ETA when standard error is a terminal
//! (indicatif), else a plain line every few seconds (logs, CI), and nothing when asked.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use super::Counts;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines, even on a terminal.
    Plain,
    /// Nothing until the summary.
    None,
}

/// Shows how far an import got.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    every: Duration,
    last: Instant,
    started: Instant,
    /// Lines in the input, when known (a file; not standard input).
    total: Option<u64>,
    /// Lines already done when this run started (a resume).
    resumed_at: u64,
}

impl Progress {
    /// Progress over `total` lines (if known), starting at line `resumed_at`.
    pub fn new(mode: ProgressMode, what: &str, total: Option<u64>, resumed_at: u64, every: Duration) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && terminal).then(|| {
            let template = match total {
                Some(_) => "{bar:30} {pos}/{len} lines · {per_sec} · ETA {eta} · {msg}",
                None => "{spinner} {pos} lines · {per_sec} · {msg}",
            };
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(resumed_at);
            bar.reset_eta();
            bar.set_message(what.to_owned());
            bar
        });
        let plain = bar.is_none() && mode != ProgressMode::None;
        let now = Instant::now();
        Self { bar, plain, every, last: now, started: now, total, resumed_at }
    }

    /// Lines done so far (all runs), and the counts.
    pub fn update(&mut self, line: u64, counts: &Counts) {
        if let Some(bar) = &self.bar {
            bar.set_position(line);
            bar.set_message(counts.short());
        } else if self.plain && self.last.elapsed() >= self.every {
            self.last = Instant::now();
            eprintln!("{}", self.line(line, counts));
        }
    }

    /// One plain progress line: position, rate and ETA of this run.
    fn line(&self, line: u64, counts: &Counts) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = line.saturating_sub(self.resumed_at) as f64 / secs;
        let position = match self.total {
            Some(total) if total > 0 => {
                let eta =
                    if rate > 0.0 { format!("{:.0} s", total.saturating_sub(line) as f64 / rate) } else { "?".into() };
                format!("line {line}/{total} ({:.1}%), ETA {eta}", 100.0 * line as f64 / total as f64)
            }
            _ => format!("line {line}"),
        };
        format!("progress: {position}, {rate:.0} lines/s; {}", counts.short())
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
