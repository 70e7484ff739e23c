//! The storage contract under the registry: the [`ModelStore`] trait that a local directory
//! and a Blob Storage container both implement, the types it speaks (version names, the
//! champion pointer and its tag, [`StoreError`]), and [`Store`], the one chosen at run time.
//!
//! Not here: artifacts, cards and promotion (see the registry itself), the two
//! implementations (see `local` and `blob`).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{BlobStore, LocalStore};

/// Opaque version tag of the champion pointer, compared for compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

/// The content of the `champion` pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Champion {
    pub version: String,
    /// The champion before this one: kept by retention so that a rollback is one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub updated_at: String,
}

/// The pointer as read, with the tag to hand back when moving it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChampionPointer {
    pub champion: Champion,
    pub etag: ETag,
}

/// Result of a conditional pointer read.
#[derive(Debug, Clone, PartialEq)]
pub enum PointerRead {
    /// The pointer still has the tag the caller knows.
    Unchanged,
    Current(ChampionPointer),
    /// There is no champion yet.
    Absent,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("`{0}` not found in the model store")]
    NotFound(String),
    #[error("version `{0}` already exists in the model store")]
    AlreadyExists(String),
    #[error("the champion pointer changed since it was read")]
    Conflict,
    #[error("the model store cannot be reached: {0}")]
    Unavailable(String),
    /// 401/403: the credentials or the identity's role are wrong. A configuration error,
    /// never evidence about the models.
    #[error("configuration error: {0}")]
    Unauthorized(String),
    #[error("model store error: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether retrying later may succeed (the store was unreachable, not the request wrong).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether the store refused our credentials (fix the configuration, then retry).
    pub fn is_configuration(&self) -> bool {
        matches!(self, StoreError::Unauthorized(_))
    }

    /// Whether the error says nothing about the stored data (unreachable store, refused
    /// credentials): such an error must never count as "this version is broken".
    pub fn is_access_problem(&self) -> bool {
        self.is_transient() || self.is_configuration()
    }
}

/// The champion pointer's name in every store: no version may have it.
pub(crate) const POINTER_NAME: &str = "champion";

/// Version ids become path components and blob name prefixes: refuse anything that is not a
/// plain id, so no id can escape the store or collide with the pointer.
pub(crate) fn check_version_name(version: &str) -> Result<(), StoreError> {
    let valid = !version.is_empty()
        && version.len() <= 128
        && !version.starts_with('.')
        && version != POINTER_NAME
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(StoreError::NotFound(version.to_string()))
    }
}

/// Storage of versions and of the champion pointer.
///
/// Implementations must make `write_champion` a compare-and-swap: `expected = None` succeeds
/// only if no pointer exists, `Some(tag)` only if the pointer still carries that tag.
pub trait ModelStore: Send + Sync {
    /// Where the store lives, for cards and logs (never contains credentials).
    fn location(&self) -> String;
    /// Writes a complete version; it becomes visible only once both files are written.
    fn put_version(
        &self,
        version: &str,
        model: Vec<u8>,
        card_json: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn get_model(&self, version: &str) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
    fn get_card(&self, version: &str) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
    /// Complete versions, oldest first.
    fn list_versions(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Deletes a version's files (whatever is left of them).
    fn delete_version(&self, version: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes only the card: the version leaves listings and can no longer be promoted,
    /// while its model stays until [`ModelStore::delete_version`] (or [`ModelStore::restore_card`]).
    fn delete_card(&self, version: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes a deleted card back (fails with `AlreadyExists` if there is one).
    fn restore_card(
        &self,
        version: &str,
        card_json: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes what crashed writers left behind and nobody can see: models without a card,
    /// staging files and directories, all older than `older_than`. Returns what it removed.
    fn sweep_incomplete(
        &self,
        older_than: Duration,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Reads the pointer; cheap when `known` still matches.
    fn read_champion(
        &self,
        known: Option<&ETag>,
    ) -> impl Future<Output = Result<PointerRead, StoreError>> + Send;
    /// Moves the pointer if it still carries `expected`; returns the new tag.
    fn write_champion(
        &self,
        champion: &Champion,
        expected: Option<&ETag>,
    ) -> impl Future<Output = Result<ETag, StoreError>> + Send;
    /// The byte length of every stored `model.bin`, by version: metadata only, no download
    /// (one listing on Blob Storage, one `stat` per version locally).
    fn model_lengths(
        &self,
    ) -> impl Future<Output = Result<HashMap<String, u64>, StoreError>> + Send;

    // Claims (see [`claims`]): small markers outside the version namespace, created only if
    // absent and replaced or deleted only under their tag, so that instances sharing the
    // store agree on who trains which data.

    /// Creates the claim `key` unless it exists (`Conflict` then); returns its tag.
    fn create_claim(
        &self,
        key: &str,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<ETag, StoreError>> + Send;
    /// The claim's bytes and tag, or `None` if there is no such claim.
    fn read_claim(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, ETag)>, StoreError>> + Send;
    /// Replaces the claim if it still carries `expected` (`Conflict` if it changed or is gone).
    fn replace_claim(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: &ETag,
    ) -> impl Future<Output = Result<ETag, StoreError>> + Send;
    /// Deletes the claim if it still carries `expected`; `false` if it changed or is gone.
    fn delete_claim(
        &self,
        key: &str,
        expected: &ETag,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The keys of every claim.
    fn list_claims(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// The configured store.
#[derive(Debug, Clone)]
pub enum Store {
    Local(LocalStore),
    Blob(BlobStore),
}

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Local($store) => $call,
            Store::Blob($store) => $call,
        }
    };
}

impl ModelStore for Store {
    fn location(&self) -> String {
        delegate!(self, store => store.location())
    }
    async fn put_version(
        &self,
        version: &str,
        model: Vec<u8>,
        card_json: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.located(delegate!(self, store => store.put_version(version, model, card_json).await))
    }
    async fn get_model(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        self.located(delegate!(self, store => store.get_model(version).await))
    }
    async fn get_card(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        self.located(delegate!(self, store => store.get_card(version).await))
    }
    async fn list_versions(&self) -> Result<Vec<String>, StoreError> {
        self.located(delegate!(self, store => store.list_versions().await))
    }
    async fn delete_version(&self, version: &str) -> Result<(), StoreError> {
        self.located(delegate!(self, store => store.delete_version(version).await))
    }
    async fn delete_card(&self, version: &str) -> Result<(), StoreError> {
        self.located(delegate!(self, store => store.delete_card(version).await))
    }
    async fn restore_card(&self, version: &str, card_json: Vec<u8>) -> Result<(), StoreError> {
        self.located(delegate!(self, store => store.restore_card(version, card_json).await))
    }
    async fn sweep_incomplete(&self, older_than: Duration) -> Result<Vec<String>, StoreError> {
        self.located(delegate!(self, store => store.sweep_incomplete(older_than).await))
    }
    async fn read_champion(&self, known: Option<&ETag>) -> Result<PointerRead, StoreError> {
        self.located(delegate!(self, store => store.read_champion(known).await))
    }
    async fn write_champion(
        &self,
        champion: &Champion,
        expected: Option<&ETag>,
    ) -> Result<ETag, StoreError> {
        self.located(delegate!(self, store => store.write_champion(champion, expected).await))
    }
    async fn model_lengths(&self) -> Result<HashMap<String, u64>, StoreError> {
        self.located(delegate!(self, store => store.model_lengths().await))
    }
    async fn create_claim(&self, key: &str, bytes: Vec<u8>) -> Result<ETag, StoreError> {
        self.located(delegate!(self, store => store.create_claim(key, bytes).await))
    }
    async fn read_claim(&self, key: &str) -> Result<Option<(Vec<u8>, ETag)>, StoreError> {
        self.located(delegate!(self, store => store.read_claim(key).await))
    }
    async fn replace_claim(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: &ETag,
    ) -> Result<ETag, StoreError> {
        self.located(delegate!(self, store => store.replace_claim(key, bytes, expected).await))
    }
    async fn delete_claim(&self, key: &str, expected: &ETag) -> Result<bool, StoreError> {
        self.located(delegate!(self, store => store.delete_claim(key, expected).await))
    }
    async fn list_claims(&self) -> Result<Vec<String>, StoreError> {
        self.located(delegate!(self, store => store.list_claims().await))
    }
}

/// What the registry needs of the configured store beyond the trait.
impl Store {
    /// `result`, with the store's path or URL named in any error that is not about one key
    /// (a refused write, an unreachable account, a refused credential).
    fn located<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        result.map_err(|error| match error {
            StoreError::Other(message) => {
                StoreError::Other(format!("{}: {message}", self.location()))
            }
            StoreError::Unavailable(message) => {
                StoreError::Unavailable(format!("{}: {message}", self.location()))
            }
            StoreError::Unauthorized(message) => {
                StoreError::Unauthorized(format!("{}: {message}", self.location()))
            }
            other => other,
        })
    }

    /// Writes and removes a small probe where a training will write: a file in the store's
    /// directory, or a claim in the container (what the identity may write there).
    pub(super) async fn check_writable(&self) -> Result<(), StoreError> {
        let probe = format!(
            "write-check-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        match self {
            Store::Local(local) => self.located(local.check_writable(&probe).await),
            Store::Blob(blob) => {
                let etag = self.located(blob.create_claim(&probe, b"{}".to_vec()).await)?;
                // A probe left behind (the delete failed) is unreadable as a claim, and
                // retention removes such claims.
                let _ = blob.delete_claim(&probe, &etag).await;
                Ok(())
            }
        }
    }
}
