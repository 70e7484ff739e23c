//! One `info` line per refused request (a 4xx answer) with its status and reason, rate
//! limited so that a flood of bad requests cannot flood the log: at most
//! [`LINES_PER_SECOND`] lines a second, and the first line after a silence says how many
//! were left out.
//!
//! Not here: server-side failures (5xx), logged at `error` by the request layer in `mod.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Refused requests logged per second, at most.
pub const LINES_PER_SECOND: u64 = 10;

/// The reason of a refused request, carried on its response for the request layer's log.
#[derive(Debug, Clone)]
pub struct Rejection(pub String);

/// The second the current window started, the lines logged in it, and the lines left out
/// since the last line.
static WINDOW: AtomicU64 = AtomicU64::new(0);
static LOGGED: AtomicU64 = AtomicU64::new(0);
static LEFT_OUT: AtomicU64 = AtomicU64::new(0);

/// Whether a line may be written now; with the number of lines left out before it.
fn admit(now_second: u64) -> Option<u64> {
    if WINDOW.swap(now_second, Ordering::Relaxed) != now_second {
        LOGGED.store(0, Ordering::Relaxed);
    }
    if LOGGED.fetch_add(1, Ordering::Relaxed) >= LINES_PER_SECOND {
        LEFT_OUT.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    Some(LEFT_OUT.swap(0, Ordering::Relaxed))
}

/// Logs a refused request, unless this second's lines are used up.
pub fn log(status: u16, reason: &str, function: &str, invocation_id: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if let Some(left_out) = admit(now) {
        tracing::info!(
            status,
            reason,
            function,
            invocation_id,
            not_logged_before = left_out,
            "request refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_rate_and_the_next_line_counts_what_was_left_out() {
        // A second far from any real clock, so that other tests' lines do not interfere.
        let second = 7;
        let admitted = (0..100).filter(|_| admit(second).is_some()).count() as u64;
        assert_eq!(admitted, LINES_PER_SECOND);
        assert_eq!(admit(second + 1), Some(100 - LINES_PER_SECOND));
        assert_eq!(admit(second + 1), Some(0));
    }
}
