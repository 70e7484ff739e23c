//! Progress of the work a command waits for: rows parsed and trees fitted, counted by the
//! reader and the fit, read by a display (the command line's progress bar) and turned into an
//! estimate of the time left.
//!
//! The counters are process-wide: the command line runs one training at a time, which is
//! what they serve. A server runs trainings one at a time per instance as well, and shows no
//! progress; its counters are simply not read.
//!
//! Not here: the display itself (`cli`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static ROWS_PARSED: AtomicUsize = AtomicUsize::new(0);
static TREES_TOTAL: AtomicUsize = AtomicUsize::new(0);
static TREES_DONE: AtomicUsize = AtomicUsize::new(0);

/// How often the reader publishes its row count: a store per row would cost the parse.
const ROWS_STEP: usize = 4096;

/// Notes that `rows` rows have been parsed (published every [`ROWS_STEP`] rows).
pub fn rows_parsed(rows: usize) {
    if rows.is_multiple_of(ROWS_STEP) {
        ROWS_PARSED.store(rows, Ordering::Relaxed);
    }
}

/// Rows parsed so far by the current read, to the last [`ROWS_STEP`].
pub fn rows() -> usize {
    ROWS_PARSED.load(Ordering::Relaxed)
}

/// Starts counting a fit of `trees` trees (0 for a model without trees).
pub fn fit_started(trees: usize) {
    TREES_DONE.store(0, Ordering::Relaxed);
    TREES_TOTAL.store(trees, Ordering::Relaxed);
}

/// Notes that `trees` more trees are fitted.
pub fn trees_fitted(trees: usize) {
    TREES_DONE.fetch_add(trees, Ordering::Relaxed);
}

/// Trees fitted and trees in all, for the current fit.
pub fn trees() -> (usize, usize) {
    (
        TREES_DONE.load(Ordering::Relaxed),
        TREES_TOTAL.load(Ordering::Relaxed),
    )
}

/// The time left when `done` of `total` units took `elapsed`, assuming the rest goes at the
/// same pace; `None` before the first unit (nothing to go by) and once all are done.
pub fn estimate(done: usize, total: usize, elapsed: Duration) -> Option<Duration> {
    if done == 0 || done >= total {
        return None;
    }
    Some(elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// `about 12 s left`, `about 3 min left`: an estimate as a person reads it.
pub fn describe_left(left: Duration) -> String {
    let seconds = left.as_secs_f64().ceil() as u64;
    if seconds < 90 {
        format!("about {seconds} s left")
    } else {
        format!("about {} min left", seconds.div_ceil(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_extrapolates_the_pace_so_far() {
        assert_eq!(estimate(0, 100, Duration::from_secs(5)), None);
        assert_eq!(estimate(100, 100, Duration::from_secs(5)), None);
        assert_eq!(
            estimate(25, 100, Duration::from_secs(10)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            describe_left(Duration::from_millis(29_200)),
            "about 30 s left"
        );
        assert_eq!(describe_left(Duration::from_secs(600)), "about 10 min left");
    }

    #[test]
    fn trees_are_counted_from_the_start_of_a_fit() {
        fit_started(40);
        trees_fitted(10);
        trees_fitted(5);
        assert_eq!(trees(), (15, 40));
    }
}
