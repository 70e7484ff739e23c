//! `/api/explain` and the intervals through the real binary: one wine, a batch, the row
//! limit, the media types, the OpenAPI document, a model from before explanations (409, still
//! predicting), and the form page's explanation.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sommelier::config::Settings;
use sommelier::model::algorithm::{Algorithm, ModelSpec, SpecOverrides};
use sommelier::model::artifact::DataSource;
use sommelier::model::dataset::read_training_data;
use sommelier::model::training::{train, TrainOptions, Trigger};
use sommelier::registry::{card_file, ArtifactDigest};

use crate::support;
use crate::support::{client, wine, Server};

const MAX_EXPLAIN_ROWS: usize = 5;

async fn started(store: &std::path::Path, dir: &std::path::Path) -> Server {
    let server = Server::start(
        dir,
        &[
            ("SOMMELIER_STORE", store.display().to_string()),
            ("SOMMELIER_MAX_EXPLAIN_ROWS", MAX_EXPLAIN_ROWS.to_string()),
        ],
    );
    server.wait_healthy(&client()).await;
    server
}

async fn post(
    server: &Server,
    path: &str,
    content_type: &str,
    body: String,
) -> (StatusCode, Value) {
    let response = client()
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("answer");
    let status = response.status();
    let text = response.text().await.expect("text");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

/// `base_value + Σ contributions` of an explanation body.
fn total(explanation: &Value) -> f64 {
    let contributions = explanation["contributions"]
        .as_object()
        .expect("contributions");
    assert_eq!(contributions.len(), 11, "{explanation}");
    explanation["base_value"].as_f64().expect("base")
        + contributions
            .values()
            .map(|v| v.as_f64().expect("number"))
            .sum::<f64>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_add_up_to_the_predictions_and_predictions_carry_intervals() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = started(&dir.path().join("store"), dir.path()).await;
    let (status, one) = post(
        &server,
        "/api/explain",
        "application/json",
        wine().to_string(),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    let prediction = one["prediction"].as_f64().expect("prediction");
    assert_eq!(one["explanation"]["method"], "tree_path_dependent");
    assert!(
        (total(&one["explanation"]) - prediction).abs() < 1e-9,
        "{one}"
    );
    let [low, high] = [0, 1].map(|i| one["interval"][i].as_f64().expect("interval"));
    assert!(
        low <= prediction && prediction <= high && high - low > 0.5,
        "{one}"
    );

    // /api/predict gives the same prediction and interval.
    let (status, predicted) = post(
        &server,
        "/api/predict",
        "application/json",
        wine().to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(predicted["prediction"], one["prediction"]);
    assert_eq!(predicted["interval"], one["interval"]);
    let batch = json!({"instances": [wine(), wine(), wine()]});
    let (_, predicted) = post(
        &server,
        "/api/predict",
        "application/json",
        batch.to_string(),
    )
    .await;
    assert_eq!(
        predicted["intervals"].as_array().expect("intervals").len(),
        3
    );

    let (status, explained) = post(
        &server,
        "/api/explain",
        "application/json",
        batch.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{explained}");
    let explanations = explained["explanations"].as_array().expect("explanations");
    assert_eq!(explanations.len(), 3);
    for (explanation, prediction) in explanations
        .iter()
        .zip(explained["predictions"].as_array().expect("p"))
    {
        assert!((total(explanation) - prediction.as_f64().expect("p")).abs() < 1e-9);
    }

    // Form fields are explained too.
    let form = wine()
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let (status, formed) = post(
        &server,
        "/api/explain",
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!(status, 200, "{formed}");
    assert_eq!(formed["prediction"], one["prediction"]);

    // Past the row limit: 413 naming the setting, before any work.
    let too_many = json!({"instances": vec![wine(); MAX_EXPLAIN_ROWS + 1]});
    let (status, refused) = post(
        &server,
        "/api/explain",
        "application/json",
        too_many.to_string(),
    )
    .await;
    assert_eq!(status, 413, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("SOMMELIER_MAX_EXPLAIN_ROWS"),
        "{refused}"
    );
    let (status, _) = post(&server, "/api/explain", "text/plain", wine().to_string()).await;
    assert_eq!(status, 415);
    let (status, bad) = post(
        &server,
        "/api/explain",
        "application/json",
        "{\"alcohol\": 1}".into(),
    )
    .await;
    assert_eq!(status, 400, "{bad}");

    // The document states the route, its row limit and its 409.
    let document: Value = support::get_json(&server, "/api/openapi.json").await;
    let explain = &document["paths"]["/api/explain"]["post"];
    assert!(explain["responses"]["409"].is_object(), "{explain}");
    assert_eq!(
        document["components"]["schemas"]["ExplainBatchRequest"]["properties"]["instances"]
            ["maxItems"],
        MAX_EXPLAIN_ROWS
    );
    let documented = &document["components"]["schemas"]["ExplainResponse"]["properties"];
    for key in one.as_object().expect("object").keys() {
        assert!(documented.get(key).is_some(), "`{key}` is not documented");
    }
    // The metrics label the route.
    let metrics = support::get_text(&server, "/api/metrics").await;
    assert!(metrics.contains("function=\"explain\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_from_before_explanations_answers_409_and_still_predicts() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let settings = Settings::from_env(Some(&store.display().to_string())).expect("settings");
    let registry = sommelier::registry::open_registry(&settings)
        .await
        .expect("registry");
    let data = read_training_data(sommelier::bundled::WINE_QUALITY_RED_CSV).expect("data");
    let overrides = SpecOverrides {
        n_trees: Some(10),
        ..Default::default()
    };
    let options = TrainOptions::new(
        ModelSpec::build(Algorithm::ExtraTrees, &overrides).expect("spec"),
        DataSource::named("bundled"),
        Trigger::Cli,
    );
    let artifact = train(&data, &options).expect("train").artifact;
    let version = artifact.card.version.clone();
    registry.save(&artifact).await.expect("save");
    // The same version as an earlier build stored it: format 2, no covers, no calibration.
    let old = artifact.encode_format_2().expect("format 2");
    let mut card = artifact.card.clone();
    card.format_version = 2;
    card.calibration = None;
    card.importance = None;
    let folder = store.join(&version);
    std::fs::write(
        folder.join("card.json"),
        card_file(&card, &ArtifactDigest::of(&old)).expect("card"),
    )
    .expect("card");
    std::fs::write(folder.join("model.bin"), &old).expect("model");
    registry.promote(&version).await.expect("promote");

    let server = started(&store, dir.path()).await;
    let (status, refused) = post(
        &server,
        "/api/explain",
        "application/json",
        wine().to_string(),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["error"],
        "this model was trained before explanations; retrain to enable them"
    );
    let (status, predicted) = post(
        &server,
        "/api/predict",
        "application/json",
        wine().to_string(),
    )
    .await;
    assert_eq!(status, 200, "{predicted}");
    assert_eq!(predicted["model_version"], version.as_str());
    assert!(predicted.get("interval").is_none(), "{predicted}");
    // The form still answers, without the explanation.
    let page = client()
        .post(server.url("/api/predict"))
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("fixed_acidity=7.4&volatile_acidity=0.7&citric_acid=0&residual_sugar=1.9&chlorides=0.076&free_sulfur_dioxide=11&total_sulfur_dioxide=34&density=0.9978&pH=3.51&sulphates=0.56&alcohol=9.4")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("id=\"prediction-value\""), "{page}");
    assert!(!page.contains("id=\"contributions\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_page_explains_echoes_and_marks_without_javascript() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = started(&dir.path().join("store"), dir.path()).await;
    let page = |body: &'static str| {
        let request = client()
            .post(server.url("/api/predict"))
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move {
            request
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("html")
        }
    };
    let valid = page("fixed_acidity=7.4&volatile_acidity=0.7&citric_acid=0&residual_sugar=1.9&chlorides=0.076&free_sulfur_dioxide=11&total_sulfur_dioxide=34&density=0.9978&pH=3.51&sulphates=0.56&alcohol=12.5").await;
    for part in [
        "= average 5.6",
        "<svg class=\"chart\" id=\"contributions\"",
        "<details id=\"exact\">",
        "% prediction interval:",
        "holdout RMSE",
        "value=\"12.5\"",
    ] {
        assert!(valid.contains(part), "{part} missing from {valid}");
    }
    let invalid = page("fixed_acidity=7.4&volatile_acidity=abc&citric_acid=0&residual_sugar=1.9&chlorides=0.076&free_sulfur_dioxide=11&total_sulfur_dioxide=34&density=0.9978&pH=3.51&sulphates=0.56&alcohol=12.5").await;
    assert!(invalid.contains("value=\"abc\""), "the bad value is echoed");
    assert!(
        invalid.contains("value=\"12.5\""),
        "the other values are echoed"
    );
    assert!(
        invalid.contains("class=\"field invalid\""),
        "the field is marked"
    );
    assert!(invalid.contains("Volatile acidity"));
    let result = &invalid[invalid.find("id=\"result\"").expect("result")..];
    assert!(!result.contains('`'), "no backticks: {result}");
    let outside = page("fixed_acidity=7.4&volatile_acidity=0.7&citric_acid=0&residual_sugar=1.9&chlorides=0.076&free_sulfur_dioxide=11&total_sulfur_dioxide=34&density=0.9978&pH=3.51&sulphates=0.56&alcohol=16.5").await;
    assert!(
        outside.contains("Outside the training range 8.4 to"),
        "{outside}"
    );
}
