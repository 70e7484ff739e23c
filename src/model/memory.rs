//! The process's peak resident memory, as the kernel counts it: what a training reports so
//! that an operator can tell whether the data still fits the instance.
//!
//! On Linux the peak is `VmHWM` of the process status, and it can be brought back down to the
//! current resident size (`5` written to the process's `clear_refs`), so that a measurement
//! covers one training rather than the life of the process. Elsewhere, or where the kernel
//! refuses, there is no figure: callers omit it rather than fail.

/// The status file of this process, where the kernel reports `VmHWM`.
#[cfg(target_os = "linux")]
const STATUS: &str = "/proc/self/status";
/// Writing `5` here resets this process's peak resident size to its current size.
#[cfg(target_os = "linux")]
const CLEAR_REFS: &str = "/proc/self/clear_refs";

/// Peak resident memory of this process in bytes, since it started or since the last
/// [`reset_peak`]; `None` where the platform does not say.
pub fn peak_resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string(STATUS)
            .ok()
            .and_then(|status| status_field_bytes(&status, "VmHWM:"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Starts a new peak at the current resident size. Returns whether it could; when it could
/// not, [`peak_resident_bytes`] keeps counting from the process start (an upper bound).
pub fn reset_peak() -> bool {
    #[cfg(target_os = "linux")]
    {
        std::fs::write(CLEAR_REFS, b"5").is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// A `Name:   1234 kB` line of the status text, in bytes.
fn status_field_bytes(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let unit = match words.next() {
        Some("kB") => 1024,
        Some("B") | None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_bytes() {
        let status =
            "Name:\tsommelier\nVmPeak:\t  20000 kB\nVmHWM:\t    1500 kB\nVmRSS:\t 1200 kB\n";
        assert_eq!(status_field_bytes(status, "VmHWM:"), Some(1500 * 1024));
        assert_eq!(status_field_bytes(status, "VmSwap:"), None);
        assert_eq!(status_field_bytes("VmHWM:\tlots kB\n", "VmHWM:"), None);
        assert_eq!(status_field_bytes("VmHWM:\t12 MB\n", "VmHWM:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_is_plausible_and_covers_a_new_allocation() {
        let before = peak_resident_bytes().expect("Linux reports VmHWM");
        assert!(
            before > 1024 * 1024 && before < 64 * 1024 * 1024 * 1024,
            "{before}"
        );
        let _ = reset_peak();
        // 64 MiB written page by page is resident, so the peak is at least that.
        let block = vec![1u8; 64 * 1024 * 1024];
        let peak = peak_resident_bytes().expect("Linux reports VmHWM");
        assert!(block.iter().step_by(4096).all(|b| *b == 1));
        assert!(peak >= 64 * 1024 * 1024, "{peak}");
    }
}
