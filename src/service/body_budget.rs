//! What a burst of requests may hold: a server-wide budget of buffered request bytes and a
//! cap on large bodies handled at once. The budget belongs to the running instance (every
//! route with a body draws on the same one); `api::admission` admits and reads bodies
//! against it.
//!
//! A body is admitted before it is read: its declared length is reserved from the budget, and
//! a request that does not fit is refused at once ([`Busy`]) instead of being buffered. A body
//! without a declared length (chunked) is admitted like a small one and reserves more (a
//! large-request slot and the route's largest body) only when it outgrows the small size.
//!
//! Sizing (defaults): 128 MiB of buffered bodies, at most 4 of them above 1 MiB. Parsing a
//! body holds at most about 3x its size at the peak, so the worst burst holds about 384 MiB,
//! which fits a 2,048 MB instance beside the runtime and a loaded model (tens of MB).

use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::ServingLimits;

/// The largest body the prediction routes accept (16 MiB, about 180,000 rows as CSV).
pub const PREDICT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Bodies above this size count as large.
pub const LARGE_BODY_BYTES: usize = 1024 * 1024;
/// Budget accounting unit: permits are KiB, so the budget fits a semaphore's u32 requests.
const UNIT: usize = 1024;
/// What a busy server asks clients to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The budget cannot hold a body now: the client should retry after a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub retry_after_seconds: u64,
}

const BUSY: Busy = Busy {
    retry_after_seconds: RETRY_AFTER_SECONDS,
};

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
    pub fn reserve(&self, length: usize) -> Result<Reservation, Busy> {
        let busy = || BUSY;
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

    /// The limits the budget was made from (deadlines included).
    pub fn limits(&self) -> &ServingLimits {
        &self.settings
    }

    /// Reserves room for a body without a declared length: the small size (at most the
    /// route's largest body), grown by [`BodyBudget::grow`] as the body arrives.
    pub fn reserve_undeclared(&self) -> Result<Reservation, Busy> {
        let mut small = self.reserve(LARGE_BODY_BYTES.min(self.max_body))?;
        small.declared = false;
        Ok(small)
    }

    /// Grows `reservation` to hold `length` bytes of a body without a declared length: a
    /// large-request slot once it outgrows the small size, and twice what it held (at most the
    /// route's largest body), as the buffer it is read into grows; or busy.
    pub fn grow(&self, reservation: &mut Reservation, length: usize) -> Result<(), Busy> {
        let busy = || BUSY;
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

impl Reservation {
    /// The bytes reserved: what the body may be read into now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the body's length was declared (an undeclared one grows its reservation).
    pub fn is_declared(&self) -> bool {
        self.declared
    }
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
        assert_eq!(budget.reserve(2 * 1024 * 1024).err(), Some(BUSY));
        drop(a);
        let small = budget.reserve(100).unwrap();
        assert!(budget.reserve(4 * 1024 * 1024).is_ok());
        drop((b, small));
        assert_eq!(budget.available_bytes(), 16 * 1024 * 1024);
    }
}
