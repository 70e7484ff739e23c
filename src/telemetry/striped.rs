//! Metrics updated by every prediction, kept in one copy per thread stripe. Two workers
//! updating one counter pass its cache line back and forth on every request, which costs more
//! than the update itself; with a copy per stripe, each worker updates lines no other worker
//! writes. Collecting adds the stripes up, so every figure stays exact.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, LabelPair, Metric, MetricFamily, MetricType};

/// Copies of each striped metric: more than the workers of the largest instance, so that
/// workers rarely share one.
pub const STRIPES: usize = 8;

/// The stripe of the calling thread: threads take stripes in turn on their first update.
pub fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|stripe| {
        if stripe.get() == usize::MAX {
            stripe.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        stripe.get()
    })
}

/// One metric (or metric vector) of the `prometheus` crate, [`STRIPES`] times, collected
/// as one. Register a clone; update through [`local`](Striped::local).
#[derive(Clone)]
pub struct Striped<M> {
    stripes: Box<[M]>,
}

impl<M: Collector> Striped<M> {
    /// [`STRIPES`] copies made by `make`, none of them registered.
    pub fn new(make: impl Fn() -> prometheus::Result<M>) -> prometheus::Result<Striped<M>> {
        Ok(Striped {
            stripes: (0..STRIPES).map(|_| make()).collect::<Result<_, _>>()?,
        })
    }

    /// The calling thread's copy.
    pub fn local(&self) -> &M {
        &self.stripes[stripe() % self.stripes.len()]
    }

    /// Every copy, for reading a total.
    pub fn all(&self) -> &[M] {
        &self.stripes
    }
}

impl<M: Collector + Clone + 'static> Collector for Striped<M> {
    fn desc(&self) -> Vec<&Desc> {
        self.stripes.first().map(|m| m.desc()).unwrap_or_default()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut stripes = self.stripes.iter().map(|m| m.collect());
        let mut families = stripes.next().unwrap_or_default();
        for other in stripes {
            for (family, other) in families.iter_mut().zip(other) {
                merge_family(family, other);
            }
        }
        families
    }
}

/// Adds `other`'s series into `family` (same name and type): series with the same labels
/// are summed, the others appended.
fn merge_family(family: &mut MetricFamily, mut other: MetricFamily) {
    let kind = family.get_field_type();
    for series in other.take_metric() {
        let labels = series.get_label();
        match family
            .mut_metric()
            .iter_mut()
            .find(|m| same_labels(m.get_label(), labels))
        {
            Some(existing) => add_series(kind, existing, &series),
            None => family.mut_metric().push(series),
        }
    }
}

fn same_labels(a: &[LabelPair], b: &[LabelPair]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.name() == b.name() && a.value() == b.value())
}

fn add_series(kind: MetricType, into: &mut Metric, from: &Metric) {
    match kind {
        MetricType::COUNTER => {
            let mut counter = into.get_counter().clone();
            counter.set_value(counter.get_value() + from.get_counter().get_value());
            into.set_counter(counter);
        }
        MetricType::GAUGE => {
            let mut gauge = into.get_gauge().clone();
            gauge.set_value(gauge.get_value() + from.get_gauge().get_value());
            into.set_gauge(gauge);
        }
        MetricType::HISTOGRAM => {
            let (a, b) = (into.get_histogram(), from.get_histogram());
            let mut sum = a.clone();
            sum.set_sample_count(a.get_sample_count() + b.get_sample_count());
            sum.set_sample_sum(a.get_sample_sum() + b.get_sample_sum());
            let buckets: Vec<Bucket> = a
                .get_bucket()
                .iter()
                .zip(b.get_bucket())
                .map(|(x, y)| {
                    let mut bucket = x.clone();
                    bucket.set_cumulative_count(x.cumulative_count() + y.cumulative_count());
                    bucket
                })
                .collect();
            sum.set_bucket(buckets);
            into.set_histogram(sum);
        }
        // Only counters, gauges and histograms are striped.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

    fn text(collector: impl Collector + 'static) -> String {
        let registry = prometheus::Registry::new();
        registry.register(Box::new(collector)).unwrap();
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn striped_metrics_collect_as_the_sum_of_their_stripes() {
        let requests = Striped::new(|| {
            IntCounterVec::new(Opts::new("requests_total", "Requests."), &["status"])
        })
        .unwrap();
        let latency = Striped::new(|| {
            Histogram::with_opts(HistogramOpts::new("latency", "Latency.").buckets(vec![1.0, 2.0]))
        })
        .unwrap();
        let in_flight = Striped::new(|| IntGauge::new("in_flight", "In flight.")).unwrap();
        let reference =
            IntCounterVec::new(Opts::new("requests_total", "Requests."), &["status"]).unwrap();
        let reference_latency =
            Histogram::with_opts(HistogramOpts::new("latency", "Latency.").buckets(vec![1.0, 2.0]))
                .unwrap();
        for (stripe, copy) in requests.all().iter().enumerate() {
            copy.with_label_values(&["200"]).inc_by(stripe as u64 + 1);
            reference
                .with_label_values(&["200"])
                .inc_by(stripe as u64 + 1);
            if stripe % 3 == 0 {
                copy.with_label_values(&["503"]).inc();
                reference.with_label_values(&["503"]).inc();
            }
            let value = stripe as f64 * 0.5;
            latency.all()[stripe].observe(value);
            reference_latency.observe(value);
        }
        // A request counted in on one thread and out on another.
        in_flight.all()[0].inc();
        in_flight.all()[1].dec();
        in_flight.all()[2].inc();
        assert_eq!(text(requests), text(reference));
        assert_eq!(text(latency), text(reference_latency));
        assert!(text(in_flight).contains("in_flight 1\n"));
    }

    #[test]
    fn a_thread_keeps_its_stripe() {
        let first = stripe();
        assert_eq!(stripe(), first);
        assert!(first < STRIPES);
    }
}
