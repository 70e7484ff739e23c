//! What a burst of requests may hold: a server-wide budget of buffered request bytes, a cap on
//! large bodies handled at once, and a deadline for a prediction to arrive and be answered.
//!
//! A body is admitted before it is read: its declared length is reserved from the budget, and
//! a request that does not fit gets 503 with `Retry-After` at once instead of being buffered.
//! A body without a declared length (chunked) is admitted like a small one and reserves more
//! (a large-request slot and the route's largest body) only when it outgrows the small size.
//! The body is then read into one buffer of exactly that size (a small body that arrives in
//! one piece is kept as it arrived), so a body costs its own size once, plus what the parsers
//! build (rows, at most 88 bytes each). A declared body that does not start within the body
//! start deadline gives its reservation back with 408, so connections that send headers and
//! nothing else cannot hold the large-request slots.
//!
//! Every route with a body is admitted here, each with its own largest body: the prediction
//! routes (16 MiB) and the envelope routes of the non-HTTP functions (the upload's is the
//! whole budget; the timer's a few KiB).
//!
//! Sizing (defaults): 128 MiB of buffered bodies, at most 4 of them above 1 MiB. Parsing a
//! body holds at most about 3x its size at the peak, so the worst burst holds about 384 MiB,
//! which fits a 2,048 MB instance beside the runtime and a loaded model (tens of MB).
//!
//! Not here: what a body may contain (`model::input`), who may call (`api::local_only`).

use std::sync::Arc;

use std::future::Future;

use std::task::Poll;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::api::error::ApiError;
use crate::config::ServingLimits;

/// Bodies above this size count as large.
pub const LARGE_BODY_BYTES: usize = 1024 * 1024;
/// Budget accounting unit: permits are KiB, so the budget fits a semaphore's u32 requests.
const UNIT: usize = 1024;
/// What a busy server asks clients to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The shared budget. Cheap to clone.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Counter>,
    large: Arc<Counter>,
    settings: ServingLimits,
    /// Largest body a route accepts.
    max_body: usize,
}

/// A count of free units, taken and given back with atomic operations: requests never wait
/// for one (a request that does not fit is refused at once), so no queue and no lock is
/// needed, and small requests on every core update it without contending for a mutex.
struct Counter {
    free: AtomicUsize,
}

impl Counter {
    fn new(units: usize) -> Counter {
        Counter {
            free: AtomicUsize::new(units),
        }
    }

    /// Takes `units` if that many are free.
    fn try_take(self: &Arc<Self>, units: usize) -> Option<Taken> {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(units)
            })
            .ok()?;
        Some(Taken {
            counter: self.clone(),
            units,
        })
    }
}

/// Units given back when dropped.
struct Taken {
    counter: Arc<Counter>,
    units: usize,
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.counter.free.fetch_add(self.units, Ordering::AcqRel);
    }
}

/// Bytes (and, for a large body, a large-request slot) held until the request is answered.
pub struct Reservation {
    /// The bytes reserved: what the body may be read into.
    bytes: usize,
    /// Whether the length was declared (else the reservation may grow).
    declared: bool,
    _units: Taken,
    _large: Option<Taken>,
    /// What a body without a declared length took as it outgrew the small size.
    _more: Vec<Taken>,
}

impl BodyBudget {
    pub fn new(settings: ServingLimits, max_body: usize) -> BodyBudget {
        BodyBudget {
            bytes: Arc::new(Counter::new(settings.max_buffered_bytes.div_ceil(UNIT))),
            large: Arc::new(Counter::new(settings.max_large_requests)),
            settings,
            max_body,
        }
    }

    /// Reserves `length` bytes now, or says the server is busy.
    pub fn reserve(&self, length: usize) -> Result<Reservation, ApiError> {
        let busy = || ApiError::Busy {
            retry_after_seconds: RETRY_AFTER_SECONDS,
        };
        let large = if length > LARGE_BODY_BYTES {
            Some(self.large.try_take(1).ok_or_else(busy)?)
        } else {
            None
        };
        let units = length.div_ceil(UNIT).max(1);
        let bytes = self.bytes.try_take(units).ok_or_else(busy)?;
        Ok(Reservation {
            bytes: length,
            declared: true,
            _units: bytes,
            _large: large,
            _more: Vec::new(),
        })
    }

    /// The same budget (shared counters) for a route whose largest body is `max_body`, capped
    /// at the whole budget: a body that can never fit is refused with 413, not 503.
    pub fn with_limit(&self, max_body: usize) -> BodyBudget {
        BodyBudget {
            max_body: max_body.min(self.settings.max_buffered_bytes),
            ..self.clone()
        }
    }

    /// The largest body this route accepts.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Grows `reservation` to hold `length` bytes of a body without a declared length: a
    /// large-request slot once it outgrows the small size, and twice what it held (at most the
    /// route's largest body), as the buffer it is read into grows; or busy.
    fn grow(&self, reservation: &mut Reservation, length: usize) -> Result<(), ApiError> {
        let busy = || ApiError::Busy {
            retry_after_seconds: RETRY_AFTER_SECONDS,
        };
        if reservation._large.is_none() {
            reservation._large = Some(self.large.try_take(1).ok_or_else(busy)?);
        }
        let target = length.max(2 * reservation.bytes).min(self.max_body);
        let units = target.div_ceil(UNIT) - reservation.bytes.div_ceil(UNIT);
        reservation
            ._more
            .push(self.bytes.try_take(units).ok_or_else(busy)?);
        reservation.bytes = target;
        Ok(())
    }

    /// Bytes free in the budget now (for tests and the bench).
    pub fn available_bytes(&self) -> usize {
        self.bytes.free.load(Ordering::Acquire) * UNIT
    }
}

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
    let deadline = budget.settings.request_timeout;
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
    let deadline = budget.settings.request_timeout;
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
    let declared = request
        .body()
        .size_hint()
        .exact()
        .map(|length| usize::try_from(length).unwrap_or(usize::MAX));
    if declared.is_some_and(|length| length > budget.max_body) {
        return Err(ApiError::BodyTooLarge {
            limit_bytes: budget.max_body,
        });
    }
    let reservation = match declared {
        Some(length) => budget.reserve(length)?,
        None => {
            let mut small = budget.reserve(LARGE_BODY_BYTES.min(budget.max_body))?;
            small.declared = false;
            small
        }
    };
    let (parts, body) = request.into_parts();
    Ok((parts, body, reservation))
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
    let limit = budget.max_body;
    let read_error =
        |e: axum::Error| ApiError::BadRequest(format!("cannot read the request body: {e}"));
    let too_large = || ApiError::BodyTooLarge { limit_bytes: limit };
    let first = match at_hand {
        Some(first) => first,
        None => first_chunk(&mut stream, budget.settings.body_start_timeout).await?,
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
    let mut buffer = if reservation.declared {
        Vec::with_capacity(reservation.bytes.min(limit))
    } else {
        Vec::new()
    };
    let mut append = |buffer: &mut Vec<u8>, data: &[u8]| {
        let length = buffer.len() + data.len();
        if length > limit {
            return Err(too_large());
        }
        if length > reservation.bytes && !reservation.declared {
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

/// Runs `job` in the heavy lane (see [`super::heavy_lane`]): off the async workers, at a lower
/// priority, at most one job per core but one.
pub async fn run_heavy<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    super::heavy_lane::run(job)
        .await
        .map_err(|e| ApiError::Internal(format!("heavy lane: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_frees_on_drop() {
        let settings = ServingLimits {
            max_buffered_bytes: 16 * 1024 * 1024,
            max_large_requests: 2,
            ..ServingLimits::default()
        };
        let budget = BodyBudget::new(settings, 16 * 1024 * 1024);
        let a = budget.reserve(8 * 1024 * 1024).unwrap();
        let b = budget.reserve(8 * 1024 * 1024).unwrap();
        assert!(matches!(
            budget.reserve(2 * 1024 * 1024),
            Err(ApiError::Busy { .. })
        ));
        drop(a);
        let small = budget.reserve(100).unwrap();
        assert!(matches!(
            budget.reserve(4 * 1024 * 1024).map(|_| ()),
            Ok(())
        ));
        drop((b, small));
        assert_eq!(budget.available_bytes(), 16 * 1024 * 1024);
    }
}
