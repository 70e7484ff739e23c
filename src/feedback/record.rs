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

/// Times as [`time_text`] writes them, with the text up to the second kept from the last
/// call: rows logged in the same second pay for three digits.
#[derive(Default)]
pub struct TimeWriter {
    second: Option<u64>,
    prefix: Vec<u8>,
}

impl TimeWriter {
    /// Appends the time of `unix_millis`, `YYYY-MM-DDTHH:MM:SS.fffZ`, to `out`.
    pub fn write(&mut self, unix_millis: u64, out: &mut Vec<u8>) {
        let second = unix_millis / 1000;
        if self.second != Some(second) {
            let text = crate::model::artifact::rfc3339_utc(second);
            self.prefix.clear();
            self.prefix
                .extend_from_slice(text.trim_end_matches('Z').as_bytes());
            self.second = Some(second);
        }
        let millis = (unix_millis % 1000) as u32;
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ]);
    }
}

/// Appends `value` as a JSON number, exactly as `serde_json` writes it: the shortest decimal
/// that reads back as `value`, and `null` when not finite.
fn write_number(value: f64, out: &mut Vec<u8>) {
    if write_short_decimal(value, out) {
        return;
    }
    use serde_json::ser::Formatter;
    let mut formatter = serde_json::ser::CompactFormatter;
    if value.is_finite() {
        // Writing into a vector cannot fail.
        let _ = formatter.write_f64(out, value);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Decimal places [`write_short_decimal`] handles: measurements of wine are given to a few.
const SHORT_PLACES: u32 = 6;
const SHORT_SCALE: f64 = 1e6;
/// [`SHORT_SCALE`] as an integer.
const SHORT_SCALE_INT: u64 = 1_000_000;

/// Writes `value` when it is a decimal of at most [`SHORT_PLACES`] places between 1e-5 and
/// about 2e9 (or zero), the inputs a prediction log sees, in a few integer steps instead of
/// the general shortest-decimal search; false, writing nothing, for any other value.
///
/// Why the text is the one `serde_json` writes: `m / 10^6` is the correctly rounded quotient
/// of two exact doubles, so the check below holds exactly when the decimal `m·10^-6` reads
/// back as `value`. Below 2^51 the doubles near `value` are less than half of 10^-6 apart,
/// so no other decimal of six places or fewer reads back as `value`, and stripping `m`'s
/// trailing zeros gives the shortest. From 1e-5 up, `serde_json` writes plain decimal
/// notation (`0.00001`, `12.0`), as here.
fn write_short_decimal(value: f64, out: &mut Vec<u8>) -> bool {
    const LIMIT: f64 = (1u64 << 51) as f64;
    let scaled = value * SHORT_SCALE;
    // Also false for NaN and the infinities.
    if scaled.is_nan() || scaled.abs() >= LIMIT {
        return false;
    }
    // Round to the nearest integer without a library call: truncate, then step.
    let mut m = scaled as i64;
    let rest = scaled - m as f64;
    if rest >= 0.5 {
        m += 1;
    } else if rest <= -0.5 {
        m -= 1;
    }
    if m as f64 / SHORT_SCALE != value {
        return false;
    }
    if m == 0 {
        out.extend_from_slice(if value.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return true;
    }
    if m.unsigned_abs() < 10 {
        return false; // below 1e-5: exponent notation
    }
    // `[-]whole.fraction`, the fraction's six places with its trailing zeros cut (one zero
    // kept when all are). The digits are put together in a register and appended eight bytes
    // at a time: bytes stored one by one and then copied as a block stall the processor (the
    // block's load cannot take the bytes from the pending stores), and a copy of a varying
    // length is a call.
    if m < 0 {
        out.push(b'-');
    }
    let digits = m.unsigned_abs();
    let whole = digits / SHORT_SCALE_INT;
    match decimal_digits(whole) {
        count @ 1..=8 => append_word(out, digits_word(whole, count), count),
        _ => out.extend_from_slice(itoa_u64(whole, &mut [0; 20])),
    }
    let fraction = digits_word(digits % SHORT_SCALE_INT, SHORT_PLACES as usize);
    // The fraction's last significant digit: the highest byte that is not an ASCII zero.
    let significant = fraction ^ digits_word(0, SHORT_PLACES as usize);
    let places = if significant == 0 {
        1
    } else {
        (71 - significant.leading_zeros() as usize) / 8
    };
    out.push(b'.');
    append_word(out, fraction, places);
    true
}

/// How many decimal digits `value` has (one for zero).
fn decimal_digits(value: u64) -> usize {
    let mut count = 1;
    let mut bound = 10;
    while count < 20 && value >= bound {
        count += 1;
        bound = bound.saturating_mul(10);
    }
    count
}

/// The last `count` (at most eight) decimal digits of `value` as ASCII, the most significant
/// in the lowest byte: the order in which a little-endian store writes them.
fn digits_word(mut value: u64, count: usize) -> u64 {
    let mut word = 0;
    for index in (0..count).rev() {
        word |= (u64::from(b'0') + value % 10) << (8 * index);
        value /= 10;
    }
    word
}

/// Appends the first `count` bytes of `word`: all eight, then cut back (a copy of a known size
/// is a single store).
fn append_word(out: &mut Vec<u8>, word: u64, count: usize) {
    let length = out.len() + count;
    out.extend_from_slice(&word.to_le_bytes());
    out.truncate(length);
}

/// Appends `text` as a JSON string, quoted and escaped.
pub fn write_string(text: &str, out: &mut Vec<u8>) {
    // Writing a string into a vector cannot fail.
    let _ = serde_json::to_writer(out, text);
}

/// One prediction row as the writer holds it, with its version already a JSON string.
pub struct RowToWrite<'a> {
    pub id: &'a [u8; 36],
    /// `Some(n)`: the row id is `<id>.<n>`; else `<id>`.
    pub row: Option<u32>,
    pub unix_millis: u64,
    pub model_version_json: &'a [u8],
    pub inputs: &'a FeatureRow,
    pub prediction: f64,
    /// The sampling rate as a JSON number ([`number_text`]): the same for every row.
    pub sample_rate_json: &'a [u8],
    pub client_request_id: Option<&'a str>,
}

/// `value` as a JSON number, for a value written on every line.
pub fn number_text(value: f64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    write_number(value, &mut out);
    out
}

/// Appends the line of one logged prediction, newline included: the same JSON as
/// [`PredictionLine`] through `serde_json`, written without building the value first, since
/// the log writer shares the processors with the predictions it records.
pub fn write_prediction_line(row: &RowToWrite, times: &mut TimeWriter, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"id":""#);
    out.extend_from_slice(row.id);
    if let Some(number) = row.row {
        out.push(b'.');
        out.extend_from_slice(itoa_u64(u64::from(number), &mut [0; 20]));
    }
    out.extend_from_slice(br#"","time":""#);
    times.write(row.unix_millis, out);
    out.extend_from_slice(br#"","model_version":"#);
    out.extend_from_slice(row.model_version_json);
    for (key, value) in INPUT_KEYS.iter().zip(row.inputs) {
        out.extend_from_slice(key);
        write_number(*value, out);
    }
    out.extend_from_slice(br#"},"prediction":"#);
    write_number(row.prediction, out);
    out.extend_from_slice(br#","sample_rate":"#);
    out.extend_from_slice(row.sample_rate_json);
    if let Some(client) = row.client_request_id {
        out.extend_from_slice(br#","client_request_id":"#);
        write_string(client, out);
    }
    out.extend_from_slice(b"}\n");
}

/// What precedes each input's value on a line, `,"inputs":{"fixed_acidity":` then
/// `,"volatile_acidity":` and so on: one copy each instead of four.
static INPUT_KEYS: std::sync::LazyLock<[Box<[u8]>; FEATURE_COUNT]> =
    std::sync::LazyLock::new(|| {
        std::array::from_fn(|index| {
            let opening = if index == 0 { r#","inputs":{"# } else { "," };
            format!("{opening}\"{}\":", FEATURE_NAMES[index])
                .into_bytes()
                .into()
        })
    });

/// The decimal digits of `value`, written into the end of `buffer`.
fn itoa_u64(mut value: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buffer[start..];
        }
    }
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
    fn a_line_written_by_hand_is_the_serde_line() {
        let id = crate::feedback::id::PredictionId::at(1_765_000_000_123);
        let text = id.to_string();
        let mut inputs = [0.0; FEATURE_COUNT];
        for (index, value) in inputs.iter_mut().enumerate() {
            *value = index as f64 * 1.1 + 1e-7;
        }
        inputs[3] = 12.0;
        let mut times = TimeWriter::default();
        for (row, client) in [(None, None), (Some(17), Some("a\"b\\c"))] {
            let row_id = match row {
                Some(n) => format!("{text}.{n}"),
                None => text.clone(),
            };
            let mut expected = serde_json::to_vec(&PredictionLine {
                id: &row_id,
                time: &time_text(id.unix_millis()),
                model_version: "v\"1",
                inputs: Inputs(inputs),
                prediction: 5.066_666_666_666_667,
                sample_rate: 0.25,
                client_request_id: client,
            })
            .unwrap();
            expected.push(b'\n');
            let mut version = Vec::new();
            write_string("v\"1", &mut version);
            let mut line = Vec::new();
            write_prediction_line(
                &RowToWrite {
                    id: &id.encode(),
                    row,
                    unix_millis: id.unix_millis(),
                    model_version_json: &version,
                    inputs: &inputs,
                    prediction: 5.066_666_666_666_667,
                    sample_rate_json: &number_text(0.25),
                    client_request_id: client,
                },
                &mut times,
                &mut line,
            );
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
        let mut out = Vec::new();
        times.write(1_765_000_001_007, &mut out);
        assert_eq!(out, time_text(1_765_000_001_007).as_bytes());
    }

    /// `value` as `serde_json` writes it.
    fn serde_text(value: f64) -> String {
        serde_json::to_string(&value).unwrap()
    }

    fn written(value: f64) -> String {
        let mut out = Vec::new();
        write_number(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        let edges = [
            0.0,
            -0.0,
            1e-5,
            -1e-5,
            9.999_99e-6,
            1e-6,
            1.5e-5,
            0.1,
            0.2,
            0.3,
            1.0,
            10.0,
            12.0,
            100.0,
            1e15,
            1e16,
            2.25e9,
            2.252e9,
            2_251_799_813.685_247,
            123_456_789.123_456,
            0.999_999_5,
            9.999_999_5,
            0.998,
            0.9978,
            7.4,
            0.076,
            3.51,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1e300,
            f64::EPSILON,
        ];
        for value in edges {
            assert_eq!(written(value), serde_text(value), "{value:e}");
        }
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(written(value), "null");
        }
        // The short path takes the wine measurements, and leaves the rest to serde_json.
        for (value, short) in [
            (0.9978, true),
            (34.0, true),
            (1e-5, true),
            (1.0 / 3.0, false),
        ] {
            assert_eq!(
                write_short_decimal(value, &mut Vec::new()),
                short,
                "{value}"
            );
        }
        // Decimals of 0 to 8 places at every magnitude the short path takes and past it,
        // and raw bit patterns.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..400_000 {
            let places = (next() % 9) as i32;
            let digits = next() % 10u64.pow(1 + (next() % 15) as u32);
            let sign = if next() % 2 == 0 { 1.0 } else { -1.0 };
            let decimal: f64 = format!("{digits}e-{places}").parse().unwrap();
            for value in [sign * decimal, f64::from_bits(next())] {
                assert_eq!(written(value), serde_text(value), "{value:e}");
            }
        }
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
