//! What the OpenAPI document says about prediction ids and feedback, added to the generated
//! document by `api::openapi` (one call, so that the routes' documents stay in one place).

use serde_json::{json, Value};

/// Adds the `x-prediction-id` header to the prediction answers.
pub fn document_ids_and_feedback(doc: &mut Value, _max_rows: usize) {
    let header = json!({
        "description": "The id of this prediction (a UUIDv7, sortable by time); row i of a batch is `<id>.<i>`. Send it back with the tasted quality to `POST /api/feedback`.",
        "required": true,
        "schema": {"type": "string", "format": "uuid"},
    });
    for path in ["/api/predict", "/api/invocations"] {
        let ok = &mut doc["paths"][path]["post"]["responses"]["200"];
        if ok.is_object() {
            ok["headers"] = json!({"x-prediction-id": header.clone()});
        }
    }
}
