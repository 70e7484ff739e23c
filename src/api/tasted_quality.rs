//! The form page's part of the loop: under a prediction, its id and a small form that sends
//! the tasted quality to `POST /api/feedback` (next to the page's own path, with its query
//! string, so a function key in it goes along).

/// The id and the form under a prediction shown without JavaScript; the form posts its
/// fields to `feedback` beside the page.
pub fn tasted_quality_form(prediction_id: &str) -> String {
    let id = escape(prediction_id);
    format!(
        "<br>Prediction id: <code id=\"prediction-id\">{id}</code>\
         <form id=\"feedback-form\" class=\"feedback\" method=\"post\" action=\"feedback\">\
         <input type=\"hidden\" name=\"prediction_id\" value=\"{id}\">\
         <label for=\"tasted-quality\">Tasted quality (0&ndash;10)</label> \
         <input id=\"tasted-quality\" name=\"quality\" type=\"number\" min=\"0\" max=\"10\" step=\"1\" required> \
         <button type=\"submit\" id=\"send-feedback\">Send</button> \
         <span id=\"feedback-result\" role=\"status\" aria-live=\"polite\"></span></form>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page's script for the form: `feedbackForm(id)` renders it after a prediction and a
/// submit posts `{"prediction_id", "quality"}` as JSON.
pub const SCRIPT: &str = r#"  function feedbackForm(id) {
    if (!id) { return ''; }
    return '<br>Prediction id: <code id="prediction-id">' + text(id) + '</code>' +
      '<form id="feedback-form" class="feedback"><label for="tasted-quality">Tasted quality (0&ndash;10)</label> ' +
      '<input id="tasted-quality" name="quality" type="number" min="0" max="10" step="1" required> ' +
      '<button type="submit" id="send-feedback">Send</button> <span id="feedback-result" role="status" aria-live="polite"></span></form>';
  }
  document.addEventListener('submit', function (event) {
    if (!event.target || event.target.id !== 'feedback-form') { return; }
    event.preventDefault();
    var id = document.getElementById('prediction-id').textContent;
    var quality = document.getElementById('tasted-quality').value;
    var out = document.getElementById('feedback-result');
    var url = window.location.pathname.replace(/predict\/?$/, 'feedback') + window.location.search;
    fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify({ prediction_id: id, quality: quality === '' ? null : Number(quality) })
    }).then(function (response) { return response.json(); }).then(function (data) {
      if (data.accepted === 1) { out.textContent = 'Thank you: recorded.'; }
      else if (data.rejected && data.rejected.length) { out.textContent = data.rejected[0].error; }
      else { out.textContent = data.error || 'The feedback was not recorded.'; }
    }).catch(function (error) { out.textContent = 'The service could not be reached: ' + String(error); });
  });"#;
