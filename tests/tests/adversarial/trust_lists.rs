//! Rolled-back, mis-signed and malformed trust lists, uploaded by a real coordinator;
//! and, beyond the table, what a revocation must reach at once: the revoked hub's open
//! `Watch` stream, and attestations cached from a revoked node (in process and, through
//! Redis, at every replica).

use std::time::Duration;

use huren_cli::demo::seed;
use huren_cli::federation::{Federation, FederationOptions};
use huren_cli::telemetry::PrometheusMetrics;
use huren_gateway::shared::RedisState;
use huren_gateway::{Gateway, GatewaySettings};
use huren_pki::ca::{self, Validity};
use huren_pki::trust::{self, TrustList};
use huren_proto::pb;
use huren_runtime::live::LiveTrust;
use huren_runtime::tls::{ExpectedPeer, TlsIdentity};
use huren_tests::{client_channel, code, demo_subject, start, start_with, Deadline, RedisPrefix};
use prost::Message;
use tonic::Code;

use crate::common::Expect::Status;
use crate::common::{case, newer_list, reason, root_signed, rows, upload_as_coordinator};

rows![
    // --- rolled-back and mis-signed trust lists (uploaded by a real coordinator)
    case(
        trust_list_rolled_back_to_an_older_sequence,
        "trust list rolled back to an older sequence",
        Status(Code::FailedPrecondition, "is not newer than the held sequence"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| l.sequence -= 11);
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        another_list_under_the_held_sequence,
        "another list under the held sequence (a re-upload of the very list held is a no-op)",
        Status(Code::FailedPrecondition, "is not newer than the held sequence"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    l.sequence -= 10;
                    l.issued_at += 1;
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        trust_list_signed_by_a_province_ca_key,
        "trust list signed by a province CA key",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let list = newer_list(&c);
                let signed = trust::sign(&list, &c.f.pki.province_ca(&code("340000")).expect("CA")).expect("sign");
                upload_as_coordinator(&c, signed).await
            })
        },
    ),
    case(
        trust_list_signed_by_a_foreign_root,
        "trust list signed by a foreign root",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let list = newer_list(&c);
                let foreign = ca::new_root("huren.gov", Validity::days(1)).expect("foreign root");
                upload_as_coordinator(&c, trust::sign(&list, &foreign).expect("sign")).await
            })
        },
    ),
    case(
        trust_list_payload_altered_after_signing,
        "trust list payload altered after signing",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let mut signed = root_signed(&c, |_| {});
                let mut list = pb::TrustList::decode(signed.payload.as_slice()).expect("decode");
                list.revoked_serials.clear();
                list.sequence += 1;
                signed.payload = list.encode_to_vec();
                upload_as_coordinator(&c, signed).await
            })
        },
    ),
    case(
        trust_list_with_a_truncated_signature,
        "trust list with a truncated signature",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let mut signed = root_signed(&c, |_| {});
                signed.signature.truncate(signed.signature.len() / 2);
                upload_as_coordinator(&c, signed).await
            })
        },
    ),
    case(
        trust_list_without_a_signature,
        "trust list without a signature",
        Status(Code::InvalidArgument, "does not verify against the national root"),
        |c| {
            Box::pin(async move {
                let mut signed = root_signed(&c, |_| {});
                signed.signature.clear();
                upload_as_coordinator(&c, signed).await
            })
        },
    ),
    case(
        root_signed_bytes_that_are_no_trust_list,
        "root-signed bytes that are no TrustList",
        Status(Code::InvalidArgument, "not a valid TrustList message"),
        |c| {
            Box::pin(async move {
                let payload = vec![0xff; 40];
                let signature = ca::sign_with_ca_key(
                    &c.f.pki.root().expect("root"),
                    &[trust::TRUST_LIST_CONTEXT, payload.as_slice()].concat(),
                )
                .expect("sign");
                upload_as_coordinator(&c, pb::SignedTrustList { payload, signature }).await
            })
        },
    ),
    case(
        root_signed_trust_list_of_an_unknown_format_version,
        "root-signed trust list of an unknown format version",
        Status(Code::InvalidArgument, "unsupported trust list version 2"),
        |c| Box::pin(async move { upload_as_coordinator(&c, root_signed(&c, |l| l.version = 2)).await }),
    ),
    case(
        root_signed_trust_list_for_another_trust_domain,
        "root-signed trust list for another trust domain",
        Status(Code::FailedPrecondition, "is for trust domain \"evil.gov\", not \"huren.gov\""),
        |c| {
            Box::pin(
                async move { upload_as_coordinator(&c, root_signed(&c, |l| l.trust_domain = "evil.gov".into())).await },
            )
        },
    ),
    case(
        root_signed_trust_list_listing_a_province_twice,
        "root-signed trust list listing a province twice",
        Status(Code::InvalidArgument, "duplicate province 340000"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    let anhui = l.provinces.iter().find(|p| p.code == "340000").expect("anhui").clone();
                    l.provinces.push(anhui);
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_whose_kid_does_not_match_its_key,
        "root-signed trust list whose kid does not match its key",
        Status(Code::InvalidArgument, "kid does not match its key"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| l.provinces[0].attestation_keys[0].kid[0] ^= 1);
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_with_a_31_byte_attestation_key,
        "root-signed trust list with a 31-byte attestation key",
        Status(Code::InvalidArgument, "attestation key is not 32 bytes"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    l.provinces[0].attestation_keys[0].public_key.pop();
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_registering_a_hub_for_an_unknown_purpose,
        "root-signed trust list registering a hub for an unknown purpose",
        Status(Code::InvalidArgument, "which the field policy lacks"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    l.hubs.push(pb::HubRegistration {
                        id: "adv-space".into(),
                        purposes: vec!["transit.space".into()],
                        province: String::new(),
                        name: String::new(),
                    })
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_placing_a_hub_in_no_valid_province,
        "root-signed trust list placing a hub in no valid province",
        Status(Code::InvalidArgument, "hub adv-nowhere: invalid province code \"99\""),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    l.hubs.push(pb::HubRegistration {
                        id: "adv-nowhere".into(),
                        purposes: vec!["transit.rail".into()],
                        province: "99".into(),
                        name: String::new(),
                    })
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
    case(
        root_signed_trust_list_whose_field_policy_drops_a_required_field,
        "root-signed trust list whose field policy drops a required field",
        Status(Code::InvalidArgument, "must allow token_digest"),
        |c| {
            Box::pin(async move {
                let list = root_signed(&c, |l| {
                    let mut policy = huren_pki::policy::FieldPolicy::default().to_pb();
                    policy.purposes[0].fields.retain(|f| f != "token_digest");
                    l.field_policy = Some(policy);
                });
                upload_as_coordinator(&c, list).await
            })
        },
    ),
];

// ------------------------------------------------------------------ beyond the table: revocations
// Each revokes a certificate in a new list, so each runs in a federation of its own.

#[tokio::test]
async fn a_revoked_hubs_watch_stream_ends_with_the_list_revoking_it() {
    let f = start().await;
    let watch = |who: &TlsIdentity| {
        pb::trust_registry_client::TrustRegistryClient::new(client_channel(
            who,
            ExpectedPeer::AnyGateway,
            f.gateway_addr(),
        ))
    };
    let (revoked, other) = (f.identity("hub", "adv-watcher").unwrap(), f.identity("hub", "adv-other-watcher").unwrap());
    let held = f.gateway_trust().unwrap().current().sequence();
    let request = pb::WatchTrustListRequest { known_sequence: 0 };
    let mut revoked_stream = watch(&revoked).watch(request).await.unwrap().into_inner();
    let mut other_stream = watch(&other).watch(request).await.unwrap().into_inner();
    for stream in [&mut revoked_stream, &mut other_stream] {
        let first = stream.message().deadline("the held list").await.unwrap().expect("a list");
        assert_eq!(TrustList::verify(first, &f.pki.root_cert_der().unwrap()).unwrap().sequence(), held);
    }

    let serial = f.pki.revoke_issued("hub", "adv-watcher").unwrap();
    let sequence = f.publish().await.unwrap();
    // The revoked hub's stream carries the list that revokes it, its last, and ends with
    // the refusal...
    let last = revoked_stream.message().deadline("the revoking list").await.unwrap().expect("a list");
    let last = TrustList::verify(last, &f.pki.root_cert_der().unwrap()).unwrap();
    assert_eq!(last.sequence(), sequence);
    assert!(last.is_revoked(&serial));
    let refused = revoked_stream.message().deadline("the revoked stream's end").await.expect_err("a list was sent");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unauthenticated, "CERTIFICATE_REFUSED"));
    assert!(refused.message().contains(&format!("trust list {sequence} revokes it")), "{}", refused.message());
    assert!(
        matches!(revoked_stream.message().deadline("the end of the stream").await, Ok(None) | Err(_)),
        "the revoked hub's stream went on"
    );
    // ... while everyone else's carries it.
    let next = other_stream.message().deadline("the new list").await.unwrap().expect("a list");
    let next = TrustList::verify(next, &f.pki.root_cert_der().unwrap()).unwrap();
    assert_eq!(next.sequence(), sequence);
    assert!(next.is_revoked(&serial));
}

/// Revokes Anhui's node certificate in a new list and uploads it through `registry`.
async fn revoke_anhuis_node(f: &Federation, registry: std::net::SocketAddr) -> u64 {
    f.pki.revoke_issued("node", "340000").unwrap();
    let list = f.pki.sign_trust_list().unwrap();
    let coordinator = f.identity("coordinator", "adv-nhc").unwrap();
    pb::trust_registry_client::TrustRegistryClient::new(client_channel(
        &coordinator,
        ExpectedPeer::AnyGateway,
        registry,
    ))
    .upload(list.signed().clone())
    .await
    .unwrap();
    list.sequence()
}

#[tokio::test]
async fn a_cached_attestation_of_a_revoked_node_is_not_served() {
    let mut options = FederationOptions::default();
    options.gateway.cache = true;
    options.gateway.cache_fresh = Duration::from_secs(600);
    let (f, _dir) = start_with(options).await;
    let token = seed(&f, &demo_subject("340000"), 600).await.unwrap().token;
    let mut hub = f.hub("adv-cache-hub").await.unwrap();
    let request = pb::LookupRequest { province: "340000".into(), token: token.clone(), purpose: "transit.rail".into() };
    hub.lookup_raw(request.clone()).await.expect("answered by the node, and cached");

    let sequence = revoke_anhuis_node(&f, f.gateway_addr()).await;
    f.gateway_trust()
        .unwrap()
        .subscribe()
        .wait_for(|t| t.sequence() >= sequence)
        .deadline("the gateway")
        .await
        .unwrap();
    // Fresh in the cache, but from a node whose certificate is revoked: not served (not even
    // stale-if-error, although the node is now unreachable).
    let refused = hub.lookup_raw(request).await.expect_err("the revoked node's cached attestation was served");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unavailable, "PROVINCE_UNAVAILABLE"));
    assert!(refused.message().contains("Revoked"), "{}", refused.message());
}

#[tokio::test]
async fn a_cached_attestation_of_a_revoked_node_is_not_served_by_another_replica_through_redis() {
    let redis = RedisPrefix::new("adv-revoked-cache");
    let (m1, m2) = (PrometheusMetrics::new().unwrap(), PrometheusMetrics::new().unwrap());
    let settings = |m: &PrometheusMetrics| GatewaySettings {
        cache: true,
        cache_fresh: Duration::from_secs(600),
        redis_url: Some(redis.url.clone()),
        redis_prefix: redis.prefix.clone(),
        meter: Some(m.meter("huren-gateway")),
        ..GatewaySettings::default()
    };
    let (f, _dir) = start_with(FederationOptions::default()).await;
    f.register_hub("adv-shared-hub", &["transit.rail"]).await.unwrap();
    let (g1, a1, _s1) = replica(&f, "adv-replica-1", settings(&m1)).await;
    let (g2, a2, _s2) = replica(&f, "adv-replica-2", settings(&m2)).await;
    for g in [&g1, &g2] {
        g.redis_states().wait_for(|s| *s == RedisState::Up).deadline("redis up").await.unwrap();
    }
    let token = seed(&f, &demo_subject("340000"), 600).await.unwrap().token;
    let request = pb::LookupRequest { province: "340000".into(), token, purpose: "transit.rail".into() };
    let hub = f.identity("hub", "adv-shared-hub").unwrap();
    let lookups = |addr| pb::lookup_client::LookupClient::new(client_channel(&hub, ExpectedPeer::AnyGateway, addr));
    let (mut h1, mut h2) = (lookups(a1), lookups(a2));
    h1.lookup(request.clone()).await.expect("replica 1 asks the node and caches");
    h2.lookup(request.clone()).await.expect("replica 2 serves replica 1's entry");
    assert_eq!(m2.value("huren_gateway_cache_lookups_total", &[("result", "hit")]), 1.0);

    // The list revoking the node reaches replica 1 by upload, replica 2 by Redis fan-out.
    let sequence = revoke_anhuis_node(&f, a1).await;
    g2.trust().subscribe().wait_for(|t| t.sequence() >= sequence).deadline("replica 2").await.unwrap();
    let refused = h2.lookup(request.clone()).await.expect_err("replica 2 served the revoked node's attestation");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unavailable, "PROVINCE_UNAVAILABLE"));
    assert_eq!(m2.value("huren_gateway_cache_lookups_total", &[("result", "dropped_revoked")]), 1.0);
    let refused = h1.lookup(request).await.expect_err("replica 1 served the revoked node's attestation");
    assert_eq!(refused.code(), Code::Unavailable);
}

/// A further gateway replica of `f` with `settings`, serving until the sender drops.
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
