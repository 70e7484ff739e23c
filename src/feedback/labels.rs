//! Feedback bodies: `{"prediction_id", "quality"}`, `{"feedback": [{...}, ...]}` or `text/csv`
//! with the header `prediction_id,quality`. Each label is checked on its own: a malformed id
//! or a quality that is not a whole number from 0 to 10 rejects that label, named by its
//! index; the others are kept. An id not seen yet is accepted (its prediction may still sit
//! in another instance's queue). Parsing is linear in the body and bounded by the batch limit.
//!
//! Not here: admission and the body limit (`api::admission`), storing labels (`service`).

use serde_json::Value;

use super::id::canonical_label_id;
use crate::model::input::{urlencoded, BodyError};

/// Largest feedback body: 10,000 labels of about 70 bytes fit several times over.
pub const FEEDBACK_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A label that passed the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub id: String,
    pub quality: f64,
}

/// A label that did not, by its index in the body (from 0).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// Why a body as a whole cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyProblem {
    /// Not JSON or CSV of the expected shape (400).
    Malformed(String),
    /// More labels than the batch limit (413).
    TooMany(BodyError),
}

/// The labels of a body: accepted, rejected, and whether the body was one label (not a list
/// or CSV, where each label is answered on its own).
pub type Parsed = (Vec<Label>, Vec<Rejected>, bool);

/// Checks one label. `names` are the label's field names (JSON or form), for a "did you mean"
/// when one of the two is missing.
fn check(
    index: usize,
    id: Option<&Value>,
    quality: Option<&Value>,
    from_csv: bool,
    names: &[&str],
) -> Result<Label, Rejected> {
    let reject = |error: String| Rejected { index, error };
    let id = match id {
        Some(Value::String(text)) => canonical_label_id(text).map_err(reject)?,
        Some(_) => return Err(reject("`prediction_id` must be a string".into())),
        None => return Err(reject(missing("prediction_id", names))),
    };
    let Some(given) = quality else {
        return Err(reject(missing("quality", names)));
    };
    let quality = match given {
        Value::Number(number) => number.as_f64(),
        // A CSV cell: read as a number (`6`, `6.0`, `6e0`), as JSON and form fields are, so a
        // quality written one way in JSON is not refused from a CSV.
        Value::String(text) if from_csv => {
            let text = text.trim();
            (text.len() <= MAX_NUMBER_CHARS)
                .then(|| text.parse::<f64>().ok())
                .flatten()
        }
        _ => None,
    };
    match quality {
        // `+ 0.0` stores -0 as 0.
        Some(q) if (0.0..=10.0).contains(&q) && q.fract() == 0.0 => Ok(Label {
            id,
            quality: q + 0.0,
        }),
        // Named in JSON's short form (`1e+308`, not its 309 digits), cut short if long.
        Some(_) => Err(reject(format!(
            "`quality`: `{}` is not a whole number from 0 to 10",
            as_written(given)
        ))),
        None => Err(reject(not_a_quality(given, from_csv))),
    }
}

/// "`quality` is missing", with a "did you mean" when a field of the label is probably the
/// missing one misspelt.
fn missing(field: &str, names: &[&str]) -> String {
    match crate::model::features::did_you_mean(field, names.iter().copied()) {
        Some(given) => format!(
            "`{field}` is missing (found `{}`: did you mean `{field}`?)",
            crate::model::dataset::clip(given)
        ),
        None => format!("`{field}` is missing"),
    }
}

/// Why a value that is not a number cannot be a quality. A whole number sent as JSON text
/// (`"6"`) is told how to send it; a CSV cell is text by nature, so only its value is named.
fn not_a_quality(given: &Value, from_csv: bool) -> String {
    match given {
        Value::String(text) if !from_csv => {
            let trimmed = text.trim();
            let whole = !trimmed.is_empty()
                && trimmed.len() <= 2
                && trimmed.bytes().all(|b| b.is_ascii_digit())
                && trimmed.parse::<u8>().is_ok_and(|q| q <= 10);
            if whole {
                format!(
                    "`quality` must be a JSON number, not {}: send {trimmed} without quotes",
                    shown(given)
                )
            } else {
                format!(
                    "`quality` must be a whole number from 0 to 10, not {}",
                    shown(given)
                )
            }
        }
        Value::String(_) => format!(
            "`quality`: {} is not a whole number from 0 to 10",
            shown(given)
        ),
        _ => format!(
            "`quality` must be a whole number from 0 to 10, not {}",
            shown(given)
        ),
    }
}

/// A number as the body wrote it: a CSV cell's text, or JSON's shortest form of the number.
fn as_written(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.trim().to_string(),
        other => other.to_string(),
    };
    if text.chars().count() > SHOWN_CHARS {
        let start: String = text.chars().take(SHOWN_CHARS).collect();
        format!("{start}…")
    } else {
        text
    }
}

/// The fields a label is made of (and a list's), which a form may give once each.
const LABEL_FIELDS: [&str; 3] = ["prediction_id", "quality", "feedback"];

/// Longest text a CSV cell may have to be read as a number.
const MAX_NUMBER_CHARS: usize = 32;

/// Longest text of a value an error repeats.
const SHOWN_CHARS: usize = 20;

/// What was sent where a number belongs, short enough for an error message.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) if text.chars().count() > SHOWN_CHARS => {
            let start: String = text.chars().take(SHOWN_CHARS).collect();
            format!("the text `{start}…`")
        }
        Value::String(text) => format!("the text `{text}`"),
        Value::Null => "`null`".into(),
        Value::Bool(value) => format!("`{value}`"),
        Value::Number(number) => format!("`{number}`"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// One label from an HTML form's fields (`prediction_id`, `quality`): what the form page's
/// tasted-quality form sends when the browser runs no JavaScript. Checked as the same label
/// in JSON would be.
pub fn parse_form(body: &[u8], max_rows: usize) -> Result<Parsed, BodyProblem> {
    if urlencoded::looks_like_json(body) {
        return Err(BodyProblem::Malformed(urlencoded::JSON_SENT_AS_FORM.into()));
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| BodyProblem::Malformed(format!("the body is not form fields: {e}")))?;
    let mut object = serde_json::Map::new();
    for (name, text) in fields {
        if object.contains_key(&name) {
            // A label's own field twice is ambiguous; other fields are ignored anyway.
            if LABEL_FIELDS.contains(&name.as_str()) {
                return Err(BodyProblem::Malformed(format!(
                    "field `{name}` is given twice"
                )));
            }
            continue;
        }
        let number = text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| {
                text.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            });
        object.insert(name, number.unwrap_or(Value::String(text)));
    }
    let json = serde_json::to_vec(&Value::Object(object))
        .map_err(|e| BodyProblem::Malformed(e.to_string()))?;
    parse_json(&json, max_rows)
}

/// Reads a JSON feedback body.
pub fn parse_json(body: &[u8], max_rows: usize) -> Result<Parsed, BodyProblem> {
    let value = match strict::read(body) {
        Ok(value) => value,
        // A name given twice is JSON, but not a label this route can read.
        Err((error, _)) if error.is_data() => {
            return Err(BodyProblem::Malformed(error.to_string()))
        }
        Err((error, path)) if path.is_empty() => {
            return Err(BodyProblem::Malformed(format!(
                "the body is not JSON: {error}"
            )))
        }
        Err((error, path)) => {
            return Err(BodyProblem::Malformed(format!(
                "the body is not JSON: {error} (in `{path}`)"
            )))
        }
    };
    let Value::Object(object) = value else {
        return Err(BodyProblem::Malformed(
            "expected {\"prediction_id\": ..., \"quality\": ...} or {\"feedback\": [...]}".into(),
        ));
    };
    if object.contains_key("feedback")
        && (object.contains_key("prediction_id") || object.contains_key("quality"))
    {
        return Err(BodyProblem::Malformed(
            "send one label {\"prediction_id\", \"quality\"} or a list under `feedback`, not both"
                .into(),
        ));
    }
    let single = !matches!(object.get("feedback"), Some(Value::Array(_)));
    let items: Vec<Value> = match object.get("feedback") {
        Some(Value::Array(items)) => items.clone(),
        _ if object.contains_key("prediction_id") || object.contains_key("quality") => {
            vec![Value::Object(object)]
        }
        Some(_) => return Err(BodyProblem::Malformed("`feedback` must be a list".into())),
        None => {
            return Err(BodyProblem::Malformed(
                "expected {\"prediction_id\": ..., \"quality\": ...} or {\"feedback\": [...]}"
                    .into(),
            ))
        }
    };
    if items.is_empty() {
        return Err(BodyProblem::Malformed("`feedback` is empty".into()));
    }
    if items.len() > max_rows {
        return Err(BodyProblem::TooMany(BodyError::TooMany {
            what: "the number of labels",
            limit: max_rows,
            setting: " (SOMMELIER_MAX_BATCH_ROWS)",
        }));
    }
    let mut accepted = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            rejected.push(Rejected {
                index,
                error: "a label must be an object {\"prediction_id\", \"quality\"}".into(),
            });
            continue;
        };
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        match check(
            index,
            fields.get("prediction_id"),
            fields.get("quality"),
            false,
            &names,
        ) {
            Ok(label) => accepted.push(label),
            Err(rejection) => rejected.push(rejection),
        }
    }
    Ok((accepted, rejected, single))
}

/// Column names compared after normalising case, spaces and underscores.
fn normalised(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Reads a CSV feedback body with the header `prediction_id,quality` (in either order; other
/// columns are ignored), separated by `,`, `;` or a tab like every CSV sommelier reads. Rows
/// count from 0 after the header.
pub fn parse_csv(body: &[u8], max_rows: usize) -> Result<Parsed, BodyProblem> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(crate::model::dataset::delimiter_of(body))
        .flexible(true)
        .has_headers(true)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| BodyProblem::Malformed(format!("the CSV header cannot be read: {e}")))?
        .clone();
    let position = |name: &str| headers.iter().position(|h| normalised(h) == name);
    let (Some(id_column), Some(quality_column)) = (position("predictionid"), position("quality"))
    else {
        return Err(BodyProblem::Malformed(
            "the CSV header must name `prediction_id` and `quality`".into(),
        ));
    };
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for (index, record) in reader.records().enumerate() {
        if index >= max_rows {
            return Err(BodyProblem::TooMany(BodyError::TooMany {
                what: "the number of labels",
                limit: max_rows,
                setting: " (SOMMELIER_MAX_BATCH_ROWS)",
            }));
        }
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                rejected.push(Rejected {
                    index,
                    error: format!("unreadable CSV row: {error}"),
                });
                continue;
            }
        };
        let cell = |column: usize| record.get(column).map(|v| Value::String(v.to_string()));
        match check(
            index,
            cell(id_column).as_ref(),
            cell(quality_column).as_ref(),
            true,
            &[],
        ) {
            Ok(label) => accepted.push(label),
            Err(rejection) => rejected.push(rejection),
        }
    }
    if accepted.is_empty() && rejected.is_empty() {
        return Err(BodyProblem::Malformed("the CSV has no rows".into()));
    }
    Ok((accepted, rejected, false))
}

/// JSON read as `serde_json` reads it, except that an object giving a name twice is an error,
/// as it is on the prediction routes: `serde_json` would keep the last value without a word,
/// and a label is not a place to guess which one was meant. The reader keeps the path of the
/// value it is in, so that an error inside a value (a number too long for a float) can name
/// where it is.
mod strict {
    use std::cell::RefCell;

    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    /// One step of a path: a member's name or an item's index.
    enum Step {
        Name(String),
        Index(usize),
    }

    /// Reads `body`; on an error, the path of the value it was found in (`feedback[2].quality`),
    /// empty at the top level.
    pub fn read(body: &[u8]) -> Result<Value, (serde_json::Error, String)> {
        let path = RefCell::new(Vec::new());
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let read = Strict { path: &path }
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value));
        read.map_err(|error| (error, shown(&path.borrow())))
    }

    fn shown(path: &[Step]) -> String {
        let mut text = String::new();
        for step in path {
            match step {
                Step::Name(name) => {
                    if !text.is_empty() {
                        text.push('.');
                    }
                    text.push_str(&crate::model::dataset::clip(name));
                }
                Step::Index(index) => text.push_str(&format!("[{index}]")),
            }
        }
        text
    }

    #[derive(Clone, Copy)]
    struct Strict<'p> {
        path: &'p RefCell<Vec<Step>>,
    }

    impl Strict<'_> {
        /// Reads the value at `step` with the step on the path, taken off once it is read.
        fn within<T, E>(self, step: Step, read: impl FnOnce(Self) -> Result<T, E>) -> Result<T, E> {
            self.path.borrow_mut().push(step);
            let value = read(self)?;
            self.path.borrow_mut().pop();
            Ok(value)
        }
    }

    impl<'de> DeserializeSeed<'de> for Strict<'_> {
        type Value = Value;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E: Error>(self, value: bool) -> Result<Value, E> {
            Ok(Value::Bool(value))
        }

        fn visit_i64<E: Error>(self, value: i64) -> Result<Value, E> {
            Ok(Value::from(value))
        }

        fn visit_u64<E: Error>(self, value: u64) -> Result<Value, E> {
            Ok(Value::from(value))
        }

        fn visit_f64<E: Error>(self, value: f64) -> Result<Value, E> {
            Ok(Value::from(value))
        }

        fn visit_str<E: Error>(self, value: &str) -> Result<Value, E> {
            Ok(Value::String(value.to_string()))
        }

        fn visit_string<E: Error>(self, value: String) -> Result<Value, E> {
            Ok(Value::String(value))
        }

        fn visit_unit<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            loop {
                let index = items.len();
                let item =
                    self.within(Step::Index(index), |strict| seq.next_element_seed(strict))?;
                let Some(item) = item else { break };
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = Map::new();
            while let Some(name) = map.next_key::<String>()? {
                if object.contains_key(&name) {
                    return Err(A::Error::custom(format!(
                        "field `{}` is given twice",
                        crate::model::dataset::clip(&name)
                    )));
                }
                let value = self.within(Step::Name(name.clone()), |strict| {
                    map.next_value_seed(strict)
                })?;
                object.insert(name, value);
            }
            Ok(Value::Object(object))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> String {
        super::super::id::PredictionId::new().to_string()
    }

    #[test]
    fn the_form_pages_fields_are_one_label_checked_like_json() {
        let good = id();
        let (accepted, rejected, single) =
            parse_form(format!("prediction_id={good}&quality=6").as_bytes(), 100).unwrap();
        assert!(single);
        assert_eq!((accepted.len(), rejected.len()), (1, 0));
        for bad in [
            format!("prediction_id={good}&quality=11"),
            format!("prediction_id={good}&quality=six"),
            format!("prediction_id={good}&quality=5.5"),
            "prediction_id=nope&quality=6".to_string(),
        ] {
            let (accepted, rejected, _) = parse_form(bad.as_bytes(), 100).unwrap();
            assert_eq!((accepted.len(), rejected.len()), (0, 1), "{bad}");
        }
        let (accepted, rejected, _) = parse_form(b"quality=6", 100).unwrap();
        assert_eq!((accepted.len(), rejected.len()), (0, 1), "no id");
        assert!(matches!(
            parse_form(b"note=hello", 100),
            Err(BodyProblem::Malformed(_))
        ));
        let json = format!("{{\"prediction_id\": \"{good}\", \"quality\": 6}}");
        assert!(matches!(
            parse_form(json.as_bytes(), 100),
            Err(BodyProblem::Malformed(message)) if message.contains("Content-Type: application/json")
        ));
    }

    #[test]
    fn each_label_is_checked_on_its_own_and_named_by_its_index() {
        let good = id();
        let body = serde_json::json!({"feedback": [
            {"prediction_id": good, "quality": 6},
            {"prediction_id": "nope", "quality": 6},
            {"prediction_id": format!("{good}.2"), "quality": 11},
            {"prediction_id": format!("{good}.3"), "quality": "6"},
            {"prediction_id": format!("{good}.4"), "quality": 5.5},
            {"prediction_id": format!("{good}.5")},
            7,
        ]});
        let (accepted, rejected, single) = parse_json(body.to_string().as_bytes(), 100).unwrap();
        assert!(!single);
        assert_eq!(
            accepted,
            vec![Label {
                id: good.clone(),
                quality: 6.0
            }]
        );
        assert_eq!(
            rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert!(rejected[1].error.contains("`11`"), "{:?}", rejected[1]);
        assert_eq!(
            rejected[2].error,
            "`quality` must be a JSON number, not the text `6`: send 6 without quotes"
        );
        assert!(rejected[3].error.contains("`5.5`"), "{:?}", rejected[3]);
        assert_eq!(rejected[4].error, "`quality` is missing");
        let single = serde_json::json!({"prediction_id": good, "quality": 7});
        assert_eq!(
            parse_json(single.to_string().as_bytes(), 1)
                .unwrap()
                .0
                .len(),
            1
        );
        assert!(matches!(
            parse_json(b"[1]", 10),
            Err(BodyProblem::Malformed(_))
        ));
        let many = serde_json::json!({"feedback": vec![serde_json::json!({}); 3]});
        assert!(matches!(
            parse_json(many.to_string().as_bytes(), 2),
            Err(BodyProblem::TooMany(_))
        ));
    }

    #[test]
    fn what_was_sent_instead_of_a_quality_is_named_briefly() {
        let good = id();
        let long = "x".repeat(100_000);
        let body = serde_json::json!({"feedback": [
            {"prediction_id": good, "quality": null},
            {"prediction_id": good, "quality": true},
            {"prediction_id": good, "quality": [6]},
            {"prediction_id": good, "quality": {"score": 6}},
            {"prediction_id": good, "quality": long},
        ]});
        let (_, rejected, _) = parse_json(body.to_string().as_bytes(), 100).unwrap();
        let errors: Vec<&str> = rejected.iter().map(|r| r.error.as_str()).collect();
        let whole = "`quality` must be a whole number from 0 to 10, not";
        assert_eq!(
            errors,
            [
                format!("{whole} `null`"),
                format!("{whole} `true`"),
                format!("{whole} a list"),
                format!("{whole} an object"),
                format!("{whole} the text `{}…`", "x".repeat(20)),
            ]
        );
    }

    #[test]
    fn a_misspelt_field_is_pointed_out() {
        let good = id();
        let body = serde_json::json!({"feedback": [
            {"prediction_id": good, "qualty": 6},
            {"predictionid": good, "quality": 6},
            {"prediction_id": good, "score": 6},
        ]});
        let (_, rejected, _) = parse_json(body.to_string().as_bytes(), 100).unwrap();
        let errors: Vec<&str> = rejected.iter().map(|r| r.error.as_str()).collect();
        assert_eq!(
            errors,
            [
                "`quality` is missing (found `qualty`: did you mean `quality`?)",
                "`prediction_id` is missing (found `predictionid`: did you mean `prediction_id`?)",
                "`quality` is missing",
            ]
        );
    }

    #[test]
    fn csv_labels_read_by_header() {
        let good = id();
        let body = format!("Quality,Prediction ID\n6,{good}\n12,{good}.1\n");
        let (accepted, rejected, _) = parse_csv(body.as_bytes(), 10).unwrap();
        assert_eq!(
            accepted,
            vec![Label {
                id: good,
                quality: 6.0
            }]
        );
        assert_eq!(rejected[0].index, 1);
        assert!(matches!(
            parse_csv(b"a,b\n1,2\n", 10),
            Err(BodyProblem::Malformed(_))
        ));
    }

    #[test]
    fn csv_labels_separated_by_semicolons_or_tabs_read_as_with_commas() {
        let good = id();
        let expected = vec![Label {
            id: good.clone(),
            quality: 7.0,
        }];
        for separator in [",", ";", "\t"] {
            let body = format!("prediction_id{separator}quality\n{good}{separator}7\n");
            let (accepted, rejected, _) = parse_csv(body.as_bytes(), 10).unwrap();
            assert_eq!(
                (accepted, rejected.len()),
                (expected.clone(), 0),
                "{separator:?}"
            );
        }
    }

    #[test]
    fn a_name_given_twice_or_one_label_beside_a_list_is_refused() {
        let good = id();
        let cases = [
            format!(r#"{{"prediction_id": "{good}", "quality": 6, "quality": 9}}"#),
            format!(
                r#"{{"feedback": [{{"prediction_id": "{good}", "prediction_id": "x", "quality": 6}}]}}"#
            ),
            format!(
                r#"{{"prediction_id": "{good}.7", "quality": 1, "feedback": [{{"prediction_id": "{good}.8", "quality": 2}}]}}"#
            ),
            format!(
                r#"{{"feedback": [{{"prediction_id": "{good}", "quality": 2}}], "quality": "junk"}}"#
            ),
        ];
        for body in &cases {
            let problem = parse_json(body.as_bytes(), 10).expect_err(body);
            let BodyProblem::Malformed(reason) = problem else {
                panic!("{body}: {problem:?}");
            };
            assert!(
                reason.contains("is given twice") || reason.contains("not both"),
                "{body}: {reason}"
            );
            assert!(!reason.contains("not JSON"), "{body}: {reason}");
        }
        let form = format!("prediction_id={good}&quality=3&quality=9");
        assert!(matches!(
            parse_form(form.as_bytes(), 10),
            Err(BodyProblem::Malformed(reason)) if reason == "field `quality` is given twice"
        ));
    }

    #[test]
    fn a_number_too_long_for_a_float_is_placed() {
        let good = id();
        let huge = format!("1{}", "0".repeat(400));
        for (body, place) in [
            (
                format!(r#"{{"prediction_id": "{good}", "quality": {huge}}}"#),
                "(in `quality`)",
            ),
            (
                format!(
                    r#"{{"feedback": [{{"prediction_id": "{good}", "quality": 2}}, {{"quality": {huge}}}]}}"#
                ),
                "(in `feedback[1].quality`)",
            ),
        ] {
            let problem = parse_json(body.as_bytes(), 10).expect_err(&body);
            let BodyProblem::Malformed(reason) = problem else {
                panic!("{problem:?}");
            };
            assert!(reason.contains("number out of range"), "{reason}");
            assert!(reason.ends_with(place), "{reason}");
        }
        // A syntax error outside any value names no place.
        let BodyProblem::Malformed(reason) = parse_json(b"{} x", 10).expect_err("trailing") else {
            panic!("malformed");
        };
        assert!(!reason.contains("(in"), "{reason}");
    }

    #[test]
    fn json_form_and_csv_take_the_same_qualities() {
        let good = id();
        for (text, expected) in [
            ("6", Some(6.0)),
            ("6.0", Some(6.0)),
            ("6e0", Some(6.0)),
            ("1e1", Some(10.0)),
            ("-0", Some(0.0)),
            ("5.5", None),
            ("11", None),
            ("-1", None),
        ] {
            let json = format!(r#"{{"prediction_id": "{good}", "quality": {text}}}"#);
            let form = format!("prediction_id={good}&quality={text}");
            let csv = format!("prediction_id,quality\n{good},{text}\n");
            for (form_name, parsed) in [
                ("json", parse_json(json.as_bytes(), 10)),
                ("form", parse_form(form.as_bytes(), 10)),
                ("csv", parse_csv(csv.as_bytes(), 10)),
            ] {
                let (accepted, _, _) = parsed.unwrap();
                let quality = accepted.first().map(|label| label.quality);
                assert_eq!(quality, expected, "{form_name} {text}");
                if let Some(q) = quality {
                    assert!(q.is_sign_positive(), "{form_name} {text}: {q}");
                }
            }
        }
    }

    #[test]
    fn a_quality_out_of_range_is_named_as_written() {
        let good = id();
        let body = format!(
            r#"{{"feedback": [{{"prediction_id": "{good}", "quality": 1e308}}, {{"prediction_id": "{good}", "quality": 5.5}}]}}"#
        );
        let (_, rejected, _) = parse_json(body.as_bytes(), 10).unwrap();
        assert_eq!(
            rejected[0].error,
            "`quality`: `1e+308` is not a whole number from 0 to 10"
        );
        assert_eq!(
            rejected[1].error,
            "`quality`: `5.5` is not a whole number from 0 to 10"
        );
        let csv = format!("prediction_id,quality\n{good},12\n");
        let (_, rejected, _) = parse_csv(csv.as_bytes(), 10).unwrap();
        assert_eq!(
            rejected[0].error,
            "`quality`: `12` is not a whole number from 0 to 10"
        );
    }
}
