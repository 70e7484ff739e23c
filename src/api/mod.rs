//! The HTTP API under `/api` (what the Functions host proxies to), the readiness probe, and
//! the envelope routes of the non-HTTP functions. Handlers are thin: parsing at the edge,
//! work in `model`/`retraining`, errors answered in `error`.

pub mod admission;
pub mod body;
pub mod docs;
pub mod drain;
pub mod error;
pub mod explain;
pub mod feedback;
pub mod form;
pub mod form_result;
pub mod health;
pub mod invocations;
pub mod local_only;
pub mod models;
pub mod openapi;
pub mod predict;
pub mod rejected;
pub mod schema;
pub mod tasted_quality;
pub mod train;

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, Method, Request as HttpRequest, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::routing::{get, post, MethodRouter};
use axum::{BoxError, Json, Router};
use futures::future::{BoxFuture, Either};
use tower_service::Service;
use tracing::Instrument;

use crate::functions;
use drain::{DrainOnDrop, Drainable};

use crate::service::state::SharedState;
use crate::telemetry::metrics::{InFlight, METRICS};

pub use crate::service::body_budget::PREDICT_BODY_LIMIT;
/// Body limit of the blob-trigger route: the blob arrives base64-inlined in JSON, so a
/// 50 MB CSV is about 67 MB on the wire. The memory budget caps it further (an upload is
/// never larger than the whole budget, 128 MiB by default).
pub const UPLOAD_BODY_LIMIT: usize = 256 * 1024 * 1024;
/// Body limit of the timer route: the host sends a few hundred bytes of schedule status.
pub const SCHEDULE_BODY_LIMIT: usize = 64 * 1024;

/// What the server runs: the router, with `POST /api/predict`, the route that carries the
/// load, answered before it. Through the router a request passes one boxed and cloned service
/// per level (router, request metrics, method router, handler); the prediction gets the same
/// request metrics and the same handler without them. Every other method and path, including
/// `GET /api/predict` (the form), goes to the router. A body answered before its end is read
/// on and thrown away (see [`drain`]).
#[derive(Clone)]
pub struct HttpService {
    router: Router,
    state: SharedState,
}

impl HttpService {
    /// The API over the instance `state`.
    pub fn new(state: SharedState) -> HttpService {
        HttpService {
            router: routes(state.clone()),
            state,
        }
    }
}

impl<B> Service<HttpRequest<B>> for HttpService
where
    B: HttpBody<Data = Bytes> + Drainable,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequest<B>) -> Self::Future {
        let request = request.map(|body| Body::new(DrainOnDrop::new(body)));
        if let Some(problem) = local_only::target_problem(&request) {
            return Either::Left(Box::pin(async move {
                Ok(observed(request, |_| async move { problem.into_response() }).await)
            }));
        }
        if request.method() == Method::POST && request.uri().path() == "/api/predict" {
            let state = self.state.clone();
            return Either::Left(Box::pin(async move {
                Ok(observed(request, |request| predict::predict(State(state), request)).await)
            }));
        }
        Either::Right(self.router.call(request))
    }
}

/// Every route, behind its guards and limits.
pub fn routes(state: SharedState) -> Router {
    // Prediction bodies are admitted against the memory budget and read within the deadline
    // (`/api/predict` does it in its handler, one layer less on the hottest route).
    let admitted = |route: MethodRouter<SharedState>| {
        route.route_layer(middleware::from_fn_with_state(
            state.budget.clone(),
            admission::admit,
        ))
    };
    let local_only = |route: MethodRouter<SharedState>| {
        route.route_layer(middleware::from_fn_with_state(
            state.clone(),
            local_only::same_machine,
        ))
    };
    // The envelope routes change state like `/api/train`: the same guard, a JSON body only
    // (what the host sends), admitted against the same budget and read within the same
    // deadline as a prediction, each within its own largest body.
    let envelope = |route: MethodRouter<SharedState>, limit: usize| {
        local_only(
            route
                .route_layer(middleware::from_fn_with_state(
                    state.budget.with_limit(limit),
                    admission::admit_body,
                ))
                .route_layer(middleware::from_fn(json_only)),
        )
    };
    // Labels steer retraining: a state-changing route, admitted like a prediction within its
    // own largest body.
    let feedback_route = local_only(
        post(feedback::feedback).route_layer(middleware::from_fn_with_state(
            state
                .budget
                .with_limit(crate::feedback::labels::FEEDBACK_BODY_LIMIT),
            admission::admit,
        )),
    );
    // `/api/predict` reads its body itself, within its own limit: no extractor limit to set.
    let predict = Router::new().route("/api/predict", get(form::form_page).post(predict::predict));
    // `/api/explain` reads its body itself, through the same admission as `/api/predict`.
    let predict = predict.route("/api/explain", post(explain::explain));
    let api = Router::new()
        .route("/api/invocations", admitted(post(invocations::invocations)))
        .route(
            "/api/train",
            get(train::status).merge(local_only(post(train::train).route_layer(
                middleware::from_fn_with_state(
                    state.budget.with_limit(train::TRAIN_BODY_LIMIT),
                    admission::admit_body,
                ),
            ))),
        )
        .route("/api/models", get(models::list))
        .route(
            "/api/models/{version}/promote",
            local_only(post(models::promote)),
        )
        .route("/api/feedback", feedback_route)
        .route("/api/health", get(health::health))
        .route("/api/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route(
            "/join-feedback",
            envelope(
                post(functions::feedback::join_feedback),
                SCHEDULE_BODY_LIMIT,
            ),
        )
        .route(
            "/retrain-on-schedule",
            envelope(post(functions::retrain_on_schedule), SCHEDULE_BODY_LIMIT),
        )
        .layer(DefaultBodyLimit::max(PREDICT_BODY_LIMIT));
    let upload = Router::new()
        .route(
            "/retrain-on-upload",
            envelope(post(functions::retrain_on_upload), UPLOAD_BODY_LIMIT),
        )
        .layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT));
    // Each layer added to a router wraps every route in one more boxed service that each
    // request clones: the prediction route has no layer but `observe`, like `GET /`. (The
    // server answers `POST /api/predict` before the router, see [`App`]; the route stays here
    // for the methods it allows and for requests given to the router alone.)
    Router::new()
        .route("/", get(health::ready))
        .merge(predict)
        .merge(api)
        .merge(upload)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// The media type of a request, lower case, without parameters.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Refuses an envelope that is not JSON (a cross-site form or `text/plain` "simple" request
/// cannot send `application/json` without the browser asking first).
async fn json_only(request: Request, next: Next) -> Response {
    let found = media_type(request.headers());
    if found != "application/json" {
        return error::ApiError::UnsupportedMediaType {
            found,
            expected: "application/json (the Functions host's invocation envelope)",
        }
        .into_response();
    }
    next.run(request).await
}

async fn not_found(request: Request) -> Response {
    error::ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    let body = error::ErrorBody {
        error: format!(
            "method {} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
        field: None,
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// Prometheus text of this instance's metrics.
#[utoipa::path(get, path = "/api/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<SharedState>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics_text(),
    )
        .into_response()
}

/// The header naming the Functions invocation a proxied request belongs to; the other name
/// some host versions use. Named once: a header name given as text is parsed at every look-up.
const INVOCATION_ID: HeaderName = HeaderName::from_static("x-azure-functions-invocationid");
const INVOCATION_ID_ALTERNATIVE: HeaderName = HeaderName::from_static("x-ms-invocation-id");

/// The function a path belongs to: the bounded `function` label.
fn function_of(path: &str) -> &'static str {
    match path {
        "/api/predict" => "predict",
        "/api/invocations" => "invocations",
        "/api/explain" => "explain",
        "/api/train" => "train",
        "/api/feedback" => "feedback",
        "/join-feedback" => "join-feedback",
        "/api/health" => "health",
        "/api/metrics" => "metrics",
        "/api/openapi.json" => "openapi",
        "/retrain-on-schedule" => "retrain-on-schedule",
        "/retrain-on-upload" => "retrain-on-upload",
        p if p.starts_with("/api/models") => "models",
        "/" => "readiness",
        _ => "other",
    }
}

/// Counts and times every request, and tags its log events with the Functions invocation id:
/// the failure of any request, and every event of the routes that do more than predict.
async fn observe(request: Request, next: Next) -> Response {
    observed(request, |request| next.run(request)).await
}

/// What [`observe`] does around `answer`, for the router's layer and for the prediction that
/// [`App`] answers before the router.
async fn observed<F, Fut>(request: Request, answer: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let function = function_of(request.uri().path());
    if function == "readiness" {
        return answer(request).await;
    }
    let invocation_id = request
        .headers()
        .get(&INVOCATION_ID)
        .or_else(|| request.headers().get(&INVOCATION_ID_ALTERNATIVE))
        .cloned();
    let invocation = || {
        invocation_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let in_flight = InFlight::start();
    let started = Instant::now();
    // Predictions log nothing but their failure (below): a span per request would cost them
    // about a microsecond, a tenth of what the server spends on one.
    let response = if matches!(function, "predict" | "invocations") {
        answer(request).await
    } else {
        let span = tracing::info_span!("request", function, invocation_id = invocation());
        answer(request).instrument(span).await
    };
    drop(in_flight);
    METRICS.record_request(
        function,
        response.status().as_str(),
        started.elapsed().as_secs_f64(),
    );
    log_failure(&response, function, invocation());
    response
}

/// Logs the server-side failure `response` carries, if any, tagged with its request.
fn log_failure(response: &Response, function: &str, invocation_id: &str) {
    if let Some(rejected::Rejection(reason)) = response.extensions().get() {
        rejected::log(response.status().as_u16(), reason, function, invocation_id);
        return;
    }
    let Some(error::Failure(error)) = response.extensions().get() else {
        return;
    };
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, function, invocation_id, "request failed");
    } else {
        tracing::debug!(%error, function, invocation_id, "request refused for now");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A log destination the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(response: &Response) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            log_failure(response, "predict", "6f1c2d4e-invocation");
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_failed_request_is_logged_with_its_function_and_invocation_id() {
        let line = logged(&error::ApiError::Internal("the disk is full".into()).into_response());
        for part in [
            "ERROR",
            "request failed",
            "the disk is full",
            "function=\"predict\"",
            "invocation_id=\"6f1c2d4e-invocation\"",
        ] {
            assert!(line.contains(part), "{part} missing from {line:?}");
        }
        let refused = error::ApiError::BadRequest("no such field".into()).into_response();
        let line = logged(&refused);
        for part in [
            "INFO",
            "request refused",
            "status=400",
            "no such field",
            "function=\"predict\"",
        ] {
            assert!(line.contains(part), "{part} missing from {line:?}");
        }
        assert_eq!(line.lines().count(), 1, "{line}");
    }

    /// Status, content type and body of `service`'s answer to `request`.
    async fn answer_of<S>(mut service: S, request: HttpRequest<Body>) -> (StatusCode, String, Bytes)
    where
        S: Service<HttpRequest<Body>, Response = Response, Error = Infallible>,
    {
        let response = service.call(request).await.unwrap();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, content_type, body)
    }

    #[tokio::test]
    async fn the_prediction_answered_before_the_router_is_the_routers_answer() {
        let dir = tempfile::tempdir().unwrap();
        let settings =
            crate::config::Settings::from_env(Some(&dir.path().display().to_string())).unwrap();
        let registry = crate::registry::open_registry(&settings).await.unwrap();
        let state: SharedState = Arc::new(crate::service::state::AppState::new(settings, registry));
        let app = HttpService::new(state.clone());
        let router = routes(state);
        let wine = r#"{"fixed_acidity":7.4,"volatile_acidity":0.7,"citric_acid":0,"residual_sugar":1.9,"chlorides":0.076,"free_sulfur_dioxide":11,"total_sulfur_dioxide":34,"density":0.9978,"pH":3.51,"sulphates":0.56,"alcohol":9.4}"#;
        // (method, path, content type, body): the fast path's route, its neighbours and its
        // errors, all asking for HTML as a browser does (only a form gets a page). No model is
        // loaded, so a valid wine gets the same 503 from both.
        let cases = [
            ("POST", "/api/predict", "application/json", wine.to_string()),
            (
                "POST",
                "/api/predict",
                "application/json",
                "{\"alcohol\": \"x\"}".into(),
            ),
            ("POST", "/api/predict", "text/plain", wine.to_string()),
            (
                "POST",
                "/api/predict",
                "application/x-www-form-urlencoded",
                "alcohol=x".into(),
            ),
            ("POST", "/api/predict?x=1", "application/json", "[".into()),
            (
                "POST",
                "/api/predict/",
                "application/json",
                wine.to_string(),
            ),
            ("POST", "/api/Predict", "application/json", wine.to_string()),
            ("GET", "/api/predict", "", String::new()),
            ("PUT", "/api/predict", "application/json", wine.to_string()),
            (
                "POST",
                "/api/invocations",
                "application/json",
                wine.to_string(),
            ),
        ];
        for (method, path, content_type, body) in cases {
            let request = || {
                let mut builder = HttpRequest::builder()
                    .method(method)
                    .uri(path)
                    .header(axum::http::header::HOST, "127.0.0.1:7071")
                    .header(axum::http::header::ACCEPT, "text/html,*/*");
                if !content_type.is_empty() {
                    builder = builder.header(CONTENT_TYPE, content_type);
                }
                builder.body(Body::from(body.clone())).unwrap()
            };
            let fast = answer_of(app.clone(), request()).await;
            let routed = answer_of(router.clone(), request()).await;
            assert_eq!(fast, routed, "{method} {path} ({content_type})");
        }
    }
}
