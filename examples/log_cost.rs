//! What the prediction log costs per logged row on a local store, in processor time: the
//! request path (the sampling draw and a fixed-size record offered to the bounded queue) and
//! the background writer (the JSON line formatted and appended). Rows arrive at 60,000 a
//! second in bursts every 10 ms, about what two cores serve.
//!
//! Run: `cargo run --release --example log_cost` (part of `scripts/bench`).

use std::time::{Duration, Instant};

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::feedback::id::PredictionId;
use sommelier::feedback::log;
use sommelier::feedback::store::LoopStore;
use sommelier::model::dataset::read_training_data;

const ROWS_PER_SECOND: usize = 60_000;
const SECONDS: usize = 5;
const BURSTS_PER_SECOND: usize = 100;

/// Processor time of `clock` in seconds.
fn cpu_seconds(clock: libc::clockid_t) -> f64 {
    let mut spec = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `spec` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut spec) };
    spec.tv_sec as f64 + spec.tv_nsec as f64 * 1e-9
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dataset = read_training_data(WINE_QUALITY_RED_CSV)?;
    let directory = std::env::temp_dir().join(format!("sommelier-log-cost-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let store = LoopStore::Local(directory.clone());
    let (prediction_log, writer) =
        runtime.block_on(async { log::start(store, "bench", 1.0, Duration::from_secs(5), 65_536) });
    let burst = ROWS_PER_SECOND / BURSTS_PER_SECOND;
    let rows = ROWS_PER_SECOND * SECONDS;
    let process_before = cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID);
    let main_before = cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID);
    let mut request_path = 0.0;
    let started = Instant::now();
    for sent in (0..rows).step_by(burst) {
        // Ids are made outside the measure: a prediction makes one with the log off too.
        let ids: Vec<PredictionId> = (0..burst).map(|_| PredictionId::new()).collect();
        let before = cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID);
        for (index, id) in (sent..sent + burst).zip(ids) {
            let row = &dataset.rows[index % dataset.rows.len()];
            let prediction = 5.0 + index as f64 * 1e-7;
            prediction_log.one(id, "20261205T000000Z-bench", row, prediction, None);
        }
        request_path += cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID) - before;
        let due = Duration::from_secs_f64((sent + burst) as f64 / ROWS_PER_SECOND as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let main_thread = cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID) - main_before;
    if let Some(writer) = writer {
        runtime.block_on(writer.shutdown());
    }
    let writer = cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID) - process_before - main_thread;
    let written: usize = log_lines(&directory);
    let per_row = |seconds: f64| seconds * 1e6 / rows as f64;
    println!(
        "prediction log, {rows} rows at {ROWS_PER_SECOND}/s, {written} lines written: request path {:.3} µs, writer {:.3} µs, together {:.3} µs a row",
        per_row(request_path),
        per_row(writer),
        per_row(request_path + writer),
    );
    let _ = std::fs::remove_dir_all(&directory);
    Ok(())
}

/// Lines in the log files under `directory`.
fn log_lines(directory: &std::path::Path) -> usize {
    let mut lines = 0;
    let mut pending = vec![directory.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                lines += bytes.iter().filter(|&&b| b == b'\n').count();
            }
        }
    }
    lines
}
