//! Certificate serial numbers, compared as integers.
//!
//! A serial is an integer, but it is written many ways: DER pads a serial whose high bit
//! is set with a `00` octet (so `raw_serial` reads `008f1a…`), `openssl x509 -serial`
//! prints `serial=8F1A…` without it, browsers print `8F:1A:…` or `00 8F 1A …`, and
//! `openssl x509 -text` prints a short one as `4096 (0x1000)`. A revocation that names
//! one spelling must catch every other, so Huren keeps exactly one form wherever a serial
//! is stored or compared — the registry, the trust list's revoked set, [`crate::ca::serial_hex`],
//! the TLS verifiers: **lowercase hex of the integer, without leading zeros** (`0` for
//! zero). [`canonical_from_bytes`] derives it from a certificate's serial octets;
//! [`parse`] from what a person pastes, refusing anything that is not a serial.

/// Hex digits a serial may have once leading zeros are dropped: RFC 5280 allows 20
/// octets; twice that leaves room for non-conforming issuers while refusing garbage.
pub const MAX_SERIAL_HEX_DIGITS: usize = 80;

/// Why a text is not a certificate serial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid serial {input:?}: {why} (expected hex as openssl or a browser prints it, e.g. 8F1A…, 8f:1a:…, 0x8F1A or serial=8F1A…)")]
pub struct InvalidSerial {
    /// The text given (trimmed, at most 100 characters).
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// The canonical form of a serial given as big-endian octets (a certificate's
/// `raw_serial`, DER sign padding included): lowercase hex, no leading zeros.
pub fn canonical_from_bytes(bytes: &[u8]) -> String {
    let hex = data_encoding::HEXLOWER.encode(bytes);
    strip_zeros(&hex).to_owned()
}

fn strip_zeros(hex: &str) -> &str {
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() && !hex.is_empty() {
        "0"
    } else {
        trimmed
    }
}

/// The canonical form of a serial written any way openssl or a browser prints it:
/// `8F1A…`, `8f1a…`, `008F1A…`, `0x8F1A…`, `8F:1A:…`, `8F 1A …`, `serial=8F1A…`
/// (`openssl x509 -serial`), `Serial Number: 8f:1a:…` or `4096 (0x1000)` (`openssl x509
/// -text`). Hex without a prefix is hex, never decimal.
pub fn parse(text: &str) -> Result<String, InvalidSerial> {
    let input = text.trim();
    let err = |why| InvalidSerial { input: input.chars().take(100).collect(), why };
    let mut rest = input;
    for prefix in ["serial number:", "serial="] {
        if rest.len() >= prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
            rest = rest[prefix.len()..].trim_start();
        }
    }
    // `openssl x509 -text` for a short serial: `<decimal> (0x<hex>)`; both must agree.
    if let Some((decimal, hex)) = rest.strip_suffix(')').and_then(|r| r.split_once(" (")) {
        let canonical = parse_hex(hex, err)?;
        let value: u128 = decimal.trim().parse().map_err(|_| err("the decimal part is not a number"))?;
        if format!("{value:x}") != canonical {
            return Err(err("the decimal and hex parts name different serials"));
        }
        return Ok(canonical);
    }
    parse_hex(rest, err)
}

fn parse_hex(text: &str, err: impl Fn(&'static str) -> InvalidSerial) -> Result<String, InvalidSerial> {
    let text = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    if text.is_empty() {
        return Err(err("it is empty"));
    }
    let mut digits = String::with_capacity(text.len());
    let mut previous_was_separator = true;
    for c in text.chars() {
        match c {
            ':' | ' ' | '-' => {
                if previous_was_separator {
                    return Err(err("a separator must stand between hex digits"));
                }
                previous_was_separator = true;
            }
            c if c.is_ascii_hexdigit() => {
                digits.push(c.to_ascii_lowercase());
                previous_was_separator = false;
            }
            _ => return Err(err("it holds a character that is not a hex digit")),
        }
    }
    if previous_was_separator {
        return Err(err("a separator must stand between hex digits"));
    }
    let canonical = strip_zeros(&digits);
    if canonical.len() > MAX_SERIAL_HEX_DIGITS {
        return Err(err("it is longer than any certificate serial"));
    }
    Ok(canonical.to_owned())
}

/// The canonical form of a serial stored by an older version (lowercase hex, perhaps with
/// a `00` sign octet): [`parse`]d when it parses, else kept as written, lowercased (it then
/// matches nothing, as before).
pub fn canonical(stored: &str) -> String {
    parse(stored).unwrap_or_else(|_| stored.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printed_form_of_one_serial_is_the_same_integer() {
        let der = [0x00, 0x8f, 0x1a, 0x2b, 0x00, 0x01];
        let want = canonical_from_bytes(&der);
        assert_eq!(want, "8f1a2b0001");
        for form in [
            "8F1A2B0001",
            "8f1a2b0001",
            "008F1A2B0001",
            "0x8F1A2B0001",
            "0X8f1a2b0001",
            "8F:1A:2B:00:01",
            "00:8f:1a:2b:00:01",
            "00 8F 1A 2B 00 01",
            "serial=8F1A2B0001",
            "SERIAL=8F1A2B0001\n",
            "  Serial Number: 00:8f:1a:2b:00:01 ",
            "614619348993 (0x8f1a2b0001)",
        ] {
            assert_eq!(parse(form).as_deref(), Ok(want.as_str()), "{form:?}");
        }
        assert_eq!(canonical_from_bytes(&[0, 0]), "0");
        assert_eq!(parse("00").as_deref(), Ok("0"));
        assert_eq!(canonical("008f1a2b0001"), want, "old lists with padded serials still match");
    }

    #[test]
    fn garbage_is_refused_with_its_cause() {
        for (bad, why) in [
            ("", "it is empty"),
            ("serial=", "it is empty"),
            ("0x", "it is empty"),
            ("8G1A", "not a hex digit"),
            ("8f1a;drop", "not a hex digit"),
            (":8f:1a", "separator"),
            ("8f::1a", "separator"),
            ("8f1a:", "separator"),
            ("12 (0x8f)", "different serials"),
            ("twelve (0xc)", "not a number"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.why.contains(why), "{bad:?}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
        assert!(parse(&"f".repeat(MAX_SERIAL_HEX_DIGITS + 1)).is_err());
        assert!(parse(&format!("00{}", "f".repeat(MAX_SERIAL_HEX_DIGITS))).is_ok());
    }
}
