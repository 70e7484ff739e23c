//! `sommelier serve`: the custom handler's socket layer. Binds 127.0.0.1 at once (the host
//! polls `GET /` every 25 ms), serves the API over the listener it is given, and shuts down
//! gracefully when its shutdown future resolves (SIGTERM or Ctrl-C for the binary). The
//! instance behind it (model, training, metrics push) is [`crate::service::Instance`].
//!
//! Shutdown is bounded: on the signal the metrics pusher deletes this instance's group at
//! once (the host may kill the process within seconds), new connections stop, requests in
//! flight get `SOMMELIER_SHUTDOWN_SECONDS`, and a training still running is abandoned: the
//! stores make a version visible only once complete, so nothing partial is left behind. The
//! process exits within `max(SOMMELIER_SHUTDOWN_SECONDS, 6 s)` plus about a second.

pub mod listen;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use thiserror::Error;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::registry::OpenStoreError;
use crate::service::Instance;
use crate::telemetry::metrics::METRICS;

/// Port when neither the host nor `--port` names one (what `func start` uses).
pub const DEFAULT_PORT: u16 = 7071;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] OpenStoreError),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Listens on the host's port (`FUNCTIONS_CUSTOMHANDLER_PORT`), else `port_flag`, else
/// [`DEFAULT_PORT`], on the loopback interface only.
pub async fn bind(settings: &Settings, port_flag: Option<u16>) -> Result<TcpListener, ServerError> {
    let port = settings.handler_port.or(port_flag).unwrap_or(DEFAULT_PORT);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind { address, source })
}

/// Serves the API on `listener` until `shutdown` resolves, then drains and stops the instance.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    METRICS.record_start();
    let address = listener.local_addr().map_err(ServerError::Serve)?;
    let instance = Instance::start(settings).await?;
    let state = instance.state().clone();
    tracing::info!(%address, store = %state.registry.store_location(), "listening");
    tracing::info!(
        form = %format!("http://{address}/api/predict"),
        api = %format!("http://{address}/api/openapi.json"),
        "open the form or the API page in a browser"
    );
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping = async move {
        shutdown.await;
        let _ = began_tx.send(());
    };
    let serving = state.settings.serving;
    let app = crate::api::HttpService::new(state);
    let served = listen::serve(
        listener,
        app,
        serving.header_timeout,
        serving.shutdown_grace,
        stopping,
    );
    tokio::pin!(served);
    // The instance's background work stops as soon as shutdown begins, while requests drain.
    tokio::select! {
        _ = &mut served => {}
        Ok(()) = began_rx => {
            instance.begin_shutdown();
            served.await;
        }
    }
    instance.finish().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (what the host sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
