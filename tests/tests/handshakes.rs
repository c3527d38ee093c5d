//! Handshakes cannot be hoarded: idle connections that never start TLS, from one address,
//! and a ClientHello trickled a byte at a time do not keep a hub or a province's backend
//! from connecting to a gateway or a node (issue 14).
//!
//! The attack comes from 127.0.0.2 and 127.0.0.3 (Linux routes 127.0.0.0/8 to `lo`), the
//! legitimate clients from 127.0.0.1. Nothing here is timed: a legitimate call passes if
//! its client's own connect timeout (3 s) does not fail it.

use std::time::Duration;

use huren_bench::flood::{open_idle, raise_open_files_limit, Trickler, ATTACKER, TRICKLER};
use huren_cli::demo::seed;
use huren_cli::federation::{Federation, FederationOptions, DEMO_PROVINCES};
use huren_client::HubClient;
use huren_gateway::GatewaySettings;
use huren_runtime::tls::{HandshakeLimits, MAX_CONCURRENT_HANDSHAKES};
use huren_tests::{code, demo_rules, demo_subject, start, Deadline};
use tokio::io::AsyncReadExt;

/// Idle connections per flooded server: 5,000, or fewer if this process may not open
/// that many files (two servers flooded, each connection a descriptor on both sides).
fn idle_per_server() -> usize {
    let limit = raise_open_files_limit(21_000).unwrap_or(4096) as usize;
    let n = 5_000.min(limit.saturating_sub(1_000) / 4);
    assert!(n >= 1_000, "the open-files limit ({limit}) is too low for this test: raise it (ulimit -n 6000)");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_and_a_province_backend_connect_while_one_address_holds_thousands_of_idle_connections() {
    let f = start().await;
    let anhui = code("340000");
    let token = seed(&f, &demo_subject("340000"), 600).await.unwrap().token;
    f.register_hub("flood-victim", &["transit.rail"]).await.unwrap();
    let identity = f.identity("hub", "flood-victim").unwrap();
    let (gateway, node) = (f.gateway_addr(), f.node_addr(&anhui).unwrap());

    let n = idle_per_server();
    let idle_gateway = open_idle(gateway, ATTACKER, n).await;
    let idle_node = open_idle(node, ATTACKER, n).await;
    let held = (idle_gateway.len(), idle_node.len());
    assert!(held.0.min(held.1) > MAX_CONCURRENT_HANDSHAKES, "more idle connections than handshake slots: {held:?}");
    let _tricklers = [
        Trickler::start(gateway, TRICKLER, Duration::from_secs(1)),
        Trickler::start(node, TRICKLER, Duration::from_secs(1)),
    ];

    // A hub's new connection to the gateway (3 s connect timeout), whose lookup makes the
    // gateway connect to the flooded node too.
    let mut hub = HubClient::connect(&gateway.to_string(), &identity).unwrap();
    let found = hub.lookup(&anhui, &token, "transit.rail").deadline("the lookup").await;
    assert_eq!(found.expect("the hub connects within its connect timeout and looks up").status, "GREEN");
    // The province's backend: a new admin connection to its node (3 s connect timeout).
    let issued = seed(&f, &demo_subject("340000"), 600).deadline("the admin calls").await;
    issued.expect("the province backend connects within its connect timeout and issues a token");
    assert_eq!(held, (n, n), "the servers kept accepting connections");
    eprintln!("{n} idle connections to each of the gateway and the node, and two tricklers: lookups go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_handshake_slot_taken_a_new_connection_closes_the_oldest_and_tricklers_run_out_of_time() {
    let dir = tempfile::tempdir().unwrap();
    // No per-source cap to speak of: as if the idle connections came from many addresses.
    let handshakes = HandshakeLimits { max_pending: 64, max_pending_per_source: 64, ..HandshakeLimits::default() };
    let options = FederationOptions {
        gateway: GatewaySettings { handshakes, ..GatewaySettings::default() },
        ..FederationOptions::default()
    };
    let f = Federation::start_with(dir.path(), &DEMO_PROVINCES, demo_rules(), options).await.unwrap();
    let anhui = code("340000");
    let token = seed(&f, &demo_subject("340000"), 600).await.unwrap().token;
    f.register_hub("eviction-victim", &["transit.rail"]).await.unwrap();
    let identity = f.identity("hub", "eviction-victim").unwrap();
    let gateway = f.gateway_addr();

    let mut idle = open_idle(gateway, ATTACKER, 1_000).await;
    assert_eq!(idle.len(), 1_000, "the gateway kept accepting connections");
    // A hello of ~120 bytes at 4 bytes a second would take half a minute.
    let trickler = Trickler::start(gateway, TRICKLER, Duration::from_millis(250));

    let mut hub = HubClient::connect(&gateway.to_string(), &identity).unwrap();
    let found = hub.lookup(&anhui, &token, "transit.rail").deadline("the lookup").await;
    assert_eq!(found.expect("the hub connects within its connect timeout and looks up").status, "GREEN");

    // The oldest idle connection was closed by the server to make room.
    let mut buf = [0u8; 8];
    let read = idle[0].read(&mut buf).deadline("the oldest idle connection to be closed").await;
    assert!(matches!(read, Ok(0) | Err(_)), "the server sent bytes to a client that never said hello: {read:?}");
    // The deadline is for the whole handshake: the trickler is cut off mid-hello.
    let mut closes = trickler.closes();
    let closes = closes.wait_for(|c| !c.is_empty()).deadline("the trickler to be closed").await.unwrap().clone();
    assert!(closes[0].sent < closes[0].hello_len, "the trickler got to finish its hello: {closes:?}");
    f.shutdown().await.unwrap();
}
