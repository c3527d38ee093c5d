//! Who checked me: every lookup that reaches a subject is recorded at the home province's
//! node (hub, purpose, time, gateway, outcome), shown to the traveller through the
//! province's own admin identity, aggregated for auditors without subject identity, purged
//! past its window and deleted at the sunset with counts in the receipt. A check the
//! gateway answered from its cache while the home node was down reaches the log once the
//! node is back (handed in with `RecordDisclosures`, which only gateways may call).

use std::sync::Arc;
use std::time::Duration;

use huren_cli::audit::{scan_node_data, scan_node_data_raw, verify_receipt};
use huren_cli::federation::{Federation, FederationOptions};
use huren_client::HubClient;
use huren_gateway::{BreakerPolicy, DeliveryBackoff};
use huren_pki::qr::Scanned;
use huren_pki::{unix_now, ProvinceCode};
use huren_proto::pb;
use huren_runtime::clock::Clock;
use huren_runtime::error::details;
use huren_tests::{code, node_channel, registry_client, start_with, token_request, Deadline};
use prost::Message;
use tonic::Code;

/// Registers hub `id` (checking travellers in `province`, named `name` if given) for
/// `purposes`, publishes the list and connects it to the gateway.
async fn named_hub(f: &Federation, id: &str, name: Option<&str>, province: &str, purposes: &[&str]) -> HubClient {
    let purposes: Vec<String> = purposes.iter().map(|p| p.to_string()).collect();
    f.pki.register_hub(id, &purposes).unwrap();
    f.pki.set_hub_province(id, Some(&code(province))).unwrap();
    f.pki.set_hub_name(id, name).unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).deadline(&format!("every server to hold trust list {seq}")).await.unwrap();
    HubClient::connect(&f.gateway_addr().to_string(), &f.identity("hub", id).unwrap()).unwrap()
}

/// A GREEN subject at `province` and a fresh token (its QR) for it.
async fn subject(f: &Federation, province: &ProvinceCode, subject_ref: &str) -> Scanned {
    let mut admin = f.admin_client(province).unwrap();
    admin
        .upsert_status(pb::UpsertStatusRequest {
            subject_ref: subject_ref.into(),
            status: pb::HealthStatus::Green as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let issued = admin.issue_token(token_request(subject_ref, 600)).await.unwrap().into_inner();
    Scanned::parse(&issued.qr).unwrap()
}

/// The subject's disclosure log as its province's app backend reads it, once it holds `n`
/// records (the writer is off the lookup path: poll until it has written them).
async fn disclosures(f: &Federation, province: &ProvinceCode, subject_ref: &str, n: usize) -> Vec<pb::Disclosure> {
    let mut admin = f.admin_client(province).unwrap();
    let read = async {
        loop {
            let got = admin
                .list_disclosures(pb::ListDisclosuresRequest { subject_ref: subject_ref.into(), days: 7 })
                .await
                .unwrap()
                .into_inner()
                .disclosures;
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    read.deadline(&format!("{n} disclosure records of {subject_ref}")).await
}

#[tokio::test]
async fn a_traveller_sees_who_checked_them_and_no_hub_can() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let anhui = code("340000");
    let traveller = subject(&f, &anhui, "ah-dsc-traveller").await;
    let _other = subject(&f, &anhui, "ah-dsc-unchecked").await;
    let mut jinan = named_hub(&f, "jinan-west", Some("Jinan West railway station"), "370000", &["transit.rail"]).await;
    let mut venue = named_hub(&f, "gz-venue", None, "440000", &["venue.entry"]).await;

    let before = unix_now();
    jinan.lookup(traveller.province(), traveller.token(), "transit.rail").await.unwrap();
    venue.lookup(traveller.province(), traveller.token(), "venue.entry").await.unwrap();
    let log = disclosures(&f, &anhui, "ah-dsc-traveller", 2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    let by = |hub: &str| log.iter().find(|d| d.hub_id == hub).unwrap_or_else(|| panic!("{hub} in {log:?}"));
    let rail = by("jinan-west");
    // The hub as the trust list registers it, not as the hub described itself (it cannot).
    assert_eq!(
        (rail.hub_name.as_str(), rail.hub_province.as_str(), rail.purpose.as_str(), rail.outcome.as_str()),
        ("Jinan West railway station", "370000", "transit.rail", "attested")
    );
    assert!(rail.gateway.starts_with("spiffe://huren.gov/gateway/"), "{}", rail.gateway);
    assert!(rail.time >= before && rail.time <= unix_now());
    let gz = by("gz-venue");
    assert_eq!((gz.hub_name.as_str(), gz.hub_province.as_str(), gz.purpose.as_str()), ("", "440000", "venue.entry"));
    assert!(log[0].time >= log[1].time, "newest first");
    assert!(huren_client::disclosure_line(rail).starts_with("Jinan West railway station, transit.rail, "));
    // Nobody else was checked.
    let mut admin = f.admin_client(&anhui).unwrap();
    let none = admin
        .list_disclosures(pb::ListDisclosuresRequest { subject_ref: "ah-dsc-unchecked".into(), days: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(none.disclosures.is_empty());

    // No hub can read anyone's disclosures; nor can a gateway, an auditor, an authority or
    // another province's admin: the log never leaves the home province.
    for (kind, name) in [
        ("hub", "jinan-west"),
        ("gateway", "national-1"),
        ("auditor", "a"),
        ("admin", "440000"),
        ("authority", "340000/hefei-cdc"),
    ] {
        let who = f.identity(kind, name).unwrap();
        let mut client = pb::status_admin_client::StatusAdminClient::new(node_channel(&f, &who, &anhui));
        let err = client
            .list_disclosures(pb::ListDisclosuresRequest { subject_ref: "ah-dsc-traveller".into(), days: 7 })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{kind} {name}: {err:?}");
        assert_eq!(details(&err).map(|d| d.reason).as_deref(), Some("NOT_AUTHORIZED"), "{kind} {name}");
    }
    // Hubs do not see the aggregates either; auditors do, and they name no subject.
    let hub = f.identity("hub", "jinan-west").unwrap();
    let err = pb::transparency_client::TransparencyClient::new(node_channel(&f, &hub, &anhui))
        .get_hub_aggregates(pb::HubAggregatesRequest { since: 0, until: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let auditor = f.identity("auditor", "a").unwrap();
    let aggregates = pb::transparency_client::TransparencyClient::new(node_channel(&f, &auditor, &anhui))
        .get_hub_aggregates(pb::HubAggregatesRequest { since: before - 3600, until: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut rows: Vec<_> = aggregates
        .aggregates
        .iter()
        .map(|a| (a.hub_id.as_str(), a.hub_province.as_str(), a.purpose.as_str(), a.distinct_subjects, a.checks))
        .collect();
    rows.sort();
    assert_eq!(rows, [("gz-venue", "440000", "venue.entry", 1, 1), ("jinan-west", "370000", "transit.rail", 1, 1)]);
    assert_eq!(aggregates.disclosures_dropped, 0);
    let bytes = aggregates.encode_to_vec();
    for needle in [b"ah-dsc-traveller".as_slice(), traveller.token()] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "aggregates hold personal data");
    }
    let ranked = huren_client::rank_hubs(
        &aggregates.aggregates,
        &f.gateway_trust().unwrap().current(),
        huren_client::OverCheck::default(),
    );
    assert_eq!(ranked.len(), 2);
    assert!(ranked.iter().all(|r| r.flags.is_empty()), "{ranked:?}");
}

#[tokio::test]
async fn a_node_answers_no_attest_that_does_not_say_which_hub_asked() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let anhui = code("340000");
    let traveller = subject(&f, &anhui, "ah-dsc-direct").await;
    let gateway = f.identity("gateway", "national-1").unwrap();
    let mut node = pb::attestation_client::AttestationClient::new(node_channel(&f, &gateway, &anhui));
    let ask = |hub: &str, province: &str| pb::AttestRequest {
        token: traveller.token().to_vec(),
        purpose: "transit.rail".into(),
        hub_id: hub.into(),
        hub_province: province.into(),
    };
    for (hub, province) in [("", ""), ("", "370000"), ("jinan/west", ""), ("jinan-west", "37")] {
        let err = node.attest(ask(hub, province)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{hub:?} {province:?}: {err:?}");
        assert_eq!(details(&err).map(|d| d.reason).as_deref(), Some("HUB_CONTEXT_REQUIRED"));
    }
    // With it, the node answers and records the check.
    node.attest(ask("jinan-west", "370000")).await.unwrap();
    let log = disclosures(&f, &anhui, "ah-dsc-direct", 1).await;
    assert_eq!((log.len(), log[0].hub_id.as_str()), (1, "jinan-west"), "only the answered call is recorded");
}

/// Log lines of every thread (the node's writer and store calls run on blocking threads).
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn checks_leave_no_token_or_subject_reference_in_the_logs() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    // The only test of this binary that installs a global subscriber.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let (f, _dir) = start_with(FederationOptions::default()).await;
    let anhui = code("340000");
    let traveller = subject(&f, &anhui, "ah-dsc-private").await;
    let mut hub = named_hub(&f, "sd-logs", Some("Log test hub"), "370000", &["transit.rail"]).await;
    hub.lookup(traveller.province(), traveller.token(), "transit.rail").await.unwrap();
    let unknown = [9u8; 16];
    let _ = hub.lookup(&anhui, &unknown, "transit.rail").await.unwrap_err();
    disclosures(&f, &anhui, "ah-dsc-private", 1).await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("node serving"), "the subscriber saw the servers' logs");
    let token_text = huren_pki::qr::token_to_text(traveller.token());
    let token_hex: String = traveller.token().iter().map(|b| format!("{b:02x}")).collect();
    for needle in ["ah-dsc-private", token_text.as_str(), token_hex.as_str(), "Log test hub"] {
        assert!(!text.contains(needle), "{needle:?} appears in the logs");
    }
}

#[tokio::test]
async fn disclosures_are_purged_past_their_window_in_the_trust_list() {
    let t0 = unix_now();
    let (clock, hand) = Clock::manual(t0);
    let mut options = FederationOptions::default();
    options.node.clock = clock;
    options.node.retention_interval = Duration::from_millis(20);
    let (f, _dir) = start_with(options).await;
    f.pki.set_disclosure_retention(3600).unwrap();
    let anhui = code("340000");
    let traveller = subject(&f, &anhui, "ah-dsc-old").await;
    let mut hub = named_hub(&f, "sd-retention", None, "370000", &["transit.rail"]).await;
    assert_eq!(f.node_trust(&anhui).unwrap().current().disclosure_max_age(), 3600);
    hub.lookup(traveller.province(), traveller.token(), "transit.rail").await.unwrap();
    disclosures(&f, &anhui, "ah-dsc-old", 1).await;

    let mut purges = f.node_purges(&anhui).unwrap();
    hand.advance(3601);
    let report = purges
        .wait_for(|r| r.time >= t0 + 3601 && r.deleted.contains_key("disclosure"))
        .deadline("Anhui's retention purge of the disclosure at t0 + 3601 s")
        .await
        .unwrap()
        .clone();
    assert_eq!(report.deleted.get("disclosure"), Some(&1));
    let mut admin = f.admin_client(&anhui).unwrap();
    let left = admin
        .list_disclosures(pb::ListDisclosuresRequest { subject_ref: "ah-dsc-old".into(), days: 366 })
        .await
        .unwrap()
        .into_inner();
    assert!(left.disclosures.is_empty(), "{left:?}");
}

#[tokio::test]
async fn the_sunset_deletes_every_disclosure_and_the_receipt_counts_them() {
    let (mut f, _dir) = start_with(FederationOptions {
        node: huren_node::NodeSettings { retention_interval: Duration::from_millis(20), ..Default::default() },
        ..Default::default()
    })
    .await;
    let anhui = code("340000");
    let traveller = subject(&f, &anhui, "ah-dsc-sunset").await;
    let mut hub = named_hub(&f, "sd-sunset", Some("Sunset hub"), "370000", &["transit.rail", "venue.entry"]).await;
    hub.lookup(traveller.province(), traveller.token(), "transit.rail").await.unwrap();
    hub.lookup(traveller.province(), traveller.token(), "venue.entry").await.unwrap();
    disclosures(&f, &anhui, "ah-dsc-sunset", 2).await;

    let mut receipts = f.gateway_receipts().unwrap();
    f.pki.set_sunset(unix_now(), "the epidemic-control mandate has ended").unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).deadline(&format!("every server to hold the sunset trust list {seq}")).await.unwrap();
    receipts.wait_for(|n| *n == 3).deadline("the gateway to hold all three sunset deletion receipts").await.unwrap();
    let list =
        registry_client(&f, "coordinator", "nhc").list_receipts(pb::ListReceiptsRequest {}).await.unwrap().into_inner();
    let trust = f.gateway_trust().unwrap().current();
    let checked = list
        .receipts
        .iter()
        .map(|r| verify_receipt(&trust, r, None).unwrap())
        .find(|c| c.province == "340000")
        .expect("Anhui's receipt");
    assert_eq!(checked.deleted.get("disclosure"), Some(&2), "{checked:?}");
    // One aggregate per purpose of the hour.
    assert_eq!(checked.deleted.get("hub_aggregate"), Some(&2), "{checked:?}");
    assert!(checked.remaining.is_empty(), "{checked:?}");

    f.stop_node(&anhui).deadline("Anhui's node to stop (graceful drain)").await.unwrap();
    let counts = scan_node_data(&f.node_data_dir(&anhui)).unwrap();
    assert_eq!((counts.get("disclosure_log"), counts.get("hub_aggregate")), (Some(&0), Some(&0)), "{counts:?}");
    assert!(counts.values().all(|v| *v == 0), "{counts:?}");
    // (The hub's id stays in the public trust list file; the subject is nowhere.)
    let found = scan_node_data_raw(&f.node_data_dir(&anhui), &[b"ah-dsc-sunset".to_vec()]).unwrap();
    assert!(found.is_empty(), "{found:?}");
}

#[tokio::test]
async fn a_second_hub_checking_within_the_cache_window_is_recorded_too() {
    // The gateway caches per hub: another hub's lookup of the same token and purpose moments
    // later reaches the home node (and so the traveller's log) instead of the first hub's
    // cache entry.
    let mut options = FederationOptions::default();
    options.gateway.cache = true;
    let (f, _dir) = start_with(options).await;
    let anhui = code("340000");
    let traveller = subject(&f, &anhui, "ah-dsc-two-hubs").await;
    let mut first = named_hub(&f, "jinan-east", Some("Jinan East railway station"), "370000", &["transit.rail"]).await;
    let mut second =
        named_hub(&f, "qingdao-north", Some("Qingdao North railway station"), "370000", &["transit.rail"]).await;
    first.lookup(traveller.province(), traveller.token(), "transit.rail").await.unwrap();
    second.lookup(traveller.province(), traveller.token(), "transit.rail").await.unwrap();
    let log = disclosures(&f, &anhui, "ah-dsc-two-hubs", 2).await;
    let mut hubs: Vec<&str> = log.iter().map(|d| d.hub_id.as_str()).collect();
    hubs.sort_unstable();
    assert_eq!(hubs, ["jinan-east", "qingdao-north"], "{log:?}");
}

#[tokio::test]
async fn a_check_answered_from_the_cache_while_the_node_was_down_reaches_the_log_once_it_is_back() {
    let metrics = huren_cli::telemetry::PrometheusMetrics::new().unwrap();
    let mut options = FederationOptions::default();
    options.gateway.cache = true;
    // Nothing is fresh: every lookup asks the node, the cache answers only when it fails.
    options.gateway.cache_fresh = Duration::ZERO;
    // Quick retries of the hand-in, and a short fail-fast period of the breaker its failed
    // attempts may open while the node is down.
    options.gateway.disclosure_backoff =
        DeliveryBackoff { first: Duration::from_millis(50), max: Duration::from_millis(200) };
    options.gateway.breaker = BreakerPolicy { failures: 5, open_for: Duration::from_millis(200) };
    options.gateway.meter = Some(metrics.meter("huren-gateway"));
    let (mut f, _dir) = start_with(options).await;
    let anhui = code("340000");
    let traveller = subject(&f, &anhui, "ah-dsc-outage").await;
    let mut hub = named_hub(&f, "jinan-outage", Some("Jinan outage station"), "370000", &["transit.rail"]).await;
    let first = unix_now();
    hub.lookup(traveller.province(), traveller.token(), "transit.rail").await.unwrap();
    disclosures(&f, &anhui, "ah-dsc-outage", 1).await;

    // Anhui's node goes down (its store stays): the hub is shown the cached attestation, and
    // the node cannot record the check.
    let addr = f.stop_node(&anhui).deadline("Anhui's node to stop (graceful drain)").await.unwrap();
    let before = unix_now();
    let shown = hub.lookup(traveller.province(), traveller.token(), "transit.rail").await.unwrap();
    let after = unix_now();
    assert_eq!(shown.status, "GREEN");
    assert_eq!(metrics.value("huren_gateway_cache_lookups_total", &[("result", "stale")]), 1.0);

    // Back on the same store: the gateway hands the check in, and the traveller sees it.
    f.restart_node(&anhui, addr).await.unwrap();
    let log = disclosures(&f, &anhui, "ah-dsc-outage", 2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    let with =
        |outcome: &str| log.iter().find(|d| d.outcome == outcome).unwrap_or_else(|| panic!("{outcome}: {log:?}"));
    let (stale, attested) = (with("served_from_cache"), with("attested"));
    assert_eq!(
        (stale.hub_id.as_str(), stale.hub_name.as_str(), stale.hub_province.as_str(), stale.purpose.as_str()),
        ("jinan-outage", "Jinan outage station", "370000", "transit.rail")
    );
    // When the gateway served it, not when the node heard of it.
    assert!(stale.time >= before && stale.time <= after, "{} not in [{before}, {after}]", stale.time);
    assert!(attested.time >= first && attested.time <= stale.time);
    assert_eq!(stale.gateway, attested.gateway, "the gateway that served it, as its certificate says");
    assert_eq!(metrics.value("huren_gateway_deferred_disclosures_dropped_total", &[("province", "340000")]), 0.0);

    // Counted in the hub aggregates like any other check (the restart may count the subject
    // once more in that hour: over, never under).
    let auditor = f.identity("auditor", "a").unwrap();
    let aggregates = pb::transparency_client::TransparencyClient::new(node_channel(&f, &auditor, &anhui))
        .get_hub_aggregates(pb::HubAggregatesRequest { since: first - 3600, until: 0 })
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<_> = aggregates.aggregates.iter().filter(|a| a.hub_id == "jinan-outage").collect();
    assert_eq!(rows.iter().map(|a| a.checks).sum::<u64>(), 2, "{rows:?}");
    assert!(rows.iter().all(|a| a.distinct_subjects >= 1 && a.purpose == "transit.rail"), "{rows:?}");
}

#[tokio::test]
async fn only_gateways_hand_in_cached_checks_and_each_entry_is_judged() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let anhui = code("340000");
    let traveller = subject(&f, &anhui, "ah-dsc-handed-in").await;
    let digest = huren_pki::attest::token_digest(traveller.token()).to_vec();
    let now = unix_now();
    let entry = |token_digest: Vec<u8>, checked_at: i64| pb::DeferredDisclosure {
        token_digest,
        hub_id: "qingdao-outage".into(),
        hub_province: "370000".into(),
        purpose: "transit.rail".into(),
        checked_at,
    };
    let request = |entries: Vec<pb::DeferredDisclosure>| pb::RecordDisclosuresRequest { entries };

    // Hubs (and anyone else but a gateway) cannot write into anyone's disclosure log.
    for (kind, name) in [("hub", "qingdao-outage"), ("admin", "340000"), ("auditor", "a")] {
        let who = f.identity(kind, name).unwrap();
        let err = pb::attestation_client::AttestationClient::new(node_channel(&f, &who, &anhui))
            .record_disclosures(request(vec![entry(digest.clone(), now)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{kind}: {err:?}");
        assert_eq!(details(&err).map(|d| d.reason).as_deref(), Some("NOT_AUTHORIZED"), "{kind}");
    }

    // A malformed entry refuses the whole call, saying which entry and which field.
    let gateway = f.identity("gateway", "national-1").unwrap();
    let mut node = pb::attestation_client::AttestationClient::new(node_channel(&f, &gateway, &anhui));
    let cases = [
        (
            vec![entry(digest.clone(), now), entry(digest[..16].to_vec(), now)],
            "token_digest",
            "entries[1].token_digest must be 32 bytes (the SHA-256 of the token), got 16",
        ),
        (
            vec![pb::DeferredDisclosure { hub_id: "Qingdao Outage".into(), ..entry(digest.clone(), now) }],
            "hub_id",
            "entries[0].hub_id must be a hub's <id>: 1-64 characters of a-z, 0-9, '-', '_', '.'",
        ),
        (vec![], "entries", "a RecordDisclosures call carries 1 to 250 entries, got 0"),
        (
            vec![entry(digest.clone(), now); 251],
            "entries",
            "a RecordDisclosures call carries 1 to 250 entries, got 251",
        ),
    ];
    for (entries, field, message) in cases {
        let err = node.record_disclosures(request(entries)).await.unwrap_err();
        let read = details(&err).expect("error details");
        assert_eq!(
            (err.code(), err.message(), read.reason.as_str(), read.metadata.get("field").map(String::as_str)),
            (Code::InvalidArgument, message, "INVALID_REQUEST", Some(field))
        );
    }

    // Each well-formed entry is recorded, or counted: an unknown token, older than the
    // retention window (30 days by default), or ahead of the node's clock.
    let counts = node
        .record_disclosures(request(vec![
            entry(digest.clone(), now - 5),
            entry(vec![7; 32], now),
            entry(digest.clone(), now - 31 * 86_400),
            entry(digest.clone(), now + 3600),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((counts.recorded, counts.token_unknown, counts.too_old, counts.in_future), (1, 1, 1, 1), "{counts:?}");
    let log = disclosures(&f, &anhui, "ah-dsc-handed-in", 1).await;
    assert_eq!(log.len(), 1, "the refused calls recorded nothing: {log:?}");
    assert_eq!(
        (log[0].hub_id.as_str(), log[0].outcome.as_str(), log[0].time, log[0].gateway.as_str()),
        ("qingdao-outage", "served_from_cache", now - 5, "spiffe://huren.gov/gateway/national-1")
    );
}
