//! Production operations: Redis-shared state across gateway replicas, Redis loss,
//! province outages and circuit breakers, health, reflection and metrics.

use std::sync::Arc;

use huren_cli::demo::{demo_subjects, seed};
use huren_cli::federation::{Federation, FederationOptions};
use huren_cli::telemetry::PrometheusMetrics;
use huren_gateway::shared::RedisState;
use huren_gateway::{Gateway, GatewaySettings, MissPolicy};
use huren_pki::qr::{self, Scanned};
use huren_proto::pb;
use huren_runtime::live::LiveTrust;
use huren_runtime::tls::ExpectedPeer;
use huren_tests::{code, http_get, serve_admin, start_with, Deadline};
use tonic::Code;

const REDIS: &str = "redis://127.0.0.1:6379/";

fn prefix(name: &str) -> String {
    format!("huren-test-{name}-{}-{}:", std::process::id(), huren_pki::unix_now())
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
    let (addr, stop) = huren_tests::serve_gateway(&gateway).await;
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

/// grpc.health.v1 on `channel` reports `service` as serving.
async fn assert_serving(channel: tonic::transport::Channel, service: &str) {
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service}");
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
    assert_serving(channel, "huren.v1.Lookup").await;
    let guangdong = code("440000");
    let channel = huren_tests::node_channel(&f, &f.identity("gateway", "probe").unwrap(), &guangdong);
    assert_serving(channel, "huren.v1.Attestation").await;

    // The admin endpoint.
    let readiness: huren_cli::admin::Readiness =
        Arc::new(|| (true, "trust list 1; redis off (in-process cache)".into()));
    let (addr, stop) = serve_admin(&metrics, readiness).await;
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
    let (addr, _stop) = huren_tests::serve_gateway(&gateway).await;
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

/// A `redis-server` of the test's own on a free loopback port (no persistence), so it can
/// be killed and restarted mid-load without touching the shared Redis; killed on drop.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts redis-server on the port and waits until it logs that it accepts connections.
    async fn restart(&mut self) {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            // Keeps reading to the end so that the server never blocks on a full pipe.
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
            }
        });
        is_ready.deadline("redis-server to accept connections").await.expect("redis-server started");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn until_redis(g: &Gateway, state: RedisState) {
    g.redis_states().wait_for(|s| *s == state).deadline(&format!("redis state {state:?}")).await.unwrap();
}

/// Collects `n` more lookup results from the load, keeping the failures.
async fn take_results(
    results: &mut tokio::sync::mpsc::Receiver<Result<(), String>>,
    n: usize,
    failures: &mut Vec<String>,
) {
    for _ in 0..n {
        if let Err(e) = results.recv().deadline("lookups to keep completing").await.expect("load running") {
            failures.push(e);
        }
    }
}

#[tokio::test]
async fn redis_killed_mid_load_fails_no_lookup_and_is_reconnected_when_it_returns() {
    let mut redis = OwnRedis::start().await;
    let (f, _dir) = start_with(FederationOptions::default()).await;
    f.register_hub("busy", &["transit.rail"]).deadline("hub busy registered on every server").await.unwrap();
    let prefix = prefix("killed");
    let settings = || GatewaySettings {
        cache: true,
        redis_url: Some(redis.url()),
        redis_prefix: prefix.clone(),
        hub_rate_per_sec: 1_000_000,
        ..GatewaySettings::default()
    };
    let (g1, a1, _s1) = replica(&f, "replica-k1", settings()).await;
    let (g2, a2, _s2) = replica(&f, "replica-k2", settings()).await;
    until_redis(&g1, RedisState::Up).await;
    until_redis(&g2, RedisState::Up).await;
    let mut tokens = Vec::new();
    for s in demo_subjects() {
        tokens.push(Scanned::parse(&seed(&f, &s, 600).await.unwrap().qr).unwrap());
    }
    let tokens = Arc::new(tokens);

    // Four hubs, two on each replica, looking up in a loop until told to stop.
    let (results_tx, mut results) = tokio::sync::mpsc::channel(64);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for (i, addr) in [a1, a2, a1, a2].into_iter().enumerate() {
        let (mut hub, tokens, results_tx, stopped) =
            (hub_on(&f, "busy", addr), tokens.clone(), results_tx.clone(), stopped.clone());
        workers.push(tokio::spawn(async move {
            let mut n = i;
            while !*stopped.borrow() {
                let s = &tokens[n % tokens.len()];
                let r =
                    hub.lookup(s.province(), s.token(), "transit.rail").await.map(|_| ()).map_err(|e| e.to_string());
                if results_tx.send(r).await.is_err() {
                    break;
                }
                n += 1;
            }
        }));
    }
    drop(results_tx);
    let mut failures = Vec::new();
    take_results(&mut results, 40, &mut failures).await;

    // Redis dies under load: both replicas notice and carry on in process.
    redis.kill();
    until_redis(&g1, RedisState::Degraded).await;
    until_redis(&g2, RedisState::Degraded).await;
    assert!(g1.health().summary().contains("DEGRADED: redis unavailable"), "{}", g1.health().summary());
    take_results(&mut results, 40, &mut failures).await;
    assert_eq!(g1.health().redis, RedisState::Degraded, "still down");

    // Redis comes back on the same port: both replicas reconnect by themselves.
    redis.restart().await;
    until_redis(&g1, RedisState::Up).await;
    until_redis(&g2, RedisState::Up).await;
    take_results(&mut results, 40, &mut failures).await;
    stop.send_replace(true);
    while let Some(r) = results.recv().deadline("the load to stop").await {
        if let Err(e) = r {
            failures.push(e);
        }
    }
    for w in workers {
        w.deadline("a load worker to stop").await.unwrap();
    }
    assert!(failures.is_empty(), "{} lookups failed, e.g. {:?}", failures.len(), failures.first());
    assert!(g2.health().summary().contains("redis up"), "{}", g2.health().summary());
}

#[tokio::test]
async fn two_replicas_share_the_request_rate_limit_through_redis() {
    let prefix = prefix("rate");
    // One counting window for the whole test: the windows follow the gateways' clock.
    let (clock, hand) = huren_runtime::clock::Clock::manual(huren_pki::unix_now());
    let settings = || GatewaySettings {
        redis_url: Some(REDIS.into()),
        redis_prefix: prefix.clone(),
        hub_rate_per_sec: 3,
        clock: clock.clone(),
        ..GatewaySettings::default()
    };
    let (f, _dir) = start_with(FederationOptions::default()).await;
    for hub in ["eager", "calm"] {
        f.register_hub(hub, &["transit.rail"]).deadline("hub registered on every server").await.unwrap();
    }
    let (g1, a1, _s1) = replica(&f, "replica-r1", settings()).await;
    let (g2, a2, _s2) = replica(&f, "replica-r2", settings()).await;
    until_redis(&g1, RedisState::Up).await;
    until_redis(&g2, RedisState::Up).await;
    let scanned = Scanned::parse(&seed(&f, &demo_subjects()[0], 600).await.unwrap().qr).unwrap();
    let (mut h1, mut h2) = (hub_on(&f, "eager", a1), hub_on(&f, "eager", a2));
    // The trust list fetch of a fresh hub client is not a lookup: only lookups count.
    h1.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    h1.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    h2.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    // 2 + 1 use up 3 per second on both replicas together.
    for (name, client) in [("replica 2", &mut h2), ("replica 1", &mut h1)] {
        let err = client.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::ResourceExhausted), "{name}: {err}");
        assert!(err.to_string().contains("hub eager exceeds its request rate of 3/s"), "{err}");
    }
    // Another hub has its own allowance; the next second refills.
    hub_on(&f, "calm", a2).lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    hand.advance(1);
    h2.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    delete_keys(&prefix).await;
}

async fn delete_keys(prefix: &str) {
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, format!("{prefix}*")).await.unwrap();
    for k in keys {
        let _: () = redis::AsyncCommands::del(&mut conn, k).await.unwrap();
    }
}

#[tokio::test]
async fn a_trust_list_uploaded_to_one_replica_reaches_the_other_through_redis() {
    let prefix = prefix("fanout");
    let settings = || GatewaySettings {
        redis_url: Some(REDIS.into()),
        redis_prefix: prefix.clone(),
        ..GatewaySettings::default()
    };
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let (g1, a1, _s1) = replica(&f, "replica-f1", settings()).await;
    let (g2, a2, _s2) = replica(&f, "replica-f2", settings()).await;
    until_redis(&g1, RedisState::Up).await;
    until_redis(&g2, RedisState::Up).await;
    let before = g2.trust_sequence();

    // The coordinator admits a hub and uploads the list to replica 1 only.
    f.pki.register_hub("newcomer", &["transit.rail".to_owned()]).unwrap();
    f.pki.sign_trust_list().unwrap();
    let signed = f.trust_list().unwrap().signed().clone();
    let coordinator = f.identity("coordinator", "national").unwrap();
    let channel = huren_tests::client_channel(&coordinator, ExpectedPeer::AnyGateway, a1);
    let sequence = pb::trust_registry_client::TrustRegistryClient::new(channel)
        .upload(signed)
        .await
        .unwrap()
        .into_inner()
        .sequence;
    assert!(sequence > before);
    g2.trust()
        .subscribe()
        .wait_for(|t| t.sequence() >= sequence)
        .deadline("replica 2 to take the list uploaded to replica 1")
        .await
        .unwrap();
    // Replica 2 now serves the hub admitted by that list.
    let issued = seed(&f, &demo_subjects()[2], 600).await.unwrap();
    let scanned = Scanned::parse(&issued.qr).unwrap();
    hub_on(&f, "newcomer", a2).lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    delete_keys(&prefix).await;
}

/// The value of the series `name` whose labels include `labels`, from a Prometheus text page.
fn series(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let matches = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn metrics_expose_violations_throttling_redis_and_breaker_state() {
    let prefix = prefix("metrics");
    let metrics = PrometheusMetrics::new().unwrap();
    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    f.register_hub_in("watched", &["transit.rail"], &code("440000"))
        .deadline("hub watched registered on every server")
        .await
        .unwrap();
    f.register_hub("prober", &["transit.rail"]).deadline("hub prober registered on every server").await.unwrap();
    let settings = GatewaySettings {
        meter: Some(metrics.meter("huren-gateway")),
        redis_url: Some(REDIS.into()),
        redis_prefix: prefix.clone(),
        miss_policy: MissPolicy { burst: 2.0, refill_per_sec: 0.001 },
        ..GatewaySettings::default()
    };
    let (g, addr, _stop) = replica(&f, "replica-metrics", settings).await;
    until_redis(&g, RedisState::Up).await;
    let mut hub = hub_on(&f, "watched", addr);

    // Shandong answers YELLOW without a rule: a policy violation.
    let key = Arc::new(f.attestation_key(&code("370000")).unwrap());
    let _fake = huren_tests::replace_node_with_fake(
        &mut f,
        &code("370000"),
        huren_tests::signing_script(move |req| {
            let mut p = huren_tests::green_payload(req, "370000");
            p.status = pb::HealthStatus::Yellow as i32;
            key.sign(&p)
        }),
    )
    .await;
    let err = hub.lookup(&code("370000"), &qr::new_token().unwrap(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition), "{err}");
    // A hub guessing tokens at Anhui is throttled.
    let mut prober = hub_on(&f, "prober", addr);
    for _ in 0..2 {
        let err = prober.lookup(&code("340000"), &qr::new_token().unwrap(), "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    }
    // Guangdong goes down: five failures open its breaker.
    f.stop_node(&code("440000")).deadline("Guangdong's node to stop").await.unwrap();
    for _ in 0..5 {
        let err = hub.lookup(&code("440000"), &qr::new_token().unwrap(), "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    }

    let readiness: huren_cli::admin::Readiness = Arc::new(|| (true, "ok".into()));
    let (admin, stop) = serve_admin(&metrics, readiness).await;
    let body = http_get(admin, "/metrics").await;
    let expect = [
        ("huren_gateway_policy_violations_total", vec![("province", "370000"), ("reason", "missing_rule")], 1.0),
        ("huren_gateway_hub_throttled_total", vec![("hub", "prober"), ("reason", "unknown_tokens")], 1.0),
        ("huren_gateway_redis_up", vec![], 1.0),
        ("huren_gateway_breaker_state", vec![("province", "440000")], 1.0),
        ("huren_gateway_breaker_state", vec![("province", "340000")], 0.0),
        ("huren_gateway_breaker_state", vec![("province", "370000")], 0.0),
        // By province pair: the Guangzhou hub asked Shandong and Anhui; the prober names no province.
        (
            "huren_gateway_lookups_total",
            vec![("from", "440000"), ("province", "370000"), ("outcome", "policy_violation")],
            1.0,
        ),
        (
            "huren_gateway_lookups_total",
            vec![("from", "unknown"), ("province", "340000"), ("outcome", "not_found")],
            2.0,
        ),
    ];
    for (name, labels, value) in expect {
        assert_eq!(series(&body, name, &labels), Some(value), "{name}{labels:?} in\n{body}");
    }
    assert!(
        series(&body, "huren_gateway_lookups_total", &[("province", "440000"), ("outcome", "unavailable")])
            >= Some(5.0)
    );
    let _ = stop.send(());
    delete_keys(&prefix).await;
}

/// `async fn $name(channel) -> Vec<String>`: the services a server lists over the reflection
/// protocol version `$version` (stock clients speak either), after checking that it also
/// answers a descriptor request.
macro_rules! reflected_services {
    ($name:ident, $version:ident) => {
        async fn $name(channel: tonic::transport::Channel) -> Vec<String> {
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::ServerReflectionRequest;
            let mut client = ServerReflectionClient::new(channel);
            let requests = [
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                },
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::FileContainingSymbol("huren.v1.LookupRequest".into())),
                },
            ];
            let mut answers = client.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();
            let mut listed: Vec<String> = match answers.message().await.unwrap().unwrap().message_response {
                Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
                other => panic!("not a service list: {other:?}"),
            };
            match answers.message().await.unwrap().unwrap().message_response {
                Some(MessageResponse::FileDescriptorResponse(files)) => {
                    assert!(!files.file_descriptor_proto.is_empty())
                }
                other => panic!("no descriptor for huren.v1.LookupRequest: {other:?}"),
            }
            listed.sort();
            listed
        }
    };
}
reflected_services!(reflected_services_v1, v1);
reflected_services!(reflected_services_v1alpha, v1alpha);

/// What a server must list over reflection: its own services, health and both reflection versions.
fn with_common_services(own: &[&str]) -> Vec<String> {
    let mut all: Vec<String> =
        ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]
            .iter()
            .chain(own)
            .map(|s| s.to_string())
            .collect();
    all.sort();
    all
}

#[tokio::test]
async fn gateway_and_node_answer_grpc_reflection() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let hub = f.identity("hub", "curious").unwrap();
    let gateway_channel = || huren_tests::client_channel(&hub, ExpectedPeer::AnyGateway, f.gateway_addr());
    let expected = with_common_services(&["huren.v1.Lookup", "huren.v1.TrustRegistry"]);
    assert_eq!(reflected_services_v1(gateway_channel()).await, expected, "the gateway lists what it serves (v1)");
    assert_eq!(reflected_services_v1alpha(gateway_channel()).await, expected, "and the same over v1alpha");
    let guangdong = code("440000");
    let probe = f.identity("gateway", "probe").unwrap();
    let node_channel = || huren_tests::node_channel(&f, &probe, &guangdong);
    let expected = with_common_services(&["huren.v1.Attestation", "huren.v1.StatusAdmin", "huren.v1.Transparency"]);
    assert_eq!(reflected_services_v1(node_channel()).await, expected, "the node lists what it serves (v1)");
    assert_eq!(reflected_services_v1alpha(node_channel()).await, expected, "and the same over v1alpha");
}
