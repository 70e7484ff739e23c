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
/// submit posts `{"prediction_id", "quality"}` as JSON; a 401 (the page's key is not the
/// labelling key) asks for the labelling key.
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
    var key = document.getElementById('feedback-key');
    var query = key && key.value ? '?code=' + encodeURIComponent(key.value) : window.location.search;
    var url = window.location.pathname.replace(/predict\/?$/, 'feedback') + query;
    fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify({ prediction_id: id, quality: quality === '' ? null : Number(quality) })
    }).then(function (response) {
      if (response.status === 401) { askForKey(out); return null; }
      if ((response.headers.get('Content-Type') || '').indexOf('application/json') < 0) {
        out.textContent = 'The tasted quality was not recorded: the service answered ' + response.status + '.';
        return null;
      }
      return response.json();
    }).then(function (data) {
      if (!data) { return; }
      if (data.accepted === 1) { out.textContent = 'Thank you: recorded.'; }
      else if (data.rejected && data.rejected.length) { out.textContent = data.rejected[0].error; }
      else { out.textContent = data.error || 'The feedback was not recorded.'; }
    }).catch(function (error) { out.textContent = 'The service could not be reached: ' + String(error); });
  });
  // Under Azure Functions the feedback function has a key of its own (labels steer
  // retraining), so the key that opened this page is refused: ask for the labelling key, kept
  // in the page only, and send it with the next try.
  function askForKey(out) {
    out.textContent = 'This page\'s key cannot send tasted qualities: enter the labelling key and send again.';
    if (document.getElementById('feedback-key')) { return; }
    var input = document.createElement('input');
    input.type = 'password';
    input.id = 'feedback-key';
    input.autocomplete = 'off';
    input.setAttribute('aria-label', 'Labelling key');
    input.placeholder = 'labelling key';
    var send = document.getElementById('send-feedback');
    send.parentNode.insertBefore(input, send);
    input.focus();
  }
"#;
