//! Which rows a model trains on and which it is judged on.
//!
//! The holdout is a property of the row, not of the file: a row is held out when a keyed hash
//! of its eleven feature values falls below the holdout fraction. Identical feature rows
//! therefore always land on the same side, whatever the file's order, length or labels, so
//!
//! * a holdout row never has an exact copy among the training rows (metrics are not flattered
//!   by memorised duplicates), and
//! * two models trained with the same rule on different files (say, a file and the same file
//!   with rows appended) can be compared on rows that neither trained on: the rows held out
//!   under both rules.
//!
//! Seeded shuffles ([`shuffled_indices`]) remain where no row identity is needed. The
//! generator and the hash are written here so that a dependency update can never change
//! which rows are selected (reference metrics and promotion decisions depend on it).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::features::FeatureRow;

/// Name of the row hash recorded on model cards; bump it if [`row_position`] ever changes.
pub const ROW_HASH: &str = "splitmix64-features-v1";

/// The key used when none is configured. Models can only be compared when their keys agree,
/// so it is a constant of the registry, not a per-model seed.
pub const DEFAULT_SPLIT_KEY: u64 = 0x005E_ED0F_5A11_E1E5;

/// A small deterministic pseudo-random generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix64(self.0)
    }

    /// A uniform integer below `bound` (bound > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (((self.next_u64() as u128) * (bound as u128)) >> 64) as usize
    }
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijective mix in which every input bit affects every output bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The indices `0..count` in an order fixed by `seed` (Fisher–Yates).
pub fn shuffled_indices(count: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..count).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..count).rev() {
        indices.swap(i, rng.below(i + 1));
    }
    indices
}

/// The bits of a value in canonical form: equal numbers give equal bits (`7.40` and `7.4`
/// parse to the same double; `-0` is folded into `0`).
fn canonical_bits(value: f64) -> u64 {
    if value == 0.0 {
        0
    } else {
        value.to_bits()
    }
}

/// Where a row falls in [0, 1) under `key`: a keyed hash of its feature values.
pub fn row_position(key: u64, row: &FeatureRow) -> f64 {
    let mut h = mix64(key ^ GOLDEN_GAMMA);
    for &value in row {
        h = mix64(h ^ canonical_bits(value)).wrapping_add(GOLDEN_GAMMA);
    }
    (mix64(h) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// How a model's rows were split, recorded on its card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SplitRule {
    /// The row hash, e.g. `splitmix64-features-v1`.
    #[schema(value_type = String)]
    pub hash: HashName,
    /// The hash key.
    pub key: u64,
    /// Rows whose position is below this share are held out; zero trains on every row.
    pub fraction: f64,
}

/// The name of the row hash, checked on read so that an unknown hash is never mistaken for
/// this build's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashName {
    #[default]
    #[serde(rename = "splitmix64-features-v1")]
    SplitMix64FeaturesV1,
    /// A hash this build does not know (written by a newer release).
    #[serde(other)]
    Unknown,
}

impl SplitRule {
    pub fn new(key: u64, fraction: f64) -> Self {
        Self {
            hash: HashName::SplitMix64FeaturesV1,
            key,
            fraction,
        }
    }

    /// Whether `row` is held out under this rule.
    pub fn holds_out(&self, row: &FeatureRow) -> bool {
        self.fraction > 0.0 && row_position(self.key, row) < self.fraction
    }

    /// Splits row indices into training and holdout rows.
    pub fn split(&self, rows: &[FeatureRow]) -> Holdout {
        let (test, train): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| self.holds_out(&rows[i]));
        Holdout { train, test }
    }

    /// The rule under which a row was held out by this model *and* by `champion`: such rows
    /// were never seen in training by either. Why not, when the two rules cannot be combined.
    pub fn shared_holdout(&self, champion: &SplitRule) -> Result<SplitRule, String> {
        if self.hash == HashName::Unknown || champion.hash == HashName::Unknown {
            return Err(
                "the champion's rows were split with a row hash this build does not know".into(),
            );
        }
        if champion.fraction <= 0.0 {
            return Err(
                "the champion was trained on every row (holdout 0), so no row is unseen by it"
                    .into(),
            );
        }
        if self.fraction <= 0.0 {
            return Err("the challenger was trained on every row (holdout 0)".into());
        }
        if self.key != champion.key {
            return Err(format!(
                "the champion's rows were split with another key ({}; this training uses {})",
                champion.key, self.key
            ));
        }
        Ok(SplitRule::new(
            self.key,
            self.fraction.min(champion.fraction),
        ))
    }
}

/// Rows to train on and rows held out for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// `fold_count` folds in which identical feature rows always share a fold: the distinct rows
/// are shuffled by `seed` and dealt out so that folds hold about equally many rows. Each
/// fold's test rows are disjoint and together cover all rows.
pub fn grouped_k_folds(rows: &[FeatureRow], fold_count: usize, seed: u64) -> Vec<Holdout> {
    let (group_of_row, group_sizes) = feature_groups(rows);
    let order = shuffled_indices(group_sizes.len(), seed);
    let mut fold_of_group = vec![0usize; group_sizes.len()];
    let mut dealt = 0usize;
    for &group in &order {
        // The fold is chosen by the group's first row in the dealt order: balanced by rows.
        fold_of_group[group] = (dealt * fold_count / rows.len().max(1)).min(fold_count - 1);
        dealt += group_sizes[group];
    }
    (0..fold_count)
        .map(|fold| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..rows.len()).partition(|&i| fold_of_group[group_of_row[i]] == fold);
            Holdout { train, test }
        })
        .collect()
}

/// Numbers each distinct feature row: the group of every row, and each group's size.
fn feature_groups(rows: &[FeatureRow]) -> (Vec<usize>, Vec<usize>) {
    let mut ids: HashMap<[u64; 11], usize> = HashMap::with_capacity(rows.len());
    let mut sizes = Vec::new();
    let group_of_row = rows
        .iter()
        .map(|row| {
            let id = *ids.entry(row.map(canonical_bits)).or_insert_with(|| {
                sizes.push(0);
                sizes.len() - 1
            });
            sizes[id] += 1;
            id
        })
        .collect();
    (group_of_row, sizes)
}

/// How many distinct feature rows there are.
pub fn distinct_rows(rows: &[FeatureRow]) -> usize {
    feature_groups(rows).1.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<FeatureRow> {
        let mut rng = SplitMix64::new(9);
        (0..n)
            .map(|_| std::array::from_fn(|_| (rng.below(1000) as f64) / 100.0))
            .collect()
    }

    #[test]
    fn the_random_stream_is_pinned() {
        // A changed generator would silently change every reference metric.
        assert_eq!(shuffled_indices(8, 42), vec![4, 3, 2, 0, 7, 6, 1, 5]);
    }

    #[test]
    fn the_row_hash_is_pinned() {
        // A changed hash would move rows between sides and make old champions incomparable.
        let row = [
            7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
        ];
        let position = row_position(DEFAULT_SPLIT_KEY, &row);
        assert_eq!(format!("{position:.12}"), "0.071363278341");
        assert_ne!(row_position(DEFAULT_SPLIT_KEY + 1, &row), position);
    }

    #[test]
    fn equal_numbers_hash_equally() {
        let a = [
            7.40, 0.0, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
        ];
        let mut b = a;
        b[0] = "7.4".parse().unwrap();
        b[1] = -0.0;
        assert_eq!(row_position(3, &a), row_position(3, &b));
    }

    #[test]
    fn the_holdout_share_is_close_to_the_fraction() {
        let data = rows(20_000);
        let split = SplitRule::new(DEFAULT_SPLIT_KEY, 0.25).split(&data);
        let share = split.test.len() as f64 / data.len() as f64;
        assert!((share - 0.25).abs() < 0.015, "{share}");
        assert_eq!(split.test.len() + split.train.len(), data.len());
        assert!(SplitRule::new(1, 0.0).split(&data).test.is_empty());
    }

    #[test]
    fn order_length_and_duplicates_never_move_a_row() {
        let data = rows(2_000);
        let rule = SplitRule::new(5, 0.3);
        let side: Vec<bool> = data.iter().map(|r| rule.holds_out(r)).collect();
        // Reversed, appended to and duplicated: every original row keeps its side.
        let mut other: Vec<FeatureRow> = data.iter().rev().copied().collect();
        other.extend(rows(500).iter().map(|r| r.map(|v| v + 100.0)));
        other.extend(data.iter().take(300).copied());
        let split = rule.split(&other);
        for (i, row) in data.iter().enumerate() {
            let index = other.iter().position(|r| r == row).unwrap();
            assert_eq!(split.test.contains(&index), side[i]);
        }
        for &t in &split.test {
            assert!(split.train.iter().all(|&r| other[r] != other[t]));
        }
    }

    #[test]
    fn shared_holdout_needs_compatible_rules() {
        let challenger = SplitRule::new(7, 0.25);
        assert_eq!(
            challenger.shared_holdout(&SplitRule::new(7, 0.2)),
            Ok(SplitRule::new(7, 0.2))
        );
        assert_eq!(
            challenger.shared_holdout(&SplitRule::new(7, 0.5)),
            Ok(SplitRule::new(7, 0.25))
        );
        assert!(challenger
            .shared_holdout(&SplitRule::new(7, 0.0))
            .unwrap_err()
            .contains("every row"));
        assert!(challenger
            .shared_holdout(&SplitRule::new(8, 0.25))
            .unwrap_err()
            .contains("key"));
        let unknown: SplitRule =
            serde_json::from_str(r#"{"hash":"sha3-v9","key":7,"fraction":0.25}"#).unwrap();
        assert_eq!(unknown.hash, HashName::Unknown);
        assert!(challenger.shared_holdout(&unknown).is_err());
    }

    #[test]
    fn grouped_folds_partition_rows_and_keep_duplicates_together() {
        let mut data = rows(1_000);
        data.extend(data.clone().iter().take(200));
        let folds = grouped_k_folds(&data, 5, 3);
        let mut tested: Vec<usize> = folds.iter().flat_map(|f| f.test.clone()).collect();
        tested.sort_unstable();
        assert_eq!(tested, (0..data.len()).collect::<Vec<_>>());
        for fold in &folds {
            assert!(
                (200..=280).contains(&fold.test.len()),
                "{}",
                fold.test.len()
            );
            for &t in &fold.test {
                assert!(fold.train.iter().all(|&r| data[r] != data[t]));
            }
        }
        assert_eq!(distinct_rows(&data), 1_000);
    }
}
