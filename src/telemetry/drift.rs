//! Input drift: a rolling window of recent feature values, binned like the champion's
//! training histograms, compared with them as a Population Stability Index per feature.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::model::artifact::{FeatureStats, HISTOGRAM_BINS};
use crate::model::features::{FeatureRow, FEATURE_COUNT};

/// Rows in the rolling window.
pub const WINDOW_ROWS: usize = 500;
/// Bits of a row's bin number per feature in a window slot (bins are below 16).
const BIN_BITS: u32 = 4;
/// A slot no row has filled yet.
const EMPTY_SLOT: u64 = u64::MAX;

const _: () = assert!(HISTOGRAM_BINS < 1 << BIN_BITS && FEATURE_COUNT * BIN_BITS as usize <= 64);

/// The window for one reference (one champion). Lock-free and cheap to write: a row costs
/// its eleven bin look-ups, one counter increment and one store of its bins packed in a
/// `u64` into the next slot; the bin counts are summed from the slots only when the PSI is
/// asked for (a metrics scrape or push), so concurrent predictions share no counters but the
/// slot cursor.
struct Window {
    reference: Vec<FeatureStats>,
    slots: Box<[AtomicU64]>,
    next: AtomicUsize,
}

impl Window {
    /// The bin counts of the rows in the window now, per feature.
    fn counts(&self) -> [[u32; HISTOGRAM_BINS]; FEATURE_COUNT] {
        let mut counts = [[0u32; HISTOGRAM_BINS]; FEATURE_COUNT];
        for slot in self.slots.iter() {
            let packed = slot.load(Ordering::Acquire);
            if packed == EMPTY_SLOT {
                continue;
            }
            for (feature, counts) in counts.iter_mut().enumerate() {
                counts[unpack(packed, feature)] += 1;
            }
        }
        counts
    }
}

/// Feature `feature`'s bin in a packed slot.
fn unpack(packed: u64, feature: usize) -> usize {
    (packed >> (feature as u32 * BIN_BITS)) as usize & ((1 << BIN_BITS) - 1)
}

/// Thread-safe drift monitor; a row costs eleven bin look-ups and two atomic operations.
pub struct DriftMonitor {
    window: ArcSwapOption<Window>,
}

impl Default for DriftMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl DriftMonitor {
    pub fn new() -> Self {
        Self {
            window: ArcSwapOption::empty(),
        }
    }

    /// Starts a new window against a new champion's training histograms. Rows being added
    /// to the old window at the same moment stay there.
    pub fn reset(&self, reference: &[FeatureStats]) {
        self.window.store(Some(Arc::new(Window {
            reference: reference.to_vec(),
            slots: (0..WINDOW_ROWS)
                .map(|_| AtomicU64::new(EMPTY_SLOT))
                .collect(),
            next: AtomicUsize::new(0),
        })));
    }

    /// Adds rows to the window, dropping the oldest beyond [`WINDOW_ROWS`].
    pub fn observe(&self, rows: &[FeatureRow]) {
        let guard = self.window.load();
        let Some(window) = guard.as_ref() else {
            return;
        };
        if window.reference.len() != FEATURE_COUNT || rows.is_empty() {
            return;
        }
        // One cursor move for the whole request: its rows take consecutive slots.
        let first = window.next.fetch_add(rows.len(), Ordering::Relaxed);
        // Only the last WINDOW_ROWS rows of a large batch would stay in the window.
        let skip = rows.len().saturating_sub(WINDOW_ROWS);
        for (offset, row) in rows.iter().enumerate().skip(skip) {
            let mut packed = 0u64;
            for (feature, value) in row.iter().enumerate() {
                let bin = window.reference[feature].bin_of(*value);
                packed |= (bin as u64) << (feature as u32 * BIN_BITS);
            }
            window.slots[first.wrapping_add(offset) % WINDOW_ROWS].store(packed, Ordering::Release);
        }
    }

    /// PSI per feature over the window, or `None` before any observation.
    pub fn psi(&self) -> Option<[f64; FEATURE_COUNT]> {
        let guard = self.window.load();
        let window = guard.as_ref()?;
        if window.next.load(Ordering::Relaxed) == 0 || window.reference.len() != FEATURE_COUNT {
            return None;
        }
        let counts = window.counts();
        let mut out = [0.0; FEATURE_COUNT];
        for (feature, value) in out.iter_mut().enumerate() {
            *value =
                population_stability_index(&window.reference[feature].bin_counts, &counts[feature]);
        }
        Some(out)
    }
}

pub use crate::model::metrics::population_stability_index;

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
        let psi = population_stability_index(&[50u64, 50], &[9u32, 1]);
        assert!((psi - 0.878_890).abs() < 1e-5, "{psi}");
    }

    #[test]
    fn concurrent_observers_keep_the_window_exact() {
        let training: Vec<FeatureRow> = (0..1000)
            .map(|i| [(i % 100) as f64; FEATURE_COUNT])
            .collect();
        let monitor = DriftMonitor::new();
        monitor.reset(&feature_stats(&training));
        std::thread::scope(|scope| {
            for part in training.chunks(100) {
                let monitor = &monitor;
                scope.spawn(move || {
                    for row in part {
                        monitor.observe(std::slice::from_ref(row));
                    }
                });
            }
        });
        let guard = monitor.window.load();
        let window = guard.as_ref().unwrap();
        for counts in window.counts() {
            let total: u32 = counts.iter().sum();
            assert_eq!(total as usize, WINDOW_ROWS);
        }
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

    #[test]
    fn a_batch_larger_than_the_window_leaves_its_last_rows() {
        let training: Vec<FeatureRow> = (0..1000)
            .map(|i| [(i % 100) as f64; FEATURE_COUNT])
            .collect();
        let mut batch = training.clone();
        for row in &mut batch[1000 - WINDOW_ROWS..] {
            row[3] += 60.0;
        }
        let whole = DriftMonitor::new();
        whole.reset(&feature_stats(&training));
        whole.observe(&batch);
        let tail = DriftMonitor::new();
        tail.reset(&feature_stats(&training));
        tail.observe(&batch[1000 - WINDOW_ROWS..]);
        assert_eq!(whole.psi(), tail.psi());
        assert!(whole.psi().unwrap()[3] > 0.2);
    }
}
