//! The body almost every single prediction sends, read without the general parser: one flat
//! JSON object whose fields are the eleven features under their own names, each a plain
//! number. Reading it directly costs a fraction of what the general parser's generic
//! machinery costs for the same bytes.
//!
//! Anything else, including anything wrong, is not this body: [`one_wine`] answers `None`
//! after at most one pass over the bytes, and the general parser (see `json`) reads the body
//! and gives the answer or the precise error. So this path decides nothing on its own: what it
//! accepts, the general parser accepts with the same row (the tests compare the two on
//! valid, near-valid and mutated bodies), and what it refuses costs one extra scan.

use crate::model::features::{FeatureRow, FEATURE_COUNT, FEATURE_NAMES};

use super::limits::{number_cell, MAX_TEXT_BYTES};

/// The row of `body` if it is exactly one flat object of the eleven features, by their own
/// names (no escapes), in any order, each once, each a JSON number within its feature's
/// bounds; `None` for anything else.
pub fn one_wine(body: &[u8]) -> Option<FeatureRow> {
    let mut reader = Reader { body, at: 0 };
    let mut row = [0.0; FEATURE_COUNT];
    let mut seen = 0u16;
    reader.skip_space();
    reader.expect(b'{')?;
    loop {
        reader.skip_space();
        let index = reader.feature_name()?;
        if seen & (1 << index) != 0 {
            return None;
        }
        seen |= 1 << index;
        reader.skip_space();
        reader.expect(b':')?;
        reader.skip_space();
        row[index] = number_cell(index, reader.number()?).ok()?;
        reader.skip_space();
        match reader.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    reader.skip_space();
    let complete = seen == (1 << FEATURE_COUNT) - 1;
    (complete && reader.at == body.len()).then_some(row)
}

/// A cursor over the body.
struct Reader<'b> {
    body: &'b [u8],
    at: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Option<u8> {
        let byte = *self.body.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// Skips JSON's whitespace (space, tab, line feed, carriage return).
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.body.get(self.at) {
            self.at += 1;
        }
    }

    /// A quoted field name that is one of the features' own names.
    fn feature_name(&mut self) -> Option<usize> {
        self.expect(b'"')?;
        let start = self.at;
        let length = self.body[start..].iter().position(|&b| b == b'"')?;
        let name = &self.body[start..start + length];
        self.at = start + length + 1;
        FEATURE_NAMES.iter().position(|n| n.as_bytes() == name)
    }

    /// A number in JSON's grammar (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`),
    /// converted with correct rounding, as the general parser converts it.
    fn number(&mut self) -> Option<f64> {
        let start = self.at;
        let negative = self.eat(b'-');
        let mut decimal = Decimal::default();
        match self.body.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(&mut decimal)?,
            _ => return None,
        }
        if self.eat(b'.') {
            let before = decimal.digits;
            self.digits(&mut decimal)?;
            decimal.fraction_digits = decimal.digits - before;
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            self.digits(&mut Decimal::default())?;
        } else if let Some(value) = decimal.value() {
            return Some(if negative { -value } else { value });
        }
        if self.at - start > MAX_TEXT_BYTES {
            return None; // the general parser names the field
        }
        // Only ASCII digits, signs, '.' and exponent letters were taken.
        let text = std::str::from_utf8(&self.body[start..self.at]).ok()?;
        text.parse().ok()
    }

    /// Takes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.body.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    /// One or more decimal digits, added to `decimal`.
    fn digits(&mut self, decimal: &mut Decimal) -> Option<()> {
        let start = self.at;
        while let Some(&byte) = self.body.get(self.at).filter(|b| b.is_ascii_digit()) {
            decimal.push(byte - b'0');
            self.at += 1;
        }
        (self.at > start).then_some(())
    }
}

/// The digits of a number without exponent as one integer, and how many of them follow the
/// point: what most bodies send (`0.076`, `11`), converted without the general routine.
#[derive(Default)]
struct Decimal {
    mantissa: u64,
    digits: u32,
    fraction_digits: u32,
}

/// Decimal digits that always fit a `f64`'s 53-bit significand exactly.
const EXACT_DIGITS: u32 = 15;

/// The powers of ten up to 10^[`EXACT_DIGITS`], all exact `f64`s.
const EXACT_POWERS_OF_TEN: [f64; EXACT_DIGITS as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

impl Decimal {
    fn push(&mut self, digit: u8) {
        // Past EXACT_DIGITS the value is left to the general conversion; the integer only has
        // to stay inside u64 until then.
        if self.digits < EXACT_DIGITS {
            self.mantissa = self.mantissa * 10 + u64::from(digit);
        }
        self.digits += 1;
    }

    /// The correctly rounded value when the integer and the power of ten are both exact
    /// `f64`s: one division, which IEEE 754 rounds correctly (Clinger's fast path).
    fn value(&self) -> Option<f64> {
        if self.digits > EXACT_DIGITS {
            return None;
        }
        let power = *EXACT_POWERS_OF_TEN.get(self.fraction_digits as usize)?;
        Some(self.mantissa as f64 / power)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::{json, ParseLimits};

    const WINE: &str = r#"{"fixed_acidity":7.4,"volatile_acidity":0.7,"citric_acid":0,"residual_sugar":1.9,"chlorides":0.076,"free_sulfur_dioxide":11,"total_sulfur_dioxide":34,"density":0.9978,"pH":3.51,"sulphates":0.56,"alcohol":9.4}"#;

    /// What the general parser makes of `body`, as a single wine's row.
    fn general(body: &[u8]) -> Option<FeatureRow> {
        let parsed = json::parse_general(body, &ParseLimits::new(1000)).ok()?;
        (parsed.single && parsed.ignored_fields.is_empty()).then(|| parsed.rows[0])
    }

    /// The fast path accepts `body` with the general parser's row, bit for bit.
    fn agrees(body: &str) -> bool {
        let fast = one_wine(body.as_bytes());
        let general = general(body.as_bytes());
        if let Some(fast) = fast {
            let same = general
                .is_some_and(|g| g.iter().zip(&fast).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(same, "{body}: fast {fast:?}, general {general:?}");
        }
        fast.is_some()
    }

    #[test]
    fn the_usual_bodies_are_read_like_the_general_parser_reads_them() {
        assert!(agrees(WINE));
        let spaced = WINE
            .replace(',', " ,\n\t")
            .replace(':', "\r: ")
            .replace('{', " { ");
        assert!(agrees(&format!("{spaced} \n")));
        let reordered = format!(
            "{{{}}}",
            WINE[1..WINE.len() - 1]
                .split(',')
                .rev()
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(agrees(&reordered));
        for number in [
            "7",
            "7.0",
            "7e0",
            "70E-1",
            "0.7e+1",
            "7.000000000000001",
            "6.999999999999999999999",
        ] {
            assert!(agrees(&WINE.replace("7.4", number)), "{number}");
        }
        assert!(agrees(
            &WINE.replace("\"citric_acid\":0", "\"citric_acid\":-0")
        ));
    }

    /// What the fast path's number reader makes of `text`, which must be the whole input.
    fn read_number(text: &str) -> Option<f64> {
        let mut reader = Reader {
            body: text.as_bytes(),
            at: 0,
        };
        reader.number().filter(|_| reader.at == text.len())
    }

    proptest::proptest! {
        #[test]
        fn numbers_convert_to_the_bits_of_the_standard_conversion(
            text in "-?(0|[1-9][0-9]{0,17})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
        ) {
            let expected: f64 = text.parse().unwrap();
            let read = read_number(&text).unwrap();
            proptest::prop_assert_eq!(read.to_bits(), expected.to_bits(), "{}", text);
        }
    }

    #[test]
    fn numbers_at_the_edge_of_the_short_conversion_convert_exactly() {
        for text in [
            "0",
            "-0",
            "0.0",
            "-0.000",
            "999999999999999",
            "9999999999999999",
            "0.999999999999999",
            "0.9999999999999999",
            "123456789012345.6",
            "0.000000000000001",
            "0.1",
            "0.2",
            "0.3",
            "9007199254740993",
            "1.7976931348623157",
        ] {
            let expected: f64 = text.parse().unwrap();
            assert_eq!(
                read_number(text).map(f64::to_bits),
                Some(expected.to_bits()),
                "{text}"
            );
        }
    }

    #[test]
    fn anything_else_is_left_to_the_general_parser() {
        let others = [
            String::new(),
            "[]".to_string(),
            WINE.replace("\"pH\"", "\"ph\""),
            WINE.replace("\"pH\"", "\"p\\u0048\""),
            WINE.replace(",\"alcohol\":9.4", ""),
            WINE.replace("9.4}", "9.4,\"quality\":5}"),
            WINE.replace("9.4}", "9.4,\"alcohol\":9.4}"),
            WINE.replace("7.4", "\"7.4\""),
            WINE.replace("7.4", "07.4"),
            WINE.replace("7.4", "7."),
            WINE.replace("7.4", ".4"),
            WINE.replace("7.4", "+7.4"),
            WINE.replace("7.4", "7.4e"),
            WINE.replace("7.4", "NaN"),
            WINE.replace("7.4", "1e400"),
            WINE.replace("7.4", "-7.4"),
            WINE.replace("7.4", "null"),
            WINE.replace("7.4", "[7.4]"),
            format!("{WINE}x"),
            format!("{WINE}{WINE}"),
            WINE.replace('}', ",}"),
            WINE[..WINE.len() - 1].to_string(),
        ];
        for body in &others {
            assert!(!agrees(body), "{body}");
        }
    }

    #[test]
    fn every_mutation_it_accepts_the_general_parser_reads_the_same() {
        // Each byte of the body replaced by each of a few telling bytes, and each byte
        // removed: whatever the fast path still accepts must agree.
        let replacements = b" ,:{}\"-+.eE0129\\x";
        let bytes = WINE.as_bytes();
        let mut accepted = 0;
        for at in 0..bytes.len() {
            for &replacement in replacements.iter() {
                let mut mutated = bytes.to_vec();
                mutated[at] = replacement;
                if let Ok(text) = std::str::from_utf8(&mutated) {
                    accepted += usize::from(agrees(text));
                }
            }
            let mut removed = bytes.to_vec();
            removed.remove(at);
            accepted += usize::from(agrees(std::str::from_utf8(&removed).unwrap()));
        }
        assert!(
            accepted > 100,
            "only {accepted} mutations were still a wine"
        );
    }
}
