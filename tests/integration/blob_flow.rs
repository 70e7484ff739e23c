//! End to end with Blob Storage: the real binary, two instances sharing one Azurite container,
//! the test playing the Functions host (blob-trigger envelopes, HTTP calls).
//!
//! Azurite comes from `bash scripts/install-tools.sh node`; these tests are ignored without
//! `--include-ignored` (`scripts/test` passes it).

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sommelier::config::Settings;
use sommelier::registry::blob::{BlobUrl, Container, WriteCondition};
use sommelier::registry::open_registry;
use sommelier::registry::{Champion, ModelStore, Registry};

use crate::support;
use crate::support::azurite::{Azurite, DEV_STORAGE};
use crate::support::{bundled_csv, client, host_string, wine, Server};

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

    /// Puts the bundled data in the training container as `base.csv`, starts an instance
    /// (whose first start trains on it) and waits until it serves: the instance and its
    /// champion's version.
    async fn serving_base_data(&self) -> (Server, String) {
        self.serving_upload("base.csv", bundled_csv()).await
    }

    /// Puts `csv` in the training container as `name`, starts an instance (whose first start
    /// trains on the newest upload) and waits until it serves: the instance and its
    /// champion's version.
    async fn serving_upload(&self, name: &str, csv: Vec<u8>) -> (Server, String) {
        self.uploads()
            .write(name, csv, WriteCondition::Overwrite, "text/csv")
            .await
            .unwrap();
        let server = self.instance();
        let champion = server.wait_healthy(&client()).await["model_version"]
            .as_str()
            .expect("a first model trained on the newest upload")
            .to_string();
        (server, champion)
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

/// Delivers the timer's invocation as the host does; the answer's envelope (status 200).
async fn run_timer(server: &Server) -> Value {
    let timer = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "IsPastDue": false}},
        "Metadata": {}});
    let response = client()
        .post(server.url("/retrain-on-schedule"))
        .json(&timer)
        .send()
        .await
        .expect("timer invocation");
    assert_eq!(response.status(), 200);
    response.json().await.expect("envelope JSON")
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
#[ignore = "needs azurite"]
async fn an_upload_retrains_every_instance_follows_and_rollback_works() {
    let cloud = Cloud::start();
    let (a, first) = cloud.serving_upload("first.csv", scrambled_csv()).await;
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
#[ignore = "needs azurite"]
async fn bad_uploads_are_rejected_with_a_report_and_never_move_the_champion() {
    let cloud = Cloud::start();
    let (server, champion) = cloud.serving_base_data().await;
    let registry = cloud.registry().await;
    let versions = registry.store().list_versions().await.unwrap();

    let csv = String::from_utf8(bundled_csv()).unwrap();
    let header_only = csv.lines().next().unwrap().to_string() + "\n";
    let missing_ph = csv.replace("\"pH\",", "").into_bytes();
    let mut fifty_mb = Vec::with_capacity(50 * 1024 * 1024);
    while fifty_mb.len() < 50 * 1024 * 1024 {
        fifty_mb.extend_from_slice(b"\x00\xff not a csv at all \x01\x02;;,,\n");
    }
    let one_wine = csv.lines().nth(1).unwrap().to_string();
    let identical = format!(
        "{}\n{}",
        csv.lines().next().unwrap(),
        format!("{one_wine}\n").repeat(100)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.csv", Vec::new()),
        ("identical.csv", identical.into_bytes()),
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
#[ignore = "needs azurite"]
async fn a_deployment_check_fits_the_upload_and_changes_nothing() {
    let cloud = Cloud::start();
    let (server, champion) = cloud.serving_base_data().await;
    let registry = cloud.registry().await;
    let versions = registry.store().list_versions().await.unwrap();

    // Data a real upload would store as a new version (it differs from the champion's).
    let name = "checks/deploy-1.csv";
    let (status, answer) = upload_and_deliver(&cloud, &server, name, &scrambled_csv()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "checked", "{answer}");
    assert_eq!(answer["rows"], 1599, "{answer}");
    assert!(
        answer["metrics"]["rmse"].as_f64().unwrap() > 0.0,
        "{answer}"
    );
    let report = cloud
        .uploads()
        .read(&format!("{name}.checked.json"))
        .await
        .expect("the check's report beside the upload");
    let report: Value = serde_json::from_slice(&report.bytes).unwrap();
    assert_eq!(report["status"], "checked", "{report}");
    assert_eq!(report["rows"], 1599, "{report}");
    assert!(report["checked_at"].is_string(), "{report}");

    // Nothing stored, nothing promoted.
    assert_eq!(registry.store().list_versions().await.unwrap(), versions);
    assert_eq!(
        registry.champion().await.unwrap().unwrap().champion.version,
        champion
    );

    // A check that cannot be trained on is reported as rejected, in the same place.
    let (status, answer) =
        upload_and_deliver(&cloud, &server, "checks/bad.csv", b"not, a wine\n1,2\n").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "rejected", "{answer}");
    let report = cloud
        .uploads()
        .read("checks/bad.csv.checked.json")
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&report.bytes).unwrap();
    assert_eq!(report["status"], "rejected", "{report}");
    assert!(!cloud
        .uploads()
        .exists("checks/bad.csv.rejected.json")
        .await
        .unwrap());

    // A check whose content cannot be decoded is reported in the same place.
    let mut undecodable = blob_envelope(&cloud, "checks/undecodable.csv", b"", None);
    undecodable["Data"]["csv"] = json!("%%% not base64");
    let (status, answer) = deliver(&server, &undecodable).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("rejected")),
        "{answer}"
    );
    let report = cloud
        .uploads()
        .read("checks/undecodable.csv.checked.json")
        .await
        .expect("the check's report");
    let report: Value = serde_json::from_slice(&report.bytes).unwrap();
    assert_eq!(report["status"], "rejected", "{report}");

    // An invocation that names no blob is refused, and nothing is written for it.
    let (status, answer) = deliver(
        &server,
        &json!({"Data": {"csv": base64::engine::general_purpose::STANDARD.encode(scrambled_csv())}}),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("rejected")),
        "{answer}"
    );
    assert!(
        answer["reason"].as_str().unwrap().contains("names no blob"),
        "{answer}"
    );
    let names: Vec<String> = cloud
        .uploads()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert!(!names.iter().any(|n| n.contains("unnamed")), "{names:?}");

    // The reports arrive as uploads too: ignored.
    let report_name = format!("{name}.checked.json");
    let (status, ignored) =
        deliver(&server, &blob_envelope(&cloud, &report_name, b"{}", None)).await;
    assert_eq!(status, 200);
    assert_eq!(ignored["status"], "ignored", "{ignored}");

    // The checks are the newest blobs, yet the timer trains on the newest real upload, which
    // the champion was trained on: nothing to do.
    let body = run_timer(&server).await;
    assert_eq!(body["ReturnValue"]["status"], "unchanged", "{body}");
    assert_eq!(registry.store().list_versions().await.unwrap(), versions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn serving_survives_a_store_outage_and_a_corrupt_champion() {
    let mut cloud = Cloud::start();
    let (server, champion) = cloud.serving_base_data().await;

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

    // A corrupt model under the pointer: refused, the instance keeps serving a version that
    // can serve (the pointer's previous) and says it is degraded.
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
    // `promote` refuses a version that does not load: point at it behind its back.
    let error = registry.promote(&trained).await.expect_err("refused");
    assert!(error.to_string().contains(&trained), "{error}");
    let current = registry.champion().await.unwrap().unwrap();
    let forced = Champion {
        version: trained.clone(),
        previous: Some(target.clone()),
        updated_at: sommelier::registry::now_rfc3339(),
    };
    registry
        .store()
        .write_champion(&forced, Some(&current.etag))
        .await
        .unwrap();
    let body = wait_degraded(&server).await;
    assert_eq!(body["model_version"], target.as_str(), "{body}");
    assert!(
        body["degraded"].as_str().unwrap().contains(&trained),
        "{body}"
    );
    assert_eq!(
        predict_version(&server).await.as_deref(),
        Some(target.as_str())
    );
    let error = registry.load(&trained).await.expect_err("corrupt model");
    assert!(error.to_string().contains(&trained), "{error}");
}

/// Polls until health says `degraded` (still 200); returns the health body.
async fn wait_degraded(server: &Server) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = health(server).await;
        if status == 200 && body["status"] == "degraded" {
            assert!(body["degraded"].is_string(), "{body}");
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "health never said degraded: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metric(server: &Server, name: &str) -> f64 {
    let text = support::get_text(&server, "/api/metrics").await;
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn one_bad_cell_or_a_broken_card_never_takes_the_service_down() {
    let cloud = Cloud::start();
    let (server, first) = cloud.serving_base_data().await;
    let registry = cloud.registry().await;

    // One overflowing cell: rejected with line and column, the champion untouched.
    let csv = String::from_utf8(bundled_csv()).unwrap();
    let bad = csv.replacen("7.8,0.88,0,2.6,", "7.8,0.88,0,3e160,", 1);
    assert_ne!(bad, csv);
    let (status, answer) =
        upload_and_deliver(&cloud, &server, "overflow.csv", bad.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "rejected", "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.contains("line 3") && reason.contains("residual sugar"),
        "{reason}"
    );
    assert_eq!(
        registry.champion().await.unwrap().unwrap().champion.version,
        first
    );

    // Concurrent redeliveries of one blob: one version.
    let mut changed = bundled_csv();
    changed.extend_from_slice(b"7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,6\n");
    let etag = cloud
        .uploads()
        .write(
            "more.csv",
            changed.clone(),
            WriteCondition::Overwrite,
            "text/csv",
        )
        .await
        .unwrap();
    let envelope = blob_envelope(&cloud, "more.csv", &changed, Some(&etag));
    let versions_before = registry.store().list_versions().await.unwrap().len();
    let answers = futures::future::join_all((0..3).map(|_| deliver(&server, &envelope))).await;
    let statuses: Vec<String> = answers
        .iter()
        .map(|(code, a)| format!("{code} {}", a["status"]))
        .collect();
    let trained: Vec<&Value> = answers
        .iter()
        .map(|(_, a)| a)
        .filter(|a| a["status"] == "promoted" || a["status"] == "kept_champion")
        .collect();
    assert_eq!(trained.len(), 1, "{statuses:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|(_, a)| a["status"] == "duplicate")
            .count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        registry.store().list_versions().await.unwrap().len(),
        versions_before + 1
    );
    let second = trained[0]["report"]["version"]
        .as_str()
        .unwrap()
        .to_string();

    // Make `second` the champion with `first` as its previous, then break its card.
    registry.promote(&first).await.unwrap();
    let pointer = registry.promote(&second).await.unwrap();
    assert_eq!(pointer.champion.previous.as_deref(), Some(first.as_str()));
    wait_serving(&server, &second).await;
    cloud
        .models()
        .write(
            &format!("{second}/card.json"),
            b"{\"version\": \"broken".to_vec(),
            WriteCondition::Overwrite,
            "application/json",
        )
        .await
        .unwrap();

    // `sommelier models` and /api/models list it with its problem.
    let models = support::get_json(&server, "/api/models").await;
    let listed = models["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == second.as_str())
        .unwrap_or_else(|| panic!("the broken version is listed: {models}"))
        .clone();
    assert!(listed["problem"].is_string(), "{listed}");
    assert_eq!(listed["champion"], true, "{listed}");

    // A fresh instance serves the previous version, degraded with the reason.
    let fresh = cloud.instance();
    let body = wait_degraded(&fresh).await;
    assert_eq!(body["model_version"], first.as_str(), "{body}");
    assert!(
        body["degraded"].as_str().unwrap().contains(&second),
        "{body}"
    );
    assert_eq!(
        predict_version(&fresh).await.as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        metric(
            &fresh,
            "sommelier_serving_degraded{reason=\"champion_unservable\"}"
        )
        .await,
        1.0
    );

    // The timer keeps working: it trains instead of answering 503 forever. (The rejected
    // upload goes first: listing times have one-second resolution.)
    cloud.uploads().delete("overflow.csv").await.unwrap();
    let response = client()
        .post(fresh.url("/retrain-on-schedule"))
        .json(&json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    let status = &body["ReturnValue"]["status"];
    assert!(status == "promoted" || status == "kept_champion", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn refused_credentials_are_a_loud_configuration_error() {
    let cloud = Cloud::start();
    let (_good, champion) = cloud.serving_base_data().await;

    // Azurite checks shared-key signatures: a wrong key gets 403 on the champion read.
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let mut env = cloud.env();
    env.retain(|(k, _)| *k != "SOMMELIER_STORAGE_CONNECTION_STRING");
    env.push((
        "SOMMELIER_STORAGE_CONNECTION_STRING",
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1",
            cloud.azurite.port
        ),
    ));
    let wrong = Server::start(cloud.dir.path(), &env);
    let started = Instant::now();
    let body = loop {
        let (_, body) = health(&wrong).await;
        if body["degraded"].is_string() {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "health never reported the refused credentials: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = body["degraded"].as_str().unwrap();
    assert!(
        reason.contains("configuration error") && reason.contains("403"),
        "{reason}"
    );
    assert!(!reason.contains(&key));
    assert!(metric(&wrong, "sommelier_store_auth_failures_total").await >= 1.0);
    assert_eq!(
        metric(
            &wrong,
            "sommelier_serving_degraded{reason=\"store_access_denied\"}"
        )
        .await,
        1.0
    );

    // The timer on that instance: a failure the host records and retries (503, never 500),
    // and no promotion.
    let response = client()
        .post(wrong.url("/retrain-on-schedule"))
        .json(&json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ReturnValue"]["status"], "failed", "{body}");
    let registry = cloud.registry().await;
    assert_eq!(
        registry.champion().await.unwrap().unwrap().champion.version,
        champion
    );
    assert_eq!(registry.store().list_versions().await.unwrap().len(), 1);
}

/// The first `n` data rows of the bundled CSV, with its header.
fn first_rows_csv(n: usize) -> Vec<u8> {
    let text = String::from_utf8(bundled_csv()).unwrap();
    let lines: Vec<&str> = text.lines().take(n + 1).collect();
    (lines.join("\n") + "\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn appended_uploads_are_compared_only_on_rows_neither_model_trained_on() {
    let cloud = Cloud::start();
    let (server, first) = cloud
        .serving_upload("first-1200.csv", first_rows_csv(1200))
        .await;

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

/// A fresh deployment: the upload container exists but is empty. The first start trains on the
/// bundled data (its card says so), and the schedule finds nothing new to train on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn a_first_start_on_an_empty_upload_container_serves_the_bundled_data() {
    let cloud = Cloud::start();
    cloud.uploads().create_if_missing().await.unwrap();
    assert!(cloud.uploads().list().await.unwrap().is_empty());

    let server = cloud.instance();
    let version = server.wait_healthy(&client()).await["model_version"]
        .as_str()
        .expect("a first model on the bundled data")
        .to_string();
    let card = cloud.registry().await.card(&version).await.unwrap();
    assert!(
        card.source
            .name
            .starts_with(sommelier::bundled::SOURCE_NAME),
        "{}",
        card.source.name
    );
    assert!(
        card.source.name.contains("fallback") && card.source.name.contains("training-data"),
        "the card names the empty container: {}",
        card.source.name
    );

    let body = run_timer(&server).await;
    assert_eq!(body["ReturnValue"]["status"], "unchanged", "{body}");
}
