//! What every request shares: settings, the registry, the serving model (swapped atomically),
//! the training lock and how the last training ended, the drift monitor and the body budget.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};

use crate::config::Settings;
use crate::model::artifact::ModelArtifact;
use crate::model::features::FEATURE_NAMES;
use crate::registry::{ChampionPointer, ETag, PointerRead, Registry, RegistryError, StoreError};
use crate::retraining::Retrained;
use crate::telemetry::drift::DriftMonitor;

use super::body_budget::{BodyBudget, PREDICT_BODY_LIMIT};
use super::training::LastTraining;
use crate::telemetry::metrics::{DegradedReason, METRICS};
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
    /// The request-body budget of the prediction routes.
    pub budget: BodyBudget,
    pub push: PushTrigger,
    /// The prediction log and feedback (see [`crate::feedback`]).
    pub feedback: crate::feedback::service::Loop,
    /// Why the model store could not be used at the last check, if it could not.
    store_problem: Mutex<Option<StoreProblem>>,
    /// Why the serving model is not the champion, if it is not.
    champion_problem: Mutex<Option<String>>,
    /// Why no model is loaded yet (startup), if none is.
    startup_problem: Mutex<Option<String>>,
    /// Why the last training could not store its result, until one can.
    write_problem: Mutex<Option<String>>,
    /// How the last training on this instance ended, for `GET /api/train`.
    last_training: Mutex<Option<LastTraining>>,
}

pub type SharedState = Arc<AppState>;

/// A store failure as health reports it.
#[derive(Debug, Clone)]
struct StoreProblem {
    message: String,
    access_denied: bool,
}

impl AppState {
    pub fn new(settings: Settings, registry: Registry) -> AppState {
        if !settings.unresolved_references.is_empty() {
            tracing::error!(
                settings = ?settings.unresolved_references,
                "unresolved Key Vault references: these settings are treated as unset"
            );
        }
        let budget = BodyBudget::new(settings.serving, PREDICT_BODY_LIMIT);
        let state = AppState {
            tracker: Tracker::from_settings(&settings),
            feedback: crate::feedback::service::Loop::new(&settings),
            settings,
            registry,
            serving: ArcSwapOption::empty(),
            training: AsyncMutex::new(()),
            drift: DriftMonitor::new(),
            budget,
            push: PushTrigger::default(),
            store_problem: Mutex::new(None),
            champion_problem: Mutex::new(None),
            startup_problem: Mutex::new(Some("the model is loading".to_string())),
            write_problem: Mutex::new(None),
            last_training: Mutex::new(None),
        };
        // The degraded series from the start, an unresolved reference among them.
        state.record_degraded();
        state
    }

    /// The current serving model, if one is loaded.
    pub fn model(&self) -> Option<Arc<ServingModel>> {
        self.serving.load_full()
    }

    /// The current serving model, borrowed: cheaper than [`AppState::model`] (no shared
    /// reference count to update), for a request that uses it briefly and without awaiting.
    pub fn model_guard(&self) -> arc_swap::Guard<Option<Arc<ServingModel>>> {
        self.serving.load()
    }

    /// Installs the champion (after a load, a promotion or a refresh).
    pub fn install(&self, artifact: Arc<ModelArtifact>, etag: Option<ETag>, load_seconds: f64) {
        self.install_model(artifact, etag, load_seconds);
        self.set_champion_problem(None);
    }

    fn install_model(&self, artifact: Arc<ModelArtifact>, etag: Option<ETag>, load_seconds: f64) {
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

    /// How the last training on this instance ended (any trigger), if one has.
    pub fn last_training(&self) -> Option<LastTraining> {
        self.last_training.lock().ok().and_then(|last| last.clone())
    }

    pub(super) fn remember_training(&self, outcome: LastTraining) {
        if let Ok(mut last) = self.last_training.lock() {
            *last = Some(outcome);
        }
    }

    /// The metrics text, with the drift gauges brought up to date.
    pub fn metrics_text(&self) -> String {
        if let Some(psi) = self.drift.psi() {
            for (name, value) in FEATURE_NAMES.iter().zip(psi) {
                METRICS.drift_psi.with_label_values(&[name]).set(value);
            }
        }
        crate::telemetry::metrics::encode_text()
    }

    /// Takes the training lock, or `None` if a training is already running.
    pub fn try_start_training(&self) -> Option<MutexGuard<'_, ()>> {
        self.training.try_lock().ok()
    }

    /// Waits for the training lock (envelope invocations queue rather than fail).
    pub async fn start_training(&self) -> MutexGuard<'_, ()> {
        self.training.lock().await
    }

    /// Why the store could not be used at the last check, if it could not.
    pub fn store_problem(&self) -> Option<String> {
        self.store_problem
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|p| p.message.clone()))
    }

    /// Clears the store problem (the store answered).
    pub fn set_store_problem(&self, problem: Option<String>) {
        if let Ok(mut guard) = self.store_problem.lock() {
            *guard = problem.map(|message| StoreProblem {
                message,
                access_denied: false,
            });
        }
        self.record_degraded();
    }

    /// Records a failed store operation: counted, and shown by health. A refused credential
    /// is a configuration error: logged as an error and counted on its own.
    pub fn note_store_error(&self, operation: &str, error: &StoreError) {
        METRICS.store_errors.with_label_values(&[operation]).inc();
        let access_denied = error.is_configuration();
        if access_denied {
            METRICS.store_auth_failures.inc();
            tracing::error!(%error, operation, "the model store refused our credentials");
        }
        if let Ok(mut guard) = self.store_problem.lock() {
            *guard = Some(StoreProblem {
                message: error.to_string(),
                access_denied,
            });
        }
        self.record_degraded();
    }

    /// Why the serving model is not the champion, if it is not.
    pub fn champion_problem(&self) -> Option<String> {
        self.champion_problem.lock().ok().and_then(|g| g.clone())
    }

    fn set_champion_problem(&self, problem: Option<String>) {
        if let Ok(mut guard) = self.champion_problem.lock() {
            *guard = problem;
        }
        self.record_degraded();
    }

    /// Why the model store refuses writes, if the last training found it did. Kept until a
    /// training stores its result: a store that can be read may still refuse writes.
    pub fn write_problem(&self) -> Option<String> {
        self.write_problem.lock().ok().and_then(|g| g.clone())
    }

    pub fn set_write_problem(&self, problem: Option<String>) {
        if let Ok(mut guard) = self.write_problem.lock() {
            *guard = problem;
        }
        self.record_degraded();
    }

    /// Everything that makes this instance degraded, in words (`None` when nothing does).
    pub fn degraded(&self) -> Option<String> {
        let problems: Vec<String> = [
            self.champion_problem(),
            self.store_problem(),
            self.write_problem(),
            self.unresolved_references(),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Secret settings the platform left as Key Vault references (see
    /// [`Settings::unresolved_references`](crate::config::Settings)).
    fn unresolved_references(&self) -> Option<String> {
        let names = &self.settings.unresolved_references;
        (!names.is_empty()).then(|| {
            format!(
                "{} {} a Key Vault reference the platform has not resolved, and is treated as \
                 unset (the app's identity may not read the secret yet: once its role has \
                 taken effect, restart the app)",
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" }
            )
        })
    }

    fn record_degraded(&self) {
        let mut active = Vec::new();
        if self.champion_problem().is_some() {
            active.push(DegradedReason::ChampionUnservable);
        }
        if self.write_problem().is_some() {
            active.push(DegradedReason::StoreRefusesWrites);
        }
        if self.unresolved_references().is_some() {
            active.push(DegradedReason::UnresolvedSecret);
        }
        if let Some(problem) = self.store_problem.lock().ok().and_then(|g| g.clone()) {
            active.push(if problem.access_denied {
                DegradedReason::StoreAccessDenied
            } else {
                DegradedReason::StoreUnavailable
            });
        }
        METRICS.record_degraded(&active);
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
    /// conditional read when nothing changed. Store failures keep the current model. A
    /// champion that cannot serve is replaced by the best version that can (its `previous`
    /// first), and the instance reports itself degraded until the pointer moves again.
    pub async fn refresh(&self) -> Result<(), RegistryError> {
        let current = self.model();
        let known = current.as_ref().and_then(|m| m.etag.clone());
        let pointer = match self.registry.store_read_champion(known.as_ref()).await {
            Ok(PointerRead::Current(pointer)) => pointer,
            Ok(PointerRead::Unchanged) | Ok(PointerRead::Absent) => {
                self.set_store_problem(None);
                return Ok(());
            }
            Err(error) => {
                self.note_store_error("read_champion", &error);
                return Err(error.into());
            }
        };
        self.set_store_problem(None);
        if let Some(model) = current.as_ref() {
            if model.artifact.card.version == pointer.champion.version {
                // Same model, new tag (e.g. our own promotion): remember the tag only.
                self.keep_serving(model, pointer.etag);
                self.set_champion_problem(None);
                return Ok(());
            }
        }
        let started = Instant::now();
        let problem = match self.registry.load_servable(&pointer.champion.version).await {
            Ok(artifact) => {
                self.install(
                    Arc::new(artifact),
                    Some(pointer.etag),
                    started.elapsed().as_secs_f64(),
                );
                return Ok(());
            }
            Err(error) if error.is_access_problem() => {
                if let Some(store_error) = error.store_error() {
                    self.note_store_error("load_model", store_error);
                }
                return Err(error);
            }
            Err(error) => error,
        };
        METRICS
            .store_errors
            .with_label_values(&["load_model"])
            .inc();
        self.serve_fallback(current, pointer, problem).await
    }

    /// The champion cannot serve: keep serving its `previous` if that is what is loaded,
    /// else load the best version that can serve.
    async fn serve_fallback(
        &self,
        current: Option<Arc<ServingModel>>,
        pointer: ChampionPointer,
        problem: RegistryError,
    ) -> Result<(), RegistryError> {
        let champion = &pointer.champion.version;
        if let Some(model) = current.as_ref() {
            let version = &model.artifact.card.version;
            if pointer.champion.previous.as_ref() == Some(version) {
                let reason = format!(
                    "the champion `{champion}` cannot serve ({problem}); serving `{version}` instead"
                );
                tracing::error!(%reason, "champion refused");
                self.keep_serving(model, pointer.etag);
                self.set_champion_problem(Some(reason));
                return Ok(());
            }
        }
        let started = Instant::now();
        match self.registry.fallback(&pointer.champion, problem).await {
            Ok(servable) => {
                let reason = servable.fallback_reason.unwrap_or_default();
                tracing::error!(%reason, "champion refused");
                self.install_model(
                    Arc::new(servable.artifact),
                    Some(pointer.etag),
                    started.elapsed().as_secs_f64(),
                );
                self.set_champion_problem(Some(reason));
                Ok(())
            }
            Err(error) => {
                if let Some(store_error) = error.store_error() {
                    self.note_store_error("load_model", store_error);
                }
                tracing::error!(%error, %champion, "no stored version can serve; keeping the current model");
                if current.is_some() {
                    self.set_champion_problem(Some(format!(
                        "the champion `{champion}` cannot serve and no other stored version can: {error}"
                    )));
                }
                Err(error)
            }
        }
    }

    fn keep_serving(&self, model: &ServingModel, etag: ETag) {
        self.serving.store(Some(Arc::new(ServingModel {
            artifact: model.artifact.clone(),
            etag: Some(etag),
        })));
    }
}
