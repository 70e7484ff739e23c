//! The answer page of a posted form: why and how sure, rendered on the server.
//!
//! "Predicted 5.07 = average 5.64 − 0.57", an SVG bar chart of the largest contributions
//! (`feature = value`, bars left and right of zero, the rest grouped so that the bars still
//! add up to the difference), a `<details>` table of the exact numbers, and the prediction
//! interval drawn on the 0–10 scale with the model's holdout RMSE. The submitted values are
//! echoed into the form, the field at fault is marked, and each value outside the training
//! range says what the range was.
//!
//! Not here: the page's frame and fields (`form`), the computation (`model::explain`).

use std::fmt::Write;

use axum::body::Bytes;

use super::error::ApiError;
use super::form::{self, Fields};
use super::schema::PredictionResponse;
use crate::model::artifact::ModelCard;
use crate::model::explain::Explanation;
use crate::model::features::{feature_index, normalize_name, FeatureRow, FEATURE_COUNT};
use crate::service::state::SharedState;

/// Bars drawn one by one; the others are grouped into one.
const BARS: usize = 6;

/// The page answering a posted form: `shown` is the prediction (`Ok(None)` for a batch, which
/// the form never sends) or the error; `raw` the submitted body.
pub async fn result_page(
    state: &SharedState,
    shown: Result<Option<&PredictionResponse>, &ApiError>,
    raw: &Bytes,
) -> String {
    let submitted = submitted_values(raw);
    let mut fields = Fields {
        values: submitted.clone(),
        ..Fields::default()
    };
    let answer = match shown {
        Ok(Some(answer)) => answer,
        Ok(None) => return form::render(&fields, "", ""),
        Err(error) => {
            fields.invalid = error
                .field()
                .as_deref()
                .and_then(|f| feature_index(&normalize_name(f)));
            return form::render(&fields, "error", &form::plain_message(&error.to_string()));
        }
    };
    let model = state.model();
    let card = model.as_ref().map(|m| &m.artifact.card);
    let row = parsed_row(&submitted);
    if let (Some(card), Some(row)) = (card, row) {
        for (index, stats) in card.feature_stats.iter().enumerate() {
            if !stats.contains(row[index]) {
                fields.notes[index] = Some(format!(
                    "Outside the training range {} to {}",
                    stats.min, stats.max
                ));
            }
        }
    }
    // The explanation, when the model that predicted can give one.
    let explanation = match (&model, row) {
        (Some(model), Some(row)) if model.artifact.card.version == answer.model_version => {
            super::explain::explain_in_lane(model, vec![row])
                .await
                .ok()
                .and_then(|(_, mut explanations)| explanations.pop())
        }
        _ => None,
    };
    let html = result_html(
        answer,
        explanation.as_ref(),
        card,
        row.as_ref(),
        state.settings.interval_coverage,
    );
    form::render(&fields, "ok", &html)
}

/// The submitted text of each feature field (names matched as the parsers match them).
fn submitted_values(raw: &Bytes) -> [Option<String>; FEATURE_COUNT] {
    let mut values: [Option<String>; FEATURE_COUNT] = Default::default();
    for (key, value) in url::form_urlencoded::parse(raw) {
        if let Some(index) = feature_index(&normalize_name(&key)) {
            values[index].get_or_insert_with(|| value.chars().take(64).collect());
        }
    }
    values
}

/// The row the submitted values make, when every one is a number.
fn parsed_row(values: &[Option<String>; FEATURE_COUNT]) -> Option<FeatureRow> {
    let mut row = [0.0; FEATURE_COUNT];
    for (slot, value) in row.iter_mut().zip(values) {
        *slot = value.as_deref()?.trim().parse().ok()?;
    }
    Some(row)
}

fn result_html(
    answer: &PredictionResponse,
    explanation: Option<&Explanation>,
    card: Option<&ModelCard>,
    row: Option<&FeatureRow>,
    coverage: f64,
) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<p class=\"equation\">Predicted quality: <strong id=\"prediction-value\">{:.2}</strong>",
        answer.prediction
    );
    if let Some(explanation) = explanation {
        let difference = answer.prediction - explanation.base_value;
        let sign = if difference < 0.0 { '\u{2212}' } else { '+' };
        let _ = write!(
            html,
            " = average {:.2} {sign} {:.2}",
            explanation.base_value,
            difference.abs()
        );
    }
    let _ = write!(
        html,
        " <span class=\"unit\">(model {})</span></p>",
        escape(&answer.model_version)
    );
    if let (Some(explanation), Some(row)) = (explanation, row) {
        html.push_str(&chart(explanation, row));
    }
    if let Some(interval) = answer.interval {
        html.push_str(&interval_html(answer.prediction, interval, coverage, card));
    }
    if !answer.out_of_range.is_empty() {
        let names: Vec<String> = answer
            .out_of_range
            .iter()
            .map(|name| form::plain_message(&format!("`{name}`")))
            .collect();
        let _ = write!(
            html,
            "<p>Outside the training range (the prediction is less reliable): {}</p>",
            names.join(", ")
        );
    }
    if let (Some(explanation), Some(row), Some(card)) = (explanation, row, card) {
        html.push_str(&table(explanation, row, card, answer.prediction));
    }
    html.push_str(&super::tasted_quality::tasted_quality_form(
        &answer.prediction_id,
    ));
    html
}

/// The bars: the largest contributions by size, then the rest in one.
fn bars(explanation: &Explanation, row: &FeatureRow) -> Vec<(String, f64)> {
    let mut order: Vec<usize> = (0..FEATURE_COUNT).collect();
    order.sort_by(|&a, &b| {
        explanation.contributions[b]
            .abs()
            .total_cmp(&explanation.contributions[a].abs())
    });
    let mut bars: Vec<(String, f64)> = order
        .iter()
        .take(BARS)
        .map(|&f| {
            (
                format!("{} = {}", form::label(f), row[f]),
                explanation.contributions[f],
            )
        })
        .collect();
    let rest = &order[BARS.min(order.len())..];
    if !rest.is_empty() {
        let sum = rest.iter().map(|&f| explanation.contributions[f]).sum();
        bars.push((format!("{} other measurements", rest.len()), sum));
    }
    bars
}

/// A horizontal bar chart around zero: negative contributions to the left (red), positive
/// to the right (green), each labelled with its exact-enough value.
fn chart(explanation: &Explanation, row: &FeatureRow) -> String {
    let bars = bars(explanation, row);
    let (width, label_width, row_height) = (640.0, 230.0, 24.0);
    // Room for a value's text (about 50 px) at either end of the longest bars.
    let half = (width - label_width - 110.0) / 2.0;
    let zero = label_width + 55.0 + half;
    let largest = bars.iter().fold(1e-12_f64, |m, (_, v)| m.max(v.abs()));
    let height = row_height * bars.len() as f64 + 8.0;
    let mut svg = format!(
        "<svg class=\"chart\" id=\"contributions\" role=\"img\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" aria-label=\"Contributions of the measurements to the prediction\">\
         <line x1=\"{zero}\" y1=\"0\" x2=\"{zero}\" y2=\"{height}\" stroke=\"#555\"/>"
    );
    for (index, (label, value)) in bars.iter().enumerate() {
        let y = 4.0 + row_height * index as f64;
        let length = value.abs() / largest * half;
        let (x, color, anchor, text_x) = if *value < 0.0 {
            (zero - length, "#b33", "end", zero - length - 4.0)
        } else {
            (zero, "#2e7d32", "start", zero + length + 4.0)
        };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{x:.1}\" y=\"{y}\" width=\"{length:.1}\" height=\"{}\" fill=\"{color}\"><title>{}: {value:+.4}</title></rect>\
             <text x=\"{text_x:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}{:.2}</text>",
            y + 14.0,
            escape(label),
            row_height - 6.0,
            escape(label),
            y + 14.0,
            if *value < 0.0 { '\u{2212}' } else { '+' },
            value.abs()
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The interval as a band on the 0–10 scale, the prediction marked, with the holdout RMSE.
fn interval_html(
    prediction: f64,
    [low, high]: [f64; 2],
    coverage: f64,
    card: Option<&ModelCard>,
) -> String {
    let (width, left) = (600.0, 20.0);
    let x = |q: f64| left + q.clamp(0.0, 10.0) / 10.0 * (width - 2.0 * left);
    let mut svg = format!(
        "<svg class=\"chart\" id=\"interval\" role=\"img\" width=\"{width}\" height=\"46\" viewBox=\"0 0 {width} 46\" aria-label=\"Prediction interval on the 0 to 10 scale\">\
         <line x1=\"{}\" y1=\"16\" x2=\"{}\" y2=\"16\" stroke=\"#888\"/>",
        x(0.0),
        x(10.0)
    );
    for tick in 0..=10 {
        let tx = x(f64::from(tick));
        let _ = write!(
            svg,
            "<line x1=\"{tx:.1}\" y1=\"12\" x2=\"{tx:.1}\" y2=\"20\" stroke=\"#888\"/><text x=\"{tx:.1}\" y=\"38\" text-anchor=\"middle\">{tick}</text>"
        );
    }
    let _ = write!(
        svg,
        "<rect x=\"{:.1}\" y=\"9\" width=\"{:.1}\" height=\"14\" fill=\"#d4a5b5\" opacity=\"0.8\"/><circle cx=\"{:.1}\" cy=\"16\" r=\"5\" fill=\"#7b1e3a\"/></svg>",
        x(low),
        (x(high) - x(low)).max(1.0),
        x(prediction)
    );
    let rmse = card
        .and_then(|c| c.metrics)
        .map(|m| format!("; typical error (holdout RMSE) {:.2}", m.rmse))
        .unwrap_or_default();
    format!(
        "<div class=\"sure\"><p id=\"interval-text\">{:.0} % prediction interval: {low:.2} to {high:.2} on the 0&ndash;10 scale{rmse}</p>{svg}</div>",
        coverage * 100.0
    )
}

/// The exact numbers.
fn table(explanation: &Explanation, row: &FeatureRow, card: &ModelCard, prediction: f64) -> String {
    let mut html = String::from(
        "<details id=\"exact\"><summary>Exact numbers</summary><table><thead><tr><th>Measurement</th><th>Value</th><th>Training range</th><th>Contribution</th></tr></thead><tbody>",
    );
    let _ = write!(
        html,
        "<tr><td>Average prediction (base value)</td><td></td><td></td><td>{:.6}</td></tr>",
        explanation.base_value
    );
    for (index, (_, contribution)) in explanation.named().enumerate() {
        let range = card
            .feature_stats
            .get(index)
            .map(|s| format!("{} to {}", s.min, s.max))
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{range}</td><td>{contribution:+.6}</td></tr>",
            escape(form::label(index)),
            row[index]
        );
    }
    let _ = write!(
        html,
        "<tr><th>Prediction</th><td></td><td></td><th>{prediction:.6}</th></tr></tbody></table><p>Method: {} (exact Shapley values; the contributions add up to the prediction).</p></details>",
        explanation.method
    );
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bars_add_up_to_the_difference_and_name_the_values() {
        let explanation = Explanation {
            method: "tree_path_dependent",
            base_value: 5.6,
            contributions: [
                0.01, -0.2, 0.02, 0.0, -0.03, 0.04, -0.05, 0.06, 0.005, -0.1, 0.3,
            ],
        };
        let row = [
            7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
        ];
        let bars = bars(&explanation, &row);
        assert_eq!(bars.len(), BARS + 1);
        assert_eq!(bars[0], ("Alcohol = 9.4".to_string(), 0.3));
        let sum: f64 = bars.iter().map(|b| b.1).sum();
        let all: f64 = explanation.contributions.iter().sum();
        assert!((sum - all).abs() < 1e-12);
        assert!(bars[BARS].0.starts_with("5 other"));
        let svg = chart(&explanation, &row);
        assert!(svg.starts_with("<svg") && svg.contains("Volatile acidity = 0.7"));
    }

    #[test]
    fn messages_name_fields_by_label_without_backticks() {
        let text = form::plain_message("field `alcohol` is not a number; see `x<y>`");
        assert_eq!(
            text,
            "field \u{201c}Alcohol\u{201d} is not a number; see \u{201c}x&lt;y&gt;\u{201d}"
        );
    }
}
