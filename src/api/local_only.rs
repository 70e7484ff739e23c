//! State-changing routes on a server running outside the Functions host (a developer's
//! machine) answer only requests from that machine's own pages: the `Host` must be a loopback
//! name (so a DNS name rebound to 127.0.0.1 is refused) and an `Origin`, when a browser sends
//! one, must be the server itself (so another site open in the browser cannot POST here).
//! Under the Functions host the platform's keys guard these routes instead, and the host
//! forwards the app's public host name, so nothing is checked here; the envelope routes of
//! the non-HTTP functions are then reached by the host alone (the handler listens on
//! loopback, and the platform routes no outside request to a path without `/api`).
//!
//! Every request, on every route, first gets the checks HTTP itself asks for (RFC 9112
//! §3.2): exactly one `Host` on HTTP/1.1, and a request target in absolute form that names
//! the same authority as `Host`. Otherwise two parts of a chain could disagree on where the
//! request goes, which is how a guard like this one is passed.

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{Request as HttpRequest, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::service::state::SharedState;

/// Middleware for the state-changing routes.
pub async fn same_machine(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    if state.settings.under_functions_host {
        return next.run(request).await;
    }
    if let Some(problem) = target_problem(&request) {
        return problem.into_response();
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

/// What is wrong with where a request says it goes, if anything: no `Host` on HTTP/1.1,
/// more than one, or an absolute-form target naming another authority than `Host`.
pub fn target_problem<B>(request: &HttpRequest<B>) -> Option<ApiError> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some(ApiError::BadRequest(
            "a request may carry only one Host header".to_string(),
        ));
    }
    let Some(host) = host else {
        return (request.version() == Version::HTTP_11)
            .then(|| ApiError::BadRequest("an HTTP/1.1 request needs a Host header".to_string()));
    };
    let authority = request.uri().authority()?;
    if host
        .as_bytes()
        .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return None;
    }
    Some(ApiError::BadRequest(format!(
        "the request target names `{}` but its Host header another authority",
        crate::model::dataset::clip(authority.as_str())
    )))
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

    fn request(version: Version, target: &str, hosts: &[&str]) -> HttpRequest<()> {
        let mut builder = HttpRequest::builder().version(version).uri(target);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn one_host_header_naming_the_targets_authority_is_required() {
        let ok = |r: &HttpRequest<()>| target_problem(r).is_none();
        assert!(ok(&request(
            Version::HTTP_11,
            "/api/train",
            &["127.0.0.1:7071"]
        )));
        assert!(ok(&request(Version::HTTP_10, "/api/train", &[])));
        assert!(ok(&request(
            Version::HTTP_11,
            "http://127.0.0.1:7071/api/train",
            &["127.0.0.1:7071"]
        )));
        for refused in [
            request(Version::HTTP_11, "/api/train", &[]),
            request(
                Version::HTTP_11,
                "/api/train",
                &["127.0.0.1:7071", "evil.example"],
            ),
            request(
                Version::HTTP_11,
                "http://evil.example/api/train",
                &["127.0.0.1:7071"],
            ),
        ] {
            let problem = target_problem(&refused).expect("refused");
            assert_eq!(problem.status(), axum::http::StatusCode::BAD_REQUEST);
        }
    }

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
