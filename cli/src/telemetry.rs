//! Telemetry for the binary: logs to stderr, an OpenTelemetry meter provider read by a
//! Prometheus registry (served on the admin port) and, with an OTLP endpoint configured,
//! traces and metrics exported to a collector. W3C trace context is always propagated.
//!
//! Logs are text (colours only when stderr is a terminal, so files and the journal get
//! none) or JSON, one object per line ([`LogFormat`]); levels come from `HUREN_LOG`
//! (servers default to `info` for Huren's own crates and `warn` for libraries, other
//! commands to `warn`). Every registry also carries `huren_build_info{version}` and, on
//! Linux, the standard `process_*` metrics (CPU, memory, open files, threads, start time).

use std::io::IsTerminal as _;

use anyhow::{Context, Result};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;

pub use huren_runtime::config::LogFormat;

/// The default `HUREN_LOG` filter of the servers: Huren's lifecycle events at `info`.
pub const SERVER_LOG_FILTER: &str = "warn,huren_node=info,huren_gateway=info,huren_runtime=info,huren_cli=info";

/// A meter provider read by a Prometheus registry.
#[derive(Clone)]
pub struct PrometheusMetrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl PrometheusMetrics {
    pub fn new() -> Result<Self> {
        Self::with_otlp(None)
    }

    /// Also exports every metric over OTLP/gRPC to `otlp` when given.
    pub fn with_otlp(otlp: Option<&str>) -> Result<Self> {
        let registry = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .context("registering the process metrics")?;
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .build()
            .context("building the Prometheus exporter")?;
        let mut builder = SdkMeterProvider::builder().with_reader(exporter);
        if let Some(endpoint) = otlp {
            use opentelemetry_otlp::WithExportConfig as _;
            let otlp = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .context("building the OTLP metric exporter")?;
            builder = builder.with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(otlp).build());
        }
        let provider = builder.build();
        provider
            .meter("huren")
            .u64_observable_gauge("huren_build_info")
            .with_description("Always 1; labelled with the version of huren that runs")
            .with_callback(|o| o.observe(1, &[opentelemetry::KeyValue::new("version", env!("CARGO_PKG_VERSION"))]))
            .build();
        Ok(Self { registry, provider })
    }

    pub fn provider(&self) -> &SdkMeterProvider {
        &self.provider
    }

    pub fn meter(&self, name: &'static str) -> Meter {
        self.provider.meter(name)
    }

    /// Current readings in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The value of one series, e.g. `huren_gateway_policy_violations_total` with
    /// labels `[("province","370000"),("reason","unknown_field")]`; 0 when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut total = 0.0;
        for family in self.registry.gather().iter().filter(|f| f.name() == name) {
            let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            for m in family.get_metric() {
                if labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)) {
                    total += if counter { m.get_counter().get_value() } else { m.get_gauge().get_value() };
                }
            }
        }
        total
    }
}

/// Keeps exporters alive; flushes them when dropped.
pub struct Telemetry {
    pub metrics: PrometheusMetrics,
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        let _ = self.metrics.provider.shutdown();
    }
}

/// A log layer writing `format` lines to `writer`; `ansi` colours text lines (never JSON).
pub fn log_layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(writer).with_ansi(false).boxed(),
    }
}

/// Sets up logging (stderr, text, `HUREN_LOG` filter, default `warn`), the global meter
/// provider and, with `otlp`, trace export. Call once per process.
pub fn init(service: &'static str, otlp: Option<&str>) -> Result<Telemetry> {
    init_with(service, otlp, LogFormat::Text, "warn")
}

/// As [`init`], for a server: log lines in `format`, `default_filter` when `HUREN_LOG`
/// is not set (see [`SERVER_LOG_FILTER`]).
pub fn init_with(
    service: &'static str,
    otlp: Option<&str>,
    format: LogFormat,
    default_filter: &str,
) -> Result<Telemetry> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let metrics = PrometheusMetrics::with_otlp(otlp)?;
    opentelemetry::global::set_meter_provider(metrics.provider.clone());
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUREN_LOG").unwrap_or_else(|_| default_filter.into());
    let fmt = log_layer(format, std::io::stderr().is_terminal(), std::io::stderr);
    let tracer = match otlp {
        Some(endpoint) => {
            use opentelemetry::trace::TracerProvider as _;
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .context("building the OTLP span exporter")?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
            let _ = tracing_subscriber::registry().with(filter).with(fmt).with(layer).try_init();
            Some(provider)
        }
        None => {
            let _ = tracing_subscriber::registry().with(filter).with(fmt).try_init();
            None
        }
    };
    Ok(Telemetry { metrics, tracer })
}
