//! The command line on the bundled data: train, evaluate, predict, models, promote, and
//! clear errors with a non-zero exit for bad input.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sommelier::model::features::{FEATURE_NAMES, TARGET_NAME};

use crate::support;

fn sommelier(store: &Path, args: &[&str]) -> Output {
    sommelier_with_input(store, args, None)
}

fn sommelier_with_input(store: &Path, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(support::binary())
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

/// A store in a new temporary directory with one elastic net trained on the bundled data (a
/// model that trains in a moment): the directory (removed when dropped), the store and the
/// version.
fn store_with_an_elastic_net() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let version = json_of(&sommelier(
        &store,
        &["train", "--json", "--algorithm", "elastic-net"],
    ))["version"]
        .as_str()
        .expect("version")
        .to_string();
    (dir, store, version)
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

    let data = support::repo_root().join("data/winequality-red.csv");
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
    assert_eq!(promoted["changed"], true);
    let back = json_of(&sommelier(&store, &["models", "promote", &first, "--json"]));
    assert_eq!(back["champion"], first.as_str());
    // Promoting the champion again changes nothing, and says so.
    let again = sommelier(&store, &["models", "promote", &first]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}");
    assert!(text.contains("is already the champion"), "{text}");
    let again = json_of(&sommelier(&store, &["models", "promote", &first, "--json"]));
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["previous"], second, "{again}");
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
    let header = format!("{},{TARGET_NAME}", FEATURE_NAMES.join(","));
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
    // A tolerance outside 0..1 would promote a worse model: refused before anything is read.
    for tolerance in ["-5", "1.5", "NaN", "inf"] {
        let output = sommelier(&store, &["train", &format!("--tolerance={tolerance}")]);
        assert!(!output.status.success(), "{tolerance}");
        assert!(
            stderr_of(&output).contains("not a number from 0 to 1"),
            "{tolerance}: {}",
            stderr_of(&output)
        );
    }
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
    let (dir, store, first) = store_with_an_elastic_net();

    // 3e160 in one cell: refused with line and column, nothing stored, champion untouched.
    let csv = String::from_utf8(support::bundled_csv()).expect("utf-8");
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
            "--alpha",
            "0.3",
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
    let (_dir, store, version) = store_with_an_elastic_net();
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

/// The one JSON object a failed command prints on stdout under `--json`.
fn json_error_of(output: &Output) -> Value {
    assert!(!output.status.success(), "expected a failure");
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on stdout: {text}");
    let value: Value = serde_json::from_str(lines[0]).expect("JSON");
    assert!(value["error"].is_string(), "{value}");
    assert!(value.get("field").is_some(), "{value}");
    value
}

#[test]
fn an_identical_retrain_is_unchanged_and_a_store_that_cannot_be_written_fails_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let first = json_of(&sommelier(&store, &["train", "--json", "--trees", "10"]));
    assert_eq!(first["status"], "trained");
    let again = json_of(&sommelier(&store, &["train", "--json", "--trees", "10"]));
    assert_eq!(again["status"], "unchanged", "{again}");
    assert_eq!(again["champion"], first["version"]);
    for count in ["rows", "training_rows"] {
        assert_eq!(
            again[count], first[count],
            "{count} means the same: {again}"
        );
    }
    assert!(again["reason"].as_str().unwrap().contains("same data"));
    let text = String::from_utf8(sommelier(&store, &["train", "--trees", "10"]).stdout).unwrap();
    assert!(text.starts_with("Unchanged"), "{text}");
    let models = json_of(&sommelier(&store, &["models", "--json"]));
    assert_eq!(
        models["versions"].as_array().unwrap().len(),
        1,
        "nothing stored"
    );
    // Another recipe, or --force, trains.
    let other = json_of(&sommelier(&store, &["train", "--json", "--trees", "11"]));
    assert_eq!(other["status"], "trained");
    let forced = json_of(&sommelier(
        &store,
        &["train", "--json", "--trees", "11", "--force"],
    ));
    assert_eq!(forced["status"], "trained");
    let models = json_of(&sommelier(&store, &["models", "--json"]));
    assert_eq!(models["versions"].as_array().unwrap().len(), 3);

    // A champion whose model cannot serve is not "unchanged": the same recipe trains again
    // and replaces it.
    let champion = forced["version"].as_str().unwrap();
    let model = store.join(champion).join("model.bin");
    let length = std::fs::metadata(&model)
        .expect("the champion's model")
        .len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&model)
        .and_then(|file| file.set_len(length / 2))
        .expect("truncate");
    let repaired = json_of(&sommelier(&store, &["train", "--json", "--trees", "11"]));
    assert_eq!(repaired["status"], "trained", "{repaired}");
    assert_eq!(repaired["champion"], repaired["version"], "{repaired}");

    // A store below a plain file cannot be created: refused before the (missing) data is
    // even opened, the store's path named.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let unwritable = file.join("store");
    let started = std::time::Instant::now();
    let output = sommelier(
        &unwritable,
        &["train", "--json", "--data", "no-such-file.csv"],
    );
    let error = json_error_of(&output);
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains(unwritable.to_str().unwrap()) && !message.contains("no-such-file"),
        "{message}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let text = stderr_of(&sommelier(&unwritable, &["train"]));
    assert!(text.contains(unwritable.to_str().unwrap()), "{text}");
}

#[test]
fn json_errors_are_one_object_on_stdout_and_serve_has_no_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let cases: [(&[&str], &str); 5] = [
        (
            &["train", "--json", "--holdout", "2"],
            "holdout must be between",
        ),
        (&["train", "--json", "--holdout", "x"], "invalid value 'x'"),
        (
            &["--json", "predict", "--data", "-"],
            "no champion model yet",
        ),
        (&["--json", "models", "promote", "nope"], "`nope` not found"),
        (&["--json", "serve"], "`serve` has no --json"),
    ];
    for (args, needle) in cases {
        let output = sommelier(&store, args);
        let error = json_error_of(&output);
        assert!(
            error["error"].as_str().unwrap().contains(needle),
            "{args:?}: {error}"
        );
        assert!(
            output.stderr.is_empty() || !String::from_utf8_lossy(&output.stderr).contains("error:")
        );
    }
    let missing = dir.path().join("missing.csv");
    std::fs::write(&missing, "fixed_acidity,quality\n1,5\n").unwrap();
    let error = json_error_of(&sommelier(
        &store,
        &["train", "--json", "--data", missing.to_str().unwrap()],
    ));
    assert_eq!(error["field"], "volatile_acidity", "{error}");
    // Without --json the message goes to stderr and stdout stays empty.
    let output = sommelier(&store, &["serve", "--json"]);
    assert!(!output.status.success());
    let output = sommelier(&store, &["train", "--holdout", "2"]);
    assert!(output.stdout.is_empty());
    assert!(stderr_of(&output).contains("holdout"));
}

#[test]
fn evaluate_separates_the_rows_the_version_may_have_trained_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let trained = json_of(&sommelier(&store, &["train", "--json", "--trees", "10"]));
    let data = support::repo_root().join("data/winequality-red.csv");
    let data = data.to_str().unwrap();
    let evaluated = json_of(&sommelier(&store, &["evaluate", "--json", "--data", data]));
    assert_eq!(evaluated["rows"], 1599);
    assert_eq!(evaluated["training_side_rows"], trained["training_rows"]);
    assert_eq!(evaluated["unseen"]["rows"], trained["metrics"]["rows"]);
    let unseen = evaluated["unseen"]["rmse"].as_f64().unwrap();
    let holdout = trained["metrics"]["rmse"].as_f64().unwrap();
    assert!((unseen - holdout).abs() < 1e-9, "{unseen} vs {holdout}");
    assert!(
        evaluated["rmse"].as_f64().unwrap() < unseen,
        "the seen rows flatter it"
    );
    let text = String::from_utf8(sommelier(&store, &["evaluate", "--data", data]).stdout).unwrap();
    assert!(
        text.contains("1213 of these rows are on this version's training side")
            && text.contains("which it never saw"),
        "{text}"
    );
}

#[test]
fn models_verify_summarises_and_fails_on_a_broken_version() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    json_of(&sommelier(&store, &["train", "--json", "--trees", "10"]));
    let ok = sommelier(&store, &["models", "--verify"]);
    assert!(ok.status.success());
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("Verified 1 version: it loads and predicts.")
    );
    let second = json_of(&sommelier(
        &store,
        &["train", "--json", "--algorithm", "elastic-net"],
    ))["version"]
        .as_str()
        .unwrap()
        .to_string();
    // Same length, other content: only a download shows it.
    let model = store.join(&second).join("model.bin");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&model, &bytes).unwrap();
    assert!(sommelier(&store, &["models"]).status.success());
    let output = sommelier(&store, &["models", "--verify", "--json"]);
    assert!(!output.status.success(), "a broken version fails --verify");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    let listed: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(listed["broken"], serde_json::json!([second]), "{listed}");
    let output = sommelier(&store, &["models", "--verify"]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("Verified 2 versions: 1 cannot serve") && text.contains(&second),
        "{text}"
    );
    // Loading it says what was checked, not only what the decoder tripped on.
    let error = stderr_of(&sommelier(
        &store,
        &["predict", "--version", &second, "--data", "-"],
    ));
    assert!(
        error.contains("has the length its card records but not its content"),
        "{error}"
    );
}

#[test]
fn misspelt_columns_tabs_and_decimal_commas_get_a_hint() {
    let (_dir, store, _version) = store_with_an_elastic_net();
    let header = "fixed_acidity,volatile_acidity,citric_acid,residual_sugar,chloride,free_sulfur_dioxide,total_sulfur_dioxide,density,pH,sulphates,alcohol";
    let row = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4";
    let csv = format!("{header}\n{row}\n");
    let error = stderr_of(&sommelier_with_input(
        &store,
        &["predict", "--data", "-"],
        Some(csv.as_bytes()),
    ));
    assert!(
        error.contains("did you mean `chlorides` for `chloride`?"),
        "{error}"
    );
    let line = br#"{"fixed_acidity":7.4,"volatile_acidity":0.7,"citric_acid":0,"residual_sugar":1.9,"chloride":0.076,"free_sulfur_dioxide":11,"total_sulfur_dioxide":34,"density":0.9978,"pH":3.51,"sulphates":0.56,"alcohol":9.4}"#;
    let error = json_error_of(&sommelier_with_input(
        &store,
        &["predict", "--json", "--data", "-"],
        Some(line),
    ));
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("did you mean `chlorides`?"),
        "{error}"
    );
    assert_eq!(error["field"], "chlorides");
    // Tab-separated: read as such.
    let tabs = format!("{}\n{}\n", header.replace("chloride", "chlorides"), row).replace(',', "\t");
    let output = sommelier_with_input(&store, &["predict", "--data", "-"], Some(tabs.as_bytes()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Decimal commas with semicolons: the hint says how to write the number.
    let commas = tabs.replace('.', ",").replace('\t', ";");
    let error = stderr_of(&sommelier_with_input(
        &store,
        &["predict", "--data", "-"],
        Some(commas.as_bytes()),
    ));
    assert!(
        error.contains("`7,4`") && error.contains("a decimal comma"),
        "{error}"
    );
    // Decimal commas in a comma-separated file split the numbers: said so.
    let split = format!(
        "{}\n{}\n",
        header.replace("chloride", "chlorides"),
        row.replace('.', ",")
    );
    let error = stderr_of(&sommelier_with_input(
        &store,
        &["predict", "--data", "-"],
        Some(split.as_bytes()),
    ));
    assert!(error.contains("a decimal comma splits a number"), "{error}");
    // Another separator: the header is one column.
    let pipes = format!("{}\n{}\n", header.replace(',', "|"), row.replace(',', "|"));
    let error = stderr_of(&sommelier_with_input(
        &store,
        &["predict", "--data", "-"],
        Some(pipes.as_bytes()),
    ));
    assert!(
        error.contains("the header was read as one column"),
        "{error}"
    );
}

#[test]
fn predict_carries_ids_reports_ignored_columns_and_writes_csv() {
    let (_dir, store, _version) = store_with_an_elastic_net();
    let csv = "wine,Fixed Acidity,volatile_acidity,citric_acid,residual_sugar,chlorides,free_sulfur_dioxide,total_sulfur_dioxide,density,pH,sulphates,alcohol,colour\n\
               a-1,7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,red\n\
               \"b,2\",7.8,0.88,0,2.6,0.098,25,67,0.9968,3.2,0.68,30,red\n";
    let output = sommelier_with_input(
        &store,
        &["predict", "--data", "-", "--id", "wine", "--format", "csv"],
        Some(csv.as_bytes()),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "row,id,prediction,out_of_range,model_version,interval_low,interval_high"
    );
    assert!(lines[1].starts_with("1,a-1,"), "{text}");
    assert!(
        lines[2].starts_with("2,\"b,2\",") && lines[2].contains(",alcohol,"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("ignored columns: colour"));

    let predicted = json_of(&sommelier_with_input(
        &store,
        &["predict", "--json", "--data", "-", "--id", "wine"],
        Some(csv.as_bytes()),
    ));
    assert!(predicted["model_version"].is_string(), "{predicted}");
    assert!(predicted.get("version").is_none());
    assert_eq!(predicted["ids"], serde_json::json!(["a-1", "b,2"]));
    assert_eq!(
        predicted["out_of_range"],
        serde_json::json!([[], ["alcohol"]])
    );
    assert_eq!(predicted["ignored_columns"], serde_json::json!(["colour"]));

    // A column named `id` is carried without --id; rows are numbered.
    let with_id = csv.replacen("wine,", "id,", 1);
    let output = sommelier_with_input(
        &store,
        &["predict", "--data", "-"],
        Some(with_id.as_bytes()),
    );
    let first: Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["row"], 1);
    assert_eq!(first["id"], "a-1");
    let error = json_error_of(&sommelier_with_input(
        &store,
        &["predict", "--json", "--data", "-", "--id", "serial"],
        Some(csv.as_bytes()),
    ));
    assert_eq!(error["field"], "serial", "{error}");
    let error = json_error_of(&sommelier_with_input(
        &store,
        &["predict", "--json", "--format", "csv", "--data", "-"],
        Some(csv.as_bytes()),
    ));
    assert!(error["error"].as_str().unwrap().contains("--format csv"));
}

/// The crash points of the crash tests exist only in a build with the `crash-points` feature:
/// in any other build, arming one changes nothing.
#[test]
fn crash_points_are_not_in_an_ordinary_build() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let output = Command::new(support::binary())
        .args(["train", "--algorithm", "elastic-net", "--store"])
        .arg(&store)
        .env("SOMMELIER_CRASH_POINT", "after-model")
        .env_remove("SOMMELIER_STORE")
        .env_remove("SOMMELIER_TRAINING_DATA")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("sommelier-crash-point"));
}
