//! The accept loop: HTTP/1.1 connections with a deadline for request headers, and a shutdown
//! that is bounded. A client that sends half a header, or keeps a connection open without a
//! next request, is disconnected when the deadline passes; at shutdown, idle connections
//! close at once, requests in flight get the grace period, and whatever is still open after
//! it is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_service::Service;

/// The size hyper's read buffer grows to on each connection. A read fills the buffer's spare
/// room, so one read returns at most about twice this, and a connection's turn on a worker
/// (at most sixteen reads) a couple of MiB; with hyper's default (about 400 KiB) one turn
/// could read and copy many MiB of a large upload while the small requests behind it wait.
/// The extra reads cost a large body nothing measurable. A request head (request line and
/// headers) that outgrows the buffer is refused with 431.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at most `grace`.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    header_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http1::Builder::new();
    // Half-closed connections stay unsupported (hyper's default): while a request is in
    // flight, hyper reads on to notice a client that hangs up, and drops the request when it
    // does, so a job it queued in the heavy lane is skipped. That read costs every request a
    // system call and a fresh 8 KiB read buffer; it is kept for what it buys.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(READ_BUFFER_BYTES);
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, bad framing, header deadline): not ours to log.
            let _ = connection.await;
        });
    }
    drop(listener);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(seconds = grace.as_secs(), "requests still running after the shutdown grace period; closing them");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};

    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

    use super::*;
    use crate::service::heavy_lane;
    use axum::Router;

    /// A header deadline no test reaches.
    const LONG: Duration = Duration::from_secs(30);

    /// Sends once when dropped: tells the test that a request's future is gone.
    struct SignalOnDrop(UnboundedSender<()>);

    impl Drop for SignalOnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    /// Starts [`serve`] on a free port with `app`, the given header deadline and a long grace.
    async fn serving(app: Router, header_deadline: Duration) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let grace = Duration::from_secs(30);
        tokio::spawn(serve(
            listener,
            app,
            header_deadline,
            grace,
            std::future::pending(),
        ));
        address
    }

    /// Keeps every lane thread busy until the returned senders are dropped.
    async fn occupy_the_lane() -> Vec<std::sync::mpsc::Sender<()>> {
        let threads = heavy_lane::threads();
        let (started, mut all_started) = unbounded_channel();
        let mut releases = Vec::new();
        for _ in 0..threads {
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let started = started.clone();
            tokio::spawn(heavy_lane::submit(move || {
                let _ = started.send(());
                let _ = wait.recv();
            }));
            releases.push(release);
        }
        for _ in 0..threads {
            all_started.recv().await.unwrap();
        }
        releases
    }

    /// Returns once every lane thread has finished what it had taken before this call: one
    /// job per thread, all waiting for each other, can only run when every thread is free.
    async fn drain_the_lane() {
        let threads = heavy_lane::threads();
        let barrier = Arc::new(Barrier::new(threads));
        let jobs: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = barrier.clone();
                tokio::spawn(heavy_lane::submit(move || {
                    barrier.wait();
                }))
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_hangs_up_has_its_request_dropped_and_its_queued_job_skipped() {
        let ran = Arc::new(AtomicBool::new(false));
        let (queued, mut job_queued) = unbounded_channel();
        let (dropped, mut request_dropped) = unbounded_channel();
        let job_ran = ran.clone();
        let app = Router::new().route(
            "/heavy",
            post(move || {
                let (ran, queued, dropped) = (job_ran.clone(), queued.clone(), dropped.clone());
                async move {
                    let _dropped = SignalOnDrop(dropped);
                    let _ = queued.send(());
                    let _ = heavy_lane::submit(move || ran.store(true, Ordering::SeqCst)).await;
                    "done"
                }
            }),
        );
        let address = serving(app, LONG).await;
        let request = b"POST /heavy HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n";

        let releases = occupy_the_lane().await;
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(request).await.unwrap();
        job_queued.recv().await.unwrap();
        drop(client);
        let noticed = tokio::time::timeout(Duration::from_secs(10), request_dropped.recv()).await;
        assert!(
            noticed.is_ok(),
            "the server kept the request of a client that hung up"
        );
        drop(releases);
        drain_the_lane().await;
        assert!(!ran.load(Ordering::SeqCst), "the abandoned job ran");

        // The same route with a client that waits: its job runs and it gets its answer.
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(request).await.unwrap();
        let mut answer = vec![0; 1024];
        let read = client.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
            "{answer}"
        );
        assert!(ran.load(Ordering::SeqCst));
    }

    /// Sends `request` on a new connection and returns what the server sends until it closes it.
    async fn whole_answer(address: std::net::SocketAddr, request: &[u8]) -> String {
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Sends `request` on a new connection and returns the answer's status line.
    async fn status_line(address: std::net::SocketAddr, request: &[u8]) -> String {
        let answer = whole_answer(address, request).await;
        answer.lines().next().unwrap_or_default().to_string()
    }

    /// A server with one route, `GET /`, answering "ok".
    fn answering_ok() -> Router {
        Router::new().route("/", axum::routing::get(|| async { "ok" }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_body_is_read_in_pieces_of_at_most_twice_the_read_buffer() {
        let body_bytes = 4 * 1024 * 1024;
        let app = Router::new().route(
            "/upload",
            post(|body: axum::body::Body| async move {
                let mut stream = body.into_data_stream();
                let (mut total, mut largest) = (0, 0);
                while let Some(piece) = futures::StreamExt::next(&mut stream).await {
                    let piece = piece.unwrap();
                    total += piece.len();
                    largest = largest.max(piece.len());
                }
                format!("{total} {largest}")
            }),
        );
        let address = serving(app, LONG).await;
        let mut request =
            format!("POST /upload HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {body_bytes}\r\n\r\n")
                .into_bytes();
        request.resize(request.len() + body_bytes, b'x');
        let answer = whole_answer(address, &request).await;
        let (total, largest) = answer
            .rsplit("\r\n\r\n")
            .next()
            .and_then(|counts| counts.split_once(' '))
            .unwrap();
        assert_eq!(total.parse::<usize>().unwrap(), body_bytes, "{answer}");
        assert!(
            largest.parse::<usize>().unwrap() <= 2 * READ_BUFFER_BYTES,
            "a piece of {largest} bytes was read at once"
        );
    }

    #[tokio::test]
    async fn a_request_head_that_outgrows_the_read_buffer_is_refused_with_431() {
        let address = serving(answering_ok(), LONG).await;
        let head = |cookie_bytes: usize| {
            let cookie = "c".repeat(cookie_bytes);
            format!("GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncookie: {cookie}\r\n\r\n")
        };
        assert_eq!(
            status_line(address, head(4 * READ_BUFFER_BYTES).as_bytes()).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // Large but plausible headers (a long token or cookie) still pass.
        assert_eq!(
            status_line(address, head(16 * 1024).as_bytes()).await,
            "HTTP/1.1 200 OK"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_when_the_header_deadline_passes() {
        let address = serving(answering_ok(), Duration::from_millis(300)).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0; 1024];
        let read = client.read(&mut answer).await.unwrap();
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
        // The connection is kept alive for a next request, but not held without one.
        let rest = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer))
            .await
            .expect("the server kept an idle connection open past the header deadline");
        assert!(rest.is_ok());
    }
}
