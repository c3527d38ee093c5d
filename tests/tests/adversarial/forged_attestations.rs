//! Forged attestations: Shandong's node is replaced by a scripted one that answers each
//! row's forgery (signed with real, foreign, revoked or lapsed keys, malformed,
//! non-canonical, under rules it may not apply, valid too long, replayed, missing, or two
//! answers to one call). The gateway must refuse every answer precisely, having asked the
//! node exactly once, and keep serving Shandong's honest answers between forgeries. The
//! same forgery, carried in a QR with the token asked, is then verified offline as a hub
//! does (`huren_client::verify_offline`, the same verifier): refused with the same reason
//! unless the row says why the offline verdict differs.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use huren_cli::demo::seed;
use huren_pki::attest::AttestationKey;
use huren_pki::ca::Validity;
use huren_pki::qr;
use huren_pki::registry::RegistryRule;
use huren_pki::unix_now;
use huren_proto::pb;
use huren_runtime::tls::ExpectedPeer;
use huren_tests::{
    client_channel, code, demo_subject, green_payload, replace_node_with_raw_fake, start_in, RED_RULE, YELLOW_RULE,
};
use prost::Message;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Code;

use crate::common::{error, lookup, random_token, rows, validity, Ctx, Expect, Outcome, Probe, Refusal, Shared};

/// A registered rule that may assign RED, naming only an Anhui authority.
const ANHUI_ONLY_RULE: &str = "AH-ONLY-1";

/// The keys a forging node may use.
struct Keys {
    shandong: AttestationKey,
    anhui: AttestationKey,
    /// Not in the trust list at all.
    stranger: AttestationKey,
    /// In the trust list for Shandong, revoked.
    revoked: AttestationKey,
    /// In the trust list for Shandong, its validity window over.
    lapsed: AttestationKey,
    /// In the trust list for Shandong, valid from a minute before setup; and that time.
    young: AttestationKey,
    young_not_before: i64,
    /// In the trust list for Shandong, valid until 50 minutes after setup; and that time.
    expiring: AttestationKey,
    expiring_not_after: i64,
    /// A genuine attestation Shandong's real node signed for another token.
    genuine: pb::QrCode,
}

/// What the scripted Shandong node answers.
type Forge = fn(&pb::AttestRequest, &Keys) -> Option<pb::SignedAttestation>;

/// Which token a forgery row asks about.
#[derive(Debug, Clone, Copy)]
enum Token {
    Fresh,
    /// The token of the genuine attestation.
    Genuine,
}

fn honest(req: &pb::AttestRequest, k: &Keys) -> Option<pb::SignedAttestation> {
    Some(k.shandong.sign(&green_payload(req, "370000")))
}

/// `green` with `edit` applied, signed by Shandong's real key.
fn shandong_signs(
    req: &pb::AttestRequest,
    k: &Keys,
    edit: impl FnOnce(&mut pb::AttestationPayload),
) -> Option<pb::SignedAttestation> {
    let mut p = green_payload(req, "370000");
    edit(&mut p);
    Some(k.shandong.sign(&p))
}

/// Encoded `green` with `extra` bytes appended, signed by Shandong's real key.
fn shandong_signs_bytes(req: &pb::AttestRequest, k: &Keys, extra: &[u8]) -> Option<pb::SignedAttestation> {
    let mut bytes = green_payload(req, "370000").encode_to_vec();
    bytes.extend_from_slice(extra);
    Some(k.shandong.sign_bytes(bytes))
}

/// Shandong's forging node and what its rows need.
struct Forging {
    ctx: Ctx,
    /// The forging node's behaviour, a second message it sends after the first (if
    /// any), and how often it was asked.
    forge: Arc<Mutex<Forge>>,
    second: Arc<Mutex<Option<Forge>>>,
    calls: Arc<AtomicUsize>,
    keys: Arc<Keys>,
    /// A registered hub's channel to the gateway, used by the rows.
    victim: Channel,
    /// A genuine attestation signed by Shandong's real node, and its token.
    genuine: pb::QrCode,
    /// Keeps the forging node serving.
    _fake: oneshot::Sender<()>,
}

const _: () = assert!(ROWS.len() >= 40, "the forgery table lost rows");

static FORGING: Shared<Forging> = Shared::new(ROWS.len(), forging_federation);

/// Setup, all before the first snapshot: a genuine Shandong QR from the real node, a
/// revoked and a lapsed Shandong key in the trust list, a registered victim hub, and a
/// seeded Anhui subject for the probe; then Shandong's node replaced by the forging one.
fn forging_federation() -> Pin<Box<dyn Future<Output = Forging>>> {
    Box::pin(async {
        let mut f = start_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).await;
        let (anhui, shandong) = (code("340000"), code("370000"));
        let genuine = qr::decode_qr(&seed(&f, &demo_subject("370000"), 3600).await.unwrap().qr).unwrap();
        let revoked = f.pki.add_key(&shandong, Validity::days(30)).unwrap();
        f.pki.set_key_status(&shandong, &revoked.kid().hex(), "revoked").unwrap();
        let lapsed = f.pki.add_key(&shandong, validity(-86_400 * 2, -86_400)).unwrap();
        let (young_window, expiring_window) = (validity(-60, 86_400), validity(-86_400, 3000));
        let young_not_before = young_window.not_before.unix_timestamp();
        let expiring_not_after = expiring_window.not_after.unix_timestamp();
        let young = f.pki.add_key(&shandong, young_window).unwrap();
        let expiring = f.pki.add_key(&shandong, expiring_window).unwrap();
        f.pki
            .put_rule(RegistryRule {
                id: ANHUI_ONLY_RULE.into(),
                title: "Anhui's own rule".into(),
                legal_basis: "Anhui provincial regulation (test)".into(),
                may_assign: vec!["RED".into()],
                max_duration_seconds: 86_400,
                exit_condition: "Ends after one negative PCR test".into(),
                authorities: vec!["340000/hefei-cdc".into()],
                lapses_to: Some("GREEN".into()),
                may_lift: Vec::new(),
            })
            .unwrap();
        f.hub("adv-victim").await.unwrap();
        let probe = f.hub("adv-probe").await.unwrap();
        let ah_token = seed(&f, &demo_subject("340000"), 3600).await.unwrap().token;

        let keys = Arc::new(Keys {
            shandong: f.attestation_key(&shandong).unwrap(),
            anhui: f.attestation_key(&anhui).unwrap(),
            stranger: AttestationKey::generate().unwrap(),
            revoked,
            lapsed,
            young,
            young_not_before,
            expiring,
            expiring_not_after,
            genuine: genuine.clone(),
        });
        let forge: Arc<Mutex<Forge>> = Arc::new(Mutex::new(honest));
        let second: Arc<Mutex<Option<Forge>>> = Arc::new(Mutex::new(None));
        let calls = Arc::new(AtomicUsize::new(0));
        let script = {
            let (forge, second, calls, keys) = (forge.clone(), second.clone(), calls.clone(), keys.clone());
            Arc::new(move |req: &pb::AttestRequest| {
                calls.fetch_add(1, Ordering::SeqCst);
                let first = *forge.lock().unwrap();
                let mut answers = vec![pb::AttestResponse { attestation: first(req, &keys) }];
                if let Some(second) = *second.lock().unwrap() {
                    answers.push(pb::AttestResponse { attestation: second(req, &keys) });
                }
                answers
            })
        };
        let _fake = replace_node_with_raw_fake(&mut f, &shandong, script).await;
        let victim = f.identity("hub", "adv-victim").unwrap();
        let victim = client_channel(&victim, ExpectedPeer::AnyGateway, f.gateway_addr());

        // Probes: Anhui's real node, and Shandong's scripted node in its honest mode (so
        // the gateway is shown to keep serving that province between forgeries).
        let sd_probe_token = random_token();
        let probes = vec![
            Probe { province: anhui.clone(), token: ah_token },
            Probe { province: shandong, token: sd_probe_token },
        ];
        let ctx = Ctx::new(f, vec![anhui, code("440000")], probe, probes);
        Forging { ctx, forge, second, calls, keys, victim, genuine, _fake }
    })
}

/// What the same forgery gives when a hub verifies it offline, carried in a QR with the
/// token the lookup asked about.
#[derive(Debug, Clone, Copy)]
enum Offline {
    /// Refused with the same text as online.
    Same,
    /// Refused with this text: the QR's strict decoding finds the fault first.
    Refused(&'static str),
    /// Accepted: the fault is in what the lookup asked (its province or purpose), which a
    /// QR does not carry; the attestation is genuine for what it claims.
    Accepted,
    /// Nothing to verify offline (no attestation, or two answers to one call).
    NotApplicable,
}

impl Forging {
    /// A lookup through the gateway to the forging node, which answers with `forge` (and
    /// then `second`, if given); then, as `offline` says, the same forgery verified offline.
    async fn lookup_forged(
        &self,
        name: &str,
        text: &str,
        forge: Forge,
        second: Option<Forge>,
        token: Token,
        offline: Offline,
    ) -> Outcome {
        *self.forge.lock().unwrap() = forge;
        *self.second.lock().unwrap() = second;
        let token = match token {
            Token::Fresh => random_token(),
            Token::Genuine => self.genuine.token.clone(),
        };
        let request =
            pb::LookupRequest { province: "370000".into(), token: token.clone(), purpose: "transit.rail".into() };
        let calls = self.calls.load(Ordering::SeqCst);
        let outcome = lookup(self.victim.clone(), request).await;
        *self.forge.lock().unwrap() = honest;
        *self.second.lock().unwrap() = None;
        assert_eq!(self.calls.load(Ordering::SeqCst), calls + 1, "the gateway asked the node exactly once");
        if let Err(Refusal { message, .. }) = &outcome {
            assert!(message.starts_with("attestation from province 370000 refused: "), "{message}");
        }
        let expected = match offline {
            Offline::Same => Some(text),
            Offline::Refused(text) => Some(text),
            Offline::Accepted => None,
            Offline::NotApplicable => return outcome,
        };
        let attest = pb::AttestRequest { token: token.clone(), purpose: "transit.rail".into(), ..Default::default() };
        let signed = forge(&attest, &self.keys).expect("an attestation to verify offline");
        let trust = self.ctx.f.gateway_trust().expect("gateway").current();
        let code = qr::encode_qr(&pb::QrCode { attestation: Some(signed), token });
        let verdict = huren_client::verify_offline(&trust, &code, unix_now()).map(drop).map_err(error);
        match (expected, &verdict) {
            (None, Ok(())) => {}
            (Some(text), Err(Refusal { message, .. })) => {
                assert!(message.contains(text), "{name}: offline: {message:?} lacks {text:?}")
            }
            _ => panic!("{name}: offline verdict {verdict:?}, expected {offline:?}"),
        }
        outcome
    }
}

/// Runs one row: a lookup of a fresh token, answered with `forge`, is refused with
/// `FailedPrecondition` and `text`, with nothing changed; offline, the same text.
fn forged(name: &'static str, text: &'static str, forge: Forge) {
    forged_row(name, text, forge, None, Token::Fresh, Offline::Same);
}

/// As [`forged`], with the offline verdict `offline`.
fn forged_offline(name: &'static str, text: &'static str, offline: Offline, forge: Forge) {
    forged_row(name, text, forge, None, Token::Fresh, offline);
}

/// As [`forged`], for the token of the genuine attestation.
fn forged_for_the_genuine_token(name: &'static str, text: &'static str, offline: Offline, forge: Forge) {
    forged_row(name, text, forge, None, Token::Genuine, offline);
}

/// As [`forged`], the node answering `first` and then a second message, `second`.
fn forged_two_messages(name: &'static str, text: &'static str, first: Forge, second: Forge) {
    forged_row(name, text, first, Some(second), Token::Fresh, Offline::NotApplicable);
}

fn forged_row(
    name: &'static str,
    text: &'static str,
    forge: Forge,
    second: Option<Forge>,
    token: Token,
    offline: Offline,
) {
    let expect = Expect::Status(Code::FailedPrecondition, text);
    FORGING.row(|s| async move {
        s.ctx.refuses(name, expect, s.lookup_forged(name, text, forge, second, token, offline)).await
    });
}

/// Shandong's honest GREEN payload, encoded, with `edit` applied to its bytes, signed by
/// Shandong's real key.
fn shandong_signs_edited(
    req: &pb::AttestRequest,
    k: &Keys,
    edit: impl FnOnce(&mut Vec<u8>),
) -> Option<pb::SignedAttestation> {
    let mut bytes = green_payload(req, "370000").encode_to_vec();
    edit(&mut bytes);
    Some(k.shandong.sign_bytes(bytes))
}

/// The offset of field `number`'s tag in a canonical payload (tags below 16 are one byte).
fn tag_of(bytes: &[u8], number: u8) -> usize {
    let mut i = 0;
    loop {
        let tag = bytes[i];
        if tag >> 3 == number {
            return i;
        }
        // Varint fields (wire type 0) here are one to ten bytes; length-delimited (2) one-byte lengths.
        i += 1;
        if tag & 7 == 2 {
            i += 1 + usize::from(bytes[i]);
        } else {
            while bytes[i] & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
    }
}

rows![
    forged(
        forged_signature_random_bytes,
        "forged signature (random bytes)",
        "signature does not verify with key",
        |r, k| {
            let mut s = honest(r, k)?;
            s.signature = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
            Some(s)
        }
    ),
    forged(
        signed_by_a_stranger_under_shandongs_kid,
        "signed by a stranger under Shandong's kid",
        "signature does not verify with key",
        |r, k| {
            let mut s = k.stranger.sign(&green_payload(r, "370000"));
            s.kid = k.shandong.kid().0.to_vec();
            Some(s)
        }
    ),
    forged(
        signed_by_a_key_outside_the_trust_list,
        "signed by a key outside the trust list",
        "is not an attestation key of province 370000",
        |r, k| { Some(k.stranger.sign(&green_payload(r, "370000"))) }
    ),
    forged_offline(
        payload_truncated_before_signing,
        "payload truncated before signing",
        "payload is not well-formed protobuf",
        Offline::Refused(NOT_A_QR),
        |r, k| {
            let mut bytes = green_payload(r, "370000").encode_to_vec();
            bytes.truncate(bytes.len() - 3);
            Some(k.shandong.sign_bytes(bytes))
        }
    ),
    forged_offline(
        payload_truncated_after_signing,
        "payload truncated after signing",
        "payload is not well-formed protobuf",
        Offline::Refused(NOT_A_QR),
        |r, k| {
            let mut s = honest(r, k)?;
            s.payload.truncate(s.payload.len() - 3);
            Some(s)
        }
    ),
    forged(
        payload_re_encoded_with_a_later_expiry_after_signing,
        "payload re-encoded with a later expiry after signing",
        "signature does not verify with key",
        |r, k| {
            let mut s = honest(r, k)?;
            let mut p = pb::AttestationPayload::decode(s.payload.as_slice()).ok()?;
            p.expires_at += 86_400;
            s.payload = p.encode_to_vec();
            Some(s)
        }
    ),
    forged(truncated_signature, "truncated signature", "signature does not verify with key", |r, k| {
        let mut s = honest(r, k)?;
        s.signature.truncate(32);
        Some(s)
    }),
    forged(missing_signature, "missing signature", "signature does not verify with key", |r, k| {
        let mut s = honest(r, k)?;
        s.signature.clear();
        Some(s)
    }),
    forged(truncated_kid, "truncated kid", "kid must be 8 bytes", |r, k| {
        let mut s = honest(r, k)?;
        s.kid.truncate(4);
        Some(s)
    }),
    forged(expired, "expired", "attestation expired at", |r, k| {
        shandong_signs(r, k, |p| {
            p.issued_at -= 900;
            p.expires_at = p.issued_at + 300;
        })
    }),
    forged(future_dated, "future-dated", "attestation is dated in the future", |r, k| {
        shandong_signs(r, k, |p| {
            p.issued_at += 3600;
            p.expires_at += 3600;
        })
    }),
    forged(expires_before_it_is_issued, "expires before it is issued", "expires_at is not after issued_at", |r, k| {
        shandong_signs(r, k, |p| p.expires_at = p.issued_at)
    }),
    forged(
        wrong_kid_anhuis_key_id,
        "wrong kid (Anhui's key id)",
        "is not an attestation key of province 370000",
        |r, k| {
            let mut s = honest(r, k)?;
            s.kid = k.anhui.kid().0.to_vec();
            Some(s)
        }
    ),
    forged(revoked_kid, "revoked kid", "of province 370000 is revoked", |r, k| {
        Some(k.revoked.sign(&green_payload(r, "370000")))
    }),
    forged(
        key_past_its_validity_window,
        "key past its validity window",
        "of province 370000 is not valid at this time",
        |r, k| { Some(k.lapsed.sign(&green_payload(r, "370000"))) }
    ),
    forged(
        genuine_attestation_replayed_for_another_token,
        "genuine attestation replayed for another token",
        "attestation is bound to a different token",
        |_, k| k.genuine.attestation.clone(),
    ),
    forged_for_the_genuine_token(
        genuine_attestation_replayed_for_another_purpose,
        "genuine attestation replayed for another purpose",
        "is for purpose \"transit.general\", not the one asked",
        Offline::Accepted,
        |_, k| k.genuine.attestation.clone(),
    ),
    forged(unknown_varint_field, "unknown varint field", "payload carries unknown protobuf field number 15", |r, k| {
        shandong_signs_bytes(r, k, &[15 << 3, 1])
    }),
    forged(
        personal_data_smuggled_in_an_unknown_field,
        "personal data smuggled in an unknown field",
        "payload carries unknown protobuf field number 20",
        |r, k| {
            let name = "王建国".as_bytes();
            let mut extra = vec![(20 << 3) | 2, 0x01, name.len() as u8];
            extra.extend_from_slice(name);
            shandong_signs_bytes(r, k, &extra)
        },
    ),
    forged(repeated_status_field, "repeated status field", "payload repeats protobuf field number 3", |r, k| {
        shandong_signs_bytes(r, k, &[3 << 3, 3])
    }),
    forged_offline(
        rule_id_sent_as_a_varint,
        "rule id sent as a varint",
        "payload is not well-formed protobuf",
        Offline::Refused(NOT_A_QR),
        |r, k| shandong_signs_bytes(r, k, &[7 << 3, 1])
    ),
    forged(oversized_payload, "oversized payload", "exceeds the 256-byte limit", |r, k| {
        let mut extra = vec![(21 << 3) | 2, 0x01, 0xc8, 0x01];
        extra.extend([0u8; 200]);
        shandong_signs_bytes(r, k, &extra)
    }),
    forged_offline(
        empty_payload,
        "empty payload",
        "purpose \"\" is not in the field policy",
        Offline::Refused("invalid province code"),
        |_, k| Some(k.shandong.sign_bytes(Vec::new()))
    ),
    forged(
        claims_anhui_under_shandongs_key,
        "claims Anhui under Shandong's key",
        "is not an attestation key of province 340000",
        |r, k| { Some(k.shandong.sign(&green_payload(r, "340000"))) }
    ),
    forged_offline(
        valid_anhui_attestation_answered_for_shandong,
        "valid Anhui attestation answered for Shandong",
        "attestation claims province 340000",
        Offline::Accepted,
        |r, k| { Some(k.anhui.sign(&green_payload(r, "340000"))) }
    ),
    forged(
        payload_format_version_2,
        "payload format version 2",
        "unsupported attestation payload version 2",
        |r, k| { shandong_signs(r, k, |p| p.version = 2) }
    ),
    forged(unspecified_status, "unspecified status", "attestation status is unspecified or unknown", |r, k| {
        shandong_signs(r, k, |p| p.status = 0)
    }),
    forged(
        status_outside_the_enum,
        "status outside the enum",
        "attestation status is unspecified or unknown",
        |r, k| { shandong_signs(r, k, |p| p.status = 9) }
    ),
    forged(green_citing_a_rule, "green citing a rule", "green attestation must not cite a rule", |r, k| {
        shandong_signs(r, k, |p| p.rule_id = RED_RULE.into())
    }),
    forged(red_citing_no_rule, "red citing no rule", "non-green attestation cites no rule", |r, k| {
        shandong_signs(r, k, |p| p.status = pb::HealthStatus::Red as i32)
    }),
    forged(
        red_citing_an_unregistered_rule,
        "red citing an unregistered rule",
        "cites rule \"MADE-UP-9\", which is not in the rule registry",
        |r, k| {
            shandong_signs(r, k, |p| {
                p.status = pb::HealthStatus::Red as i32;
                p.rule_id = "MADE-UP-9".into();
            })
        },
    ),
    forged(a_31_byte_token_digest, "31-byte token digest", "attestation token digest must be 32 bytes", |r, k| {
        shandong_signs(r, k, |p| {
            p.token_digest.pop();
        })
    }),
    forged(
        unknown_test_recency_bucket,
        "unknown test-recency bucket",
        "attestation test recency is unknown",
        |r, k| { shandong_signs(r, k, |p| p.test_recency = 42) }
    ),
    forged(
        purpose_outside_the_field_policy,
        "purpose outside the field policy",
        "purpose \"transit.space\" is not in the field policy",
        |r, k| { shandong_signs(r, k, |p| p.purpose = "transit.space".into()) }
    ),
    forged(
        field_outside_the_purposes_policy,
        "field outside the purpose's policy",
        "field test_recency is not allowed for purpose \"venue.entry\"",
        |r, k| {
            shandong_signs(r, k, |p| {
                p.purpose = "venue.entry".into();
                p.test_recency = pb::TestRecency::Within24h as i32;
            })
        },
    ),
    // --- a compromised province with its real key: rules it may not apply
    forged(
        red_under_a_rule_that_may_only_assign_yellow,
        "RED under a rule that may only assign YELLOW",
        "rule \"NHC-SC-2022-9\" may not assign RED",
        |r, k| shandong_signs(r, k, |p| {
            p.status = pb::HealthStatus::Red as i32;
            p.rule_id = YELLOW_RULE.into();
        })
    ),
    forged(
        red_under_a_rule_naming_only_another_provinces_authority,
        "RED under a rule naming only another province's authority",
        "rule \"AH-ONLY-1\" names no authority of province 370000",
        |r, k| shandong_signs(r, k, |p| {
            p.status = pb::HealthStatus::Red as i32;
            p.rule_id = ANHUI_ONLY_RULE.into();
        })
    ),
    // --- validity beyond the trust list's bound or the key's window
    forged(
        green_valid_for_ten_years,
        "GREEN valid for ten years",
        "beyond the trust list's maximum of 3600 s",
        |r, k| shandong_signs(r, k, |p| p.expires_at = p.issued_at + 10 * 365 * 86_400)
    ),
    forged(
        issued_before_its_keys_not_before,
        "issued before its key's not_before",
        "lies outside key 370000/",
        |r, k| {
            let mut p = green_payload(r, "370000");
            p.issued_at = k.young_not_before - 1;
            Some(k.young.sign(&p))
        }
    ),
    forged(
        expiring_after_its_keys_not_after,
        "expiring after its key's not_after",
        "lies outside key 370000/",
        |r, k| {
            let mut p = green_payload(r, "370000");
            p.expires_at = k.expiring_not_after + 1;
            Some(k.expiring.sign(&p))
        }
    ),
    // --- the same statement in a non-canonical byte form
    forged(status_as_a_two_byte_varint, "status as a two-byte varint", NON_CANONICAL, |r, k| {
        shandong_signs_edited(r, k, |b| {
            let at = tag_of(b, 3) + 1;
            b.splice(at..at + 1, [0x81, 0x00]);
        })
    }),
    forged(province_tag_in_two_bytes, "province tag in two bytes", NON_CANONICAL, |r, k| {
        shandong_signs_edited(r, k, |b| {
            let at = tag_of(b, 2);
            b.splice(at..at + 1, [0x92, 0x00]);
        })
    }),
    forged(province_length_in_two_bytes, "province length in two bytes", NON_CANONICAL, |r, k| {
        shandong_signs_edited(r, k, |b| {
            let at = tag_of(b, 2) + 1;
            b.splice(at..at + 1, [b[at] | 0x80, 0x00]);
        })
    }),
    // --- the answer itself
    forged_two_messages(
        two_attestations_in_one_answer,
        "two attestations in one answer",
        "node answered with more than one message",
        honest,
        |r, k| shandong_signs(r, k, |p| {
            p.status = pb::HealthStatus::Red as i32;
            p.rule_id = RED_RULE.into();
        })
    ),
    forged_offline(
        node_answers_without_an_attestation,
        "node answers without an attestation",
        "node answered without an attestation",
        Offline::NotApplicable,
        |_, _| None
    ),
];

/// How an offline hub refuses a QR whose payload does not even decode.
const NOT_A_QR: &str = "QR body is not a valid QrCode message";
const NON_CANONICAL: &str = "attestation payload is not canonically encoded";
