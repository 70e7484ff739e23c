//! State-changing routes on a server running outside the Functions host (a developer's
//! machine) answer only requests from that machine's own pages: the `Host` must be a loopback
//! name (so a DNS name rebound to 127.0.0.1 is refused) and an `Origin`, when a browser sends
//! one, must be the server itself (so another site open in the browser cannot POST here).
//! Under the Functions host the platform's keys guard these routes instead, and the host
//! forwards the app's public host name, so nothing is checked here.

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::server::state::SharedState;

/// Middleware for the state-changing routes.
pub async fn same_machine(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    if state.settings.under_functions_host {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |v: &axum::http::HeaderValue| v.to_str().unwrap_or("\u{fffd}").to_string();
    let host = headers.get(HOST).map(text);
    let origin = headers.get(ORIGIN).map(text);
    match check(host.as_deref(), origin.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(reason) => ApiError::Forbidden(reason).into_response(),
    }
}

/// Accepts a loopback `Host` and, if present, an `Origin` naming that same host.
pub fn check(host: Option<&str>, origin: Option<&str>) -> Result<(), String> {
    let Some(host) = host else {
        return Err("a state-changing request needs a Host header".to_string());
    };
    if !is_loopback_authority(host) {
        return Err(format!(
            "this local server changes state only for requests to a loopback address, not `{host}`"
        ));
    }
    match origin {
        None => Ok(()),
        Some(origin) if origin.eq_ignore_ascii_case(&format!("http://{host}")) => Ok(()),
        Some(origin) => Err(format!(
            "cross-origin request from `{origin}` refused; only pages served by this server may change state"
        )),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with an optional port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || valid_port(port) => inside,
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) if valid_port(&format!(":{port}")) => host,
            Some(_) => return false,
            None => authority,
        },
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn valid_port(port: &str) -> bool {
    port.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_and_same_origins_pass() {
        assert!(check(Some("127.0.0.1:7071"), None).is_ok());
        assert!(check(Some("localhost:7071"), Some("http://localhost:7071")).is_ok());
        assert!(check(Some("[::1]:8080"), None).is_ok());
        assert!(check(Some("127.0.0.1"), None).is_ok());
        assert!(check(None, None).is_err());
        assert!(check(Some("evil.example:7071"), None).is_err());
        assert!(check(Some("127.0.0.1.evil.example"), None).is_err());
        assert!(check(Some("127.0.0.1:7071"), Some("http://evil.example")).is_err());
        assert!(check(Some("127.0.0.1:7071"), Some("null")).is_err());
        assert!(check(Some("127.0.0.1:x"), None).is_err());
    }
}
