//! Production operations: Redis-shared state across gateway replicas, Redis loss,
//! province outages and circuit breakers, health, reflection and metrics.

use std::sync::Arc;

use huren_cli::demo::{demo_rules, demo_subjects, seed};
use huren_cli::federation::{Federation, FederationOptions, DEMO_PROVINCES};
use huren_cli::telemetry::PrometheusMetrics;
use huren_gateway::shared::RedisState;
use huren_gateway::{Gateway, GatewaySettings, MissPolicy};
use huren_pki::live::LiveTrust;
use huren_pki::qr::{self, Scanned};
use huren_pki::tls::ExpectedPeer;
use huren_proto::pb;
use huren_tests::{code, Deadline};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const REDIS: &str = "redis://127.0.0.1:6379/";

fn prefix(name: &str) -> String {
    format!("huren-test-{name}-{}-{}:", std::process::id(), huren_pki::unix_now())
}

async fn start_with(options: FederationOptions) -> (Federation, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let f = Federation::start_with(dir.path(), &DEMO_PROVINCES, demo_rules(), options).await.unwrap();
    (f, dir)
}

/// A further gateway replica of `f`, with `settings`, serving until the sender drops.
async fn replica(
    f: &Federation,
    name: &str,
    settings: GatewaySettings,
) -> (Gateway, std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let tls = f.identity("gateway", name).unwrap();
    let trust = LiveTrust::new(f.gateway_trust().unwrap().current().as_ref().clone(), tls.root.to_vec(), None).unwrap();
    let gateway = Gateway::new(tls, trust, settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let g = gateway.clone();
    tokio::spawn(async move {
        let _ = g
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    (gateway, addr, stop)
}

fn hub_on(f: &Federation, name: &str, addr: std::net::SocketAddr) -> huren_cli::hub::HubClient {
    huren_cli::hub::HubClient::connect(&addr.to_string(), &f.identity("hub", name).unwrap()).unwrap()
}

#[tokio::test]
async fn two_replicas_share_the_cache_and_the_miss_limits_through_redis() {
    let prefix = prefix("replicas");
    let (m1, m2) = (PrometheusMetrics::new().unwrap(), PrometheusMetrics::new().unwrap());
    let settings = |m: &PrometheusMetrics| GatewaySettings {
        cache: true,
        redis_url: Some(REDIS.into()),
        redis_prefix: prefix.clone(),
        miss_policy: MissPolicy { burst: 4.0, refill_per_sec: 0.001 },
        meter: Some(m.meter("huren-gateway")),
        ..GatewaySettings::default()
    };
    let (f, _dir) = start_with(FederationOptions::default()).await;
    f.register_hub("shared-hub", &["transit.rail"])
        .deadline("hub shared-hub registered on every server")
        .await
        .unwrap();
    let (g1, a1, _s1) = replica(&f, "replica-1", settings(&m1)).await;
    let (g2, a2, _s2) = replica(&f, "replica-2", settings(&m2)).await;
    let issued = seed(&f, &demo_subjects()[0], 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let (mut h1, mut h2) = (hub_on(&f, "shared-hub", a1), hub_on(&f, "shared-hub", a2));

    h1.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    assert_eq!(m1.value("huren_gateway_cache_lookups_total", &[("result", "miss")]), 1.0);
    h2.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    assert_eq!(
        m2.value("huren_gateway_cache_lookups_total", &[("result", "hit")]),
        1.0,
        "replica 2 served replica 1's entry"
    );
    assert_eq!((g1.health().redis, g2.health().redis), (RedisState::Up, RedisState::Up));

    // Misses counted on either replica add up: 2 + 2 exhaust a burst of 4 on both.
    for i in 0..4 {
        let client = if i < 2 { &mut h1 } else { &mut h2 };
        let err = client.lookup(&code("340000"), &qr::new_token().unwrap(), "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::NotFound));
    }
    for client in [&mut h1, &mut h2] {
        let err = client.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    }
    // No token is ever a Redis key.
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, format!("{prefix}*")).await.unwrap();
    let token_text = qr::token_to_text(scanned.token());
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| !k.contains(&token_text)));
    for k in keys {
        let _: () = redis::AsyncCommands::del(&mut conn, k).await.unwrap();
    }
}

#[tokio::test]
async fn redis_loss_fails_no_lookup_and_shows_as_degraded() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    f.register_hub("steady", &["transit.rail"]).deadline("hub steady registered on every server").await.unwrap();
    let settings = GatewaySettings {
        cache: true,
        redis_url: Some("redis://127.0.0.1:1/".into()),
        redis_prefix: prefix("dead"),
        ..GatewaySettings::default()
    };
    let (g, addr, _stop) = replica(&f, "replica-dead-redis", settings).await;
    let issued = seed(&f, &demo_subjects()[1], 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub = hub_on(&f, "steady", addr);
    for _ in 0..50 {
        let s = hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
        assert_eq!(s.status, "RED");
    }
    assert_eq!(g.health().redis, RedisState::Degraded);
    assert!(g.health().summary().contains("DEGRADED: redis unavailable"));
}

#[tokio::test]
async fn a_dead_province_trips_its_breaker_and_others_are_unaffected() {
    let mut options = FederationOptions::default();
    options.gateway.cache = true;
    let (mut f, _dir) = start_with(options).await;
    let mut issued = Vec::new();
    for s in demo_subjects() {
        issued.push(Scanned::parse(&seed(&f, &s, 600).await.unwrap().qr).unwrap());
    }
    let second_anhui = seed(&f, &demo_subjects()[0], 600).await.unwrap();
    let mut hub = f.hub("resilient").deadline("hub resilient registered on every server").await.unwrap();
    for s in &issued {
        hub.lookup(s.province(), s.token(), "transit.rail").await.unwrap();
    }
    f.stop_node(&code("340000")).deadline("Anhui's node to stop (graceful drain)").await.unwrap();

    // A still-valid cached attestation is served although Anhui is down.
    let cached = hub.lookup(issued[0].province(), issued[0].token(), "transit.rail").await.unwrap();
    assert_eq!(cached.status, "GREEN");
    // Uncached lookups fail until the breaker opens, then fail fast.
    let other = Scanned::parse(&second_anhui.qr).unwrap();
    let mut last = String::new();
    for _ in 0..6 {
        let err = hub.lookup(other.province(), other.token(), "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
        last = err.to_string();
    }
    assert!(last.contains("circuit open"), "{last}");
    // Shandong and Guangdong carry on.
    for s in &issued[1..] {
        hub.lookup(s.province(), s.token(), "transit.rail").await.unwrap();
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    stream
        .read_to_string(&mut out)
        .deadline(&format!("the admin endpoint to answer GET {path} and close"))
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn health_reflection_and_the_metrics_endpoint() {
    let metrics = PrometheusMetrics::new().unwrap();
    let mut options = FederationOptions::default();
    options.gateway.meter = Some(metrics.meter("huren-gateway"));
    options.gateway.cache = true;
    let (f, _dir) = start_with(options).await;
    let issued = seed(&f, &demo_subjects()[2], 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    let mut hub = f.hub("observed").deadline("hub observed registered on every server").await.unwrap();
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    hub.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();

    // grpc.health.v1 on the mTLS port, for gateway and node.
    let hub_id = f.identity("hub", "observed").unwrap();
    let channel = huren_tests::client_channel(&hub_id, ExpectedPeer::AnyGateway, f.gateway_addr());
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: "huren.v1.Lookup".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let guangdong = code("440000");
    let channel = huren_tests::client_channel(
        &f.identity("gateway", "probe").unwrap(),
        huren_tests::node_peer(&f, &guangdong),
        f.node_addr(&guangdong).unwrap(),
    );
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: "huren.v1.Attestation".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // The admin endpoint.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let readiness: huren_cli::admin::Readiness =
        Arc::new(|| (true, "trust list 1; redis off (in-process cache)".into()));
    tokio::spawn(huren_cli::admin::serve(listener, metrics.clone(), readiness, async {
        let _ = stopped.await;
    }));
    let body = http_get(addr, "/metrics").await;
    for series in [
        "huren_gateway_lookups_total",
        "huren_gateway_lookup_duration_seconds_bucket",
        "huren_gateway_cache_lookups_total",
        "huren_expiry_seconds",
        "huren_trust_list_sequence",
    ] {
        assert!(body.contains(series), "{series} missing from /metrics");
    }
    assert!(body.contains("province=\"440000\""));
    assert!(!body.contains(&qr::token_to_text(scanned.token())), "a token reached the metrics");
    assert!(http_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    let ready = http_get(addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200") && ready.contains("redis off"), "{ready}");
    let _ = stop.send(());
    let _ = pb::LookupRequest::default();
}

#[tokio::test]
async fn at_sunset_a_gateway_purges_its_caches_in_redis() {
    let prefix = prefix("sunset");
    let (f, _dir) = start_with(FederationOptions::default()).await;
    f.register_hub("last", &["transit.rail"]).deadline("hub last registered on every server").await.unwrap();
    let tls = f.identity("gateway", "replica-sunset").unwrap();
    let trust = LiveTrust::new(f.gateway_trust().unwrap().current().as_ref().clone(), tls.root.to_vec(), None).unwrap();
    let settings = GatewaySettings {
        cache: true,
        redis_url: Some(REDIS.into()),
        redis_prefix: prefix.clone(),
        ..GatewaySettings::default()
    };
    let gateway = Gateway::new(tls, trust.clone(), settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let g = gateway.clone();
    tokio::spawn(async move {
        let _ = g
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    let issued = seed(&f, &demo_subjects()[0], 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    hub_on(&f, "last", addr).lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    assert!(huren_cli::audit::scan_redis(REDIS, &prefix).await.unwrap() > 0, "the attestation was cached in redis");

    f.pki.set_sunset(huren_pki::unix_now(), "mandate ended").unwrap();
    f.pki.sign_trust_list().unwrap();
    trust.offer(f.trust_list().unwrap().signed().clone()).unwrap();
    gateway
        .sunset_purged()
        .wait_for(|done| *done)
        .deadline("the gateway's sunset purge of its Redis caches")
        .await
        .unwrap();
    assert_eq!(huren_cli::audit::scan_redis(REDIS, &prefix).await.unwrap(), 0, "redis keys remain after the sunset");
}
