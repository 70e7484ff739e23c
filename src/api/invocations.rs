//! `POST /api/invocations`: MLflow's scoring protocol, so MLflow clients work unchanged.
//! JSON with exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs`
//! (plus optional `params`), or `text/csv`; the answer is `{"predictions": [...]}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{Map, Value};

use super::error::{ApiError, MlflowError};
use super::predict::{check_batch, parse_json, record, run_model, serving_model};
use super::schema::InvocationsResponse;
use super::{media_type, PREDICT_BODY_LIMIT};
use crate::model::dataset::read_features;
use crate::model::features::{FeatureRow, FEATURE_COUNT, FEATURE_NAMES};
use crate::model::input::{
    json_type_name, row_from_array, row_from_json, row_from_object, InputError,
};
use crate::server::state::SharedState;

const INPUT_FIELDS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// Scores rows in any of MLflow's input formats.
#[utoipa::path(
    post,
    path = "/api/invocations",
    request_body(description = "MLflow scoring input: JSON with exactly one of dataframe_split, dataframe_records, instances, inputs; or text/csv with a header row", content((Object = "application/json"), (String = "text/csv"))),
    responses(
        (status = 200, body = InvocationsResponse),
        (status = 400, description = "Malformed input (MLflow's BAD_REQUEST)", body = super::error::ErrorBody),
        (status = 415, description = "Content type other than application/json or text/csv", body = super::error::ErrorBody),
    )
)]
pub async fn invocations(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<InvocationsResponse>, MlflowError> {
    let body = body.map_err(|r| ApiError::from_body_rejection(r, PREDICT_BODY_LIMIT))?;
    let rows = match media_type(&headers).as_str() {
        "application/json" => rows_from_json(&parse_json(&body)?)?,
        "text/csv" => read_features(&body[..]).map_err(ApiError::Data)?.rows,
        _ => {
            return Err(ApiError::UnsupportedMediaType {
                found: headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(none)")
                    .to_string(),
                expected: "application/json or text/csv",
            }
            .into())
        }
    };
    check_batch(&state, rows.len())?;
    let model = serving_model(&state)?;
    let predictions = run_model(&model, rows.clone()).await?;
    record(&state, &rows, &predictions, &model);
    Ok(Json(InvocationsResponse { predictions }))
}

fn rows_from_json(value: &Value) -> Result<Vec<FeatureRow>, ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(format!(
            "the input must be a JSON object with exactly one of {}; got {}",
            INPUT_FIELDS.join(", "),
            json_type_name(value)
        )));
    };
    let present: Vec<&str> = INPUT_FIELDS
        .iter()
        .copied()
        .filter(|f| map.contains_key(*f))
        .collect();
    let [field] = present[..] else {
        let received: Vec<&String> = map.keys().collect();
        return Err(ApiError::BadRequest(format!(
            "the input must be a JSON object with exactly one of the input fields {}; received fields {:?}",
            INPUT_FIELDS.join(", "),
            received
        )));
    };
    let data = &map[field];
    match field {
        "dataframe_split" => dataframe_split(data),
        "dataframe_records" => records(data, field),
        _ => match data {
            Value::Object(columns) => columnar(columns, field),
            _ => records(data, field),
        },
    }
}

fn row_error(row: usize) -> impl Fn(InputError) -> ApiError {
    move |source| ApiError::RowInput { row, source }
}

/// `[{...}, ...]` objects, or `[[11 numbers], ...]` arrays.
fn records(data: &Value, field: &str) -> Result<Vec<FeatureRow>, ApiError> {
    let Value::Array(items) = data else {
        return Err(ApiError::BadRequest(format!(
            "`{field}` must be an array, got {}",
            json_type_name(data)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Array(values) => row_from_array(values).map_err(row_error(i)),
            other => row_from_json(other).map(|p| p.row).map_err(row_error(i)),
        })
        .collect()
}

/// `{"columns": [...], "data": [[...], ...]}` (pandas split orient).
fn dataframe_split(data: &Value) -> Result<Vec<FeatureRow>, ApiError> {
    let bad = |what: &str| ApiError::BadRequest(format!("`dataframe_split` {what}"));
    let Value::Object(split) = data else {
        return Err(bad("must be an object with `columns` and `data`"));
    };
    let Some(Value::Array(rows)) = split.get("data") else {
        return Err(bad("needs `data`: an array of rows"));
    };
    let columns: Vec<String> = match split.get("columns") {
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| {
                n.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("`columns` must be strings"))
            })
            .collect::<Result<_, _>>()?,
        None => FEATURE_NAMES.iter().map(|n| n.to_string()).collect(),
        Some(_) => return Err(bad("`columns` must be an array of names")),
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let Value::Array(values) = row else {
                return Err(bad(&format!("row {i} must be an array")));
            };
            if values.len() != columns.len() {
                return Err(bad(&format!(
                    "row {i} has {} values for {} columns",
                    values.len(),
                    columns.len()
                )));
            }
            let object: Map<String, Value> = columns
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect();
            row_from_object(&object)
                .map(|p| p.row)
                .map_err(row_error(i))
        })
        .collect()
}

/// `{"feature": [v1, v2, ...], ...}` (tensor-style columns).
fn columnar(columns: &Map<String, Value>, field: &str) -> Result<Vec<FeatureRow>, ApiError> {
    let length = columns
        .values()
        .map(|v| v.as_array().map_or(1, Vec::len))
        .max()
        .unwrap_or(0);
    (0..length)
        .map(|i| {
            let object: Map<String, Value> = columns
                .iter()
                .map(|(name, values)| {
                    let value = match values {
                        Value::Array(items) => items.get(i).cloned().unwrap_or(Value::Null),
                        scalar => scalar.clone(),
                    };
                    (name.clone(), value)
                })
                .collect();
            row_from_object(&object)
                .map(|p| p.row)
                .map_err(row_error(i))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            ApiError::RowInput { .. } => e,
            other => ApiError::BadRequest(format!("`{field}`: {other}")),
        })
        .and_then(|rows| {
            if rows.is_empty() {
                Err(ApiError::BadRequest(format!(
                    "`{field}` has no rows of {FEATURE_COUNT} features"
                )))
            } else {
                Ok(rows)
            }
        })
}
