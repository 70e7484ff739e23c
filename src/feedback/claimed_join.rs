//! One join as the CLI and the timer run it: one at a time across instances (a claim in the
//! registry, like an upload's), then the figures pushed under the join's own group.

use std::time::{SystemTime, UNIX_EPOCH};

use super::join::{join, JoinOutcome};
use super::record::hour_partition;
use super::store::{LoopStore, Stream};
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
    let mut outcome = join(&store, settings.feedback.horizon_days, now).await;
    if let Ok(joined) = &mut outcome {
        joined.removed_files = remove_expired(&store, settings.feedback.retention_days, now).await;
    }
    registry.release_claim_eventually(held).await;
    let outcome = outcome?;
    tracing::info!(
        labels = outcome.labels,
        logged_rows = outcome.logged_rows,
        skipped_lines = outcome.skipped_lines,
        labelled_rows = outcome.labelled_rows,
        changed = outcome.changed,
        removed_files = outcome.removed_files,
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

/// Files one join removes at most per stream: the first join after a long time, or after the
/// retention was shortened, would otherwise hold the claim (and a timer's invocation) for as
/// long as thousands of deletions take; the rest go on the next runs.
const MAX_REMOVED_PER_JOIN: usize = 2_000;

/// Removes the log's and the labels' files older than `retention_days` (0: none), after a
/// join and under its claim; the number removed. The join never reads them again (the
/// retention is at least the horizon, and earlier joins' labelled rows are kept apart), so a
/// failure here is only logged: it costs storage, never a result.
async fn remove_expired(store: &LoopStore, retention_days: u32, now_ms: u64) -> u64 {
    if retention_days == 0 {
        return 0;
    }
    let before = hour_partition(now_ms.saturating_sub(u64::from(retention_days) * 86_400_000));
    let mut removed = 0;
    for stream in [Stream::Log, Stream::Labels] {
        match store
            .remove_before(stream, &before, MAX_REMOVED_PER_JOIN)
            .await
        {
            Ok(count) => removed += count,
            Err(error) => {
                tracing::warn!(%error, "expired prediction log files could not be removed");
            }
        }
    }
    removed
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
