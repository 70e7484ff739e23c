//! The loop on Blob Storage (Azurite): the prediction log as append blobs in the
//! `predictions` container, feedback, the join, the report, the labelled rows in the next
//! training, and a store that stalls under load and comes back.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sommelier::feedback::store::{LoopStore, Stream};

use crate::support;
use crate::support::azurite::{Azurite, DEV_STORAGE};
use crate::support::{client, wine, Server};

fn env(models: &str, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("SOMMELIER_STORE", models.to_string()),
        (
            "SOMMELIER_STORAGE_CONNECTION_STRING",
            DEV_STORAGE.to_string(),
        ),
        ("SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS", "1".to_string()),
    ];
    env.extend(extra.iter().cloned());
    env
}

fn loop_store(models: &str) -> LoopStore {
    let mut settings = sommelier::config::Settings::from_env(Some(models)).expect("settings");
    settings.storage_connection_string = Some(DEV_STORAGE.into());
    LoopStore::open(&settings).expect("the predictions container")
}

async fn logged_rows(store: &LoopStore) -> usize {
    let mut rows = 0;
    for name in store.list(Stream::Log, "0000").await.unwrap_or_default() {
        let bytes = store.read(&name).await.unwrap_or_default();
        rows += bytes.iter().filter(|&&b| b == b'\n').count();
    }
    rows
}

async fn wait_logged(store: &LoopStore, rows: usize) {
    let started = Instant::now();
    loop {
        let found = logged_rows(store).await;
        if found >= rows {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{found} of {rows} rows logged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `times` single-wine predictions, each answered 200.
async fn predict_times(server: &Server, times: usize) {
    for _ in 0..times {
        let (status, _, answer) = support::post_for_id(
            server,
            "/api/predict",
            "application/json",
            wine().to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
}

fn sommelier(models: &str, args: &[&str]) -> Value {
    let output = std::process::Command::new(support::binary())
        .args(args)
        .args(["--store", models, "--json"])
        .env("SOMMELIER_STORAGE_CONNECTION_STRING", DEV_STORAGE)
        .env_remove("SOMMELIER_PUSHGATEWAY_URL")
        .output()
        .expect("run sommelier");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn on_blob_storage_labels_join_logged_predictions_and_reach_the_next_training() {
    let azurite = Azurite::start();
    let models = azurite.container_url("models");
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), &env(&models, &[]));
    server.wait_healthy(&client()).await;
    let store = loop_store(&models);

    let wines: Vec<Value> = (0..5)
        .map(|i| {
            let mut w = wine();
            w["sulphates"] = json!(0.5 + 0.05 * i as f64);
            w
        })
        .collect();
    let mut rows: Vec<(String, f64)> = Vec::new();
    let (_, _, one) = support::post_for_id(
        &server,
        "/api/predict",
        "application/json",
        wines[0].to_string(),
    )
    .await;
    rows.push((
        one["prediction_id"].as_str().expect("id").into(),
        one["prediction"].as_f64().expect("p"),
    ));
    let (_, _, batch) = support::post_for_id(
        &server,
        "/api/predict",
        "application/json",
        json!({"instances": wines[1..3]}).to_string(),
    )
    .await;
    for (id, p) in batch["prediction_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .zip(batch["predictions"].as_array().expect("p"))
    {
        rows.push((id.as_str().expect("id").into(), p.as_f64().expect("p")));
    }
    let (_, id, mlflow) = support::post_for_id(
        &server,
        "/api/invocations",
        "application/json",
        json!({"dataframe_records": wines[3..5]}).to_string(),
    )
    .await;
    let id = id.expect("x-prediction-id");
    for (row, p) in mlflow["predictions"]
        .as_array()
        .expect("p")
        .iter()
        .enumerate()
    {
        rows.push((format!("{id}.{row}"), p.as_f64().expect("p")));
    }
    wait_logged(&store, 5).await;

    let qualities = [6.0, 5.0, 7.0, 5.0, 6.0];
    let (status, _, answer) = support::post_for_id(
        &server,
        "/api/feedback",
        "application/json",
        json!({"prediction_id": rows[0].0, "quality": qualities[0]}).to_string(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let list = json!({"feedback": [{"prediction_id": rows[1].0, "quality": qualities[1]}, {"prediction_id": rows[2].0, "quality": qualities[2]}]});
    let (status, _, answer) = support::post_for_id(
        &server,
        "/api/feedback",
        "application/json",
        list.to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(2)),
        "{answer}"
    );
    let csv = format!(
        "prediction_id,quality\n{},{}\n{},{}\n",
        rows[3].0, qualities[3], rows[4].0, qualities[4]
    );
    let (status, _, answer) = support::post_for_id(&server, "/api/feedback", "text/csv", csv).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(2)),
        "{answer}"
    );

    let joined = sommelier(&models, &["feedback", "join"]);
    let report = sommelier(&models, &["feedback", "report"]);
    assert_eq!(report, joined["report"]);
    let expected = (rows
        .iter()
        .zip(qualities)
        .map(|((_, p), q)| (p - q).powi(2))
        .sum::<f64>()
        / 5.0)
        .sqrt();
    let version = &report["versions"][0];
    assert_eq!(version["labelled_rows"], 5, "{report}");
    assert!(
        (version["rmse"].as_f64().expect("rmse") - expected).abs() < 1e-9,
        "{report} vs {expected}"
    );
    let again = sommelier(&models, &["feedback", "join"]);
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["report"], report);

    support::train_adds_labelled_rows(&server, 5).await;

    // After a join, blobs past the retention (90 days by default) are removed; newer ones and
    // names without an hour stay.
    let expired = [
        "log/2020/01/01/00/old-1.jsonl",
        "labels/2020/01/01/00/old-1.jsonl",
    ];
    for name in expired.iter().chain(&["log/notes.jsonl"]) {
        store
            .write_result(name, Vec::new(), None)
            .await
            .expect("an old blob");
    }
    let logged_before = store.list(Stream::Log, "2021").await.expect("list");
    let pruned = sommelier(&models, &["feedback", "join"]);
    assert_eq!(pruned["removed_files"], 2, "{pruned}");
    assert_eq!(pruned["report"], report);
    assert_eq!(
        store.list(Stream::Log, "0000").await.expect("list"),
        logged_before
    );
    assert!(store
        .list(Stream::Labels, "0000")
        .await
        .expect("list")
        .iter()
        .all(|n| !n.contains("2020/")));
    assert!(
        store.read("log/notes.jsonl").await.is_ok(),
        "a name without an hour stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn a_stalled_blob_store_bounds_the_log_counts_drops_and_the_log_resumes() {
    let mut azurite = Azurite::start();
    let models = azurite.container_url("models");
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        dir.path(),
        &env(
            &models,
            &[("SOMMELIER_PREDICTION_LOG_QUEUE_ROWS", "50".to_string())],
        ),
    );
    server.wait_healthy(&client()).await;
    let store = loop_store(&models);
    predict_times(&server, 1).await;
    wait_logged(&store, 1).await;

    azurite.kill();
    // Predictions go on while the store is away.
    predict_times(&server, 200).await;
    let metrics = support::get_text(&server, "/api/metrics").await;
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("sommelier_prediction_log_dropped_total")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(dropped >= 150.0, "dropped {dropped}");

    // The rows the bound kept are written when the store returns (the emulator may have lost
    // its last seconds of writes with the kill, as a crashed disk would), and the log goes on.
    azurite.resume();
    wait_logged(&store, 50).await;
    let before = logged_rows(&store).await;
    predict_times(&server, 5).await;
    wait_logged(&store, before + 5).await;
}

/// A TCP proxy to Azurite that can swallow the store's answers: the requests still reach the
/// store and take effect, but the client never hears back, as when a network drops a reply.
struct AnswerSwallowingProxy {
    port: u16,
    swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reset: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AnswerSwallowingProxy {
    async fn start(upstream: u16) -> AnswerSwallowingProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let swallow = std::sync::Arc::new(AtomicBool::new(false));
        let reset = std::sync::Arc::new(AtomicBool::new(false));
        let (swallowing, resetting) = (swallow.clone(), reset.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(store) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                // A connection the proxy closes is reset (RST), not ended: the client cannot
                // tell whether the store took its request.
                let _ = client.set_zero_linger();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut store_read, mut store_write) = store.into_split();
                let forward = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut store_write).await;
                });
                let (swallowing, resetting) = (swallowing.clone(), resetting.clone());
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(read) = store_read.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                        if resetting.swap(false, Ordering::SeqCst) {
                            // Both halves dropped: the socket closes with the linger of 0.
                            forward.abort();
                            let _ = forward.await;
                            break;
                        }
                        if !swallowing.load(Ordering::SeqCst)
                            && client_write.write_all(&buffer[..read]).await.is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        AnswerSwallowingProxy {
            port,
            swallow,
            reset,
        }
    }

    fn swallow(&self, on: bool) {
        self.swallow.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next answer of the store is not passed on: its connection is reset instead.
    fn reset_next_answer(&self) {
        self.reset.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A loop store on Azurite reached through an [`AnswerSwallowingProxy`].
async fn proxied_store() -> (Azurite, AnswerSwallowingProxy, LoopStore) {
    let azurite = Azurite::start();
    let proxy = AnswerSwallowingProxy::start(azurite.port).await;
    let models = format!("http://127.0.0.1:{}/devstoreaccount1/models", proxy.port);
    let store = loop_store(&models);
    (azurite, proxy, store)
}

/// Every label blob's text, in listing order.
async fn labels_text(store: &LoopStore) -> String {
    let mut text = String::new();
    for name in store.list(Stream::Labels, "0000").await.unwrap() {
        text.push_str(&String::from_utf8(store.read(&name).await.unwrap()).unwrap());
    }
    text
}

fn label_line(id: &str, quality: u8) -> axum::body::Bytes {
    format!("{{\"id\":\"{id}\",\"quality\":{quality}}}\n")
        .into_bytes()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn an_append_whose_answer_was_lost_is_never_taken_for_the_next_one() {
    let (_azurite, proxy, store) = proxied_store().await;
    let mut appender = store.appender(Stream::Labels, "writer");
    let now = 1_790_000_000_000;
    // Lines of one length, as labels are: a lost answer must not make the next line look
    // written when only the earlier one is.
    let (a, c, d, e) = (
        label_line("a", 4),
        label_line("c", 5),
        label_line("d", 6),
        label_line("e", 7),
    );
    appender.append(a.clone(), now).await.expect("first append");

    proxy.swallow(true);
    let lost = tokio::time::timeout(Duration::from_secs(2), appender.append(c.clone(), now)).await;
    assert!(lost.is_err(), "the answer was swallowed: {lost:?}");
    proxy.swallow(false);
    appender
        .append(d.clone(), now)
        .await
        .expect("the next append");

    // The same once more, then the lost lines sent again (a retry): written once.
    proxy.swallow(true);
    let lost = tokio::time::timeout(Duration::from_secs(2), appender.append(e.clone(), now)).await;
    assert!(lost.is_err(), "the answer was swallowed: {lost:?}");
    proxy.swallow(false);
    appender.append(e.clone(), now).await.expect("the retry");

    let text = labels_text(&store).await;
    let lines: Vec<&str> = text.lines().collect();
    let count = |line: &axum::body::Bytes| {
        let line = std::str::from_utf8(line).unwrap().trim_end();
        lines.iter().filter(|l| **l == line).count()
    };
    // The store took the swallowed append of `c` (its answer alone was lost).
    assert_eq!(
        [count(&a), count(&c), count(&d), count(&e)],
        [1, 1, 1, 1],
        "{text}"
    );
    assert!(text.ends_with('\n'), "{text}");
}

/// The store takes an append, and the connection is reset before its answer arrives: the
/// SDK's own resend (or the writer's settling before the next append) must leave the line
/// written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn an_append_whose_connection_was_reset_is_written_once() {
    let (_azurite, proxy, store) = proxied_store().await;
    let mut appender = store.appender(Stream::Labels, "writer");
    let now = 1_790_000_000_000;
    let lines = [
        label_line("a", 4),
        label_line("b", 5),
        label_line("c", 6),
        label_line("d", 7),
    ];
    appender
        .append(lines[0].clone(), now)
        .await
        .expect("first append");
    let mut outcomes = Vec::new();
    for line in &lines[1..] {
        proxy.reset_next_answer();
        let outcome =
            tokio::time::timeout(Duration::from_secs(30), appender.append(line.clone(), now))
                .await
                .expect("an append after a reset ends");
        assert!(
            !proxy.reset.load(std::sync::atomic::Ordering::SeqCst),
            "the append's answer was reset"
        );
        outcomes.push(outcome.is_ok());
    }
    // A failed append is retried, as the log and the labels do.
    for (line, ok) in lines[1..].iter().zip(&outcomes) {
        if !ok {
            appender.append(line.clone(), now).await.expect("the retry");
        }
    }
    let text = labels_text(&store).await;
    for line in &lines {
        let line = std::str::from_utf8(line).unwrap().trim_end();
        assert_eq!(
            text.lines().filter(|l| *l == line).count(),
            1,
            "{line} once (appends answered ok: {outcomes:?}):\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn a_graceful_stop_while_the_store_does_not_answer_counts_the_rows_left() {
    let azurite = Azurite::start();
    let proxy = AnswerSwallowingProxy::start(azurite.port).await;
    let models = format!("http://127.0.0.1:{}/devstoreaccount1/models", proxy.port);
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("server.log");
    let mut server = Server::start_logging_to(dir.path(), &env(&models, &[]), &log);
    server.wait_healthy(&client()).await;

    // The store takes the appends but its answers never come: the writer waits in an append
    // (up to its 10 s timeout) when the stop arrives.
    proxy.swallow(true);
    predict_times(&server, 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopping = Instant::now();
    assert!(server.terminate().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(6),
        "the stop waited {:?}",
        stopping.elapsed()
    );
    let text = std::fs::read_to_string(&log).expect("the server's log");
    let line = text
        .lines()
        .find(|l| l.contains("prediction log rows not written at shutdown"))
        .unwrap_or_else(|| panic!("the rows left are neither written nor counted:\n{text}"));
    assert!(line.contains("20"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs azurite"]
async fn a_join_or_report_on_a_store_without_a_registry_is_refused_and_creates_nothing() {
    let azurite = Azurite::start();
    let local = tempfile::tempdir().expect("tmp");
    let missing_dir = local.path().join("no/such/store");
    let typo = azurite.container_url("modles");
    for store in [missing_dir.display().to_string(), typo.clone()] {
        for action in ["join", "report"] {
            let output = std::process::Command::new(support::binary())
                .args(["feedback", action, "--store", &store])
                .env("SOMMELIER_STORAGE_CONNECTION_STRING", DEV_STORAGE)
                .env_remove("SOMMELIER_PUSHGATEWAY_URL")
                .output()
                .expect("run sommelier");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{action} on {store}: {stderr}");
            assert!(
                stderr.contains(&format!("no model registry in {store}")),
                "{action} on {store}: {stderr}"
            );
        }
    }
    assert!(!local.path().join("no").exists());
    let settings = sommelier::config::Settings::from_env(Some(&typo)).expect("settings");
    let mut settings = settings;
    settings.storage_connection_string = Some(DEV_STORAGE.into());
    let container = sommelier::registry::blob::Container::open(
        &sommelier::registry::blob::BlobUrl::parse(&typo).unwrap(),
        &settings,
    )
    .unwrap();
    assert_eq!(
        container.list().await.expect("a listing").len(),
        0,
        "nothing is written in the mistyped container"
    );
}
