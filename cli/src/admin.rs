//! The plain-HTTP admin endpoint of `huren node` and `huren gateway`: `/metrics`
//! (Prometheus text), `/healthz` (the process is alive) and `/readyz` (serving; the body
//! says what is degraded). Nothing on it is personal: counts, codes, states.

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use tokio::net::TcpListener;

use crate::telemetry::PrometheusMetrics;

/// What `/readyz` answers: ready or not, and one line of detail.
pub type Readiness = Arc<dyn Fn() -> (bool, String) + Send + Sync>;

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusMetrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let (ready, detail) = readiness();
                    let code =
                        if ready { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
                    (code, format!("{detail}\n"))
                }
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
