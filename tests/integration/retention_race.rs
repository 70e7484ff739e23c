//! Retention racing rollbacks, on a local directory and on Azurite: while retention deletes
//! old versions, a promotion to one of them either wins (the version survives and loads) or
//! fails cleanly (the pointer still names a complete version). Never a pointer to nothing.

use sommelier::config::Settings;
use sommelier::registry::{open_registry, LocalStore, ModelStore, Registry, RegistryError, Store};

use crate::support::azurite::{Azurite, DEV_STORAGE};
use crate::support::models::{renamed, trained_model_bytes};

const KEEP: usize = 3;
const ROUNDS: usize = 12;

/// Each round: more versions than retention keeps, then retention and a rollback to the
/// oldest version at the same time.
async fn rollbacks_race_retention(registry: &Registry) {
    let model = trained_model_bytes();
    let (mut won, mut refused) = (0, 0);
    let mut next = 0;
    for round in 0..ROUNDS {
        while registry.store().list_versions().await.expect("list").len() < KEEP + 4 {
            next += 1;
            registry
                .save(&renamed(&model, &format!("v{next:04}")))
                .await
                .expect("save");
        }
        let newest = format!("v{next:04}");
        if registry.champion().await.expect("pointer").is_none() {
            registry.promote(&newest).await.expect("first champion");
        }
        let pointer = registry
            .champion()
            .await
            .expect("pointer")
            .expect("champion");
        // Alternately the first and the last version retention would delete: the promotion
        // lands before, during or after retention's work on it.
        let versions = registry.store().list_versions().await.expect("list");
        let excess = versions.len() - KEEP;
        let unprotected: Vec<&String> = versions[..excess]
            .iter()
            .filter(|v| {
                **v != pointer.champion.version && Some(*v) != pointer.champion.previous.as_ref()
            })
            .collect();
        let victim = if round % 4 < 2 {
            unprotected.last()
        } else {
            unprotected.first()
        }
        .map(|v| v.to_string())
        .expect("an unprotected old version");
        // Alternate which of the two sends its first request first.
        let (retained, promoted) = if round % 2 == 0 {
            tokio::join!(registry.retain(KEEP), registry.promote(&victim))
        } else {
            let (promoted, retained) =
                tokio::join!(registry.promote(&victim), registry.retain(KEEP));
            (retained, promoted)
        };
        retained.expect("retention succeeds");
        match promoted {
            Ok(pointer) => {
                won += 1;
                assert_eq!(pointer.champion.version, victim);
                registry
                    .load(&victim)
                    .await
                    .unwrap_or_else(|e| panic!("the promoted {victim} was deleted: {e}"));
            }
            Err(RegistryError::DeletedWhilePromoting(_) | RegistryError::VersionNotFound(_)) => {
                refused += 1
            }
            Err(other) => panic!("the promotion failed uncleanly: {other}"),
        }
        let now = registry
            .champion()
            .await
            .expect("pointer")
            .expect("champion");
        let servable = registry
            .servable(&now.champion)
            .await
            .expect("the champion serves");
        assert_eq!(servable.fallback_reason, None, "{:?}", now.champion);
        // Back to the newest, so the next round races again.
        registry.promote(&newest).await.expect("roll forward");
    }
    println!("rollbacks during retention: {won} won, {refused} refused cleanly");
    assert_eq!(won + refused, ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_racing_retention_on_a_local_store() {
    let dir = tempfile::tempdir().expect("store");
    let registry = Registry::new(Store::Local(LocalStore::new(dir.path())));
    rollbacks_race_retention(&registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn rollbacks_racing_retention_on_a_blob_store() {
    let azurite = Azurite::start();
    let url = azurite.container_url("models");
    let mut settings = Settings::from_env(Some(&url)).expect("settings");
    settings.storage_connection_string = Some(DEV_STORAGE.into());
    settings.storage_ca_file = None;
    let registry = open_registry(&settings).await.expect("registry");
    rollbacks_race_retention(&registry).await;
}
