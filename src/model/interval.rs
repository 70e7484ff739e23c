//! Prediction intervals by split conformal prediction: the held-out rows of a training (the
//! rows the holdout rule kept from fitting, see `split`) give the absolute errors
//! `|quality - prediction|` of a model that never saw them; with `n` such rows, the
//! `ceil((n + 1) c)`-th smallest error `q` makes `[prediction - q, prediction + q]` cover a new
//! wine's quality with probability at least `c`, whatever the data's distribution, as long as
//! the new wine is drawn like the held-out ones (Vovk, Gammerman and Shafer, "Algorithmic
//! Learning in a Random World", 2005; Lei et al., "Distribution-free predictive inference for
//! regression", JASA 2018). Intervals are clipped to the 0–10 scale, which loses no coverage.
//!
//! Locally adaptive intervals (errors scaled by the forest's spread at the row) were measured
//! against these on the bundled data (see [`compare_adaptive`], `tests/integration/explain.rs` and
//! docs/design.md): 0.7 % narrower, for a second walk of every tree per prediction. Serving keeps the
//! constant width, one look-up per row.
//!
//! Not here: choosing the held-out rows (`split`), storing the errors (`artifact`).

use serde::{Deserialize, Serialize};

/// The lowest and highest quality a wine can have: intervals are clipped to them.
pub const QUALITY_RANGE: (f64, f64) = (0.0, 10.0);

/// Coverages whose half-widths the card records.
pub const CARD_COVERAGES: [f64; 3] = [0.8, 0.9, 0.95];

/// The name of the method, as the card records it.
pub const METHOD: &str = "split_conformal_absolute";

/// Order statistics of the held-out errors kept, at most: every one up to this many rows;
/// beyond, the errors at evenly spaced ranks, so that the artifact stays small at any data
/// size (8 KiB). A coverage then takes the kept rank at or above the one it needs: never
/// narrower than the exact interval, wider by at most 1/1024 of the rows' ranks.
pub const KEPT_ERRORS: usize = 1024;

/// The calibration of a model: the held-out rows' absolute errors, sorted (or, past
/// [`KEPT_ERRORS`] rows, those at evenly spaced ranks).
#[derive(Debug, Clone, PartialEq)]
pub struct Conformal {
    /// Held-out rows the errors come from.
    rows: usize,
    /// `errors[i]` is the error of rank `ceil((i + 1) rows / errors.len())` (1-based).
    errors: Vec<f64>,
}

/// What the card records of the calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CalibrationSummary {
    /// `split_conformal_absolute`: `prediction ± q`, `q` a quantile of the held-out rows'
    /// absolute errors.
    pub method: String,
    /// Held-out rows the errors come from.
    pub rows: usize,
    /// The half-width `q` at each recorded coverage.
    pub quantiles: Vec<CoverageQuantile>,
}

/// One coverage and its half-width.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoverageQuantile {
    pub coverage: f64,
    /// Half-width of the interval, in quality points (infinite, written as null, when the
    /// rows are too few for the coverage).
    pub half_width: Option<f64>,
}

impl Conformal {
    /// The calibration from held-out predictions and their true qualities (same length).
    /// `None` without held-out rows.
    pub fn calibrate(predictions: &[f64], targets: &[f64]) -> Option<Conformal> {
        let mut errors: Vec<f64> = predictions
            .iter()
            .zip(targets)
            .map(|(p, y)| (y - p).abs())
            .filter(|e| e.is_finite())
            .collect();
        if errors.is_empty() {
            return None;
        }
        errors.sort_by(f64::total_cmp);
        let rows = errors.len();
        let kept = rows.min(KEPT_ERRORS);
        let errors = (1..=kept)
            .map(|i| errors[(i * rows).div_ceil(kept) - 1])
            .collect();
        Some(Conformal { rows, errors })
    }

    /// Stored errors, checked (sorted, finite, non-negative, at least one, no more than the
    /// rows they come from).
    pub fn from_stored(rows: usize, errors: Vec<f64>) -> Option<Conformal> {
        let sound = !errors.is_empty()
            && errors.len() <= rows
            && errors.iter().all(|e| e.is_finite() && *e >= 0.0)
            && errors.windows(2).all(|pair| pair[0] <= pair[1]);
        sound.then_some(Conformal { rows, errors })
    }

    /// The held-out rows and the kept errors, as the artifact stores them.
    pub fn stored(&self) -> (usize, &[f64]) {
        (self.rows, &self.errors)
    }

    /// The half-width at `coverage` (in (0, 1)): the `ceil((n + 1) coverage)`-th smallest of
    /// the `n` errors (the kept one at or above that rank), or infinity when there are fewer
    /// than that many.
    pub fn half_width(&self, coverage: f64) -> f64 {
        let n = self.rows;
        let rank = ((n + 1) as f64 * coverage).ceil() as usize;
        if rank == 0 {
            return 0.0;
        }
        if rank > n {
            return f64::INFINITY;
        }
        let kept = self.errors.len();
        let index = (rank * kept).div_ceil(n);
        self.errors
            .get(index.saturating_sub(1))
            .copied()
            .unwrap_or(f64::INFINITY)
    }

    /// The interval around `prediction` at `coverage`, clipped to the quality scale.
    pub fn interval(&self, prediction: f64, coverage: f64) -> [f64; 2] {
        interval_of(prediction, self.half_width(coverage))
    }

    /// What the card records.
    pub fn summary(&self) -> CalibrationSummary {
        CalibrationSummary {
            method: METHOD.to_string(),
            rows: self.rows,
            quantiles: CARD_COVERAGES
                .iter()
                .map(|&coverage| CoverageQuantile {
                    coverage,
                    half_width: Some(self.half_width(coverage)).filter(|q| q.is_finite()),
                })
                .collect(),
        }
    }
}

/// `prediction ± half_width`, clipped to the quality scale.
pub fn interval_of(prediction: f64, half_width: f64) -> [f64; 2] {
    let (low, high) = QUALITY_RANGE;
    [
        (prediction - half_width).clamp(low, high),
        (prediction + half_width).clamp(low, high),
    ]
}

/// Mean width and coverage of constant-width and spread-scaled intervals at `coverage`, each
/// calibrated on `calibration` rows and judged on `test` rows: `(prediction, spread, truth)`
/// triples. Measures whether scaling by the spread would make intervals narrower.
pub fn compare_adaptive(
    calibration: &[(f64, f64, f64)],
    test: &[(f64, f64, f64)],
    coverage: f64,
) -> [(f64, f64); 2] {
    let judge = |half: &dyn Fn(f64) -> f64| {
        let (mut width, mut covered) = (0.0, 0usize);
        for &(p, s, y) in test {
            let [lo, hi] = interval_of(p, half(s));
            width += hi - lo;
            covered += usize::from(lo <= y && y <= hi);
        }
        let n = test.len().max(1) as f64;
        (width / n, covered as f64 / n)
    };
    let absolute = Conformal::calibrate(
        &calibration.iter().map(|c| c.0).collect::<Vec<_>>(),
        &calibration.iter().map(|c| c.2).collect::<Vec<_>>(),
    );
    let mut spreads: Vec<f64> = calibration.iter().map(|c| c.1).collect();
    spreads.sort_by(f64::total_cmp);
    let offset = spreads
        .get(spreads.len() / 2)
        .copied()
        .unwrap_or(0.0)
        .max(1e-9);
    let scaled = Conformal::calibrate(
        &calibration
            .iter()
            .map(|c| c.0 / (c.1 + offset))
            .collect::<Vec<_>>(),
        &calibration
            .iter()
            .map(|c| c.2 / (c.1 + offset))
            .collect::<Vec<_>>(),
    );
    match (absolute, scaled) {
        (Some(absolute), Some(scaled)) => {
            let q = absolute.half_width(coverage);
            let qs = scaled.half_width(coverage);
            [judge(&|_| q), judge(&|s| qs * (s + offset))]
        }
        _ => [(f64::NAN, f64::NAN); 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_half_width_is_the_conformal_rank_of_the_errors() {
        // Errors 0.1 .. 0.9 (nine rows): at 0.8, rank ceil(10 * 0.8) = 8.
        let predictions = [5.0; 9];
        let targets: Vec<f64> = (1..=9).map(|i| 5.0 + f64::from(i) / 10.0).collect();
        let conformal = Conformal::calibrate(&predictions, &targets).unwrap();
        assert!((conformal.half_width(0.8) - 0.8).abs() < 1e-12);
        assert!((conformal.half_width(0.9) - 0.9).abs() < 1e-12);
        assert_eq!(conformal.half_width(0.95), f64::INFINITY);
        assert_eq!(conformal.interval(5.0, 0.95), [0.0, 10.0]);
        let [lo, hi] = conformal.interval(9.5, 0.8);
        assert!((lo - 8.7).abs() < 1e-12 && hi == 10.0);
        let summary = conformal.summary();
        assert_eq!(summary.rows, 9);
        assert_eq!(summary.quantiles[2].half_width, None);
    }

    #[test]
    fn stored_errors_are_checked() {
        assert!(Conformal::from_stored(1, vec![]).is_none());
        assert!(Conformal::from_stored(2, vec![0.2, 0.1]).is_none());
        assert!(Conformal::from_stored(2, vec![0.1, f64::NAN]).is_none());
        assert!(Conformal::from_stored(2, vec![-0.1, 0.1]).is_none());
        assert!(Conformal::from_stored(2, vec![0.1, 0.1, 0.3]).is_none());
        assert!(Conformal::from_stored(3, vec![0.1, 0.1, 0.3]).is_some());
        assert!(Conformal::calibrate(&[], &[]).is_none());
    }

    #[test]
    fn many_rows_keep_a_bounded_never_narrower_table() {
        // 100,000 errors 0.00001 .. 1.0: the exact rank's error is rank / 100,000.
        let rows = 100_000;
        let predictions = vec![0.0; rows];
        let targets: Vec<f64> = (1..=rows).map(|i| i as f64 / rows as f64).collect();
        let conformal = Conformal::calibrate(&predictions, &targets).unwrap();
        assert_eq!(conformal.stored().1.len(), KEPT_ERRORS);
        for coverage in [0.5, 0.8, 0.9, 0.95, 0.99] {
            let exact = ((rows + 1) as f64 * coverage).ceil() / rows as f64;
            let kept = conformal.half_width(coverage);
            assert!(
                kept >= exact - 1e-12 && kept - exact <= 1.0 / KEPT_ERRORS as f64,
                "{coverage}: {kept} vs {exact}"
            );
        }
    }
}
