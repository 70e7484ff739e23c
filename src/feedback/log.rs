//! The prediction log: a sampled record of every prediction row, written in the background.
//!
//! A prediction pays for a sampling draw (a thread-local generator), one atomic add that
//! reserves its rows in the queue's bound, and a send on a lock-free channel: no lock, no
//! formatting, no I/O. A task formats the queued rows into JSON lines and appends them in
//! batches of at most 4 MiB every `SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS` (sooner when a
//! quarter of the queue is full). Rows stay reserved until written, so a slow or unreachable
//! store can hold at most `SOMMELIER_PREDICTION_LOG_QUEUE_ROWS` rows (about 0.5 KiB each);
//! past that, rows are dropped and counted in `sommelier_prediction_log_dropped_total`, and
//! the log resumes when the store answers again. Graceful shutdown writes what is queued.
//!
//! Not here: the line format (`record`), where lines go (`store`).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch, Notify};

use super::id::PredictionId;
use super::metrics::LOG_METRICS;
use super::record::{time_text, Inputs, PredictionLine};
use super::store::{Appender, LoopStore, Stream, MAX_APPEND_BYTES};
use crate::model::features::FeatureRow;

/// Longest one append may take before it counts as failed (and is retried later).
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the final write at shutdown may take.
const SHUTDOWN_WRITE: Duration = Duration::from_secs(3);

/// The rows of one logged request.
enum Rows {
    One(FeatureRow, f64),
    Many(Vec<FeatureRow>, Vec<f64>),
}

/// One logged request, as queued.
struct Entry {
    id: PredictionId,
    unix_millis: u64,
    model_version: String,
    rows: Rows,
    /// Rows are `<id>.<row>` (a batch, or any MLflow call); else the row is `<id>`.
    numbered: bool,
    client_request_id: Option<Box<str>>,
}

impl Entry {
    fn row_count(&self) -> usize {
        match &self.rows {
            Rows::One(..) => 1,
            Rows::Many(rows, _) => rows.len(),
        }
    }
}

struct Shared {
    /// A request is logged when a uniform draw in [0, 2^64) is below this.
    threshold: u64,
    sample_rate: f64,
    capacity: usize,
    queued: AtomicUsize,
    wake: Notify,
    sender: mpsc::UnboundedSender<Entry>,
}

/// The handle predictions log through; cheap to clone. A log that is off does nothing.
#[derive(Clone, Default)]
pub struct PredictionLog {
    shared: Option<Arc<Shared>>,
}

thread_local! {
    static DRAWS: Cell<u64> = Cell::new(PredictionId::new().encode().iter().fold(0x9e37_79b9_7f4a_7c15, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)) | 1);
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

    /// Reserves `rows` in the bound; counts them dropped when they do not fit.
    fn reserve(shared: &Shared, rows: usize) -> bool {
        let before = shared.queued.fetch_add(rows, Ordering::AcqRel);
        if before + rows > shared.capacity {
            shared.queued.fetch_sub(rows, Ordering::AcqRel);
            LOG_METRICS.dropped.inc_by(rows as u64);
            return false;
        }
        let quarter = shared.capacity / 4;
        if before < quarter && before + rows >= quarter {
            shared.wake.notify_one();
        }
        true
    }

    fn send(shared: &Shared, entry: Entry) {
        let rows = entry.row_count();
        if shared.sender.send(entry).is_err() {
            shared.queued.fetch_sub(rows, Ordering::AcqRel);
            LOG_METRICS.dropped.inc_by(rows as u64);
        }
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
        if !Self::reserve(shared, 1) {
            return;
        }
        Self::send(
            shared,
            Entry {
                id,
                unix_millis: id.unix_millis(),
                model_version: model_version.to_string(),
                rows: Rows::One(*row, prediction),
                numbered: false,
                client_request_id,
            },
        );
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
        let count = rows.len().min(predictions.len());
        if count == 0 || !Self::reserve(shared, count) {
            return;
        }
        Self::send(
            shared,
            Entry {
                id,
                unix_millis: id.unix_millis(),
                model_version: model_version.to_string(),
                rows: Rows::Many(rows[..count].to_vec(), predictions[..count].to_vec()),
                numbered,
                client_request_id,
            },
        );
    }

    /// Rows queued or being written now.
    pub fn queued_rows(&self) -> usize {
        self.shared
            .as_ref()
            .map_or(0, |s| s.queued.load(Ordering::Acquire))
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
    let (sender, receiver) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        threshold,
        sample_rate: sample.min(1.0),
        capacity,
        queued: AtomicUsize::new(0),
        wake: Notify::new(),
        sender,
    });
    let (stop, stopped) = watch::channel(false);
    let appender = store.appender(Stream::Log, writer);
    let task = tokio::spawn(run(shared.clone(), receiver, appender, flush, stopped));
    (
        PredictionLog {
            shared: Some(shared),
        },
        Some(LogWriter { stop, task }),
    )
}

/// Lines formatted and waiting to be written, each batch at most [`MAX_APPEND_BYTES`].
#[derive(Default)]
struct Pending {
    batches: std::collections::VecDeque<(Vec<u8>, usize)>,
}

impl Pending {
    fn push_line(&mut self, line: &[u8]) {
        let fits = self
            .batches
            .back()
            .is_some_and(|(bytes, _)| bytes.len() + line.len() <= MAX_APPEND_BYTES);
        if !fits {
            self.batches.push_back((Vec::with_capacity(64 * 1024), 0));
        }
        if let Some((bytes, rows)) = self.batches.back_mut() {
            bytes.extend_from_slice(line);
            *rows += 1;
        }
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Formats an entry's rows into `pending`. A line longer than one append (it cannot be) is
/// dropped and counted.
fn format_entry(
    entry: &Entry,
    sample_rate: f64,
    pending: &mut Pending,
    line: &mut Vec<u8>,
) -> usize {
    let time = time_text(entry.unix_millis);
    let id = entry.id.to_string();
    let mut dropped = 0;
    let mut one = |row_id: &str, row: &FeatureRow, prediction: f64| {
        line.clear();
        let record = PredictionLine {
            id: row_id,
            time: &time,
            model_version: &entry.model_version,
            inputs: Inputs(*row),
            prediction,
            sample_rate,
            client_request_id: entry.client_request_id.as_deref(),
        };
        if serde_json::to_writer(&mut *line, &record).is_err() || line.len() >= MAX_APPEND_BYTES {
            dropped += 1;
            return;
        }
        line.push(b'\n');
        pending.push_line(line);
    };
    match &entry.rows {
        Rows::One(row, prediction) if !entry.numbered => one(&id, row, *prediction),
        Rows::One(row, prediction) => one(&format!("{id}.0"), row, *prediction),
        Rows::Many(rows, predictions) => {
            for (index, (row, prediction)) in rows.iter().zip(predictions).enumerate() {
                if entry.numbered {
                    one(&format!("{id}.{index}"), row, *prediction);
                } else {
                    one(&id, row, *prediction);
                }
            }
        }
    }
    dropped
}

async fn run(
    shared: Arc<Shared>,
    mut receiver: mpsc::UnboundedReceiver<Entry>,
    mut appender: Appender,
    flush: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(flush);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Pending::default();
    let mut line = Vec::with_capacity(512);
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        let stopping = tokio::select! {
            _ = interval.tick() => false,
            _ = shared.wake.notified() => false,
            _ = stop.changed() => true,
        };
        while let Ok(entry) = receiver.try_recv() {
            let dropped = format_entry(&entry, shared.sample_rate, &mut pending, &mut line);
            if dropped > 0 {
                shared.queued.fetch_sub(dropped, Ordering::AcqRel);
                LOG_METRICS.dropped.inc_by(dropped as u64);
            }
        }
        let deadline = if stopping {
            SHUTDOWN_WRITE
        } else {
            APPEND_TIMEOUT
        };
        let started = std::time::Instant::now();
        while let Some((bytes, rows)) = pending.batches.front() {
            let remaining = deadline.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            let written =
                tokio::time::timeout(remaining, appender.append(bytes, now_millis())).await;
            match written {
                Ok(Ok(())) => {
                    shared.queued.fetch_sub(*rows, Ordering::AcqRel);
                    LOG_METRICS.written.inc_by(*rows as u64);
                    pending.batches.pop_front();
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            seconds = since.elapsed().as_secs(),
                            "the prediction log is written again"
                        );
                    }
                }
                Ok(Err(error)) => {
                    LOG_METRICS.write_failures.inc();
                    if failing_since.is_none() {
                        failing_since = Some(std::time::Instant::now());
                        tracing::warn!(%error, "the prediction log cannot be written; rows are kept up to the queue's bound, then dropped and counted");
                    }
                    break;
                }
                Err(_) => {
                    LOG_METRICS.write_failures.inc();
                    if failing_since.is_none() {
                        failing_since = Some(std::time::Instant::now());
                        tracing::warn!("the prediction log store does not answer; rows are kept up to the queue's bound, then dropped and counted");
                    }
                    break;
                }
            }
        }
        if stopping {
            let left: usize = pending.batches.iter().map(|(_, rows)| rows).sum();
            if left > 0 {
                LOG_METRICS.dropped.inc_by(left as u64);
                tracing::warn!(rows = left, "prediction log rows not written at shutdown");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64) -> FeatureRow {
        [value; crate::model::features::FEATURE_COUNT]
    }

    #[tokio::test]
    async fn rows_past_the_bound_are_dropped_and_counted_and_the_rest_written_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = LoopStore::Local(dir.path().to_path_buf());
        let (log, writer) = start(store.clone(), "test", 1.0, Duration::from_secs(3600), 10);
        let dropped_before = LOG_METRICS.dropped.get();
        for index in 0..12 {
            log.one(PredictionId::new(), "v1", &row(index as f64), 5.0, None);
        }
        assert_eq!(log.queued_rows(), 10);
        assert_eq!(LOG_METRICS.dropped.get() - dropped_before, 2);
        writer.unwrap().shutdown().await;
        let names = store.list(Stream::Log, "0000").await.unwrap();
        assert_eq!(names.len(), 1, "{names:?}");
        let bytes = store.read(&names[0]).await.unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 10);
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["model_version"], "v1");
            assert_eq!(value["sample_rate"], 1.0);
            assert_eq!(value["inputs"].as_object().unwrap().len(), 11);
            assert!(value.get("client_request_id").is_none());
        }
    }

    #[test]
    fn a_quarter_sample_logs_about_a_quarter() {
        let (sender, _receiver) = mpsc::unbounded_channel();
        let log = PredictionLog {
            shared: Some(Arc::new(Shared {
                threshold: (0.25 * u64::MAX as f64) as u64,
                sample_rate: 0.25,
                capacity: usize::MAX / 2,
                queued: AtomicUsize::new(0),
                wake: Notify::new(),
                sender,
            })),
        };
        let sampled = (0..100_000).filter(|_| log.sampled().is_some()).count();
        assert!((23_000..27_000).contains(&sampled), "{sampled}");
    }
}
