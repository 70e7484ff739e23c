//! The HTTP stack alone, for the bench's baseline: the accept loop and hyper settings that
//! `sommelier serve` uses, and a router with two routes and nothing else (no model, no
//! metrics, no admission): `GET /` answers the readiness JSON, `POST /echo` reads its body
//! and answers a JSON object of a prediction's size. Their ratio is what a POST with a small
//! body costs the stack itself, which bounds what `POST /api/predict` can reach against
//! `GET /`.
//!
//! Run: `cargo run --release --example bare_http -- PORT` (part of `scripts/bench`); stops on
//! Ctrl-C or SIGTERM.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use sommelier::server::listen;

/// As long as `{"prediction":…,"model_version":…,"out_of_range":[]}` for the bench's body.
const PREDICTION_SIZED_ANSWER: &str = r#"{"prediction":5.11836415743227,"model_version":"20261202T000000000Z-0000000","out_of_range":[]}"#;

fn json(text: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], text)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: bare_http PORT")?
        .parse()
        .map_err(|e| format!("the port is not a number: {e}"))?;
    let app = Router::new()
        .route("/", get(|| async { json(r#"{"status":"ready"}"#) }))
        .route(
            "/echo",
            // The extractor reads the body whole, as the prediction route does.
            post(|_body: Bytes| async { json(PREDICTION_SIZED_ANSWER) }),
        );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    listen::serve(
        listener,
        app,
        Duration::from_secs(30),
        Duration::from_secs(1),
        sommelier::server::shutdown_signal(),
    )
    .await;
    Ok(())
}
