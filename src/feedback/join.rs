//! The join: labels matched to logged predictions by id, within the horizon; per model
//! version, the live error; and the labelled production rows, for the next training.
//!
//! It reads every label and every logged prediction of the last
//! `SOMMELIER_FEEDBACK_HORIZON_DAYS` (labels first, then the log, keeping only rows that have
//! a label, so memory follows the labels, not the log), and the labelled rows of earlier
//! joins. The latest label of an id wins. Its results are a function of what it reads: a
//! second join with nothing new writes nothing. The results are replaced under the tag read
//! at the start, and a claim in the registry lets one join run at a time across instances.
//! A line cut short (a writer killed during a write) or unreadable is skipped and counted.
//!
//! Not here: where files live (`store`), the merge into training (`training`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::record::{
    complete_lines, hour_partition, line_id, parse_time, LabelLine, LoggedPrediction,
};
use super::store::{LoopStore, Stream, LABELLED_ROWS, REPORT};
use crate::model::features::{FeatureRow, FEATURE_COUNT, FEATURE_NAMES};
use crate::registry::StoreError;
use crate::text::counted;

/// What the last join found, per model version: `sommelier feedback report --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub versions: Vec<VersionReport>,
    /// Labels whose prediction was not found in the log within the horizon.
    pub unmatched_labels: u64,
}

/// One version's live error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionReport {
    pub model_version: String,
    pub labelled_rows: u64,
    pub rmse: f64,
    pub mae: f64,
    /// Mean time from prediction to label.
    pub mean_label_delay_seconds: f64,
}

/// What one join did.
#[derive(Debug, Clone, Serialize)]
pub struct JoinOutcome {
    pub report: Report,
    /// Labels read within the horizon (the latest per id).
    pub labels: u64,
    /// Logged prediction rows read within the horizon.
    pub logged_rows: u64,
    /// Lines skipped: cut short by a crash, or unreadable.
    pub skipped_lines: u64,
    /// Rows in the labelled-rows file after the join (this join's and earlier joins').
    pub labelled_rows: u64,
    /// Whether the join changed its results (false: nothing new since the last one).
    pub changed: bool,
    /// Log and label files removed after the join, past `SOMMELIER_PREDICTION_LOG_RETENTION_DAYS`.
    pub removed_files: u64,
}

impl JoinOutcome {
    /// One line on what the join found, for the CLI and the timer's log: each count with its
    /// noun in the right number, the removals only when there were some.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} with {}: {} for training, {}, {}, {}",
            counted(self.labels, "label"),
            counted(self.logged_rows, "logged row"),
            counted(self.labelled_rows, "labelled row"),
            counted(self.report.versions.len() as u64, "model version"),
            counted(self.report.unmatched_labels, "unmatched label"),
            counted(self.skipped_lines, "skipped line"),
        );
        if self.removed_files > 0 {
            text.push_str(&format!(
                ", {} removed",
                counted(self.removed_files, "expired file")
            ));
        }
        if !self.changed {
            text.push_str("; nothing new");
        }
        text
    }
}

/// A labelled production row: the logged inputs, the label, and when it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledRow {
    pub labelled_at_ms: u64,
    pub row: FeatureRow,
    pub quality: f64,
}

/// The header of the labelled-rows file.
pub fn labelled_header() -> String {
    format!(
        "prediction_id,labelled_at_ms,{},quality",
        FEATURE_NAMES.join(",")
    )
}

/// Reads the labelled-rows file the join writes (and nothing else: a line that is not what
/// it writes is an error naming the line).
pub fn parse_labelled(bytes: &[u8]) -> Result<BTreeMap<String, LabelledRow>, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "the labelled rows are not UTF-8".to_string())?;
    let mut lines = text.lines();
    match lines.next() {
        None => return Ok(BTreeMap::new()),
        Some(header) if header == labelled_header() => {}
        Some(_) => return Err("the labelled rows' header is not the join's".to_string()),
    }
    let mut rows = BTreeMap::new();
    for (index, line) in lines.enumerate() {
        let bad = || {
            format!(
                "labelled rows, line {}: not a row the join writes",
                index + 2
            )
        };
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != FEATURE_COUNT + 3 {
            return Err(bad());
        }
        let labelled_at_ms = cells[1].parse().map_err(|_| bad())?;
        let mut row = [0.0; FEATURE_COUNT];
        for (slot, cell) in row.iter_mut().zip(&cells[2..2 + FEATURE_COUNT]) {
            *slot = cell
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(bad)?;
        }
        let quality = cells[FEATURE_COUNT + 2]
            .parse::<f64>()
            .ok()
            .filter(|q| (0.0..=10.0).contains(q))
            .ok_or_else(bad)?;
        rows.insert(
            cells[0].to_string(),
            LabelledRow {
                labelled_at_ms,
                row,
                quality,
            },
        );
    }
    Ok(rows)
}

fn write_labelled(rows: &BTreeMap<String, LabelledRow>) -> Vec<u8> {
    let mut text = labelled_header();
    text.push('\n');
    for (id, labelled) in rows {
        let _ = write!(text, "{id},{}", labelled.labelled_at_ms);
        for value in labelled.row {
            let _ = write!(text, ",{value}");
        }
        let _ = writeln!(text, ",{}", labelled.quality);
    }
    text.into_bytes()
}

/// A label as kept: the latest per id.
struct Label {
    quality: f64,
    at_ms: u64,
}

/// A logged prediction that has a label.
struct Matched {
    model_version: String,
    row: FeatureRow,
    prediction: f64,
    at_ms: u64,
}

/// The earliest hour partition within `horizon_days` of `now_ms`, and that time.
fn since(now_ms: u64, horizon_days: u32) -> (String, u64) {
    let since_ms = now_ms.saturating_sub(u64::from(horizon_days) * 86_400_000);
    (hour_partition(since_ms), since_ms)
}

/// Runs the join over `store` (the caller holds the join claim).
pub async fn join(
    store: &LoopStore,
    horizon_days: u32,
    now_ms: u64,
) -> Result<JoinOutcome, StoreError> {
    let (since_hour, since_ms) = since(now_ms, horizon_days);
    let mut skipped = 0u64;

    let mut labels: HashMap<String, Label> = HashMap::new();
    for name in store.list(Stream::Labels, &since_hour).await? {
        let bytes = match store.read(&name).await {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound(_)) => continue,
            Err(other) => return Err(other),
        };
        let (lines, partial) = complete_lines(&bytes);
        skipped += u64::from(partial);
        for line in lines {
            let Some(label) = serde_json::from_slice::<LabelLine>(line)
                .ok()
                .and_then(|l| Some((parse_time(&l.time)?, l)))
            else {
                skipped += 1;
                continue;
            };
            let (at_ms, label) = label;
            if at_ms < since_ms {
                continue;
            }
            let newer = labels.get(&label.id).is_none_or(|kept| at_ms >= kept.at_ms);
            if newer {
                labels.insert(
                    label.id,
                    Label {
                        quality: label.quality,
                        at_ms,
                    },
                );
            }
        }
    }

    let mut matched: BTreeMap<String, Matched> = BTreeMap::new();
    let mut logged_rows = 0u64;
    for name in store.list(Stream::Log, &since_hour).await? {
        let bytes = match store.read(&name).await {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound(_)) => continue,
            Err(other) => return Err(other),
        };
        let (lines, partial) = complete_lines(&bytes);
        skipped += u64::from(partial);
        for line in lines {
            logged_rows += 1;
            let Some(id) = line_id(line) else {
                skipped += 1;
                continue;
            };
            if !labels.contains_key(id) || matched.contains_key(id) {
                continue;
            }
            let Some((at_ms, logged)) = serde_json::from_slice::<LoggedPrediction>(line)
                .ok()
                .and_then(|l| Some((parse_time(&l.time)?, l)))
            else {
                skipped += 1;
                continue;
            };
            if at_ms < since_ms {
                continue;
            }
            matched.insert(
                logged.id,
                Matched {
                    model_version: logged.model_version,
                    row: logged.inputs.0,
                    prediction: logged.prediction,
                    at_ms,
                },
            );
        }
    }

    // Per version, in id order (sums in a fixed order: the same inputs give the same bits).
    #[derive(Default)]
    struct Sums {
        rows: u64,
        squared: f64,
        absolute: f64,
        delay_ms: f64,
    }
    let mut sums: BTreeMap<&str, Sums> = BTreeMap::new();
    for (id, logged) in &matched {
        let Some(label) = labels.get(id) else {
            continue;
        };
        let error = logged.prediction - label.quality;
        let entry = sums.entry(logged.model_version.as_str()).or_default();
        entry.rows += 1;
        entry.squared += error * error;
        entry.absolute += error.abs();
        entry.delay_ms += label.at_ms.saturating_sub(logged.at_ms) as f64;
    }
    let report = Report {
        versions: sums
            .into_iter()
            .map(|(version, s)| {
                let n = s.rows as f64;
                VersionReport {
                    model_version: version.to_string(),
                    labelled_rows: s.rows,
                    rmse: (s.squared / n).sqrt(),
                    mae: s.absolute / n,
                    mean_label_delay_seconds: s.delay_ms / n / 1000.0,
                }
            })
            .collect(),
        unmatched_labels: (labels.len() - matched.len()) as u64,
    };

    // The labelled rows: earlier joins' rows, with this join's matches (the latest label wins).
    let previous = store.read_result(LABELLED_ROWS).await?;
    let mut rows = match &previous {
        Some((bytes, _)) => parse_labelled(bytes).unwrap_or_else(|error| {
            tracing::warn!(%error, "the labelled rows of earlier joins are unreadable; rebuilt from the horizon");
            BTreeMap::new()
        }),
        None => BTreeMap::new(),
    };
    for (id, logged) in &matched {
        let Some(label) = labels.get(id) else {
            continue;
        };
        let newer = rows
            .get(id)
            .is_none_or(|kept: &LabelledRow| label.at_ms >= kept.labelled_at_ms);
        if newer {
            rows.insert(
                id.clone(),
                LabelledRow {
                    labelled_at_ms: label.at_ms,
                    row: logged.row,
                    quality: label.quality,
                },
            );
        }
    }
    // A newer label for a prediction past the horizon (its log line is no longer read) still
    // reaches the row an earlier join kept for it: the latest label wins for training too.
    for (id, label) in &labels {
        if matched.contains_key(id) {
            continue;
        }
        if let Some(kept) = rows.get_mut(id) {
            if label.at_ms > kept.labelled_at_ms {
                kept.quality = label.quality;
                kept.labelled_at_ms = label.at_ms;
            }
        }
    }
    let mut changed = false;
    let labelled = write_labelled(&rows);
    if previous.as_ref().map(|(bytes, _)| bytes) != Some(&labelled) {
        store
            .write_result(
                LABELLED_ROWS,
                labelled,
                previous.as_ref().map(|(_, tag)| tag.as_str()),
            )
            .await?;
        changed = true;
    }
    let report_bytes =
        serde_json::to_vec_pretty(&report).map_err(|e| StoreError::Other(e.to_string()))?;
    let previous_report = store.read_result(REPORT).await?;
    if previous_report.as_ref().map(|(bytes, _)| bytes) != Some(&report_bytes) {
        store
            .write_result(
                REPORT,
                report_bytes,
                previous_report.as_ref().map(|(_, tag)| tag.as_str()),
            )
            .await?;
        changed = true;
    }
    Ok(JoinOutcome {
        report,
        labels: labels.len() as u64,
        logged_rows,
        skipped_lines: skipped,
        labelled_rows: rows.len() as u64,
        changed,
        removed_files: 0,
    })
}

/// The report of the last join, if one ran.
pub async fn last_report(store: &LoopStore) -> Result<Option<Report>, StoreError> {
    match store.read_result(REPORT).await? {
        None => Ok(None),
        Some((bytes, _)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Other(format!("{REPORT} is unreadable: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(count: u64, changed: bool) -> JoinOutcome {
        let version = VersionReport {
            model_version: "v1".into(),
            labelled_rows: count,
            rmse: 0.5,
            mae: 0.4,
            mean_label_delay_seconds: 60.0,
        };
        JoinOutcome {
            report: Report {
                versions: vec![version; count as usize],
                unmatched_labels: count,
            },
            labels: count,
            logged_rows: count,
            skipped_lines: count,
            labelled_rows: count,
            changed,
            removed_files: count,
        }
    }

    #[test]
    fn the_summary_counts_in_the_right_number() {
        assert_eq!(
            outcome(1, true).summary(),
            "1 label with 1 logged row: 1 labelled row for training, 1 model version, \
             1 unmatched label, 1 skipped line, 1 expired file removed"
        );
        assert_eq!(
            outcome(2, true).summary(),
            "2 labels with 2 logged rows: 2 labelled rows for training, 2 model versions, \
             2 unmatched labels, 2 skipped lines, 2 expired files removed"
        );
        assert_eq!(
            outcome(0, false).summary(),
            "0 labels with 0 logged rows: 0 labelled rows for training, 0 model versions, \
             0 unmatched labels, 0 skipped lines; nothing new"
        );
    }

    #[test]
    fn labelled_rows_round_trip() {
        let mut rows = BTreeMap::new();
        rows.insert(
            "019b0f4e-8a52-7c3d-9f1e-2b7a4c6d8e90.3".to_string(),
            LabelledRow {
                labelled_at_ms: 1_765_000_000_123,
                row: [
                    7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
                ],
                quality: 6.0,
            },
        );
        let bytes = write_labelled(&rows);
        assert_eq!(parse_labelled(&bytes).unwrap(), rows);
        assert!(parse_labelled(b"a,b\n1,2\n").is_err());
    }

    #[tokio::test]
    async fn a_late_label_relabels_the_row_kept_past_the_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let store = LoopStore::Local(dir.path().to_path_buf());
        let id = "019b0f4e-8a52-7c3d-9f1e-2b7a4c6d8e90.3".to_string();
        let now = 1_790_000_000_000u64;
        let mut kept = BTreeMap::new();
        kept.insert(
            id.clone(),
            LabelledRow {
                labelled_at_ms: now - 200 * 86_400_000,
                row: [
                    7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
                ],
                quality: 4.0,
            },
        );
        std::fs::create_dir_all(dir.path().join("joined")).unwrap();
        std::fs::write(dir.path().join(LABELLED_ROWS), write_labelled(&kept)).unwrap();
        let label = LabelLine {
            id: id.clone(),
            quality: 7.0,
            time: super::super::record::time_text(now - 3_600_000),
        };
        let labels_dir = dir
            .path()
            .join(format!("labels/{}", hour_partition(now - 3_600_000)));
        std::fs::create_dir_all(&labels_dir).unwrap();
        let mut line = serde_json::to_vec(&label).unwrap();
        line.push(b'\n');
        std::fs::write(labels_dir.join("w-1.jsonl"), line).unwrap();

        let outcome = join(&store, 30, now).await.unwrap();
        assert!(outcome.changed);
        assert_eq!(
            outcome.report.unmatched_labels, 1,
            "no log line within the horizon"
        );
        let rows = parse_labelled(&std::fs::read(dir.path().join(LABELLED_ROWS)).unwrap()).unwrap();
        assert_eq!(rows[&id].quality, 7.0);
        assert_eq!(rows[&id].labelled_at_ms, now - 3_600_000);
        // Idempotent: the same label again changes nothing.
        assert!(!join(&store, 30, now).await.unwrap().changed);
    }
}
