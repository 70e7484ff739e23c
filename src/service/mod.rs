//! The running instance: what every route and trigger shares ([`state::AppState`]), the
//! instance's training use case, the body budget and the heavy lane, and the instance's
//! background work (loading or training the first champion, refreshing it when the pointer
//! moves, pushing metrics, writing the prediction log).
//!
//! `api` and `functions` translate requests into calls on this layer; `server` only listens.

pub mod body_budget;
pub mod heavy_lane;
pub mod state;
pub mod training;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::Settings;
use crate::feedback::log::LogWriter;
use crate::model::training::Trigger;
use crate::registry::{open_registry, OpenStoreError};
use crate::sources::{load_training_data_or_bundled, TrainingSource};
use crate::telemetry::push::Pusher;
use state::{AppState, SharedState};

/// A started instance: its shared state and the background tasks that keep it current.
pub struct Instance {
    state: SharedState,
    stop: watch::Sender<bool>,
    pusher: Option<tokio::task::JoinHandle<()>>,
    prediction_log: Option<LogWriter>,
}

impl Instance {
    /// Opens the model store and starts the background work: the champion is loaded (or a
    /// first one trained) in its own task, so the caller can listen at once.
    pub async fn start(settings: Settings) -> Result<Instance, OpenStoreError> {
        let registry = open_registry(&settings).await?;
        let state: SharedState = Arc::new(AppState::new(settings, registry));
        let prediction_log = state.feedback.start_log(&state.settings);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(load_or_train(state.clone()));
        let registry = state.registry.clone();
        tokio::spawn(async move { registry.sweep_leftovers().await });
        tokio::spawn(refresh_loop(state.clone(), stop_rx.clone()));
        let pusher = start_pusher(&state, stop_rx);
        Ok(Instance {
            state,
            stop,
            pusher,
            prediction_log,
        })
    }

    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// Stops the refresh loop and starts the pusher's final delete (the host may kill the
    /// process within seconds of its signal), while requests still drain.
    pub fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// After the last request: writes what the prediction log holds, waits for the pusher's
    /// final delete (bounded), and abandons a training still running (the stores make a
    /// version visible only once complete, so nothing partial is left behind).
    pub async fn finish(self) {
        self.begin_shutdown();
        if let Some(log) = self.prediction_log {
            log.shutdown().await;
        }
        if let Some(pusher) = self.pusher {
            // One push and one delete at most, each bounded by the pusher's timeout.
            let _ = tokio::time::timeout(Duration::from_secs(7), pusher).await;
        }
        if self.state.try_start_training().is_none() {
            tracing::warn!(
                "a training was still running at shutdown: abandoned, nothing of it is published"
            );
        }
    }
}

/// Loads the champion; with an empty store, trains one on the configured (or bundled) data.
/// Runs in its own task (never in a request's future), so the training lock it takes is held
/// until the first training ends; only shutdown abandons it.
async fn load_or_train(state: SharedState) {
    let started = Instant::now();
    match state.refresh().await {
        Ok(()) if state.model().is_some() => {
            tracing::info!(seconds = started.elapsed().as_secs_f64(), "champion loaded");
            return;
        }
        Ok(()) => {}
        // Every stored version is broken: train a new one rather than stay down.
        Err(error @ crate::registry::RegistryError::NothingServable(_)) => {
            tracing::error!(%error, "no stored version can serve: training a new one");
        }
        Err(error) => {
            state.set_startup_problem(Some(format!("the champion could not be loaded: {error}")));
            return;
        }
    }
    let _guard = state.start_training().await;
    if state.model().is_some() {
        return; // a training that ran meanwhile installed a model
    }
    state.set_startup_problem(Some("no model yet: training the first one".to_string()));
    tracing::info!("the model store is empty: training a first model");
    let source = TrainingSource::from_settings(&state.settings);
    let data = match load_training_data_or_bundled(&state.settings, &source).await {
        Ok(data) => data,
        Err(error) => {
            state.set_startup_problem(Some(format!("no training data for a first model: {error}")));
            return;
        }
    };
    if let Err(error) = training::train_on(
        &state,
        Trigger::Startup,
        data,
        training::LabelledRows::Latest,
        None,
        false,
    )
    .await
    {
        state.set_startup_problem(Some(format!("the first training failed: {error}")));
    } else if state.model().is_none() {
        // Another instance promoted first: serve its champion.
        let _ = state.refresh().await;
    }
}

/// Checks the champion pointer every `SOMMELIER_MODEL_REFRESH_SECONDS`.
async fn refresh_loop(state: SharedState, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(state.settings.model_refresh);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = state.refresh().await {
            tracing::warn!(%error, "champion refresh failed; serving the model in memory");
        }
    }
}

fn start_pusher(
    state: &SharedState,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let settings = state.settings.push.clone()?;
    let pusher = match Pusher::new(settings, &state.settings.instance_id) {
        Ok(pusher) => pusher,
        Err(error) => {
            tracing::error!(%error, "metrics push disabled: cannot build the HTTP client");
            return None;
        }
    };
    let snapshot_state = state.clone();
    let trigger = state.push.clone();
    Some(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        pusher
            .run(trigger, move || snapshot_state.metrics_text(), shutdown)
            .await;
    }))
}
