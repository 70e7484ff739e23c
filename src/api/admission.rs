//! Admission of request bodies: a body is admitted against the instance's budget
//! ([`BodyBudget`]) before it is read, then read within the deadlines: the body must start
//! within the body start deadline (so connections that send headers and nothing else cannot
//! hold the large-request slots) and a prediction must arrive and be answered within the
//! request deadline. A body is read into one buffer of exactly its reserved size (a small
//! body that arrives in one piece is kept as it arrived), so it costs its own size once,
//! plus what the parsers build (rows, at most 88 bytes each).
//!
//! Every route with a body is admitted here, each with its own largest body: the prediction
//! routes ([`PREDICT_BODY_LIMIT`]) and the envelope routes of the non-HTTP functions (the
//! upload's is the whole budget; the timer's a few KiB).
//!
//! Not here: what a body may contain (`model::input`), who may call (`api::local_only`).

use std::future::Future;
use std::task::Poll;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::api::error::ApiError;
#[cfg(doc)]
use crate::service::body_budget::PREDICT_BODY_LIMIT;
use crate::service::body_budget::{BodyBudget, Reservation};

/// Middleware of the prediction routes: admit, read the body within the deadline, answer.
pub async fn admit(State(budget): State<BodyBudget>, request: Request, next: Next) -> Response {
    answer_admitted(&budget, request, |parts, body| {
        next.run(Request::from_parts(parts, Body::from(body)))
    })
    .await
}

/// Middleware of the envelope routes: admit the body and read it within the deadline, as a
/// prediction's; the answer (a training, which may take minutes) is not under the deadline.
/// The reservation is held until the answer is.
pub async fn admit_body(
    State(budget): State<BodyBudget>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = budget.limits().request_timeout;
    let read = async {
        let (parts, body, mut reservation) = admit_request(&budget, request)?;
        let body = read_body(&budget, body.into_data_stream(), None, &mut reservation).await?;
        Ok::<_, ApiError>((parts, body, reservation))
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok((parts, body, reservation))) => {
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            drop(reservation);
            response
        }
        Ok(Err(error)) => error.into_response(),
        Err(_) => ApiError::Timeout {
            seconds: deadline.as_secs(),
        }
        .into_response(),
    }
}

/// What [`admit`] does around a handler, for a handler that does it itself (one layer less
/// on the hottest route): admits the body against the budget, reads it, and answers it with
/// `answer`, all within the request deadline. The reservation is held until the answer is.
pub async fn answer_admitted<F, Fut>(budget: &BodyBudget, request: Request, answer: F) -> Response
where
    F: FnOnce(Parts, Bytes) -> Fut,
    Fut: Future<Output = Response>,
{
    let deadline = budget.limits().request_timeout;
    let (parts, body, mut reservation) = match admit_request(budget, request) {
        Ok(admitted) => admitted,
        Err(error) => return error.into_response(),
    };
    let mut stream = body.into_data_stream();
    // The first chunk is taken before the deadline is armed when it is already at hand (the
    // usual small prediction), so that such a request does not wait at all.
    let at_hand = chunk_at_hand(&mut stream).await;
    let work = async {
        let body = read_body(budget, stream, at_hand, &mut reservation).await?;
        let response = answer(parts, body).await;
        drop(reservation);
        Ok::<_, ApiError>(response)
    };
    let mut work = std::pin::pin!(work);
    // The deadline starts when the request first waits (on its client or on the heavy lane).
    // A request that never waits (a small body answered inline) is bounded by the inline
    // limits alone, and pays for no clock reading and no timer.
    let outcome = match futures::poll!(work.as_mut()) {
        Poll::Ready(outcome) => Ok(outcome),
        Poll::Pending => tokio::time::timeout(deadline, work).await,
    };
    match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_response(),
        Err(_) => ApiError::Timeout {
            seconds: deadline.as_secs(),
        }
        .into_response(),
    }
}

/// Checks the declared length and reserves it; a body without one reserves the small size
/// (see [`BodyBudget::grow`] for what it takes when it outgrows that). The declared length is
/// the body's exact size as the connection framed it from `Content-Length` (already checked
/// there), so the header is not read again.
fn admit_request(
    budget: &BodyBudget,
    request: Request,
) -> Result<(Parts, Body, Reservation), ApiError> {
    refuse_encoded(request.headers())?;
    let declared = request
        .body()
        .size_hint()
        .exact()
        .map(|length| usize::try_from(length).unwrap_or(usize::MAX));
    if declared.is_some_and(|length| length > budget.max_body()) {
        return Err(ApiError::BodyTooLarge {
            limit_bytes: budget.max_body(),
        });
    }
    let reservation = match declared {
        Some(length) => budget.reserve(length)?,
        None => budget.reserve_undeclared()?,
    };
    let (parts, body) = request.into_parts();
    Ok((parts, body, reservation))
}

/// A compressed body (`Content-Encoding: gzip`, say) would be read as text and refused with a
/// misleading parse error: it is refused as what it is, before it is read.
fn refuse_encoded(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    for value in headers.get_all(axum::http::header::CONTENT_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let encoded = text
            .split(',')
            .map(str::trim)
            .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"));
        if encoded {
            return Err(ApiError::UnsupportedEncoding(
                crate::model::dataset::clip(text.trim()).to_string(),
            ));
        }
    }
    Ok(())
}

/// A chunk of the body the connection has already read, if any: the stream is polled once,
/// and once more after letting the connection's task hand over what it holds.
async fn chunk_at_hand(stream: &mut BodyDataStream) -> Option<Option<Result<Bytes, axum::Error>>> {
    if let Poll::Ready(next) = futures::poll!(stream.next()) {
        return Some(next);
    }
    tokio::task::yield_now().await;
    match futures::poll!(stream.next()) {
        Poll::Ready(next) => Some(next),
        Poll::Pending => None,
    }
}

/// The body's first chunk, if it starts within the body start deadline.
async fn first_chunk(
    stream: &mut BodyDataStream,
    start_timeout: std::time::Duration,
) -> Result<Option<Result<Bytes, axum::Error>>, ApiError> {
    tokio::time::timeout(start_timeout, stream.next())
        .await
        .map_err(|_| ApiError::BodyNotStarted {
            seconds: start_timeout.as_secs(),
        })
}

/// Bodies up to this size that arrive in one chunk are kept as that chunk, not copied.
const SMALL_BODY_BYTES: usize = 64 * 1024;

/// Reads a body into one buffer of its declared size; more than the route's largest body is
/// a 413, and a body without a declared length that outgrows its reservation grows it (or is
/// refused as busy). A small body that arrives whole (the usual single prediction) is kept as
/// it came. `at_hand` is what [`chunk_at_hand`] already took from the stream.
async fn read_body(
    budget: &BodyBudget,
    mut stream: BodyDataStream,
    at_hand: Option<Option<Result<Bytes, axum::Error>>>,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    let limit = budget.max_body();
    let read_error =
        |e: axum::Error| ApiError::BadRequest(format!("cannot read the request body: {e}"));
    let too_large = || ApiError::BodyTooLarge { limit_bytes: limit };
    let first = match at_hand {
        Some(first) => first,
        None => first_chunk(&mut stream, budget.limits().body_start_timeout).await?,
    };
    let Some(first) = first else {
        return Ok(Bytes::new());
    };
    let first = first.map_err(read_error)?;
    if first.len() > limit {
        return Err(too_large());
    }
    let second = if first.len() <= SMALL_BODY_BYTES {
        match stream.next().await {
            None => return Ok(first),
            Some(second) => Some(second.map_err(read_error)?),
        }
    } else {
        None
    };
    let mut buffer = if reservation.is_declared() {
        Vec::with_capacity(reservation.bytes().min(limit))
    } else {
        Vec::new()
    };
    let mut append = |buffer: &mut Vec<u8>, data: &[u8]| {
        let length = buffer.len() + data.len();
        if length > limit {
            return Err(too_large());
        }
        if length > reservation.bytes() && !reservation.is_declared() {
            budget.grow(reservation, length)?;
        }
        buffer.extend_from_slice(data);
        Ok(())
    };
    for data in std::iter::once(first).chain(second) {
        append(&mut buffer, &data)?;
    }
    while let Some(chunk) = stream.next().await {
        append(&mut buffer, &chunk.map_err(read_error)?)?;
    }
    Ok(Bytes::from(buffer))
}

/// Runs `job` in the heavy lane (see [`crate::service::heavy_lane`]): off the async workers, at a lower
/// priority, at most one job per core but one.
pub async fn run_heavy<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    crate::service::heavy_lane::submit(job)
        .await
        .map_err(|e| ApiError::Internal(format!("heavy lane: {e}")))
}
