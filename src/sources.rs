//! Training data: read from where the settings say (a file, a blob, a container's newest
//! blob, or the bundled rows), and the reports left next to rejected uploads.

use std::path::PathBuf;

use crate::bundled;
use crate::config::Settings;
use crate::model::artifact::DataSource;
use crate::registry::blob::{BlobUrl, Container, WriteCondition};
use crate::registry::StoreError;

/// Where `/api/train` and the timer read their data.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainingSource {
    Bundled,
    File(PathBuf),
    /// A blob container URL: the newest blob in it (reports and deployment checks excepted); or a blob URL
    /// (container URL plus blob name): that blob.
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
        TrainingSource::BlobContainer(url) => load_blob_training_data(settings, url).await,
    }
}

/// Reads the configured training data, or the bundled data when the configured place has no
/// usable file (an empty container, a missing blob or file, an empty file). A fresh deployment
/// starts with an empty upload container: without this fallback its first start (and every
/// scheduled retraining) would have nothing to train on and the service would never become
/// healthy. The fallback is logged and the card's source names the place that was empty.
/// Transient failures (storage unreachable, throttled) are returned, never masked.
pub async fn load_training_data_or_bundled(
    settings: &Settings,
    source: &TrainingSource,
) -> Result<TrainingData, StoreError> {
    let missing = match source {
        TrainingSource::Bundled => return load_training_data(settings, source).await,
        TrainingSource::File(path) => match tokio::fs::metadata(path).await {
            Ok(meta) if meta.is_file() && meta.len() > 0 => {
                return load_training_data(settings, source).await
            }
            Ok(_) => format!("no data in {}", path.display()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                format!("no file {}", path.display())
            }
            Err(_) => return load_training_data(settings, source).await,
        },
        TrainingSource::BlobContainer(_) => match load_training_data(settings, source).await {
            Ok(data) if !data.bytes.is_empty() => return Ok(data),
            Ok(data) => format!("empty blob {}", data.source.name),
            Err(StoreError::NotFound(what)) => format!("no {what}"),
            Err(error) => return Err(error),
        },
    };
    tracing::warn!(
        %missing,
        "SOMMELIER_TRAINING_DATA has no usable file: training on the bundled data"
    );
    Ok(bundled_fallback(&missing))
}

/// The bundled data, its source naming why it was used instead of the configured data.
fn bundled_fallback(missing: &str) -> TrainingData {
    TrainingData {
        bytes: bundled::WINE_QUALITY_RED_CSV.to_vec(),
        source: DataSource {
            name: format!("{} (fallback: {missing})", bundled::SOURCE_NAME),
            etag: None,
        },
    }
}

/// Suffix of the report left next to a rejected upload.
pub const REJECTION_SUFFIX: &str = ".rejected.json";

/// Suffix of the report left next to a deployment check.
pub const CHECK_SUFFIX: &str = ".checked.json";

/// Folder of the training-data container for deployment checks (exactly this name, in lower
/// case): an upload there is parsed and fitted once with the default recipe, and nothing is
/// stored, promoted or recorded, nor does any guard of a real upload run; the result is
/// left beside it (`<name>.checked.json`). A check never becomes training data, so checking
/// a deployment cannot change what the production model trains on or which model serves.
pub const CHECK_FOLDER: &str = "checks/";

/// Whether a blob in the training-data container is a report the service wrote (on a
/// rejected upload or a check), not training data. The upload trigger fires for reports too:
/// they must be ignored, never trained on or reported on again.
pub fn is_upload_report(blob_name: &str) -> bool {
    let name = blob_name.to_ascii_lowercase();
    name.ends_with(REJECTION_SUFFIX) || name.ends_with(CHECK_SUFFIX)
}

/// Whether an upload is a deployment check (see [`CHECK_FOLDER`]).
pub fn is_check_upload(blob_name: &str) -> bool {
    blob_name.starts_with(CHECK_FOLDER)
}

fn open_container(settings: &Settings, url: &BlobUrl) -> Result<Container, StoreError> {
    Container::open(url, settings).map_err(|e| StoreError::Other(e.to_string()))
}

async fn load_blob_training_data(
    settings: &Settings,
    url: &str,
) -> Result<TrainingData, StoreError> {
    let url = BlobUrl::parse(url).map_err(|e| StoreError::Other(e.to_string()))?;
    let container = open_container(settings, &url)?;
    let name = match &url.blob {
        Some(name) => name.clone(),
        None => container
            .list()
            .await?
            .into_iter()
            .filter(|entry| !is_upload_report(&entry.name) && !is_check_upload(&entry.name))
            .max_by(|a, b| (a.last_modified, &a.name).cmp(&(b.last_modified, &b.name)))
            .map(|entry| entry.name)
            .ok_or_else(|| {
                StoreError::NotFound(format!("training data in {}", container.location()))
            })?,
    };
    let blob = container.read(&name).await?;
    Ok(TrainingData {
        bytes: blob.bytes,
        source: DataSource {
            name,
            etag: blob.etag,
        },
    })
}

/// A report the service leaves beside an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadReport {
    /// Why the upload was not trained on (`<name>.rejected.json`).
    Rejected,
    /// What a deployment check found (`<name>.checked.json`).
    Checked,
}

impl UploadReport {
    fn suffix(self) -> &'static str {
        match self {
            UploadReport::Rejected => REJECTION_SUFFIX,
            UploadReport::Checked => CHECK_SUFFIX,
        }
    }
}

/// Leaves a report next to an upload (`<name>.rejected.json` or `<name>.checked.json` in the
/// container of `SOMMELIER_TRAINING_DATA`) so the uploader can see what came of it. A no-op
/// unless the training data is in Blob Storage, and for a name that is itself a report (which
/// would loop: the report is an upload too).
pub async fn report_on_upload(
    settings: &Settings,
    blob_name: &str,
    kind: UploadReport,
    report: &serde_json::Value,
) -> Result<(), StoreError> {
    let Some(TrainingSource::BlobContainer(url)) = settings
        .training_data
        .as_ref()
        .map(|_| TrainingSource::from_settings(settings))
    else {
        return Ok(());
    };
    if blob_name.trim().is_empty() || is_upload_report(blob_name) {
        return Ok(());
    }
    let url = BlobUrl::parse(&url).map_err(|e| StoreError::Other(e.to_string()))?;
    let container = open_container(settings, &url)?;
    let bytes = serde_json::to_vec_pretty(report).map_err(|e| StoreError::Other(e.to_string()))?;
    container
        .write(
            &format!("{blob_name}{}", kind.suffix()),
            bytes,
            WriteCondition::Overwrite,
            "application/json",
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &std::path::Path) -> Settings {
        Settings::from_env(Some(&dir.join("store").display().to_string())).expect("settings")
    }

    #[tokio::test]
    async fn a_missing_or_empty_training_file_falls_back_to_the_bundled_data() {
        let dir = tempfile::tempdir().expect("tmp");
        let settings = settings(dir.path());
        let missing = TrainingSource::File(dir.path().join("absent.csv"));
        let data = load_training_data_or_bundled(&settings, &missing)
            .await
            .expect("the bundled data");
        assert_eq!(data.bytes, bundled::WINE_QUALITY_RED_CSV);
        assert!(data.source.name.starts_with(bundled::SOURCE_NAME));
        assert!(
            data.source.name.contains("fallback: no file")
                && data.source.name.contains("absent.csv"),
            "{}",
            data.source.name
        );

        let empty = dir.path().join("empty.csv");
        std::fs::write(&empty, b"").expect("write");
        let data = load_training_data_or_bundled(&settings, &TrainingSource::File(empty))
            .await
            .expect("the bundled data");
        assert!(
            data.source.name.contains("fallback: no data in"),
            "{}",
            data.source.name
        );
    }

    #[tokio::test]
    async fn a_usable_training_file_is_read_as_it_is() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("wines.csv");
        std::fs::write(&path, b"a,quality\n1,5\n").expect("write");
        let data = load_training_data_or_bundled(
            &settings(dir.path()),
            &TrainingSource::File(path.clone()),
        )
        .await
        .expect("the file");
        assert_eq!(data.bytes, b"a,quality\n1,5\n");
        assert_eq!(data.source.name, path.display().to_string());
    }
}
