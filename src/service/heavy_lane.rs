//! The lane for CPU-heavy request work (parsing a large body, predicting a large batch).
//!
//! Its threads are its own, one per core but one, and run at a lower scheduling priority
//! than the async workers: when a burst of large requests keeps them busy, the operating
//! system still gives the async workers the processor as soon as a small request arrives,
//! so small predictions keep their latency. Jobs queue in arrival order; a job whose caller
//! has gone away (the client hung up) is skipped when its turn comes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// How much less the lane's threads get of a contended core than the async workers, as a
/// Unix nice value (0 = the same; 10 ≈ a tenth of the share).
const NICENESS: i32 = 10;

static LANE: LazyLock<Mutex<Sender<Job>>> = LazyLock::new(|| {
    let (sender, receiver) = channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..threads() {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("heavy-lane-{index}"))
            .spawn(move || work(&receiver));
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a heavy-lane thread");
        }
    }
    Mutex::new(sender)
});

/// The lane's threads: one per core but one (one on a single core).
pub(crate) fn threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    cores.saturating_sub(1).max(1)
}

/// Why a job did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("the heavy lane is not running")]
    Closed,
    #[error("the job panicked")]
    Panicked,
}

/// Runs `job` on the lane once a thread is free and returns its result.
pub async fn submit<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LaneError> {
    let (reply, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        if reply.is_closed() {
            return;
        }
        if let Ok(value) = catch_unwind(AssertUnwindSafe(job)) {
            let _ = reply.send(value);
        }
    });
    let sent = LANE
        .lock()
        .map_err(|_| LaneError::Closed)?
        .send(job)
        .map_err(|_| LaneError::Closed);
    sent?;
    result.await.map_err(|_| LaneError::Panicked)
}

/// A lane thread: lowers its own priority, then runs jobs until the process ends.
fn work(receiver: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let next = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Lowers the calling thread's scheduling priority by [`NICENESS`]. On Linux a thread has
/// its own nice value, and `setpriority` for "this process" with id 0 sets the caller's.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: `setpriority` takes plain integers and touches no memory of ours.
    let status = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICENESS) };
    if status != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "heavy lane keeps the default priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_return_their_results_and_a_panic_is_an_error() {
        assert_eq!(submit(|| 6 * 7).await.unwrap(), 42);
        assert!(matches!(
            submit(|| -> u8 { panic!("boom") }).await,
            Err(LaneError::Panicked)
        ));
        assert_eq!(submit(|| "still running").await.unwrap(), "still running");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn lane_threads_run_at_a_lower_priority() {
        let niceness = submit(|| {
            let status = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            // Field 19 (nice) counted after the command name's closing parenthesis.
            let after_name = &status[status.rfind(')').unwrap() + 2..];
            after_name
                .split(' ')
                .nth(16)
                .unwrap()
                .parse::<i32>()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(niceness, NICENESS);
    }
}
