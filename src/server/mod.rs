//! `sommelier serve`: the custom handler's HTTP server. Binds 127.0.0.1 at once (the host
//! polls `GET /` every 25 ms), loads or trains the champion in the background, refreshes it
//! when the pointer moves, pushes metrics, and shuts down gracefully on SIGTERM/Ctrl-C.
//!
//! Shutdown is bounded: on the signal the metrics pusher deletes this instance's group at
//! once (the host may kill the process within seconds), new connections stop, requests in
//! flight get `SOMMELIER_SHUTDOWN_SECONDS`, and a training still running is abandoned: the
//! stores make a version visible only once complete, so nothing partial is left behind. The
//! process exits within `max(SOMMELIER_SHUTDOWN_SECONDS, 6 s)` plus about a second.

pub mod drain;
mod heavy_lane;
pub mod limits;
pub mod listen;
pub mod state;
pub mod training;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;
use crate::model::features::FEATURE_NAMES;
use crate::model::training::Trigger;
use crate::stores::{load_training_data_or_bundled, open_registry, OpenStoreError, TrainingSource};
use crate::telemetry::metrics::METRICS;
use crate::telemetry::push::Pusher;
use state::{AppState, SharedState};

/// Port when neither the host nor `--port` names one (what `func start` uses).
pub const DEFAULT_PORT: u16 = 7071;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] OpenStoreError),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings, port_flag: Option<u16>) -> Result<(), ServerError> {
    METRICS.record_start();
    let port = settings.handler_port.or(port_flag).unwrap_or(DEFAULT_PORT);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind { address, source })?;
    let registry = open_registry(&settings).await?;
    let state: SharedState = Arc::new(AppState::new(settings, registry));
    tracing::info!(%address, store = %state.registry.store_location(), "listening");
    tracing::info!(
        form = %format!("http://{address}/api/predict"),
        api = %format!("http://{address}/api/openapi.json"),
        "open the form or the API page in a browser"
    );
    let prediction_log = state.feedback.start_log(&state.settings);

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(load_or_train(state.clone()));
    let registry = state.registry.clone();
    tokio::spawn(async move { registry.sweep_leftovers().await });
    tokio::spawn(refresh_loop(state.clone(), stop_rx.clone()));
    let pusher = start_pusher(&state, stop_rx.clone());

    let app = crate::api::app(state.clone());
    let serving = state.settings.serving;
    let shutdown = async move {
        shutdown_signal().await;
        // Stops the refresh loop and starts the pusher's final delete while requests drain.
        let _ = stop_tx.send(true);
    };
    listen::serve(
        listener,
        app,
        serving.header_timeout,
        serving.shutdown_grace,
        shutdown,
    )
    .await;
    if let Some(log) = prediction_log {
        // What is queued is written before the process ends (bounded by a few seconds).
        log.shutdown().await;
    }
    if let Some(pusher) = pusher {
        // The final delete of this instance's group: one push and one delete at most, each
        // bounded by the pusher's timeout.
        let _ = tokio::time::timeout(Duration::from_secs(7), pusher).await;
    }
    if state.try_start_training().is_none() {
        tracing::warn!(
            "a training was still running at shutdown: abandoned, nothing of it is published"
        );
    }
    tracing::info!("stopped");
    Ok(())
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
    if let Err(error) = training::train_on(&state, Trigger::Startup, data, None, false).await {
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
            .run(trigger, move || metrics_snapshot(&snapshot_state), shutdown)
            .await;
    }))
}

/// The metrics text, with the drift gauges brought up to date.
pub fn metrics_snapshot(state: &AppState) -> String {
    if let Some(psi) = state.drift.psi() {
        for (name, value) in FEATURE_NAMES.iter().zip(psi) {
            METRICS.drift_psi.with_label_values(&[name]).set(value);
        }
    }
    crate::telemetry::metrics::encode_text()
}

/// Resolves on SIGTERM (what the host sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
