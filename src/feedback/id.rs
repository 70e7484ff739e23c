//! Prediction ids: UUIDv7 (RFC 9562), made by the server. The first 48 bits are the Unix
//! time in milliseconds, so ids sort by time; the other 74 free bits come from SipHash, keyed
//! once per process at random, over a per-thread counter, so ids are unique across threads,
//! processes and instances without a lock or a shared counter. A batch's rows are
//! `<id>.<row>`, rows counted from 0.
//!
//! Not here: what is logged under an id (`log`), labels (`labels`).

use std::cell::Cell;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The key of this process's ids, chosen at random when the first id is made.
static KEY: LazyLock<std::collections::hash_map::RandomState> =
    LazyLock::new(std::collections::hash_map::RandomState::new);
/// Hands each thread its own range of counter values.
static THREADS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTER: Cell<u64> = Cell::new(THREADS.fetch_add(1, Ordering::Relaxed) << 40);
}

/// The longest id a label may name: a UUID, a dot and a row number.
pub const MAX_ID_BYTES: usize = 36 + 1 + 20;

/// A prediction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PredictionId(u128);

impl PredictionId {
    /// A new id for now.
    pub fn new() -> PredictionId {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self::at(millis)
    }

    /// A new id for the Unix time `millis`.
    pub fn at(millis: u64) -> PredictionId {
        let count = COUNTER.with(|c| {
            let value = c.get();
            c.set(value.wrapping_add(1));
            value
        });
        let random = KEY.hash_one(count);
        let rand_a = u128::from((count ^ (random >> 52)) & 0x0fff);
        let rand_b = u128::from(random & ((1 << 62) - 1));
        let bits = (u128::from(millis & 0xffff_ffff_ffff) << 80)
            | (0x7 << 76)
            | (rand_a << 64)
            | (0b10 << 62)
            | rand_b;
        PredictionId(bits)
    }

    /// The Unix time in milliseconds the id was made at.
    pub fn unix_millis(&self) -> u64 {
        (self.0 >> 80) as u64
    }

    /// Parses the canonical text form (lower- or upper-case hex, with hyphens) of a UUIDv7.
    pub fn parse(text: &str) -> Option<PredictionId> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        let mut value: u128 = 0;
        for (index, &byte) in bytes.iter().enumerate() {
            if matches!(index, 8 | 13 | 18 | 23) {
                if byte != b'-' {
                    return None;
                }
                continue;
            }
            let digit = (byte as char).to_digit(16)?;
            value = value << 4 | u128::from(digit);
        }
        let version = (value >> 76) & 0xf;
        let variant = (value >> 62) & 0b11;
        (version == 7 && variant == 0b10).then_some(PredictionId(value))
    }
}

impl Default for PredictionId {
    fn default() -> Self {
        PredictionId::new()
    }
}

impl PredictionId {
    /// The canonical text form, lower-case hex with hyphens, without allocating: a byte's
    /// two digits at a time, since every prediction answer and logged row carries one.
    pub fn encode(&self) -> [u8; 36] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Where each byte's two digits go: 8-4-4-4-12 digits, hyphens at 8, 13, 18 and 23.
        const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut out = [b'-'; 36];
        for (byte, at) in self.0.to_be_bytes().into_iter().zip(AT) {
            out[at] = HEX[usize::from(byte >> 4)];
            out[at + 1] = HEX[usize::from(byte & 0xf)];
        }
        out
    }
}

impl fmt::Display for PredictionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = self.encode();
        // Only ASCII hex digits and hyphens.
        f.write_str(std::str::from_utf8(&encoded).unwrap_or_default())
    }
}

/// The id of row `row` of the batch `id`.
pub fn row_id(id: &str, row: usize) -> String {
    format!("{id}.{row}")
}

/// Why `text` is not a prediction id this server could have made (`<uuid>` or
/// `<uuid>.<row>`), if it is not. On success, the canonical form (lower-case hex).
pub fn canonical_label_id(text: &str) -> Result<String, String> {
    let shown = crate::model::dataset::clip(text);
    if text.len() > MAX_ID_BYTES {
        return Err(format!(
            "`{shown}` is not a prediction id (a UUIDv7 from `x-prediction-id`, or `<id>.<row>` for a batch row)"
        ));
    }
    let (uuid, row) = match text.split_once('.') {
        Some((uuid, row)) => (uuid, Some(row)),
        None => (text, None),
    };
    let bad = || {
        format!(
            "`{shown}` is not a prediction id (a UUIDv7 from `x-prediction-id`, or `<id>.<row>` for a batch row)"
        )
    };
    let id = PredictionId::parse(uuid).ok_or_else(bad)?;
    match row {
        None => Ok(id.to_string()),
        Some(row) => {
            let valid = !row.is_empty()
                && row.len() <= 9
                && row.bytes().all(|b| b.is_ascii_digit())
                && (row == "0" || !row.starts_with('0'));
            if !valid {
                return Err(bad());
            }
            Ok(format!("{id}.{row}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_uuid_v7_that_sort_by_time_and_never_repeat() {
        let first = PredictionId::at(1_765_000_000_000);
        let later = PredictionId::at(1_765_000_000_001);
        assert!(first < later);
        assert_eq!(first.unix_millis(), 1_765_000_000_000);
        let text = first.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7", "{text}");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        assert_eq!(PredictionId::parse(&text), Some(first));
        assert_eq!(PredictionId::parse(&text.to_uppercase()), Some(first));

        let mut seen = HashSet::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..20_000)
                        .map(|_| PredictionId::at(42))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(seen.insert(id), "{id} repeated");
            }
        }
    }

    #[test]
    fn label_ids_are_a_uuid_v7_or_a_batch_row() {
        let id = PredictionId::new().to_string();
        assert_eq!(canonical_label_id(&id), Ok(id.clone()));
        assert_eq!(
            canonical_label_id(&format!("{id}.0")),
            Ok(format!("{id}.0"))
        );
        assert_eq!(
            canonical_label_id(&format!("{}.17", id.to_uppercase())),
            Ok(format!("{id}.17"))
        );
        for bad in [
            String::new(),
            "abc".to_string(),
            format!("{id}."),
            format!("{id}.01"),
            format!("{id}.-1"),
            format!("{id}.1.2"),
            format!("{id}x"),
            "00000000-0000-4000-8000-000000000000".to_string(),
            "x".repeat(10_000),
        ] {
            let error = canonical_label_id(&bad).unwrap_err();
            assert!(error.len() < 300, "{error}");
        }
    }
}
