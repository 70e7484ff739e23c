//! The non-HTTP functions, spoken in the Functions host's JSON envelope (see
//! functions-host-protocol §2–3): `POST /retrain-on-schedule` (timer) and
//! `POST /retrain-on-upload` (blob trigger). Every answer is 2xx with a JSON object, except a
//! transient failure (store unreachable), which answers 503: the host retries an upload, and
//! logs a timer's run as failed (the next tick runs it again).
//!
//! Both run their training in a task that owns the training lock, so an invocation the host
//! cancels never releases the lock while a fit is still running. An upload is trained at
//! most once across instances: the instance that claims its data in the store trains it, any
//! other delivery of the same data answers `already_training` (or `duplicate` once the
//! version is stored). An upload under `checks/` is a deployment check: read and fitted like
//! any other, nothing stored, the result written beside it (see [`crate::sources::CHECK_FOLDER`]).

pub mod envelope;
pub mod feedback;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::model::artifact::DataSource;
use crate::model::dataset::sha256_hex;
use crate::model::training::Trigger;
use crate::registry::claims::{ClaimOutcome, CLAIM_EXPIRY};
use crate::registry::RegistryError;
use crate::retraining::{Outcome, RetrainError};
use crate::service::state::SharedState;
use crate::service::training::{check_upload, run_exclusive, train_on, LabelledRows};
use crate::sources::{
    is_check_upload, is_upload_report, load_training_data_or_bundled, report_on_upload,
    TrainingData, TrainingSource, UploadReport,
};
use envelope::{EnvelopeResponse, Invocation};

type Answer = (StatusCode, Json<EnvelopeResponse>);

fn answer(status: StatusCode, logs: Vec<String>, value: Value) -> Answer {
    for line in &logs {
        tracing::info!("{line}");
    }
    (status, Json(EnvelopeResponse::new(logs, value)))
}

/// Timer: retrains on the configured data unless the champion was trained on it with the
/// same recipe (the rule every trigger follows, [`crate::retraining::identical_champion`]).
pub async fn retrain_on_schedule(
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let invocation = body.ok().and_then(|b| Invocation::parse(&b).ok());
    let past_due = invocation
        .as_ref()
        .is_some_and(Invocation::timer_is_past_due);
    exclusive(&state, move |state| async move {
        scheduled(&state, past_due).await
    })
    .await
}

/// Runs an envelope's training in a task that owns the training lock (see
/// [`run_exclusive`]): a cancelled invocation stops waiting, never the training.
async fn exclusive<F, Fut>(state: &SharedState, work: F) -> Answer
where
    F: FnOnce(SharedState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    run_exclusive(state, work).await.unwrap_or_else(task_failed)
}

/// The timer's work, under the training lock.
async fn scheduled(state: &SharedState, past_due: bool) -> Answer {
    let source = TrainingSource::from_settings(&state.settings);
    let data = match load_training_data_or_bundled(&state.settings, &source).await {
        Ok(data) => data,
        Err(error) if error.is_configuration() => {
            return store_failed(state, "training_data", error.into())
        }
        Err(error) if error.is_transient() => {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                vec![format!("training data unavailable: {error}")],
                json!({"status": "failed", "reason": error.to_string()}),
            );
        }
        Err(error) => {
            return answer(
                StatusCode::OK,
                vec![format!("no training data: {error}")],
                json!({"status": "failed", "reason": error.to_string()}),
            );
        }
    };
    let mut logs = vec![format!(
        "scheduled retraining on {} (past due: {past_due})",
        data.source.name
    )];
    outcome(
        state,
        Trigger::Schedule,
        data,
        LabelledRows::Latest,
        &mut logs,
        None,
    )
    .await
}

/// Blob trigger: validates the uploaded CSV, trains, and promotes per the rules. A bad upload
/// is rejected for good (200 with the reasons, and a report next to the blob).
pub async fn retrain_on_upload(
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let invocation = match body {
        Ok(bytes) => Invocation::parse(&bytes),
        Err(rejection) => Err(format!("cannot read the invocation: {rejection}")),
    };
    let invocation = match invocation {
        Ok(invocation) => invocation,
        Err(reason) => {
            return answer(
                StatusCode::OK,
                vec![format!("invocation refused: {reason}")],
                json!({"status": "rejected", "reason": reason}),
            )
        }
    };
    // Without the blob's name nothing can be reported beside it, and a training could not
    // say what it trained on: the invocation is refused, and nothing is written.
    let Some(blob) = invocation
        .blob_name()
        .filter(|name| !name.trim().is_empty())
    else {
        let reason =
            "the invocation names no blob (Metadata.name, or Metadata.Uri in training-data)";
        return answer(
            StatusCode::OK,
            vec![format!("invocation refused: {reason}")],
            json!({"status": "rejected", "reason": reason}),
        );
    };
    if is_upload_report(&blob) {
        return answer(
            StatusCode::OK,
            vec![format!("{blob} is a report on an upload; ignored")],
            json!({"status": "ignored", "blob": blob}),
        );
    }
    let content = invocation.blob_content("csv");
    if is_check_upload(&blob) {
        return exclusive(&state, move |state| async move {
            checked(&state, blob, content).await
        })
        .await;
    }
    let bytes = match content {
        Ok(bytes) => bytes,
        Err(reason) => return reject(&state, &blob, reason).await,
    };
    let etag = invocation.blob_etag();
    exclusive(&state, move |state| async move {
        claimed_upload(&state, blob, bytes, etag).await
    })
    .await
}

/// A deployment check's work, under the training lock: the upload read and fitted, nothing
/// stored, and the result left beside the blob for whoever checks the deployment. Every
/// outcome answers 200: a check is not retried.
async fn checked(state: &SharedState, blob: String, content: Result<Vec<u8>, String>) -> Answer {
    let checked = match content {
        Ok(bytes) => check_upload(TrainingData {
            bytes,
            source: DataSource {
                name: blob.clone(),
                etag: None,
            },
        })
        .await
        .map_err(|error| {
            let status = if error.is_input_error() {
                "rejected"
            } else {
                "failed"
            };
            (status, error.to_string())
        }),
        Err(reason) => Err(("rejected", reason)),
    };
    let (value, line) = match checked {
        Ok(checked) => (
            json!({"status": "checked", "blob": blob, "rows": checked.rows,
                   "metrics": checked.metrics}),
            format!(
                "check {blob}: {} read and fitted; nothing stored",
                crate::text::counted(checked.rows as u64, "row")
            ),
        ),
        Err((status, reason)) => {
            let reason = bounded(reason);
            let line = format!("check {blob}: {status}: {reason}");
            (
                json!({"status": status, "blob": blob, "reason": reason}),
                line,
            )
        }
    };
    let mut logs = vec![line];
    let mut report = value.clone();
    report["checked_at"] = json!(crate::registry::now_rfc3339());
    if let Err(error) =
        report_on_upload(&state.settings, &blob, UploadReport::Checked, &report).await
    {
        logs.push(format!("could not write the check's report: {error}"));
    }
    answer(StatusCode::OK, logs, value)
}

/// The upload's work, under the training lock: claims the data in the store (so that of
/// several instances receiving the same blob only one trains, see
/// [`crate::registry::claims`]), skips data a stored version was already trained on,
/// trains, and gives the claim back.
async fn claimed_upload(
    state: &SharedState,
    blob: String,
    bytes: Vec<u8>,
    etag: Option<String>,
) -> Answer {
    let sha = sha256_hex(&bytes);
    let instance = &state.settings.instance_id;
    let held = match state.registry.claim(&sha, instance, CLAIM_EXPIRY).await {
        Ok(ClaimOutcome::Acquired(held)) => held,
        Ok(ClaimOutcome::Held(claim)) => {
            let message = format!(
                "{blob} is already being trained by instance {} (since {}); nothing to do",
                claim.instance, claim.claimed_at
            );
            return answer(
                StatusCode::OK,
                vec![message.clone()],
                json!({"status": "already_training", "blob": blob, "instance": claim.instance,
                       "claimed_at": claim.claimed_at, "reason": message}),
            );
        }
        Err(error) => return store_failed(state, "claim", error),
    };
    if let Some(previous) = &held.took_over {
        tracing::warn!(%blob, instance = %previous.instance, claimed_at = %previous.claimed_at,
            "took over the training claim of a holder that is gone");
    }
    // The claim is given back however the training ends, a panic included: a claim left
    // behind would answer the host's retries "already being trained" while nothing is.
    let work = std::panic::AssertUnwindSafe(upload(state, &blob, bytes, etag, &sha));
    let answer = futures::FutureExt::catch_unwind(work).await;
    state.registry.release_claim_eventually(held).await;
    answer.unwrap_or_else(|_| task_failed())
}

/// The answer when a training task panicked: a failure the host should not retry (the same
/// data would fail the same way), with the claim released so that a later delivery may try.
fn task_failed() -> Answer {
    answer(
        StatusCode::OK,
        vec!["the training task failed".to_string()],
        json!({"status": "failed", "reason": "the training task failed"}),
    )
}

/// Trains on an upload unless a stored version was trained on the same data (a redelivery);
/// the caller holds the lock and the claim.
async fn upload(
    state: &SharedState,
    blob: &str,
    bytes: Vec<u8>,
    etag: Option<String>,
    sha: &str,
) -> Answer {
    let feedback = crate::feedback::labelled_rows::load(&state.settings).await;
    let trained_sha = crate::feedback::labelled_rows::combined_sha(sha, feedback.as_ref());
    match version_trained_on(state, &trained_sha).await {
        Ok(Some(version)) => {
            let message = format!("{blob} was already trained as version {version}; nothing to do");
            return answer(
                StatusCode::OK,
                vec![message],
                json!({"status": "duplicate", "version": version, "blob": blob}),
            );
        }
        Ok(None) => {}
        Err(error) => return store_failed(state, "list_versions", error),
    }
    let data = TrainingData {
        bytes,
        source: DataSource {
            name: blob.to_string(),
            etag,
        },
    };
    let mut logs = vec![format!(
        "retraining on upload {blob} ({} bytes)",
        data.bytes.len()
    )];
    let labelled = LabelledRows::Read(feedback);
    outcome(
        state,
        Trigger::Upload,
        data,
        labelled,
        &mut logs,
        Some(blob),
    )
    .await
}

/// Trains and turns the result into the envelope answer.
async fn outcome(
    state: &SharedState,
    trigger: Trigger,
    data: TrainingData,
    labelled: LabelledRows,
    logs: &mut Vec<String>,
    blob: Option<&str>,
) -> Answer {
    match train_on(state, trigger, data, labelled, None, false).await {
        Ok(Outcome::Unchanged(unchanged)) => {
            let message = format!("nothing to train: {}", unchanged.reason);
            answer(
                StatusCode::OK,
                vec![message],
                json!({"status": "unchanged", "champion": unchanged.champion, "reason": unchanged.reason}),
            )
        }
        Ok(Outcome::Trained(retrained)) => {
            let report = &retrained.report;
            logs.push(format!(
                "trained {}: rmse {}, {} ({})",
                report.version,
                report
                    .metrics
                    .map_or("n/a".to_string(), |m| format!("{:.4}", m.rmse)),
                if report.promoted {
                    "promoted"
                } else {
                    "kept the champion"
                },
                report.reason
            ));
            let value = json!({
                "status": if report.promoted { "promoted" } else { "kept_champion" },
                "message": "Model training successful!",
                "report": report,
            });
            answer(StatusCode::OK, std::mem::take(logs), value)
        }
        Err(error) if error.is_input_error() => match blob {
            Some(blob) => reject(state, blob, error.to_string()).await,
            None => answer(
                StatusCode::OK,
                vec![format!("training data rejected: {error}")],
                json!({"status": "rejected", "reason": error.to_string()}),
            ),
        },
        Err(error) => failed(state, error, std::mem::take(logs)),
    }
}

/// The store failed before training. Whatever the store's failure (unreachable, refusing our
/// credentials, refusing writes), the host should retry later: 503, with the problem counted
/// and shown by health. Anything else is the data's or the artifacts' doing: 200 `failed`.
fn store_failed(state: &SharedState, operation: &str, error: RegistryError) -> Answer {
    let status = match error.store_error() {
        Some(store_error) => {
            state.note_store_error(operation, store_error);
            StatusCode::SERVICE_UNAVAILABLE
        }
        None => StatusCode::OK,
    };
    answer(
        status,
        vec![format!("model store failed: {error}")],
        json!({"status": "failed", "reason": error.to_string()}),
    )
}

/// A training that failed: 503 when the store failed (an upload is retried later), else 200
/// `failed` (a retry of the same data would fail the same way). Never 500: the host treats
/// every failure alike, and this API promises 2xx or 503.
fn failed(state: &SharedState, error: RetrainError, mut logs: Vec<String>) -> Answer {
    logs.push(format!("training failed: {error}"));
    let store_error = match &error {
        RetrainError::Registry(registry_error) => registry_error.store_error(),
        _ => None,
    };
    let status = match store_error {
        Some(store_error) => {
            if !store_error.is_transient() {
                state.note_store_error("training", store_error);
            }
            StatusCode::SERVICE_UNAVAILABLE
        }
        None if error.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::OK,
    };
    tracing::error!(%error, transient = error.is_transient(), "training failed");
    answer(
        status,
        logs,
        json!({"status": "failed", "reason": error.to_string()}),
    )
}

/// Rejects an upload for good: a report next to it, a log line, the champion untouched.
async fn reject(state: &SharedState, blob: &str, reason: String) -> Answer {
    let reason = bounded(reason);
    let report = json!({"blob": blob, "status": "rejected", "reasons": [reason.clone()], "rejected_at": crate::registry::now_rfc3339()});
    let mut logs = vec![format!("upload {blob} rejected: {reason}")];
    if let Err(error) =
        report_on_upload(&state.settings, blob, UploadReport::Rejected, &report).await
    {
        logs.push(format!("could not write the rejection report: {error}"));
    }
    tracing::warn!(%blob, %reason, "upload rejected");
    answer(
        StatusCode::OK,
        logs,
        json!({"status": "rejected", "blob": blob, "reason": reason}),
    )
}

/// Bytes of a rejection reason kept, at most: the reason is answered, logged and stored, and
/// whatever of the input it quotes must not make any of those large.
const REASON_BYTES: usize = 1000;

/// `reason`, cut to [`REASON_BYTES`] if longer.
fn bounded(reason: String) -> String {
    if reason.len() <= REASON_BYTES {
        return reason;
    }
    let note = format!("… (cut; {} bytes in all)", reason.len());
    let mut end = REASON_BYTES - note.len();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &reason[..end])
}

/// The newest stored version trained on data with this SHA-256 (a redelivered blob).
async fn version_trained_on(
    state: &SharedState,
    sha: &str,
) -> Result<Option<String>, RegistryError> {
    let cards = state.registry.cards().await?;
    Ok(cards
        .into_iter()
        .rev()
        .find(|c| c.data_sha256 == sha)
        .map(|c| c.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_to_its_bound_with_the_note() {
        let reason = "é".repeat(2_000);
        let cut = bounded(reason.clone());
        assert!(cut.len() <= REASON_BYTES, "{} bytes", cut.len());
        assert!(cut.ends_with("… (cut; 4000 bytes in all)"), "{cut}");
        assert_eq!(bounded("short".to_string()), "short");
    }
}
