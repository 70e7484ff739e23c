//! Plays the Azure Functions host towards the real binary, as the protocol document says:
//! reads the real `functions/*/function.json`, starts the handler with the host's
//! environment, polls `GET /` every 25 ms, proxies HTTP functions with the original
//! `/api/...` path and query (including `?code=`), sends timer and blob invocations in the
//! JSON envelope, and validates every answer the way the host does.
//!
//! `SOMMELIER_BIN` selects the binary (the packaged one, in the package test).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::support;
use crate::support::{bundled_csv, client, host_string, repo_root, wine, Server};

const HOST_VERSION: &str = "4.1040.300.0";

/// What the host derives from a function.json.
#[derive(Debug)]
struct FunctionInfo {
    trigger: String,
    is_http_in_and_out: bool,
    route: Option<String>,
    methods: Vec<String>,
    output_bindings: Vec<String>,
    /// `maxRetryCount` of the function's `retry` policy, if it declares one.
    max_retry_count: Option<u64>,
}

fn load_functions() -> BTreeMap<String, FunctionInfo> {
    let mut functions = BTreeMap::new();
    for entry in std::fs::read_dir(repo_root().join("functions")).expect("functions/") {
        let dir = entry.expect("entry").path();
        let text = std::fs::read_to_string(dir.join("function.json")).expect("function.json");
        let doc: Value = serde_json::from_str(&text).expect("function.json is JSON");
        let bindings = doc["bindings"].as_array().expect("bindings").clone();
        let inputs: Vec<&Value> = bindings.iter().filter(|b| b["direction"] == "in").collect();
        let outputs: Vec<&Value> = bindings
            .iter()
            .filter(|b| b["direction"] == "out")
            .collect();
        let trigger = inputs
            .iter()
            .find(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger")))
            .copied()
            .expect("a trigger")
            .clone();
        let is_http_in_and_out = inputs.len() == 1
            && trigger["type"] == "httpTrigger"
            && outputs.len() == 1
            && outputs[0]["type"] == "http";
        functions.insert(
            dir.file_name().expect("name").to_string_lossy().to_string(),
            FunctionInfo {
                trigger: trigger["type"].as_str().expect("type").to_string(),
                is_http_in_and_out,
                route: trigger["route"].as_str().map(str::to_string),
                methods: trigger["methods"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(|v| v.as_str().map(str::to_ascii_uppercase))
                            .collect()
                    })
                    .unwrap_or_default(),
                output_bindings: outputs
                    .iter()
                    .filter_map(|b| b["name"].as_str().map(str::to_string))
                    .collect(),
                max_retry_count: doc["retry"]["maxRetryCount"].as_u64(),
            },
        );
    }
    functions
}

fn host_json() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("host.json")).expect("host.json"),
    )
    .expect("JSON")
}

fn sys(function: &str) -> Value {
    json!({"MethodName": function, "UtcNow": "2026-11-26T06:00:00.0123456Z", "RandGuid": "3b7c0b1e-8a4e-4c71-9f5e-6f1d2a3b4c5d"})
}

fn timer_envelope(function: &str, past_due: bool) -> Value {
    json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true},
        "ScheduleStatus": if past_due { Value::Null } else { json!({"Last": "2026-11-25T03:00:00.0000000+00:00", "Next": "2026-11-26T03:00:00+00:00", "LastUpdated": "2026-11-25T03:00:00.0000000+00:00"}) },
        "IsPastDue": past_due}},
        "Metadata": {"sys": sys(function)}})
}

fn blob_envelope(function: &str, name: &str, content: &[u8]) -> Value {
    let uri = format!("https://acct.blob.core.windows.net/training-data/{name}");
    json!({"Data": {"csv": base64::engine::general_purpose::STANDARD.encode(content)},
        "Metadata": {
            "Uri": host_string(&uri),
            "Properties": {"LastModified": "2026-11-26T06:00:00+00:00", "Metadata": {}, "BlobType": 0,
                "ContentLength": content.len(), "ContentType": "text/csv", "ETag": {}, "ContentHash": "q1w2e3==",
                "AccessTier": "Hot", "IsServerEncrypted": true, "VersionId": null},
            "Metadata": {},
            "name": host_string(name),
            "sys": sys(function)}})
}

/// Validates an envelope answer exactly as the host does (§3.1–3.2); returns ReturnValue.
fn validate_envelope_answer(
    function: &FunctionInfo,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Value {
    assert!(
        (200..300).contains(&status),
        "non-2xx {status} fails the invocation: {}",
        String::from_utf8_lossy(body)
    );
    let media = content_type.split(';').next().unwrap_or("").trim();
    assert!(
        media == "application/json" || media == "text/json",
        "content type `{content_type}` would fail the invocation"
    );
    assert!(
        !body.is_empty(),
        "an empty body makes the host wait forever"
    );
    let value: Value = serde_json::from_slice(body).expect("the answer must be valid JSON");
    let object = value
        .as_object()
        .expect("a null or non-object answer hangs the host");
    // Keys are matched to binding names exactly (case-sensitive); the host ignores the rest.
    for (_, output) in object
        .get("Outputs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(key, _)| function.output_bindings.contains(key))
    {
        assert!(
            !output.is_number() && !output.is_boolean(),
            "numbers and booleans are written as raw bytes"
        );
    }
    if let Some(logs) = object.get("Logs") {
        assert!(
            logs.as_array()
                .expect("Logs is an array")
                .iter()
                .all(Value::is_string),
            "Logs must be strings"
        );
    }
    object.get("ReturnValue").cloned().unwrap_or(Value::Null)
}

/// How many times the host tries an invocation: a blob trigger up to `poisonBlobThreshold`
/// (host.json, default 5) before the poison queue; anything else once, unless the function
/// declares a retry policy (a timer is not retried: the next run is the next tick).
fn tries(info: &FunctionInfo, host: &Value) -> u64 {
    match (info.trigger.as_str(), info.max_retry_count) {
        ("blobTrigger", _) => host["extensions"]["blobs"]["poisonBlobThreshold"]
            .as_u64()
            .unwrap_or(5),
        (_, Some(retries)) => retries + 1,
        (_, None) => 1,
    }
}

/// The host's default invocation: POST /<FunctionName> with the envelope headers; tried as
/// often as the host would (see `tries`).
async fn invoke(server: &Server, name: &str, info: &FunctionInfo, body: &Value) -> Value {
    let http = client();
    let payload = serde_json::to_vec(body).expect("JSON");
    let tries = tries(info, &host_json());
    for attempt in 1..=tries {
        let response = http
            .post(server.url(&format!("/{name}")))
            .header("Content-Type", "application/json; charset=utf-8")
            .header(
                "X-Azure-Functions-InvocationId",
                format!("inv-{name}-{attempt}"),
            )
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
            .body(payload.clone())
            .send()
            .await
            .expect("the handler answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = response.bytes().await.expect("body");
        if (200..300).contains(&status) {
            return validate_envelope_answer(info, status, &content_type, &bytes);
        }
        eprintln!("attempt {attempt} of {tries} of {name} failed with {status}");
    }
    if info.trigger == "blobTrigger" {
        panic!("{name}: {tries} failed tries: the blob would go to the poison queue");
    }
    panic!("{name}: failed, and the host does not retry it ({tries} tries)");
}

#[test]
fn the_host_retries_blob_triggers_only() {
    let functions = load_functions();
    let host = host_json();
    assert_eq!(tries(&functions["retrain-on-upload"], &host), 5);
    assert_eq!(tries(&functions["retrain-on-schedule"], &host), 1);
}

#[test]
fn outputs_without_a_binding_are_ignored_as_the_host_does() {
    let functions = load_functions();
    let timer = &functions["retrain-on-schedule"];
    let body = br#"{"Outputs":{"unbound":1,"Res":true},"Logs":["ok"],"ReturnValue":{"status":"unchanged"}}"#;
    let value = validate_envelope_answer(timer, 200, "application/json", body);
    assert_eq!(value["status"], "unchanged");
}

/// Proxy mode: the original path and query, plus the host's headers.
fn proxied(request: reqwest::RequestBuilder, invocation: &str) -> reqwest::RequestBuilder {
    request
        .header("x-ms-invocation-id", invocation)
        .header("X-Azure-Functions-InvocationId", invocation)
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_handler_honours_the_functions_host_contract() {
    let functions = load_functions();
    let host = host_json();
    assert_eq!(host["customHandler"]["enableProxyingHttpRequest"], true);
    assert_eq!(
        host["customHandler"]["description"]["arguments"],
        json!(["serve"])
    );
    for expected in [
        "predict",
        "invocations",
        "train",
        "models",
        "health",
        "metrics",
        "retrain-on-schedule",
        "retrain-on-upload",
        "feedback",
        "join-feedback",
        "explain",
    ] {
        assert!(
            functions.contains_key(expected),
            "functions/{expected}/function.json is missing"
        );
    }

    let workdir = tempfile::tempdir().expect("tmp");
    let store = workdir.path().join("store");
    let server = Server::start(
        workdir.path(),
        &[("SOMMELIER_STORE", store.display().to_string())],
    );
    assert!(server.readiness < Duration::from_secs(30));
    eprintln!("ready after {:?}", server.readiness);
    let http = client();
    let health = server.wait_healthy(&http).await;
    let champion = health["model_version"]
        .as_str()
        .expect("a model")
        .to_string();

    // HTTP functions in proxy mode: every declared method answers on the original route.
    for (name, info) in functions.iter().filter(|(_, f)| f.trigger == "httpTrigger") {
        assert!(
            info.is_http_in_and_out,
            "{name} must be exactly httpTrigger + http to be proxied"
        );
        let route = info.route.clone().unwrap_or_else(|| name.clone());
        let base = format!(
            "/api/{}",
            route
                .replace("/{*rest}", "")
                .replace("{version}", &champion)
        );
        for method in &info.methods {
            // The models function's POST is the promotion route under its catch-all.
            let path = if name == "models" && method == "POST" {
                format!("{base}/{champion}/promote")
            } else {
                base.clone()
            };
            let url = format!("{}?code=functionkey&unknown=1", server.url(&path));
            let request = match method.as_str() {
                "GET" => http.get(&url),
                "POST" if name == "predict" || name == "explain" => http.post(&url).json(&wine()),
                "POST" if name == "invocations" => http
                    .post(&url)
                    .json(&json!({"dataframe_records": [wine()]})),
                "POST" if name == "feedback" => http.post(&url).json(
                    &json!({"prediction_id": "019b0f4e-8a52-7c3d-9f1e-2b7a4c6d8e90", "quality": 6}),
                ),
                "POST" => http.post(&url),
                other => panic!("unexpected method {other}"),
            };
            let response = proxied(request, &format!("proxy-{name}-{method}"))
                .send()
                .await
                .expect("answer");
            let status = response.status().as_u16();
            // Feedback is accepted for later (202); every other function answers 200.
            let expected = if name == "feedback" { 202 } else { 200 };
            assert!(
                status == expected,
                "{method} {path} answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
    }

    // Timer: both past-due forms, one with chunked framing as the host's ObjectContent sends it.
    let timer = &functions["retrain-on-schedule"];
    assert_eq!(timer.trigger, "timerTrigger");
    let first = invoke(
        &server,
        "retrain-on-schedule",
        timer,
        &timer_envelope("retrain-on-schedule", false),
    )
    .await;
    assert!(
        ["unchanged", "promoted", "kept_champion"]
            .contains(&first["status"].as_str().unwrap_or("")),
        "{first}"
    );
    let chunked = send_chunked(
        &server,
        "/retrain-on-schedule",
        &serde_json::to_vec(&timer_envelope("retrain-on-schedule", true)).expect("json"),
    );
    let value = validate_envelope_answer(timer, chunked.0, &chunked.1, &chunked.2);
    assert_eq!(
        value["status"], "unchanged",
        "the bundled data did not change: {value}"
    );

    // The feedback join's timer.
    let join = &functions["join-feedback"];
    assert_eq!(join.trigger, "timerTrigger");
    let joined = invoke(
        &server,
        "join-feedback",
        join,
        &timer_envelope("join-feedback", false),
    )
    .await;
    assert_eq!(joined["status"], "joined", "{joined}");
    assert_eq!(
        joined["outcome"]["report"]["unmatched_labels"], 1,
        "{joined}"
    );

    // Blob trigger: a CSV larger than axum's default 2 MB limit, base64-inlined.
    let upload = &functions["retrain-on-upload"];
    assert_eq!(upload.trigger, "blobTrigger");
    let big = large_csv(3 * 1024 * 1024, 1);
    let answer = invoke(
        &server,
        "retrain-on-upload",
        upload,
        &blob_envelope("retrain-on-upload", "big.csv", &big),
    )
    .await;
    assert!(
        ["promoted", "kept_champion"].contains(&answer["status"].as_str().unwrap_or("")),
        "{answer}"
    );
    let version = answer["report"]["version"]
        .as_str()
        .expect("version")
        .to_string();
    // The same blob delivered again creates no second version.
    let again = invoke(
        &server,
        "retrain-on-upload",
        upload,
        &blob_envelope("retrain-on-upload", "big.csv", &big),
    )
    .await;
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_eq!(again["version"], version);
    // An invalid upload is rejected for good with a 2xx answer.
    let bad = invoke(
        &server,
        "retrain-on-upload",
        upload,
        &blob_envelope("retrain-on-upload", "bad.csv", b"a,b\n1,2\n"),
    )
    .await;
    assert_eq!(bad["status"], "rejected", "{bad}");
    assert!(
        bad["reason"]
            .as_str()
            .unwrap_or("")
            .contains("missing required column"),
        "{bad}"
    );

    // Concurrent invocations: uploads and predictions at once.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let csv = large_csv(200 * 1024, 10 + i);
        let envelope = blob_envelope("retrain-on-upload", &format!("part-{i}.csv"), &csv);
        let port = server.port;
        tasks.push(tokio::spawn(async move {
            let response = client()
                .post(format!("http://127.0.0.1:{port}/retrain-on-upload"))
                .header("Content-Type", "application/json; charset=utf-8")
                .header("X-Azure-Functions-InvocationId", format!("concurrent-{i}"))
                .json(&envelope)
                .send()
                .await
                .expect("answer");
            (
                response.status().as_u16(),
                response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
                response.bytes().await.expect("body").to_vec(),
            )
        }));
    }
    let mut predictions = Vec::new();
    for i in 0..40 {
        let request = proxied(
            http.post(server.url("/api/predict?code=k")).json(&wine()),
            &format!("p-{i}"),
        );
        predictions.push(request.send());
    }
    for response in futures_join(predictions).await {
        let response = response.expect("prediction answer");
        assert_eq!(response.status(), 200);
    }
    for task in tasks {
        let (status, content_type, body) = task.await.expect("task");
        let value = validate_envelope_answer(upload, status, &content_type, &body);
        assert!(
            ["promoted", "kept_champion"].contains(&value["status"].as_str().unwrap_or("")),
            "{value}"
        );
    }
    let models: Value = support::get_json(&server, "/api/models?code=k").await;
    let versions = models["versions"].as_array().expect("versions");
    assert!(
        versions.len() >= 5,
        "first model, big.csv and three parts: {models}"
    );
    let champion = models["champion"].as_str().expect("a champion");
    assert!(
        versions.iter().any(|v| v["version"] == champion),
        "the champion names a stored version"
    );
}

/// Joins request futures without an extra crate.
async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("join"));
    }
    out
}

/// The bundled rows repeated (with a tweak per copy so each file is different data) until the
/// file reaches `size` bytes.
fn large_csv(size: usize, salt: usize) -> Vec<u8> {
    let data = String::from_utf8(bundled_csv()).expect("utf-8");
    let mut lines = data.lines();
    let header = lines.next().expect("header");
    let rows: Vec<&str> = lines.collect();
    let mut out = format!("{header}\n");
    let mut copy = 0;
    while out.len() < size {
        for row in &rows {
            // Nudge residual sugar by a tiny, copy-specific amount.
            let mut fields: Vec<String> = row.split(',').map(str::to_string).collect();
            let sugar: f64 = fields[3].parse().expect("number");
            fields[3] = format!("{:.6}", sugar + (copy * 7 + salt) as f64 * 1e-6);
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        copy += 1;
    }
    out.into_bytes()
}

/// Sends an envelope with `Transfer-Encoding: chunked` over a raw socket.
fn send_chunked(server: &Server, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\nX-Azure-Functions-InvocationId: chunked-1\r\nX-Azure-Functions-HostVersion: {HOST_VERSION}\r\nUser-Agent: Azure-Functions-Host/{HOST_VERSION}\r\nConnection: close\r\n\r\n",
        server.port
    )
    .into_bytes();
    for chunk in body.chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, content_type, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 2 + size + 2..];
    }
}

#[tokio::test]
async fn readiness_does_not_wait_for_the_model_and_sigterm_stops_gracefully() {
    let workdir = tempfile::tempdir().expect("tmp");
    let store = workdir.path().join("store");
    let mut server = Server::start(
        workdir.path(),
        &[("SOMMELIER_STORE", store.display().to_string())],
    );
    // The first start trains a model; readiness came before it, and health says so.
    let health = client()
        .get(server.url("/api/health"))
        .send()
        .await
        .expect("health");
    let status = health.status().as_u16();
    let body: Value = health.json().await.expect("json");
    assert!(
        status == 503 && body["status"] == "unhealthy" || status == 200,
        "{status} {body}"
    );
    server.wait_healthy(&client()).await;
    let exit = server.terminate();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
}

/// A 50 MB CSV arrives whole (about 67 MB of base64 in the envelope): its last line is
/// invalid, so the answer must name a line past the 50 MB mark, proving every byte was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_csv_arrives_whole_through_the_blob_envelope() {
    let functions = load_functions();
    let upload = &functions["retrain-on-upload"];
    let workdir = tempfile::tempdir().expect("tmp");
    let store = workdir.path().join("store");
    let server = Server::start(
        workdir.path(),
        &[("SOMMELIER_STORE", store.display().to_string())],
    );
    server.wait_healthy(&client()).await;
    let mut csv = large_csv(50 * 1024 * 1024, 99);
    let lines = csv.iter().filter(|&&b| b == b'\n').count();
    csv.extend_from_slice(b"7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,eleven\n");
    assert!(csv.len() > 50 * 1024 * 1024);
    let answer = invoke(
        &server,
        "retrain-on-upload",
        upload,
        &blob_envelope("retrain-on-upload", "huge.csv", &csv),
    )
    .await;
    assert_eq!(answer["status"], "rejected", "{answer}");
    let reason = answer["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!("line {}", lines + 1)),
        "the last line is named: {reason}"
    );
    let health: Value = support::get_json(&server, "/api/health").await;
    assert_eq!(
        health["status"], "healthy",
        "the champion is untouched: {health}"
    );
}
