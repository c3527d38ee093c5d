//! QR strings and typed pairs as a hub scans or types them: `decode_qr`, `Scanned::parse`,
//! `token_from_text`. Must never panic; whatever decodes is canonical (re-encoding gives
//! back the same string) and decodes again to the same message.
#![no_main]

use huren_pki::qr::{self, Scanned};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(code) = qr::decode_qr(text) {
        assert!(code.attestation.is_some());
        assert_eq!(code.token.len(), qr::TOKEN_LEN);
        let again = qr::encode_qr(&code);
        // Only the canonical encoding decodes: re-encoding gives back the very string.
        assert_eq!(again, text.trim().to_ascii_uppercase());
        if again.len() <= qr::MAX_QR_CHARS {
            assert_eq!(qr::decode_qr(&again).expect("re-encoded QR decodes"), code);
        }
    }
    if let Ok(scanned) = Scanned::parse(text) {
        assert_eq!(scanned.token().len(), qr::TOKEN_LEN);
        assert_eq!(scanned.province().as_str().len(), 6);
    }
    if let Ok(token) = qr::token_from_text(text) {
        assert_eq!(qr::token_from_text(&qr::token_to_text(&token)).expect("round trip"), token);
    }
});
