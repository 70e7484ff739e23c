//! The API page: `GET /api/openapi.json` asked for by a browser (`Accept: text/html`) answers
//! this self-contained page, which fetches the same document as JSON and renders it: every
//! route with its parameters, request bodies and answers, then the schemas. No external
//! assets, so it works offline and under the Functions host's route of the document.
//!
//! Not here: the document itself (`openapi.rs`).

use axum::http::header::ACCEPT;
use axum::http::HeaderMap;

/// Whether a request asks for a page rather than data: a browser's navigation lists
/// `text/html` in `Accept`; API clients and the Functions host do not. Media types match in
/// any case, and `text/html;q=0` (not acceptable) is not a request for a page.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(accepts_html)
}

/// Whether one media range of `Accept` is `text/html` with a weight above 0.
fn accepts_html(range: &str) -> bool {
    let mut parts = range.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("text/html") {
        return false;
    }
    let weight = parts.find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("q")
            .then(|| value.trim().parse::<f64>().ok())
            .flatten()
    });
    weight.is_none_or(|q| q > 0.0)
}

/// The page (static: the document is fetched by the page's script).
pub const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sommelier API</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #faf7f5; }
  header { background: #5b1a2e; color: #fff; padding: 1rem 2rem; }
  header h1 { margin: 0; font-size: 1.5rem; }
  header p { margin: .3rem 0 0; opacity: .9; }
  header a { color: #fff; }
  main { max-width: 60rem; margin: 0 auto; padding: 1rem 2rem 3rem; }
  .op { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: .8rem 0; padding: .6rem 1rem; }
  .op h3 { margin: .2rem 0; font-size: 1.05rem; font-family: ui-monospace, monospace; }
  .method { display: inline-block; min-width: 4.2rem; text-align: center; border-radius: 4px; color: #fff; padding: .1rem .4rem; margin-right: .5rem; font-size: .85rem; }
  .get { background: #2b6cb0; } .post { background: #2f855a; } .put { background: #b7791f; } .delete { background: #c53030; }
  table { border-collapse: collapse; margin: .3rem 0; }
  td, th { border-bottom: 1px solid #eee; padding: .2rem .6rem; text-align: left; vertical-align: top; font-size: .92rem; }
  code, pre { font-family: ui-monospace, monospace; font-size: .85rem; }
  pre { background: #f4f1ee; padding: .6rem; overflow-x: auto; border-radius: 4px; }
  .status { font-weight: bold; }
  #problem { color: #9b2c2c; }
</style>
</head>
<body>
<header>
  <h1 id="title">sommelier API</h1>
  <p id="description"></p>
  <p><a href="predict">The prediction form</a> · <a id="raw" href="openapi.json">the OpenAPI document (JSON)</a></p>
</header>
<main>
  <p id="problem" role="alert"></p>
  <section id="operations" aria-label="Operations"></section>
  <h2>Schemas</h2>
  <section id="schemas" aria-label="Schemas"></section>
</main>
<script>
'use strict';
function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children || []) node.append(child);
  return node;
}
function json(value) { return el('pre', {}, [JSON.stringify(value, null, 2)]); }
function details(summary, body) { return el('details', {}, [el('summary', {}, [summary]), body]); }
function operation(path, method, op) {
  const box = el('article', { class: 'op', id: method + ' ' + path });
  box.append(el('h3', {}, [el('span', { class: 'method ' + method }, [method.toUpperCase()]), path]));
  if (op.description || op.summary) box.append(el('p', {}, [op.description || op.summary]));
  if (op.parameters && op.parameters.length) {
    const rows = op.parameters.map((p) => el('tr', {}, [
      el('td', {}, [el('code', {}, [p.name])]), el('td', {}, [p.in || '']),
      el('td', {}, [p.required ? 'required' : 'optional']), el('td', {}, [p.description || '']),
    ]));
    box.append(el('h4', {}, ['Parameters']), el('table', {}, rows));
  }
  if (op.requestBody) {
    box.append(el('h4', {}, ['Request body']));
    if (op.requestBody.description) box.append(el('p', {}, [op.requestBody.description]));
    for (const [type, content] of Object.entries(op.requestBody.content || {})) {
      box.append(details(type, json(content.schema || {})));
    }
  }
  const answers = Object.entries(op.responses || {}).map(([status, r]) => el('tr', {}, [
    el('td', { class: 'status' }, [status]), el('td', {}, [r.description || '']),
    el('td', {}, [Object.keys(r.content || {}).join(', ')]),
  ]));
  if (answers.length) box.append(el('h4', {}, ['Answers']), el('table', {}, answers));
  return box;
}
async function main() {
  const response = await fetch(location.pathname + location.search, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error('the document answered ' + response.status);
  const doc = await response.json();
  document.getElementById('title').textContent = (doc.info && doc.info.title || 'API') + ' ' + (doc.info && doc.info.version || '');
  document.getElementById('description').textContent = doc.info && doc.info.description || '';
  document.title = document.getElementById('title').textContent;
  const operations = document.getElementById('operations');
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of ['get', 'post', 'put', 'delete', 'patch']) {
      if (item[method]) operations.append(operation(path, method, item[method]));
    }
  }
  const schemas = document.getElementById('schemas');
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    schemas.append(details(name, json(schema)));
  }
}
main().catch((e) => { document.getElementById('problem').textContent = 'Cannot show the API: ' + e.message; });
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn asking(accept: &'static str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        wants_html(&headers)
    }

    #[test]
    fn a_page_is_wanted_when_html_is_acceptable_in_any_case() {
        assert!(asking("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(asking("TEXT/HTML"));
        assert!(asking("application/json, Text/Html; q=0.5"));
        assert!(!asking("text/html;q=0"));
        assert!(!asking("text/html; Q=0.0, application/json"));
        assert!(!asking("application/json"));
        assert!(!asking("text/htmlx"));
        assert!(!asking("*/*"));
    }
}
