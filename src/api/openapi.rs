//! `GET /api/openapi.json`: the OpenAPI 3 document. Paths and answer types are generated from
//! the handlers; the request bodies and the statuses that the parsers, the memory budget and
//! the deadlines decide are then stated exactly here, from the same constants the server
//! uses (feature bounds, the batch limit), so that every body the document calls valid is
//! accepted and every body it calls invalid is refused.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::model::features::{FEATURE_BOUNDS, FEATURE_NAMES};
use crate::service::state::SharedState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sommelier",
        description = "Wine-quality predictions, training and model registry."
    ),
    paths(
        super::form::form_page,
        super::predict::predict,
        super::explain::explain,
        super::invocations::invocations,
        super::feedback::feedback,
        super::train::train,
        super::train::status,
        super::models::list,
        super::models::promote,
        super::health::health,
        super::metrics,
    )
)]
pub struct ApiDoc;

/// Serves the document, or to a browser the page that renders it (see [`super::docs`]).
pub async fn document(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if super::docs::wants_html(&headers) {
        return Html(super::docs::PAGE).into_response();
    }
    let mut doc = exact_document(state.settings.max_batch_rows);
    state_explain_limits(&mut doc, state.settings.max_explain_rows);
    Json(doc).into_response()
}

/// `/api/explain` stated exactly: the bodies of `/api/predict` with the explanation row
/// limit, and its answers (409 when the model predates explanations).
pub fn state_explain_limits(doc: &mut Value, max_rows: usize) {
    doc["components"]["schemas"]["ExplainBatchRequest"] = json!({
        "type": "object",
        "description": "A batch of wines to explain, at most SOMMELIER_MAX_EXPLAIN_ROWS; other top-level fields are ignored.",
        "required": ["instances"],
        "properties": {"instances": rows_of(json!({"$ref": "#/components/schemas/WineFeatures"}), max_rows)},
    });
    let explain = &mut doc["paths"]["/api/explain"]["post"];
    explain["requestBody"] = json!({
        "required": true,
        "description": "One wine as a JSON object or form fields, or a batch as {\"instances\": [...]} of at most SOMMELIER_MAX_EXPLAIN_ROWS rows.",
        "content": {
            "application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/WineFeatures"},
                {"$ref": "#/components/schemas/ExplainBatchRequest"},
            ]}},
            "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/WineFeatures"}},
        },
    });
    let mut responses = prediction_responses(
        json!({"oneOf": [
            {"$ref": "#/components/schemas/ExplainResponse"},
            {"$ref": "#/components/schemas/BatchExplainResponse"},
        ]}),
        "#/components/schemas/ErrorBody",
    );
    responses["200"]["description"] =
        json!("Predictions with their explanations, in request order");
    responses["409"] = json!({"description": "The model was trained before explanations; retrain to enable them", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    responses["413"]["description"] = json!(
        "Body or object larger than the limits, or more rows than SOMMELIER_MAX_EXPLAIN_ROWS"
    );
    explain["responses"] = responses;
}

/// The generated document with the request bodies and statuses stated exactly.
pub fn exact_document(max_rows: usize) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    let schemas = &mut doc["components"]["schemas"];
    let generated = schemas["WineFeatures"].clone();
    schemas["WineFeatures"] = wine_features(&generated);
    schemas["BatchRequest"] = json!({
        "type": "object",
        "description": "A batch of wines; other top-level fields are ignored.",
        "required": ["instances"],
        "properties": {"instances": rows_of(json!({"$ref": "#/components/schemas/WineFeatures"}), max_rows)},
    });
    schemas["MlflowError"] = json!({
        "type": "object",
        "description": "MLflow's scoring-server error shape, plus this API's `error` and `field`.",
        "required": ["error_code", "message", "error", "field"],
        "properties": {
            "error_code": {"type": "string", "enum": ["BAD_REQUEST", "TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"]},
            "message": {"type": "string"},
            "error": {"type": "string"},
            "field": {"type": ["string", "null"]},
        },
    });
    let predict = &mut doc["paths"]["/api/predict"]["post"];
    predict["requestBody"] = json!({
        "required": true,
        "description": "One wine as a JSON object or form fields, or a batch as {\"instances\": [...]}. Field names match after normalising case, spaces and underscores; other fields are ignored and listed in `ignored_fields`.",
        "content": {
            "application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/WineFeatures"},
                {"$ref": "#/components/schemas/BatchRequest"},
            ]}},
            "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/WineFeatures"}},
        },
    });
    predict["responses"] = prediction_responses(
        json!({"oneOf": [
            {"$ref": "#/components/schemas/PredictionResponse"},
            {"$ref": "#/components/schemas/BatchPredictionResponse"},
        ]}),
        "#/components/schemas/ErrorBody",
    );
    // A browser posting the form without JavaScript gets the page back instead.
    predict["responses"]["200"]["content"]["text/html"] = json!({"schema": {"type": "string"}});
    let invocations = &mut doc["paths"]["/api/invocations"]["post"];
    invocations["requestBody"] = json!({
        "required": true,
        "description": "MLflow's scoring input: JSON with exactly one of dataframe_split, dataframe_records, instances, inputs (other fields such as params are ignored), or text/csv with a header row naming the features.",
        "content": {
            "application/json": {"schema": invocation_input(max_rows)},
            "text/csv": {"schema": csv_body()},
        },
    });
    invocations["responses"] = prediction_responses(
        json!({"$ref": "#/components/schemas/InvocationsResponse"}),
        "#/components/schemas/MlflowError",
    );
    crate::feedback::openapi::document_ids_and_feedback(&mut doc, max_rows);
    document_training_options(&mut doc["paths"]["/api/train"]["post"]);
    document_local_only(&mut doc);
    group_operations(&mut doc);
    doc
}

/// The routes only a caller on the same machine (the Functions host) may reach: another
/// address, or a request naming another host, gets 403 (see `api::local_only`).
const LOCAL_ONLY: [(&str, &str); 3] = [
    ("/api/train", "post"),
    ("/api/feedback", "post"),
    ("/api/models/{version}/promote", "post"),
];

fn document_local_only(doc: &mut Value) {
    for (path, method) in LOCAL_ONLY {
        doc["paths"][path][method]["responses"]["403"] = json!({
            "description": "The request did not come from this machine or named another host: only the Functions host may call this route",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        });
    }
}

/// The API page's groups, by path, instead of the handlers' module names.
const GROUPS: [(&str, &str); 9] = [
    ("/api/predict", "predictions"),
    ("/api/invocations", "predictions"),
    ("/api/explain", "predictions"),
    ("/api/feedback", "feedback"),
    ("/api/train", "training and models"),
    ("/api/models", "training and models"),
    ("/api/models/{version}/promote", "training and models"),
    ("/api/health", "operations"),
    ("/api/metrics", "operations"),
];

fn group_operations(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, operations) in paths.iter_mut() {
        let group = GROUPS
            .iter()
            .find(|(grouped, _)| grouped == path)
            .map_or("other", |(_, group)| group);
        if let Some(operations) = operations.as_object_mut() {
            for operation in operations.values_mut() {
                operation["tags"] = json!([group]);
            }
        }
    }
}

/// `POST /api/train`'s options: query parameters, or the same in an optional body.
fn document_training_options(train: &mut Value) {
    let algorithm =
        json!({"type": "string", "enum": ["extra-trees", "random-forest", "elastic-net"]});
    if let Some(parameters) = train["parameters"].as_array_mut() {
        for parameter in parameters {
            parameter["in"] = json!("query");
            parameter["required"] = json!(false);
            parameter["schema"] = match parameter["name"].as_str() {
                Some("algorithm") => algorithm.clone(),
                _ => json!({"type": "boolean"}),
            };
        }
    }
    let options = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {"algorithm": algorithm, "force": {"type": "boolean"}},
    });
    train["requestBody"] = json!({
        "required": false,
        "description": "The same options as the query parameters; an option in the body overrides the same in the query string. No body and no parameters train with the defaults.",
        "content": {
            "application/json": {"schema": options},
            "application/x-www-form-urlencoded": {"schema": options},
        },
    });
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    let responses = &mut train["responses"];
    responses["408"] = error("The body did not arrive within SOMMELIER_REQUEST_TIMEOUT_SECONDS");
    responses["413"] = error("A body larger than its limit (4 KiB)");
    responses["415"] = error("A body that is neither a JSON object nor form fields");
}

/// A feature value: a number within its physical bounds (a numeric string is accepted too,
/// as forms send them; the document names the plain decimals).
fn feature_value(index: usize) -> Value {
    let (min, max) = FEATURE_BOUNDS[index];
    json!({"oneOf": [
        {"type": "number", "minimum": min, "maximum": max},
        {"type": "string", "pattern": decimal_pattern(min, max)},
    ]})
}

/// Plain decimals inside `[min, max]`: whole parts below the bound's power of ten, and the
/// bound itself.
fn decimal_pattern(min: f64, max: f64) -> String {
    let bound = format!(r"{max}(\.0{{1,6}})?");
    if min > 0.0 {
        // Density, 0.5 to 2: 0.5… to 1.9…, and 2.
        return format!(r"^(0\.[5-9][0-9]{{0,5}}|1(\.[0-9]{{1,6}})?|{bound})$");
    }
    let whole = match max {
        m if m >= 1_000_000.0 => "[0-9]{1,6}",
        m if m >= 1000.0 => "[0-9]{1,3}",
        m if m >= 100.0 => "[0-9]{1,2}",
        _ => "([0-9]|1[0-3])",
    };
    format!(r"^({whole}(\.[0-9]{{1,6}})?|{bound})$")
}

/// The 11 features; other names are allowed and ignored, except alternative spellings of a
/// feature (a duplicate) and `instances` (a batch). The generated schema's examples (the
/// first wine of the bundled data) are kept.
fn wine_features(generated: &Value) -> Value {
    let mut properties = Map::new();
    for (index, name) in FEATURE_NAMES.iter().enumerate() {
        let mut property = feature_value(index);
        property["example"] = generated["properties"][*name]["example"].clone();
        properties.insert(name.to_string(), property);
    }
    json!({
        "type": "object",
        "description": "One wine's measurements, within their physical bounds. Any other field is ignored and reported in `ignored_fields`.",
        "required": FEATURE_NAMES,
        "properties": properties,
        "propertyNames": {"anyOf": [
            {"enum": FEATURE_NAMES},
            {"not": {"pattern": reserved_names()}},
        ]},
    })
}

/// Names a client may not use for an ignored field: other spellings of a feature (compared
/// as the server compares them: case, surrounding quotes and spaces, runs of separators) and
/// `instances`. Written without inline flags, as JSON Schema patterns are ECMA-262.
fn reserved_names() -> String {
    let spellings: Vec<String> = FEATURE_NAMES
        .iter()
        .map(|name| {
            name.split('_')
                .map(|word| {
                    word.chars()
                        .map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()))
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("[ \\t_-]+")
        })
        .collect();
    format!(
        "^[\\s\"_-]*({})[\\s\"_-]*$|^instances$",
        spellings.join("|")
    )
}

/// An array of rows: at least one, at most the batch limit.
fn rows_of(item: Value, max_rows: usize) -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": max_rows, "items": item})
}

/// The four MLflow input shapes, exactly one per body.
fn invocation_input(max_rows: usize) -> Value {
    let wine = json!({"$ref": "#/components/schemas/WineFeatures"});
    // A row as 11 numbers in feature order, each within its feature's bounds.
    let positions: Vec<Value> = FEATURE_BOUNDS
        .iter()
        .map(|(min, max)| json!({"type": "number", "minimum": min, "maximum": max}))
        .collect();
    let array_row = json!({"type": "array", "minItems": 11, "maxItems": 11,
        "prefixItems": positions, "items": false});
    let only = |field: &str, value: Value| {
        let others: Vec<&str> = [
            "dataframe_split",
            "dataframe_records",
            "instances",
            "inputs",
        ]
        .into_iter()
        .filter(|f| *f != field)
        .collect();
        json!({
            "type": "object",
            "required": [field],
            "properties": {field: value},
            "not": {"anyOf": others.iter().map(|f| json!({"required": [f]})).collect::<Vec<_>>()},
        })
    };
    json!({"oneOf": [
        only("dataframe_split", json!({
            "type": "object",
            "description": "pandas' split orient: rows of 11 values in feature order.",
            "required": ["data"],
            "properties": {
                "columns": {"type": "array", "items": {"enum": FEATURE_NAMES}, "const": FEATURE_NAMES},
                "data": rows_of(array_row.clone(), max_rows),
            },
        })),
        only("dataframe_records", rows_of(json!({"oneOf": [wine.clone(), array_row.clone()]}), max_rows)),
        only("instances", rows_of(json!({"oneOf": [wine.clone(), array_row.clone()]}), max_rows)),
        only("inputs", rows_of(json!({"oneOf": [wine, array_row]}), max_rows)),
    ]})
}

/// A CSV body: the header in feature order, then rows of values inside every bound.
fn csv_body() -> Value {
    let value = r"1(\.[0-9]{1,3})?";
    let row = vec![value; FEATURE_NAMES.len()].join(",");
    json!({
        "type": "string",
        "description": "A header row naming the 11 features (any order, `,` or `;` separated, other columns ignored), then one wine per line.",
        "pattern": format!(r"^{}(\r?\n{row})+\r?\n?$", FEATURE_NAMES.join(",")),
    })
}

/// The answers of a prediction route: `ok` for 200, errors in `error_schema`.
fn prediction_responses(ok: Value, error_schema: &str) -> Value {
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": error_schema}}}});
    json!({
        "200": {"description": "Predictions, in request order", "content": {"application/json": {"schema": ok}}},
        "400": error("Malformed or invalid input; the body names the field when there is one"),
        "408": error("The body did not arrive and get its answer within SOMMELIER_REQUEST_TIMEOUT_SECONDS"),
        "413": error("Body, batch, object or text larger than the limits"),
        "415": error("Unsupported content type"),
        "422": error("A value outside its feature's physical range (the body names the field), or inputs the model cannot score"),
        "503": error("No model loaded yet, or the server's request-memory budget is in use (see Retry-After)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_stay_inside_the_bounds() {
        let ph = decimal_pattern(0.0, 14.0);
        assert!(ph.contains("1[0-3]"), "{ph}");
        // The bounds themselves are values the server accepts.
        assert!(ph.contains(r"|14(\.0{1,6})?)$"), "{ph}");
        assert!(decimal_pattern(0.5, 2.0).contains(r"|2(\.0{1,6})?)$"));
        let doc = exact_document(100);
        assert_eq!(
            doc["paths"]["/api/predict"]["post"]["requestBody"]["required"],
            true
        );
        assert_eq!(
            doc["components"]["schemas"]["BatchRequest"]["properties"]["instances"]["minItems"],
            1
        );
    }

    #[test]
    fn a_browsers_feedback_form_post_is_answered_with_a_page() {
        let doc = exact_document(100);
        let responses = &doc["paths"]["/api/feedback"]["post"]["responses"];
        for status in ["202", "400", "413", "422", "503"] {
            let content = &responses[status]["content"];
            assert!(content["text/html"].is_object(), "{status}: {content}");
            assert!(
                content["application/json"].is_object(),
                "{status}: {content}"
            );
        }
        for (status, response) in responses.as_object().expect("responses") {
            assert!(
                response.get("content").is_none_or(Value::is_object),
                "{status}: {response}"
            );
        }
    }

    #[test]
    fn every_operation_is_grouped_by_what_it_does_and_guarded_routes_say_403() {
        let doc = exact_document(100);
        let mut grouped = 0;
        for (path, operations) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                let tags = operation["tags"].as_array().expect("tags");
                assert_eq!(tags.len(), 1, "{method} {path}");
                let tag = tags[0].as_str().expect("a tag");
                assert!(
                    !tag.contains("::") && tag != "other",
                    "{method} {path}: {tag}"
                );
                grouped += 1;
            }
        }
        assert!(grouped >= 11);
        for (path, method) in LOCAL_ONLY {
            assert!(
                doc["paths"][path][method]["responses"]["403"].is_object(),
                "{method} {path}"
            );
        }
    }
}
