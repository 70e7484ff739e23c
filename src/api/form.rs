//! `GET /api/predict`: a self-contained HTML page with a form for the 11 measurements.
//! No external assets; works without JavaScript (the form posts and the answer is a page),
//! and with it the result or error appears in place.

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
    let mut inputs = String::new();
    for (name, (label, unit, example)) in FEATURE_NAMES.iter().zip(FIELDS) {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" <span class=\"unit\">({})</span>", escape(unit))
        };
        inputs.push_str(&format!(
            "<div class=\"field\"><label for=\"{name}\">{label}{unit}</label>\
             <input id=\"{name}\" name=\"{name}\" type=\"number\" step=\"any\" inputmode=\"decimal\" required value=\"{example}\"></div>\n"
        ));
    }
    let (result_class, result_text) = match outcome {
        None => ("", String::new()),
        Some(Outcome::Prediction(answer)) => ("ok", describe_prediction(answer)),
        Some(Outcome::Error(error)) => ("error", escape(&error.to_string())),
    };
    PAGE.replace("{{inputs}}", &inputs)
        .replace("{{feedback_script}}", crate::feedback::form::SCRIPT)
        .replace("{{result_class}}", result_class)
        .replace("{{result}}", &result_text)
}

fn describe_prediction(answer: &PredictionResponse) -> String {
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
    text.push_str(&crate::feedback::form::tasted_quality_form(
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
  var form = document.getElementById('predict-form');
  var result = document.getElementById('result');
  function show(kind, html) { result.className = kind; result.innerHTML = html; }
  function text(s) { var d = document.createElement('div'); d.textContent = s; return d.innerHTML; }
{{feedback_script}}
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var body = {};
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
      body[input.name] = Number(input.value);
    }
    show('', 'Predicting&hellip;');
    fetch(window.location.pathname + window.location.search, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (answer) {
      if (!answer.ok) { show('error', text(answer.data.error || 'The request failed.')); return; }
      var html = 'Predicted quality: <strong id="prediction-value">' + answer.data.prediction.toFixed(2) +
        '</strong> (model ' + text(answer.data.model_version) + ')';
      if (answer.data.out_of_range && answer.data.out_of_range.length) {
        html += '<br>Outside the training range: ' + text(answer.data.out_of_range.join(', '));
      }
      show('ok', html + feedbackForm(answer.data.prediction_id));
    }).catch(function (error) { show('error', 'The service could not be reached: ' + text(String(error))); });
  });
})();
</script>
</body>
</html>
"#;
