//! A paired comparison of two models on the same labelled rows, with its uncertainty.
//!
//! Both models predict every row; the per-row difference of squared errors
//! `(challenger − y)² − (champion − y)²` carries the comparison. Its mean is the difference of
//! the two mean squared errors, and a 95 % interval around that mean says how sure the
//! comparison is: a percentile bootstrap over rows with a fixed seed for up to
//! [`BOOTSTRAP_MAX_ROWS`] rows, the normal approximation beyond (where it is as good and the
//! bootstrap would cost seconds).

use serde::{Deserialize, Serialize};

use super::split::SplitMix64;

/// Resamples drawn by the bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Above this many rows the interval uses the normal approximation.
pub const BOOTSTRAP_MAX_ROWS: usize = 20_000;
/// Seed of the bootstrap, fixed so that the same rows always give the same decision.
const BOOTSTRAP_SEED: u64 = 0x0B00_7575_EED5;
/// Two-sided 95 % quantile of the standard normal distribution.
const Z_95: f64 = 1.959_963_984_540_054;

/// How the interval was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IntervalMethod {
    /// Percentile bootstrap over rows (fixed seed).
    PairedBootstrap,
    /// Mean ± 1.96 standard errors.
    NormalApproximation,
}

/// Both models scored on the same rows, neither of which either model trained on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PairedComparison {
    /// Rows both models were scored on.
    pub rows: usize,
    pub champion_rmse: f64,
    pub challenger_rmse: f64,
    /// Mean of `(challenger − y)² − (champion − y)²`: negative when the challenger is better.
    pub mean_squared_error_difference: f64,
    /// 95 % interval of that mean, `[low, high]`.
    pub interval_95: [f64; 2],
    pub method: IntervalMethod,
}

impl PairedComparison {
    /// Compares predictions of the champion and the challenger for the same `targets`.
    /// All three slices have the same, non-zero length.
    pub fn compute(champion: &[f64], challenger: &[f64], targets: &[f64]) -> PairedComparison {
        let rows = targets.len();
        let mut champion_sse = 0.0;
        let mut challenger_sse = 0.0;
        let differences: Vec<f64> = targets
            .iter()
            .zip(champion.iter().zip(challenger))
            .map(|(&y, (&a, &b))| {
                let (ea, eb) = ((a - y) * (a - y), (b - y) * (b - y));
                champion_sse += ea;
                challenger_sse += eb;
                eb - ea
            })
            .collect();
        let n = rows.max(1) as f64;
        let mean = differences.iter().sum::<f64>() / n;
        let (interval_95, method) = if rows <= BOOTSTRAP_MAX_ROWS {
            (
                bootstrap_interval(&differences),
                IntervalMethod::PairedBootstrap,
            )
        } else {
            (
                normal_interval(&differences, mean),
                IntervalMethod::NormalApproximation,
            )
        };
        PairedComparison {
            rows,
            champion_rmse: (champion_sse / n).sqrt(),
            challenger_rmse: (challenger_sse / n).sqrt(),
            mean_squared_error_difference: mean,
            interval_95,
            method,
        }
    }

    /// The most the challenger's mean squared error may exceed the champion's for its RMSE to
    /// stay within `tolerance` (relative) of the champion's.
    pub fn margin(&self, tolerance: f64) -> f64 {
        let champion_mse = self.champion_rmse * self.champion_rmse;
        champion_mse * ((1.0 + tolerance).powi(2) - 1.0)
    }

    /// Whether, with 95 % confidence, the challenger is not worse than the champion by more
    /// than `tolerance`: the interval's upper end lies within the margin.
    pub fn not_worse_beyond(&self, tolerance: f64) -> bool {
        self.interval_95[1] <= self.margin(tolerance)
    }
}

/// The 2.5th and 97.5th percentiles of the mean over resamples drawn with replacement.
fn bootstrap_interval(differences: &[f64]) -> [f64; 2] {
    let n = differences.len();
    if n == 0 {
        return [0.0, 0.0];
    }
    let mut rng = SplitMix64::new(BOOTSTRAP_SEED);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| differences[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| means[(q * (BOOTSTRAP_RESAMPLES - 1) as f64).round() as usize];
    [at(0.025), at(0.975)]
}

/// Mean ± 1.96 standard errors (sample standard deviation).
fn normal_interval(differences: &[f64], mean: f64) -> [f64; 2] {
    let n = differences.len() as f64;
    let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let half = Z_95 * (variance / n).sqrt();
    [mean - half, mean + half]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(targets: &[f64], scale: f64, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        targets
            .iter()
            .map(|y| y + scale * ((rng.below(2001) as f64) / 1000.0 - 1.0))
            .collect()
    }

    #[test]
    fn identical_models_are_a_tie_with_a_zero_interval() {
        let y: Vec<f64> = (0..100).map(|i| (i % 7) as f64).collect();
        let p = noisy(&y, 0.5, 1);
        let c = PairedComparison::compute(&p, &p, &y);
        assert_eq!(c.mean_squared_error_difference, 0.0);
        assert_eq!(c.interval_95, [0.0, 0.0]);
        assert!(c.not_worse_beyond(0.0));
    }

    #[test]
    fn a_clearly_better_challenger_has_an_interval_below_zero() {
        let y: Vec<f64> = (0..400).map(|i| (i % 7) as f64).collect();
        let champion = noisy(&y, 1.0, 1);
        let challenger = noisy(&y, 0.3, 2);
        let c = PairedComparison::compute(&champion, &challenger, &y);
        assert!(c.challenger_rmse < c.champion_rmse);
        assert!(c.interval_95[1] < 0.0, "{c:?}");
        assert!(c.interval_95[0] <= c.mean_squared_error_difference);
        assert!(c.not_worse_beyond(0.01));
        assert_eq!(c.method, IntervalMethod::PairedBootstrap);
        // Swapped, the same evidence says "worse".
        assert!(!PairedComparison::compute(&challenger, &champion, &y).not_worse_beyond(0.01));
    }

    #[test]
    fn a_noisy_small_comparison_is_not_enough_to_promote() {
        // Equal quality, few rows: the interval straddles zero by more than the margin.
        let y: Vec<f64> = (0..40).map(|i| (i % 7) as f64).collect();
        let c = PairedComparison::compute(&noisy(&y, 1.0, 3), &noisy(&y, 1.0, 4), &y);
        assert!(c.interval_95[0] < 0.0 && c.interval_95[1] > 0.0, "{c:?}");
        assert!(!c.not_worse_beyond(0.01));
    }

    #[test]
    fn large_comparisons_use_the_normal_approximation() {
        let y: Vec<f64> = (0..BOOTSTRAP_MAX_ROWS + 1)
            .map(|i| (i % 7) as f64)
            .collect();
        let c = PairedComparison::compute(&noisy(&y, 1.0, 5), &noisy(&y, 0.9, 6), &y);
        assert_eq!(c.method, IntervalMethod::NormalApproximation);
        assert!(c.interval_95[0] < c.mean_squared_error_difference);
        assert!(c.interval_95[1] > c.mean_squared_error_difference);
    }

    #[test]
    fn the_margin_matches_the_relative_rmse_tolerance() {
        let y = [0.0; 4];
        let c = PairedComparison::compute(&[1.0; 4], &[1.0; 4], &y);
        // RMSE 1.0 → within 1 %: MSE up to 1.0201.
        assert!((c.margin(0.01) - 0.0201).abs() < 1e-12);
    }
}
