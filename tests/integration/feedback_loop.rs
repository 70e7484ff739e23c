//! The loop on a local store, through the real binary: prediction ids on every answer, the
//! prediction log, feedback, the join and its report, and labelled rows in the next training.

use serde_json::{json, Value};

use crate::support;
use crate::support::{client, wine, Server};

async fn started(dir: &std::path::Path, extra: &[(&str, String)]) -> Server {
    let store = dir.join("store");
    let mut env = vec![
        ("SOMMELIER_STORE", store.display().to_string()),
        ("SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS", "1".to_string()),
    ];
    env.extend(extra.iter().cloned());
    let server = Server::start(dir, &env);
    server.wait_healthy(&client()).await;
    server
}

/// `POST path` with a JSON body: status, `x-prediction-id`, body.
async fn post(server: &Server, path: &str, body: &Value) -> (u16, Option<String>, Value) {
    support::post_for_id(server, path, "application/json", body.to_string()).await
}

fn is_uuid_v7(text: &str) -> bool {
    text.len() == 36
        && &text[14..15] == "7"
        && text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prediction_answer_carries_an_id_and_batch_rows_are_numbered() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = started(dir.path(), &[]).await;
    // The loop's series exist from the start, so a first drop or refusal is an increase.
    let metrics = support::get_text(&server, "/api/metrics").await;
    for series in [
        "sommelier_prediction_log_dropped_total 0",
        "sommelier_prediction_log_write_failures_total 0",
        "sommelier_feedback_labels_total{outcome=\"rejected\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == series), "{series}");
    }

    let (status, id, single) = post(&server, "/api/predict", &wine()).await;
    assert_eq!(status, 200, "{single}");
    let id = id.expect("x-prediction-id");
    assert!(is_uuid_v7(&id), "{id}");
    assert_eq!(single["prediction_id"], id.as_str());

    let (status, batch_id, batch) = post(
        &server,
        "/api/predict",
        &json!({"instances": [wine(), wine(), wine()]}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let batch_id = batch_id.expect("x-prediction-id");
    assert_ne!(batch_id, id);
    assert_eq!(
        batch["prediction_ids"],
        json!([
            format!("{batch_id}.0"),
            format!("{batch_id}.1"),
            format!("{batch_id}.2")
        ])
    );

    let (status, mlflow_id, mlflow) = post(
        &server,
        "/api/invocations",
        &json!({"dataframe_records": [wine(), wine()]}),
    )
    .await;
    assert_eq!(status, 200, "{mlflow}");
    assert!(is_uuid_v7(&mlflow_id.expect("x-prediction-id")));
    assert_eq!(
        mlflow
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["predictions".to_string()]),
        "MLflow's body stays as it is"
    );

    // A browser without JavaScript gets the id and the tasted-quality form on the page.
    let form: String = wine()
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let page = client()
        .post(server.url("/api/predict"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(form)
        .send()
        .await
        .expect("page");
    let page_id = page
        .headers()
        .get("x-prediction-id")
        .expect("x-prediction-id")
        .to_str()
        .expect("ascii")
        .to_string();
    let html = page.text().await.expect("html");
    assert!(
        html.contains(&format!("<code id=\"prediction-id\">{page_id}</code>")),
        "{html}"
    );
    assert!(html.contains("id=\"feedback-form\""));

    // That form, posted by the browser, is answered with the page saying what came of it.
    for (quality, status, said) in [
        ("6", 202, "Thank you: the tasted quality is recorded."),
        ("11", 422, "is not a whole number from 0 to 10"),
    ] {
        let answer = client()
            .post(server.url("/api/feedback"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html,application/xhtml+xml")
            .body(format!("prediction_id={page_id}&quality={quality}"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status().as_u16(), status);
        assert!(answer
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/html")));
        let html = answer.text().await.expect("the page");
        assert!(html.contains(said), "{html}");
    }
}

fn sommelier(store: &std::path::Path, args: &[&str]) -> Value {
    let output = std::process::Command::new(support::binary())
        .args(args)
        .arg("--store")
        .arg(store)
        .arg("--json")
        .env_remove("SOMMELIER_PUSHGATEWAY_URL")
        .output()
        .expect("run sommelier");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

async fn send_feedback(server: &Server, content_type: &str, body: String) -> (u16, Value) {
    let response = client()
        .post(server.url("/api/feedback"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Waits until every logged row is written (the queue is empty and the log has `rows` lines).
async fn wait_logged(store: &std::path::Path, rows: usize) {
    let started = std::time::Instant::now();
    loop {
        let mut lines = 0;
        let mut pending = vec![store.join(".predictions/log")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    lines += std::fs::read_to_string(&path)
                        .unwrap_or_default()
                        .lines()
                        .count();
                }
            }
        }
        if lines >= rows {
            return;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "only {lines} of {rows} rows logged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn metric(server: &Server, name: &str) -> f64 {
    let text = support::get_text(&server, "/api/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_join_logged_predictions_and_reach_the_next_training_on_a_local_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let server = started(dir.path(), &[]).await;

    // Predictions: one, a batch, an MLflow call; (id, prediction, version) per row.
    let mut rows: Vec<(String, f64, String)> = Vec::new();
    let mut wines = Vec::new();
    for index in 0..6 {
        let mut w = wine();
        w["alcohol"] = json!(9.0 + index as f64 * 0.5);
        wines.push(w);
    }
    let (_, _, one) = post(&server, "/api/predict", &wines[0]).await;
    let version = one["model_version"].as_str().expect("version").to_string();
    rows.push((
        one["prediction_id"].as_str().expect("id").to_string(),
        one["prediction"].as_f64().expect("p"),
        version.clone(),
    ));
    let (_, _, batch) = post(&server, "/api/predict", &json!({"instances": wines[1..4]})).await;
    for (id, p) in batch["prediction_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .zip(batch["predictions"].as_array().expect("p"))
    {
        rows.push((
            id.as_str().expect("id").to_string(),
            p.as_f64().expect("p"),
            version.clone(),
        ));
    }
    let (_, mlflow_id, mlflow) = post(
        &server,
        "/api/invocations",
        &json!({"dataframe_records": wines[4..6]}),
    )
    .await;
    let mlflow_id = mlflow_id.expect("id");
    for (row, p) in mlflow["predictions"]
        .as_array()
        .expect("p")
        .iter()
        .enumerate()
    {
        rows.push((
            format!("{mlflow_id}.{row}"),
            p.as_f64().expect("p"),
            version.clone(),
        ));
    }
    wait_logged(&store, 6).await;

    // A late label: its prediction is made after the first join.
    let (_, _, late) = post(&server, "/api/predict", &wines[5]).await;
    let late_id = late["prediction_id"].as_str().expect("id").to_string();

    // Feedback: one, a list (with a bad row), CSV.
    let qualities = [5.0, 6.0, 5.0, 7.0, 4.0, 6.0];
    let (status, answer) = send_feedback(
        &server,
        "application/json",
        json!({"prediction_id": rows[0].0, "quality": qualities[0]}).to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(1)),
        "{answer}"
    );
    let list = json!({"feedback": [
        {"prediction_id": rows[1].0, "quality": qualities[1]},
        {"prediction_id": rows[2].0, "quality": 11},
        {"prediction_id": rows[2].0, "quality": qualities[2]},
        {"prediction_id": rows[3].0, "quality": qualities[3]},
        {"prediction_id": late_id, "quality": 6},
    ]});
    let (status, answer) = send_feedback(&server, "application/json", list.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 4);
    assert_eq!(answer["rejected"][0]["index"], 1, "{answer}");
    let csv = format!(
        "prediction_id,quality\n{},{}\n{},{}\n",
        rows[4].0, qualities[4], rows[5].0, qualities[5]
    );
    let (status, answer) = send_feedback(&server, "text/csv", csv).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(2)),
        "{answer}"
    );
    // Bad input: 400/413/415/422, never a 5xx.
    let (status, answer) = send_feedback(
        &server,
        "application/json",
        json!({"prediction_id": "x", "quality": 6}).to_string(),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"].as_str().expect("error").contains("label 0"),
        "{answer}"
    );
    // A list or CSV of which no label can be stored is refused as a whole (422), each label
    // named, so a client that checks the status alone does not take it for stored.
    let (status, answer) = send_feedback(
        &server,
        "application/json",
        json!({"feedback": [{"prediction_id": "x", "quality": 6}, {"prediction_id": rows[0].0, "quality": "6"}]}).to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (422, json!(0)),
        "{answer}"
    );
    assert_eq!(
        answer["rejected"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .starts_with("2 labels refused, none stored; label 0: "),
        "{answer}"
    );
    assert!(
        answer["rejected"][1]["error"]
            .as_str()
            .expect("error")
            .contains("send 6 without quotes"),
        "{answer}"
    );
    let (status, answer) = send_feedback(
        &server,
        "text/csv",
        "prediction_id,quality\nnot-an-id,6\n".into(),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (422, json!(0)),
        "{answer}"
    );
    assert_eq!(
        send_feedback(&server, "application/json", "{".into())
            .await
            .0,
        400
    );
    assert_eq!(
        send_feedback(&server, "text/plain", "x".into()).await.0,
        415
    );
    // An empty body is named as such, in every form the route reads.
    for content_type in [
        "application/json",
        "text/csv",
        "application/x-www-form-urlencoded",
    ] {
        let (status, answer) = send_feedback(&server, content_type, " \n".into()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("request body is empty")),
            "{content_type}: {answer}"
        );
    }
    let huge = format!("{{\"feedback\": [{}]}}", vec!["{}"; 1_000_000].join(","));
    assert_eq!(
        send_feedback(&server, "application/json", huge).await.0,
        413
    );

    // The join (the late label's prediction may not be flushed yet: it joins next time).
    let first = sommelier(&store, &["feedback", "join"]);
    let report = sommelier(&store, &["feedback", "report"]);
    assert_eq!(report, first["report"]);
    let expected_rmse = (rows
        .iter()
        .zip(qualities)
        .map(|((_, p, _), q)| (p - q).powi(2))
        .sum::<f64>()
        / 6.0)
        .sqrt();
    let versions = report["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1, "{report}");
    let v = &versions[0];
    assert_eq!(v["model_version"], version.as_str());
    assert_eq!(
        v.as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        [
            "labelled_rows",
            "mae",
            "mean_label_delay_seconds",
            "model_version",
            "rmse"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    let late_joined = v["labelled_rows"] == 7;
    if !late_joined {
        assert_eq!(v["labelled_rows"], 6, "{report}");
        assert!(
            (v["rmse"].as_f64().expect("rmse") - expected_rmse).abs() < 1e-9,
            "{report} vs {expected_rmse}"
        );
        assert_eq!(report["unmatched_labels"], 1);
        wait_logged(&store, 7).await;
        let second = sommelier(&store, &["feedback", "join"]);
        assert_eq!(
            second["report"]["versions"][0]["labelled_rows"], 7,
            "the late label joins"
        );
        assert_eq!(second["report"]["unmatched_labels"], 0);
    }
    // Twice in a row changes nothing.
    let labelled =
        std::fs::read(store.join(".predictions/joined/labelled.csv")).expect("labelled rows");
    let again = sommelier(&store, &["feedback", "join"]);
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(
        std::fs::read(store.join(".predictions/joined/labelled.csv")).expect("rows"),
        labelled
    );
    assert_eq!(again["labelled_rows"], 7);

    // After a join, the log's and the labels' files past the retention (90 days by default)
    // are removed with their emptied hour directories; newer files, the results and names
    // without an hour stay.
    let root = store.join(".predictions");
    let expired = [
        "log/2020/01/01/00/old-1.jsonl",
        "labels/2020/01/01/00/old-1.jsonl",
    ];
    for name in expired.iter().chain(&["log/notes.jsonl"]) {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(&path, b"").expect("file");
    }
    let pruned = sommelier(&store, &["feedback", "join"]);
    assert_eq!(pruned["removed_files"], 2, "{pruned}");
    assert_eq!(pruned["report"], again["report"]);
    assert_eq!(pruned["labelled_rows"], 7);
    assert!(!root.join("log/2020").exists() && !root.join("labels/2020").exists());
    assert!(root.join("log/notes.jsonl").exists());
    for stream in ["log", "labels"] {
        let years = std::fs::read_dir(root.join(stream))
            .expect("the stream's directory")
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .count();
        assert_eq!(years, 1, "the recent {stream} stays");
    }
    let kept = sommelier(&store, &["feedback", "join"]);
    assert_eq!(kept["removed_files"], 0, "{kept}");

    // The next training adds the labelled rows.
    support::train_adds_labelled_rows(&server, 7).await;

    // The command line runs the same workflow: the same data and labelled rows with the same
    // recipe are unchanged, and a forced training adds the labelled rows too.
    let unchanged = sommelier(&store, &["train"]);
    assert_eq!(unchanged["status"], "unchanged", "{unchanged}");
    let forced = sommelier(&store, &["train", "--force"]);
    assert_eq!(forced["status"], "trained", "{forced}");
    assert_eq!(forced["rows"], 1599 + 7, "{forced}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_store_drops_and_counts_rows_within_its_bound_and_resumes() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let server = started(
        dir.path(),
        &[("SOMMELIER_PREDICTION_LOG_QUEUE_ROWS", "40".to_string())],
    )
    .await;
    // The log's directory cannot be created: a file stands where it goes.
    std::fs::create_dir_all(store.join(".predictions")).expect("dir");
    std::fs::write(store.join(".predictions/log"), b"in the way").expect("file");
    for _ in 0..100 {
        let (status, _, _) = post(&server, "/api/predict", &wine()).await;
        assert_eq!(
            status, 200,
            "predictions go on while the log cannot be written"
        );
    }
    let dropped = metric(&server, "sommelier_prediction_log_dropped_total").await;
    assert!(dropped >= 60.0, "dropped {dropped}");
    std::fs::remove_file(store.join(".predictions/log")).expect("unblock");
    // What the bound kept is written when the store returns, and the log goes on.
    wait_logged(&store, 40).await;
    for _ in 0..5 {
        post(&server, "/api/predict", &wine()).await;
    }
    wait_logged(&store, 45).await;
    assert!(metric(&server, "sommelier_prediction_log_write_failures_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_cut_short_by_a_kill_is_skipped_and_counted_and_the_next_start_writes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let mut server = started(dir.path(), &[]).await;
    let (_, _, one) = post(&server, "/api/predict", &wine()).await;
    wait_logged(&store, 1).await;
    // SIGKILL, then what a kill during a write leaves: part of a line at the end of the file.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let log_dir = store.join(".predictions/log");
    let mut files = Vec::new();
    let mut pending = vec![log_dir.clone()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            if e.path().is_dir() {
                pending.push(e.path())
            } else {
                files.push(e.path())
            }
        }
    }
    assert_eq!(files.len(), 1);
    let mut bytes = std::fs::read(&files[0]).expect("log");
    bytes.extend_from_slice(b"{\"id\":\"019b0f4e-8a52-7c3d-9f1e-2b7a4c6d8e90\",\"time\":\"20");
    std::fs::write(&files[0], &bytes).expect("cut");

    let server = started(dir.path(), &[]).await;
    let (_, _, two) = post(&server, "/api/predict", &wine()).await;
    wait_logged(&store, 3).await;
    for answer in [&one, &two] {
        let (status, _) = send_feedback(
            &server,
            "application/json",
            json!({"prediction_id": answer["prediction_id"], "quality": 5}).to_string(),
        )
        .await;
        assert_eq!(status, 202);
    }
    let joined = sommelier(&store, &["feedback", "join"]);
    assert_eq!(joined["skipped_lines"], 1, "{joined}");
    assert_eq!(
        joined["report"]["versions"][0]["labelled_rows"], 2,
        "{joined}"
    );
    // Both joins at once: each one joins or finds the other running, and the results agree.
    let store_a = store.clone();
    let store_b = store.clone();
    let a = std::thread::spawn(move || sommelier(&store_a, &["feedback", "join"]));
    let b = std::thread::spawn(move || sommelier(&store_b, &["feedback", "join"]));
    for outcome in [a.join().expect("a"), b.join().expect("b")] {
        assert!(
            outcome["status"] == "already_running" || outcome["report"] == joined["report"],
            "{outcome}"
        );
    }
}

/// A small tmpfs mounted for one test, unmounted on drop; `None` unless the tests run as root.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(kilobytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tmp");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kilobytes}k"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn grow(&self, kilobytes: u32) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={kilobytes}k")])
            .arg(self.dir.path())
            .status()
            .expect("mount");
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_leaves_whole_lines_and_the_same_file_goes_on_when_space_returns() {
    use sommelier::feedback::store::{LoopStore, Stream};
    let Some(disk) = SmallDisk::mount(64) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let store_dir = disk.dir.path().join("store");
    let settings =
        sommelier::config::Settings::from_env(Some(&store_dir.display().to_string())).unwrap();
    let store = LoopStore::open(&settings).expect("a local store");
    let mut appender = store.appender(Stream::Labels, "writer");
    let now = 1_790_000_000_000;
    // 4 KiB appends of 64-byte lines until the disk is full.
    let line = format!("{{\"id\":\"{}\",\"quality\":6}}\n", "x".repeat(42));
    assert_eq!(line.len(), 64);
    let batch: axum::body::Bytes = line.repeat(64).into_bytes().into();
    let mut appended = 0;
    let error = loop {
        match appender.append(batch.clone(), now).await {
            Ok(()) => appended += 1,
            Err(error) => break error,
        }
        assert!(appended < 10_000, "the disk never filled");
    };
    assert!(error.to_string().contains("No space left"), "{error}");
    // A second failure leaves no new file behind.
    assert!(appender.append(batch.clone(), now).await.is_err());
    let names = store.list(Stream::Labels, "0000").await.unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
    let written = store.read(&names[0]).await.unwrap();
    assert_eq!(written.len(), appended * batch.len(), "only whole appends");

    disk.grow(256);
    appender
        .append(batch.clone(), now)
        .await
        .expect("space again");
    assert_eq!(store.list(Stream::Labels, "0000").await.unwrap(), names);
    let written = store.read(&names[0]).await.unwrap();
    assert_eq!(written.len(), (appended + 1) * batch.len());
    assert!(written.chunks(64).all(|chunk| chunk == line.as_bytes()));
}
