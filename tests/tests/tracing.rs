//! One trace id across hub → gateway → node, with no personal data in any span.
//! (Its own test binary: it installs the process-wide tracing subscriber.)

use huren_cli::demo::{demo_subjects, seed};
use huren_pki::qr::{self, Scanned};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_across_the_three_hops() {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let f = huren_tests::start().await;
    let issued = seed(&f, &demo_subjects()[1], 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub = f.hub("traced").await.unwrap();
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let find = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let (hubs, gateways, nodes) = (find("huren.hub.lookup"), find("huren.gateway.lookup"), find("huren.node.attest"));
    assert_eq!(
        (hubs.len(), gateways.len(), nodes.len()),
        (1, 1, 1),
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let trace = hubs[0].span_context.trace_id();
    assert_eq!(gateways[0].span_context.trace_id(), trace);
    assert_eq!(nodes[0].span_context.trace_id(), trace);
    assert_eq!(gateways[0].parent_span_id, hubs[0].span_context.span_id());
    // Attributes hold province codes and outcomes, never the token.
    let token = qr::token_to_text(scanned.token());
    for s in &spans {
        for kv in &s.attributes {
            let v = kv.value.as_str();
            assert!(!v.contains(&token) && !v.contains("sd-traveller"), "{}={v}", kv.key);
        }
    }
    assert!(gateways[0].attributes.iter().any(|kv| kv.key.as_str() == "outcome" && kv.value.as_str() == "ok"));
}
