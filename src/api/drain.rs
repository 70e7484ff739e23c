//! Request bodies that are answered before they are read to their end (a 503 when the memory
//! budget is full, a 413 from the declared length, a 415 from the media type) are read on in
//! the background and thrown away, so that the client, still sending, receives the answer.
//!
//! Without this, the connection closes with unread bytes in its buffer, the kernel answers
//! them with a reset, and a client still writing its body gets a broken pipe instead of the
//! answer. Nothing of the rest is kept (each chunk is dropped as it arrives), and the reading
//! is bounded in bytes and in time: a client that sends more, or stalls, is disconnected. A
//! body read to its end (every request the server accepts) costs nothing here.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::poll_fn;
use hyper::body::{Body as HttpBody, Buf, Frame, SizeHint};

/// The most that is read and thrown away after an answer: twice what a prediction route
/// accepts, so that any refused prediction, and a body declared just past the limit, is read
/// to its end; a client sending more may see its connection reset instead of the answer.
pub const DRAIN_BYTES: usize = 2 * crate::service::body_budget::PREDICT_BODY_LIMIT;
/// The longest a refused body is read for.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);
/// The longest the client may send nothing before the reading stops: a client that stalled
/// (the one answered 408, for one) is not waited for.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// A body that can be read on in a task of its own.
pub trait Drainable: HttpBody<Data: Send, Error: Send> + Unpin + Send + 'static {}

impl<B> Drainable for B where B: HttpBody<Data: Send, Error: Send> + Unpin + Send + 'static {}

/// `body`, read on in the background if it is dropped before its end.
pub struct DrainOnDrop<B: Drainable> {
    body: Option<B>,
}

impl<B: Drainable> DrainOnDrop<B> {
    pub fn new(body: B) -> DrainOnDrop<B> {
        DrainOnDrop { body: Some(body) }
    }
}

impl<B: Drainable> HttpBody for DrainOnDrop<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.get_mut().body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl<B: Drainable> Drop for DrainOnDrop<B> {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // Outside a runtime (nothing serves the connection then) the body is simply dropped.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

/// Reads `body` and drops what arrives, up to [`DRAIN_BYTES`], for at most [`DRAIN_TIME`], and
/// while the client sends something at least every [`DRAIN_IDLE`].
async fn drain<B: Drainable>(mut body: B) {
    let reading = async {
        let mut read = 0usize;
        loop {
            let next = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
            let Ok(Some(Ok(frame))) = tokio::time::timeout(DRAIN_IDLE, next).await else {
                return;
            };
            read += frame.data_ref().map_or(0, Buf::remaining);
            if read > DRAIN_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A body of `chunks` chunks of `size` bytes, or one that never sends (`stalled`), which
    /// says how much of it was read and when it is dropped.
    struct Probe {
        chunks: usize,
        size: usize,
        stalled: bool,
        read: Arc<AtomicUsize>,
        dropped: tokio::sync::mpsc::UnboundedSender<()>,
    }

    impl HttpBody for Probe {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            if self.stalled {
                return Poll::Pending;
            }
            if self.chunks == 0 {
                return Poll::Ready(None);
            }
            self.chunks -= 1;
            self.read.fetch_add(self.size, Ordering::Relaxed);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0; self.size])))))
        }

        fn is_end_stream(&self) -> bool {
            !self.stalled && self.chunks == 0
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            let _ = self.dropped.send(());
        }
    }

    fn probe(
        chunks: usize,
        size: usize,
        stalled: bool,
    ) -> (
        DrainOnDrop<Probe>,
        Arc<AtomicUsize>,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        let read = Arc::new(AtomicUsize::new(0));
        let (dropped, on_drop) = tokio::sync::mpsc::unbounded_channel();
        let body = Probe {
            chunks,
            size,
            stalled,
            read: read.clone(),
            dropped,
        };
        (DrainOnDrop::new(body), read, on_drop)
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_is_read_to_its_end() {
        let (mut body, read, mut on_drop) = probe(10, 1000, false);
        let first = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(first.is_some());
        drop(body);
        on_drop.recv().await.unwrap();
        assert_eq!(read.load(Ordering::Relaxed), 10_000);
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_dropped_at_once() {
        let (mut body, read, mut on_drop) = probe(2, 1000, false);
        while poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .is_some()
        {}
        drop(body);
        assert_eq!(on_drop.try_recv(), Ok(()), "dropped in place, no task");
        assert_eq!(read.load(Ordering::Relaxed), 2000);
    }

    #[tokio::test]
    async fn past_the_byte_bound_the_body_is_dropped() {
        let chunk = 1024 * 1024;
        let (body, read, mut on_drop) = probe(DRAIN_BYTES / chunk + 10, chunk, false);
        drop(body);
        on_drop.recv().await.unwrap();
        assert_eq!(read.load(Ordering::Relaxed), DRAIN_BYTES + chunk);
    }

    #[tokio::test]
    async fn a_stalled_body_is_dropped_once_it_has_been_idle() {
        let (body, _, mut on_drop) = probe(0, 0, true);
        let started = std::time::Instant::now();
        drop(body);
        tokio::time::timeout(DRAIN_TIME * 2, on_drop.recv())
            .await
            .expect("dropped, not held")
            .unwrap();
        assert!(started.elapsed() >= DRAIN_IDLE);
    }
}
