//! Seeded, reproducible splits of row indices: holdout and k-fold.
//!
//! The generator is SplitMix64, written here so that a dependency update can never change
//! which rows a seed selects (a model's reference metrics depend on it).

/// A small deterministic pseudo-random generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer below `bound` (bound > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (((self.next_u64() as u128) * (bound as u128)) >> 64) as usize
    }
}

/// The indices `0..n` in an order fixed by `seed` (Fisher–Yates).
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        indices.swap(i, rng.below(i + 1));
    }
    indices
}

/// Rows to train on and rows held out for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Holds out `fraction` of `n` rows (rounded, at least one when fraction > 0).
pub fn holdout(n: usize, fraction: f64, seed: u64) -> Holdout {
    let order = shuffled_indices(n, seed);
    let test_len = if fraction <= 0.0 {
        0
    } else {
        ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1))
    };
    let (test, train) = order.split_at(test_len);
    Holdout {
        train: train.to_vec(),
        test: test.to_vec(),
    }
}

/// `k` folds of shuffled rows; each fold's test rows are disjoint and together cover all rows.
pub fn k_folds(n: usize, k: usize, seed: u64) -> Vec<Holdout> {
    let order = shuffled_indices(n, seed);
    (0..k)
        .map(|fold| {
            let start = fold * n / k;
            let end = (fold + 1) * n / k;
            let test = order[start..end].to_vec();
            let train = order[..start]
                .iter()
                .chain(&order[end..])
                .copied()
                .collect();
            Holdout { train, test }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_split() {
        assert_eq!(holdout(100, 0.25, 7), holdout(100, 0.25, 7));
        assert_ne!(holdout(100, 0.25, 7), holdout(100, 0.25, 8));
    }

    #[test]
    fn the_random_stream_is_pinned() {
        // A changed generator would silently change every reference metric.
        assert_eq!(shuffled_indices(8, 42), vec![4, 3, 2, 0, 7, 6, 1, 5]);
    }

    #[test]
    fn holdout_sizes_and_coverage() {
        let split = holdout(1599, 0.25, 1);
        assert_eq!(split.test.len(), 400);
        assert_eq!(split.train.len(), 1199);
        let mut all: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1599).collect::<Vec<_>>());
        assert!(holdout(10, 0.0, 1).test.is_empty());
    }

    #[test]
    fn folds_partition_the_rows() {
        let folds = k_folds(103, 5, 3);
        let mut tested: Vec<usize> = folds.iter().flat_map(|f| f.test.clone()).collect();
        tested.sort_unstable();
        assert_eq!(tested, (0..103).collect::<Vec<_>>());
        for fold in &folds {
            assert_eq!(fold.train.len() + fold.test.len(), 103);
            assert!(fold.test.iter().all(|t| !fold.train.contains(t)));
        }
    }
}
