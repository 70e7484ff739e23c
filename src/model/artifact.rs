//! The model artifact: a fitted regressor plus the card that describes it, in a compact,
//! versioned binary encoding that refuses to load what it cannot read correctly.
//!
//! Layout: the 8-byte magic `SOMMLIER`, a little-endian `u16` format version, then postcard
//! of [`EncodedArtifact`]. The card travels inside the artifact and also, as readable JSON,
//! beside it in the registry.
//!
//! Format versions:
//! - 3 (written by this build): format 2 followed by what explanations and intervals need,
//!   kept apart from the walk's nodes: a forest's node covers (training rows that reached each
//!   node, in the stored node order, see `explain`) and the held-out rows' sorted absolute
//!   errors (at most 1,024 of them, see `interval`).
//! - 2: the model in its inference layout ([`Regressor`]: the flat forest of `forest`, or a
//!   linear model's coefficients). Reading it needs no smartcore. Still read and served; such
//!   a forest cannot explain (no covers) and its predictions carry no interval.
//! - 1: smartcore's own serialization of the fitted model. Still read, when the smartcore
//!   version matches, and turned into the inference layout on load (same predictions), so a
//!   registry's existing champion keeps serving after an upgrade.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::algorithm::{FitError, ModelSpec, Regressor, SmartcoreRegressor};
use super::comparison::PairedComparison;
use super::dataset::{sha256_hex, Dataset};
use super::explain::{GlobalImportance, TreeCovers};
use super::features::{FeatureRow, FEATURE_COUNT, FEATURE_NAMES};
use super::interval::{CalibrationSummary, Conformal};
use super::metrics::Metrics;
use super::split::SplitRule;

const MAGIC: &[u8; 8] = b"SOMMLIER";
/// Bumped whenever the encoded layout changes.
pub const FORMAT_VERSION: u16 = 3;
/// The inference layout without covers and calibration; read, served, not explained.
const LAYOUT_FORMAT_VERSION: u16 = 2;
/// The first format: smartcore's serialization of the model; read and migrated on load.
const SMARTCORE_FORMAT_VERSION: u16 = 1;
/// The smartcore release that trains this build's models, and whose serialized models (format
/// 1) this build reads.
pub const SMARTCORE_VERSION: &str = "0.7.0";
/// This build's version.
pub const SOMMELIER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Bins of the per-feature reference histograms (the drift baseline).
pub const HISTOGRAM_BINS: usize = 10;

/// Summary of one feature in the training data: the basis for out-of-range and drift checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeatureStats {
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub std: f64,
    /// `HISTOGRAM_BINS + 1` equal-width bin edges from min to max.
    pub bin_edges: Vec<f64>,
    /// Training rows per bin.
    pub bin_counts: Vec<u64>,
}

impl FeatureStats {
    /// The histogram bin a value falls in; values outside the range go to the end bins.
    pub fn bin_of(&self, value: f64) -> usize {
        let width = self.max - self.min;
        if width <= 0.0 {
            return 0;
        }
        let position = ((value - self.min) / width * HISTOGRAM_BINS as f64).floor();
        position.clamp(0.0, (HISTOGRAM_BINS - 1) as f64) as usize
    }

    pub fn contains(&self, value: f64) -> bool {
        value >= self.min && value <= self.max
    }
}

/// Where the training data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataSource {
    /// A file path, `bundled`, or a blob name.
    pub name: String,
    /// The blob's ETag, when the data came from Blob Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl DataSource {
    /// Data known by its name alone (a file, the bundled data), without an ETag.
    pub fn named(name: impl Into<String>) -> DataSource {
        DataSource {
            name: name.into(),
            etag: None,
        }
    }
}

/// Everything known about a model, readable as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelCard {
    /// Sortable id: UTC timestamp (ms) plus a short hash, e.g. `20261126T041953250Z-3f2a9c1`.
    pub version: String,
    pub format_version: u16,
    pub sommelier_version: String,
    pub smartcore_version: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    pub created_unix_seconds: u64,
    #[schema(value_type = Object)]
    pub spec: ModelSpec,
    pub feature_names: Vec<String>,
    pub feature_stats: Vec<FeatureStats>,
    /// Holdout metrics; absent when trained on every row.
    pub metrics: Option<Metrics>,
    /// Share of rows held out for evaluation.
    pub holdout: f64,
    /// The rule that chose the holdout rows; absent on cards written before rows were split
    /// by their feature values (such models cannot be compared fairly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitRule>,
    /// The comparison with the champion made when this version was saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<PairedComparison>,
    pub training_rows: usize,
    pub data_sha256: String,
    pub source: DataSource,
    /// What started the training: cli, http, schedule or upload.
    pub trigger: String,
    /// Seconds spent fitting.
    pub fit_seconds: f64,
    /// Peak resident memory of the training process while it trained, in bytes (Linux only;
    /// absent elsewhere and on cards written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// How many of the rows it was trained and held out on had each quality 0 to 10: the
    /// label distribution a later training's labels are compared with (absent on cards
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_counts: Option<[u64; LABEL_VALUES]>,
    /// How prediction intervals were calibrated (absent when nothing was held out, and on
    /// cards written before intervals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationSummary>,
    /// Global importance: each feature's mean |contribution| over the held-out rows, largest
    /// first (absent when nothing was held out, and on cards written before explanations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance: Option<GlobalImportance>,
}

/// The qualities a label can take: 0 to 10.
pub const LABEL_VALUES: usize = 11;

/// How many of `targets` have each quality 0 to 10 (targets are whole numbers in range, as
/// the dataset reader checks; anything else is counted at the nearest end).
pub fn label_counts<'t>(targets: impl IntoIterator<Item = &'t f64>) -> [u64; LABEL_VALUES] {
    let mut counts = [0; LABEL_VALUES];
    for &target in targets {
        let index = target.round().clamp(0.0, (LABEL_VALUES - 1) as f64) as usize;
        counts[index] += 1;
    }
    counts
}

/// A fitted model and its card.
#[derive(Debug)]
pub struct ModelArtifact {
    pub card: ModelCard,
    pub regressor: Regressor,
    /// A forest's node covers, for explanations (`None` for a linear model and for forests
    /// of formats before 3).
    pub covers: Option<TreeCovers>,
    /// The held-out errors that calibrate intervals (`None` without a holdout and before
    /// format 3).
    pub conformal: Option<Conformal>,
}

/// The card travels as JSON text: it uses serde features (tagged enums, skipped fields)
/// that a positional binary encoding cannot carry.
#[derive(Serialize)]
struct EncodedArtifactRef<'a> {
    sommelier_version: &'a str,
    smartcore_version: &'a str,
    card_json: String,
    regressor: &'a Regressor,
    covers: Option<&'a [u32]>,
    conformal: Option<(usize, &'a [f64])>,
}

#[derive(Deserialize)]
struct EncodedHeader {
    sommelier_version: String,
    smartcore_version: String,
}

/// Format 3's body: format 2's, then the covers and the calibration.
#[derive(Deserialize)]
struct EncodedArtifact3 {
    #[allow(dead_code)]
    sommelier_version: String,
    #[allow(dead_code)]
    smartcore_version: String,
    card_json: String,
    regressor: Regressor,
    covers: Option<Vec<u32>>,
    conformal: Option<(usize, Vec<f64>)>,
}

#[derive(Deserialize)]
struct EncodedArtifact<R> {
    #[allow(dead_code)]
    sommelier_version: String,
    #[allow(dead_code)]
    smartcore_version: String,
    card_json: String,
    regressor: R,
}

#[derive(Debug, Error, PartialEq)]
pub enum ArtifactError {
    #[error("not a sommelier model (unrecognised file header)")]
    NotAModel,
    #[error("model format version {found} is not supported by this build (which reads version {supported}); retrain the model")]
    UnsupportedFormat { found: u16, supported: u16 },
    #[error("model was written with smartcore {found} by sommelier {written_by}; this build uses smartcore {supported}: retrain the model")]
    IncompatibleSmartcore {
        found: String,
        written_by: String,
        supported: String,
    },
    #[error("model file is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot encode the model: {0}")]
    Encode(String),
    /// A stored model that did not decode, with what comparing it with its card found.
    #[error("{checked}; decoding it failed: {decoder}")]
    Checked {
        checked: String,
        decoder: Box<ArtifactError>,
    },
}

impl ModelArtifact {
    /// Encodes the artifact in the versioned binary layout.
    pub fn encode(&self) -> Result<Vec<u8>, ArtifactError> {
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let body = EncodedArtifactRef {
            sommelier_version: SOMMELIER_VERSION,
            smartcore_version: SMARTCORE_VERSION,
            card_json: serde_json::to_string(&self.card)
                .map_err(|e| ArtifactError::Encode(e.to_string()))?,
            regressor: &self.regressor,
            covers: match (&self.regressor, &self.covers) {
                (Regressor::Forest(_), Some(covers)) => Some(covers.stored()),
                _ => None,
            },
            conformal: self.conformal.as_ref().map(Conformal::stored),
        };
        postcard::to_io(&body, &mut out).map_err(|e| ArtifactError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// Decodes an artifact, refusing other formats and other smartcore versions by name.
    pub fn decode(bytes: &[u8]) -> Result<ModelArtifact, ArtifactError> {
        if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(ArtifactError::NotAModel);
        }
        let found = u16::from_le_bytes([bytes[8], bytes[9]]);
        let body = &bytes[10..];
        let corrupt = |e: postcard::Error| ArtifactError::Corrupt(e.to_string());
        let (card_json, regressor, covers, conformal) = match found {
            FORMAT_VERSION => {
                // A forest is checked as it is decoded (see `forest`): a decoded one is sound.
                let decoded: EncodedArtifact3 = postcard::from_bytes(body).map_err(corrupt)?;
                // Checked against the trees at the first explanation (see `explain`).
                let covers = match (&decoded.regressor, decoded.covers) {
                    (Regressor::Forest(forest), Some(stored)) if stored.len() == forest.nodes() => {
                        Some(TreeCovers::from_stored(stored))
                    }
                    (Regressor::Forest(_), Some(_)) => {
                        return Err(ArtifactError::Corrupt(
                            "the node covers do not match the trees".into(),
                        ))
                    }
                    _ => None,
                };
                let conformal = match decoded.conformal {
                    Some((rows, errors)) => {
                        Some(Conformal::from_stored(rows, errors).ok_or_else(|| {
                            ArtifactError::Corrupt("the calibration errors are not sound".into())
                        })?)
                    }
                    None => None,
                };
                (decoded.card_json, decoded.regressor, covers, conformal)
            }
            LAYOUT_FORMAT_VERSION => {
                let decoded: EncodedArtifact<Regressor> =
                    postcard::from_bytes(body).map_err(corrupt)?;
                (decoded.card_json, decoded.regressor, None, None)
            }
            SMARTCORE_FORMAT_VERSION => {
                let (card_json, regressor) = Self::migrate_smartcore(body)?;
                (card_json, regressor, None, None)
            }
            _ => {
                return Err(ArtifactError::UnsupportedFormat {
                    found,
                    supported: FORMAT_VERSION,
                })
            }
        };
        let card: ModelCard = serde_json::from_str(&card_json)
            .map_err(|e| ArtifactError::Corrupt(format!("model card: {e}")))?;
        let artifact = ModelArtifact {
            card,
            regressor,
            covers,
            conformal,
        };
        if artifact.card.feature_names.len() != FEATURE_COUNT
            || artifact.card.feature_stats.len() != FEATURE_COUNT
        {
            return Err(ArtifactError::Corrupt(
                "the card does not describe the 11 features".to_string(),
            ));
        }
        Ok(artifact)
    }

    /// Reads a format-1 body (smartcore's serialization) and turns the model into the
    /// inference layout. Refuses another smartcore version's encoding by name.
    fn migrate_smartcore(body: &[u8]) -> Result<(String, Regressor), ArtifactError> {
        let corrupt = |e: postcard::Error| ArtifactError::Corrupt(e.to_string());
        let (header, _): (EncodedHeader, _) = postcard::take_from_bytes(body).map_err(corrupt)?;
        if header.smartcore_version != SMARTCORE_VERSION {
            return Err(ArtifactError::IncompatibleSmartcore {
                found: header.smartcore_version,
                written_by: header.sommelier_version,
                supported: SMARTCORE_VERSION.to_string(),
            });
        }
        let decoded: EncodedArtifact<SmartcoreRegressor> =
            postcard::from_bytes(body).map_err(corrupt)?;
        let regressor = decoded
            .regressor
            .to_regressor()
            .map_err(|e| ArtifactError::Corrupt(e.to_string()))?;
        Ok((decoded.card_json, regressor))
    }

    /// Encodes a model in the first format (smartcore's serialization), as builds before the
    /// inference layout wrote it: for migration tests.
    #[doc(hidden)]
    pub fn encode_format_1(
        card: &ModelCard,
        model: &SmartcoreRegressor,
    ) -> Result<Vec<u8>, ArtifactError> {
        #[derive(Serialize)]
        struct Format1<'a> {
            sommelier_version: &'a str,
            smartcore_version: &'a str,
            card_json: String,
            regressor: &'a SmartcoreRegressor,
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&SMARTCORE_FORMAT_VERSION.to_le_bytes());
        let body = Format1 {
            sommelier_version: SOMMELIER_VERSION,
            smartcore_version: SMARTCORE_VERSION,
            card_json: serde_json::to_string(card)
                .map_err(|e| ArtifactError::Encode(e.to_string()))?,
            regressor: model,
        };
        postcard::to_io(&body, &mut out).map_err(|e| ArtifactError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// Encodes the artifact in format 2 (no covers, no calibration), as builds before
    /// explanations wrote it: for the tests of older artifacts.
    #[doc(hidden)]
    pub fn encode_format_2(&self) -> Result<Vec<u8>, ArtifactError> {
        #[derive(Serialize)]
        struct Format2<'a> {
            sommelier_version: &'a str,
            smartcore_version: &'a str,
            card_json: String,
            regressor: &'a Regressor,
        }
        let mut card = self.card.clone();
        card.format_version = LAYOUT_FORMAT_VERSION;
        card.calibration = None;
        card.importance = None;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&LAYOUT_FORMAT_VERSION.to_le_bytes());
        let body = Format2 {
            sommelier_version: SOMMELIER_VERSION,
            smartcore_version: SMARTCORE_VERSION,
            card_json: serde_json::to_string(&card)
                .map_err(|e| ArtifactError::Encode(e.to_string()))?,
            regressor: &self.regressor,
        };
        postcard::to_io(&body, &mut out).map_err(|e| ArtifactError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// The interval around `prediction` at `coverage`, when the model is calibrated.
    pub fn interval(&self, prediction: f64, coverage: f64) -> Option<[f64; 2]> {
        self.conformal
            .as_ref()
            .map(|conformal| conformal.interval(prediction, coverage))
    }

    pub fn predict(&self, rows: &[FeatureRow]) -> Result<Vec<f64>, FitError> {
        let mut predictions = self.regressor.predict(rows)?;
        for prediction in &mut predictions {
            *prediction = on_the_scale(*prediction);
        }
        Ok(predictions)
    }

    /// One row's prediction, without allocating.
    pub fn predict_row(&self, row: &FeatureRow) -> Result<f64, FitError> {
        self.regressor.predict_row(row).map(on_the_scale)
    }

    /// The features of `row` outside the range seen in training.
    pub fn out_of_range(&self, row: &FeatureRow) -> Vec<&'static str> {
        self.card
            .feature_stats
            .iter()
            .zip(row)
            .zip(FEATURE_NAMES)
            .filter(|((stats, value), _)| !stats.contains(**value))
            .map(|(_, name)| name)
            .collect()
    }
}

/// A prediction held to the quality scale. A forest's never leaves it (its leaves average
/// qualities); a linear model's does for inputs far outside its training range (flagged
/// `out_of_range`), where a score of 15, or 9,110, would mean nothing and fall outside its
/// own interval.
fn on_the_scale(prediction: f64) -> f64 {
    let (low, high) = super::interval::QUALITY_RANGE;
    prediction.clamp(low, high)
}

/// Per-feature statistics of the rows a model was trained on.
pub fn feature_stats(rows: &[FeatureRow]) -> Vec<FeatureStats> {
    (0..FEATURE_COUNT)
        .map(|i| {
            let values: Vec<f64> = rows.iter().map(|r| r[i]).collect();
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // Overflow-safe for any finite values: a running mean never sums, and deviations
            // are scaled by the largest one before squaring.
            let mean = values
                .iter()
                .enumerate()
                .fold(0.0, |mean, (k, v)| mean + (v - mean) / (k + 1) as f64);
            let scale = values.iter().fold(0.0_f64, |s, v| s.max((v - mean).abs()));
            let std = if scale > 0.0 && scale.is_finite() {
                let n = values.len() as f64;
                scale
                    * (values
                        .iter()
                        .map(|v| ((v - mean) / scale).powi(2))
                        .sum::<f64>()
                        / n)
                        .sqrt()
            } else {
                0.0
            };
            let bin_edges = (0..=HISTOGRAM_BINS)
                .map(|b| {
                    let t = b as f64 / HISTOGRAM_BINS as f64;
                    min * (1.0 - t) + max * t
                })
                .collect();
            let mut stats = FeatureStats {
                name: FEATURE_NAMES[i].to_string(),
                min,
                max,
                mean,
                std,
                bin_edges,
                bin_counts: vec![0; HISTOGRAM_BINS],
            };
            for v in &values {
                let bin = stats.bin_of(*v);
                stats.bin_counts[bin] += 1;
            }
            stats
        })
        .collect()
}

/// A new sortable version id: `YYYYMMDDTHHMMSSmmmZ-` (UTC, to the millisecond) plus 7 hex
/// digits of a hash of the data, the recipe and the exact time, so ids never collide.
pub fn new_version_id(dataset: &Dataset, spec: &ModelSpec, now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seed_text = format!("{}|{:?}|{}", dataset.sha256, spec, since_epoch.as_nanos());
    let hash = sha256_hex(seed_text.as_bytes());
    let seconds = compact_utc(since_epoch.as_secs());
    format!(
        "{}{:03}Z-{}",
        seconds.trim_end_matches('Z'),
        since_epoch.subsec_millis(),
        &hash[..7]
    )
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time.
pub fn compact_utc(unix_seconds: u64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix_seconds);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// RFC 3339 (`YYYY-MM-DDTHH:MM:SSZ`) for a Unix time.
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix_seconds);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Gregorian date and time of a Unix time (days-from-civil inverse, H. Hinnant's method).
fn civil_from_unix(unix_seconds: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (unix_seconds / 86_400) as i64;
    let rem = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(compact_utc(0), "19700101T000000Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_667_993), "2026-11-26T04:39:53Z");
    }

    #[test]
    fn histogram_bins_cover_the_range() {
        let rows: Vec<FeatureRow> = (0..100).map(|i| [i as f64; FEATURE_COUNT]).collect();
        let stats = feature_stats(&rows);
        assert_eq!(stats[0].min, 0.0);
        assert_eq!(stats[0].max, 99.0);
        assert_eq!(stats[0].bin_counts.iter().sum::<u64>(), 100);
        assert_eq!(stats[0].bin_edges.len(), HISTOGRAM_BINS + 1);
        assert_eq!(stats[0].bin_of(-5.0), 0);
        assert_eq!(stats[0].bin_of(500.0), HISTOGRAM_BINS - 1);
        assert!(stats[0].contains(99.0) && !stats[0].contains(99.5));
    }

    #[test]
    fn foreign_bytes_are_refused_clearly() {
        assert_eq!(
            ModelArtifact::decode(b"hello").unwrap_err(),
            ArtifactError::NotAModel
        );
        let mut future = MAGIC.to_vec();
        future.extend_from_slice(&7u16.to_le_bytes());
        assert_eq!(
            ModelArtifact::decode(&future).unwrap_err(),
            ArtifactError::UnsupportedFormat {
                found: 7,
                supported: FORMAT_VERSION
            }
        );
    }

    #[test]
    fn statistics_of_huge_values_stay_finite() {
        let mut rows: Vec<FeatureRow> = (0..100).map(|i| [i as f64; FEATURE_COUNT]).collect();
        rows[7][3] = 3e160;
        rows[8][3] = -1e300;
        for stats in feature_stats(&rows) {
            assert!(stats.mean.is_finite() && stats.std.is_finite(), "{stats:?}");
            assert!(stats.bin_edges.iter().all(|e| e.is_finite()), "{stats:?}");
        }
    }
}
