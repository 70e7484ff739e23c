//! Input drift: a rolling window of recent feature values, binned like the champion's
//! training histograms, compared with them as a Population Stability Index per feature.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::model::artifact::{FeatureStats, HISTOGRAM_BINS};
use crate::model::features::{FeatureRow, FEATURE_COUNT};

/// Rows in the rolling window.
pub const WINDOW_ROWS: usize = 500;
/// Share used in place of an empty bin, so that the logarithm stays finite.
const EMPTY_BIN_SHARE: f64 = 1e-4;

/// The window's bin counts for one reference (one champion).
struct Window {
    reference: Vec<FeatureStats>,
    recent: VecDeque<[u8; FEATURE_COUNT]>,
    counts: [[u32; HISTOGRAM_BINS]; FEATURE_COUNT],
}

/// Thread-safe drift monitor; cheap per row (a few integer updates under a short lock).
pub struct DriftMonitor {
    window: Mutex<Option<Window>>,
}

impl Default for DriftMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl DriftMonitor {
    pub fn new() -> Self {
        Self {
            window: Mutex::new(None),
        }
    }

    /// Starts a new window against a new champion's training histograms.
    pub fn reset(&self, reference: &[FeatureStats]) {
        if let Ok(mut guard) = self.window.lock() {
            *guard = Some(Window {
                reference: reference.to_vec(),
                recent: VecDeque::with_capacity(WINDOW_ROWS),
                counts: [[0; HISTOGRAM_BINS]; FEATURE_COUNT],
            });
        }
    }

    /// Adds rows to the window, dropping the oldest beyond [`WINDOW_ROWS`].
    pub fn observe(&self, rows: &[FeatureRow]) {
        let Ok(mut guard) = self.window.lock() else {
            return;
        };
        let Some(window) = guard.as_mut() else {
            return;
        };
        for row in rows {
            let mut bins = [0u8; FEATURE_COUNT];
            for (feature, value) in row.iter().enumerate() {
                let bin = window.reference[feature].bin_of(*value);
                bins[feature] = bin as u8;
                window.counts[feature][bin] += 1;
            }
            if window.recent.len() == WINDOW_ROWS {
                if let Some(old) = window.recent.pop_front() {
                    for (feature, bin) in old.iter().enumerate() {
                        window.counts[feature][*bin as usize] -= 1;
                    }
                }
            }
            window.recent.push_back(bins);
        }
    }

    /// PSI per feature over the window, or `None` before any observation.
    pub fn psi(&self) -> Option<[f64; FEATURE_COUNT]> {
        let guard = self.window.lock().ok()?;
        let window = guard.as_ref()?;
        if window.recent.is_empty() {
            return None;
        }
        let mut out = [0.0; FEATURE_COUNT];
        for (feature, value) in out.iter_mut().enumerate() {
            *value = population_stability_index(
                &window.reference[feature].bin_counts,
                &window.counts[feature],
            );
        }
        Some(out)
    }
}

/// PSI = Σ (actual − expected) · ln(actual / expected) over bins, on shares of each total.
pub fn population_stability_index(expected: &[u64], actual: &[u32]) -> f64 {
    let expected_total: u64 = expected.iter().sum();
    let actual_total: u64 = actual.iter().map(|&c| u64::from(c)).sum();
    if expected_total == 0 || actual_total == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let e = (e as f64 / expected_total as f64).max(EMPTY_BIN_SHARE);
            let a = (f64::from(a) / actual_total as f64).max(EMPTY_BIN_SHARE);
            (a - e) * (a / e).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::artifact::feature_stats;

    #[test]
    fn identical_distributions_have_zero_psi() {
        let counts = [10u64, 20, 30, 40];
        let same = [1u32, 2, 3, 4];
        assert!(population_stability_index(&counts, &same).abs() < 1e-12);
    }

    #[test]
    fn psi_matches_a_hand_computed_value() {
        // expected shares 0.5/0.5, actual 0.9/0.1:
        // (0.9-0.5)ln(1.8) + (0.1-0.5)ln(0.2) = 0.4*0.587787 + 0.4*1.609438 = 0.878890
        let psi = population_stability_index(&[50, 50], &[9, 1]);
        assert!((psi - 0.878_890).abs() < 1e-5, "{psi}");
    }

    #[test]
    fn a_shifted_feature_drifts_and_the_window_forgets() {
        let training: Vec<FeatureRow> = (0..1000)
            .map(|i| [(i % 100) as f64; FEATURE_COUNT])
            .collect();
        let monitor = DriftMonitor::new();
        monitor.reset(&feature_stats(&training));
        monitor.observe(&training[..WINDOW_ROWS]);
        let calm = monitor.psi().unwrap();
        assert!(calm.iter().all(|p| *p < 0.05), "{calm:?}");
        let mut shifted = training[..WINDOW_ROWS].to_vec();
        for row in &mut shifted {
            row[10] += 60.0;
        }
        monitor.observe(&shifted);
        let psi = monitor.psi().unwrap();
        assert!(psi[10] > 0.2, "{psi:?}");
        assert!(psi[0] < 0.05, "{psi:?}");
    }
}
