//! The model store in a local directory (default `.sommelier/`).
//!
//! A version is written into a hidden temporary directory and renamed into place, so readers
//! never see half a version. The champion pointer is replaced by write-and-rename under an
//! exclusive file lock, which makes the compare-and-swap safe across processes.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{
    check_version_name, Champion, ChampionPointer, ETag, ModelStore, PointerRead, StoreError,
};
use crate::model::dataset::sha256_hex;

const MODEL_FILE: &str = "model.bin";
const CARD_FILE: &str = "card.json";
const POINTER_FILE: &str = "champion";
const LOCK_FILE: &str = ".champion.lock";

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn version_dir(&self, version: &str) -> Result<PathBuf, StoreError> {
        check_version_name(version)?;
        Ok(self.root.join(version))
    }
}

fn io_error(context: &str, error: std::io::Error) -> StoreError {
    match error.kind() {
        ErrorKind::NotFound => StoreError::NotFound(context.to_string()),
        _ => StoreError::Other(format!("{context}: {error}")),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
}

fn read_pointer(root: &Path) -> Result<Option<ChampionPointer>, StoreError> {
    let path = root.join(POINTER_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(POINTER_FILE, e)),
    };
    let champion: Champion = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Other(format!("champion pointer is unreadable: {e}")))?;
    Ok(Some(ChampionPointer {
        champion,
        etag: ETag(sha256_hex(&bytes)[..16].to_string()),
    }))
}

impl ModelStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn put_version(
        &self,
        version: &str,
        model: Vec<u8>,
        card_json: Vec<u8>,
    ) -> Result<(), StoreError> {
        let target = self.version_dir(version)?;
        let root = self.root.clone();
        let version = version.to_string();
        blocking(move || {
            fs::create_dir_all(&root).map_err(|e| io_error("store directory", e))?;
            if target.exists() {
                return Err(StoreError::AlreadyExists(version));
            }
            let staging = root.join(format!(".partial-{version}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&staging);
            fs::create_dir_all(&staging).map_err(|e| io_error("staging directory", e))?;
            fs::write(staging.join(MODEL_FILE), &model).map_err(|e| io_error(MODEL_FILE, e))?;
            fs::write(staging.join(CARD_FILE), &card_json).map_err(|e| io_error(CARD_FILE, e))?;
            fs::rename(&staging, &target).map_err(|e| {
                let _ = fs::remove_dir_all(&staging);
                io_error(&version, e)
            })
        })
        .await
    }

    async fn get_model(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.version_dir(version)?.join(MODEL_FILE);
        let key = format!("{version}/{MODEL_FILE}");
        blocking(move || fs::read(path).map_err(|e| io_error(&key, e))).await
    }

    async fn get_card(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.version_dir(version)?.join(CARD_FILE);
        let key = format!("{version}/{CARD_FILE}");
        blocking(move || fs::read(path).map_err(|e| io_error(&key, e))).await
    }

    async fn list_versions(&self) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        blocking(move || {
            let entries = match fs::read_dir(&root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error("store directory", e)),
            };
            let mut versions: Vec<String> = entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join(CARD_FILE).is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| check_version_name(name).is_ok())
                .collect();
            versions.sort();
            Ok(versions)
        })
        .await
    }

    async fn delete_version(&self, version: &str) -> Result<(), StoreError> {
        let dir = self.version_dir(version)?;
        let version = version.to_string();
        blocking(move || fs::remove_dir_all(dir).map_err(|e| io_error(&version, e))).await
    }

    async fn read_champion(&self, known: Option<&ETag>) -> Result<PointerRead, StoreError> {
        let root = self.root.clone();
        let known = known.cloned();
        blocking(move || {
            Ok(match read_pointer(&root)? {
                None => PointerRead::Absent,
                Some(p) if Some(&p.etag) == known.as_ref() => PointerRead::Unchanged,
                Some(p) => PointerRead::Current(p),
            })
        })
        .await
    }

    async fn write_champion(
        &self,
        champion: &Champion,
        expected: Option<&ETag>,
    ) -> Result<ETag, StoreError> {
        let root = self.root.clone();
        let champion = champion.clone();
        let expected = expected.cloned();
        let card = self.version_dir(&champion.version)?.join(CARD_FILE);
        blocking(move || {
            fs::create_dir_all(&root).map_err(|e| io_error("store directory", e))?;
            let lock =
                fs::File::create(root.join(LOCK_FILE)).map_err(|e| io_error(LOCK_FILE, e))?;
            lock.lock().map_err(|e| io_error(LOCK_FILE, e))?;
            let current = read_pointer(&root)?.map(|p| p.etag);
            if current != expected {
                return Err(StoreError::Conflict);
            }
            if !card.is_file() {
                return Err(StoreError::NotFound(champion.version.clone()));
            }
            let bytes = serde_json::to_vec_pretty(&champion)
                .map_err(|e| StoreError::Other(e.to_string()))?;
            let staging = root.join(format!(".{POINTER_FILE}.{}", std::process::id()));
            fs::write(&staging, &bytes).map_err(|e| io_error(POINTER_FILE, e))?;
            fs::rename(&staging, root.join(POINTER_FILE)).map_err(|e| io_error(POINTER_FILE, e))?;
            Ok(ETag(sha256_hex(&bytes)[..16].to_string()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn champion(version: &str) -> Champion {
        Champion {
            version: version.to_string(),
            previous: None,
            updated_at: super::super::now_rfc3339(),
        }
    }

    #[tokio::test]
    async fn versions_are_listed_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        assert!(store.list_versions().await.unwrap().is_empty());
        store
            .put_version("v2", b"m".to_vec(), b"{}".to_vec())
            .await
            .unwrap();
        store
            .put_version("v1", b"m".to_vec(), b"{}".to_vec())
            .await
            .unwrap();
        fs::create_dir_all(dir.path().join(".partial-v3-1")).unwrap();
        assert_eq!(store.list_versions().await.unwrap(), vec!["v1", "v2"]);
        assert!(matches!(
            store.put_version("v1", vec![], vec![]).await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(store.get_model("v1").await.unwrap(), b"m");
        assert!(matches!(
            store.get_model("v9").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.get_model("../etc").await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn champion_pointer_is_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store
            .put_version("v1", vec![], b"{}".to_vec())
            .await
            .unwrap();
        store
            .put_version("v2", vec![], b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(
            store.read_champion(None).await.unwrap(),
            PointerRead::Absent
        );

        let first = store.write_champion(&champion("v1"), None).await.unwrap();
        assert!(matches!(
            store.write_champion(&champion("v2"), None).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            store.read_champion(Some(&first)).await.unwrap(),
            PointerRead::Unchanged
        );
        let second = store
            .write_champion(&champion("v2"), Some(&first))
            .await
            .unwrap();
        assert!(matches!(
            store.write_champion(&champion("v1"), Some(&first)).await,
            Err(StoreError::Conflict)
        ));
        match store.read_champion(Some(&first)).await.unwrap() {
            PointerRead::Current(p) => {
                assert_eq!(p.champion.version, "v2");
                assert_eq!(p.etag, second);
            }
            other => panic!("expected the new pointer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn pointer_never_names_a_missing_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        assert!(matches!(
            store.write_champion(&champion("ghost"), None).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
