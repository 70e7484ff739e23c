//! What every request shares: settings, the registry, the serving model (swapped atomically),
//! the training lock and the drift monitor.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};

use crate::config::Settings;
use crate::model::artifact::ModelArtifact;
use crate::registry::{ETag, PointerRead, Registry, RegistryError};
use crate::retraining::Retrained;
use crate::telemetry::drift::DriftMonitor;
use crate::telemetry::metrics::METRICS;
use crate::telemetry::push::PushTrigger;
use crate::tracking::Tracker;

/// The model answering predictions, with the pointer tag it was loaded under.
pub struct ServingModel {
    pub artifact: Arc<ModelArtifact>,
    pub etag: Option<ETag>,
}

pub struct AppState {
    pub settings: Settings,
    pub registry: Registry,
    /// MLflow tracking (a no-op when off).
    pub tracker: Tracker,
    /// Swapped atomically: a request keeps the model it started with.
    serving: ArcSwapOption<ServingModel>,
    /// Held for the whole of a training: one at a time per instance.
    training: AsyncMutex<()>,
    pub drift: DriftMonitor,
    pub push: PushTrigger,
    /// Why the model store could not be reached at the last check, if it could not.
    store_problem: Mutex<Option<String>>,
    /// Why no model is loaded yet (startup), if none is.
    startup_problem: Mutex<Option<String>>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(settings: Settings, registry: Registry) -> AppState {
        AppState {
            tracker: Tracker::from_settings(&settings),
            settings,
            registry,
            serving: ArcSwapOption::empty(),
            training: AsyncMutex::new(()),
            drift: DriftMonitor::new(),
            push: PushTrigger::default(),
            store_problem: Mutex::new(None),
            startup_problem: Mutex::new(Some("the model is loading".to_string())),
        }
    }

    /// The current serving model, if one is loaded.
    pub fn model(&self) -> Option<Arc<ServingModel>> {
        self.serving.load_full()
    }

    /// Installs a model (after a load, a promotion or a refresh).
    pub fn install(&self, artifact: Arc<ModelArtifact>, etag: Option<ETag>, load_seconds: f64) {
        METRICS.record_model(&artifact.card, load_seconds);
        self.drift.reset(&artifact.card.feature_stats);
        tracing::info!(version = %artifact.card.version, "serving model");
        self.serving
            .store(Some(Arc::new(ServingModel { artifact, etag })));
        self.set_startup_problem(None);
    }

    /// Installs a training's model if it became champion.
    pub fn install_if_promoted(&self, retrained: &Retrained) {
        if let (true, Some(pointer)) = (retrained.report.promoted, &retrained.champion) {
            if pointer.champion.version == retrained.report.version {
                self.install(retrained.artifact.clone(), Some(pointer.etag.clone()), 0.0);
            }
        }
    }

    /// Takes the training lock, or `None` if a training is already running.
    pub fn try_start_training(&self) -> Option<MutexGuard<'_, ()>> {
        self.training.try_lock().ok()
    }

    /// Waits for the training lock (envelope invocations queue rather than fail).
    pub async fn start_training(&self) -> MutexGuard<'_, ()> {
        self.training.lock().await
    }

    pub fn store_problem(&self) -> Option<String> {
        self.store_problem.lock().ok().and_then(|g| g.clone())
    }

    pub fn set_store_problem(&self, problem: Option<String>) {
        if let Ok(mut guard) = self.store_problem.lock() {
            *guard = problem;
        }
    }

    pub fn startup_problem(&self) -> Option<String> {
        self.startup_problem.lock().ok().and_then(|g| g.clone())
    }

    pub fn set_startup_problem(&self, problem: Option<String>) {
        if let Ok(mut guard) = self.startup_problem.lock() {
            *guard = problem;
        }
    }

    /// Checks the champion pointer and swaps in a new champion if it moved. Costs one small
    /// conditional read when nothing changed. Store failures keep the current model.
    pub async fn refresh(&self) -> Result<(), RegistryError> {
        let current = self.model();
        let known = current.as_ref().and_then(|m| m.etag.clone());
        let read = self.registry.store_read_champion(known.as_ref()).await;
        let pointer = match read {
            Ok(PointerRead::Current(pointer)) => pointer,
            Ok(PointerRead::Unchanged) | Ok(PointerRead::Absent) => {
                self.set_store_problem(None);
                return Ok(());
            }
            Err(error) => {
                METRICS
                    .store_errors
                    .with_label_values(&["read_champion"])
                    .inc();
                self.set_store_problem(Some(error.to_string()));
                return Err(error.into());
            }
        };
        self.set_store_problem(None);
        if current
            .as_ref()
            .is_some_and(|m| m.artifact.card.version == pointer.champion.version)
        {
            // Same model, new tag (e.g. our own promotion): remember the tag only.
            if let Some(model) = current {
                self.serving.store(Some(Arc::new(ServingModel {
                    artifact: model.artifact.clone(),
                    etag: Some(pointer.etag),
                })));
            }
            return Ok(());
        }
        let started = Instant::now();
        match self.registry.load(&pointer.champion.version).await {
            Ok(artifact) => {
                self.install(
                    Arc::new(artifact),
                    Some(pointer.etag),
                    started.elapsed().as_secs_f64(),
                );
                Ok(())
            }
            Err(error) => {
                METRICS
                    .store_errors
                    .with_label_values(&["load_model"])
                    .inc();
                tracing::error!(%error, version = %pointer.champion.version, "new champion refused; keeping the current model");
                Err(error)
            }
        }
    }
}
