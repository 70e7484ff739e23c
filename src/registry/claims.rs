//! Claims: which instance is training which data, agreed through the store itself.
//!
//! The in-process training lock orders trainings on one instance only. Instances sharing a
//! store (every Functions instance, or two `serve` processes on one directory) agree through a
//! claim keyed by the data's SHA-256:
//!
//! 1. Before training an upload, the instance creates the claim create-only (Blob:
//!    `If-None-Match: *`; local: `create_new` under a file lock, fsynced). Exactly one
//!    instance succeeds.
//! 2. An instance that finds a live claim does not train: the delivery is answered as
//!    "already being trained" (a success for the host, so it neither retries nor counts a
//!    poison attempt). The holder answers its own delivery, and a failure there is retried by
//!    the host on that delivery. A claim names the process that holds it (instance, process
//!    id, start time), so a claim is known to be dead at once when its process is: this very
//!    process (which claims only under its training lock, so no training of its own holds the
//!    claim), an earlier process of the same id, or a process on the same instance that no
//!    longer runs. Such a claim is taken over like an expired one.
//! 3. A claim older than [`CLAIM_EXPIRY`] belongs to an instance that died mid-training: it is
//!    taken over by a compare-and-swap on its tag (Blob: `If-Match`), so of several instances
//!    finding the same stale claim only one wins.
//! 4. When the training ends (promoted, kept, rejected, failed or panicked), the holder
//!    deletes its claim, again only under its own tag (it never removes a claim that was
//!    taken over); if the store cannot be reached then, the release is retried in the
//!    background until it can, so the next delivery finds the claim gone. The
//!    lasting record is the version's card, whose `data_sha256` the holder checked while
//!    holding the claim: a later redelivery finds the card and is a no-op. Claims are not
//!    kept as records, so the store never fills with them.
//! 5. Retention removes claims past the expiry (left by instances that died).
//!
//! The cost of answering other deliveries with "already being trained" rather than an error:
//! if the holder dies mid-training, deliveries before the expiry do not train either; the data
//! is trained by the first delivery after it (a re-upload), or by the next scheduled
//! retraining if it is the newest data in the training container.
//!
//! The expiry is compared with the time the claim records, so it tolerates clock skew between
//! instances far smaller than the expiry. It exceeds the Functions host's invocation timeout
//! (30 minutes in host.json): no live training holds a claim that long.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ETag, ModelStore, Registry, RegistryError, StoreError};
use crate::model::dataset::sha256_hex;

/// Age after which a claim is considered abandoned by a dead instance.
pub const CLAIM_EXPIRY: Duration = Duration::from_secs(35 * 60);

/// How many times a contended claim (created, released or taken over meanwhile) is retried.
const MAX_CLAIM_ATTEMPTS: usize = 4;

/// The process that holds a claim: with the instance, enough to tell a live holder from a
/// dead one on the same instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderProcess {
    pub pid: u32,
    /// When the process started, in milliseconds since the Unix epoch: a restarted process
    /// often gets the same id (in a container, always).
    pub started_unix_millis: u64,
}

impl HolderProcess {
    /// This process, as claims name it.
    pub fn this() -> HolderProcess {
        static STARTED: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        });
        HolderProcess {
            pid: std::process::id(),
            started_unix_millis: *STARTED,
        }
    }

    /// Whether a process with this id runs on this machine (where `/proc` tells; elsewhere,
    /// assumed to).
    fn runs_here(self) -> bool {
        let proc = std::path::Path::new("/proc");
        !proc.is_dir() || proc.join(self.pid.to_string()).exists()
    }
}

/// What a claim records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The instance that holds it (`WEBSITE_INSTANCE_ID` under Azure, else the host name).
    pub instance: String,
    /// The process on that instance (absent in claims of earlier releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<HolderProcess>,
    /// When it was taken, RFC 3339 UTC.
    pub claimed_at: String,
    pub claimed_unix_seconds: u64,
    /// Makes every claim's content (and so its local tag) unique.
    pub token: String,
}

impl Claim {
    fn new(instance: &str) -> Claim {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seed = format!(
            "{instance}|{}|{}|{}",
            std::process::id(),
            now.as_nanos(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Claim {
            instance: instance.to_string(),
            process: Some(HolderProcess::this()),
            claimed_at: super::now_rfc3339(),
            claimed_unix_seconds: now.as_secs(),
            token: sha256_hex(seed.as_bytes())[..16].to_string(),
        }
    }

    /// Whether the claim's holder is known to be gone, seen from `instance` by a caller that
    /// holds this process's training lock: the holder is this process (no training of ours
    /// runs, so the claim was left by a release that failed), an earlier process with our id,
    /// or another process of this instance that no longer runs. Of another instance nothing
    /// is known but the age.
    pub fn holder_is_gone(&self, instance: &str) -> bool {
        let Some(holder) = self.process else {
            return false;
        };
        if self.instance != instance {
            return false;
        }
        let this = HolderProcess::this();
        holder == this || holder.pid == this.pid || !holder.runs_here()
    }

    /// Whether the claim is older than `expiry` (a claim dated in the future is live).
    pub fn is_expired(&self, expiry: Duration) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        now.saturating_sub(self.claimed_unix_seconds) > expiry.as_secs()
    }
}

/// A claim this instance holds; give it back with [`Registry::release_claim`].
#[derive(Debug, Clone)]
pub struct HeldClaim {
    pub key: String,
    pub claim: Claim,
    etag: ETag,
    /// The claim this one replaced (it had expired).
    pub took_over: Option<Claim>,
}

/// The result of trying to claim.
#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    Acquired(HeldClaim),
    /// Another instance holds a live claim.
    Held(Claim),
}

fn decode(bytes: &[u8]) -> Option<Claim> {
    serde_json::from_slice(bytes).ok()
}

impl Registry {
    /// Claims the training of the data with SHA-256 `key` for `instance`, taking over a claim
    /// older than `expiry` or whose holder is gone (see [`Claim::holder_is_gone`]; the caller
    /// holds the training lock). An unreadable claim counts as expired (no writer of this
    /// software leaves one: every write replaces the whole claim at once).
    pub async fn claim(
        &self,
        key: &str,
        instance: &str,
        expiry: Duration,
    ) -> Result<ClaimOutcome, RegistryError> {
        let store = self.store();
        let mut last_seen = None;
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let claim = Claim::new(instance);
            let bytes = serde_json::to_vec(&claim).map_err(|e| StoreError::Other(e.to_string()))?;
            match store.create_claim(key, bytes.clone()).await {
                Ok(etag) => {
                    return Ok(ClaimOutcome::Acquired(HeldClaim {
                        key: key.to_string(),
                        claim,
                        etag,
                        took_over: None,
                    }))
                }
                Err(StoreError::Conflict) => {}
                Err(other) => return Err(other.into()),
            }
            let Some((existing, etag)) = store.read_claim(key).await? else {
                continue; // released meanwhile: try to create it again
            };
            let existing = decode(&existing);
            match &existing {
                Some(held) if !held.is_expired(expiry) && !held.holder_is_gone(instance) => {
                    return Ok(ClaimOutcome::Held(held.clone()))
                }
                _ => {}
            }
            match store.replace_claim(key, bytes, &etag).await {
                Ok(etag) => {
                    tracing::warn!(
                        %key,
                        previous_holder = existing.as_ref().map_or("unreadable", |c| c.instance.as_str()),
                        previous_claimed_at = existing.as_ref().map_or("", |c| c.claimed_at.as_str()),
                        "took over a claim whose holder is gone"
                    );
                    return Ok(ClaimOutcome::Acquired(HeldClaim {
                        key: key.to_string(),
                        claim,
                        etag,
                        took_over: existing,
                    }));
                }
                Err(StoreError::Conflict) => last_seen = existing,
                Err(other) => return Err(other.into()),
            }
        }
        // Several instances kept racing for it: whoever won is training.
        match last_seen {
            Some(claim) => Ok(ClaimOutcome::Held(claim)),
            None => Err(StoreError::Unavailable(format!(
                "the training claim `{key}` kept changing; try again"
            ))
            .into()),
        }
    }

    /// Gives a claim back (only if it is still ours). `false` if the store could not be
    /// reached (or refused): the claim is still there, and the caller should try again.
    pub async fn release_claim(&self, held: &HeldClaim) -> bool {
        match self.store().delete_claim(&held.key, &held.etag).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(key = %held.key, "the training claim was taken over before it was released");
                true
            }
            Err(error) => {
                tracing::warn!(key = %held.key, %error, "could not release the training claim; retrying");
                false
            }
        }
    }

    /// Releases `held`, retrying in the background while the store cannot be reached (from 1
    /// s, doubling to a minute between attempts, until the claim would have expired anyway).
    pub async fn release_claim_eventually(&self, held: HeldClaim) {
        if self.release_claim(&held).await {
            return;
        }
        let registry = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut pause = Duration::from_secs(1);
            while started.elapsed() < CLAIM_EXPIRY {
                tokio::time::sleep(pause).await;
                if registry.release_claim(&held).await {
                    tracing::info!(key = %held.key, "training claim released after the store returned");
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        });
    }

    /// Removes claims older than `expiry`; returns their keys.
    pub async fn remove_expired_claims(
        &self,
        expiry: Duration,
    ) -> Result<Vec<String>, RegistryError> {
        let store = self.store();
        let mut removed = Vec::new();
        for key in store.list_claims().await? {
            let Some((bytes, etag)) = store.read_claim(&key).await? else {
                continue;
            };
            let expired = decode(&bytes).is_none_or(|claim| claim.is_expired(expiry));
            if expired && store.delete_claim(&key, &etag).await? {
                removed.push(key);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{LocalStore, Store};

    #[tokio::test]
    async fn one_holder_at_a_time_and_expired_claims_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(Store::Local(LocalStore::new(dir.path())));
        let key = "ab12";
        let first = match registry.claim(key, "a", CLAIM_EXPIRY).await.unwrap() {
            ClaimOutcome::Acquired(held) => held,
            other => panic!("expected the claim, got {other:?}"),
        };
        match registry.claim(key, "b", CLAIM_EXPIRY).await.unwrap() {
            ClaimOutcome::Held(claim) => assert_eq!(claim.instance, "a"),
            other => panic!("expected a held claim, got {other:?}"),
        }
        // A claim from long ago (its instance died) is taken over by the next instance...
        let stale = Claim {
            claimed_unix_seconds: 1,
            ..Claim::new("dead")
        };
        let (_, etag) = registry.store().read_claim(key).await.unwrap().unwrap();
        registry
            .store()
            .replace_claim(key, serde_json::to_vec(&stale).unwrap(), &etag)
            .await
            .unwrap();
        let second = match registry.claim(key, "b", CLAIM_EXPIRY).await.unwrap() {
            ClaimOutcome::Acquired(held) => held,
            other => panic!("expected a takeover, got {other:?}"),
        };
        assert_eq!(second.took_over.as_ref().unwrap().instance, "dead");
        // ...and the first holder can no longer remove it.
        registry.release_claim(&first).await;
        assert_eq!(registry.store().list_claims().await.unwrap(), vec![key]);
        assert!(registry
            .remove_expired_claims(CLAIM_EXPIRY)
            .await
            .unwrap()
            .is_empty());
        registry.release_claim(&second).await;
        assert!(registry.store().list_claims().await.unwrap().is_empty());
    }
}
