//! The loop as a running instance holds it: the store beside the registry, the prediction
//! log's handle (set once the server starts its writer), and this instance's label writer.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName};
use tokio::sync::Mutex;

use super::labels::Label;
use super::log::{LogWriter, PredictionLog};
use super::record::{client_request_id, time_text, LabelLine};
use super::store::{Appender, LoopStore, Stream, MAX_APPEND_BYTES};
use crate::config::Settings;
use crate::registry::StoreError;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");
/// Longest a label write may take before the request is answered 503.
const LABEL_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A writer's name: the instance and a per-process suffix, so that no two processes (a
/// restart included) ever append to the same file.
pub fn writer_name(instance: &str) -> String {
    let instance: String = instance
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    let process = super::id::PredictionId::new().to_string();
    format!(
        "{}-{}",
        if instance.is_empty() {
            "instance"
        } else {
            &instance
        },
        &process[24..]
    )
}

/// The client's own request id of a request, if it sent one (recorded, never a key).
pub fn request_id_of(headers: &HeaderMap) -> Option<Box<str>> {
    headers
        .get(&REQUEST_ID)
        .or_else(|| headers.get(&CLIENT_REQUEST_ID))
        .and_then(|v| client_request_id(v.as_bytes()))
}

/// The loop's part of the application state.
pub struct Loop {
    store: Option<LoopStore>,
    writer: String,
    log: OnceLock<PredictionLog>,
    labels: Option<Mutex<Appender>>,
}

impl Loop {
    pub fn new(settings: &Settings) -> Loop {
        super::metrics::LOG_METRICS.start();
        let writer = writer_name(&settings.instance_id);
        let store = match LoopStore::open(settings) {
            Ok(store) => Some(store),
            Err(error) => {
                tracing::error!(%error, "the prediction log and feedback are off: their store cannot be opened");
                None
            }
        };
        let labels = store
            .as_ref()
            .map(|s| Mutex::new(s.appender(Stream::Labels, &writer)));
        Loop {
            store,
            writer,
            log: OnceLock::new(),
            labels,
        }
    }

    /// Starts the prediction log's writer (once).
    pub fn start_log(&self, settings: &Settings) -> Option<LogWriter> {
        let store = self.store.clone()?;
        let feedback = &settings.feedback;
        let (log, writer) = super::log::start(
            store,
            &self.writer,
            feedback.sample,
            feedback.flush,
            feedback.queue_rows,
        );
        self.log.set(log).ok()?;
        writer
    }

    /// The prediction log, once started.
    pub fn log(&self) -> Option<&PredictionLog> {
        self.log.get()
    }

    pub fn store(&self) -> Option<&LoopStore> {
        self.store.as_ref()
    }

    /// Appends labels to this instance's label stream; an error means none may be assumed
    /// stored (the client should retry: a label sent twice is harmless, the latest wins).
    pub async fn record_labels(&self, labels: &[Label]) -> Result<(), StoreError> {
        let Some(appender) = &self.labels else {
            return Err(StoreError::Unavailable(
                "the feedback store cannot be opened".into(),
            ));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let time = time_text(now);
        let mut appender = appender.lock().await;
        let mut batches = vec![Vec::new()];
        for label in labels {
            let line = LabelLine {
                id: label.id.clone(),
                quality: label.quality,
                time: time.clone(),
            };
            let mut bytes =
                serde_json::to_vec(&line).map_err(|e| StoreError::Other(e.to_string()))?;
            bytes.push(b'\n');
            if batches
                .last()
                .is_some_and(|b: &Vec<u8>| b.len() + bytes.len() > MAX_APPEND_BYTES)
            {
                batches.push(Vec::new());
            }
            if let Some(batch) = batches.last_mut() {
                batch.extend_from_slice(&bytes);
            }
        }
        for batch in batches.into_iter().filter(|b| !b.is_empty()) {
            tokio::time::timeout(LABEL_WRITE_TIMEOUT, appender.append(batch.into(), now))
                .await
                .map_err(|_| {
                    StoreError::Unavailable("the feedback store does not answer".into())
                })??;
        }
        Ok(())
    }
}
