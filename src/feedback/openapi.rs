//! What the OpenAPI document says about prediction ids and feedback, added to the generated
//! document by `api::openapi` (one call, so that the routes' documents stay in one place).

use serde_json::{json, Value};

/// Adds the `x-prediction-id` header to the prediction answers.
pub fn document_ids_and_feedback(doc: &mut Value, max_rows: usize) {
    let id = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}(\.(0|[1-9][0-9]{0,8}))?";
    let label = json!({
        "type": "object",
        "required": ["prediction_id", "quality"],
        "properties": {
            "prediction_id": {"type": "string", "pattern": format!("^{id}$"), "description": "A prediction's `x-prediction-id`, or `<id>.<row>` for a row of a batch or an MLflow call."},
            "quality": {"type": "integer", "minimum": 0, "maximum": 10, "description": "The tasted quality."},
            "feedback": {"not": {"type": "array"}, "description": "With a list here the body is a list of labels."},
        },
    });
    let feedback = &mut doc["paths"]["/api/feedback"]["post"];
    if feedback.is_object() {
        feedback["requestBody"] = json!({
            "required": true,
            "description": "One label, a list of labels, or CSV with the header prediction_id,quality (separated by commas, semicolons or tabs). Each label is checked on its own; refused ones are listed with their index.",
            "content": {
                "application/json": {"schema": {"oneOf": [
                    label.clone(),
                    {"type": "object", "required": ["feedback"], "properties": {"feedback": {
                        "type": "array", "minItems": 1, "maxItems": max_rows,
                        "description": "Labels shaped like the single one (anything else is refused and listed); each is checked on its own and a refused one is listed in `rejected` with its index.",
                        "items": {},
                    }}},
                ]}},
                "application/x-www-form-urlencoded": {"schema": {
                    "type": "object",
                    "required": ["prediction_id", "quality"],
                    "properties": {
                        "prediction_id": label["properties"]["prediction_id"].clone(),
                        "quality": label["properties"]["quality"].clone(),
                    },
                }},
                "text/csv": {"schema": {"type": "string", "pattern": r"^prediction_id[,;\t]quality\n[^\n]", "description": "A header naming prediction_id and quality (separated by `,`, `;` or a tab), then one label per row; each row is checked on its own and a refused one is listed in `rejected` with its index."}},
            },
        });
    }
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
