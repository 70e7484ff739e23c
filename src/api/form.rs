//! `GET /api/predict`: a self-contained HTML page with a form for the 11 measurements.
//! No external assets; works without JavaScript (the form posts and the answer is a page),
//! and with it the server's page replaces the form in place.
//!
//! A posted form's answer shows why and how sure (see `form_result`): the prediction as the
//! model's average plus the measurements' contributions, a bar chart of the largest, a table
//! of the exact numbers, and the prediction interval on the 0–10 scale. The submitted values
//! are echoed, a value at fault is marked, and values outside the training range show it.

use axum::response::Html;

use super::error::ApiError;
use super::schema::PredictionResponse;
use crate::model::features::FEATURE_NAMES;

/// Labels, units and an example value (the first wine of the bundled data) per feature.
const FIELDS: [(&str, &str, &str); 11] = [
    ("Fixed acidity", "g(tartaric acid)/dm³", "7.4"),
    ("Volatile acidity", "g(acetic acid)/dm³", "0.7"),
    ("Citric acid", "g/dm³", "0"),
    ("Residual sugar", "g/dm³", "1.9"),
    ("Chlorides", "g(sodium chloride)/dm³", "0.076"),
    ("Free sulfur dioxide", "mg/dm³", "11"),
    ("Total sulfur dioxide", "mg/dm³", "34"),
    ("Density", "g/cm³", "0.9978"),
    ("pH", "", "3.51"),
    ("Sulphates", "g(potassium sulphate)/dm³", "0.56"),
    ("Alcohol", "% vol", "9.4"),
];

/// What to show under the form.
pub enum Outcome<'a> {
    Prediction(&'a PredictionResponse),
    Error(&'a ApiError),
}

/// Serves the empty form.
#[utoipa::path(get, path = "/api/predict", responses((status = 200, description = "HTML form", content_type = "text/html")))]
pub async fn form_page() -> Html<String> {
    Html(page(None))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the page, with a result or an error when the form was posted without JavaScript.
pub fn page(outcome: Option<Outcome<'_>>) -> String {
    let (result_class, result_text) = match outcome {
        None => ("", String::new()),
        Some(Outcome::Prediction(answer)) => ("ok", describe_prediction(answer)),
        Some(Outcome::Error(error)) => ("error", plain_message(&error.to_string())),
    };
    render(&Fields::default(), result_class, &result_text)
}

/// What the form's fields show: the submitted text of each (else the example), the field at
/// fault, and notes under fields (a value outside the training range).
#[derive(Default)]
pub struct Fields {
    pub values: [Option<String>; 11],
    pub invalid: Option<usize>,
    pub notes: [Option<String>; 11],
}

/// The page with `fields` and a result block of class `result_class` holding `result_html`.
pub fn render(fields: &Fields, result_class: &str, result_html: &str) -> String {
    let mut inputs = String::new();
    for (index, (name, (label, unit, example))) in FEATURE_NAMES.iter().zip(FIELDS).enumerate() {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" <span class=\"unit\">({})</span>", escape(unit))
        };
        let value = fields.values[index]
            .as_deref()
            .map_or_else(|| example.to_string(), escape);
        let (class, invalid) = if fields.invalid == Some(index) {
            (
                " invalid",
                " aria-invalid=\"true\" aria-describedby=\"result\"",
            )
        } else {
            ("", "")
        };
        let note = fields.notes[index]
            .as_deref()
            .map(|note| {
                format!(
                    "<span class=\"note\" id=\"{name}-note\">{}</span>",
                    escape(note)
                )
            })
            .unwrap_or_default();
        inputs.push_str(&format!(
            "<div class=\"field{class}\"><label for=\"{name}\">{label}{unit}</label>\
             <input id=\"{name}\" name=\"{name}\" type=\"number\" step=\"any\" inputmode=\"decimal\" required value=\"{value}\"{invalid}>{note}</div>\n"
        ));
    }
    PAGE.replace("{{inputs}}", &inputs)
        .replace("{{feedback_script}}", super::tasted_quality::SCRIPT)
        .replace("{{result_class}}", result_class)
        .replace("{{result}}", result_html)
}

/// A message for people: code-quoted names become the field's label (or plain quotes),
/// escaped for HTML.
pub fn plain_message(message: &str) -> String {
    let mut out = String::new();
    for (index, part) in message.split('`').enumerate() {
        if index % 2 == 0 {
            out.push_str(&escape(part));
        } else {
            let shown = FEATURE_NAMES
                .iter()
                .position(|name| *name == part)
                .map_or(part, |index| FIELDS[index].0);
            out.push_str(&format!("\u{201c}{}\u{201d}", escape(shown)));
        }
    }
    out
}

/// A feature's label, as the form shows it.
pub fn label(index: usize) -> &'static str {
    FIELDS.get(index).map_or("", |field| field.0)
}

pub fn describe_prediction(answer: &PredictionResponse) -> String {
    let mut text = format!(
        "Predicted quality: <strong id=\"prediction-value\">{:.2}</strong> (model {})",
        answer.prediction,
        escape(&answer.model_version)
    );
    if !answer.out_of_range.is_empty() {
        text.push_str(&format!(
            "<br>Outside the training range: {}",
            escape(&answer.out_of_range.join(", "))
        ));
    }
    text.push_str(&super::tasted_quality::tasted_quality_form(
        &answer.prediction_id,
    ));
    text
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sommelier: predict wine quality</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { color: #7b1e3a; }
  form { display: grid; grid-template-columns: repeat(auto-fill, minmax(13rem, 1fr)); gap: 0.8rem 1.2rem; }
  .field { display: flex; flex-direction: column; }
  label { font-weight: 600; margin-bottom: 0.2rem; }
  .unit { font-weight: 400; color: #555; font-size: 0.9em; }
  input { font-size: 1rem; padding: 0.35rem; border: 1px solid #888; border-radius: 4px; }
  input:focus { outline: 3px solid #d4a5b5; }
  button { grid-column: 1 / -1; font-size: 1.05rem; padding: 0.6rem; background: #7b1e3a; color: #fff; border: 0; border-radius: 4px; cursor: pointer; }
  #result { margin-top: 1.2rem; padding: 0.8rem; border-radius: 4px; min-height: 1.5rem; }
  #result.ok { background: #eef7ee; border: 1px solid #5a9a5a; }
  #result.error { background: #fbeaea; border: 1px solid #b33; }
  .field.invalid input { border: 2px solid #b33; background: #fff4f4; }
  .note { color: #8a4b00; font-size: 0.85em; margin-top: 0.2rem; }
  .equation { font-size: 1.1rem; margin: 0 0 0.6rem; }
  .chart text { font: 12px system-ui, sans-serif; fill: #222; }
  .sure { margin: 0.8rem 0; }
  details table { border-collapse: collapse; margin-top: 0.4rem; font-variant-numeric: tabular-nums; }
  details td, details th { padding: 0.15rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; }
  details td:first-child, details th:first-child { text-align: left; }
</style>
</head>
<body>
<main>
<h1>Predict red-wine quality</h1>
<p>Enter the wine's physicochemical measurements. The model predicts the quality score experts would give (0&ndash;10).</p>
<form id="predict-form" method="post" action="" novalidate>
{{inputs}}<button type="submit" id="submit">Predict quality</button>
</form>
<div id="result" class="{{result_class}}" role="status" aria-live="polite">{{result}}</div>
</main>
<script>
(function () {
  // With JavaScript the server's own answer page replaces the form in place (one renderer
  // for both ways); an empty field is pointed out before anything is sent.
  function text(s) { var d = document.createElement('div'); d.textContent = s; return d.innerHTML; }
{{feedback_script}}
  function show(kind, html) { var r = document.getElementById('result'); r.className = kind; r.innerHTML = html; }
  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (form.id !== 'predict-form') return;
    event.preventDefault();
    var inputs = form.querySelectorAll('input');
    for (var i = 0; i < inputs.length; i++) {
      var input = inputs[i];
      if (input.value.trim() === '') {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        show('error', 'Please enter a value for ' + text(input.labels[0].firstChild.textContent) + '.');
        return;
      }
      input.removeAttribute('aria-invalid');
    }
    show('', 'Predicting&hellip;');
    fetch(window.location.pathname + window.location.search, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Accept': 'text/html' },
      body: new URLSearchParams(new FormData(form)).toString()
    }).then(function (response) { return response.text(); }).then(function (html) {
      var next = new DOMParser().parseFromString(html, 'text/html').querySelector('main');
      if (!next) { show('error', 'The service gave an unexpected answer.'); return; }
      document.querySelector('main').replaceWith(next);
    }).catch(function (error) { show('error', 'The service could not be reached: ' + text(String(error))); });
  });
})();
</script>
</body>
</html>
"#;
