//! `sommelier feedback join | report [--json]`.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::json;

use super::CliError;
use crate::config::Settings;
use crate::feedback::claimed_join::{run_join, JoinRun};
use crate::feedback::join::{last_report, Report};
use crate::feedback::store::LoopStore;
use crate::registry::{open_registry, Registry, StoreError};
use crate::text::counted;

#[derive(Debug, Args)]
pub struct FeedbackArgs {
    #[command(subcommand)]
    pub action: FeedbackAction,
}

#[derive(Debug, Subcommand)]
pub enum FeedbackAction {
    /// Join the labels to the logged predictions (within SOMMELIER_FEEDBACK_HORIZON_DAYS),
    /// measure each model version's live error, and write the labelled rows for the next
    /// training. Safe to run twice, and while another join runs (one wins).
    Join,
    /// What the last join found, per model version.
    Report,
}

fn print(json_output: bool, value: &serde_json::Value, text: impl FnOnce() -> String) {
    let mut stdout = std::io::stdout().lock();
    let _ = if json_output {
        writeln!(stdout, "{value}")
    } else {
        writeln!(stdout, "{}", text())
    };
}

/// Why a label finds no logged prediction, said beside their count when there are some.
fn unmatched_causes(unmatched: u64) -> &'static str {
    if unmatched == 0 {
        ""
    } else {
        "; a label joins no prediction that is not logged yet (it joins on a later run), was \
         sampled out or is past the horizon, or when a batch row's label carries the batch's id \
         instead of `<id>.<row>`"
    }
}

/// The retention that made a join remove files, said when it removed some.
fn retention_text(removed: u64, retention_days: u32) -> String {
    if removed == 0 {
        String::new()
    } else {
        format!(" (the retention is {retention_days} days)")
    }
}

/// How labels reach a report, for a store that has none yet.
const HOW_LABELS_ARRIVE: &str = "labels arrive as the tasted quality of a served prediction, \
POST /api/feedback {\"prediction_id\": ..., \"quality\": ...}, and count once a join has run";

/// What `report` says on a store where no join has run.
const NO_JOIN_YET: &str = "no join has run on this store yet: `sommelier feedback join` joins the \
labels sent to POST /api/feedback with the logged predictions (under Azure the join-feedback \
function runs it on SOMMELIER_FEEDBACK_SCHEDULE, hourly by default)";

fn describe(report: &Report) -> String {
    if report.versions.is_empty() {
        return format!(
            "no labelled predictions yet ({} without a logged prediction{}); {HOW_LABELS_ARRIVE}",
            counted(report.unmatched_labels, "label"),
            unmatched_causes(report.unmatched_labels)
        );
    }
    let mut text = format!(
        "{:<32} {:>8} {:>8} {:>8} {:>12}\n",
        "model version", "rows", "rmse", "mae", "delay (s)"
    );
    for v in &report.versions {
        text.push_str(&format!(
            "{:<32} {:>8} {:>8.4} {:>8.4} {:>12.0}\n",
            v.model_version, v.labelled_rows, v.rmse, v.mae, v.mean_label_delay_seconds
        ));
    }
    text.push_str(&format!(
        "labels without a logged prediction: {}{}",
        report.unmatched_labels,
        unmatched_causes(report.unmatched_labels)
    ));
    text
}

/// Refuses a store without a model registry (a mistyped `--store`) before anything is
/// written there: the prediction log and the labels live beside a registry, and a join or a
/// report elsewhere would print another store's figures or none, and exit as if all was well.
async fn require_registry(registry: &Registry) -> Result<(), CliError> {
    let missing = || CliError::NoRegistry(registry.store_location());
    match registry.champion().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => match registry.versions().await {
            Ok(versions) if !versions.is_empty() => Ok(()),
            Ok(_) => Err(missing()),
            Err(error) if matches!(error.store_error(), Some(StoreError::NotFound(_))) => {
                Err(missing())
            }
            Err(error) => Err(error.into()),
        },
        Err(error) if matches!(error.store_error(), Some(StoreError::NotFound(_))) => {
            Err(missing())
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn run_command(
    settings: &Settings,
    args: FeedbackArgs,
    json_output: bool,
) -> Result<(), CliError> {
    let failed = |e: &dyn std::fmt::Display| CliError::Feedback(e.to_string());
    match args.action {
        FeedbackAction::Join => {
            let registry = open_registry(settings).await?;
            require_registry(&registry).await?;
            match run_join(settings, &registry).await? {
                JoinRun::Joined(outcome) => {
                    let value = serde_json::to_value(&*outcome).map_err(|e| failed(&e))?;
                    print(json_output, &value, || {
                        format!(
                            "joined {}{}\n{}",
                            outcome.summary(),
                            retention_text(outcome.removed_files, settings.feedback.retention_days),
                            describe(&outcome.report)
                        )
                    });
                }
                JoinRun::AlreadyRunning(claim) => {
                    let value = json!({"status": "already_running", "instance": claim.instance, "claimed_at": claim.claimed_at});
                    print(json_output, &value, || {
                        format!(
                            "another join is running on instance {} (since {}); nothing done",
                            claim.instance, claim.claimed_at
                        )
                    });
                }
            }
        }
        FeedbackAction::Report => {
            require_registry(&open_registry(settings).await?).await?;
            let store = LoopStore::open(settings).map_err(|e| failed(&e))?;
            let last = last_report(&store).await.map_err(|e| failed(&e))?;
            let none_yet = Report {
                versions: Vec::new(),
                unmatched_labels: 0,
            };
            let value =
                serde_json::to_value(last.as_ref().unwrap_or(&none_yet)).map_err(|e| failed(&e))?;
            print(json_output, &value, || {
                last.as_ref()
                    .map_or_else(|| NO_JOIN_YET.to_string(), describe)
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::join::VersionReport;

    #[test]
    fn unmatched_labels_come_with_their_possible_causes() {
        let version = VersionReport {
            model_version: "20261205T101500123Z-1a2b3c4".into(),
            labelled_rows: 412,
            rmse: 0.71,
            mae: 0.55,
            mean_label_delay_seconds: 86400.0,
        };
        for versions in [vec![], vec![version]] {
            let clean = describe(&Report {
                versions: versions.clone(),
                unmatched_labels: 0,
            });
            assert!(!clean.contains("<id>.<row>"), "{clean}");
            let unmatched = describe(&Report {
                versions,
                unmatched_labels: 3,
            });
            assert!(
                unmatched.contains("3") && unmatched.contains("`<id>.<row>`"),
                "{unmatched}"
            );
        }
    }

    #[test]
    fn an_empty_report_says_how_labels_arrive() {
        for (unmatched, start) in [
            (0, "no labelled predictions yet (0 labels without"),
            (1, "no labelled predictions yet (1 label without"),
        ] {
            let text = describe(&Report {
                versions: Vec::new(),
                unmatched_labels: unmatched,
            });
            assert!(text.starts_with(start), "{text}");
            assert!(text.contains("POST /api/feedback"), "{text}");
        }
    }
}
