//! What the OpenAPI document says about prediction ids and feedback, added to the generated
//! document by `api::openapi` (one call, so that the routes' documents stay in one place).

use serde_json::{json, Value};

/// Adds the `x-prediction-id` header to the prediction answers.
pub fn document_ids_and_feedback(doc: &mut Value, max_rows: usize) {
    let id = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}(\.(0|[1-9][0-9]{0,8}))?";
    let prediction_id = json!({"type": "string", "pattern": format!("^{id}$"), "description": "A prediction's `x-prediction-id`, or `<id>.<row>` for a row of a batch or an MLflow call."});
    let quality = json!({"type": "integer", "minimum": 0, "maximum": 10, "description": "The tasted quality."});
    let item = json!({
        "type": "object",
        "required": ["prediction_id", "quality"],
        "properties": {"prediction_id": prediction_id, "quality": quality},
    });
    // One label, without a list beside it (a body with both is refused).
    let mut label = item.clone();
    label["not"] = json!({"required": ["feedback"]});
    // A list with at least one label that can be stored: a list of which none can is refused
    // (422) as a whole, each refusal named; other items are refused and listed one by one.
    let list = json!({
        "type": "object",
        "required": ["feedback"],
        "not": {"anyOf": [{"required": ["prediction_id"]}, {"required": ["quality"]}]},
        "properties": {"feedback": {
            "type": "array", "minItems": 1, "maxItems": max_rows,
            "description": "Labels shaped like the single one; each is checked on its own and a refused one is listed in `rejected` with its index.",
            "items": {},
            "contains": item,
        }},
    });
    // CSV: the header, then at least one row of an id and a quality separated as the header
    // is; other lines before it hold no quote (a quoted field may span lines and take the
    // row in), and anything may follow it. A CSV without a row that can be stored is refused.
    let quality_text = "(?:10|[0-9])";
    let csv = [",", ";", "\\t"]
        .iter()
        .map(|sep| {
            format!(r#"prediction_id{sep}quality\r?\n(?:[^\n"]*\n)*{id}{sep}{quality_text}"#)
        })
        .collect::<Vec<_>>()
        .join("|");
    let feedback = &mut doc["paths"]["/api/feedback"]["post"];
    if feedback.is_object() {
        feedback["requestBody"] = json!({
            "required": true,
            "description": "One label, a list of labels, or CSV with the header prediction_id,quality (separated by commas, semicolons or tabs). Each label is checked on its own; refused ones are listed with their index, and a body of which no label can be stored is refused (422).",
            "content": {
                "application/json": {"schema": {"oneOf": [label, list]}},
                "application/x-www-form-urlencoded": {"schema": label.clone()},
                "text/csv": {"schema": {"type": "string", "pattern": format!(r"^(?:{csv})(?:\r?\n[\s\S]*)?$"), "description": "A header naming prediction_id and quality (separated by `,`, `;` or a tab), then one label per row; each row is checked on its own and a refused one is listed in `rejected` with its index."}},
            },
        });
        // A form post from a browser (`Accept: text/html`) is answered with the form page, at the
        // same status as the JSON answer would have.
        if let Some(responses) = feedback["responses"].as_object_mut() {
            for status in ["202", "400", "413", "422", "503"] {
                if let Some(content) = responses
                    .get_mut(status)
                    .and_then(|response| response.get_mut("content"))
                    .and_then(Value::as_object_mut)
                {
                    content.insert(
                        "text/html".to_string(),
                        json!({"schema": {"type": "string", "description": "The form page, saying whether the tasted quality was recorded: the answer to a form post whose Accept header prefers text/html."}}),
                    );
                }
            }
        }
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
