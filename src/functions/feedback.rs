//! `POST /join-feedback` (timer `%SOMMELIER_FEEDBACK_SCHEDULE%`, hourly by default): joins the
//! labels to the logged predictions (see [`crate::feedback::join`]). Answers 200 with what it
//! found, `already_running` when another join holds the claim, and 503 when the store cannot
//! be reached: the host logs the run as failed and does not retry a timer, the next tick joins
//! again (a join reads everything within its horizon, so nothing is missed).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

use super::envelope::EnvelopeResponse;
use crate::feedback::claimed_join::{run_join, JoinRun};
use crate::service::state::SharedState;

pub async fn join_feedback(
    State(state): State<SharedState>,
) -> (StatusCode, Json<EnvelopeResponse>) {
    let (status, line, value) = match run_join(&state.settings, &state.registry).await {
        Ok(JoinRun::Joined(outcome)) => (
            StatusCode::OK,
            format!("feedback joined {}", outcome.summary()),
            json!({"status": "joined", "outcome": *outcome}),
        ),
        Ok(JoinRun::AlreadyRunning(claim)) => (
            StatusCode::OK,
            format!(
                "another join is running on instance {} (since {}); nothing to do",
                claim.instance, claim.claimed_at
            ),
            json!({"status": "already_running", "instance": claim.instance, "claimed_at": claim.claimed_at}),
        ),
        Err(error) => {
            if let Some(store_error) = error.store_error() {
                state.note_store_error("join_feedback", store_error);
            }
            tracing::warn!(%error, "the feedback join failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the feedback join failed: {error}"),
                json!({"status": "failed", "reason": error.to_string()}),
            )
        }
    };
    tracing::info!("{line}");
    (status, Json(EnvelopeResponse::new(vec![line], value)))
}
