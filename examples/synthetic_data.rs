//! Writes a synthetic training CSV of any size to standard output: the bundled rows drawn at
//! random (with replacement) and every feature scaled by a random factor within ±2 %, the
//! quality kept. Deterministic: the same arguments give the same bytes.
//!
//! Run: `cargo run --release --example synthetic_data -- ROWS [SEED] > data.csv`
//! (`scripts/bench` uses it for 1×, 10×, 100× and 1,000× the bundled rows).

use sommelier::model::split::SplitMix64;
use std::io::{BufWriter, Write};

use sommelier::bundled::WINE_QUALITY_RED_CSV;
use sommelier::model::dataset::read_training_data;

/// Relative half-width of the noise on each feature.
const NOISE: f64 = 0.02;
/// Significant digits written: the bundled data has at most five.
const DIGITS: i32 = 5;

/// Uniform in [-1, 1), from the library's pinned SplitMix64 stream.
fn signed_unit(stream: &mut SplitMix64) -> f64 {
    (stream.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// `value` rounded to [`DIGITS`] significant digits.
fn round_significant(value: f64) -> f64 {
    if value == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(DIGITS - 1 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: synthetic_data ROWS [SEED]";
    let rows: usize = args.next().ok_or(usage)?.parse()?;
    let seed: u64 = args.next().map_or(Ok(1), |s| s.parse())?;
    let bundled = read_training_data(WINE_QUALITY_RED_CSV)?;

    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let header = std::str::from_utf8(WINE_QUALITY_RED_CSV)?
        .lines()
        .next()
        .ok_or("the bundled data has no header")?;
    writeln!(out, "{header}")?;
    let mut stream = SplitMix64::new(seed);
    for _ in 0..rows {
        let pick = (stream.next_u64() % bundled.rows.len() as u64) as usize;
        for value in bundled.rows[pick] {
            let noisy = round_significant(value * (1.0 + NOISE * signed_unit(&mut stream)));
            write!(out, "{noisy},")?;
        }
        writeln!(out, "{}", bundled.targets[pick])?;
    }
    out.flush()?;
    Ok(())
}
