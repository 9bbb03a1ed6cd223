//! `charon-sessions-axum-example`: a small refresh-token service on axum
//! that keeps its sessions with charon-sessions.
//!
//! `POST /login` creates a session and answers an access and a refresh
//! token (HS256 JWTs); `POST /refresh` rotates them under the refresh rule
//! of `freshness.rs`; `GET /sessions`, `DELETE /sessions/{id}` and
//! `POST /logout-all` manage the user's devices; `GET /metrics` serves
//! Prometheus metrics. Sessions go to Redis 8 / Valkey 9 when `REDIS_URL` is
//! set, else to an in-memory `LocalStore`.
//!
//! # Layout
//!
//! * `config.rs`: flags and environment variables.
//! * `state.rs`: the shared state, opened from the configuration.
//! * `routes.rs`: the router and one handler per endpoint.
//! * `auth.rs`: the access-token extractor.
//! * `tokens.rs`: signing and verifying the JWTs.
//! * `freshness.rs`: which refresh tokens are fresh, which are reused; the
//!   rotation.
//! * `error.rs`: error responses.
//! * `telemetry.rs`: tracing, the Prometheus recorder, request metrics.

mod auth;
mod config;
mod error;
mod freshness;
mod routes;
mod state;
mod telemetry;
mod tokens;

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;

use crate::config::Config;
use crate::state::AppState;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init_tracing();
    let metrics = telemetry::install_metrics()?;
    let (state, store) = AppState::open(&config, metrics).await?;

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, %store, "serving");
    // The one line on stdout: tests and scripts read the port from it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{address}")?;
    stdout.flush()?;
    drop(stdout);

    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
}

/// Resolves on Ctrl-C or SIGTERM, so that requests in flight can finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
