//! Logs and metrics: the `tracing` subscriber (to stderr), the Prometheus
//! recorder behind `/metrics`, and the middleware that counts HTTP requests.
//!
//! The recorder collects everything emitted through the `metrics` facade in
//! this process: this service's `http_requests_total`,
//! `http_request_duration_seconds` and [`REFRESH_TOKEN_REUSE_TOTAL`], and
//! the store's own `charon_sessions_*` metrics. The exporter's HTTP
//! listener is not used (its features are off): the service renders the
//! page on its own route.
//!
//! Every label takes its value from a fixed set (methods, route patterns,
//! status codes), so that no request, authenticated or not, can make the
//! recorder keep a new series.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Stdout is
/// kept for the one line announcing the bound address.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
}

/// Installs the Prometheus recorder as the process's `metrics` recorder and
/// starts its upkeep (draining histogram buffers every 5 s).
///
/// # Errors
///
/// When another recorder is installed already.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency, by method and route"
    );
    metrics::describe_counter!(
        REFRESH_TOKEN_REUSE_TOTAL,
        "Superseded refresh tokens presented after the grace window (each revoked its session)"
    );
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Counter of refresh-token reuse: superseded refresh tokens presented after
/// the grace window, each of which revoked its session.
pub const REFRESH_TOKEN_REUSE_TOTAL: &str = "refresh_token_reuse_total";

/// Middleware: counts each request and records its latency, labelled with
/// the method (see [`method_label`]) and the route pattern
/// (`/sessions/{id}`, never the id itself) so the number of series stays
/// bounded.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// The `method` label of a request: its method when it is one of the seven
/// the API could serve, else `"other"`. HTTP lets a client send any token
/// as a method, and a label taken as given would add a series (kept for the
/// process's life) per invented method: memory any unauthenticated client
/// could grow without bound.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_a_fixed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        for other in [Method::TRACE, Method::CONNECT] {
            assert_eq!(method_label(&other), "other");
        }
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
