//! The prediction form in real headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `scripts/install-tools.sh`): fill, submit, see the prediction inline;
//! the server's address leads a browser to the form, and the API page renders the document.

use std::process::Command;

use serde_json::Value;

use crate::support::{client, repo_root, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and chromium"]
async fn the_form_shows_a_prediction_and_inline_errors_in_chromium() {
    let node_modules = repo_root().join(".tools/node/node_modules");
    assert!(
        node_modules.join("playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium is missing: run `bash scripts/install-tools.sh`"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        dir.path(),
        &[(
            "SOMMELIER_STORE",
            dir.path().join("store").display().to_string(),
        )],
    );
    let health = server.wait_healthy(&client()).await;
    let screenshot = dir.path().join("form.png");
    let output = Command::new("node")
        .arg(repo_root().join("tests/browser/form.cjs"))
        .arg(server.url("/api/predict?code=functionkey"))
        .arg(&screenshot)
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let result = seen["result"].as_str().expect("result");
    assert!(result.starts_with("Predicted quality: "), "{seen}");
    assert!(
        result.contains(health["model_version"].as_str().expect("version")),
        "{seen}"
    );
    let value: f64 = result["Predicted quality: ".len()..]
        .split_whitespace()
        .next()
        .expect("number")
        .parse()
        .expect("a number");
    assert!((3.0..=8.5).contains(&value), "{seen}");
    assert!(
        seen["error"]
            .as_str()
            .unwrap_or("")
            .contains("Please enter a value for Density"),
        "{seen}"
    );
    assert_eq!(seen["feedback"], "Thank you: recorded.", "{seen}");
    assert!(
        seen["askedForKey"]
            .as_str()
            .unwrap_or("")
            .contains("enter the labelling key"),
        "{seen}"
    );
    let urls: Vec<&str> = seen["feedbackUrls"]
        .as_array()
        .expect("the feedback requests")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(urls.len(), 3, "{seen}");
    assert!(
        urls[0].ends_with("/api/feedback?code=functionkey"),
        "{seen}"
    );
    assert!(
        urls[2].ends_with("/api/feedback?code=labelling%20key"),
        "{seen}"
    );
    assert_eq!(seen["labels"], 11);
    assert_eq!(
        seen["external"],
        serde_json::json!([]),
        "the page loads nothing from outside"
    );
    assert!(
        std::fs::metadata(&screenshot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "a screenshot was taken"
    );
    if let Some(keep) = std::env::var_os("SOMMELIER_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&screenshot, keep);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and chromium"]
async fn a_browser_is_sent_to_the_form_and_the_api_page_renders_the_document() {
    let node_modules = repo_root().join(".tools/node/node_modules");
    assert!(
        node_modules.join("playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium is missing: run `bash scripts/install-tools.sh`"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        dir.path(),
        &[(
            "SOMMELIER_STORE",
            dir.path().join("store").display().to_string(),
        )],
    );
    // The host's probe: `GET /` without `text/html` is answered at once, no redirect.
    let probe = client().get(server.url("/")).send().await.expect("probe");
    assert_eq!(probe.status(), 200);
    assert_eq!(
        probe.json::<Value>().await.expect("json")["status"],
        "ready"
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let browser_like = no_redirects
        .get(server.url("/"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("get");
    assert_eq!(browser_like.status(), 303);
    assert_eq!(browser_like.headers()["location"], "/api/predict");
    let document = client()
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .expect("document");
    assert!(document.json::<Value>().await.expect("JSON")["paths"].is_object());

    server.wait_healthy(&client()).await;
    let screenshot = dir.path().join("api.png");
    let output = Command::new("node")
        .arg(repo_root().join("tests/browser/api-page.cjs"))
        .arg(server.url(""))
        .arg(&screenshot)
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(seen["landed"], "/api/predict", "{seen}");
    assert_eq!(seen["form"], 11, "{seen}");
    assert!(seen["operations"].as_u64().unwrap_or(0) >= 9, "{seen}");
    let paths = seen["paths"].to_string();
    for route in [
        "/api/predict",
        "/api/train",
        "/api/models/{version}/promote",
    ] {
        assert!(paths.contains(route), "{route} missing: {seen}");
    }
    assert!(
        seen["title"]
            .as_str()
            .unwrap_or("")
            .starts_with("sommelier"),
        "{seen}"
    );
    assert_eq!(seen["problem"], "", "{seen}");
    assert_eq!(
        seen["external"],
        serde_json::json!([]),
        "nothing loaded from outside"
    );
    assert!(
        std::fs::metadata(&screenshot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "a screenshot was taken"
    );
    if let Some(keep) = std::env::var_os("SOMMELIER_KEEP_API_SCREENSHOT") {
        let _ = std::fs::copy(&screenshot, keep);
    }
}

/// Without JavaScript: the server's page explains a valid submission (bars, interval, exact
/// table), echoes an invalid one with the field marked, and gives the training range of a
/// value outside it; a screenshot of each (kept with `SOMMELIER_KEEP_SCREENSHOT=DIR`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and chromium"]
async fn the_form_shows_why_and_how_sure_without_javascript_in_chromium() {
    let node_modules = repo_root().join(".tools/node/node_modules");
    assert!(
        node_modules.join("playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium is missing: run `bash scripts/install-tools.sh`"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        dir.path(),
        &[(
            "SOMMELIER_STORE",
            dir.path().join("store").display().to_string(),
        )],
    );
    server.wait_healthy(&client()).await;
    let prefix = dir.path().join("why");
    let output = Command::new("node")
        .arg(repo_root().join("tests/browser/why.cjs"))
        .arg(server.url("/api/predict?code=functionkey"))
        .arg(&prefix)
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let valid = &seen["valid"];
    let result = valid["result"].as_str().expect("result");
    assert!(
        result.starts_with("Predicted quality: ") && result.contains("= average"),
        "{seen}"
    );
    assert_eq!(valid["bars"], 7, "six bars and the rest: {seen}");
    assert_eq!(
        (valid["interval"].as_u64(), valid["details"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(result.contains("holdout RMSE"), "{seen}");
    assert_eq!(valid["values"]["alcohol"], "12.8", "{seen}");
    let invalid = &seen["invalid"];
    assert_eq!(
        invalid["invalid"],
        serde_json::json!(["volatile_acidity"]),
        "{seen}"
    );
    assert_eq!(invalid["values"]["volatile_acidity"], "-1", "{seen}");
    assert_eq!(invalid["values"]["alcohol"], "12.8", "{seen}");
    assert!(
        !invalid["result"].as_str().unwrap_or("`").contains('`'),
        "{seen}"
    );
    let outside = &seen["outside"];
    assert!(
        outside["notes"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("Outside the training range"),
        "{seen}"
    );
    for name in ["valid", "invalid", "outside"] {
        let shot = dir.path().join(format!("why-{name}.png"));
        assert!(
            std::fs::metadata(&shot)
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "a screenshot of the {name} submission"
        );
        if let Some(keep) = std::env::var_os("SOMMELIER_KEEP_SCREENSHOT") {
            let keep = std::path::Path::new(&keep);
            if keep.is_dir() {
                let _ = std::fs::copy(&shot, keep.join(format!("why-{name}.png")));
            }
        }
    }
}
