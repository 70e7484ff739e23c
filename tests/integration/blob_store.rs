//! The Blob Storage model store against a real Azurite that the tests start themselves: the
//! store contract, compare-and-swap under concurrency, faults (wrong key, store stopped
//! mid-write, corrupt model), retention, training data and rejection reports, and managed
//! identity over HTTPS with a local fake identity endpoint.
//!
//! Azurite comes from `bash scripts/install-tools.sh node`; these tests are ignored without
//! `--include-ignored` (`scripts/test` passes it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;
use sommelier::config::Settings;
use sommelier::model::dataset::read_training_data;
use sommelier::registry::blob::{BlobUrl, Container, WriteCondition};
use sommelier::registry::open_registry;
use sommelier::registry::{ModelStore, PointerRead, Registry, RegistryError, StoreError};
use sommelier::retraining::{train_and_publish, PromotionPolicy};
use sommelier::sources::{load_training_data, report_on_upload, TrainingSource, UploadReport};

use crate::support::azurite::{Azurite, DEV_STORAGE};
use crate::support::models::{champion, elastic_net_options, renamed, trained_model_bytes};
use crate::support::{bundled_csv, free_port};

fn settings(store_url: &str) -> Settings {
    let mut settings = Settings::from_env(Some(store_url)).expect("settings");
    settings.storage_connection_string = Some(DEV_STORAGE.into());
    settings.identity_client_id = None;
    settings.storage_ca_file = None;
    settings.training_data = None;
    settings
}

async fn registry(settings: &Settings) -> Registry {
    open_registry(settings)
        .await
        .expect("open the blob registry")
}

fn container(settings: &Settings, url: &str) -> Container {
    Container::open(&BlobUrl::parse(url).expect("container URL"), settings).expect("container")
}

fn policy(force: bool) -> PromotionPolicy {
    PromotionPolicy {
        tolerance: 0.01,
        min_comparable_rows: 30,
        force,
        keep_versions: 50,
        max_label_shift: sommelier::config::defaults::MAX_LABEL_SHIFT,
    }
}

#[tokio::test]
#[ignore = "needs azurite"]
async fn concurrent_retrains_end_with_one_complete_champion() {
    let azurite = Azurite::start();
    let settings = settings(&azurite.container_url("models"));
    let registry = registry(&settings).await;
    let csv = bundled_csv();

    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let registry = registry.clone();
        let dataset = read_training_data(&csv[..]).expect("bundled data parses");
        tasks.push(tokio::spawn(async move {
            train_and_publish(
                &registry,
                dataset,
                elastic_net_options(),
                policy(i % 2 == 0),
            )
            .await
        }));
    }
    let mut trained = Vec::new();
    for task in tasks {
        let retrained = task
            .await
            .unwrap()
            .expect("training and publishing succeed");
        trained.push(retrained.report.version.clone());
    }

    let versions = registry.store().list_versions().await.unwrap();
    for version in &trained {
        assert!(
            versions.contains(version),
            "version {version} was lost: {versions:?}"
        );
    }
    let pointer = registry.champion().await.unwrap().expect("a champion");
    assert!(trained.contains(&pointer.champion.version));
    let model = registry
        .load(&pointer.champion.version)
        .await
        .expect("the champion is a complete, loadable version");
    assert_eq!(model.card.version, pointer.champion.version);
    if let Some(previous) = &pointer.champion.previous {
        assert!(versions.contains(previous));
    }
}

#[tokio::test]
#[ignore = "needs azurite"]
async fn a_wrong_shared_key_is_refused_without_revealing_it() {
    let azurite = Azurite::start();
    let url = azurite.container_url("models");
    let mut wrong = settings(&url);
    let key = STANDARD.encode([7u8; 64]);
    wrong.storage_connection_string = Some(format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1",
        azurite.port
    ));
    // A champion exists (written with the right key).
    let good = registry(&settings(&url)).await;
    let dataset = read_training_data(&bundled_csv()[..]).unwrap();
    let champion = train_and_publish(&good, dataset, elastic_net_options(), policy(false))
        .await
        .unwrap()
        .report
        .version;

    let registry = registry(&wrong).await;
    // A 403 on the champion read is a configuration error, not an unusable champion.
    let error = registry.champion().await.expect_err("refused");
    assert!(
        matches!(
            &error,
            RegistryError::Store(e @ StoreError::Unauthorized(_)) if e.is_configuration()
        ),
        "{error}"
    );
    let dataset = read_training_data(&bundled_csv()[..]).unwrap();
    let error = train_and_publish(&registry, dataset, elastic_net_options(), policy(false))
        .await
        .err()
        .expect("no training is published with refused credentials");
    assert!(error.is_configuration() && !error.is_transient(), "{error}");
    assert_eq!(
        good.champion().await.unwrap().unwrap().champion.version,
        champion,
        "no promotion"
    );

    let error = registry
        .store()
        .put_version("v1", b"m".to_vec(), b"{}".to_vec())
        .await
        .expect_err("a wrong key must be refused");
    let message = error.to_string();
    assert!(
        !error.is_transient() && error.is_configuration(),
        "{message}"
    );
    assert!(message.contains("403"), "{message}");
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains(&key), "the key leaked: {message}");
    assert!(!format!("{error:?}").contains(&key));

    // Another account's connection string is refused before any request.
    let mut other = settings(&url);
    other.storage_connection_string = Some(format!("AccountName=someoneelse;AccountKey={key}"));
    let error = open_registry(&other).await.expect_err("account mismatch");
    assert!(error.to_string().contains("someoneelse"), "{error}");
    assert!(!error.to_string().contains(&key));
}

#[tokio::test]
#[ignore = "needs azurite"]
async fn a_stopped_store_is_unavailable_and_nothing_partial_appears() {
    let mut azurite = Azurite::start();
    let url = azurite.container_url("models");
    let settings = settings(&url);
    let registry = registry(&settings).await;
    let store = registry.store();
    store
        .put_version("v1", b"m1".to_vec(), b"{}".to_vec())
        .await
        .unwrap();
    let tag = store.write_champion(&champion("v1"), None).await.unwrap();

    // Stopped in the middle of writing a large version.
    let big: Vec<u8> = (0..40 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let store = store.clone();
        let big = big.clone();
        tokio::spawn(async move { store.put_version("v2", big, b"{}".to_vec()).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    azurite.stop();
    let written = writer.await.unwrap();
    if let Err(error) = &written {
        assert!(
            error.is_transient(),
            "expected a transient error, got {error}"
        );
    }

    // While stopped: every call fails fast and says the store is unavailable.
    let started = Instant::now();
    for result in [
        store.list_versions().await.map(|_| ()),
        store.read_champion(Some(&tag)).await.map(|_| ()),
        store.put_version("v3", vec![1], b"{}".to_vec()).await,
    ] {
        let error = result.expect_err("the store is down");
        assert!(error.is_transient(), "{error}");
        assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failing took {:?}",
        started.elapsed()
    );

    // Restarted: the same store object recovers; only complete versions are visible.
    azurite.restart();
    let versions = store.list_versions().await.unwrap();
    assert!(!versions.contains(&"v3".to_string()));
    if versions.contains(&"v2".to_string()) {
        assert!(written.is_ok(), "v2 visible although its write failed");
        assert_eq!(store.get_model("v2").await.unwrap(), big);
    }
    assert!(versions.contains(&"v1".to_string()));
    assert_eq!(
        store.read_champion(Some(&tag)).await.unwrap(),
        PointerRead::Unchanged,
        "the pointer must not have moved"
    );
}

#[tokio::test]
#[ignore = "needs azurite"]
async fn a_corrupt_model_under_the_champion_is_refused_clearly() {
    let azurite = Azurite::start();
    let url = azurite.container_url("models");
    let settings = settings(&url);
    let registry = registry(&settings).await;
    let dataset = read_training_data(&bundled_csv()[..]).unwrap();
    let retrained = train_and_publish(&registry, dataset, elastic_net_options(), policy(false))
        .await
        .unwrap();
    let version = retrained.report.version.clone();
    assert!(retrained.report.promoted);
    registry
        .load(&version)
        .await
        .expect("the stored model loads");

    container(&settings, &url)
        .write(
            &format!("{version}/model.bin"),
            b"definitely not a model".to_vec(),
            WriteCondition::Overwrite,
            "application/octet-stream",
        )
        .await
        .unwrap();
    let pointer = registry.champion().await.unwrap().expect("champion");
    assert_eq!(pointer.champion.version, version);
    match registry.load(&version).await {
        Err(error @ RegistryError::Artifact { .. }) => {
            let message = error.to_string();
            assert!(message.contains(&version), "{message}");
        }
        Err(other) => panic!("expected an artifact error, got {other}"),
        Ok(_) => panic!("a corrupt model was loaded"),
    }
}

#[tokio::test]
#[ignore = "needs azurite"]
async fn retention_keeps_the_champion_and_the_previous_champion() {
    let azurite = Azurite::start();
    let settings = settings(&azurite.container_url("models"));
    let registry = registry(&settings).await;
    let store = registry.store();
    let model = trained_model_bytes();
    for v in ["v1", "v2", "v3", "v4", "v5", "v6"] {
        registry.save(&renamed(&model, v)).await.unwrap();
    }
    registry.promote("v1").await.unwrap();
    let pointer = registry.promote("v2").await.unwrap();
    assert_eq!(pointer.champion.previous.as_deref(), Some("v1"));

    let deleted = registry.retain(2).await.unwrap();
    assert_eq!(deleted, vec!["v3", "v4"]);
    assert_eq!(
        store.list_versions().await.unwrap(),
        vec!["v1", "v2", "v5", "v6"]
    );
    registry.load("v1").await.unwrap();
    registry.load("v2").await.unwrap();
    assert!(matches!(
        store.get_model("v3").await,
        Err(StoreError::NotFound(_))
    ));

    // Rolling back to the previous champion is one call and it still exists.
    let rolled_back = registry.promote("v1").await.unwrap();
    assert_eq!(rolled_back.champion.version, "v1");
    assert_eq!(rolled_back.champion.previous.as_deref(), Some("v2"));

    // A version that does not load is never promoted.
    store
        .put_version("v7", b"not a model".to_vec(), b"{}".to_vec())
        .await
        .unwrap();
    let error = registry.promote("v7").await.expect_err("refused");
    assert!(error.to_string().contains("v7"), "{error}");
    assert_eq!(
        registry.champion().await.unwrap().unwrap().champion.version,
        "v1"
    );
}

#[tokio::test]
#[ignore = "needs azurite"]
async fn training_data_is_the_newest_upload_and_rejections_are_reported() {
    let azurite = Azurite::start();
    let data_url = azurite.container_url("training-data");
    let mut settings = settings(&azurite.container_url("models"));
    settings.training_data = Some(data_url.clone());
    let uploads = container(&settings, &data_url);

    let source = TrainingSource::from_settings(&settings);
    assert!(matches!(source, TrainingSource::BlobContainer(_)));
    assert!(matches!(
        load_training_data(&settings, &source).await,
        Err(StoreError::NotFound(_))
    ));

    uploads
        .write(
            "old.csv",
            b"old".to_vec(),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let etag = uploads
        .write(
            "new data.csv",
            b"new".to_vec(),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = json!({"blob": "bad.csv", "reasons": ["column `pH` missing"]});
    report_on_upload(&settings, "bad.csv", UploadReport::Rejected, &report)
        .await
        .unwrap();

    // A deployment check and its report are newer still: neither is training data.
    uploads
        .write(
            "checks/deploy.csv",
            b"check".to_vec(),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .unwrap();
    report_on_upload(
        &settings,
        "checks/deploy.csv",
        UploadReport::Checked,
        &json!({"status": "checked"}),
    )
    .await
    .unwrap();
    assert!(uploads
        .exists("checks/deploy.csv.checked.json")
        .await
        .unwrap());

    // The reports are newer, but they are not training data.
    let data = load_training_data(&settings, &source).await.unwrap();
    assert_eq!(data.bytes, b"new");
    assert_eq!(data.source.name, "new data.csv");
    assert_eq!(data.source.etag.as_deref(), Some(etag.as_str()));

    let stored = uploads.read("bad.csv.rejected.json").await.unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&stored.bytes).unwrap();
    assert_eq!(stored, report);
    // A report on a report would retrigger the upload function forever: never written.
    report_on_upload(
        &settings,
        "bad.csv.rejected.json",
        UploadReport::Rejected,
        &report,
    )
    .await
    .unwrap();
    assert!(!uploads
        .exists("bad.csv.rejected.json.rejected.json")
        .await
        .unwrap());

    // A blob URL names one blob.
    let one = TrainingSource::BlobContainer(format!("{data_url}/old.csv"));
    assert_eq!(
        load_training_data(&settings, &one).await.unwrap().bytes,
        b"old"
    );

    // Without blob training data, reporting is a no-op.
    let mut local = settings.clone();
    local.training_data = None;
    report_on_upload(&local, "x.csv", UploadReport::Rejected, &report)
        .await
        .unwrap();
    assert!(!uploads.exists("x.csv.rejected.json").await.unwrap());
}

/// Requests seen by the fake identity endpoint: request line and headers.
type Seen = Arc<Mutex<Vec<String>>>;

fn jwt(audience: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "aud": audience,
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000001/",
        "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
        "oid": "00000000-0000-0000-0000-000000000002",
        "tid": "00000000-0000-0000-0000-000000000001",
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!(
        "{header}.{claims}.{}",
        URL_SAFE_NO_PAD.encode(b"unsigned-test-signature")
    )
}

/// A local stand-in for the Functions host's identity endpoint (`IDENTITY_ENDPOINT`).
async fn fake_identity_endpoint(audience: &'static str) -> (u16, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            record
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request).into_owned());
            let expires = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600;
            let body = json!({
                "access_token": jwt(audience),
                "expires_on": expires.to_string(),
                "resource": "https://storage.azure.com",
                "token_type": "Bearer",
                "client_id": "test-client-id",
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (port, seen)
}

#[tokio::test]
#[ignore = "needs azurite"]
async fn managed_identity_over_https_never_calls_the_metadata_address() {
    let azurite = Azurite::start_https_oauth();
    let url = azurite.container_url("models");
    let tls = azurite.tls.as_ref().unwrap();
    let (identity_port, seen) = fake_identity_endpoint("https://storage.azure.com").await;
    // The metadata endpoint, were it ever used, is a closed local port here.
    let closed = free_port();
    // Only this test sets these; the other tests use shared keys and never read them.
    std::env::set_var(
        "IDENTITY_ENDPOINT",
        format!("http://127.0.0.1:{identity_port}/msi/token"),
    );
    std::env::set_var("IDENTITY_HEADER", "test-identity-header");
    std::env::set_var("IMDS_ENDPOINT", format!("http://127.0.0.1:{closed}"));
    std::env::set_var(
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        format!("http://127.0.0.1:{closed}"),
    );

    let mut settings = settings(&url);
    settings.storage_connection_string = None;
    settings.identity_client_id = Some("test-client-id".into());
    settings.storage_ca_file = Some(tls.ca.clone());

    // Without the CA the emulator's certificate is not trusted.
    let mut untrusted = settings.clone();
    untrusted.storage_ca_file = None;
    let error = registry(&untrusted)
        .await
        .store()
        .list_versions()
        .await
        .expect_err("an unknown CA must not be trusted");
    assert!(error.is_transient(), "{error}");

    let registry = registry(&settings).await;
    let store = registry.store();
    store
        .put_version("v1", b"m".to_vec(), b"{}".to_vec())
        .await
        .unwrap();
    let tag = store.write_champion(&champion("v1"), None).await.unwrap();
    assert_eq!(
        store.read_champion(Some(&tag)).await.unwrap(),
        PointerRead::Unchanged
    );
    assert_eq!(store.list_versions().await.unwrap(), vec!["v1"]);
    assert_eq!(store.get_model("v1").await.unwrap(), b"m");

    let requests = seen.lock().unwrap().clone();
    assert!(
        !requests.is_empty(),
        "the fake identity endpoint was never called"
    );
    for request in &requests {
        assert!(request.starts_with("GET /msi/token?"), "{request}");
        assert!(
            request.contains("resource=https%3A%2F%2Fstorage.azure.com"),
            "{request}"
        );
        assert!(request.contains("client_id=test-client-id"), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-identity-header: test-identity-header"),
            "{request}"
        );
    }

    // Azurite really checks the token: a token for another audience is refused.
    let (wrong_port, wrong_seen) = fake_identity_endpoint("https://vault.azure.net").await;
    std::env::set_var(
        "IDENTITY_ENDPOINT",
        format!("http://127.0.0.1:{wrong_port}/msi/token"),
    );
    let mut other = settings.clone();
    other.identity_client_id = Some("other-client-id".into());
    let error = open_registry(&other)
        .await
        .unwrap()
        .store()
        .list_versions()
        .await
        .expect_err("a token for another audience must be refused");
    assert!(!wrong_seen.lock().unwrap().is_empty());
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("refused"), "{error}");
}

/// Azurite must be started by the tests themselves and be reachable; also proves that requests
/// signed with the emulator key succeed with blob names that need encoding.
#[tokio::test]
#[ignore = "needs azurite"]
async fn blob_names_with_spaces_and_slashes_round_trip() {
    let azurite = Azurite::start();
    let url = azurite.container_url("training-data");
    let settings = settings(&url);
    let uploads = container(&settings, &url);
    for name in ["a b.csv", "dir/sub dir/c+d.csv", "ünï.csv"] {
        uploads
            .write(
                name,
                name.as_bytes().to_vec(),
                WriteCondition::Overwrite,
                "text/csv",
            )
            .await
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
        assert_eq!(uploads.read(name).await.unwrap().bytes, name.as_bytes());
    }
    let mut names: Vec<String> = uploads
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["a b.csv", "dir/sub dir/c+d.csv", "ünï.csv"]);
    // The raw protocol: anonymous requests are refused.
    let status = reqwest::get(format!("{url}/a%20b.csv"))
        .await
        .unwrap()
        .status();
    assert!(
        status == 403 || status == 404,
        "anonymous read answered {status}"
    );
}
