//! Resilience: a hanging province is bounded by its own deadline and concurrency limit and
//! slows no other province; shutdown drains the calls in flight and takes no new ones; a
//! failed node call is retried once where safe (and on a standby endpoint if listed); the
//! cache answers within its fresh window and, past it, only when the node fails.
//! Every wait is on a channel (a call arriving at a held node, the gateway stopping), never
//! a sleep; deadlines only bound "does not hang".

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use huren_cli::demo::{demo_subjects, seed};
use huren_cli::federation::{Federation, FederationOptions};
use huren_cli::hub::HubClient;
use huren_gateway::{Gateway, GatewaySettings};
use huren_pki::qr::Scanned;
use huren_runtime::live::LiveTrust;
use huren_tests::{
    code, green_payload, held_script, replace_node_with_async_fake, signing_script, start_with, Deadline,
};
use tonic::Code;

/// Well inside the 30 s default deadline of these tests: a lookup that takes longer was
/// held up by the hanging province.
const UNAFFECTED: Duration = Duration::from_secs(10);

/// A node answering every call with a valid GREEN attestation of `province`, once released.
fn green_node(f: &Federation, province: &str) -> huren_tests::Script {
    let key = Arc::new(f.attestation_key(&code(province)).unwrap());
    let province = province.to_owned();
    signing_script(move |req| key.sign(&green_payload(req, &province)))
}

#[tokio::test]
async fn a_hanging_province_neither_slows_the_others_nor_outlives_its_deadline() {
    let mut options = FederationOptions::default();
    // The default deadline is long; Guangdong's override is short; two calls per province.
    options.gateway.node_timeout = Duration::from_secs(30);
    options.gateway.province_timeouts.insert("440000".into(), Duration::from_millis(300));
    options.gateway.node_concurrency = 2;
    let (mut f, _dir) = start_with(options).await;
    f.register_hub("patient", &["transit.rail"]).deadline("hub patient registered on every server").await.unwrap();
    let hub_identity = f.identity("hub", "patient").unwrap();
    let connect = |f: &Federation| HubClient::connect(&f.gateway_addr().to_string(), &hub_identity).unwrap();
    let anhui = Scanned::parse(&seed(&f, &demo_subjects()[0], 600).await.unwrap().qr).unwrap();
    let mut hub = connect(&f);
    hub.lookup(anhui.province(), anhui.token(), "transit.rail").await.unwrap();

    // Shandong holds every call until released; Guangdong never answers at all.
    let (held, mut shandong) = held_script(green_node(&f, "370000"));
    let _shandong = replace_node_with_async_fake(&mut f, &code("370000"), held).await;
    let _guangdong = replace_node_with_async_fake(&mut f, &code("440000"), huren_tests::hanging_script()).await;

    // Three Shandong lookups: two reach the node, the third waits for a slot.
    let mut stuck = Vec::new();
    for _ in 0..3 {
        let mut client = connect(&f);
        stuck.push(tokio::spawn(async move {
            client.lookup(&code("370000"), &huren_pki::qr::new_token().unwrap(), "transit.rail").await
        }));
    }
    shandong.arrived(2).await;
    let mut client = connect(&f);
    let guangdong = tokio::spawn(async move {
        client.lookup(&code("440000"), &huren_pki::qr::new_token().unwrap(), "transit.rail").await
    });

    // Anhui is served while Shandong's calls hang and Guangdong's runs into its deadline.
    for _ in 0..5 {
        let status = tokio::time::timeout(UNAFFECTED, hub.lookup(anhui.province(), anhui.token(), "transit.rail"))
            .await
            .expect("an Anhui lookup was held up by a hanging province")
            .unwrap();
        assert_eq!(status.status, "GREEN");
    }
    assert!(stuck.iter().all(|t| !t.is_finished()), "Shandong's calls are still held");
    assert_eq!(shandong.calls.load(Ordering::SeqCst), 2, "at most node_concurrency calls reach a province");

    // Guangdong: refused within its own 300 ms deadline, not the 30 s default.
    let err = tokio::time::timeout(UNAFFECTED, guangdong)
        .await
        .expect("Guangdong's lookup outlived its per-province deadline")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::DeadlineExceeded), "{err}");
    assert!(err.to_string().contains("province 440000 node did not answer in time; retrying is safe"), "{err}");

    // Released, Shandong answers all three, the queued one included.
    shandong.release.send_replace(true);
    for t in stuck {
        let status = t.deadline("a released Shandong lookup").await.unwrap().unwrap();
        assert_eq!(status.status, "GREEN");
    }
    assert_eq!(shandong.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn shutdown_drains_the_lookup_in_flight_and_refuses_new_connections() {
    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    f.register_hub("last-train", &["transit.rail"])
        .deadline("hub last-train registered on every server")
        .await
        .unwrap();
    let (held, mut shandong) = held_script(green_node(&f, "370000"));
    let _fake = replace_node_with_async_fake(&mut f, &code("370000"), held).await;

    // A gateway served in process, stopped by a oneshot as `huren gateway` is by SIGTERM.
    let tls = f.identity("gateway", "draining").unwrap();
    let trust = LiveTrust::new(f.gateway_trust().unwrap().current().as_ref().clone(), tls.root.to_vec(), None).unwrap();
    let gateway = Gateway::new(tls, trust, GatewaySettings::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stopping = gateway.stopping();
    let server = tokio::spawn(gateway.serve(listener, async {
        let _ = stopped.await;
    }));

    let hub_identity = f.identity("hub", "last-train").unwrap();
    let mut hub = HubClient::connect(&addr.to_string(), &hub_identity).unwrap();
    let in_flight =
        tokio::spawn(
            async move { hub.lookup(&code("370000"), &huren_pki::qr::new_token().unwrap(), "transit.rail").await },
        );
    shandong.arrived(1).await;

    // SIGTERM: the gateway stops taking connections while the lookup is still held.
    stop.send(()).unwrap();
    stopping.wait_for(|s| *s).deadline("the gateway to begin shutting down").await.unwrap();
    let mut late = HubClient::connect(&addr.to_string(), &hub_identity).unwrap();
    let err = late
        .lookup(&code("370000"), &huren_pki::qr::new_token().unwrap(), "transit.rail")
        .deadline("a lookup on a new connection to a stopping gateway")
        .await
        .unwrap_err();
    assert!(err.is_transport() || err.code() == Some(Code::Unavailable), "a new connection was served: {err}");
    assert_eq!(shandong.calls.load(Ordering::SeqCst), 1, "the late lookup reached no node");
    assert!(!in_flight.is_finished() && !server.is_finished(), "the server waits for the call in flight");

    // The node answers: the lookup in flight completes, then the server has drained.
    shandong.release.send_replace(true);
    let status = in_flight.deadline("the lookup in flight").await.unwrap().unwrap();
    assert_eq!(status.status, "GREEN");
    server.deadline("the gateway to finish draining").await.unwrap().unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed once the gateway has stopped");
}

/// What a planned node answers: the codes in `next` first (one per call), then
/// `otherwise` on every call (`None`: a valid GREEN attestation).
#[derive(Default)]
struct Plan {
    next: std::collections::VecDeque<Code>,
    otherwise: Option<Code>,
}

/// A node of `province` answering by `plan`, counting the calls that reach it.
fn planned_node(
    f: &Federation,
    province: &str,
) -> (huren_tests::Script, Arc<std::sync::Mutex<Plan>>, Arc<std::sync::atomic::AtomicUsize>) {
    let green = green_node(f, province);
    let plan = Arc::new(std::sync::Mutex::new(Plan::default()));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (planned, counted) = (plan.clone(), calls.clone());
    let script: huren_tests::Script = Arc::new(move |req| {
        counted.fetch_add(1, Ordering::SeqCst);
        let mut plan = planned.lock().unwrap();
        match plan.next.pop_front().or(plan.otherwise) {
            None => green(req),
            Some(code) => Err(tonic::Status::new(code, "planned failure")),
        }
    });
    (script, plan, calls)
}

#[tokio::test]
async fn a_failed_node_call_is_retried_once_and_only_where_a_retry_is_safe() {
    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    let mut hub = f.hub("retrying").deadline("hub retrying registered on every server").await.unwrap();
    let (script, plan, calls) = planned_node(&f, "340000");
    let _anhui = huren_tests::replace_node_with_fake(&mut f, &code("340000"), script).await;
    let token = huren_pki::qr::new_token().unwrap();
    let mut lookup = async |next: &[Code]| {
        plan.lock().unwrap().next = next.iter().copied().collect();
        let before = calls.load(Ordering::SeqCst);
        let result = hub.lookup(&code("340000"), &token, "transit.rail").await;
        (result, calls.load(Ordering::SeqCst) - before)
    };

    // A node that cannot serve for a moment (UNAVAILABLE, e.g. draining): the second try answers.
    let (result, made) = lookup(&[Code::Unavailable]).await;
    assert_eq!(result.unwrap().status, "GREEN");
    assert_eq!(made, 2, "one retry after UNAVAILABLE");

    // Only one retry: twice unavailable is the hub's UNAVAILABLE.
    let (result, made) = lookup(&[Code::Unavailable, Code::Unavailable]).await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    assert_eq!(made, 2, "no second retry");

    // Answers about the token, and node faults that a retry cannot cure, are not retried.
    for (answer, seen) in [
        (Code::NotFound, Code::NotFound),
        (Code::FailedPrecondition, Code::FailedPrecondition),
        (Code::InvalidArgument, Code::Unavailable),
        (Code::PermissionDenied, Code::Unavailable),
        (Code::Internal, Code::Unavailable),
    ] {
        let (result, made) = lookup(&[answer]).await;
        let err = result.unwrap_err();
        assert_eq!(err.code(), Some(seen), "node answered {answer:?}: {err}");
        assert_eq!(made, 1, "node answered {answer:?}: not retried");
    }
}

#[tokio::test]
async fn retries_stay_within_the_province_retry_budget() {
    let mut options = FederationOptions::default();
    // No floor; one retry per two lookups.
    options.gateway.retry_budget = huren_gateway::retry::RetryBudget { min_per_sec: 0, ratio: 0.5 };
    let (mut f, _dir) = start_with(options).await;
    let mut hub = f.hub("budgeted").deadline("hub budgeted registered on every server").await.unwrap();
    let (script, plan, calls) = planned_node(&f, "340000");
    let _anhui = huren_tests::replace_node_with_fake(&mut f, &code("340000"), script).await;
    let token = huren_pki::qr::new_token().unwrap();
    // Every first call fails: the first lookup has not earned a retry yet, the second has.
    for (lookup, retried) in [(1, false), (2, true)] {
        plan.lock().unwrap().next = [Code::Unavailable].into();
        let before = calls.load(Ordering::SeqCst);
        let result = hub.lookup(&code("340000"), &token, "transit.rail").await;
        assert_eq!(result.is_ok(), retried, "lookup {lookup}: {result:?}");
        assert_eq!(calls.load(Ordering::SeqCst) - before, if retried { 2 } else { 1 }, "lookup {lookup}");
    }
}

#[tokio::test]
async fn a_dead_first_endpoint_fails_over_to_the_province_standby_and_stays_there() {
    let mut options = FederationOptions::default();
    let metrics = huren_cli::telemetry::PrometheusMetrics::new().unwrap();
    options.gateway.meter = Some(metrics.meter("huren-gateway"));
    let (f, _dir) = start_with(options).await;
    let anhui = Scanned::parse(&seed(&f, &demo_subjects()[0], 600).await.unwrap().qr).unwrap();
    // The primary accepts connections and drops them at once (a crashed host behind a
    // load balancer); the real node is listed second.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let _dead = tokio::spawn(async move {
        while let Ok((socket, _)) = dead.accept().await {
            drop(socket);
        }
    });
    let real = f.node_addr(&code("340000")).unwrap();
    f.pki.set_endpoints(&code("340000"), &[format!("https://{dead_addr}"), format!("https://{real}")]).unwrap();
    let mut hub = f.hub("failover").deadline("hub failover registered on every server").await.unwrap();
    assert_eq!(f.trust_list().unwrap().province(&code("340000")).unwrap().endpoints.len(), 2);

    // More lookups than the breaker tolerates failures: every one is served, by the standby.
    for _ in 0..8 {
        let status = hub.lookup(anhui.province(), anhui.token(), "transit.rail").await.unwrap();
        assert_eq!(status.status, "GREEN");
    }
    // Only the first lookup paid for the dead primary: the others went to the standby first.
    assert_eq!(metrics.value("huren_gateway_node_retries_total", &[("province", "340000")]), 1.0);
}

#[tokio::test]
async fn past_its_fresh_window_a_cached_attestation_is_served_only_when_the_node_fails() {
    let mut options = FederationOptions::default();
    options.gateway.cache = true;
    // Nothing is fresh: every lookup asks the node, the cache answers only when it fails.
    options.gateway.cache_fresh = Duration::ZERO;
    let metrics = huren_cli::telemetry::PrometheusMetrics::new().unwrap();
    options.gateway.meter = Some(metrics.meter("huren-gateway"));
    let (mut f, _dir) = start_with(options).await;
    let mut hub = f.hub("stale").deadline("hub stale registered on every server").await.unwrap();
    let (script, plan, calls) = planned_node(&f, "340000");
    let _anhui = huren_tests::replace_node_with_fake(&mut f, &code("340000"), script).await;
    let token = huren_pki::qr::new_token().unwrap();
    let anhui = code("340000");

    // Cached, then revalidated: the node is asked each time.
    for asked in 1..=2 {
        assert_eq!(hub.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");
        assert_eq!(calls.load(Ordering::SeqCst), asked, "past the fresh window the node is asked");
    }

    // The node fails on every call: the cached attestation is served, through the retries,
    // the breaker opening and its fail-fast period.
    plan.lock().unwrap().otherwise = Some(Code::Unavailable);
    for _ in 0..8 {
        assert_eq!(hub.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");
    }
    let reached = calls.load(Ordering::SeqCst);
    assert!(reached < 2 + 8 * 2, "the open breaker spared the node some calls ({reached})");
    // A token never cached gets the failure.
    let err = hub.lookup(&anhui, &huren_pki::qr::new_token().unwrap(), "transit.rail").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");

    let cache = |result| metrics.value("huren_gateway_cache_lookups_total", &[("result", result)]);
    assert_eq!((cache("miss"), cache("revalidated"), cache("stale"), cache("hit")), (2.0, 1.0, 8.0, 0.0));
    assert!(metrics.value("huren_gateway_node_retries_total", &[("province", "340000")]) >= 1.0);
}

#[tokio::test]
async fn within_its_fresh_window_a_cached_attestation_is_served_without_asking_the_node() {
    let mut options = FederationOptions::default();
    options.gateway.cache = true;
    options.gateway.cache_fresh = Duration::from_secs(3600);
    let (mut f, _dir) = start_with(options).await;
    let mut hub = f.hub("fresh").deadline("hub fresh registered on every server").await.unwrap();
    let (script, _plan, calls) = planned_node(&f, "340000");
    let _anhui = huren_tests::replace_node_with_fake(&mut f, &code("340000"), script).await;
    let token = huren_pki::qr::new_token().unwrap();
    for _ in 0..3 {
        assert_eq!(hub.lookup(&code("340000"), &token, "transit.rail").await.unwrap().status, "GREEN");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the cache answered the repeats");
}

#[tokio::test]
async fn a_node_answer_about_the_token_overrules_the_cache() {
    let mut options = FederationOptions::default();
    options.gateway.cache = true;
    options.gateway.cache_fresh = Duration::ZERO;
    let (mut f, _dir) = start_with(options).await;
    let mut hub = f.hub("overruled").deadline("hub overruled registered on every server").await.unwrap();
    let (script, plan, _calls) = planned_node(&f, "340000");
    let _anhui = huren_tests::replace_node_with_fake(&mut f, &code("340000"), script).await;
    let anhui = code("340000");
    for answer in [Code::NotFound, Code::FailedPrecondition] {
        let token = huren_pki::qr::new_token().unwrap();
        plan.lock().unwrap().otherwise = None;
        assert_eq!(hub.lookup(&anhui, &token, "transit.rail").await.unwrap().status, "GREEN");

        // The province now says the token is unknown (revoked) or its status lapsed: that
        // is the answer, not the cached GREEN.
        plan.lock().unwrap().next = [answer].into();
        let err = hub.lookup(&anhui, &token, "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(answer), "{err}");

        // And the cached GREEN is gone: a failing node afterwards leaves nothing to serve.
        plan.lock().unwrap().next = [Code::Unavailable, Code::Unavailable].into();
        let err = hub.lookup(&anhui, &token, "transit.rail").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::Unavailable), "{answer:?} dropped the cached attestation: {err}");
    }
}
