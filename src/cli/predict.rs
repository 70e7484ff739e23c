//! `sommelier predict`: predictions for a CSV or JSON lines, as CSV, JSON or text.

use std::io::{BufReader, Write};

use serde_json::json;

use crate::config::Settings;
use crate::model::dataset::{read_features_keeping, FeatureTable};
use crate::model::input::row_from_json;
use crate::registry::open_registry;

use super::{load_model, open_input, CliError, JsonLineError, Output, PredictArgs, PredictFormat};

pub(super) async fn predict(
    settings: &Settings,
    args: PredictArgs,
    output: Output,
) -> Result<(), CliError> {
    if output.json && args.format == PredictFormat::Csv {
        return Err(CliError::FormatConflict);
    }
    let registry = open_registry(settings).await?;
    let model = load_model(&registry, args.version.as_deref()).await?;
    let path = args.data.display().to_string();
    let mut input = BufReader::new(open_input(&args.data)?);
    let table = if starts_with_json_object(&mut input).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })? {
        read_json_lines(input, &path, args.id.as_deref())?
    } else {
        let id = args.id.as_deref().unwrap_or("id");
        read_features_keeping(input, Some(id), args.id.is_some()).map_err(|source| {
            CliError::Data {
                path: path.clone(),
                source,
            }
        })?
    };
    let predictions = model
        .predict(&table.rows)
        .map_err(|e| CliError::Predict(e.to_string()))?;
    let coverage = settings.interval_coverage;
    let out_of_range: Vec<Vec<&str>> = table.rows.iter().map(|r| model.out_of_range(r)).collect();
    if output.json {
        let mut value = json!({
            "predictions": predictions, "model_version": model.card.version,
            "out_of_range": out_of_range, "rows": table.rows.len(),
            "ignored_columns": table.ignored_columns,
        });
        if let Some(ids) = &table.kept {
            value["ids"] = json!(ids);
        }
        if model.conformal.is_some() {
            let intervals: Vec<_> = predictions
                .iter()
                .filter_map(|&p| model.interval(p, coverage))
                .collect();
            value["intervals"] = json!(intervals);
            value["interval_coverage"] = json!(coverage);
        }
        output.print(&value, String::new);
        return Ok(());
    }
    if !table.ignored_columns.is_empty() {
        eprintln!("ignored columns: {}", table.ignored_columns.join(", "));
    }
    let id = |i: usize| table.kept.as_ref().map(|ids| ids[i].as_str());
    let mut stdout = std::io::stdout().lock();
    match args.format {
        PredictFormat::Jsonl => {
            for (i, (prediction, outside)) in predictions.iter().zip(&out_of_range).enumerate() {
                let mut line = json!({"row": i + 1, "prediction": prediction,
                    "out_of_range": outside, "model_version": model.card.version});
                if let Some(id) = id(i) {
                    line["id"] = json!(id);
                }
                if let Some(interval) = model.interval(*prediction, coverage) {
                    line["interval"] = json!(interval);
                }
                let _ = writeln!(stdout, "{line}");
            }
        }
        PredictFormat::Csv => {
            let mut writer = csv::Writer::from_writer(stdout);
            let mut header = vec!["row"];
            if table.kept.is_some() {
                header.push("id");
            }
            header.extend(["prediction", "out_of_range", "model_version"]);
            // The interval's bounds, when the model has calibrated intervals.
            let intervals = model.conformal.is_some();
            if intervals {
                header.extend(["interval_low", "interval_high"]);
            }
            let mut write = |record: Vec<String>| writer.write_record(&record);
            let mut result = write(header.iter().map(|h| h.to_string()).collect());
            for (i, (prediction, outside)) in predictions.iter().zip(&out_of_range).enumerate() {
                let mut record = vec![(i + 1).to_string()];
                if let Some(id) = id(i) {
                    record.push(id.to_string());
                }
                record.extend([
                    prediction.to_string(),
                    outside.join(" "),
                    model.card.version.clone(),
                ]);
                if intervals {
                    let (low, high) = model
                        .interval(*prediction, coverage)
                        .map_or((String::new(), String::new()), |[low, high]| {
                            (low.to_string(), high.to_string())
                        });
                    record.extend([low, high]);
                }
                result = result.and_then(|()| write(record));
            }
            match result.and_then(|()| writer.flush().map_err(csv::Error::from)) {
                // The reader went away (`| head`): as with the JSON lines, nothing to say.
                Err(e) if matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe) =>
                    {}
                Err(e) => return Err(CliError::Predict(format!("cannot write the CSV: {e}"))),
                Ok(()) => {}
            }
        }
    }
    Ok(())
}

/// Peeks at the first non-blank byte: `{` means JSON lines.
fn starts_with_json_object(input: &mut impl std::io::BufRead) -> std::io::Result<bool> {
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(false);
        }
        let blanks = buffer
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        if blanks < buffer.len() {
            return Ok(buffer[blanks] == b'{');
        }
        input.consume(blanks);
    }
}

fn read_json_lines(
    input: impl std::io::BufRead,
    path: &str,
    id: Option<&str>,
) -> Result<FeatureTable, CliError> {
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    let id_field = id.unwrap_or("id");
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(|source| CliError::Read {
            path: path.to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let fail = |source| CliError::JsonLine {
            path: path.to_string(),
            line: index + 1,
            source,
        };
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| fail(JsonLineError::Json(e.to_string())))?;
        let parsed = row_from_json(&value).map_err(|e| fail(e.into()))?;
        match value.get(id_field) {
            Some(serde_json::Value::String(text)) => ids.push(Some(text.clone())),
            Some(serde_json::Value::Null) | None => ids.push(None),
            Some(other) => ids.push(Some(other.to_string())),
        }
        if id.is_some() && ids.last().is_some_and(Option::is_none) {
            return Err(CliError::NoIdField {
                path: path.to_string(),
                line: index + 1,
                field: id_field.to_string(),
            });
        }
        for name in parsed.unknown_fields {
            if name != id_field && !ignored.contains(&name) && ignored.len() < 64 {
                ignored.push(name);
            }
        }
        rows.push(parsed.row);
    }
    let kept = ids
        .iter()
        .any(Option::is_some)
        .then(|| ids.into_iter().map(Option::unwrap_or_default).collect());
    Ok(FeatureTable {
        rows,
        ignored_columns: ignored,
        kept,
    })
}
