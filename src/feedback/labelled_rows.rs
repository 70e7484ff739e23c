//! Labelled production rows in the next training: the rows the last join wrote are added to
//! the configured data wherever the server trains (the timer, `POST /api/train`, an upload),
//! unless `SOMMELIER_TRAIN_ON_FEEDBACK` is off. The card's source says how many rows came
//! from feedback, its row count includes them, and its data hash covers them. The promotion
//! gate still judges the result.

use crate::config::Settings;
use crate::model::artifact::DataSource;
use crate::model::dataset::{sha256_hex, Dataset};
use crate::model::features::FeatureRow;

use super::join::parse_labelled;
use super::store::{LoopStore, LABELLED_ROWS};

/// The labelled rows of the last join.
#[derive(Debug, Clone)]
pub struct FeedbackRows {
    pub rows: Vec<FeatureRow>,
    pub targets: Vec<f64>,
    pub sha256: String,
}

/// The labelled rows to add, or `None` when the merge is off or there are none. A store that
/// cannot be read, or a file that cannot be parsed, is logged and trains without them.
pub async fn load(settings: &Settings) -> Option<FeedbackRows> {
    if !settings.feedback.train_on_feedback {
        return None;
    }
    let store = LoopStore::open(settings).ok()?;
    let bytes = match store.read_result(LABELLED_ROWS).await {
        Ok(Some((bytes, _))) => bytes,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(%error, "the labelled rows cannot be read: training without them");
            return None;
        }
    };
    let rows = match parse_labelled(&bytes) {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "the labelled rows are unreadable: training without them");
            return None;
        }
    };
    if rows.is_empty() {
        return None;
    }
    Some(FeedbackRows {
        rows: rows.values().map(|r| r.row).collect(),
        targets: rows.values().map(|r| r.quality).collect(),
        sha256: sha256_hex(&bytes),
    })
}

/// The data hash of `base_sha256` plus `rows`.
pub fn combined_sha(base_sha256: &str, rows: Option<&FeedbackRows>) -> String {
    match rows {
        None => base_sha256.to_string(),
        Some(rows) => sha256_hex(format!("{base_sha256}+feedback:{}", rows.sha256).as_bytes()),
    }
}

/// The hash a training on `bytes` would record now (the configured data plus the labelled
/// rows): what the timer compares with the champion's.
pub async fn training_sha(settings: &Settings, bytes: &[u8]) -> String {
    combined_sha(&sha256_hex(bytes), load(settings).await.as_ref())
}

/// Adds `rows` to `dataset`, and says so in `source`.
pub fn merge(dataset: &mut Dataset, source: &mut DataSource, rows: FeedbackRows) {
    dataset.sha256 = combined_sha(&dataset.sha256, Some(&rows));
    source.name = format!(
        "{} + {} labelled rows from feedback",
        source.name,
        rows.rows.len()
    );
    dataset.rows.extend(rows.rows);
    dataset.targets.extend(rows.targets);
}
