//! The model store in a local directory (default `.sommelier/`).
//!
//! A version is written into a hidden staging directory and renamed into place, so readers
//! never see half a version. The champion pointer is replaced by write-and-rename under an
//! exclusive file lock, which makes the compare-and-swap safe across processes.
//!
//! Durability: every file is fsynced before it is renamed, and the directory after, so a
//! power loss leaves either the old or the new state. An empty or unreadable pointer (a
//! filesystem that lost it anyway, or a hand edit) is repaired from the newest complete
//! version, with an error line in the log.
//!
//! Claims live in `.claims/<key>.json` (a name no version can have). Every change to them
//! happens under an exclusive file lock: creation uses `create_new` and is fsynced with the
//! directory, a replacement or deletion first compares the claim's content tag, so the
//! create-only and compare-and-swap rules hold across processes on one machine.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::faults;
use super::{
    check_version_name, Champion, ChampionPointer, ETag, ModelStore, PointerRead, StoreError,
};
use crate::model::dataset::sha256_hex;

const MODEL_FILE: &str = "model.bin";
const CARD_FILE: &str = "card.json";
const POINTER_FILE: &str = crate::registry::store::POINTER_NAME;
const LOCK_FILE: &str = ".champion.lock";
/// Prefix of a version's staging directory (`.partial-<version>-<pid>`).
const STAGING_PREFIX: &str = ".partial-";
/// Prefix of the pointer's staging file (`.champion.<pid>`).
const POINTER_STAGING_PREFIX: &str = ".champion.";
/// Directory of the claims (`.claims/<key>.json`); its name is no valid version id.
const CLAIMS_DIR: &str = ".claims";
/// Serialises claim changes across processes (like the pointer's lock).
const CLAIMS_LOCK: &str = ".lock";
const CLAIM_SUFFIX: &str = ".json";

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

    /// Creates the store's directory if needed, then writes, syncs and removes the file
    /// `probe` in it: what saving a version does first.
    pub async fn check_writable(&self, probe: &str) -> Result<(), StoreError> {
        let root = self.root.clone();
        let path = root.join(format!(".{probe}"));
        blocking(move || {
            fs::create_dir_all(&root).map_err(|e| io_error("store directory", e))?;
            let written = write_synced(&path, b"probe").map_err(|e| io_error("a test file", e));
            let _ = fs::remove_file(&path);
            written
        })
        .await
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

/// Writes a file and forces it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Forces a directory's entries (creations, renames, deletions) to disk.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

fn etag_of(bytes: &[u8]) -> ETag {
    ETag(sha256_hex(bytes)[..16].to_string())
}

/// The pointer file as found on disk.
enum RawPointer {
    Absent,
    Valid(ChampionPointer),
    /// Empty or unreadable; the tag of whatever bytes are there.
    Damaged {
        etag: ETag,
        problem: String,
    },
}

fn read_raw_pointer(root: &Path) -> Result<RawPointer, StoreError> {
    let bytes = match fs::read(root.join(POINTER_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(RawPointer::Absent),
        Err(e) => return Err(io_error(POINTER_FILE, e)),
    };
    let etag = etag_of(&bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RawPointer::Damaged {
            etag,
            problem: "the file is empty".to_string(),
        });
    }
    Ok(match serde_json::from_slice::<Champion>(&bytes) {
        Ok(champion) if check_version_name(&champion.version).is_ok() => {
            RawPointer::Valid(ChampionPointer { champion, etag })
        }
        Ok(champion) => RawPointer::Damaged {
            etag,
            problem: format!("it names an invalid version `{}`", champion.version),
        },
        Err(e) => RawPointer::Damaged {
            etag,
            problem: format!("it is not a pointer: {e}"),
        },
    })
}

fn lock_pointer(root: &Path) -> Result<fs::File, StoreError> {
    fs::create_dir_all(root).map_err(|e| io_error("store directory", e))?;
    let lock = fs::File::create(root.join(LOCK_FILE)).map_err(|e| io_error(LOCK_FILE, e))?;
    lock.lock().map_err(|e| io_error(LOCK_FILE, e))?;
    Ok(lock)
}

/// Replaces the pointer file durably; the caller holds the lock.
fn replace_pointer(root: &Path, champion: &Champion) -> Result<ETag, StoreError> {
    let bytes =
        serde_json::to_vec_pretty(champion).map_err(|e| StoreError::Other(e.to_string()))?;
    let staging = root.join(format!("{POINTER_STAGING_PREFIX}{}", std::process::id()));
    write_synced(&staging, &bytes).map_err(|e| io_error(POINTER_FILE, e))?;
    faults::reached(faults::POINTER_WRITE);
    fs::rename(&staging, root.join(POINTER_FILE)).map_err(|e| io_error(POINTER_FILE, e))?;
    sync_dir(root).map_err(|e| io_error("store directory", e))?;
    Ok(etag_of(&bytes))
}

/// Complete versions (card and model present), oldest first.
fn complete_versions(root: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("store directory", e)),
    };
    let mut versions: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join(CARD_FILE).is_file() && e.path().join(MODEL_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| check_version_name(name).is_ok())
        .collect();
    versions.sort();
    Ok(versions)
}

/// Reads the pointer, repairing a damaged one (under the lock) from the newest complete
/// version.
fn read_pointer(root: &Path) -> Result<Option<ChampionPointer>, StoreError> {
    match read_raw_pointer(root)? {
        RawPointer::Absent => return Ok(None),
        RawPointer::Valid(pointer) => return Ok(Some(pointer)),
        RawPointer::Damaged { .. } => {}
    }
    let _lock = lock_pointer(root)?;
    let problem = match read_raw_pointer(root)? {
        RawPointer::Absent => return Ok(None),
        RawPointer::Valid(pointer) => return Ok(Some(pointer)),
        RawPointer::Damaged { problem, .. } => problem,
    };
    let Some(newest) = complete_versions(root)?.pop() else {
        tracing::error!(%problem, store = %root.display(), "the champion pointer is damaged and no complete version exists; removing it");
        fs::remove_file(root.join(POINTER_FILE)).map_err(|e| io_error(POINTER_FILE, e))?;
        sync_dir(root).map_err(|e| io_error("store directory", e))?;
        return Ok(None);
    };
    let champion = Champion {
        version: newest.clone(),
        previous: None,
        updated_at: super::now_rfc3339(),
    };
    let etag = replace_pointer(root, &champion)?;
    tracing::error!(%problem, version = %newest, store = %root.display(), "the champion pointer was damaged; repaired it to the newest complete version");
    Ok(Some(ChampionPointer { champion, etag }))
}

/// Age of a file or directory by its modification time (zero if unknown or in the future).
fn age_of(path: &Path) -> Duration {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .unwrap_or_default()
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// The claims directory and the path of claim `key` in it.
fn claim_path(root: &Path, key: &str) -> Result<(PathBuf, PathBuf), StoreError> {
    check_version_name(key)?;
    let dir = root.join(CLAIMS_DIR);
    let path = dir.join(format!("{key}{CLAIM_SUFFIX}"));
    Ok((dir, path))
}

/// Takes the claims' exclusive lock (released when the file is dropped, or by the kernel if
/// the process dies).
fn lock_claims(dir: &Path) -> Result<fs::File, StoreError> {
    fs::create_dir_all(dir).map_err(|e| io_error(CLAIMS_DIR, e))?;
    let lock = fs::File::create(dir.join(CLAIMS_LOCK)).map_err(|e| io_error(CLAIMS_LOCK, e))?;
    lock.lock().map_err(|e| io_error(CLAIMS_LOCK, e))?;
    Ok(lock)
}

/// The claim's current bytes and tag; the caller holds the claims' lock.
fn read_claim_file(path: &Path) -> Result<Option<(Vec<u8>, ETag)>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => {
            let etag = etag_of(&bytes);
            Ok(Some((bytes, etag)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(CLAIMS_DIR, e)),
    }
}

/// Creates a claim file that must not exist yet (`create_new`), fsynced with its directory.
fn create_claim_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<ETag, StoreError> {
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(StoreError::Conflict),
        Err(e) => return Err(io_error(CLAIMS_DIR, e)),
    };
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(CLAIMS_DIR, e))?;
    sync_dir(dir).map_err(|e| io_error(CLAIMS_DIR, e))?;
    Ok(etag_of(bytes))
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
            let staging = root.join(format!("{STAGING_PREFIX}{version}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&staging);
            let staged = stage_version(&staging, &model, &card_json)
                .and_then(|()| fs::rename(&staging, &target).map_err(|e| io_error(&version, e)));
            if let Err(error) = staged {
                // A failed write (a full disk, say) leaves nothing behind for a sweep to find.
                let _ = fs::remove_dir_all(&staging);
                return Err(error);
            }
            sync_dir(&root).map_err(|e| io_error("store directory", e))
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
        let root = self.root.clone();
        let version = version.to_string();
        blocking(move || {
            fs::remove_dir_all(dir).map_err(|e| io_error(&version, e))?;
            sync_dir(&root).map_err(|e| io_error("store directory", e))
        })
        .await
    }

    async fn delete_card(&self, version: &str) -> Result<(), StoreError> {
        let dir = self.version_dir(version)?;
        let key = format!("{version}/{CARD_FILE}");
        blocking(move || {
            fs::remove_file(dir.join(CARD_FILE)).map_err(|e| io_error(&key, e))?;
            sync_dir(&dir).map_err(|e| io_error(&key, e))
        })
        .await
    }

    async fn restore_card(&self, version: &str, card_json: Vec<u8>) -> Result<(), StoreError> {
        let dir = self.version_dir(version)?;
        let version = version.to_string();
        blocking(move || {
            let card = dir.join(CARD_FILE);
            if card.exists() {
                return Err(StoreError::AlreadyExists(version));
            }
            let staging = dir.join(format!(".{CARD_FILE}.{}", std::process::id()));
            write_synced(&staging, &card_json).map_err(|e| io_error(&version, e))?;
            fs::rename(&staging, &card).map_err(|e| io_error(&version, e))?;
            sync_dir(&dir).map_err(|e| io_error(&version, e))
        })
        .await
    }

    async fn sweep_incomplete(&self, older_than: Duration) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        blocking(move || {
            let entries = match fs::read_dir(&root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error("store directory", e)),
            };
            let mut swept = Vec::new();
            for entry in entries.filter_map(Result::ok) {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let path = entry.path();
                let leftover = name.starts_with(STAGING_PREFIX)
                    || (name.starts_with(POINTER_STAGING_PREFIX) && name != LOCK_FILE)
                    || (check_version_name(&name).is_ok()
                        && path.is_dir()
                        && !path.join(CARD_FILE).is_file());
                if !leftover || age_of(&path) < older_than {
                    continue;
                }
                match remove_any(&path) {
                    Ok(()) => swept.push(name),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&name, e)),
                }
            }
            if !swept.is_empty() {
                sync_dir(&root).map_err(|e| io_error("store directory", e))?;
            }
            swept.sort();
            Ok(swept)
        })
        .await
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
            let _lock = lock_pointer(&root)?;
            let current = match read_raw_pointer(&root)? {
                RawPointer::Absent => None,
                RawPointer::Valid(p) => Some(p.etag),
                RawPointer::Damaged { etag, .. } => Some(etag),
            };
            if current != expected {
                return Err(StoreError::Conflict);
            }
            if !card.is_file() {
                return Err(StoreError::NotFound(champion.version.clone()));
            }
            replace_pointer(&root, &champion)
        })
        .await
    }

    async fn model_lengths(&self) -> Result<HashMap<String, u64>, StoreError> {
        let root = self.root.clone();
        blocking(move || {
            let entries = match fs::read_dir(&root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(HashMap::new()),
                Err(e) => return Err(io_error("store directory", e)),
            };
            Ok(entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    check_version_name(&name).ok()?;
                    let length = fs::metadata(e.path().join(MODEL_FILE)).ok()?.len();
                    Some((name, length))
                })
                .collect())
        })
        .await
    }

    async fn create_claim(&self, key: &str, bytes: Vec<u8>) -> Result<ETag, StoreError> {
        let (dir, path) = claim_path(&self.root, key)?;
        blocking(move || {
            let _lock = lock_claims(&dir)?;
            create_claim_file(&dir, &path, &bytes)
        })
        .await
    }

    async fn read_claim(&self, key: &str) -> Result<Option<(Vec<u8>, ETag)>, StoreError> {
        let (dir, path) = claim_path(&self.root, key)?;
        blocking(move || {
            if !dir.is_dir() {
                return Ok(None);
            }
            let _lock = lock_claims(&dir)?;
            read_claim_file(&path)
        })
        .await
    }

    async fn replace_claim(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: &ETag,
    ) -> Result<ETag, StoreError> {
        let (dir, path) = claim_path(&self.root, key)?;
        let expected = expected.clone();
        blocking(move || {
            let _lock = lock_claims(&dir)?;
            match read_claim_file(&path)? {
                Some((_, current)) if current == expected => {}
                _ => return Err(StoreError::Conflict),
            }
            let staging = dir.join(format!(".staging.{}", std::process::id()));
            write_synced(&staging, &bytes).map_err(|e| io_error(CLAIMS_DIR, e))?;
            fs::rename(&staging, &path).map_err(|e| io_error(CLAIMS_DIR, e))?;
            sync_dir(&dir).map_err(|e| io_error(CLAIMS_DIR, e))?;
            Ok(etag_of(&bytes))
        })
        .await
    }

    async fn delete_claim(&self, key: &str, expected: &ETag) -> Result<bool, StoreError> {
        let (dir, path) = claim_path(&self.root, key)?;
        let expected = expected.clone();
        blocking(move || {
            if !dir.is_dir() {
                return Ok(false);
            }
            let _lock = lock_claims(&dir)?;
            match read_claim_file(&path)? {
                Some((_, current)) if current == expected => {}
                _ => return Ok(false),
            }
            fs::remove_file(&path).map_err(|e| io_error(CLAIMS_DIR, e))?;
            sync_dir(&dir).map_err(|e| io_error(CLAIMS_DIR, e))?;
            Ok(true)
        })
        .await
    }

    async fn list_claims(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join(CLAIMS_DIR);
        blocking(move || {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error(CLAIMS_DIR, e)),
            };
            let mut keys: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|name| name.strip_suffix(CLAIM_SUFFIX).map(str::to_string))
                .filter(|key| check_version_name(key).is_ok())
                .collect();
            keys.sort();
            Ok(keys)
        })
        .await
    }
}

/// Writes a version's files into its staging directory, synced.
fn stage_version(staging: &Path, model: &[u8], card_json: &[u8]) -> Result<(), StoreError> {
    fs::create_dir_all(staging).map_err(|e| io_error("staging directory", e))?;
    write_synced(&staging.join(MODEL_FILE), model).map_err(|e| io_error(MODEL_FILE, e))?;
    faults::reached(faults::AFTER_MODEL);
    write_synced(&staging.join(CARD_FILE), card_json).map_err(|e| io_error(CARD_FILE, e))?;
    sync_dir(staging).map_err(|e| io_error("staging directory", e))?;
    faults::reached(faults::AFTER_CARD);
    Ok(())
}

/// What every store must do is checked by the store contract suite
/// (`tests/integration/store_contract.rs`); these are the local store's own behaviours.
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
    async fn a_damaged_pointer_is_repaired_from_the_newest_complete_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        for v in ["v1", "v2"] {
            store
                .put_version(v, b"m".to_vec(), b"{}".to_vec())
                .await
                .unwrap();
        }
        // A version without its model is not complete.
        fs::create_dir_all(dir.path().join("v3")).unwrap();
        fs::write(dir.path().join("v3").join(CARD_FILE), b"{}").unwrap();
        store.write_champion(&champion("v1"), None).await.unwrap();
        for damage in [
            &b""[..],
            b"\n",
            b"{\"vers",
            b"{\"version\":\"../x\",\"updated_at\":\"\"}",
        ] {
            fs::write(dir.path().join(POINTER_FILE), damage).unwrap();
            match store.read_champion(None).await.unwrap() {
                PointerRead::Current(p) => assert_eq!(p.champion.version, "v2"),
                other => panic!("expected a repaired pointer, got {other:?}"),
            }
            let on_disk: Champion =
                serde_json::from_slice(&fs::read(dir.path().join(POINTER_FILE)).unwrap()).unwrap();
            assert_eq!(on_disk.version, "v2");
        }
    }

    #[tokio::test]
    async fn leftovers_are_swept_once_old_enough_and_cards_restore() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store
            .put_version("v1", b"m".to_vec(), b"{\"a\":1}".to_vec())
            .await
            .unwrap();
        fs::create_dir_all(dir.path().join(".partial-v2-7")).unwrap();
        fs::write(dir.path().join(".champion.7"), b"{}").unwrap();
        store.delete_card("v1").await.unwrap();
        assert!(store.list_versions().await.unwrap().is_empty());
        assert!(store
            .sweep_incomplete(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty());
        store
            .restore_card("v1", b"{\"a\":1}".to_vec())
            .await
            .unwrap();
        assert_eq!(store.list_versions().await.unwrap(), vec!["v1"]);
        assert!(matches!(
            store.restore_card("v1", b"{}".to_vec()).await,
            Err(StoreError::AlreadyExists(_))
        ));
        store.delete_card("v1").await.unwrap();
        let swept = store.sweep_incomplete(Duration::ZERO).await.unwrap();
        assert_eq!(swept, vec![".champion.7", ".partial-v2-7", "v1"]);
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| n != LOCK_FILE)
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
