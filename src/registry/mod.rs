//! The model registry: versioned artifacts and the champion pointer, kept in a [`ModelStore`]
//! (a local directory or a Blob Storage container, same keys in both).
//!
//! Keys: `<version>/model.bin`, `<version>/card.json`, `champion`. A version is written
//! completely before the pointer may name it, and the pointer only moves by compare-and-swap
//! on its ETag, so concurrent trainings can neither lose an update nor point at a missing model.
//!
//! Not here: the storage contract, its types and the store chosen at run time (see `store`,
//! re-exported here).

pub mod blob;
pub mod claims;
pub mod faults;
pub mod local;
mod open;
pub mod promotion;
pub mod published;
mod retention;
mod store;
pub mod verify;

use std::time::Duration;

use futures::StreamExt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::artifact::{ArtifactError, ModelArtifact, ModelCard};

pub use blob::BlobStore;
pub use local::LocalStore;
pub use open::{open_registry, OpenStoreError};
pub(crate) use store::check_version_name;
pub use store::{Champion, ChampionPointer, ETag, ModelStore, PointerRead, Store, StoreError};

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
    /// The model would not serve (failed the check before saving or promoting).
    #[error("model `{version}` cannot serve: {reason}")]
    Unservable { version: String, reason: String },
    /// The version was deleted by retention while it was being promoted; the pointer is
    /// back where it was.
    #[error("model version `{0}` was deleted while it was being promoted")]
    DeletedWhilePromoting(String),
    /// Neither the champion nor any other stored version loads.
    #[error("no stored version can serve: {0}")]
    NothingServable(String),
}

impl RegistryError {
    /// The store error behind this one, if the store itself failed.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            RegistryError::Store(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the store was unreachable or refused access (so nothing is known about the
    /// version itself).
    pub fn is_access_problem(&self) -> bool {
        self.store_error()
            .is_some_and(StoreError::is_access_problem)
    }
}

/// The model file of a version, as named in problems.
const MODEL_FILE: &str = "model.bin";

/// The card file: the card's own fields plus what the store recorded about the model.
pub fn card_file(
    card: &ModelCard,
    artifact: &ArtifactDigest,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(card)?;
    if let serde_json::Value::Object(fields) = &mut value {
        fields.insert("artifact".to_string(), serde_json::to_value(artifact)?);
    }
    serde_json::to_vec_pretty(&value)
}

/// The problem a model's length shows: missing, or not the length its card records.
fn length_problem(found: Option<u64>, recorded: Option<&ArtifactDigest>) -> Option<String> {
    match (found, recorded) {
        (None, _) => Some(format!("{MODEL_FILE} is missing")),
        (Some(found), Some(recorded)) if found != recorded.bytes => Some(format!(
            "{MODEL_FILE} is {found} bytes; its card records {}",
            recorded.bytes
        )),
        _ => None,
    }
}

/// How many times a lost compare-and-swap of a manual promotion is retried.
const MAX_PROMOTE_ATTEMPTS: usize = 16;
/// How many cards are read at once when listing.
const CARD_READS_IN_FLIGHT: usize = 8;

/// A listed version: its card, or why the card cannot be read.
#[derive(Debug, Clone)]
pub struct VersionEntry {
    pub version: String,
    pub card: Result<ModelCard, String>,
    /// What the card records about the stored `model.bin` (absent on cards written before
    /// the store recorded it).
    pub artifact: Option<ArtifactDigest>,
    /// Why the version's `model.bin` cannot serve, when the card is readable: missing, not
    /// the length the card records, or (after [`Registry::verify_versions`]) not the bytes
    /// the card records or not decodable.
    pub artifact_problem: Option<String>,
}

impl VersionEntry {
    /// The version's problem, if it has one (the card's first).
    pub fn problem(&self) -> Option<&str> {
        match &self.card {
            Err(problem) => Some(problem),
            Ok(_) => self.artifact_problem.as_deref(),
        }
    }
}

/// The stored `model.bin` as its version's `card.json` records it (the `artifact` field of
/// the card file; the card inside the model cannot record its own container's hash). A
/// listing compares the length with the store's metadata; a verification the hash too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactDigest {
    pub bytes: u64,
    pub sha256: String,
}

impl ArtifactDigest {
    pub fn of(model: &[u8]) -> ArtifactDigest {
        ArtifactDigest {
            bytes: model.len() as u64,
            sha256: crate::model::dataset::sha256_hex(model),
        }
    }
}

/// The extra field a card file carries next to the card's own.
#[derive(Deserialize)]
struct CardFileExtras {
    #[serde(default)]
    artifact: Option<ArtifactDigest>,
}

/// The model to serve for a pointer, and why it is not the champion when it is not.
#[derive(Debug)]
pub struct Servable {
    pub artifact: ModelArtifact,
    /// `None` when serving the champion itself.
    pub fallback_reason: Option<String>,
}

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

    /// Checks, before a training starts, that the store can be written and that its champion
    /// pointer can be read, so a store that refuses either fails at once, named, rather than
    /// after the fit.
    pub async fn check_writable(&self) -> Result<(), RegistryError> {
        self.store
            .check_writable()
            .await
            .map_err(|error| match error {
                StoreError::NotFound(what) => {
                    StoreError::Other(format!("{}: cannot write `{what}`", self.store_location()))
                }
                other => other,
            })?;
        self.champion().await?;
        Ok(())
    }

    /// Stores an artifact and its readable card, after checking that the stored bytes would
    /// decode into a model predicting finite values identical to `artifact`'s. A version that
    /// fails the check is not written.
    pub async fn save(&self, artifact: &ModelArtifact) -> Result<(), RegistryError> {
        let version = artifact.card.version.clone();
        let model =
            verify::encode_verified(artifact).map_err(|reason| RegistryError::Unservable {
                version: version.clone(),
                reason,
            })?;
        let card = card_file(&artifact.card, &ArtifactDigest::of(&model)).map_err(|e| {
            RegistryError::Card {
                version: version.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(self.store.put_version(&version, model, card).await?)
    }

    /// Loads and decodes a version. A model that does not decode is checked against what
    /// its card records (length and SHA-256), so that the error says whether the file was
    /// damaged or replaced rather than only what the decoder tripped on.
    pub async fn load(&self, version: &str) -> Result<ModelArtifact, RegistryError> {
        let bytes = self
            .store
            .get_model(version)
            .await
            .map_err(|e| not_found_as_version(e, version))?;
        let found = ArtifactDigest::of(&bytes);
        match decode_blocking(version, bytes).await {
            Err(RegistryError::Artifact { version, source }) => {
                let recorded = self.stored_card(&version).await.ok().and_then(|(_, a)| a);
                Err(RegistryError::Artifact {
                    source: ArtifactError::Checked {
                        checked: digest_check(&found, recorded.as_ref()),
                        decoder: Box::new(source),
                    },
                    version,
                })
            }
            other => other,
        }
    }

    pub async fn card(&self, version: &str) -> Result<ModelCard, RegistryError> {
        Ok(self.stored_card(version).await?.0)
    }

    /// The card and what it records about the stored model.
    pub async fn stored_card(
        &self,
        version: &str,
    ) -> Result<(ModelCard, Option<ArtifactDigest>), RegistryError> {
        let bytes = self
            .store
            .get_card(version)
            .await
            .map_err(|e| not_found_as_version(e, version))?;
        let unreadable = |e: serde_json::Error| RegistryError::Card {
            version: version.to_string(),
            message: e.to_string(),
        };
        let card: ModelCard = serde_json::from_slice(&bytes).map_err(unreadable)?;
        let extras: CardFileExtras = serde_json::from_slice(&bytes).map_err(unreadable)?;
        Ok((card, extras.artifact))
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
        for entry in self.versions().await? {
            match entry.card {
                Ok(card) => cards.push(card),
                Err(error) => {
                    tracing::warn!(version = %entry.version, %error, "skipping unreadable model card")
                }
            }
        }
        Ok(cards)
    }

    /// Every complete version, oldest first, with its card or the card's problem, and the
    /// problem of its `model.bin` as far as metadata shows it (missing, or not the length its
    /// card records): no model is downloaded. Cards are read a few at a time; an unreachable
    /// or refused store fails the whole listing.
    pub async fn versions(&self) -> Result<Vec<VersionEntry>, RegistryError> {
        let versions = self.store.list_versions().await?;
        // After the listing: a listed version's model was written before its card.
        let lengths = self.store.model_lengths().await?;
        let lengths = &lengths;
        let entries: Vec<Result<VersionEntry, RegistryError>> = futures::stream::iter(versions)
            .map(|version| async move {
                match self.stored_card(&version).await {
                    Ok((card, artifact)) => {
                        let card = match verify::card_problem(&card) {
                            Some(problem) => Err(problem),
                            None if card.version != version => {
                                Err(format!("the card describes version `{}`", card.version))
                            }
                            None => Ok(card),
                        };
                        let artifact_problem =
                            length_problem(lengths.get(&version).copied(), artifact.as_ref());
                        Ok(VersionEntry {
                            version,
                            card,
                            artifact,
                            artifact_problem,
                        })
                    }
                    Err(error) if error.is_access_problem() => Err(error),
                    Err(error) => Ok(VersionEntry {
                        version,
                        card: Err(error.to_string()),
                        artifact: None,
                        artifact_problem: None,
                    }),
                }
            })
            .buffered(CARD_READS_IN_FLIGHT)
            .collect()
            .await;
        entries.into_iter().collect()
    }

    /// Downloads, checks and decodes the model of every listed version whose card is
    /// readable and whose listing showed no problem: its bytes must be those the card
    /// records, decode, and predict finite values. Versions are checked one at a time (a
    /// forest is megabytes); store access failures fail the verification.
    pub async fn verify_versions(
        &self,
        entries: Vec<VersionEntry>,
    ) -> Result<Vec<VersionEntry>, RegistryError> {
        let mut verified = Vec::with_capacity(entries.len());
        for mut entry in entries {
            if entry.problem().is_none() {
                entry.artifact_problem = self.artifact_problem(&entry).await?;
            }
            verified.push(entry);
        }
        Ok(verified)
    }

    /// Why `version`'s stored model cannot serve as far as metadata shows it (missing, or not
    /// the length its card records), or `None`: a card read and one listing, no download.
    pub async fn stored_model_problem(
        &self,
        version: &str,
    ) -> Result<Option<String>, RegistryError> {
        let (_, artifact) = self.stored_card(version).await?;
        let lengths = self.store.model_lengths().await?;
        Ok(length_problem(
            lengths.get(version).copied(),
            artifact.as_ref(),
        ))
    }

    /// Why a version's stored model cannot serve, found by downloading it.
    async fn artifact_problem(
        &self,
        entry: &VersionEntry,
    ) -> Result<Option<String>, RegistryError> {
        let version = &entry.version;
        let bytes = match self.store.get_model(version).await {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound(_)) => return Ok(Some(format!("{MODEL_FILE} is missing"))),
            Err(other) => return Err(other.into()),
        };
        if let Some(recorded) = &entry.artifact {
            let found = ArtifactDigest::of(&bytes);
            if let Some(problem) = length_problem(Some(found.bytes), Some(recorded)) {
                return Ok(Some(problem));
            }
            if found.sha256 != recorded.sha256 {
                return Ok(Some(format!(
                    "{MODEL_FILE} is not the file its card records (SHA-256 {}, recorded {})",
                    &found.sha256[..12],
                    &recorded.sha256[..recorded.sha256.len().min(12)]
                )));
            }
        }
        let artifact = match decode_blocking(version, bytes).await {
            Ok(artifact) => artifact,
            Err(error) if error.is_access_problem() => return Err(error),
            Err(error) => return Ok(Some(error.to_string())),
        };
        if artifact.card.version != *version {
            return Ok(Some(format!(
                "{MODEL_FILE} holds version `{}`",
                artifact.card.version
            )));
        }
        Ok(verify::serving_problem(&artifact))
    }

    /// Loads a version and checks it can serve: its readable card (what listings, the timer
    /// and the upload check read) describes it, the model decodes, and predicts finite values.
    pub async fn load_servable(&self, version: &str) -> Result<ModelArtifact, RegistryError> {
        let card = self.card(version).await?;
        if card.version != version {
            return Err(RegistryError::Card {
                version: version.to_string(),
                message: format!("it describes version `{}`", card.version),
            });
        }
        let artifact = self.load(version).await?;
        match verify::serving_problem(&artifact) {
            None => Ok(artifact),
            Some(reason) => Err(RegistryError::Unservable {
                version: version.to_string(),
                reason,
            }),
        }
    }

    /// The model to serve under `champion`: the champion if it can serve, else the
    /// pointer's `previous`, else the newest version that can. Store access failures are
    /// returned as they are (they say nothing about the versions).
    pub async fn servable(&self, champion: &Champion) -> Result<Servable, RegistryError> {
        match self.load_servable(&champion.version).await {
            Ok(artifact) => Ok(Servable {
                artifact,
                fallback_reason: None,
            }),
            Err(error) if error.is_access_problem() => Err(error),
            Err(error) => self.fallback(champion, error).await,
        }
    }

    /// The best version to serve when the champion cannot (`problem` says why): the
    /// pointer's `previous`, else the newest version that can serve.
    pub async fn fallback(
        &self,
        champion: &Champion,
        problem: RegistryError,
    ) -> Result<Servable, RegistryError> {
        let problem = problem.to_string();
        let mut candidates: Vec<String> = champion.previous.iter().cloned().collect();
        let mut listed = self.store.list_versions().await?;
        listed.reverse();
        candidates.extend(
            listed
                .into_iter()
                .filter(|v| *v != champion.version && Some(v) != champion.previous.as_ref()),
        );
        let mut refused = vec![problem.clone()];
        for candidate in candidates {
            match self.load_servable(&candidate).await {
                Ok(artifact) => {
                    return Ok(Servable {
                        artifact,
                        fallback_reason: Some(format!(
                        "the champion `{}` cannot serve ({problem}); serving `{candidate}` instead",
                        champion.version
                    )),
                    })
                }
                Err(error) if error.is_access_problem() => return Err(error),
                Err(error) => refused.push(error.to_string()),
            }
        }
        Err(RegistryError::NothingServable(refused.join("; ")))
    }

    /// Makes `version` the champion unconditionally (a rollback or `--force`), once it is
    /// known to load and serve; returns the loaded model with the new pointer.
    ///
    /// A lost compare-and-swap is retried a bounded number of times. If retention deletes the
    /// version meanwhile, the pointer is moved back and the promotion fails cleanly.
    pub async fn promote_servable(
        &self,
        version: &str,
    ) -> Result<(ModelArtifact, ChampionPointer), RegistryError> {
        let artifact = self.load_servable(version).await?;
        for _ in 0..MAX_PROMOTE_ATTEMPTS {
            let current = self.champion().await?;
            if let Some(pointer) = current.as_ref().filter(|p| p.champion.version == version) {
                // Promoting the champion again (a retried rollback) changes nothing: the
                // previous champion it remembers, the rollback target that retention keeps,
                // stays.
                return Ok((artifact, pointer.clone()));
            }
            let champion = Champion {
                version: version.to_string(),
                previous: current
                    .as_ref()
                    .map(|p| p.champion.version.clone())
                    .filter(|v| v != version),
                updated_at: now_rfc3339(),
            };
            let etag = match self
                .store
                .write_champion(&champion, current.as_ref().map(|p| &p.etag))
                .await
            {
                Ok(etag) => etag,
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound(_)) => {
                    return Err(RegistryError::DeletedWhilePromoting(version.to_string()))
                }
                Err(other) => return Err(other.into()),
            };
            let pointer = ChampionPointer { champion, etag };
            self.confirm_still_stored(&pointer, current.as_ref())
                .await?;
            return Ok((artifact, pointer));
        }
        Err(StoreError::Unavailable(
            "the champion pointer kept changing during the promotion; try again".to_string(),
        )
        .into())
    }

    /// Makes `version` the champion (see [`Registry::promote_servable`]).
    pub async fn promote(&self, version: &str) -> Result<ChampionPointer, RegistryError> {
        Ok(self.promote_servable(version).await?.1)
    }

    /// After the pointer moved to a version, checks that retention did not delete its card
    /// in the meantime; if it did, puts the old pointer back (when nobody else moved it).
    async fn confirm_still_stored(
        &self,
        pointer: &ChampionPointer,
        before: Option<&ChampionPointer>,
    ) -> Result<(), RegistryError> {
        let version = &pointer.champion.version;
        match self.store.get_card(version).await {
            Ok(_) => return Ok(()),
            Err(StoreError::NotFound(_)) => {}
            Err(other) => return Err(other.into()),
        }
        tracing::warn!(%version, "the version was deleted while being promoted; moving the pointer back");
        if let Some(before) = before {
            let restored = Champion {
                updated_at: now_rfc3339(),
                ..before.champion.clone()
            };
            match self
                .store
                .write_champion(&restored, Some(&pointer.etag))
                .await
            {
                Ok(_) | Err(StoreError::Conflict) => {}
                Err(error) => {
                    tracing::error!(%error, %version, "could not move the pointer back");
                }
            }
        }
        Err(RegistryError::DeletedWhilePromoting(version.to_string()))
    }

    /// Deletes all but the newest `keep` versions, never the champion or the previous
    /// champion (rollback needs it), and removes leftovers of crashed writers older than an
    /// hour, and training claims past their expiry. Returns the deleted versions.
    pub async fn retain(&self, keep: usize) -> Result<Vec<String>, RegistryError> {
        Ok(self.retain_with(keep, retention::ORPHAN_AGE).await?.deleted)
    }

    /// Removes leftovers of interrupted writes older than [`retention::ORPHAN_AGE`] (run
    /// before every training and at start, so that a store filled by leftovers recovers even
    /// while trainings keep failing). A failure is logged: the training then finds out.
    pub async fn sweep_leftovers(&self) {
        match self.store().sweep_incomplete(retention::ORPHAN_AGE).await {
            Ok(swept) if !swept.is_empty() => {
                tracing::info!(swept = %swept.join(", "), "removed leftovers of interrupted writes")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not sweep leftovers of interrupted writes"),
        }
    }

    /// Retention with a chosen age for crash leftovers (see [`retention`]); claims expire
    /// after [`claims::CLAIM_EXPIRY`].
    pub async fn retain_with(
        &self,
        keep: usize,
        orphan_age: Duration,
    ) -> Result<RetentionReport, RegistryError> {
        retention::run(self, keep, orphan_age, claims::CLAIM_EXPIRY).await
    }
}

pub use retention::RetentionReport;

fn not_found_as_version(error: StoreError, version: &str) -> RegistryError {
    match error {
        StoreError::NotFound(_) => RegistryError::VersionNotFound(version.to_string()),
        other => RegistryError::Store(other),
    }
}

/// What comparing a model file with its card's record found, in words.
fn digest_check(found: &ArtifactDigest, recorded: Option<&ArtifactDigest>) -> String {
    match recorded {
        None => format!(
            "{MODEL_FILE} ({} bytes) could not be checked against its card, which records no \
             length or SHA-256",
            found.bytes
        ),
        Some(recorded) if recorded.bytes != found.bytes => format!(
            "{MODEL_FILE} has {} bytes where its card records {}: the file is damaged or \
             replaced",
            found.bytes, recorded.bytes
        ),
        Some(recorded) if recorded.sha256 != found.sha256 => format!(
            "{MODEL_FILE} has the length its card records but not its content (SHA-256 {}, \
             recorded {}): the file is damaged or replaced",
            &found.sha256[..found.sha256.len().min(12)],
            &recorded.sha256[..recorded.sha256.len().min(12)]
        ),
        Some(_) => format!(
            "{MODEL_FILE} is the file its card records (length and SHA-256 match), yet it does \
             not decode with this build"
        ),
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
