//! The prediction log: a sampled record of every prediction row, written in the background.
//!
//! A prediction pays for a sampling draw (a thread-local generator), a copy of its id, inputs
//! and prediction into a fixed-size record, and a `try_send` on a bounded channel whose slots
//! are allocated once: no lock, no allocation, no formatting, no I/O. The model version goes
//! as a number into this log's table of versions (looked up through a per-thread cache, so a
//! lock is taken once per thread and model install). A task takes the records off the channel
//! every [`DRAIN_EVERY`], and writes them as JSON lines in appends of at most 1 MiB every
//! `SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS`, or sooner when half of what it may hold waits.
//!
//! Memory is bounded by `SOMMELIER_PREDICTION_LOG_QUEUE_ROWS`: half of it in the channel, half
//! in the writer's hands until the store has taken them (about 150 bytes a row), plus one
//! append's text. A slow or unreachable store fills both; past that, rows are dropped and
//! counted in `sommelier_prediction_log_dropped_total`, predictions go on unchanged, and the
//! log resumes when the store answers again. Graceful shutdown writes what is held.
//!
//! Not here: the line format (`record`), where lines go (`store`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use azure_core::Bytes;
use tokio::sync::watch;

use super::id::PredictionId;
use super::metrics::LOG_METRICS;
use super::record::{number_text, write_prediction_line, write_string, RowToWrite, TimeWriter};
use super::store::{Appender, LoopStore, Stream, MAX_APPEND_BYTES};
use crate::model::features::FeatureRow;

/// Longest one append may take before it counts as failed (and is retried later).
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the final write at shutdown may take.
const SHUTDOWN_WRITE: Duration = Duration::from_secs(3);
/// Longest wait before an append that failed is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often the writer takes records off the channel.
pub const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// Marks a record whose row id is `<id>` rather than `<id>.<row>`.
const UNNUMBERED: u32 = u32::MAX;

/// One logged row, as queued: fixed size, nothing to format.
struct Record {
    id: PredictionId,
    inputs: FeatureRow,
    prediction: f64,
    /// Index into the log's table of model versions.
    version: u32,
    /// The row number of `<id>.<row>`, or [`UNNUMBERED`].
    row: u32,
    client_request_id: Option<Box<str>>,
}

/// Distinguishes logs in the per-thread version cache (tests run several in one process).
static LOGS: AtomicU64 = AtomicU64::new(0);

struct Shared {
    serial: u64,
    /// A request is logged when a uniform draw in [0, 2^64) is below this.
    threshold: u64,
    /// The sampling rate as written on every line.
    sample_rate_json: Vec<u8>,
    /// Model versions seen, as JSON strings; a record names one by index.
    versions: Mutex<Vec<Arc<[u8]>>>,
    sender: SyncSender<Record>,
}

impl Shared {
    /// The index of `version` in the table, through this thread's cache of the last one.
    fn version_index(&self, version: &str) -> u32 {
        VERSION_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((serial, text, index)) = cache.as_ref() {
                if *serial == self.serial && **text == *version {
                    return *index;
                }
            }
            let index = self.intern(version);
            *cache = Some((self.serial, Box::from(version), index));
            index
        })
    }

    fn intern(&self, version: &str) -> u32 {
        let mut json = Vec::with_capacity(version.len() + 2);
        write_string(version, &mut json);
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = versions.iter().position(|v| **v == *json) {
            return index as u32;
        }
        versions.push(json.into());
        (versions.len() - 1) as u32
    }

    fn send(&self, record: Record) {
        match self.sender.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                LOG_METRICS.dropped.inc();
            }
        }
    }
}

/// The handle predictions log through; cheap to clone. A log that is off does nothing.
#[derive(Clone, Default)]
pub struct PredictionLog {
    shared: Option<Arc<Shared>>,
}

thread_local! {
    static DRAWS: Cell<u64> = Cell::new(PredictionId::new().encode().iter().fold(0x9e37_79b9_7f4a_7c15, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)) | 1);
    /// The last model version this thread logged: the log's serial, the text, its index.
    static VERSION_CACHE: RefCell<Option<(u64, Box<str>, u32)>> = const { RefCell::new(None) };
}

/// A uniform draw from a thread-local xorshift generator.
fn draw() -> u64 {
    DRAWS.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

impl PredictionLog {
    /// A log that records nothing.
    pub fn off() -> PredictionLog {
        PredictionLog { shared: None }
    }

    /// Whether this request is sampled (and the log on).
    fn sampled(&self) -> Option<&Arc<Shared>> {
        let shared = self.shared.as_ref()?;
        (shared.threshold == u64::MAX || draw() < shared.threshold).then_some(shared)
    }

    /// Logs one prediction, row id `<id>`.
    pub fn one(
        &self,
        id: PredictionId,
        model_version: &str,
        row: &FeatureRow,
        prediction: f64,
        client_request_id: Option<Box<str>>,
    ) {
        let Some(shared) = self.sampled() else { return };
        shared.send(Record {
            id,
            inputs: *row,
            prediction,
            version: shared.version_index(model_version),
            row: UNNUMBERED,
            client_request_id,
        });
    }

    /// Logs a request's rows, row ids `<id>.<row>` (or `<id>` for a single row when not
    /// `numbered`).
    pub fn rows(
        &self,
        id: PredictionId,
        model_version: &str,
        rows: &[FeatureRow],
        predictions: &[f64],
        numbered: bool,
        client_request_id: Option<Box<str>>,
    ) {
        let Some(shared) = self.sampled() else { return };
        let version = shared.version_index(model_version);
        for (index, (row, prediction)) in rows.iter().zip(predictions).enumerate() {
            shared.send(Record {
                id,
                inputs: *row,
                prediction: *prediction,
                version,
                row: if numbered {
                    u32::try_from(index).unwrap_or(UNNUMBERED - 1)
                } else {
                    UNNUMBERED
                },
                client_request_id: client_request_id.clone(),
            });
        }
    }
}

/// The background writer; [`LogWriter::shutdown`] writes what is queued and stops it.
pub struct LogWriter {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LogWriter {
    /// Writes what is queued (bounded by a few seconds) and stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_WRITE + Duration::from_secs(1), self.task).await;
    }
}

/// Starts the log: the handle and its writer, or an off handle when the sample is 0.
/// `capacity` rows at most are held: half in the channel, half in the writer's hands.
pub fn start(
    store: LoopStore,
    writer: &str,
    sample: f64,
    flush: Duration,
    capacity: usize,
) -> (PredictionLog, Option<LogWriter>) {
    if sample <= 0.0 {
        return (PredictionLog::off(), None);
    }
    let threshold = if sample >= 1.0 {
        u64::MAX
    } else {
        (sample * u64::MAX as f64) as u64
    };
    let held = (capacity / 2).max(1);
    let (sender, receiver) = sync_channel(capacity.saturating_sub(held).max(1));
    let shared = Arc::new(Shared {
        serial: LOGS.fetch_add(1, Ordering::Relaxed),
        threshold,
        sample_rate_json: number_text(sample.min(1.0)),
        versions: Mutex::new(Vec::new()),
        sender,
    });
    let (stop, stopped) = watch::channel(false);
    let writer = Writer {
        shared: shared.clone(),
        receiver,
        appender: store.appender(Stream::Log, writer),
        held: VecDeque::new(),
        max_held: held,
        text: Text::default(),
        spare: Vec::new(),
        versions: Vec::new(),
        times: TimeWriter::default(),
        flush,
        last_write: Instant::now(),
        retry_at: None,
    };
    let task = tokio::spawn(writer.run(stopped));
    (
        PredictionLog {
            shared: Some(shared),
        },
        Some(LogWriter { stop, task }),
    )
}

/// The lines of the first records held, formatted once and kept until the store takes them.
#[derive(Default)]
struct Text {
    bytes: Bytes,
    /// Records of `held` this append covers.
    rows: usize,
    /// Lines among them (a record that cannot be formatted is dropped and counted).
    lines: usize,
}

/// The writer task's state.
struct Writer {
    shared: Arc<Shared>,
    receiver: Receiver<Record>,
    appender: Appender,
    /// Records taken off the channel, not yet written.
    held: VecDeque<Record>,
    max_held: usize,
    /// The next append: the lines of `held`'s first `text.rows` records.
    text: Text,
    /// The buffer the next append is formatted into, the last one's when the store let go.
    spare: Vec<u8>,
    /// This writer's copy of the version table.
    versions: Vec<Arc<[u8]>>,
    times: TimeWriter,
    flush: Duration,
    last_write: Instant,
    /// After a failed append, no new try before this.
    retry_at: Option<Instant>,
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Writer {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing_since: Option<Instant> = None;
        loop {
            let mut stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.changed() => true,
            };
            self.take();
            if !stopping && self.due() {
                // A stop ends a write that waits on a stalled store: the shutdown's own write
                // tries the same bytes again within its bound, and what is left is counted.
                stopping = tokio::select! {
                    () = self.write_out(APPEND_TIMEOUT, &mut failing_since) => false,
                    _ = stop.changed() => true,
                };
            }
            if stopping {
                self.write_out(SHUTDOWN_WRITE, &mut failing_since).await;
                let left = self.left_at_shutdown();
                if left > 0 {
                    LOG_METRICS.dropped.inc_by(left as u64);
                    tracing::warn!(rows = left, "prediction log rows not written at shutdown");
                }
                return;
            }
        }
    }

    /// Moves records from the channel into `held`, up to its bound.
    fn take(&mut self) {
        while self.held.len() < self.max_held {
            match self.receiver.try_recv() {
                Ok(record) => self.held.push_back(record),
                Err(_) => break,
            }
        }
    }

    /// Whether to write now: the flush interval passed or half the writer's share waits, and
    /// no failure asks to wait.
    fn due(&self) -> bool {
        if self.held.is_empty() || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        self.last_write.elapsed() >= self.flush || self.held.len() >= self.max_held / 2
    }

    /// Appends what is held, one append at a time, until done, a failure, or `deadline`.
    async fn write_out(&mut self, deadline: Duration, failing_since: &mut Option<Instant>) {
        let started = Instant::now();
        self.last_write = started;
        while !self.held.is_empty() {
            let remaining = deadline.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return;
            }
            self.format_next();
            if self.text.bytes.is_empty() {
                self.written();
                continue;
            }
            let written = tokio::time::timeout(
                remaining.min(APPEND_TIMEOUT),
                self.appender.append(self.text.bytes.clone(), now_millis()),
            )
            .await;
            let error = match written {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some("the store does not answer".to_string()),
            };
            if let Some(error) = error {
                LOG_METRICS.write_failures.inc();
                self.retry_at = Some(Instant::now() + self.flush.min(RETRY_AFTER));
                if failing_since.is_none() {
                    *failing_since = Some(Instant::now());
                    tracing::warn!(%error, "the prediction log cannot be written; rows are kept up to the queue's bound, then dropped and counted");
                }
                return;
            }
            self.written();
            self.take();
            self.retry_at = None;
            if let Some(since) = failing_since.take() {
                tracing::info!(
                    seconds = since.elapsed().as_secs(),
                    "the prediction log is written again"
                );
            }
        }
    }

    /// The records of the last append are written: let them go.
    fn written(&mut self) {
        let Text { bytes, rows, lines } = std::mem::take(&mut self.text);
        self.held.drain(..rows.min(self.held.len()));
        LOG_METRICS.written.inc_by(lines as u64);
        if let Ok(buffer) = bytes.try_into_mut() {
            self.spare = buffer.into();
        }
    }

    /// Formats the held records into the next append, unless it is formatted already (a
    /// retry sends the same bytes).
    fn format_next(&mut self) {
        if self.text.rows > 0 {
            return;
        }
        let mut out = std::mem::take(&mut self.spare);
        out.clear();
        for record in &self.held {
            let start = out.len();
            let known = format(
                record,
                &self.shared,
                &mut self.versions,
                &mut self.times,
                &mut out,
            );
            let fits = out.len() <= MAX_APPEND_BYTES;
            if !fits {
                out.truncate(start);
                if start > 0 {
                    break;
                }
            }
            self.text.rows += 1;
            if known && fits {
                self.text.lines += 1;
            } else {
                LOG_METRICS.dropped.inc();
            }
        }
        self.text.bytes = Bytes::from(out);
    }

    /// Counts what could not be written before shutdown.
    fn left_at_shutdown(&mut self) -> usize {
        let mut left = self.held.len();
        while self.receiver.try_recv().is_ok() {
            left += 1;
        }
        left
    }
}

/// Writes one record's line; false when its version is unknown (it cannot be).
fn format(
    record: &Record,
    shared: &Shared,
    versions: &mut Vec<Arc<[u8]>>,
    times: &mut TimeWriter,
    out: &mut Vec<u8>,
) -> bool {
    let index = record.version as usize;
    if index >= versions.len() {
        let table = shared.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions.clone_from(&table);
    }
    let Some(version) = versions.get(index) else {
        return false;
    };
    write_prediction_line(
        &RowToWrite {
            id: &record.id.encode(),
            row: (record.row != UNNUMBERED).then_some(record.row),
            unix_millis: record.id.unix_millis(),
            model_version_json: version,
            inputs: &record.inputs,
            prediction: record.prediction,
            sample_rate_json: &shared.sample_rate_json,
            client_request_id: record.client_request_id.as_deref(),
        },
        times,
        out,
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64) -> FeatureRow {
        [value; crate::model::features::FEATURE_COUNT]
    }

    async fn written_lines(store: &LoopStore) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        for name in store.list(Stream::Log, "0000").await.unwrap() {
            let bytes = store.read(&name).await.unwrap();
            for line in String::from_utf8(bytes).unwrap().lines() {
                lines.push(serde_json::from_str(line).unwrap());
            }
        }
        lines
    }

    #[tokio::test]
    async fn a_stalled_store_holds_at_most_the_bound_drops_and_counts_the_rest_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LoopStore::Local(dir.path().to_path_buf());
        // The log's directory cannot be made: a file stands where it goes.
        std::fs::write(dir.path().join("log"), b"in the way").unwrap();
        let (log, writer) = start(store.clone(), "test", 1.0, Duration::from_secs(3600), 10);
        let dropped_before = LOG_METRICS.dropped.get();
        for index in 0..5 {
            log.one(PredictionId::new(), "v1", &row(index as f64), 5.0, None);
        }
        // The writer takes the first five and fails to write them; five more fit the channel.
        tokio::time::sleep(DRAIN_EVERY * 3).await;
        for index in 5..15 {
            log.one(PredictionId::new(), "v1", &row(index as f64), 5.0, None);
        }
        assert_eq!(LOG_METRICS.dropped.get() - dropped_before, 5);
        // The store returns: what the bound kept is written, and the log goes on.
        std::fs::remove_file(dir.path().join("log")).unwrap();
        tokio::time::sleep(RETRY_AFTER + DRAIN_EVERY * 5).await;
        log.rows(
            PredictionId::new(),
            "v2",
            &[row(1.0), row(2.0)],
            &[6.0, 7.0],
            true,
            Some("client-1".into()),
        );
        writer.unwrap().shutdown().await;
        let lines = written_lines(&store).await;
        assert_eq!(lines.len(), 12, "{lines:?}");
        assert_eq!(LOG_METRICS.dropped.get() - dropped_before, 5);
        for (index, value) in lines[..10].iter().enumerate() {
            assert_eq!(value["model_version"], "v1");
            assert_eq!(value["sample_rate"], 1.0);
            assert_eq!(value["inputs"]["alcohol"], index as f64);
            assert!(value.get("client_request_id").is_none());
        }
        assert_eq!(lines[11]["model_version"], "v2");
        assert_eq!(lines[11]["client_request_id"], "client-1");
        assert!(lines[11]["id"].as_str().unwrap().ends_with(".1"));
    }

    #[test]
    fn a_quarter_sample_logs_about_a_quarter() {
        let (sender, _receiver) = sync_channel(1);
        let log = PredictionLog {
            shared: Some(Arc::new(Shared {
                serial: LOGS.fetch_add(1, Ordering::Relaxed),
                threshold: (0.25 * u64::MAX as f64) as u64,
                sample_rate_json: number_text(0.25),
                versions: Mutex::new(Vec::new()),
                sender,
            })),
        };
        let sampled = (0..100_000).filter(|_| log.sampled().is_some()).count();
        assert!((23_000..27_000).contains(&sampled), "{sampled}");
    }

    #[test]
    fn versions_are_numbered_once_per_log() {
        let (sender, _receiver) = sync_channel(1);
        let shared = |serial| Shared {
            serial,
            threshold: u64::MAX,
            sample_rate_json: number_text(1.0),
            versions: Mutex::new(Vec::new()),
            sender: sender.clone(),
        };
        let (a, b) = (shared(u64::MAX - 1), shared(u64::MAX - 2));
        assert_eq!(a.version_index("v1"), 0);
        assert_eq!(a.version_index("v2"), 1);
        assert_eq!(a.version_index("v1"), 0);
        assert_eq!(b.version_index("v2"), 0);
        assert_eq!(a.versions.lock().unwrap().len(), 2);
    }
}
