//! `huren gateway`: run the national gateway from its TOML configuration.

use std::sync::Arc;

use anyhow::Result;
use huren_gateway::GatewayConfig;

use crate::cmd::server::{announce, Bound, ServerArgs};
use crate::cmd::shutdown_signal;
use crate::{telemetry, usage};

/// Runs `huren gateway`.
pub async fn run(args: ServerArgs) -> Result<()> {
    let Some(path) = args.config_file::<GatewayConfig>()? else { return Ok(()) };
    let config = GatewayConfig::load(path).map_err(usage)?;
    // A key that is not the certificate's is found here, before anything listens.
    crate::connect::load_identity(&config.cert, &config.key, &config.ca, &config.trust_domain)?;
    let telemetry = telemetry::init_with(
        "huren-gateway",
        config.otlp_endpoint.as_deref(),
        config.log_format,
        telemetry::SERVER_LOG_FILTER,
    )?;
    let gateway = huren_gateway::Gateway::from_config(&config).map_err(usage)?;
    let health = gateway.clone();
    let readiness = Arc::new(move || {
        let h = health.health();
        (!h.sunset, h.summary())
    });
    let bound =
        Bound::bind(&config.listen, &config.admin_listen, telemetry.metrics.clone(), readiness, config.log_format)
            .await?;
    announce(
        config.log_format,
        &format!("huren gateway listening on {} (trust list sequence {})", bound.addr()?, gateway.trust_sequence()),
    );
    bound.serve(|listener| gateway.serve(listener, shutdown_signal())).await
}
