//! Serving the pages over plain HTTP on a bound listener (keep it on loopback or behind
//! the coordinator's own access control: the browser needs no client certificate, the
//! console itself holds the mTLS identity), until a shutdown future resolves. Each page
//! is collected afresh; the gateway's metrics are also sampled every minute.

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use maud::Markup;

use crate::collect::Console;
use crate::render;

/// The router: `/`, `/expiry`, `/traffic`, `/sunset`, `/audit`, `/hubs`.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/expiry", get(|State(c): State<Console>| async move { render::expiry(&c.overview().await) }))
        .route("/traffic", get(|State(c): State<Console>| async move { render::traffic(&c.overview().await) }))
        .route("/sunset", get(|State(c): State<Console>| async move { render::sunset(&c.overview().await) }))
        .route("/audit", get(audit))
        .route("/hubs", get(|State(c): State<Console>| async move { render::hubs(&c.hubs().await) }))
        .with_state(console)
}

async fn overview(State(c): State<Console>) -> Markup {
    let (o, hubs) = tokio::join!(c.overview(), c.hubs());
    render::overview(&o, &hubs)
}

async fn audit(State(c): State<Console>) -> Markup {
    let (sequence, stats) = c.stats().await;
    render::audit(huren_pki::unix_now(), sequence, &stats)
}

/// Serves the console on `listener` until `shutdown` resolves, sampling the gateway's
/// metrics every `sample_every` meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Console,
    sample_every: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = console.clone();
    let mut stopped = stop_rx.clone();
    let sampling = tokio::spawn(async move {
        sampler
            .keep_sampling(sample_every, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    let result = axum::serve(listener, router(console))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    drop(stop_rx);
    let _ = sampling.await;
    result
}
