//! Named crash points for the crash tests: a process that armed a step stops dead there (it
//! announces the step on stdout and waits to be killed), so a test can SIGKILL it at an exact
//! point of saving or promoting. They exist only in builds with the `crash-points` feature
//! (the crash tests' own target); elsewhere arming does nothing and a step costs nothing.

/// The line a process prints when it reached its armed step: `<prefix> <step>`.
pub const REACHED: &str = "sommelier-crash-point";

/// The model file of a new version is written; its card is not.
pub const AFTER_MODEL: &str = "after-model";
/// The card is written too; the version is not yet visible (local) or not yet promoted.
pub const AFTER_CARD: &str = "after-card";
/// The new pointer is being written (local: staged but not renamed; blob: about to be sent).
pub const POINTER_WRITE: &str = "pointer-write";
/// Every step, in the order a save-and-promote reaches them.
pub const STEPS: [&str; 3] = [AFTER_MODEL, AFTER_CARD, POINTER_WRITE];

/// The environment variable that arms a step in the `sommelier` binary (crash tests only).
pub const ENV: &str = "SOMMELIER_CRASH_POINT";

#[cfg(feature = "crash-points")]
pub(crate) use armed::reached;
#[cfg(feature = "crash-points")]
pub use armed::{arm, arm_from_env};

#[cfg(feature = "crash-points")]
mod armed {
    use std::io::Write;
    use std::sync::OnceLock;

    use super::{ENV, REACHED};

    static ARMED: OnceLock<String> = OnceLock::new();

    /// Arms the step named by [`ENV`], if set: read once, at process start, by `main`.
    pub fn arm_from_env() {
        if let Ok(step) = std::env::var(ENV) {
            arm(&step);
        }
    }

    /// Makes this process stop at `step` (once per process; later calls are ignored).
    pub fn arm(step: &str) {
        let _ = ARMED.set(step.to_string());
    }

    /// Stops here for good if `step` is armed.
    pub(crate) fn reached(step: &str) {
        if ARMED.get().map(String::as_str) != Some(step) {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{REACHED} {step}");
        let _ = stdout.flush();
        loop {
            std::thread::park();
        }
    }
}

/// Without the `crash-points` feature there is nothing to arm.
#[cfg(not(feature = "crash-points"))]
pub fn arm_from_env() {}

/// Without the `crash-points` feature no step stops.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub(crate) fn reached(_step: &str) {}
