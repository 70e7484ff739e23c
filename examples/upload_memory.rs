//! Peak memory of an upload before fitting: the blob-trigger handler's steps on a real
//! envelope (the body, its parse with the blob decoded, the body released, the CSV parsed
//! into rows and released), with the process's peak resident memory after each step.
//!
//! Run: `cargo run --release --example upload_memory -- ENVELOPE.json`, where the file is a
//! blob-trigger invocation (`{"Data":{"csv":"<base64>"},"Metadata":{...}}`); `scripts/bench`
//! writes one around a 100 MB synthetic CSV.

use sommelier::functions::envelope::Invocation;
use sommelier::model::dataset::read_training_data;

/// Peak and current resident memory of this process, in bytes (Linux).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: upload_memory ENVELOPE.json")?;
    let (_, baseline) = memory();
    let mb = |bytes: u64| bytes.saturating_sub(baseline) as f64 / 1e6;
    let step = |name: &str| {
        let (peak, now) = memory();
        println!(
            "{name:<34} resident {:>8.1} MB   peak so far {:>8.1} MB",
            mb(now),
            mb(peak)
        );
    };

    let body = std::fs::read(&path)?;
    step("request body read");
    let invocation = Invocation::parse(&body).map_err(|e| format!("envelope: {e}"))?;
    step("envelope parsed, blob decoded");
    drop(body);
    step("body released");
    let csv = invocation
        .blob_content("csv")
        .map_err(|e| format!("blob: {e}"))?;
    let csv_bytes = csv.len() as u64;
    step("blob content handed over");
    let dataset = read_training_data(&csv[..])?;
    step("CSV parsed into rows");
    drop(csv);
    step("CSV released");
    let (peak, _) = memory();
    println!(
        "CSV {:.1} MB, {} rows: peak before fitting {:.1} MB = {:.2} x the CSV",
        csv_bytes as f64 / 1e6,
        dataset.rows.len(),
        mb(peak),
        mb(peak) * 1e6 / csv_bytes as f64
    );
    Ok(())
}
