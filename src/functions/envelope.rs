//! The host's invocation envelope: `{"Data": {...}, "Metadata": {...}}` in, and
//! `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}` out. String values arrive
//! double-encoded (`"\"data.csv\""`), blob content base64-inlined, and unknown keys are
//! tolerated.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Mutex;

use base64::Engine;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An incoming invocation.
///
/// Memory: a blob arrives base64-inlined in the body. Its text is decoded while the body is
/// parsed, straight from the body's bytes (no copy of the text is made), and the decoded bytes
/// are handed over by [`blob_content`](Invocation::blob_content) rather than copied. So an
/// upload of `n` bytes peaks at the body (about 1.33 `n`) plus the decoded bytes (`n`) while
/// parsing, and at `n` once the caller drops the body.
#[derive(Debug)]
pub struct Invocation {
    /// `Data`'s values other than strings (e.g. the timer's object).
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
    /// `Data`'s string values, decoded (see [`decode_content`]), until handed over.
    contents: Mutex<HashMap<String, Result<Vec<u8>, String>>>,
}

/// A value of `Data`: a string is decoded into bytes as it is read; anything else is kept.
enum DataValue {
    Content(Result<Vec<u8>, String>),
    Other(Value),
}

impl Invocation {
    /// Parses the envelope; keys are matched case-insensitively like the host's serializer.
    pub fn parse(body: &[u8]) -> Result<Invocation, String> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let invocation = deserializer
            .deserialize_any(EnvelopeVisitor)
            .map_err(|e| format!("the invocation cannot be read: {e}"))?;
        deserializer
            .end()
            .map_err(|e| format!("the invocation cannot be read: {e}"))?;
        invocation.ok_or_else(|| "the invocation is not a JSON object".to_string())
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

    /// Blob content under binding `binding`, handed over: the invocation keeps no copy, so
    /// a second call for the same binding finds nothing. The content is base64 (the host's
    /// encoding of bytes), or text when the value is itself a quoted JSON string.
    pub fn blob_content(&self, binding: &str) -> Result<Vec<u8>, String> {
        let taken = self
            .contents
            .lock()
            .map_err(|_| "the invocation's content is unavailable".to_string())?
            .remove(binding);
        match taken {
            Some(content) => content.map_err(|problem| format!("`{binding}` {problem}")),
            None => match self.data.get(binding) {
                Some(Value::Null) => Ok(Vec::new()),
                Some(other) => Err(format!("`{binding}` must be a string, got {other}")),
                None => Err(format!("the invocation has no `{binding}` input")),
            },
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

/// Decodes a `Data` string: JSON text when it is quoted, base64 otherwise.
fn decode_content(text: &str) -> Result<Vec<u8>, String> {
    if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map(String::into_bytes)
            .map_err(|e| format!("is quoted but not a JSON string: {e}"))
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("is not base64: {e}"))
    }
}

/// Reads the top-level object, keeping `Data` and `Metadata` (any case) and skipping the rest.
struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Option<Invocation>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an invocation envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut data = Map::new();
        let mut metadata = Map::new();
        let mut contents = HashMap::new();
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let name = key.to_ascii_lowercase();
            if matches!(name.as_str(), "data" | "metadata") {
                if seen.contains(&name) {
                    return Err(A::Error::custom(format!("`{key}` is given twice")));
                }
                seen.push(name.clone());
            }
            match name.as_str() {
                "data" => {
                    if let Some(entries) = map.next_value_seed(ObjectSeed::<DataValue>::new())? {
                        for (name, value) in entries {
                            match value {
                                DataValue::Content(content) => {
                                    contents.insert(name, content);
                                }
                                DataValue::Other(value) => {
                                    data.insert(name, value);
                                }
                            }
                        }
                    }
                }
                "metadata" => {
                    if let Some(entries) = map.next_value_seed(ObjectSeed::<Value>::new())? {
                        metadata = entries.into_iter().collect();
                    }
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Some(Invocation {
            data,
            metadata,
            contents: Mutex::new(contents),
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `Data` or `Metadata`: an object whose values are read as `T`s; anything else is ignored.
/// A name given twice (in any case, as the host matches them) is refused: which of the two
/// the host meant cannot be known.
struct ObjectSeed<T>(PhantomData<T>);

impl<T> ObjectSeed<T> {
    fn new() -> Self {
        ObjectSeed(PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ObjectSeed<T> {
    type Value = Option<Vec<(String, T)>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectSeed<T> {
    type Value = Option<Vec<(String, T)>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of the invocation")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, T)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries
                .iter()
                .any(|(seen, _)| seen.eq_ignore_ascii_case(&key))
            {
                return Err(A::Error::custom(format!("`{key}` is given twice")));
            }
            let value = map.next_value::<T>()?;
            entries.push((key, value));
        }
        Ok(Some(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

impl<'de> Deserialize<'de> for DataValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DataValueVisitor)
    }
}

struct DataValueVisitor;

impl<'de> Visitor<'de> for DataValueVisitor {
    type Value = DataValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    /// A string straight from the body (no escapes): decoded without copying the text.
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<DataValue, E> {
        Ok(DataValue::Content(decode_content(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<DataValue, E> {
        Ok(DataValue::Content(decode_content(text)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DataValue, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(DataValue::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<DataValue, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(DataValue::Other)
    }

    fn visit_bool<E>(self, value: bool) -> Result<DataValue, E> {
        Ok(DataValue::Other(Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<DataValue, E> {
        Ok(DataValue::Other(Value::from(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<DataValue, E> {
        Ok(DataValue::Other(Value::from(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<DataValue, E> {
        Ok(DataValue::Other(Value::from(value)))
    }

    fn visit_unit<E>(self) -> Result<DataValue, E> {
        Ok(DataValue::Other(Value::Null))
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
    fn a_name_given_twice_is_refused_whichever_its_case() {
        for body in [
            r#"{"Data":{},"data":{}}"#,
            r#"{"Metadata":{},"Data":{},"METADATA":{}}"#,
            r#"{"Data":{"csv":"YQ==","Csv":"Yg=="}}"#,
            r#"{"Metadata":{"name":"\"a.csv\"","name":"\"b.csv\""}}"#,
        ] {
            let error = Invocation::parse(body.as_bytes()).unwrap_err();
            assert!(error.contains("given twice"), "{body}: {error}");
        }
        // Other top-level names may repeat: they are not read.
        assert!(Invocation::parse(br#"{"Extra":1,"Extra":2,"Data":{}}"#).is_ok());
    }

    #[test]
    fn content_is_decoded_from_escaped_text_and_handed_over_once() {
        // `\/` is a JSON escape of `/`: the decoder then sees a copied string.
        let body = br#"{"data":{"csv":"YS\/i","n":3,"list":[1]},"DATA2":1}"#;
        let invocation = Invocation::parse(body).unwrap();
        assert_eq!(invocation.blob_content("csv").unwrap(), [b'a', b'/', 0xe2]);
        assert!(invocation
            .blob_content("csv")
            .unwrap_err()
            .contains("no `csv`"));
        assert!(invocation
            .blob_content("n")
            .unwrap_err()
            .contains("must be a string"));
        assert_eq!(invocation.data.get("list"), Some(&serde_json::json!([1])));
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
