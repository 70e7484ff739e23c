//! The HTTP API, served in this process where no process of its own is needed: every input
//! format, every bad input, and the OpenAPI document checked against real requests.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support;
use crate::support::{client, wine, Address, InProcess, Server};

/// The server in this process (see [`InProcess`]), on a fresh store, first model trained.
async fn started_in_process() -> (tempfile::TempDir, InProcess) {
    let dir = tempfile::tempdir().expect("tmp");
    let server = InProcess::start(
        &dir.path().join("store"),
        &[("SOMMELIER_MAX_BATCH_ROWS", "100")],
    )
    .await;
    support::wait_healthy(&server, &client()).await;
    (dir, server)
}

async fn started() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let server = Server::start(
        dir.path(),
        &[
            ("SOMMELIER_STORE", store.display().to_string()),
            ("SOMMELIER_MAX_BATCH_ROWS", "100".to_string()),
        ],
    );
    server.wait_healthy(&client()).await;
    (dir, server)
}

async fn post_json(server: &impl Address, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = client()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .expect("answer");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

async fn post_raw(
    server: &impl Address,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = client().post(server.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("answer");
    let status = response.status();
    let text = response.text().await.expect("text");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

fn form_body(value: &Value) -> String {
    value
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_in_every_accepted_format() {
    let (_dir, server) = started_in_process().await;
    let (status, single) = post_json(&server, "/api/predict?code=abc&extra=1", &wine()).await;
    assert_eq!(status, 200, "{single}");
    let prediction = single["prediction"].as_f64().expect("prediction");
    assert!((3.0..=8.0).contains(&prediction), "{single}");
    assert!(single["model_version"].is_string());
    assert_eq!(single["out_of_range"], json!([]));

    // The original form contract gives the same answer.
    let (status, form) = post_raw(
        &server,
        "/api/predict",
        Some("application/x-www-form-urlencoded"),
        form_body(&wine()).into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{form}");
    assert_eq!(form["prediction"], single["prediction"]);

    // A batch, with one row out of range.
    let mut strong = wine();
    strong["alcohol"] = json!(20.0);
    let (status, batch) = post_json(
        &server,
        "/api/predict",
        &json!({"instances": [wine(), strong]}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["predictions"][0], single["prediction"]);
    assert_eq!(batch["out_of_range"], json!([[], ["alcohol"]]));

    // Unknown fields are reported, not fatal; numeric strings are accepted.
    let mut extra = wine();
    extra["colour"] = json!("red");
    extra["pH"] = json!("3.51");
    let (status, answer) = post_json(&server, "/api/predict", &extra).await;
    assert_eq!(status, 200);
    assert_eq!(answer["ignored_fields"], json!(["colour"]));
    assert_eq!(answer["prediction"], single["prediction"]);

    // MLflow's four JSON formats and CSV give the same number.
    let names = [
        "fixed_acidity",
        "volatile_acidity",
        "citric_acid",
        "residual_sugar",
        "chlorides",
        "free_sulfur_dioxide",
        "total_sulfur_dioxide",
        "density",
        "pH",
        "sulphates",
        "alcohol",
    ];
    let values: Vec<Value> = names.iter().map(|n| wine()[n].clone()).collect();
    let bodies = [
        json!({"dataframe_split": {"columns": names, "data": [values.clone()]}}),
        json!({"dataframe_records": [wine()]}),
        json!({"instances": [wine()]}),
        json!({"instances": [values.clone()]}),
        json!({"inputs": [wine()]}),
        json!({"inputs": names.iter().map(|n| (n.to_string(), json!([wine()[n]]))).collect::<serde_json::Map<_, _>>()}),
        json!({"dataframe_records": [wine()], "params": {}}),
    ];
    for body in &bodies {
        let (status, answer) = post_json(&server, "/api/invocations", body).await;
        assert_eq!(status, 200, "{body} -> {answer}");
        assert_eq!(
            answer["predictions"],
            json!([single["prediction"]]),
            "{body}"
        );
    }
    let csv = format!(
        "{}\n{}\n",
        names.join(","),
        values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let (status, answer) = post_raw(
        &server,
        "/api/invocations",
        Some("text/csv"),
        csv.into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["predictions"], json!([single["prediction"]]));
    // Shut down as a signal would: the server stops cleanly, in process.
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_that_names_the_problem() {
    let (_dir, server) = started_in_process().await;
    let mut missing = wine();
    missing.as_object_mut().expect("object").remove("alcohol");
    let mut nan = wine();
    nan["density"] = json!("NaN");
    let mut infinite = wine();
    infinite["chlorides"] = json!("inf");
    let mut text = wine();
    text["sulphates"] = json!("lots");
    let mut null = wine();
    null["pH"] = Value::Null;
    let cases: Vec<(Value, Option<&str>, &str)> = vec![
        (missing, Some("alcohol"), "missing field `alcohol`"),
        (nan, Some("density"), "is NaN"),
        (infinite, Some("chlorides"), "is infinite"),
        (text, Some("sulphates"), "is not a number"),
        (null, Some("pH"), "must be a number"),
        (json!([1, 2, 3]), None, "expected a JSON object"),
        (json!({"instances": "nope"}), None, "must be an array"),
        (json!({"instances": []}), None, "the batch is empty"),
    ];
    for (body, field, message) in cases {
        let (status, answer) = post_json(&server, "/api/predict", &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(message),
            "{body} -> {answer}"
        );
        assert_eq!(answer["field"].as_str(), field, "{answer}");
    }
    let (status, answer) = post_json(
        &server,
        "/api/predict",
        &json!({"instances": [wine(), {"alcohol": 1}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("row 1: missing field"),
        "{answer}"
    );

    let raw_cases: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (
            Some("application/json"),
            b"{\"fixed_acidity\": ".to_vec(),
            400,
            "malformed JSON",
        ),
        (
            Some("application/json"),
            Vec::new(),
            400,
            "request body is empty",
        ),
        (
            Some("text/plain"),
            b"hello".to_vec(),
            415,
            "unsupported content type `text/plain`",
        ),
        (
            None,
            b"hello".to_vec(),
            415,
            "unsupported content type `(none)`",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"alcohol=9".to_vec(),
            400,
            "missing field",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            Vec::new(),
            400,
            "request body is empty",
        ),
    ];
    for (content_type, body, status, message) in raw_cases {
        let (got, answer) = post_raw(&server, "/api/predict", content_type, body).await;
        assert_eq!(got.as_u16(), status, "{content_type:?} -> {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(message),
            "{answer}"
        );
    }

    // Oversized body and oversized batch.
    // Refused from the declared length before the body is read, so the client may see its
    // upload cut short instead of the answer (tests/hostile.rs reads the answer itself).
    let huge = vec![b' '; 16 * 1024 * 1024 + 1];
    let response = client()
        .post(server.url("/api/predict"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status(), 413);
    }
    let batch: Vec<Value> = (0..101).map(|_| wine()).collect();
    let (status, answer) = post_json(&server, "/api/predict", &json!({"instances": batch})).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("SOMMELIER_MAX_BATCH_ROWS"),
        "{answer}"
    );

    // MLflow's malformed-request behaviour: 400 BAD_REQUEST, 415 for other content types.
    for body in [
        json!({}),
        json!({"instances": [wine()], "inputs": [wine()]}),
        json!({"dataframe_split": {"columns": ["a"]}}),
    ] {
        let (status, answer) = post_json(&server, "/api/invocations", &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error_code"], "BAD_REQUEST", "{answer}");
    }
    let (status, answer) = post_raw(
        &server,
        "/api/invocations",
        Some("application/xml"),
        b"<x/>".to_vec(),
    )
    .await;
    assert_eq!(status, 415, "{answer}");
    // As MLflow's scoring server: UTF-8 only, and no content-type parameter but charset.
    let records = json!({"dataframe_records": [wine()]})
        .to_string()
        .into_bytes();
    for (content_type, expected) in [
        ("application/json; charset=utf-8", 200),
        ("application/json;charset=UTF-8", 200),
        ("application/json; charset=latin-1", 415),
        ("application/json; format=pandas-split", 415),
        ("application/json; foo=bar", 415),
    ] {
        let (status, answer) = post_raw(
            &server,
            "/api/invocations",
            Some(content_type),
            records.clone(),
        )
        .await;
        assert_eq!(status, expected, "{content_type}: {answer}");
    }
    let (status, answer) = post_raw(
        &server,
        "/api/invocations",
        Some("text/csv"),
        b"a,b\n1,2\n".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("missing required column"),
        "{answer}"
    );

    // Unknown routes, unknown versions and wrong methods answer JSON too.
    let response = client()
        .get(server.url("/api/nothing"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 404);
    assert!(response.json::<Value>().await.expect("json")["error"].is_string());
    let (status, answer) = post_raw(
        &server,
        "/api/models/19990101T000000000Z-0000000/promote",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let response = client()
        .delete(server.url("/api/predict"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 405);
    assert!(response.json::<Value>().await.expect("json")["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_models_promote_health_and_metrics() {
    let (_dir, server) = started().await;
    let http = client();
    let health: Value = support::get_json(&server, "/api/health").await;
    assert_eq!(health["status"], "healthy");
    let first = health["model_version"]
        .as_str()
        .expect("version")
        .to_string();

    // The same data and recipe as the champion: nothing is trained, the champion stays.
    let unchanged: Value = http
        .post(server.url("/api/train"))
        .send()
        .await
        .expect("train")
        .json()
        .await
        .expect("json");
    assert_eq!(unchanged["status"], "unchanged", "{unchanged}");
    assert_eq!(unchanged["champion"], first.as_str(), "{unchanged}");
    assert_eq!(unchanged["promoted"], false, "{unchanged}");
    // The counts mean what they mean in a trained answer: all rows, and those fitted on.
    let models: Value = support::get_json(&server, "/api/models").await;
    let card = models["versions"]
        .as_array()
        .and_then(|versions| versions.iter().find(|v| v["version"] == first.as_str()))
        .unwrap_or_else(|| panic!("{first} listed: {models}"));
    let holdout = card["metrics"]["rows"].as_u64().expect("holdout rows");
    let fitted = card["training_rows"].as_u64().expect("training rows");
    assert_eq!(unchanged["training_rows"], fitted, "{unchanged}");
    assert_eq!(unchanged["rows"], fitted + holdout, "{unchanged}");

    // Two trainings at once: one runs, the other is told to wait.
    let a = http
        .post(server.url("/api/train?algorithm=random-forest"))
        .send();
    let b = http
        .post(server.url("/api/train?algorithm=random-forest"))
        .send();
    let (a, b) = tokio::join!(a, b);
    let mut statuses = vec![
        a.expect("a").status().as_u16(),
        b.expect("b").status().as_u16(),
    ];
    statuses.sort_unstable();
    assert!(
        statuses == vec![200, 409] || statuses == vec![200, 200],
        "{statuses:?}"
    );

    let response = http
        .post(server.url("/api/train?algorithm=elastic-net"))
        .send()
        .await
        .expect("train");
    assert_eq!(response.status(), 200);
    let trained: Value = response.json().await.expect("json");
    assert_eq!(trained["message"], "Model training successful!");
    assert_eq!(
        trained["promoted"], false,
        "the elastic net is worse: {trained}"
    );
    assert!(trained["reason"].as_str().unwrap_or("").contains("worse"));
    let response = http
        .post(server.url("/api/train?algorithm=nonsense"))
        .send()
        .await
        .expect("train");
    assert_eq!(response.status(), 400);

    let models: Value = support::get_json(&server, "/api/models").await;
    let versions = models["versions"].as_array().expect("versions");
    assert!(versions.len() >= 3, "{models}");
    let elastic = trained["version"].as_str().expect("version");

    // GET reports the last training and changes nothing.
    let status: Value = support::get_json(&server, "/api/train").await;
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(status["last_trigger"], "http", "{status}");
    assert_eq!(status["last"]["version"], elastic, "{status}");
    let again: Value = support::get_json(&server, "/api/models").await;
    assert_eq!(again["versions"], models["versions"]);

    // Locally, state changes come only from this machine's own pages.
    let forbidden = [("Host", "evil.example"), ("Origin", "http://evil.example")];
    for (header, value) in forbidden {
        let response = http
            .post(server.url(&format!("/api/models/{elastic}/promote")))
            .header(header, value)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 403, "{header}: {value}");
    }
    // Roll forward to the elastic net, then back to the first model: served at once.
    for target in [elastic, first.as_str()] {
        let (status, answer) = post_raw(
            &server,
            &format!("/api/models/{target}/promote"),
            None,
            Vec::new(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["champion"], target);
        let (_, prediction) = post_json(&server, "/api/predict", &wine()).await;
        assert_eq!(prediction["model_version"], target);
    }

    let metrics = support::get_text(&server, "/api/metrics").await;
    for needle in [
        "sommelier_http_requests_total{function=\"predict\",status=\"200\"}",
        "sommelier_http_requests_total{function=\"predict\",status=\"400\"}",
        "sommelier_http_request_duration_seconds_bucket{function=\"predict\"",
        "sommelier_predictions_total",
        "sommelier_model_load_duration_seconds",
        &format!("sommelier_model_info{{algorithm=\"extra-trees\",version=\"{first}\"}} 1"),
        "sommelier_training_runs_total{outcome=\"kept_champion\",trigger=\"http\"}",
        "sommelier_training_duration_seconds_bucket{trigger=\"http\"",
        "sommelier_feature_drift_psi{feature=\"alcohol\"}",
        "sommelier_cold_starts_total 1",
    ] {
        if needle.contains("status=\"400\"") {
            let _ = post_json(&server, "/api/predict", &json!({})).await;
            let again = support::get_text(&server, "/api/metrics").await;
            assert!(again.contains(needle), "{needle} missing");
            continue;
        }
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }

    // Promoting the champion again (a retried rollback) keeps the previous champion it
    // remembers, the rollback target; the pointer's name is no version.
    let (status, answer) = post_raw(
        &server,
        &format!("/api/models/{first}/promote"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["champion"].as_str(), answer["previous"].as_str()),
        (Some(first.as_str()), Some(elastic)),
        "{answer}"
    );
    let (status, answer) =
        post_raw(&server, "/api/models/champion/promote", None, Vec::new()).await;
    assert_eq!(status, 404, "{answer}");
    // A path that is not UTF-8 is refused in the one error shape.
    let (status, answer) = post_raw(&server, "/api/models/%FF/promote", None, Vec::new()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be read"),
        "{answer}"
    );

    // The same options in a JSON body; one that names no option is refused, naming it.
    let response = http
        .post(server.url("/api/train"))
        .json(&json!({"algorithm": "random-forest", "force": true}))
        .send()
        .await
        .expect("train");
    assert_eq!(response.status(), 200);
    let from_body: Value = response.json().await.expect("json");
    assert_eq!(from_body["algorithm"], "random-forest", "{from_body}");
    let response = http
        .post(server.url("/api/train"))
        .json(&json!({"algoritm": "random-forest"}))
        .send()
        .await
        .expect("train");
    assert_eq!(response.status(), 400);
    let refused: Value = response.json().await.expect("json");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("`algoritm`"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_real_requests() {
    let (_dir, server) = started_in_process().await;
    let document: Value = support::get_json(&server, "/api/openapi.json").await;
    assert!(document["openapi"].as_str().unwrap_or("").starts_with("3."));
    let paths = document["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/predict", vec!["get", "post"]),
        ("/api/invocations", vec!["post"]),
        ("/api/train", vec!["get", "post"]),
        ("/api/models", vec!["get"]),
        ("/api/models/{version}/promote", vec!["post"]),
        ("/api/health", vec!["get"]),
        ("/api/metrics", vec!["get"]),
    ] {
        for method in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} is not documented"
            );
        }
    }
    // The documented example request is accepted, and the answer has the documented fields.
    let schemas = &document["components"]["schemas"];
    let features = &schemas["WineFeatures"];
    let required: Vec<&str> = features["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required.len(), 11);
    let example: serde_json::Map<String, Value> = features["properties"]
        .as_object()
        .expect("properties")
        .iter()
        .map(|(name, property)| (name.clone(), property["example"].clone()))
        .collect();
    let (status, answer) =
        post_json(&server, "/api/predict", &Value::Object(example.clone())).await;
    assert_eq!(
        status, 200,
        "the documented example must be accepted: {answer}"
    );
    assert_documented(&schemas["PredictionResponse"], &answer);
    let (status, answer) =
        post_json(&server, "/api/predict", &json!({"instances": [example]})).await;
    assert_eq!(status, 200);
    assert_documented(&schemas["BatchPredictionResponse"], &answer);
    let health: Value = support::get_json(&server, "/api/health").await;
    assert_documented(&schemas["HealthResponse"], &health);
    let models: Value = support::get_json(&server, "/api/models").await;
    assert_documented(&schemas["ModelsResponse"], &models);
    let (_, error) = post_json(&server, "/api/predict", &json!({})).await;
    assert_documented(&schemas["ErrorBody"], &error);
}

/// Every required property is present and every present property is documented.
fn assert_documented(schema: &Value, answer: &Value) {
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema without properties: {schema}"));
    for required in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        assert!(
            answer.get(required).is_some(),
            "documented field `{required}` missing from {answer}"
        );
    }
    for key in answer.as_object().expect("object").keys() {
        assert!(
            properties.contains_key(key),
            "field `{key}` is not documented in {schema}"
        );
    }
}

/// A secret that App Service could not resolve arrives as the reference's own text: it is
/// not used as a credential, and health says so while the instance serves.
#[tokio::test]
async fn an_unresolved_key_vault_reference_is_named_by_health() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = InProcess::start(
        &dir.path().join("store"),
        &[
            // Nothing listens on the discard port: pushes fail fast, as they would with the
            // reference's text sent as a password.
            ("SOMMELIER_PUSHGATEWAY_URL", "http://127.0.0.1:9"),
            ("SOMMELIER_PUSHGATEWAY_USERNAME", "pusher"),
            (
                "SOMMELIER_PUSHGATEWAY_PASSWORD",
                "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/push/)",
            ),
        ],
    )
    .await;
    let health = support::wait_healthy(&server, &client()).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let reason = health["degraded"].as_str().expect("reason");
    assert!(
        reason.contains("SOMMELIER_PUSHGATEWAY_PASSWORD") && reason.contains("Key Vault"),
        "{reason}"
    );
    assert!(
        !reason.contains("vault.azure.net"),
        "the reference is not repeated: {reason}"
    );
    let (status, _) = post_json(&server, "/api/predict", &wine()).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn a_browser_without_javascript_gets_the_page_with_the_result() {
    let (_dir, server) = started().await;
    let response = client()
        .post(server.url("/api/predict"))
        .header("accept", "text/html,application/xhtml+xml")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&wine()))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let page = response.text().await.expect("html");
    assert!(
        page.contains("Predicted quality: <strong id=\"prediction-value\">"),
        "{page}"
    );
    let page = client()
        .get(server.url("/api/predict"))
        .send()
        .await
        .expect("form")
        .text()
        .await
        .expect("html");
    for name in ["fixed_acidity", "pH", "alcohol"] {
        assert!(
            page.contains(&format!("<label for=\"{name}\">")),
            "an accessible label for {name}"
        );
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
}
