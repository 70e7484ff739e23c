//! The body parsers: every accepted shape, each cap, and property tests that arbitrary input
//! only ever gives rows or a client error.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::csv::parse_csv;
use super::json::{parse_invocations, parse_predict};
use super::urlencoded::parse_form;
use super::{BodyError, InputError, ParseLimits};
use crate::model::features::FEATURE_NAMES;

const WINE: [f64; 11] = [
    7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
];

fn wine() -> Value {
    let map: serde_json::Map<String, Value> = FEATURE_NAMES
        .iter()
        .zip(WINE)
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect();
    Value::Object(map)
}

fn limits() -> ParseLimits {
    ParseLimits::new(100)
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[test]
fn predict_accepts_one_wine_or_instances() {
    let mut one = wine();
    one["colour"] = json!("red");
    one["quality"] = json!(5);
    let parsed = parse_predict(&bytes(&one), &limits()).unwrap();
    assert!(parsed.single);
    assert_eq!(parsed.rows, vec![WINE]);
    assert_eq!(parsed.ignored_fields, vec!["colour"]);

    let mut extra = wine();
    extra["note"] = json!(1);
    let batch = json!({"instances": [wine(), extra]});
    let parsed = parse_predict(&bytes(&batch), &limits()).unwrap();
    assert!(!parsed.single);
    assert_eq!(parsed.rows, vec![WINE, WINE]);
    assert_eq!(parsed.ignored_fields, vec!["note"]);

    // What stands beside `instances` is not read, and is listed: a feature there is not a
    // default for the instances.
    let beside = json!({"instances": [wine()], "alcohol": 14.0, "note": 1, "quality": 5});
    let parsed = parse_predict(&bytes(&beside), &limits()).unwrap();
    assert_eq!(parsed.rows, vec![WINE]);
    let mut ignored = parsed.ignored_fields.clone();
    ignored.sort();
    assert_eq!(ignored, vec!["alcohol", "note"]);
}

#[test]
fn invocation_formats_agree() {
    let columns: Vec<&str> = FEATURE_NAMES.to_vec();
    let bodies = [
        json!({"dataframe_split": {"columns": columns, "data": [WINE]}}),
        json!({"dataframe_split": {"data": [WINE], "columns": columns, "index": [0]}}),
        json!({"dataframe_split": {"data": [WINE]}}),
        json!({"dataframe_records": [wine()], "params": {}}),
        json!({"dataframe_records": [WINE]}),
        json!({"instances": [wine()]}),
        json!({"inputs": [WINE]}),
        json!({"inputs": FEATURE_NAMES.iter().zip(WINE).map(|(n, v)| (n.to_string(), json!([v]))).collect::<serde_json::Map<_, _>>()}),
        json!({"instances": FEATURE_NAMES.iter().zip(WINE).map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}),
    ];
    for body in bodies {
        let parsed =
            parse_invocations(&bytes(&body), &limits()).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(parsed.rows, vec![WINE], "{body}");
    }
    let csv = format!(
        "{}\n{}\n",
        FEATURE_NAMES.join(","),
        WINE.map(|v| v.to_string()).join(",")
    );
    assert_eq!(
        parse_csv(csv.as_bytes(), &limits()).unwrap().rows,
        vec![WINE]
    );
    let semicolons = csv.replace(',', ";");
    assert_eq!(
        parse_csv(semicolons.as_bytes(), &limits()).unwrap().rows,
        vec![WINE]
    );
    let form: String = FEATURE_NAMES
        .iter()
        .zip(WINE)
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(
        parse_form(form.as_bytes(), &limits()).unwrap().rows,
        vec![WINE]
    );
}

#[test]
fn caps_apply_while_parsing() {
    let small = ParseLimits::new(2);
    let three = json!({"instances": [wine(), wine(), wine()]});
    assert!(matches!(
        parse_predict(&bytes(&three), &small),
        Err(BodyError::TooMany { .. })
    ));
    let columns = json!({"inputs": {"alcohol": [1, 2, 3]}});
    assert!(matches!(
        parse_invocations(&bytes(&columns), &small),
        Err(BodyError::TooMany { .. })
    ));
    let mut keys = wine();
    for i in 0..300 {
        keys[format!("k{i}")] = json!(0);
    }
    assert!(matches!(
        parse_predict(&bytes(&keys), &limits()),
        Err(BodyError::TooMany { .. })
    ));
    let long_name = format!("{{\"{}\": 1}}", "x".repeat(2000));
    assert!(matches!(
        parse_predict(long_name.as_bytes(), &limits()),
        Err(BodyError::TooMany { .. })
    ));
    let deep = format!("{{\"x\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    // Deep nesting is skipped without recursion, or refused at serde_json's depth limit.
    assert!(parse_predict(deep.as_bytes(), &limits()).is_err());
    let deep_rows = format!(
        "{{\"instances\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(parse_predict(deep_rows.as_bytes(), &limits()).is_err());
    assert!(parse_invocations(deep_rows.as_bytes(), &limits()).is_err());
    let csv_rows = format!(
        "{}\n{}",
        FEATURE_NAMES.join(","),
        "1,1,1,1,1,1,1,1,1,1,1\n".repeat(3)
    );
    assert!(matches!(
        parse_csv(csv_rows.as_bytes(), &small),
        Err(BodyError::TooMany { .. })
    ));
}

#[test]
fn out_of_range_values_name_the_field() {
    let mut hot = wine();
    hot["pH"] = json!(15);
    let error = parse_predict(&bytes(&hot), &limits()).unwrap_err();
    let input = error.input_error().unwrap();
    assert!(input.is_out_of_range(), "{error}");
    assert_eq!(input.field(), Some("pH"));
    let huge = json!({"instances": [wine(), {"fixed_acidity": 1.797e308}]});
    let error = parse_predict(&bytes(&huge), &limits()).unwrap_err();
    assert!(matches!(error, BodyError::Row { row: 1, .. }), "{error}");
}

#[test]
fn errors_are_the_clients() {
    for body in [
        "",
        "[]",
        "[0, 0]",
        "{}",
        "{\"instances\": []}",
        "{\"instances\": 5}",
        "{\"instances\": [5]}",
        "nul",
        "{\"pH\": 1, \"PH\": 2}",
    ] {
        assert!(parse_predict(body.as_bytes(), &limits()).is_err(), "{body}");
    }
    for body in [
        "{}",
        "{\"instances\": [], \"inputs\": []}",
        "{\"dataframe_split\": {\"columns\": [\"pH\"], \"data\": [[1]]}}",
        "{\"dataframe_split\": {\"data\": [[1, 2]]}}",
        "{\"inputs\": {\"pH\": [1, 2]}}",
    ] {
        assert!(
            parse_invocations(body.as_bytes(), &limits()).is_err(),
            "{body}"
        );
    }
    assert_eq!(parse_csv(b"", &limits()), Err(BodyError::Empty));
    assert!(matches!(
        parse_csv(FEATURE_NAMES.join(",").as_bytes(), &limits()),
        Err(BodyError::Shape(_))
    ));
    assert!(matches!(
        parse_form(b"pH=1&pH=2", &limits()),
        Err(BodyError::Input(InputError::Duplicate { .. }))
    ));
    // A misspelt form field is pointed out, as in JSON.
    let misspelt = FEATURE_NAMES
        .iter()
        .zip(WINE)
        .map(|(name, value)| {
            let name = if *name == "chlorides" {
                "chloride"
            } else {
                name
            };
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join("&");
    let error = parse_form(misspelt.as_bytes(), &limits())
        .unwrap_err()
        .to_string();
    assert!(error.contains("did you mean `chlorides`"), "{error}");
    // JSON sent as form fields (`curl -d` without a content type) is told so, not that a
    // feature is missing.
    for json in [&b"{\"fixed_acidity\": 7.4}"[..], b" \n[{\"pH\": 3.5}]"] {
        let error = parse_form(json, &limits()).unwrap_err().to_string();
        assert!(error.contains("Content-Type: application/json"), "{error}");
    }
    // A number written with a decimal comma is named as such, in JSON, forms and CSV.
    let mut comma = wine();
    comma["fixed_acidity"] = json!("7,4");
    let form = "fixed_acidity=7%2C4&volatile_acidity=0.7";
    let csv = format!(
        "{}\n\"7,4\",0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4\n",
        FEATURE_NAMES.join(",")
    );
    for error in [
        parse_predict(&bytes(&comma), &limits()).unwrap_err(),
        parse_form(form.as_bytes(), &limits()).unwrap_err(),
        parse_csv(csv.as_bytes(), &limits()).unwrap_err(),
    ] {
        let message = error.to_string();
        assert!(
            message.contains("fixed_acidity") && message.contains("decimal comma"),
            "{message}"
        );
    }
}

/// Arbitrary JSON values, a few levels deep, with keys that are sometimes feature names.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        proptest::sample::select(FEATURE_NAMES.to_vec()).prop_map(str::to_string),
        Just("instances".to_string()),
        Just("inputs".to_string()),
        Just("dataframe_split".to_string()),
        Just("columns".to_string()),
        Just("data".to_string()),
        "[a-z ]{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>().prop_map(|v| json!(v)),
        any::<i64>().prop_map(Value::from),
        "[0-9.e-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 12, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..12)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let limits = limits();
        let _ = parse_predict(&body, &limits);
        let _ = parse_invocations(&body, &limits);
        let _ = parse_csv(&body, &limits);
        let _ = parse_form(&body, &limits);
    }

    #[test]
    fn arbitrary_json_gives_rows_or_a_client_error(value in json_value()) {
        let body = bytes(&value);
        let limits = limits();
        let results = [parse_predict(&body, &limits), parse_invocations(&body, &limits)];
        for parsed in results.into_iter().flatten() {
            prop_assert!(!parsed.rows.is_empty());
            prop_assert!(parsed.rows.len() <= limits.max_rows);
            prop_assert!(parsed.rows.iter().flatten().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn valid_rows_round_trip(rows in proptest::collection::vec(proptest::array::uniform11(0.5f64..2.0), 1..20)) {
        let records: Vec<Value> = rows.iter().map(|r| json!(r.to_vec())).collect();
        let body = bytes(&json!({"dataframe_records": records}));
        prop_assert_eq!(parse_invocations(&body, &limits()).unwrap().rows, rows.clone());
        let csv: String = std::iter::once(FEATURE_NAMES.join(","))
            .chain(rows.iter().map(|r| r.map(|v| format!("{v:?}")).join(",")))
            .collect::<Vec<_>>()
            .join("\n");
        prop_assert_eq!(parse_csv(csv.as_bytes(), &limits()).unwrap().rows, rows);
    }
}
