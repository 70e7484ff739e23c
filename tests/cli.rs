//! The command line on the bundled data: train, evaluate, predict, models, promote, and
//! clear errors with a non-zero exit for bad input.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn sommelier(store: &Path, args: &[&str]) -> Output {
    sommelier_with_input(store, args, None)
}

fn sommelier_with_input(store: &Path, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(common::binary())
        .args(args)
        .arg("--store")
        .arg(store)
        .env_remove("SOMMELIER_STORE")
        .env_remove("SOMMELIER_TRAINING_DATA")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("output")
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "--json prints exactly one JSON object: {text}"
    );
    serde_json::from_str(lines[0]).expect("JSON")
}

fn stderr_of(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn train_evaluate_predict_and_roll_back_on_the_bundled_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");

    let trained = json_of(&sommelier(&store, &["train", "--json", "--cv", "3"]));
    for key in [
        "version",
        "algorithm",
        "metrics",
        "rows",
        "promoted",
        "champion",
        "reason",
        "cv",
    ] {
        assert!(trained.get(key).is_some(), "`{key}` missing from {trained}");
    }
    for key in ["rmse", "mae", "r2", "within_0_5", "within_1_0"] {
        assert!(trained["metrics"][key].is_f64(), "{key}");
    }
    assert_eq!(trained["algorithm"], "extra-trees");
    assert_eq!(trained["rows"], 1599);
    assert_eq!(trained["promoted"], true);
    assert!(trained["cv"]["rmse"]["mean"].as_f64().expect("cv") < 0.7);
    let first = trained["version"].as_str().expect("version").to_string();

    let worse = json_of(&sommelier(
        &store,
        &["train", "--json", "--algorithm", "elastic-net"],
    ));
    assert_eq!(worse["promoted"], false, "{worse}");
    assert_eq!(worse["champion"], first.as_str());

    let data = common::repo_root().join("data/winequality-red.csv");
    let evaluated = json_of(&sommelier(
        &store,
        &["evaluate", "--json", "--data", data.to_str().expect("path")],
    ));
    assert_eq!(evaluated["rows"], 1599);
    assert_eq!(evaluated["version"], first.as_str());
    assert!(
        evaluated["rmse"].as_f64().expect("rmse") < 0.6,
        "{evaluated}"
    );

    let csv = "fixed acidity;volatile acidity;citric acid;residual sugar;chlorides;free sulfur dioxide;total sulfur dioxide;density;pH;sulphates;alcohol\n7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4\n7.8;0.88;0;2.6;0.098;25;67;0.9968;3.2;0.68;30\n";
    let output = sommelier_with_input(&store, &["predict", "--data", "-"], Some(csv.as_bytes()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["prediction"].is_f64());
    assert_eq!(lines[1]["out_of_range"], serde_json::json!(["alcohol"]));
    let jsonl = "{\"fixed_acidity\":7.4,\"volatile_acidity\":0.7,\"citric_acid\":0,\"residual_sugar\":1.9,\"chlorides\":0.076,\"free_sulfur_dioxide\":11,\"total_sulfur_dioxide\":34,\"density\":0.9978,\"pH\":3.51,\"sulphates\":0.56,\"alcohol\":9.4}\n";
    let predicted = json_of(&sommelier_with_input(
        &store,
        &["predict", "--json", "--data", "-"],
        Some(jsonl.as_bytes()),
    ));
    assert_eq!(
        predicted["predictions"][0], lines[0]["prediction"],
        "CSV and JSON lines agree"
    );
    // Each prediction with its interval, in JSON lines and in the one JSON object.
    assert_eq!(predicted["intervals"][0], lines[0]["interval"]);
    let [low, high] = [0, 1].map(|i| predicted["intervals"][0][i].as_f64().expect("interval"));
    let prediction = predicted["predictions"][0].as_f64().expect("prediction");
    assert!(low < prediction && prediction < high, "{predicted}");
    // The card, and the trees for shap.
    let shown = json_of(&sommelier(&store, &["models", "show", "--json"]));
    assert_eq!(
        shown["importance"]["features"].as_array().map(Vec::len),
        Some(11)
    );
    assert!(shown["calibration"]["quantiles"].is_array(), "{shown}");
    let exported = store.join("trees.json");
    let written = sommelier(
        &store,
        &[
            "models",
            "export",
            "--format",
            "shap-json",
            "--output",
            exported.to_str().expect("path"),
        ],
    );
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let trees: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exported).expect("export")).expect("JSON");
    assert_eq!(trees["feature_names"].as_array().map(Vec::len), Some(11));
    assert!(
        trees["trees"][0]["node_sample_weight"][0]
            .as_f64()
            .unwrap_or(0.0)
            > 1000.0
    );

    let listed = json_of(&sommelier(&store, &["models", "--json"]));
    assert_eq!(listed["champion"], first.as_str());
    assert_eq!(listed["versions"].as_array().expect("versions").len(), 2);
    let text = String::from_utf8_lossy(&sommelier(&store, &["models"]).stdout).to_string();
    assert!(
        text.contains(&format!("* {first}")),
        "the champion is marked: {text}"
    );

    let second = worse["version"].as_str().expect("version");
    let promoted = json_of(&sommelier(&store, &["models", "promote", second, "--json"]));
    assert_eq!(promoted["champion"], second);
    assert_eq!(promoted["previous"], first.as_str());
    let back = json_of(&sommelier(&store, &["models", "promote", &first, "--json"]));
    assert_eq!(back["champion"], first.as_str());
}

#[test]
fn bad_input_exits_non_zero_with_a_message_that_names_the_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let write = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path.to_str().expect("path").to_string()
    };
    let header = "fixed_acidity,volatile_acidity,citric_acid,residual_sugar,chlorides,free_sulfur_dioxide,total_sulfur_dioxide,density,pH,sulphates,alcohol,quality";
    let good_row = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5";
    let many = |row: &str| format!("{header}\n{}{row}\n", format!("{good_row}\n").repeat(60));
    let cases = [
        (write("empty.csv", b""), "the file is empty"),
        (
            write("binary.csv", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0"),
            "binary",
        ),
        (
            write("header.csv", format!("{header}\n").as_bytes()),
            "header row but no data rows",
        ),
        (
            write("missing.csv", b"fixed_acidity,quality\n1,5\n"),
            "missing required column(s) `volatile_acidity`",
        ),
        (
            write("few.csv", format!("{header}\n{good_row}\n").as_bytes()),
            "only 1 data rows; at least 50",
        ),
        (
            write(
                "nan.csv",
                many("7.4,0.7,0,1.9,NaN,11,34,0.9978,3.51,0.56,9.4,5").as_bytes(),
            ),
            "line 62, column `chlorides`: `NaN` is NaN",
        ),
        (
            write(
                "quality.csv",
                many("7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,11").as_bytes(),
            ),
            "column `quality`: `11` is not an integer from 0 to 10",
        ),
        (
            dir.path()
                .join("absent.csv")
                .to_str()
                .expect("path")
                .to_string(),
            "cannot read",
        ),
    ];
    for (path, message) in cases {
        let error = stderr_of(&sommelier(&store, &["train", "--data", &path]));
        assert!(
            error.contains(message),
            "{path}: expected `{message}` in: {error}"
        );
        assert!(!error.contains("panicked"), "{error}");
    }
    assert!(stderr_of(&sommelier(&store, &["train", "--holdout", "2"]))
        .contains("holdout must be between 0 and 0.9"));
    assert!(
        stderr_of(&sommelier(&store, &["train", "--max-features", "0"]))
            .contains("max_features must be from 1 to 11")
    );
    assert!(stderr_of(&sommelier(&store, &["train", "--cv", "1"]))
        .contains("cross-validation needs from 2"));
    assert!(stderr_of(&sommelier(&store, &["predict", "--data", "-"]))
        .contains("no champion model yet"));
    assert!(
        stderr_of(&sommelier(&store, &["models", "promote", "nope"]))
            .contains("model version `nope` not found")
    );
    let bad_line = b"{\"alcohol\": 1}\n";
    json_of(&sommelier(&store, &["train", "--json", "--trees", "5"]));
    let error = stderr_of(&sommelier_with_input(
        &store,
        &["predict", "--data", "-"],
        Some(bad_line),
    ));
    assert!(
        error.contains("line 1: missing field `fixed_acidity`"),
        "{error}"
    );
    // A failed training leaves the champion untouched.
    let before = json_of(&sommelier(&store, &["models", "--json"]))["champion"].clone();
    stderr_of(&sommelier(
        &store,
        &["train", "--data", &write("bad2.csv", b"x\n1\n")],
    ));
    assert_eq!(
        json_of(&sommelier(&store, &["models", "--json"]))["champion"],
        before
    );
}

#[test]
fn every_command_has_useful_help() {
    let dir = tempfile::tempdir().expect("tmp");
    for (command, needle) in [
        ("train", "--holdout"),
        ("evaluate", "--version"),
        ("predict", "JSON lines"),
        ("models", "promote"),
        ("serve", "FUNCTIONS_CUSTOMHANDLER_PORT"),
    ] {
        let output = sommelier(dir.path(), &[command, "--help"]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.contains(needle),
            "{command} --help lacks {needle}: {text}"
        );
    }
}

#[test]
fn one_bad_cell_is_refused_and_broken_versions_are_listed_never_promoted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let first = json_of(&sommelier(
        &store,
        &["train", "--json", "--algorithm", "elastic-net"],
    ))["version"]
        .as_str()
        .expect("version")
        .to_string();

    // 3e160 in one cell: refused with line and column, nothing stored, champion untouched.
    let csv = String::from_utf8(common::bundled_csv()).expect("utf-8");
    let bad = csv.replacen("7.8,0.88,0,2.6,", "7.8,0.88,0,3e160,", 1);
    let bad_path = dir.path().join("overflow.csv");
    std::fs::write(&bad_path, bad).expect("write");
    let error = stderr_of(&sommelier(
        &store,
        &[
            "train",
            "--algorithm",
            "elastic-net",
            "--data",
            bad_path.to_str().unwrap(),
        ],
    ));
    assert!(
        error.contains("line 3") && error.contains("residual sugar") && error.contains("3e160"),
        "{error}"
    );
    let models = json_of(&sommelier(&store, &["models", "--json"]));
    assert_eq!(models["champion"], first.as_str(), "{models}");
    assert_eq!(models["versions"].as_array().unwrap().len(), 1, "{models}");

    // A second version, then a broken card and a broken model: listed with their problem.
    let second = json_of(&sommelier(
        &store,
        &[
            "train",
            "--json",
            "--algorithm",
            "elastic-net",
            "--seed",
            "7",
        ],
    ))["version"]
        .as_str()
        .expect("version")
        .to_string();
    json_of(&sommelier(&store, &["models", "promote", &first, "--json"]));
    std::fs::write(store.join(&second).join("card.json"), b"{\"version\": nul").unwrap();
    let models = json_of(&sommelier(&store, &["models", "--json"]));
    let listed: Vec<&Value> = models["versions"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 2, "every version is listed: {models}");
    let broken = listed
        .iter()
        .find(|v| v["version"] == second.as_str())
        .expect("the broken version");
    assert!(broken["problem"].is_string(), "{broken}");
    let text = String::from_utf8(sommelier(&store, &["models"]).stdout).unwrap();
    assert!(text.contains("BROKEN"), "{text}");

    // Promoting it is refused: it does not load; the pointer stays.
    let error = stderr_of(&sommelier(&store, &["models", "promote", &second]));
    assert!(error.contains(&second), "{error}");
    std::fs::write(store.join(&first).join("model.bin"), b"garbage").unwrap();
    let error = stderr_of(&sommelier(&store, &["models", "promote", &first]));
    assert!(error.contains(&first), "{error}");
    let models = json_of(&sommelier(&store, &["models", "--json"]));
    assert_eq!(models["champion"], first.as_str(), "{models}");
}

#[test]
fn an_empty_champion_pointer_is_repaired_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let version = json_of(&sommelier(
        &store,
        &["train", "--json", "--algorithm", "elastic-net"],
    ))["version"]
        .as_str()
        .expect("version")
        .to_string();
    std::fs::write(store.join("champion"), b"").unwrap();
    let output = sommelier(&store, &["models", "--json"]);
    let models = json_of(&output);
    assert_eq!(models["champion"], version.as_str(), "{models}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("champion pointer was damaged") && log.contains(&version),
        "{log}"
    );
}
