//! The lines of the prediction log and of the labels: one JSON object per line, each line
//! complete in itself, so that a reader can skip a line a crash cut short.
//!
//! A prediction: `{"id", "time", "model_version", "inputs": {the eleven features by name},
//! "prediction", "sample_rate", "client_request_id"?}`. A label: `{"id", "quality", "time"}`.
//! Times are RFC 3339 UTC with milliseconds. Nothing else is ever written: no keys, query
//! strings, other headers or client addresses.

use serde::{Deserialize, Serialize};

use crate::model::features::{FeatureRow, FEATURE_COUNT, FEATURE_NAMES};

/// Bytes of a client's request id kept, at most; anything but visible ASCII is dropped.
pub const MAX_CLIENT_REQUEST_ID_BYTES: usize = 128;

/// A client's own request id as recorded: visible ASCII only, at most
/// [`MAX_CLIENT_REQUEST_ID_BYTES`]; `None` when nothing of it is left.
pub fn client_request_id(raw: &[u8]) -> Option<Box<str>> {
    let kept: String = raw
        .iter()
        .filter(|b| b.is_ascii_graphic())
        .take(MAX_CLIENT_REQUEST_ID_BYTES)
        .map(|&b| b as char)
        .collect();
    (!kept.is_empty()).then(|| kept.into_boxed_str())
}

/// RFC 3339 UTC with milliseconds for a Unix time in milliseconds.
pub fn time_text(unix_millis: u64) -> String {
    let seconds = crate::model::artifact::rfc3339_utc(unix_millis / 1000);
    format!(
        "{}.{:03}Z",
        seconds.trim_end_matches('Z'),
        unix_millis % 1000
    )
}

/// The Unix time in milliseconds of [`time_text`]'s form (`YYYY-MM-DDTHH:MM:SS[.fff]Z`).
pub fn parse_time(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let millis = match text.get(19..text.len() - 1) {
        Some("") => 0,
        Some(fraction) if fraction.starts_with('.') && fraction.len() >= 2 => {
            let digits = &fraction[1..fraction.len().min(4)];
            let value: i64 = digits.parse().ok()?;
            value * 10_i64.pow(3 - digits.len() as u32)
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 24 + hour) * 60 + minute) * 60 + second;
    u64::try_from(total * 1000 + millis).ok()
}

/// The hour partition of a time: `YYYY/MM/DD/HH`.
pub fn hour_partition(unix_millis: u64) -> String {
    let text = crate::model::artifact::rfc3339_utc(unix_millis / 1000);
    format!(
        "{}/{}/{}/{}",
        &text[0..4],
        &text[5..7],
        &text[8..10],
        &text[11..13]
    )
}

/// The eleven inputs of a logged row, by name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs(pub FeatureRow);

impl Serialize for Inputs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(FEATURE_COUNT))?;
        for (name, value) in FEATURE_NAMES.iter().zip(self.0.iter()) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, f64>::deserialize(deserializer)?;
        let mut row = [0.0; FEATURE_COUNT];
        for (slot, name) in row.iter_mut().zip(FEATURE_NAMES.iter()) {
            *slot = *map
                .get(*name)
                .ok_or_else(|| serde::de::Error::custom(format!("input `{name}` missing")))?;
        }
        Ok(Inputs(row))
    }
}

/// One logged prediction row, as written.
#[derive(Debug, Serialize)]
pub struct PredictionLine<'a> {
    pub id: &'a str,
    pub time: &'a str,
    pub model_version: &'a str,
    pub inputs: Inputs,
    pub prediction: f64,
    pub sample_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<&'a str>,
}

/// One logged prediction row, as read back by the join.
#[derive(Debug, Deserialize)]
pub struct LoggedPrediction {
    pub id: String,
    pub time: String,
    pub model_version: String,
    pub inputs: Inputs,
    pub prediction: f64,
}

/// One label, as written and read.
#[derive(Debug, Serialize, Deserialize)]
pub struct LabelLine {
    pub id: String,
    pub quality: f64,
    pub time: String,
}

/// The id of a line, read without parsing the rest: every line this software writes starts
/// with `{"id":"`.
pub fn line_id(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(br#"{"id":""#)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The complete lines of `bytes` and whether the last one was cut short (no final newline,
/// as a writer killed during a write leaves it).
pub fn complete_lines(bytes: &[u8]) -> (impl Iterator<Item = &[u8]>, bool) {
    let (whole, partial) = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => (&bytes[..end], end + 1 < bytes.len()),
        None => (&bytes[..0], !bytes.is_empty()),
    };
    let lines = whole.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    (lines, partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_partition_by_hour() {
        let millis = 1_765_000_000_123;
        let text = time_text(millis);
        assert_eq!(text, "2025-12-06T05:46:40.123Z");
        assert_eq!(parse_time(&text), Some(millis));
        assert_eq!(parse_time("2025-12-06T05:46:40Z"), Some(1_765_000_000_000));
        assert_eq!(parse_time("2025-12-06 05:46:40Z"), None);
        assert_eq!(hour_partition(millis), "2025/12/06/05");
    }

    #[test]
    fn a_line_cut_short_is_told_apart() {
        let (lines, partial) = complete_lines(b"{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c");
        assert_eq!(
            lines.collect::<Vec<_>>(),
            [&b"{\"id\":\"a\"}"[..], b"{\"id\":\"b\"}"]
        );
        assert!(partial);
        let (lines, partial) = complete_lines(b"{\"id\":\"a\"}\n");
        assert_eq!(lines.count(), 1);
        assert!(!partial);
        assert_eq!(line_id(b"{\"id\":\"x.1\",\"q\":1}"), Some("x.1"));
    }

    #[test]
    fn client_request_ids_keep_visible_ascii_only() {
        assert_eq!(client_request_id(b"abc-1\r\n").as_deref(), Some("abc-1"));
        assert_eq!(client_request_id(b" \t"), None);
        assert_eq!(
            client_request_id(&[b'a'; 1000]).map(|s| s.len()),
            Some(MAX_CLIENT_REQUEST_ID_BYTES)
        );
    }
}
