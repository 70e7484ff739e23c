//! The host's invocation envelope: `{"Data": {...}, "Metadata": {...}}` in, and
//! `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}` out. String values arrive
//! double-encoded (`"\"data.csv\""`), blob content base64-inlined, and unknown keys are
//! tolerated.

use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

/// An incoming invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl Invocation {
    /// Parses the envelope; keys are matched case-insensitively like the host's serializer.
    pub fn parse(body: &[u8]) -> Result<Invocation, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the invocation is not JSON: {e}"))?;
        let Value::Object(top) = value else {
            return Err("the invocation is not a JSON object".to_string());
        };
        let mut data = Map::new();
        let mut metadata = Map::new();
        for (key, value) in top {
            match (key.to_ascii_lowercase().as_str(), value) {
                ("data", Value::Object(map)) => data = map,
                ("metadata", Value::Object(map)) => metadata = map,
                _ => {}
            }
        }
        Ok(Invocation { data, metadata })
    }

    /// The blob's name: `Metadata.name`, else the end of `Metadata.Uri` after the container.
    pub fn blob_name(&self) -> Option<String> {
        if let Some(name) = self.metadata.get("name").and_then(decode_string) {
            return Some(name);
        }
        let uri = self.metadata.get("Uri").and_then(decode_string)?;
        let path = uri.split('?').next().unwrap_or(&uri);
        path.split_once("/training-data/")
            .map(|(_, name)| name.to_string())
    }

    /// The blob's ETag from `Metadata.Properties.ETag`, when the host sent a usable one.
    pub fn blob_etag(&self) -> Option<String> {
        let properties = self.metadata.get("Properties")?.as_object()?;
        properties
            .get("ETag")
            .and_then(decode_string)
            .filter(|e| !e.is_empty())
    }

    /// Blob content under binding `name`: base64 (the host's encoding of bytes), or a JSON
    /// string when the value is itself quoted text.
    pub fn blob_content(&self, binding: &str) -> Result<Vec<u8>, String> {
        let value = self
            .data
            .get(binding)
            .ok_or_else(|| format!("the invocation has no `{binding}` input"))?;
        match value {
            Value::Null => Ok(Vec::new()),
            Value::String(text) if text.starts_with('"') => serde_json::from_str::<String>(text)
                .map(String::into_bytes)
                .map_err(|e| format!("`{binding}` is quoted but not a JSON string: {e}")),
            Value::String(text) => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| format!("`{binding}` is not base64: {e}")),
            other => Err(format!("`{binding}` must be a string, got {other}")),
        }
    }

    /// `Data.timer.IsPastDue` (any binding name), false if absent.
    pub fn timer_is_past_due(&self) -> bool {
        self.data
            .values()
            .filter_map(Value::as_object)
            .find_map(|timer| timer.get("IsPastDue").and_then(Value::as_bool))
            .unwrap_or(false)
    }
}

/// A string value the host double-encodes (`"\"x\""` → `x`); plain strings pass through.
pub fn decode_string(value: &Value) -> Option<String> {
    let Value::String(text) = value else {
        return None;
    };
    if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .ok()
            .or_else(|| Some(text.clone()))
    } else {
        Some(text.clone())
    }
}

/// The answer: always a JSON object, never empty (an empty body would hang the host).
#[derive(Debug, Serialize)]
pub struct EnvelopeResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl EnvelopeResponse {
    pub fn new(logs: Vec<String>, return_value: Value) -> Self {
        Self {
            outputs: Map::new(),
            logs,
            return_value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_envelope_fields_are_decoded() {
        let body = br#"{"Data":{"csv":"YSxiCjEsMgo="},
            "Metadata":{"Uri":"\"https://acct.blob.core.windows.net/training-data/wines.csv\"",
              "Properties":{"ETag":"\"0x8DC\"","ContentLength":8},"Metadata":{},
              "name":"\"wines.csv\"","sys":{"MethodName":"retrain-on-upload"}}}"#;
        let invocation = Invocation::parse(body).unwrap();
        assert_eq!(invocation.blob_name().as_deref(), Some("wines.csv"));
        assert_eq!(invocation.blob_etag().as_deref(), Some("0x8DC"));
        assert_eq!(invocation.blob_content("csv").unwrap(), b"a,b\n1,2\n");
    }

    #[test]
    fn name_falls_back_to_the_uri_and_text_content_is_accepted() {
        let body = br#"{"Data":{"csv":"\"a,b\\n\""},"Metadata":{"Uri":"\"http://127.0.0.1:1/devstoreaccount1/training-data/dir/x.csv\"","Properties":{"ETag":{}}}}"#;
        let invocation = Invocation::parse(body).unwrap();
        assert_eq!(invocation.blob_name().as_deref(), Some("dir/x.csv"));
        assert_eq!(invocation.blob_etag(), None);
        assert_eq!(invocation.blob_content("csv").unwrap(), b"a,b\n");
    }

    #[test]
    fn bad_envelopes_are_described() {
        assert!(Invocation::parse(b"").is_err());
        assert!(Invocation::parse(b"[1]").is_err());
        let invocation = Invocation::parse(br#"{"Data":{"csv":"***"}}"#).unwrap();
        assert!(invocation
            .blob_content("csv")
            .unwrap_err()
            .contains("base64"));
        assert!(invocation
            .blob_content("other")
            .unwrap_err()
            .contains("no `other`"));
    }

    #[test]
    fn timer_past_due_is_read_leniently() {
        let body = br#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{"sys":{}}}"#;
        assert!(Invocation::parse(body).unwrap().timer_is_past_due());
        assert!(!Invocation::parse(br#"{"Data":{},"Metadata":{}}"#)
            .unwrap()
            .timer_is_past_due());
    }

    #[test]
    fn the_answer_is_a_json_object_with_the_host_keys() {
        let text =
            serde_json::to_string(&EnvelopeResponse::new(vec!["ok".into()], Value::Null)).unwrap();
        assert_eq!(text, r#"{"Outputs":{},"Logs":["ok"],"ReturnValue":null}"#);
    }
}
