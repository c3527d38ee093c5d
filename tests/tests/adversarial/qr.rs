//! Malformed and altered QR strings, parsed (and verified offline) as every hub does
//! before anything else.

use huren_pki::qr::{self, Scanned};
use huren_pki::unix_now;
use huren_proto::pb;
use prost::Message;

use crate::common::Expect::Error;
use crate::common::{case, error, random_token, rows, Ctx, Outcome};

/// The genuine QR's content.
fn genuine(c: &Ctx) -> pb::QrCode {
    qr::decode_qr(&c.genuine_qr).expect("genuine QR")
}

/// `code` with its signed payload edited after signing.
fn edit_payload(code: &mut pb::QrCode, edit: impl FnOnce(&mut pb::AttestationPayload)) {
    let signed = code.attestation.as_mut().expect("attestation");
    let mut payload = pb::AttestationPayload::decode(signed.payload.as_slice()).expect("payload");
    edit(&mut payload);
    signed.payload = payload.encode_to_vec();
}

/// `code` as a hub verifies it offline, against the gateway's current trust list.
fn verify_offline(c: &Ctx, code: &pb::QrCode) -> Outcome {
    let trust = c.f.gateway_trust().expect("gateway").current();
    huren_cli::hub::verify_offline(&trust, &qr::encode_qr(code), unix_now()).map(drop).map_err(error)
}

/// `HRN1:` and the base32 of `bytes`, however they are encoded.
fn qr_text(bytes: &[u8]) -> String {
    format!("{}{}", qr::QR_PREFIX, data_encoding::BASE32_NOPAD.encode(bytes))
}

/// A QR string as a hub verifies it offline, against the gateway's current trust list.
fn verify_offline_text(c: &Ctx, text: &str) -> Outcome {
    let trust = c.f.gateway_trust().expect("gateway").current();
    huren_cli::hub::verify_offline(&trust, text, unix_now()).map(drop).map_err(error)
}

rows![
    // --- malformed QR strings (parsed by every hub before anything else)
    case(qr_with_a_wrong_prefix, "QR with a wrong prefix", Error("does not start with HRN1:"), |c| {
        Box::pin(async move { qr::decode_qr(&c.genuine_qr.replacen("HRN1:", "HRN2:", 1)).map(drop).map_err(error) })
    }),
    case(
        qr_in_lower_case_with_a_character_outside_base32,
        "QR in lower case with a character outside base32",
        Error("QR body is not base32"),
        |c| {
            Box::pin(async move {
                // Lower case is read as the same QR (scanners report it so); a damaged body is not.
                let lower = c.genuine_qr.to_lowercase();
                let bad = format!("{}8{}", &lower[..40], &lower[41..]);
                Scanned::parse(&bad).map(drop).map_err(error)
            })
        }
    ),
    case(
        qr_body_with_a_character_outside_base32,
        "QR body with a character outside base32",
        Error("QR body is not base32"),
        |c| {
            Box::pin(async move {
                let bad = format!("{}1{}", &c.genuine_qr[..40], &c.genuine_qr[41..]);
                qr::decode_qr(&bad).map(drop).map_err(error)
            })
        }
    ),
    case(qr_truncated_mid_message, "QR truncated mid-message", Error("QR body is not a valid QrCode message"), |c| {
        Box::pin(async move {
            // Cut to a whole number of base32 blocks so only the protobuf is broken.
            let body = &c.genuine_qr["HRN1:".len()..];
            let cut = format!("HRN1:{}", &body[..(body.len() / 2) / 8 * 8]);
            qr::decode_qr(&cut).map(drop).map_err(error)
        })
    }),
    case(qr_truncated_by_one_character, "QR truncated by one character", Error("QR body is not base32"), |c| {
        Box::pin(async move {
            let body = &c.genuine_qr["HRN1:".len()..];
            // Base32 without padding has no valid length of 8k+1, 8k+3 or 8k+6 characters.
            let keep = (0..body.len()).rev().find(|n| matches!(n % 8, 1 | 3 | 6)).expect("invalid length");
            qr::decode_qr(&format!("HRN1:{}", &body[..keep])).map(drop).map_err(error)
        })
    }),
    case(
        qr_longer_than_any_qr_code_holds,
        "QR longer than any QR code holds",
        Error("longer than 1024 characters"),
        |c| {
            Box::pin(
                async move { qr::decode_qr(&format!("{}{}", c.genuine_qr, "A".repeat(1024))).map(drop).map_err(error) },
            )
        }
    ),
    case(qr_without_an_attestation, "QR without an attestation", Error("QR carries no attestation"), |_| {
        Box::pin(async move {
            let text = qr::encode_qr(&pb::QrCode { attestation: None, token: random_token() });
            qr::decode_qr(&text).map(drop).map_err(error)
        })
    }),
    case(qr_with_a_15_byte_token, "QR with a 15-byte token", Error("token must be 16 bytes"), |c| {
        Box::pin(async move {
            let mut code = genuine(&c);
            code.token.pop();
            qr::decode_qr(&qr::encode_qr(&code)).map(drop).map_err(error)
        })
    }),
    case(
        qr_whose_payload_names_no_valid_province,
        "QR whose payload names no valid province",
        Error("invalid province code"),
        |c| {
            Box::pin(async move {
                let mut code = genuine(&c);
                edit_payload(&mut code, |p| p.province = "34000".into());
                Scanned::parse(&qr::encode_qr(&code)).map(drop).map_err(error)
            })
        }
    ),
    case(
        qr_carrying_another_travellers_token,
        "QR carrying another traveller's token",
        Error("bound to a different token"),
        |c| {
            Box::pin(async move {
                let mut code = genuine(&c);
                code.token = random_token();
                verify_offline(&c, &code)
            })
        }
    ),
    case(
        qr_whose_expiry_was_extended_after_signing,
        "QR whose expiry was extended after signing",
        Error("signature does not verify"),
        |c| {
            Box::pin(async move {
                let mut code = genuine(&c);
                edit_payload(&mut code, |p| p.expires_at += 86_400);
                verify_offline(&c, &code)
            })
        }
    ),
    case(
        qr_with_an_extra_unknown_outer_field,
        "QR with an extra unknown outer field",
        Error("QR message carries unknown or repeated protobuf field number 3"),
        |c| {
            Box::pin(async move {
                // Field 3 (varint 1) after the attestation and token: prost would skip it.
                let mut bytes = genuine(&c).encode_to_vec();
                bytes.extend_from_slice(&[3 << 3, 1]);
                verify_offline_text(&c, &qr_text(&bytes))
            })
        }
    ),
    case(
        qr_with_a_non_canonical_outer_encoding,
        "QR with a non-canonical outer encoding",
        Error("QR message is not canonically encoded"),
        |c| {
            Box::pin(async move {
                // The token field's tag (field 2, length-delimited) written in two bytes.
                let code = genuine(&c);
                let mut bytes = pb::QrCode { attestation: code.attestation.clone(), token: vec![] }.encode_to_vec();
                bytes.extend_from_slice(&[0x92, 0x00, code.token.len() as u8]);
                bytes.extend_from_slice(&code.token);
                verify_offline_text(&c, &qr_text(&bytes))
            })
        }
    ),
    case(
        typed_pair_with_a_malformed_token,
        "typed pair with a malformed token",
        Error("token must be 16 bytes written as 26 base32 characters"),
        |_| Box::pin(async move { Scanned::parse("340000:NOT-A-TOKEN").map(drop).map_err(error) }),
    ),
];
