//! The loop on a local store, through the real binary: prediction ids on every answer, the
//! prediction log, feedback, the join and its report, and labelled rows in the next training.

mod common;

use common::{client, wine, Server};
use serde_json::{json, Value};

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
    let response = client()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-prediction-id")
        .map(|v| v.to_str().expect("ascii").to_string());
    (status, id, response.json().await.expect("JSON"))
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
}
