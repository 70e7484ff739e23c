//! End to end with Blob Storage: the real binary, two instances sharing one Azurite container,
//! the test playing the Functions host (blob-trigger envelopes, HTTP calls).
//!
//! Azurite comes from `bash scripts/install-tools.sh node`; without it these tests fail.

mod azurite;
mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sommelier::config::Settings;
use sommelier::registry::blob::{BlobUrl, Container, WriteCondition};
use sommelier::registry::{ModelStore, Registry};
use sommelier::stores::open_registry;

use azurite::Azurite;
use common::{bundled_csv, client, wine, Server};

const DEV_STORAGE: &str = "UseDevelopmentStorage=true";

struct Cloud {
    azurite: Azurite,
    models: String,
    training: String,
    dir: tempfile::TempDir,
}

impl Cloud {
    fn start() -> Cloud {
        let azurite = Azurite::start();
        Cloud {
            models: azurite.container_url("models"),
            training: azurite.container_url("training-data"),
            azurite,
            dir: tempfile::tempdir().expect("workdir"),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SOMMELIER_STORE", self.models.clone()),
            ("SOMMELIER_STORAGE_CONNECTION_STRING", DEV_STORAGE.into()),
            ("SOMMELIER_TRAINING_DATA", self.training.clone()),
            ("SOMMELIER_MODEL_REFRESH_SECONDS", "1".into()),
        ]
    }

    fn instance(&self) -> Server {
        Server::start(self.dir.path(), &self.env())
    }

    fn settings(&self) -> Settings {
        let mut settings = Settings::from_env(Some(&self.models)).expect("settings");
        settings.storage_connection_string = Some(DEV_STORAGE.into());
        settings.storage_ca_file = None;
        settings.training_data = Some(self.training.clone());
        settings
    }

    async fn registry(&self) -> Registry {
        open_registry(&self.settings()).await.expect("registry")
    }

    fn uploads(&self) -> Container {
        Container::open(&BlobUrl::parse(&self.training).unwrap(), &self.settings()).unwrap()
    }

    fn models(&self) -> Container {
        Container::open(&BlobUrl::parse(&self.models).unwrap(), &self.settings()).unwrap()
    }
}

/// The bundled data with the quality column rotated: a deliberately poor first champion, so
/// that a model trained on the real data is promoted.
fn scrambled_csv() -> Vec<u8> {
    let text = String::from_utf8(bundled_csv()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let qualities: Vec<&str> = rows.iter().map(|r| r.rsplit(',').next().unwrap()).collect();
    let mut out = header + "\n";
    for (i, row) in rows.iter().enumerate() {
        let features = &row[..row.rfind(',').unwrap()];
        out.push_str(&format!(
            "{features},{}\n",
            qualities[(i + 397) % qualities.len()]
        ));
    }
    out.into_bytes()
}

/// A host string as the host double-encodes it (`"\"value\""`).
fn host_string(value: &str) -> Value {
    Value::String(serde_json::to_string(value).unwrap())
}

/// The blob-trigger envelope the host sends for `training-data/{name}`.
fn blob_envelope(cloud: &Cloud, name: &str, content: &[u8], etag: Option<&str>) -> Value {
    let uri = format!("{}/{name}", cloud.training);
    json!({"Data": {"csv": base64::engine::general_purpose::STANDARD.encode(content)},
        "Metadata": {
            "Uri": host_string(&uri),
            "Properties": {"ContentLength": content.len(), "ContentType": "text/csv",
                "ETag": etag.map_or(json!({}), |e| json!(e)), "BlobType": 0, "Metadata": {}},
            "Metadata": {},
            "name": host_string(name),
            "sys": {"MethodName": "retrain-on-upload", "UtcNow": "2026-11-26T06:00:00Z", "RandGuid": "1"}}})
}

/// Uploads a blob, then delivers its trigger envelope to `server`; returns the HTTP status and
/// the envelope's `ReturnValue`.
async fn upload_and_deliver(
    cloud: &Cloud,
    server: &Server,
    name: &str,
    content: &[u8],
) -> (u16, Value) {
    let etag = cloud
        .uploads()
        .write(
            name,
            content.to_vec(),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .expect("upload");
    deliver(server, &blob_envelope(cloud, name, content, Some(&etag))).await
}

async fn deliver(server: &Server, envelope: &Value) -> (u16, Value) {
    let response = client()
        .post(server.url("/retrain-on-upload"))
        .header(
            "X-Azure-Functions-InvocationId",
            "7d5a2c8e-0000-4000-8000-000000000001",
        )
        .json(envelope)
        .send()
        .await
        .expect("the envelope is answered");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("envelope JSON");
    (status, body["ReturnValue"].clone())
}

async fn predict_version(server: &Server) -> Option<String> {
    let response = client()
        .post(server.url("/api/predict"))
        .json(&wine())
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    body["model_version"].as_str().map(str::to_string)
}

/// Polls until the instance serves `version`.
async fn wait_serving(server: &Server, version: &str) {
    let started = Instant::now();
    loop {
        if predict_version(server).await.as_deref() == Some(version) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "instance still serves {:?}, not {version}",
            predict_version(server).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn health(server: &Server) -> (u16, Value) {
    let response = client()
        .get(server.url("/api/health"))
        .send()
        .await
        .expect("health");
    let status = response.status().as_u16();
    (status, response.json().await.expect("health JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_retrains_every_instance_follows_and_rollback_works() {
    let cloud = Cloud::start();
    cloud
        .uploads()
        .write(
            "first.csv",
            scrambled_csv(),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .unwrap();
    let a = cloud.instance();
    let first = a.wait_healthy(&client()).await["model_version"]
        .as_str()
        .expect("a first model trained on the newest upload")
        .to_string();
    let b = cloud.instance();
    b.wait_healthy(&client()).await;
    wait_serving(&b, &first).await;
    let registry = cloud.registry().await;
    let card = registry.card(&first).await.unwrap();
    assert_eq!(card.source.name, "first.csv");
    assert!(
        card.source.etag.is_some(),
        "the card records the blob's ETag"
    );

    // An upload delivered to instance A: a new version, promoted.
    let csv = bundled_csv();
    let (status, answer) = upload_and_deliver(&cloud, &a, "wines.csv", &csv).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "promoted", "{answer}");
    let second = answer["report"]["version"].as_str().unwrap().to_string();
    assert!(registry
        .store()
        .list_versions()
        .await
        .unwrap()
        .contains(&second));
    assert_eq!(
        registry.champion().await.unwrap().unwrap().champion.version,
        second
    );
    // Instance B picks it up by itself (pointer refresh).
    wait_serving(&b, &second).await;

    // The host redelivers the same blob: no second version.
    let versions_before = registry.store().list_versions().await.unwrap();
    let (status, again) = deliver(&a, &blob_envelope(&cloud, "wines.csv", &csv, None)).await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_eq!(
        registry.store().list_versions().await.unwrap(),
        versions_before
    );

    // Rollback through instance B's HTTP API; instance A follows.
    let response = client()
        .post(b.url(&format!("/api/models/{first}/promote")))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap_or_default()
    );
    wait_serving(&b, &first).await;
    wait_serving(&a, &first).await;
    let pointer = registry.champion().await.unwrap().unwrap();
    assert_eq!(pointer.champion.version, first);
    assert_eq!(pointer.champion.previous.as_deref(), Some(second.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_rejected_with_a_report_and_never_move_the_champion() {
    let cloud = Cloud::start();
    cloud
        .uploads()
        .write(
            "base.csv",
            bundled_csv(),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .unwrap();
    let server = cloud.instance();
    let champion = server.wait_healthy(&client()).await["model_version"]
        .as_str()
        .unwrap()
        .to_string();
    let registry = cloud.registry().await;
    let versions = registry.store().list_versions().await.unwrap();

    let csv = String::from_utf8(bundled_csv()).unwrap();
    let header_only = csv.lines().next().unwrap().to_string() + "\n";
    let missing_ph = csv.replace("\"pH\",", "").into_bytes();
    let mut fifty_mb = Vec::with_capacity(50 * 1024 * 1024);
    while fifty_mb.len() < 50 * 1024 * 1024 {
        fifty_mb.extend_from_slice(b"\x00\xff not a csv at all \x01\x02;;,,\n");
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.csv", Vec::new()),
        ("header-only.csv", header_only.into_bytes()),
        ("missing-ph.csv", missing_ph),
        ("garbage.csv", b"this is, not\na wine file".to_vec()),
        ("fifty-mb.csv", fifty_mb),
    ];
    for (name, content) in &cases {
        let (status, answer) = upload_and_deliver(&cloud, &server, name, content).await;
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!(answer["status"], "rejected", "{name}: {answer}");
        let report = cloud
            .uploads()
            .read(&format!("{name}.rejected.json"))
            .await
            .unwrap_or_else(|e| panic!("no report for {name}: {e}"));
        let report: Value = serde_json::from_slice(&report.bytes).unwrap();
        assert_eq!(report["blob"], *name, "{report}");
        assert!(
            !report["reasons"].as_array().unwrap().is_empty(),
            "{report}"
        );
        // The report itself arrives as an upload: ignored, no report on the report.
        let report_name = format!("{name}.rejected.json");
        let (status, ignored) =
            deliver(&server, &blob_envelope(&cloud, &report_name, b"{}", None)).await;
        assert_eq!(status, 200);
        assert_eq!(ignored["status"], "ignored", "{ignored}");
    }
    assert!(!cloud
        .uploads()
        .exists("empty.csv.rejected.json.rejected.json")
        .await
        .unwrap());
    assert_eq!(
        registry.champion().await.unwrap().unwrap().champion.version,
        champion
    );
    assert_eq!(registry.store().list_versions().await.unwrap(), versions);
    assert_eq!(
        predict_version(&server).await.as_deref(),
        Some(champion.as_str())
    );
    assert_eq!(health(&server).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_survives_a_store_outage_and_a_corrupt_champion() {
    let mut cloud = Cloud::start();
    cloud
        .uploads()
        .write(
            "base.csv",
            bundled_csv(),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .unwrap();
    let server = cloud.instance();
    let champion = server.wait_healthy(&client()).await["model_version"]
        .as_str()
        .unwrap()
        .to_string();

    // Store down: predictions continue from memory, health says degraded, uploads ask for a
    // retry (non-2xx).
    cloud.azurite.stop();
    let started = Instant::now();
    loop {
        let (status, body) = health(&server).await;
        assert_eq!(status, 200, "{body}");
        if body["degraded"].is_string() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "health never reported the outage: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        predict_version(&server).await.as_deref(),
        Some(champion.as_str())
    );
    let csv = bundled_csv();
    let mut changed = csv.clone();
    changed.extend_from_slice(b"7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5\n");
    let (status, answer) =
        deliver(&server, &blob_envelope(&cloud, "late.csv", &changed, None)).await;
    assert!(
        status >= 500,
        "a transient failure must make the host retry: {status} {answer}"
    );

    // Store back: recovery without restarting sommelier, nothing partial visible.
    cloud.azurite.restart();
    let started = Instant::now();
    loop {
        let (status, body) = health(&server).await;
        if status == 200 && body["degraded"].is_null() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "health did not recover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registry = cloud.registry().await;
    for version in registry.store().list_versions().await.unwrap() {
        registry
            .load(&version)
            .await
            .unwrap_or_else(|e| panic!("version {version} is listed but incomplete: {e}"));
    }

    // The host retries the upload: now it trains.
    let (status, answer) =
        deliver(&server, &blob_envelope(&cloud, "late.csv", &changed, None)).await;
    assert_eq!(status, 200, "{answer}");
    let trained = answer["report"]["version"].as_str().unwrap().to_string();

    // A corrupt model under the pointer: refused, the instance keeps serving what it had.
    let serving = predict_version(&server).await.unwrap();
    cloud
        .models()
        .write(
            &format!("{trained}/model.bin"),
            b"corrupt".to_vec(),
            WriteCondition::Overwrite,
            "application/octet-stream",
        )
        .await
        .unwrap();
    let pointer = registry.champion().await.unwrap().unwrap();
    let target = if pointer.champion.version == trained {
        // Already champion: move the pointer away and back so the instance reloads it.
        registry.promote(&champion).await.unwrap();
        wait_serving(&server, &champion).await;
        champion.clone()
    } else {
        serving.clone()
    };
    registry.promote(&trained).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        predict_version(&server).await.as_deref(),
        Some(target.as_str())
    );
    let (status, body) = health(&server).await;
    assert_eq!(status, 200, "{body}");
    let error = registry.load(&trained).await.expect_err("corrupt model");
    assert!(error.to_string().contains(&trained), "{error}");
}

/// The first `n` data rows of the bundled CSV, with its header.
fn first_rows_csv(n: usize) -> Vec<u8> {
    let text = String::from_utf8(bundled_csv()).unwrap();
    let lines: Vec<&str> = text.lines().take(n + 1).collect();
    (lines.join("\n") + "\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_uploads_are_compared_only_on_rows_neither_model_trained_on() {
    let cloud = Cloud::start();
    cloud
        .uploads()
        .write(
            "first-1200.csv",
            first_rows_csv(1200),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .unwrap();
    let server = cloud.instance();
    let first = server.wait_healthy(&client()).await["model_version"]
        .as_str()
        .expect("a first model trained on the 1,200 rows")
        .to_string();

    let (status, answer) = upload_and_deliver(&cloud, &server, "all.csv", &bundled_csv()).await;
    assert_eq!(status, 200, "{answer}");
    let report = &answer["report"];
    let comparison = &report["comparison"];
    assert!(comparison.is_object(), "{answer}");

    // Recompute the honest figure: the champion on exactly the rows of the full file that both
    // rules held out, none of which it trained on.
    let registry = cloud.registry().await;
    let champion = registry.load(&first).await.unwrap();
    let challenger = registry
        .load(report["version"].as_str().unwrap())
        .await
        .unwrap();
    let rule = challenger.card.split.expect("split rule on the card");
    assert_eq!(champion.card.split, Some(rule), "same rule on both cards");
    let all = sommelier::model::dataset::read_training_data(&bundled_csv()[..]).unwrap();
    let seen = sommelier::model::dataset::read_training_data(&first_rows_csv(1200)[..]).unwrap();
    let (rows, targets): (Vec<_>, Vec<f64>) = all
        .rows
        .iter()
        .zip(&all.targets)
        .filter(|(row, _)| rule.holds_out(row))
        .map(|(row, target)| (*row, *target))
        .unzip();
    for row in &rows {
        assert!(
            !seen.rows.iter().any(|r| r == row && !rule.holds_out(r)),
            "a compared row was in the champion's training rows"
        );
    }
    assert_eq!(comparison["rows"].as_u64(), Some(rows.len() as u64));
    let predictions = champion.predict(&rows).unwrap();
    let honest = sommelier::model::metrics::Metrics::compute(&predictions, &targets).rmse;
    let reported = comparison["champion_rmse"].as_f64().unwrap();
    assert!((reported - honest).abs() < 1e-9, "{reported} vs {honest}");
    assert!(honest > 0.3, "not an RMSE on memorised rows: {honest}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("neither model trained on"),
        "{answer}"
    );
    assert_eq!(
        challenger.card.comparison.map(|c| c.rows),
        Some(rows.len()),
        "the card carries the comparison"
    );
}
