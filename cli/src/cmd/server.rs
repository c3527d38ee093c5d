//! What `huren node` and `huren gateway` share: the `--config` / `--print-default-config`
//! options, and binding the gRPC listener together with the plain-HTTP admin endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::admin::{self, Readiness};
use crate::telemetry::{LogFormat, PrometheusMetrics};
use crate::usage;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML configuration file (every key can also be set by HUREN_NODE_<KEY>,
    /// HUREN_GATEWAY_<KEY> or, for the hub agent, HUREN_HUB_AGENT_<KEY>; relative paths are
    /// resolved against the file's folder).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print every setting with its default (optional ones commented out, with their
    /// meaning) and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

impl ServerArgs {
    /// The configuration file to load; `None` once the defaults `C` have been printed
    /// (`--print-default-config`), when there is nothing left to do.
    pub(crate) fn config_file<C: huren_runtime::config::Settings>(&self) -> Result<Option<&Path>> {
        if self.print_default_config {
            print!("{}", huren_runtime::config::default_toml::<C>()?);
            return Ok(None);
        }
        self.config.as_deref().map(Some).ok_or_else(|| usage("--config is required"))
    }
}

/// A startup line for people: on stderr as it is in text mode; in JSON mode a log event
/// (`info`), so that every line a collector reads is JSON.
pub(crate) fn announce(format: LogFormat, line: &str) {
    match format {
        LogFormat::Text => eprintln!("{line}"),
        LogFormat::Json => tracing::info!("{line}"),
    }
}

/// A server's bound gRPC listener, with its admin endpoint already serving.
pub(crate) struct Bound {
    pub(crate) listener: TcpListener,
    stop_admin: oneshot::Sender<()>,
}

impl Bound {
    /// Binds `listen`, then starts the admin endpoint (`/metrics`, `/healthz`, `/readyz`)
    /// on `admin_listen` and says where.
    pub(crate) async fn bind(
        listen: &str,
        admin_listen: &str,
        metrics: PrometheusMetrics,
        readiness: Readiness,
        format: LogFormat,
    ) -> Result<Self> {
        let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let admin =
            TcpListener::bind(admin_listen).await.with_context(|| format!("binding admin endpoint {admin_listen}"))?;
        announce(format, &format!("admin endpoint (/metrics, /healthz, /readyz) on http://{}", admin.local_addr()?));
        let (stop_admin, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = admin::serve(admin, metrics, readiness, shutdown).await {
                tracing::error!(error = %e, "admin endpoint failed");
            }
        });
        Ok(Self { listener, stop_admin })
    }

    /// The gRPC listener's address.
    pub(crate) fn addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves gRPC with `serve` until it returns, then stops the admin endpoint.
    pub(crate) async fn serve<F, E>(self, serve: impl FnOnce(TcpListener) -> F) -> Result<()>
    where
        F: std::future::Future<Output = Result<(), E>>,
        anyhow::Error: From<E>,
    {
        serve(self.listener).await?;
        let _ = self.stop_admin.send(());
        Ok(())
    }
}
