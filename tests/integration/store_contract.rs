//! The [`ModelStore`] contract, written once and run against every store: the local directory
//! (in the fast tier) and Blob Storage on an Azurite the tests start (ignored without it).
//!
//! Covered: complete versions only are listed and served, names cannot escape the store,
//! the champion pointer moves only by compare-and-swap (one winner among concurrent writers),
//! cards can be withdrawn and restored, model lengths, and claims (create-only, replaced or
//! deleted only under their tag, kept apart from versions).
//!
//! Not here: what one store alone does (the local pointer's repair, leftovers' sweep, Blob
//! Storage's credentials and outages); those tests sit beside the store's code or in
//! `blob_store`.

use sommelier::config::Settings;
use sommelier::registry::blob::{BlobUrl, Container, WriteCondition};
use sommelier::registry::open_registry;
use sommelier::registry::{LocalStore, ModelStore, PointerRead, Store, StoreError};

use crate::support::azurite::{Azurite, DEV_STORAGE};
use crate::support::models::champion;

/// A store under test, and what the contract needs that the trait cannot do.
pub struct Subject {
    store: Store,
    backing: Backing,
}

enum Backing {
    Local(tempfile::TempDir),
    Azurite {
        container: Container,
        _azurite: Azurite,
    },
}

impl Subject {
    /// An empty local store in a temporary directory.
    pub async fn local() -> Subject {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Subject {
            store: Store::Local(LocalStore::new(dir.path())),
            backing: Backing::Local(dir),
        }
    }

    /// An empty Blob Storage container on a fresh Azurite.
    pub async fn azurite() -> Subject {
        let azurite = Azurite::start();
        let url = azurite.container_url("models");
        let mut settings = Settings::from_env(Some(&url)).expect("settings");
        settings.storage_connection_string = Some(DEV_STORAGE.into());
        settings.identity_client_id = None;
        settings.storage_ca_file = None;
        settings.training_data = None;
        let registry = open_registry(&settings)
            .await
            .expect("open the blob registry");
        let container = Container::open(&BlobUrl::parse(&url).expect("container URL"), &settings)
            .expect("container");
        Subject {
            store: registry.store().clone(),
            backing: Backing::Azurite {
                container,
                _azurite: azurite,
            },
        }
    }

    /// Leaves what a writer that died after the model and before the card leaves behind.
    async fn leave_model_without_card(&self, version: &str) {
        match &self.backing {
            Backing::Local(dir) => {
                let version_dir = dir.path().join(version);
                std::fs::create_dir_all(&version_dir).expect("version directory");
                std::fs::write(version_dir.join("model.bin"), b"half").expect("model file");
            }
            Backing::Azurite { container, .. } => {
                container
                    .write(
                        &format!("{version}/model.bin"),
                        b"half".to_vec(),
                        WriteCondition::Overwrite,
                        "application/octet-stream",
                    )
                    .await
                    .expect("a model blob");
            }
        }
    }

    /// How the store's location must end (it names the place, never a credential).
    fn location_suffix(&self) -> String {
        match &self.backing {
            Backing::Local(dir) => dir.path().display().to_string(),
            Backing::Azurite { .. } => "/devstoreaccount1/models".to_string(),
        }
    }
}

pub async fn versions_are_listed_only_when_complete(subject: Subject) {
    let store = &subject.store;
    assert!(store.list_versions().await.unwrap().is_empty());
    store
        .put_version("v2", b"m".to_vec(), b"{}".to_vec())
        .await
        .unwrap();
    store
        .put_version("v1", b"m".to_vec(), b"{}".to_vec())
        .await
        .unwrap();
    subject.leave_model_without_card("v3").await;
    assert_eq!(store.list_versions().await.unwrap(), vec!["v1", "v2"]);
    assert!(matches!(
        store.put_version("v1", vec![], vec![]).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.get_model("v1").await.unwrap(), b"m");
    assert_eq!(store.get_card("v2").await.unwrap(), b"{}");
    assert!(matches!(
        store.get_model("v9").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_model("../etc").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.write_champion(&champion("v3"), None).await,
        Err(StoreError::NotFound(_))
    ));

    store.delete_version("v2").await.unwrap();
    assert_eq!(store.list_versions().await.unwrap(), vec!["v1"]);
    assert!(matches!(
        store.delete_version("v2").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.location().ends_with(&subject.location_suffix()));
}

pub async fn champion_pointer_is_compare_and_swap(subject: Subject) {
    let store = &subject.store;
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
    assert!(matches!(
        store.write_champion(&champion("ghost"), None).await,
        Err(StoreError::NotFound(_))
    ));

    let first = store.write_champion(&champion("v1"), None).await.unwrap();
    // Create-only on an existing pointer (Blob Storage: If-None-Match: *, answered 409).
    assert!(matches!(
        store.write_champion(&champion("v2"), None).await,
        Err(StoreError::Conflict)
    ));
    // A read with the current tag (Blob Storage: a conditional GET answered 304).
    assert_eq!(
        store.read_champion(Some(&first)).await.unwrap(),
        PointerRead::Unchanged
    );
    let second = store
        .write_champion(&champion("v2"), Some(&first))
        .await
        .unwrap();
    assert_ne!(first, second);
    // A stale tag (Blob Storage: If-Match answered 412).
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

    // Eight writers holding the same tag: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let expected = second.clone();
        tasks.push(tokio::spawn(async move {
            let version = if i % 2 == 0 { "v1" } else { "v2" };
            store
                .write_champion(&champion(version), Some(&expected))
                .await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1, "exactly one compare-and-swap may succeed");
}

pub async fn a_withdrawn_card_hides_the_version_until_it_is_restored(subject: Subject) {
    let store = &subject.store;
    store
        .put_version("v1", b"m".to_vec(), b"{\"a\":1}".to_vec())
        .await
        .unwrap();
    store.delete_card("v1").await.unwrap();
    assert!(store.list_versions().await.unwrap().is_empty());
    assert!(matches!(
        store.write_champion(&champion("v1"), None).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.get_model("v1").await.unwrap(),
        b"m",
        "the model stays"
    );

    store
        .restore_card("v1", b"{\"a\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(store.list_versions().await.unwrap(), vec!["v1"]);
    assert_eq!(store.get_card("v1").await.unwrap(), b"{\"a\":1}");
    assert!(matches!(
        store.restore_card("v1", b"{}".to_vec()).await,
        Err(StoreError::AlreadyExists(_))
    ));
}

pub async fn model_lengths_are_read_without_downloading(subject: Subject) {
    let store = &subject.store;
    store
        .put_version("v1", b"m".to_vec(), b"{}".to_vec())
        .await
        .unwrap();
    store
        .put_version("v2", vec![7; 1000], b"{}".to_vec())
        .await
        .unwrap();
    let lengths = store.model_lengths().await.unwrap();
    assert_eq!(lengths.get("v1"), Some(&1), "{lengths:?}");
    assert_eq!(lengths.get("v2"), Some(&1000), "{lengths:?}");
}

pub async fn claims_change_only_under_their_tag(subject: Subject) {
    let store = &subject.store;
    assert!(store.list_claims().await.unwrap().is_empty());
    assert_eq!(store.read_claim("k1").await.unwrap(), None);

    let created = store.create_claim("k1", b"a".to_vec()).await.unwrap();
    assert!(matches!(
        store.create_claim("k1", b"b".to_vec()).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.read_claim("k1").await.unwrap(),
        Some((b"a".to_vec(), created.clone()))
    );

    let replaced = store
        .replace_claim("k1", b"b".to_vec(), &created)
        .await
        .unwrap();
    assert_ne!(replaced, created);
    assert!(matches!(
        store.replace_claim("k1", b"c".to_vec(), &created).await,
        Err(StoreError::Conflict)
    ));
    assert!(!store.delete_claim("k1", &created).await.unwrap());
    assert_eq!(
        store.read_claim("k1").await.unwrap(),
        Some((b"b".to_vec(), replaced.clone()))
    );

    store.create_claim("k2", b"x".to_vec()).await.unwrap();
    assert_eq!(store.list_claims().await.unwrap(), vec!["k1", "k2"]);
    assert!(
        store.list_versions().await.unwrap().is_empty(),
        "claims are not versions"
    );

    assert!(store.delete_claim("k1", &replaced).await.unwrap());
    assert_eq!(store.read_claim("k1").await.unwrap(), None);
    assert!(matches!(
        store.replace_claim("k1", b"d".to_vec(), &replaced).await,
        Err(StoreError::Conflict)
    ));
    assert!(!store.delete_claim("k1", &replaced).await.unwrap());
    assert_eq!(store.list_claims().await.unwrap(), vec!["k2"]);
}

/// One test per contract function, against the store `$open` makes.
macro_rules! store_contract_tests {
    ($store:ident, $open:expr $(, #[$attribute:meta])*) => {
        mod $store {
            use super::Subject;

            #[tokio::test]
            $(#[$attribute])*
            async fn versions_are_listed_only_when_complete() {
                super::versions_are_listed_only_when_complete($open.await).await;
            }

            #[tokio::test]
            $(#[$attribute])*
            async fn champion_pointer_is_compare_and_swap() {
                super::champion_pointer_is_compare_and_swap($open.await).await;
            }

            #[tokio::test]
            $(#[$attribute])*
            async fn a_withdrawn_card_hides_the_version_until_it_is_restored() {
                super::a_withdrawn_card_hides_the_version_until_it_is_restored($open.await)
                    .await;
            }

            #[tokio::test]
            $(#[$attribute])*
            async fn model_lengths_are_read_without_downloading() {
                super::model_lengths_are_read_without_downloading($open.await).await;
            }

            #[tokio::test]
            $(#[$attribute])*
            async fn claims_change_only_under_their_tag() {
                super::claims_change_only_under_their_tag($open.await).await;
            }
        }
    };
}

store_contract_tests!(local_store, Subject::local());
store_contract_tests!(blob_store_on_azurite, Subject::azurite(), #[ignore = "needs azurite"]);
