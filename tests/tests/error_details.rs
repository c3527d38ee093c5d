//! Refusals as an independent client reads them: a raw generated tonic client over mutual
//! TLS, and the `grpc-status-details-bin` trailer decoded here from its protobuf definition
//! (`google.rpc.Status` with `google.rpc.ErrorInfo` and `google.rpc.RetryInfo`), as a hub
//! in any language would — not through Huren's own reader.
//!
//! Every refusal carries a stable reason in domain `huren.gov`, the metadata carries no
//! token and no subject reference, and a `RetryInfo` comes exactly where a retry helps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use huren_cli::demo::{demo_subjects, seed};
use huren_cli::federation::FederationOptions;
use huren_pki::qr::{self, Scanned};
use huren_proto::pb;
use huren_runtime::error::{to_status, Reason, Refusal, Retry};
use huren_runtime::tls::ExpectedPeer;
use huren_tests::{
    change, client_channel, code, replace_node_with_fake, start, start_with, Deadline, Script, RED_RULE,
};
use prost::Message as _;
use tonic::Code;

/// `google.rpc.Status`, the payload of the `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(map = "string, string", tag = "3")]
    metadata: HashMap<String, String>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// What a refusal says to a machine.
#[derive(Debug)]
struct Seen {
    code: Code,
    reason: String,
    metadata: HashMap<String, String>,
    retry_after: Option<Duration>,
}

/// Decodes the details of `status` by hand and checks that they agree with the status
/// itself and carry none of `secrets` (token bytes and their text forms, subject references).
fn refusal(status: &tonic::Status, secrets: &[&[u8]]) -> Seen {
    let details = status.details();
    assert!(!details.is_empty(), "no grpc-status-details-bin on {status:?}");
    let rpc = RpcStatus::decode(details).expect("google.rpc.Status");
    assert_eq!(rpc.code, status.code() as i32, "the details' code is the status code");
    assert_eq!(rpc.message, status.message(), "the details' message is the status message");
    let mut info = None;
    let mut retry = None;
    for any in &rpc.details {
        match any.type_url.as_str() {
            "type.googleapis.com/google.rpc.ErrorInfo" => {
                info = Some(ErrorInfo::decode(any.value.as_slice()).expect("ErrorInfo"))
            }
            "type.googleapis.com/google.rpc.RetryInfo" => {
                retry = Some(RetryInfo::decode(any.value.as_slice()).expect("RetryInfo"))
            }
            other => panic!("unexpected detail {other}"),
        }
    }
    let info = info.expect("an ErrorInfo");
    assert_eq!(info.domain, "huren.gov");
    for secret in secrets {
        let texts = [
            data_encoding::BASE32_NOPAD.encode(secret),
            data_encoding::HEXLOWER.encode(secret),
            data_encoding::HEXUPPER.encode(secret),
            data_encoding::BASE64.encode(secret),
            data_encoding::BASE64_NOPAD.encode(secret),
        ];
        assert!(!contains(details, secret), "{status:?}: the details carry a secret's bytes");
        for (key, value) in &info.metadata {
            for text in texts.iter().map(String::as_bytes).chain([*secret]) {
                assert!(!contains(value.as_bytes(), text), "metadata {key}={value} carries a secret");
            }
        }
    }
    let retry_after = retry.map(|r| {
        let d = r.retry_delay.expect("RetryInfo names a delay");
        Duration::new(u64::try_from(d.seconds).expect("non-negative"), u32::try_from(d.nanos).expect("nanos"))
    });
    Seen { code: status.code(), reason: info.reason, metadata: info.metadata, retry_after }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A raw generated Lookup client for hub `name`, registered for `purposes`.
async fn raw_hub(
    f: &huren_cli::federation::Federation,
    name: &str,
    purposes: &[&str],
) -> pb::lookup_client::LookupClient<tonic::transport::Channel> {
    f.register_hub(name, purposes).deadline("the hub registered on every server").await.expect("register hub");
    let identity = f.identity("hub", name).expect("hub identity");
    pb::lookup_client::LookupClient::new(client_channel(&identity, ExpectedPeer::AnyGateway, f.gateway_addr()))
}

fn lookup(province: &str, token: &[u8], purpose: &str) -> pb::LookupRequest {
    pb::LookupRequest { province: province.into(), token: token.to_vec(), purpose: purpose.into() }
}

#[tokio::test]
async fn lookup_refusals_carry_reasons_an_independent_client_can_act_on() {
    let f = start().await;
    let subject = &demo_subjects()[0];
    let issued = seed(&f, subject, 600).await.expect("seed");
    let good = Scanned::parse(&issued.qr).expect("qr").token().to_vec();
    let mut hub = raw_hub(&f, "raw-rail", &["transit.rail"]).await;
    hub.lookup(lookup(subject.province, &good, "transit.rail")).await.expect("a good lookup");

    // An unknown token: NOT_FOUND, TOKEN_UNKNOWN, the province named, no token anywhere.
    let unknown = qr::new_token().expect("token").to_vec();
    let err = hub.lookup(lookup("340000", &unknown, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&unknown, subject.subject_ref.as_bytes()]);
    assert_eq!((r.code, r.reason.as_str()), (Code::NotFound, "TOKEN_UNKNOWN"), "{err:?}");
    assert_eq!(r.metadata, metadata(&[("province", "340000")]));
    assert_eq!(r.retry_after, None, "asking again about an unknown token does not help");

    // A malformed request: INVALID_ARGUMENT, INVALID_REQUEST, the field named.
    let err = hub.lookup(lookup("34-000", &good, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&good]);
    assert_eq!((r.code, r.reason.as_str()), (Code::InvalidArgument, "INVALID_REQUEST"), "{err:?}");
    assert_eq!((r.metadata, r.retry_after), (metadata(&[("field", "province")]), None));
    let err = hub.lookup(lookup("340000", &good[..5], "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&good[..5], &good]);
    assert_eq!((r.reason.as_str(), r.metadata), ("INVALID_REQUEST", metadata(&[("field", "token")])));

    // A purpose this hub is not registered for: PERMISSION_DENIED, PURPOSE_NOT_REGISTERED.
    let err = hub.lookup(lookup(subject.province, &good, "transit.air")).await.unwrap_err();
    let r = refusal(&err, &[&good, subject.subject_ref.as_bytes()]);
    assert_eq!((r.code, r.reason.as_str()), (Code::PermissionDenied, "PURPOSE_NOT_REGISTERED"), "{err:?}");
    assert_eq!((r.metadata, r.retry_after), (metadata(&[("purpose", "transit.air")]), None));

    // A hub certificate that the registry does not know: HUB_NOT_REGISTERED.
    let stranger = f.identity("hub", "stranger").expect("identity");
    let mut stranger =
        pb::lookup_client::LookupClient::new(client_channel(&stranger, ExpectedPeer::AnyGateway, f.gateway_addr()));
    let err = stranger.lookup(lookup(subject.province, &good, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&good]);
    assert_eq!((r.code, r.reason.as_str()), (Code::PermissionDenied, "HUB_NOT_REGISTERED"), "{err:?}");

    // A node identity calling Lookup: NOT_AUTHORIZED, only the caller's role as metadata.
    let node = f.identity("node", "340000").expect("identity");
    let mut node =
        pb::lookup_client::LookupClient::new(client_channel(&node, ExpectedPeer::AnyGateway, f.gateway_addr()));
    let err = node.lookup(lookup(subject.province, &good, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&good]);
    assert_eq!((r.code, r.reason.as_str()), (Code::PermissionDenied, "NOT_AUTHORIZED"), "{err:?}");
    assert_eq!(r.metadata, metadata(&[("callerRole", "node")]));

    // A province not in the trust list: NOT_FOUND, PROVINCE_UNKNOWN.
    let err = hub.lookup(lookup("810000", &good, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&good]);
    assert_eq!((r.code, r.reason.as_str()), (Code::NotFound, "PROVINCE_UNKNOWN"), "{err:?}");
    assert_eq!(r.metadata, metadata(&[("province", "810000")]));
}

#[tokio::test]
async fn a_province_whose_node_is_down_is_unavailable_and_worth_retrying() {
    let mut f = start().await;
    let mut hub = raw_hub(&f, "raw-down", &["transit.rail"]).await;
    let guangdong = code("440000");
    f.stop_node(&guangdong).deadline("Guangdong's node to stop (graceful drain)").await.expect("stop node");
    let token = qr::new_token().expect("token").to_vec();
    let err = hub.lookup(lookup("440000", &token, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&token]);
    assert_eq!((r.code, r.reason.as_str()), (Code::Unavailable, "PROVINCE_UNAVAILABLE"), "{err:?}");
    assert_eq!(r.metadata, metadata(&[("province", "440000"), ("cause", "unreachable")]));
    let delay = r.retry_after.expect("a RetryInfo: retrying a dead province later may succeed");
    assert!(delay > Duration::ZERO && delay <= Duration::from_secs(60), "{delay:?}");
    // Another province is unaffected.
    let err = hub.lookup(lookup("340000", &token, "transit.rail")).await.unwrap_err();
    assert_eq!(refusal(&err, &[&token]).reason, "TOKEN_UNKNOWN");
}

#[tokio::test]
async fn the_rate_limiter_says_when_to_come_back() {
    // One counting window for the whole test: the windows follow the gateway's clock.
    let (clock, _hand) = huren_runtime::clock::Clock::manual(huren_pki::unix_now());
    let mut options = FederationOptions::default();
    options.gateway.hub_rate_per_sec = 2;
    options.gateway.clock = clock;
    let (f, _dir) = start_with(options).await;
    let subject = &demo_subjects()[0];
    let good = Scanned::parse(&seed(&f, subject, 600).await.expect("seed").qr).expect("qr").token().to_vec();
    let mut hub = raw_hub(&f, "raw-eager", &["transit.rail"]).await;
    for _ in 0..2 {
        hub.lookup(lookup(subject.province, &good, "transit.rail")).await.expect("within the rate");
    }
    let err = hub.lookup(lookup(subject.province, &good, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&good, subject.subject_ref.as_bytes()]);
    assert_eq!((r.code, r.reason.as_str()), (Code::ResourceExhausted, "RATE_LIMITED"), "{err:?}");
    assert_eq!(r.retry_after, Some(Duration::from_secs(1)), "the rate is counted per second");
    assert!(r.metadata.is_empty(), "{:?}", r.metadata);
}

#[tokio::test]
async fn status_admin_refusals_name_the_rule_not_the_subject() {
    let f = start().await;
    let anhui = code("340000");
    let subject = "ah-driver-0001";
    // The province admin (the health-code backend) may not turn a code red.
    let err = f
        .admin_client(&anhui)
        .expect("admin client")
        .upsert_status(change(subject, pb::HealthStatus::Red, RED_RULE, ""))
        .await
        .unwrap_err();
    let r = refusal(&err, &[subject.as_bytes()]);
    assert_eq!((r.code, r.reason.as_str()), (Code::PermissionDenied, "AUTHORITY_REQUIRED"), "{err:?}");
    assert_eq!(r.metadata, metadata(&[("ruleId", RED_RULE), ("healthStatus", "RED")]));
    assert_eq!(r.retry_after, None);
    // A non-green status without a rule, from the authority: FAILED_PRECONDITION, RULE_REQUIRED.
    let err = f
        .authority_client("340000/hefei-cdc")
        .expect("authority client")
        .upsert_status(change(subject, pb::HealthStatus::Red, "", ""))
        .await
        .unwrap_err();
    let r = refusal(&err, &[subject.as_bytes()]);
    assert_eq!((r.code, r.reason.as_str()), (Code::FailedPrecondition, "RULE_REQUIRED"), "{err:?}");
    // An ID number where a pseudonym belongs: INVALID_REQUEST on subject_ref, never echoed.
    let id_number = "340104198003151234";
    let err = f
        .admin_client(&anhui)
        .expect("admin client")
        .upsert_status(change(id_number, pb::HealthStatus::Green, "", ""))
        .await
        .unwrap_err();
    let r = refusal(&err, &[id_number.as_bytes()]);
    assert_eq!((r.reason.as_str(), r.metadata), ("INVALID_REQUEST", metadata(&[("field", "subject_ref")])));
}

/// An older node sends bare codes; a newer one sends reasons. The gateway reads each
/// correctly: a reason, when present, decides — not the code.
#[tokio::test]
async fn the_gateway_reads_a_nodes_reason_and_falls_back_to_its_code() {
    let mut f = start().await;
    let mut hub = raw_hub(&f, "raw-mixed", &["transit.rail"]).await;
    let token = qr::new_token().expect("token").to_vec();

    // An old node: a bare FAILED_PRECONDITION on Attest meant "lapsed, no current status".
    let old: Script = Arc::new(|_| Err(tonic::Status::failed_precondition("old node words")));
    let _old = replace_node_with_fake(&mut f, &code("370000"), old).await;
    let err = hub.lookup(lookup("370000", &token, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&token]);
    assert_eq!((r.code, r.reason.as_str()), (Code::FailedPrecondition, "NO_CURRENT_STATUS"), "{err:?}");
    assert_eq!(r.metadata, metadata(&[("province", "370000")]));
    assert!(!err.message().contains("old node words"), "the node's own words stay out: {}", err.message());

    // A node that says why: a FAILED_PRECONDITION for another reason is no lapsed status.
    let new: Script = Arc::new(|_| Err(to_status(&RuleGone)));
    let _new = replace_node_with_fake(&mut f, &code("440000"), new).await;
    let err = hub.lookup(lookup("440000", &token, "transit.rail")).await.unwrap_err();
    let r = refusal(&err, &[&token]);
    assert_eq!((r.code, r.reason.as_str()), (Code::Unavailable, "PROVINCE_UNAVAILABLE"), "{err:?}");
    assert_eq!(r.metadata, metadata(&[("province", "440000"), ("cause", "node_failed")]));
    assert!(!err.message().contains("rule registry"), "the node's own words stay out: {}", err.message());
}

/// A node refusal that is about no token: its code is FAILED_PRECONDITION, its reason not
/// NO_CURRENT_STATUS.
#[derive(Debug)]
struct RuleGone;

impl std::fmt::Display for RuleGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rule \"X\" is not in the rule registry")
    }
}

impl Refusal for RuleGone {
    fn reason(&self) -> Reason {
        Reason::RuleUnknown
    }
    fn retry(&self) -> Retry {
        Retry::No
    }
    fn outcome(&self) -> &'static str {
        "failed_precondition"
    }
}
