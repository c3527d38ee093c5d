//! Resilience: a hanging province is bounded by its own deadline and concurrency limit and
//! slows no other province; shutdown drains the calls in flight and takes no new ones.
//! Every wait is on a channel (a call arriving at a held node, the gateway stopping), never
//! a sleep; deadlines only bound "does not hang".

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use huren_cli::demo::{demo_rules, demo_subjects, seed};
use huren_cli::federation::{Federation, FederationOptions, DEMO_PROVINCES};
use huren_cli::hub::HubClient;
use huren_gateway::{Gateway, GatewaySettings};
use huren_pki::live::LiveTrust;
use huren_pki::qr::Scanned;
use huren_tests::{code, green_payload, held_script, replace_node_with_async_fake, signing_script, Deadline};
use tonic::Code;

async fn start_with(options: FederationOptions) -> (Federation, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let f = Federation::start_with(dir.path(), &DEMO_PROVINCES, demo_rules(), options).await.unwrap();
    (f, dir)
}

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
