//! The model registry: versioned artifacts and the champion pointer, kept in a [`ModelStore`]
//! (a local directory or a Blob Storage container, same keys in both).
//!
//! Keys: `<version>/model.bin`, `<version>/card.json`, `champion`. A version is written
//! completely before the pointer may name it, and the pointer only moves by compare-and-swap
//! on its ETag, so concurrent trainings can neither lose an update nor point at a missing model.

pub mod blob;
pub mod local;
pub mod promotion;

use std::future::Future;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::artifact::{ArtifactError, ModelArtifact, ModelCard};

pub use blob::BlobStore;
pub use local::LocalStore;

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
    #[error("model store error: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether retrying later may succeed (the store was unreachable, not the request wrong).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Version ids become path components and blob name prefixes: refuse anything that is not a
/// plain id, so no id can escape the store or collide with the pointer.
pub(crate) fn check_version_name(version: &str) -> Result<(), StoreError> {
    let valid = !version.is_empty()
        && version.len() <= 128
        && !version.starts_with('.')
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
    fn delete_version(&self, version: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
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
        delegate!(self, s => s.location())
    }
    async fn put_version(&self, v: &str, m: Vec<u8>, c: Vec<u8>) -> Result<(), StoreError> {
        delegate!(self, s => s.put_version(v, m, c).await)
    }
    async fn get_model(&self, v: &str) -> Result<Vec<u8>, StoreError> {
        delegate!(self, s => s.get_model(v).await)
    }
    async fn get_card(&self, v: &str) -> Result<Vec<u8>, StoreError> {
        delegate!(self, s => s.get_card(v).await)
    }
    async fn list_versions(&self) -> Result<Vec<String>, StoreError> {
        delegate!(self, s => s.list_versions().await)
    }
    async fn delete_version(&self, v: &str) -> Result<(), StoreError> {
        delegate!(self, s => s.delete_version(v).await)
    }
    async fn read_champion(&self, known: Option<&ETag>) -> Result<PointerRead, StoreError> {
        delegate!(self, s => s.read_champion(known).await)
    }
    async fn write_champion(&self, c: &Champion, e: Option<&ETag>) -> Result<ETag, StoreError> {
        delegate!(self, s => s.write_champion(c, e).await)
    }
}

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("model version `{0}` not found")]
    VersionNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model `{version}` cannot be loaded: {source}")]
    Artifact {
        version: String,
        source: ArtifactError,
    },
    #[error("card of model `{version}` is unreadable: {message}")]
    Card { version: String, message: String },
}

/// Typed access to a store: artifacts in, artifacts out.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Store,
}

impl Registry {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the store lives (no credentials).
    pub fn store_location(&self) -> String {
        self.store.location()
    }

    /// Stores an artifact and its readable card.
    pub async fn save(&self, artifact: &ModelArtifact) -> Result<(), RegistryError> {
        let version = artifact.card.version.clone();
        let model = artifact
            .encode()
            .map_err(|source| RegistryError::Artifact {
                version: version.clone(),
                source,
            })?;
        let card = serde_json::to_vec_pretty(&artifact.card).map_err(|e| RegistryError::Card {
            version: version.clone(),
            message: e.to_string(),
        })?;
        Ok(self.store.put_version(&version, model, card).await?)
    }

    /// Loads and decodes a version.
    pub async fn load(&self, version: &str) -> Result<ModelArtifact, RegistryError> {
        let bytes = self
            .store
            .get_model(version)
            .await
            .map_err(|e| not_found_as_version(e, version))?;
        decode_blocking(version, bytes).await
    }

    pub async fn card(&self, version: &str) -> Result<ModelCard, RegistryError> {
        let bytes = self
            .store
            .get_card(version)
            .await
            .map_err(|e| not_found_as_version(e, version))?;
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Card {
            version: version.to_string(),
            message: e.to_string(),
        })
    }

    /// A conditional pointer read (cheap when `known` still matches).
    pub async fn store_read_champion(
        &self,
        known: Option<&ETag>,
    ) -> Result<PointerRead, StoreError> {
        self.store.read_champion(known).await
    }

    /// The current pointer, if any.
    pub async fn champion(&self) -> Result<Option<ChampionPointer>, RegistryError> {
        Ok(match self.store.read_champion(None).await? {
            PointerRead::Current(pointer) => Some(pointer),
            PointerRead::Absent | PointerRead::Unchanged => None,
        })
    }

    /// Cards of every version, oldest first; unreadable cards are skipped.
    pub async fn cards(&self) -> Result<Vec<ModelCard>, RegistryError> {
        let mut cards = Vec::new();
        for version in self.store.list_versions().await? {
            match self.card(&version).await {
                Ok(card) => cards.push(card),
                Err(error) => tracing::warn!(%version, %error, "skipping unreadable model card"),
            }
        }
        Ok(cards)
    }

    /// Makes `version` the champion unconditionally (a rollback or `--force`), retrying
    /// the compare-and-swap until it lands.
    pub async fn promote(&self, version: &str) -> Result<ChampionPointer, RegistryError> {
        // The version must exist and be complete before the pointer may name it.
        self.store
            .get_card(version)
            .await
            .map_err(|e| not_found_as_version(e, version))?;
        loop {
            let current = self.champion().await?;
            let champion = Champion {
                version: version.to_string(),
                previous: current
                    .as_ref()
                    .map(|p| p.champion.version.clone())
                    .filter(|v| v != version),
                updated_at: now_rfc3339(),
            };
            match self
                .store
                .write_champion(&champion, current.as_ref().map(|p| &p.etag))
                .await
            {
                Ok(etag) => return Ok(ChampionPointer { champion, etag }),
                Err(StoreError::Conflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// Deletes all but the newest `keep` versions, never the champion or the previous
    /// champion (rollback needs it).
    pub async fn retain(&self, keep: usize) -> Result<Vec<String>, RegistryError> {
        let versions = self.store.list_versions().await?;
        let protected: Vec<String> = match self.champion().await? {
            Some(p) => std::iter::once(p.champion.version)
                .chain(p.champion.previous)
                .collect(),
            None => Vec::new(),
        };
        let excess = versions.len().saturating_sub(keep);
        let mut deleted = Vec::new();
        for version in versions.into_iter().take(excess) {
            if protected.contains(&version) {
                continue;
            }
            self.store.delete_version(&version).await?;
            deleted.push(version);
        }
        Ok(deleted)
    }
}

fn not_found_as_version(error: StoreError, version: &str) -> RegistryError {
    match error {
        StoreError::NotFound(_) => RegistryError::VersionNotFound(version.to_string()),
        other => RegistryError::Store(other),
    }
}

/// Decodes off the async runtime: a forest is megabytes of postcard.
pub async fn decode_blocking(
    version: &str,
    bytes: Vec<u8>,
) -> Result<ModelArtifact, RegistryError> {
    let decoded = tokio::task::spawn_blocking(move || ModelArtifact::decode(&bytes))
        .await
        .map_err(|e| StoreError::Other(format!("decoder task failed: {e}")))?;
    decoded.map_err(|source| RegistryError::Artifact {
        version: version.to_string(),
        source,
    })
}

pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:09}Z",
        crate::model::artifact::rfc3339_utc(now.as_secs()).trim_end_matches('Z'),
        now.subsec_nanos()
    )
}
