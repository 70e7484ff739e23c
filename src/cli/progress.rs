//! Progress on standard error while a command works: a live line on a terminal, a line
//! every few seconds otherwise, nothing under `--json`.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::model::algorithm::Algorithm;
use crate::model::progress;
use crate::retraining::workflow::Progress;

use super::Output;

fn spinner(enabled: bool, message: String) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A training's stages on standard error: the reading and the fit as [`ProgressDisplay`]s,
/// the cross-validation as a bar of folds.
pub(super) struct CliProgress {
    output: Output,
    shown: Mutex<Option<Shown>>,
}

enum Shown {
    Display(ProgressDisplay),
    Bar(ProgressBar),
}

impl CliProgress {
    pub(super) fn new(output: Output) -> CliProgress {
        CliProgress {
            output,
            shown: Mutex::new(None),
        }
    }

    fn show(&self, next: Shown) {
        if let Ok(mut shown) = self.shown.lock() {
            if let Some(previous) = shown.replace(next) {
                previous.finish();
            }
        }
    }
}

impl Shown {
    pub(super) fn finish(self) {
        match self {
            Shown::Display(display) => display.finish(),
            Shown::Bar(bar) => bar.finish_and_clear(),
        }
    }
}

impl Progress for CliProgress {
    fn reading(&self, source: &str) {
        let display = ProgressDisplay::start(self.output, Stage::Reading(source.to_string()));
        self.show(Shown::Display(display));
    }

    fn cross_validating(&self, folds: usize) {
        let bar = if self.output.progress() {
            let bar = ProgressBar::new(folds as u64).with_message("cross-validating");
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:30}] fold {pos}/{len} {elapsed}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        self.show(Shown::Bar(bar));
    }

    fn fold_done(&self, done: usize) {
        if let Ok(shown) = self.shown.lock() {
            if let Some(Shown::Bar(bar)) = shown.as_ref() {
                bar.set_position(done as u64);
            }
        }
    }

    fn fitting(&self, algorithm: Algorithm, rows: usize) {
        progress::fit_started(0);
        let stage = Stage::Fitting {
            algorithm: algorithm.name(),
            rows,
        };
        self.show(Shown::Display(ProgressDisplay::start(self.output, stage)));
    }

    fn stage_done(&self) {
        if let Ok(mut shown) = self.shown.lock() {
            if let Some(previous) = shown.take() {
                previous.finish();
            }
        }
    }
}

/// What a progress display shows.
pub(super) enum Stage {
    Reading(String),
    Fitting {
        algorithm: &'static str,
        rows: usize,
    },
}

/// Seconds after which a training's display adds an estimate of the time left, and after
/// which (and then as often) a display that is not a terminal writes a line.
const ESTIMATE_AFTER: Duration = Duration::from_secs(3);
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A progress display on standard error while work runs: a live line on a terminal, a line
/// every few seconds otherwise, nothing under `--json`.
pub(super) struct ProgressDisplay {
    ticker: Option<tokio::task::JoinHandle<()>>,
    bar: ProgressBar,
}

impl ProgressDisplay {
    pub(super) fn start(output: Output, stage: Stage) -> ProgressDisplay {
        if output.json {
            return ProgressDisplay {
                ticker: None,
                bar: ProgressBar::hidden(),
            };
        }
        let terminal = output.progress();
        let bar = spinner(terminal, stage_message(&stage, Duration::ZERO));
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut next_line = LINE_EVERY;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let elapsed = started.elapsed();
                let message = stage_message(&stage, elapsed);
                if terminal {
                    shown.set_message(message);
                } else if elapsed >= next_line {
                    next_line += LINE_EVERY;
                    eprintln!("{message}");
                }
            }
        });
        ProgressDisplay {
            ticker: Some(ticker),
            bar,
        }
    }

    pub(super) fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// `training extra-trees on 1599 rows: 40/100 trees, about 6 s left`.
fn stage_message(stage: &Stage, elapsed: Duration) -> String {
    match stage {
        Stage::Reading(source) => format!("reading {source}: {} rows", progress::rows()),
        Stage::Fitting { algorithm, rows } => {
            let (done, total) = progress::trees();
            let mut text = format!("training {algorithm} on {rows} rows");
            if total > 0 {
                text.push_str(&format!(": {done}/{total} trees"));
                if elapsed >= ESTIMATE_AFTER {
                    if let Some(left) = progress::estimate(done, total, elapsed) {
                        text.push_str(&format!(", {}", progress::describe_left(left)));
                    }
                }
            }
            text
        }
    }
}
