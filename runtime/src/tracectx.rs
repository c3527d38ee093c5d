//! W3C trace context across the federation's hops (hub → gateway → node): injected into
//! outgoing gRPC metadata, extracted from incoming. Spans carry province codes and
//! outcomes only — never tokens, subjects or payloads.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) =
            (tonic::metadata::MetadataKey::from_bytes(key.as_bytes()), tonic::metadata::MetadataValue::try_from(&value))
        {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Puts the current span's context into an outgoing request.
pub fn inject<T>(request: &mut tonic::Request<T>) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(request.metadata_mut()))
    });
}

/// Makes `span` a child of the caller's span carried in `request`, if any.
pub fn adopt<T>(span: &tracing::Span, request: &tonic::Request<T>) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(request.metadata())));
    let _ = span.set_parent(parent);
}
