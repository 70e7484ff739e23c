//! Retention: keep the newest versions, the champion and its `previous`; delete the rest
//! without ever racing a promotion; sweep what crashed writers left behind, including
//! training claims past their expiry (see [`super::claims`]).
//!
//! Deleting version `v` is three steps, each guarded by the pointer:
//! 1. re-read the pointer (a conditional read on its ETag) and skip `v` if it is protected;
//! 2. delete `v`'s card: `v` leaves listings and can no longer be promoted;
//! 3. re-read the pointer: if a promotion named `v` meanwhile, put the card back (the
//!    promotion wins and `v` survives); otherwise delete the model.
//!
//! A promotion checks after its pointer write that the card is still there, and moves the
//! pointer back if it is not, so it either wins or fails cleanly.

use std::time::Duration;

use super::{ChampionPointer, ETag, ModelStore, PointerRead, Registry, RegistryError, StoreError};

/// Leftovers younger than this may belong to a writer still at work.
pub const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// What a retention pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionReport {
    /// Versions deleted.
    pub deleted: Vec<String>,
    /// Versions spared because a promotion named them while they were being deleted.
    pub spared: Vec<String>,
    /// Crash leftovers removed (blob names or paths relative to the store).
    pub swept: Vec<String>,
    /// Expired training claims removed (their data's SHA-256), left by instances that died.
    pub claims: Vec<String>,
}

/// The versions the pointer protects, with the tag they were read under.
struct Protection {
    etag: Option<ETag>,
    versions: Vec<String>,
}

impl Protection {
    fn of(pointer: Option<ChampionPointer>) -> Protection {
        match pointer {
            Some(p) => Protection {
                etag: Some(p.etag),
                versions: std::iter::once(p.champion.version)
                    .chain(p.champion.previous)
                    .collect(),
            },
            None => Protection {
                etag: None,
                versions: Vec::new(),
            },
        }
    }

    /// Brings the protection up to date: one cheap conditional read when nothing changed.
    async fn refresh(&mut self, registry: &Registry) -> Result<(), StoreError> {
        match registry.store().read_champion(self.etag.as_ref()).await? {
            PointerRead::Unchanged => {}
            PointerRead::Current(pointer) => *self = Protection::of(Some(pointer)),
            PointerRead::Absent => *self = Protection::of(None),
        }
        Ok(())
    }

    fn protects(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

pub(super) async fn run(
    registry: &Registry,
    keep: usize,
    orphan_age: Duration,
    claim_expiry: Duration,
) -> Result<RetentionReport, RegistryError> {
    let mut report = RetentionReport::default();
    let versions = registry.store().list_versions().await?;
    let mut protection = Protection::of(registry.champion().await?);
    let excess = versions.len().saturating_sub(keep);
    for version in versions.into_iter().take(excess) {
        protection.refresh(registry).await?;
        if protection.protects(&version) {
            continue;
        }
        if delete_unless_promoted(registry, &version, &mut protection).await? {
            report.deleted.push(version);
        } else {
            report.spared.push(version);
        }
    }
    report.swept = registry.store().sweep_incomplete(orphan_age).await?;
    if !report.swept.is_empty() {
        tracing::info!(swept = %report.swept.join(", "), "removed leftovers of interrupted writes");
    }
    report.claims = registry.remove_expired_claims(claim_expiry).await?;
    if !report.claims.is_empty() {
        tracing::info!(claims = %report.claims.join(", "), "removed expired training claims");
    }
    Ok(report)
}

/// Steps 2 and 3: `true` if the version is gone, `false` if a promotion claimed it.
async fn delete_unless_promoted(
    registry: &Registry,
    version: &str,
    protection: &mut Protection,
) -> Result<bool, RegistryError> {
    let store = registry.store();
    let card = match store.get_card(version).await {
        Ok(card) => card,
        Err(StoreError::NotFound(_)) => return Ok(true),
        Err(other) => return Err(other.into()),
    };
    match store.delete_card(version).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(other) => return Err(other.into()),
    }
    protection.refresh(registry).await?;
    if protection.protects(version) {
        tracing::info!(%version, "a promotion named the version being deleted; keeping it");
        match store.restore_card(version, card).await {
            Ok(()) | Err(StoreError::AlreadyExists(_)) => return Ok(false),
            Err(other) => return Err(other.into()),
        }
    }
    match store.delete_version(version).await {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(true),
        Err(other) => Err(other.into()),
    }
}
