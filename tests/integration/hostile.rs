//! Hostile clients against the real binary: bodies built to be expensive, bodies past the
//! memory budget, slow and half-sent requests, hang-ups during a training, and SIGTERM with
//! idle connections and a training in flight. Each answers the right status, and a normal
//! prediction sent meanwhile still succeeds. Speed is measured in the bench, not here.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sommelier::model::features::FEATURE_NAMES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support;
use crate::support::{client, wine, Server};

const MB: usize = 1024 * 1024;

/// A server with a small budget (2 large bodies, 32 MiB) and short deadlines.
async fn hostile_server(dir: &Path, extra: &[(&str, String)]) -> Server {
    let mut env = vec![
        ("SOMMELIER_STORE", dir.join("store").display().to_string()),
        ("SOMMELIER_MAX_BUFFERED_BYTES", (32 * MB).to_string()),
        ("SOMMELIER_MAX_LARGE_REQUESTS", "2".to_string()),
        ("SOMMELIER_HEADER_TIMEOUT_SECONDS", "1".to_string()),
        ("SOMMELIER_REQUEST_TIMEOUT_SECONDS", "2".to_string()),
    ];
    env.extend(extra.iter().cloned());
    let server = Server::start(dir, &env);
    server.wait_healthy(&client()).await;
    server
}

async fn post(server: &Server, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = client()
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

/// A normal prediction must succeed whatever else is going on.
async fn normal_prediction_succeeds(server: &Server) {
    let response = client()
        .post(server.url("/api/predict"))
        .json(&wine())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
}

fn features_object(value: impl Fn(&str) -> Value) -> serde_json::Map<String, Value> {
    FEATURE_NAMES
        .iter()
        .map(|name| (name.to_string(), value(name)))
        .collect()
}

/// Expensive-looking bodies of every shape: each gets its 4xx, and normal traffic continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_their_4xx_and_the_server_stays_responsive() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = hostile_server(dir.path(), &[]).await;

    // Columns plus 10^5 unknown keys (the case that used to cost seconds of CPU).
    let mut columns = features_object(|_| json!([1.0]));
    columns.insert("x".into(), json!(vec![0; 1000]));
    for i in 0..100_000 {
        columns.insert(format!("k{i}"), json!(0));
    }
    let body = serde_json::to_vec(&json!({"inputs": columns})).expect("json");
    let ((status, answer), ()) = tokio::join!(
        post(&server, "/api/invocations", "application/json", body),
        normal_prediction_succeeds(&server)
    );
    assert_eq!(status, 413, "{answer}");

    // One instance with 40,000 unknown keys.
    let mut wide = wine();
    for i in 0..40_000 {
        wide[format!("k{i}")] = json!(0);
    }
    let body = serde_json::to_vec(&json!({"instances": [wide]})).expect("json");
    let (status, answer) = post(&server, "/api/predict", "application/json", body).await;
    assert_eq!(status, 413, "{answer}");

    // Deep nesting, in an ignored field and where rows are expected.
    for body in [
        format!(
            "{{\"note\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        format!(
            "{{\"instances\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    ] {
        let (status, answer) = post(
            &server,
            "/api/predict",
            "application/json",
            body.into_bytes(),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
    }

    // Huge numbers: finite but out of range is a 422 naming the field; beyond f64 a 400.
    let huge = Value::Object(features_object(|_| json!(1.797e308)));
    let (status, answer) = post(
        &server,
        "/api/predict",
        "application/json",
        serde_json::to_vec(&huge).expect("json"),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["field"].is_string(), "{answer}");
    let mut body = serde_json::to_vec(&wine()).expect("json");
    body.truncate(body.len() - 1);
    body.extend_from_slice(format!(",\"pH\": 1{}}}", "0".repeat(400)).as_bytes());
    let (status, answer) = post(&server, "/api/predict", "application/json", body).await;
    assert_eq!(status, 400, "{answer}");
    let long_digits = format!("\"0.{}\"", "1".repeat(MB));
    let body = format!("{{\"fixed_acidity\": {long_digits}}}");
    let (status, answer) = post(
        &server,
        "/api/predict",
        "application/json",
        body.into_bytes(),
    )
    .await;
    assert!(matches!(status, 400 | 413), "{status} {answer}");

    // 16 MB bodies of each shape, each with a normal prediction alongside.
    let just_under = 16 * MB - 64;
    let zeros = {
        let mut b = b"[0".to_vec();
        while b.len() < just_under {
            b.extend_from_slice(b",0");
        }
        b.push(b']');
        b
    };
    let empty_instances = {
        let mut b = b"{\"instances\": [{}".to_vec();
        while b.len() < just_under {
            b.extend_from_slice(b",{}");
        }
        b.extend_from_slice(b"]}");
        b
    };
    let many_rows = {
        let row = serde_json::to_string(&wine()).expect("json");
        let mut b = b"{\"dataframe_records\": [".to_vec();
        b.extend_from_slice(row.as_bytes());
        while b.len() + row.len() + 3 < just_under {
            b.push(b',');
            b.extend_from_slice(row.as_bytes());
        }
        b.extend_from_slice(b"]}");
        b
    };
    let csv = {
        let mut b = format!("{}\n", FEATURE_NAMES.join(",")).into_bytes();
        while b.len() < just_under {
            b.extend_from_slice(b"7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4\n");
        }
        b
    };
    let form = {
        let mut b = Vec::new();
        let mut i = 0;
        while b.len() < just_under {
            b.extend_from_slice(format!("k{i}=1&").as_bytes());
            i += 1;
        }
        b
    };
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("/api/invocations", "application/json", zeros, 400),
        ("/api/predict", "application/json", empty_instances, 400),
        ("/api/invocations", "application/json", many_rows, 413),
        ("/api/invocations", "text/csv", csv, 413),
        (
            "/api/predict",
            "application/x-www-form-urlencoded",
            form,
            413,
        ),
    ];
    for (path, content_type, body, expected) in cases {
        let ((status, answer), ()) = tokio::join!(
            post(&server, path, content_type, body),
            normal_prediction_succeeds(&server)
        );
        assert_eq!(status, expected, "{path} {content_type}: {answer}");
    }

    // A compressed body is refused as such on every route that reads a body, not parsed as
    // text into a misleading error.
    for (path, content_type) in [
        ("/api/predict", "application/json"),
        ("/api/invocations", "application/json"),
        ("/api/feedback", "application/json"),
        ("/api/explain", "application/json"),
    ] {
        let response = client()
            .post(server.url(path))
            .header("content-type", content_type)
            .header("content-encoding", "gzip")
            .body(vec![0x1f, 0x8b, 0x08, 0x00])
            .send()
            .await
            .expect("an answer");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("a JSON error");
        assert_eq!(status, 415, "{path}: {answer}");
        assert_eq!(
            answer["error"], "Content-Encoding `gzip` is not supported; send the body uncompressed",
            "{path}"
        );
    }

    // Every Content-Encoding header counts, and `identity` alone is no encoding.
    let answer = raw_exchange(
        &server,
        &format!(
            "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Encoding: identity\r\nContent-Encoding: gzip\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}",
            server.port
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    let response = client()
        .post(server.url("/api/predict"))
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .json(&wine())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);

    // Past 16 MB: refused from the declared length, before a byte of the body is read.
    let mut stream = hold_large_body(&server, 17 * MB).await;
    let answer = read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    normal_prediction_succeeds(&server).await;
}

/// Reads what the server sends until it closes the connection or `limit` passes.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&answer).into_owned())
}

/// Opens a connection and sends `text` on it.
async fn connect_and_send(server: &Server, text: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    stream.write_all(text).await.expect("write");
    stream
}

/// Opens a connection and declares a large body, sending only its first bytes.
async fn hold_large_body(server: &Server, declared: usize) -> TcpStream {
    let head = format!(
        "POST /api/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"inputs\": ["
    );
    connect_and_send(server, head.as_bytes()).await
}

/// Sends a request with a JSON body of `length` spaces, all of it, then reads the answer: what
/// a client that writes its whole body before reading does. Panics if the body cannot be sent.
async fn send_whole_body(server: &Server, path: &str, length: usize) -> String {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    let mut stream = connect_and_send(server, head.as_bytes()).await;
    stream
        .write_all(&vec![b' '; length])
        .await
        .expect("the whole body sent: the server reads a refused body to its end");
    read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("an answer before the limit")
}

/// Large bodies past the budget get 503 with Retry-After; slow ones 408; half-sent headers
/// are cut off; a normal prediction succeeds throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_and_the_deadlines_hold() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = hostile_server(dir.path(), &[]).await;

    // Two large bodies fill the large-request slots; the third is refused at once. Its client
    // still gets the answer, not a reset: the server reads the refused body on and drops it.
    // 12 MB is more than the connection's buffers hold, so the client's write only finishes
    // if the server reads it.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(hold_large_body(&server, 15 * MB).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = send_whole_body(&server, "/api/invocations", 12 * MB).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nretry-after: 1\r\n"),
        "{answer}"
    );
    normal_prediction_succeeds(&server).await;

    // The held requests run out of time: 408, and their budget is free again.
    for mut stream in held {
        let answer = read_until_closed(&mut stream, Duration::from_secs(30))
            .await
            .expect("an answer before the limit");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let (status, answer) = post(
        &server,
        "/api/invocations",
        "application/json",
        vec![b' '; 2 * MB],
    )
    .await;
    assert_eq!(status, 400, "the budget is free again: {answer}");

    // Half a header: the connection is closed, not held.
    let mut half = connect_and_send(&server, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0").await;
    let answer = read_until_closed(&mut half, Duration::from_secs(30)).await;
    assert!(
        answer.is_some(),
        "a half-sent header must not hold the connection"
    );
    normal_prediction_succeeds(&server).await;
}

async fn train_status(server: &Server) -> Value {
    support::get_json(server, "/api/train").await
}

fn versions(store: &Path) -> Vec<String> {
    let mut versions: Vec<String> = std::fs::read_dir(store)
        .expect("store")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    versions.sort();
    versions
}

/// Every version in the store is complete.
fn assert_no_partial_version(store: &Path) {
    for version in versions(store) {
        for file in ["model.bin", "card.json"] {
            assert!(
                store.join(&version).join(file).is_file(),
                "{version} lacks {file}"
            );
        }
    }
}

/// Clients that hang up during `/api/train` neither cancel the training nor open the way to a
/// second one, and the in-flight gauge returns to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_ups_during_training_cancel_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = hostile_server(dir.path(), &[]).await;
    let store = dir.path().join("store");
    let before = versions(&store);

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .expect("client");
    let hung_up = impatient
        .post(server.url("/api/train?force=true"))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client was meant to give up first");
    // While it runs, more trainings are refused, whether their clients wait or not.
    let mut saw_running = false;
    loop {
        let status = train_status(&server).await;
        if status["running"] == false {
            break;
        }
        saw_running = true;
        let _ = impatient
            .post(server.url("/api/train?force=true"))
            .send()
            .await;
        let second = client()
            .post(server.url("/api/train?force=true"))
            .send()
            .await
            .expect("answer");
        if status["running"] == true && second.status() == StatusCode::CONFLICT {
            continue;
        }
        assert!(
            matches!(second.status().as_u16(), 409 | 200),
            "{}",
            second.status()
        );
        if second.status() == StatusCode::OK {
            break;
        }
    }
    assert!(saw_running, "the training stopped with its client");
    let status = train_status(&server).await;
    assert_eq!(status["last_trigger"], "http", "{status}");
    let after = versions(&store);
    assert!(
        after.len() > before.len(),
        "the training finished: {after:?}"
    );
    assert_no_partial_version(&store);

    let metrics = support::get_text(&server, "/api/metrics").await;
    assert!(
        metrics.contains("sommelier_http_requests_in_flight 1\n"),
        "only the metrics request itself is in flight"
    );
}

/// SIGTERM with an idle connection, a half-sent header and a long training in flight: the
/// process exits within its documented bound and the store holds no partial version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_promptly_and_leaves_no_partial_version() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    // A training set eight times the bundled one, so that the training outlasts the grace.
    let bundled = String::from_utf8(support::bundled_csv()).expect("text");
    let mut lines = bundled.lines();
    let header = lines.next().expect("header");
    let rows: Vec<&str> = lines.collect();
    let mut big = format!("{header}\n");
    for _ in 0..8 {
        for row in &rows {
            big.push_str(row);
            big.push('\n');
        }
    }
    let data = dir.path().join("big.csv");
    std::fs::write(&data, big).expect("write");
    // A first model from the bundled data, so the server starts serving at once.
    let trained = std::process::Command::new(support::binary())
        .args(["train", "--store"])
        .arg(&store)
        .env_remove("SOMMELIER_TRAINING_DATA")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("sommelier train");
    assert!(trained.status.success(), "{trained:?}");
    let mut server = hostile_server(
        dir.path(),
        &[
            ("SOMMELIER_SHUTDOWN_SECONDS", "2".to_string()),
            ("SOMMELIER_TRAINING_DATA", data.display().to_string()),
        ],
    )
    .await;
    let before = versions(&store);

    let _idle = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let mut half = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    half.write_all(b"GET /api/health HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let training = tokio::spawn(client().post(server.url("/api/train")).send());
    while train_status(&server).await["running"] != true {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `terminate` waits at most 10 s: the documented bound is max(grace, 6 s) plus a second.
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let _ = training.await;
    assert_no_partial_version(&store);
    let after = versions(&store);
    assert!(after.len() <= before.len() + 1, "{before:?} -> {after:?}");
}

/// Sends one raw request (head and body as given, `Connection: close` expected in the head)
/// and returns the whole answer.
async fn raw_exchange(server: &Server, request: &str) -> String {
    let mut stream = connect_and_send(server, request.as_bytes()).await;
    read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("an answer before the limit")
}

/// The envelope routes change state like `/api/train`: a cross-site "simple" request (any
/// web page can send one) is refused before its body is looked at, a body that is not the
/// host's JSON envelope is refused, and nothing trains. Requests whose Host is ambiguous get
/// 400 on every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_cannot_reach_the_envelope_routes_and_ambiguous_hosts_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = hostile_server(dir.path(), &[]).await;
    let store = dir.path().join("store");
    let before = versions(&store);
    let csv = String::from_utf8(support::bundled_csv()).expect("utf-8");
    let port = server.port;
    for path in ["/retrain-on-upload", "/retrain-on-schedule"] {
        let cross_site = format!(
            "POST {path} HTTP/1.1\r\nHost: evil.example\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{csv}",
            csv.len()
        );
        let answer = raw_exchange(&server, &cross_site).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        let rebound_origin = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        let answer = raw_exchange(&server, &rebound_origin).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        let (status, answer) = post(&server, path, "text/plain", csv.clone().into_bytes()).await;
        assert_eq!(status, 415, "{path}: {answer}");
    }
    let ambiguous = [
        format!("POST /api/train HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
        format!("POST http://evil.example/api/train HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
        "POST /api/train HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_string(),
        "GET /api/health HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".to_string(),
    ];
    for request in ambiguous {
        let answer = raw_exchange(&server, &request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
    }
    // A length no body can have is refused from the header, not read.
    let impossible = format!(
        "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 18446744073709551613\r\n\r\n"
    );
    let answer = raw_exchange(&server, &impossible).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(versions(&store), before, "nothing was trained");
    normal_prediction_succeeds(&server).await;
}

/// Opens a connection to `path` declaring a JSON body of `declared` bytes and sends `sent`.
async fn hold_body(server: &Server, path: &str, declared: usize, sent: &str) -> TcpStream {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{sent}"
    );
    connect_and_send(server, head.as_bytes()).await
}

/// Envelope bodies are admitted against the same budget and read within the same deadline as
/// predictions: a slow envelope gets 408, one that can never fit or that the timer does not
/// need gets 413 before it is read, a third large one at once gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_bodies_keep_the_budget_and_the_deadlines() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = hostile_server(dir.path(), &[]).await;

    // Slow: the body starts, then stalls. 408 at the request deadline (2 s here).
    let mut slow = hold_body(&server, "/retrain-on-upload", MB, "{\"Data\": ").await;
    let started = std::time::Instant::now();
    let answer = read_until_closed(&mut slow, Duration::from_secs(30))
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Larger than the whole budget (32 MiB here), and a timer body past its few KiB: 413 from
    // the declared length.
    for (path, declared) in [
        ("/retrain-on-upload", 300 * MB),
        ("/retrain-on-schedule", 15 * MB),
    ] {
        let mut stream = hold_body(&server, path, declared, "").await;
        let answer = read_until_closed(&mut stream, Duration::from_secs(30))
            .await
            .expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
    }

    // Two large envelopes hold the large-request slots; a third is refused at once.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(hold_body(&server, "/retrain-on-upload", 15 * MB, "{").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = send_whole_body(&server, "/retrain-on-upload", 12 * MB).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    normal_prediction_succeeds(&server).await;
    for mut stream in held {
        let answer = read_until_closed(&mut stream, Duration::from_secs(30))
            .await
            .expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
}

/// `POST /api/train` reads its options' body like an envelope: a stalled body gets 408 and
/// trains nothing, a body past its 4 KiB gets 413 before it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_option_bodies_keep_their_limit_and_the_deadline() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = hostile_server(dir.path(), &[]).await;
    let before = (
        versions(&dir.path().join("store")),
        train_status(&server).await,
    );

    let mut slow = hold_body(&server, "/api/train?force=true", 40, "{\"force\": ").await;
    let answer = read_until_closed(&mut slow, Duration::from_secs(30))
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut large = hold_body(&server, "/api/train?force=true", 5 * 1024, "").await;
    let answer = read_until_closed(&mut large, Duration::from_secs(30))
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let after = (
        versions(&dir.path().join("store")),
        train_status(&server).await,
    );
    assert_eq!(after, before, "nothing trained");
    normal_prediction_succeeds(&server).await;
}

/// Connections that send headers declaring large bodies and nothing else hold the large slots
/// only until the body start deadline; meanwhile a small prediction sent chunked (no declared
/// length) is admitted like a small one, and afterwards a large batch finds a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_holders_do_not_lock_out_chunked_or_large_predictions() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = hostile_server(
        dir.path(),
        &[
            ("SOMMELIER_REQUEST_TIMEOUT_SECONDS", "30".to_string()),
            ("SOMMELIER_BODY_START_TIMEOUT_SECONDS", "1".to_string()),
        ],
    )
    .await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(hold_body(&server, "/api/invocations", 15 * MB, "").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let one = serde_json::to_string(&wine()).expect("json");
    let chunked = format!(
        "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{one}\r\n0\r\n\r\n",
        one.len()
    );
    let answer = raw_exchange(&server, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let started = std::time::Instant::now();
    for mut holder in holders {
        let answer = read_until_closed(&mut holder, Duration::from_secs(30))
            .await
            .expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not start"), "{answer}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "released at the body start deadline, not the request deadline"
    );
    let batch: Vec<Value> = (0..9_000).map(|_| wine()).collect();
    let body = serde_json::to_vec(&json!({ "instances": batch })).expect("json");
    assert!(body.len() > MB, "a large body");
    let (status, answer) = post(&server, "/api/predict", "application/json", body).await;
    assert_eq!(status, 200, "{answer}");
}

/// JSON numbers are held to the same 1,000-byte limit as numbers given as text: a number
/// that long is refused naming its field, never read as some other value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_json_numbers_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = hostile_server(dir.path(), &[]).await;
    let wine_text = serde_json::to_string(&wine()).expect("json");
    for long in [
        format!("0.{}94e1000001", "0".repeat(1_000_000)),
        format!("9{}", "0".repeat(2_000)),
    ] {
        let body = wine_text.replace("\"alcohol\":9.4", &format!("\"alcohol\":{long}"));
        assert_ne!(body, wine_text);
        for path in ["/api/predict", "/api/invocations"] {
            let body = if path == "/api/invocations" {
                format!("{{\"instances\": [{body}]}}")
            } else {
                body.clone()
            };
            let (status, answer) = post(&server, path, "application/json", body.into_bytes()).await;
            assert_eq!(status, 400, "{path}: {answer}");
            assert_eq!(answer["field"], "alcohol", "{path}: {answer}");
        }
    }
}
