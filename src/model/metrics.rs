//! Regression metrics used to judge and compare models.

use serde::{Deserialize, Serialize};

/// How well predictions match true quality scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Metrics {
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination.
    pub r2: f64,
    /// Share of predictions within 0.5 of the true quality.
    pub within_0_5: f64,
    /// Share of predictions within 1.0 of the true quality.
    pub within_1_0: f64,
    /// Rows scored.
    pub rows: usize,
}

impl Metrics {
    /// Scores `predicted` against `actual`; both must have the same, non-zero length.
    pub fn compute(predicted: &[f64], actual: &[f64]) -> Metrics {
        debug_assert_eq!(predicted.len(), actual.len());
        let n = predicted.len().min(actual.len());
        if n == 0 {
            return Metrics {
                rmse: f64::NAN,
                mae: f64::NAN,
                r2: f64::NAN,
                within_0_5: f64::NAN,
                within_1_0: f64::NAN,
                rows: 0,
            };
        }
        let count = n as f64;
        let mean = actual[..n].iter().sum::<f64>() / count;
        let (mut squared, mut absolute, mut total, mut half, mut one) = (0.0, 0.0, 0.0, 0, 0);
        for (p, a) in predicted[..n].iter().zip(&actual[..n]) {
            let error = p - a;
            squared += error * error;
            absolute += error.abs();
            total += (a - mean) * (a - mean);
            half += usize::from(error.abs() <= 0.5);
            one += usize::from(error.abs() <= 1.0);
        }
        Metrics {
            rmse: (squared / count).sqrt(),
            mae: absolute / count,
            r2: if total > 0.0 {
                1.0 - squared / total
            } else {
                0.0
            },
            within_0_5: half as f64 / count,
            within_1_0: one as f64 / count,
            rows: n,
        }
    }
}

/// Mean and sample standard deviation of one metric over cross-validation folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Spread { mean, sd }
    }
}

/// Share used in place of an empty bin, so that the logarithm stays finite.
const EMPTY_BIN_SHARE: f64 = 1e-4;

/// The population stability index of two histograms over the same bins: Σ (actual −
/// expected) · ln(actual / expected), on shares of each total. 0 for identical shares; 0.1 is
/// commonly read as a small shift, 0.25 as a large one. 0 when either histogram is empty.
pub fn population_stability_index<E, A>(expected: &[E], actual: &[A]) -> f64
where
    E: Copy + Into<u64>,
    A: Copy + Into<u64>,
{
    let expected_total: u64 = expected.iter().map(|&c| c.into()).sum();
    let actual_total: u64 = actual.iter().map(|&c| c.into()).sum();
    if expected_total == 0 || actual_total == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let e = (e.into() as f64 / expected_total as f64).max(EMPTY_BIN_SHARE);
            let a = (a.into() as f64 / actual_total as f64).max(EMPTY_BIN_SHARE);
            (a - e) * (a / e).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        // errors: +0.5, -1.0, 0.0, +2.0 ; actual mean 6.0
        let predicted = [5.5, 5.0, 7.0, 8.0];
        let actual = [5.0, 6.0, 7.0, 6.0];
        let m = Metrics::compute(&predicted, &actual);
        assert!(close(m.rmse, (5.25f64 / 4.0).sqrt()), "{}", m.rmse); // (0.25+1+0+4)/4
        assert!(close(m.mae, 3.5 / 4.0));
        // total sum of squares: 1+0+1+0 = 2.0 ; r2 = 1 - 5.25/2
        assert!(close(m.r2, 1.0 - 5.25 / 2.0));
        assert!(close(m.within_0_5, 0.5));
        assert!(close(m.within_1_0, 0.75));
        assert_eq!(m.rows, 4);
    }

    #[test]
    fn perfect_predictions_score_perfectly() {
        let m = Metrics::compute(&[3.0, 4.0, 5.0], &[3.0, 4.0, 5.0]);
        assert_eq!((m.rmse, m.mae, m.r2, m.within_0_5), (0.0, 0.0, 1.0, 1.0));
    }

    #[test]
    fn spread_uses_the_sample_standard_deviation() {
        let s = Spread::of(&[1.0, 2.0, 3.0, 4.0]);
        assert!(close(s.mean, 2.5));
        assert!(close(s.sd, (5.0f64 / 3.0).sqrt()));
    }
}
