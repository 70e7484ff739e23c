//! One join as the CLI and the timer run it: one at a time across instances (a claim in the
//! registry, like an upload's), then the figures pushed under the join's own group.

use std::time::{SystemTime, UNIX_EPOCH};

use super::join::{join, JoinOutcome};
use super::store::LoopStore;
use crate::config::Settings;
use crate::registry::claims::{Claim, ClaimOutcome, CLAIM_EXPIRY};
use crate::registry::{Registry, RegistryError};

/// The claim that lets one join run at a time.
pub const JOIN_CLAIM: &str = "feedback-join";

/// How a join request ended.
#[derive(Debug)]
pub enum JoinRun {
    Joined(Box<JoinOutcome>),
    /// Another join holds the claim.
    AlreadyRunning(Claim),
}

/// Claims the join, runs it, gives the claim back, and pushes its figures.
pub async fn run_join(settings: &Settings, registry: &Registry) -> Result<JoinRun, RegistryError> {
    let store = LoopStore::open(settings)?;
    let held = match registry
        .claim(JOIN_CLAIM, &settings.instance_id, CLAIM_EXPIRY)
        .await?
    {
        ClaimOutcome::Acquired(held) => held,
        ClaimOutcome::Held(claim) => return Ok(JoinRun::AlreadyRunning(claim)),
    };
    let now = now_millis();
    let outcome = join(&store, settings.feedback.horizon_days, now).await;
    registry.release_claim_eventually(held).await;
    let outcome = outcome?;
    tracing::info!(
        labels = outcome.labels,
        logged_rows = outcome.logged_rows,
        skipped_lines = outcome.skipped_lines,
        labelled_rows = outcome.labelled_rows,
        changed = outcome.changed,
        "feedback joined"
    );
    if let Some(push) = &settings.push {
        let mut holdout = Vec::new();
        for version in &outcome.report.versions {
            if let Ok(card) = registry.card(&version.model_version).await {
                if let Some(metrics) = card.metrics {
                    holdout.push((version.model_version.clone(), metrics.rmse));
                }
            }
        }
        let text = super::metrics::report_text(&outcome.report, &holdout, now as f64 / 1000.0);
        super::metrics::push(push, text).await;
    }
    Ok(JoinRun::Joined(Box::new(outcome)))
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
