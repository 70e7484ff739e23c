//! Opens the configured model store, and reads training data from where the settings say.

use std::path::PathBuf;

use thiserror::Error;

use crate::bundled;
use crate::config::{Settings, StoreLocation};
use crate::model::artifact::DataSource;
use crate::registry::{LocalStore, Registry, Store, StoreError};

#[derive(Debug, Error)]
pub enum OpenStoreError {
    #[error("cannot open the model store: {0}")]
    Invalid(String),
}

/// The registry over the store named by the settings.
pub async fn open_registry(settings: &Settings) -> Result<Registry, OpenStoreError> {
    let store = match &settings.store {
        StoreLocation::Directory(path) => Store::Local(LocalStore::new(path.clone())),
        StoreLocation::BlobContainer(url) => {
            return Err(OpenStoreError::Invalid(format!(
                "blob container {url}: Blob Storage support is not built yet"
            )))
        }
    };
    Ok(Registry::new(store))
}

/// Where `/api/train` and the timer read their data.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainingSource {
    Bundled,
    File(PathBuf),
    /// A blob container URL: the newest blob in it.
    BlobContainer(String),
}

impl TrainingSource {
    pub fn from_settings(settings: &Settings) -> TrainingSource {
        match settings.training_data.as_deref() {
            None => TrainingSource::Bundled,
            Some(text) if text.starts_with("https://") || text.starts_with("http://") => {
                TrainingSource::BlobContainer(text.trim_end_matches('/').to_string())
            }
            Some(path) => TrainingSource::File(PathBuf::from(path)),
        }
    }
}

/// Training data bytes and where they came from.
pub struct TrainingData {
    pub bytes: Vec<u8>,
    pub source: DataSource,
}

/// Reads the configured training data.
pub async fn load_training_data(
    settings: &Settings,
    source: &TrainingSource,
) -> Result<TrainingData, StoreError> {
    let _ = settings;
    match source {
        TrainingSource::Bundled => Ok(TrainingData {
            bytes: bundled::WINE_QUALITY_RED_CSV.to_vec(),
            source: DataSource {
                name: bundled::SOURCE_NAME.to_string(),
                etag: None,
            },
        }),
        TrainingSource::File(path) => {
            let bytes = tokio::fs::read(path).await.map_err(|e| {
                StoreError::Other(format!("cannot read training data {}: {e}", path.display()))
            })?;
            Ok(TrainingData {
                bytes,
                source: DataSource {
                    name: path.display().to_string(),
                    etag: None,
                },
            })
        }
        TrainingSource::BlobContainer(url) => Err(StoreError::Other(format!(
            "training data in blob container {url}: Blob Storage support is not built yet"
        ))),
    }
}

/// Leaves a report next to a rejected upload so the uploader can see why; a no-op unless the
/// upload came from Blob Storage.
pub async fn report_rejected_upload(
    settings: &Settings,
    blob_name: &str,
    report: &serde_json::Value,
) -> Result<(), StoreError> {
    let _ = (settings, blob_name, report);
    Ok(())
}
