"""An independent verifier of Huren trust lists, attestations and QR codes.

Written from proto/proto/huren/v1/huren.proto and the README's "Wire rules" and "Gateway
checks on every lookup" alone: no Huren code. Every refusal carries the same short label
the Rust verifier (`huren_pki::verify_attestation`) reports, so the two can be compared.

Layout: `read_canonical` reads a message's fields off the wire strictly (the canonical
encoding rule); `TrustList.verify` checks the root's signature and indexes the list;
`verify_attestation` runs the checks in the README's order; `decode_qr` reads a QR string.
"""

import base64
import hashlib
import time
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from huren.v1 import huren_pb2 as pb

ATTESTATION_CONTEXT = b"huren/attestation/v1\x00"
TRUST_LIST_CONTEXT = b"huren/trust-list/v1\x00"
QR_PREFIX = "HRN1:"
TOKEN_LEN = 16
MAX_PAYLOAD_BYTES = 256
MAX_CLOCK_SKEW_SECS = 60
DEFAULT_MAX_LIFETIME_SECS = 3600

VARINT, LEN = 0, 2
# AttestationPayload: field number -> (name, wire type).
PAYLOAD_FIELDS = {
    1: ("version", VARINT),
    2: ("province", LEN),
    3: ("status", VARINT),
    4: ("issued_at", VARINT),
    5: ("expires_at", VARINT),
    6: ("token_digest", LEN),
    7: ("rule_id", LEN),
    8: ("test_recency", VARINT),
    9: ("purpose", LEN),
}
ALL_FIELDS = [name for name, _ in PAYLOAD_FIELDS.values()]
REQUIRED_FIELDS = {"version", "province", "status", "issued_at", "expires_at", "token_digest", "rule_id", "purpose"}
DEFAULT_PURPOSES = ["transit.rail", "transit.highway", "transit.air", "transit.general", "venue.entry"]
SIGNED_ATTESTATION_FIELDS = {1: ("payload", LEN), 2: ("signature", LEN), 3: ("kid", LEN)}
QR_FIELDS = {1: ("attestation", LEN), 2: ("token", LEN)}


class Refused(Exception):
    """An attestation, QR or trust list that is not believed; `reason` is the label."""

    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ------------------------------------------------------------------ canonical encoding


def _varint(buf, pos, reason):
    """Reads a varint at `pos`; refuses a non-minimal one (a trailing 0x00 byte)."""
    value, shift, start = 0, 0, pos
    while True:
        if pos >= len(buf) or shift > 63:
            raise Refused("malformed", "truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if pos - start > 1 and buf[pos - 1] == 0:
        raise Refused(reason, "varint not in its shortest form")
    return value, pos


def read_canonical(buf, fields, reason="non_canonical", unknown="unknown_field", duplicate="duplicate_field"):
    """The fields of a flat proto3 message as {name: raw value}, read strictly: only the
    numbers `fields` defines, each at most once and with its wire type, in ascending order,
    tags, varints and lengths in their shortest form, no default (0 or empty) value written.
    Varints come back as ints, length-delimited fields as bytes."""
    out, pos, last = {}, 0, 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, reason)
        number, wire_type = key >> 3, key & 7
        if number not in fields:
            raise Refused(unknown, f"field number {number}")
        name, want_type = fields[number]
        if name in out:
            raise Refused(duplicate, f"field number {number}")
        if wire_type != want_type:
            raise Refused("malformed", f"field {name} has wire type {wire_type}")
        if number < last:
            raise Refused(reason, "fields out of order")
        last = number
        if wire_type == VARINT:
            value, pos = _varint(buf, pos, reason)
            if value == 0:
                raise Refused(reason, f"default value of {name} written")
        else:
            length, pos = _varint(buf, pos, reason)
            if pos + length > len(buf):
                raise Refused("malformed", f"field {name} truncated")
            value, pos = bytes(buf[pos : pos + length]), pos + length
            if not value:
                raise Refused(reason, f"empty {name} written")
        out[name] = value
    return out


def _int64(value):
    """A varint read as protobuf int64 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


# ------------------------------------------------------------------ the trust list


def valid_province(code):
    return len(code) == 6 and code.isdigit() and code.isascii() and not code.startswith("0")


def valid_purpose(purpose):
    return 1 <= len(purpose) <= 64 and all(
        word and all(c.islower() and c.isascii() or c == "_" for c in word) for word in purpose.split(".")
    )


@dataclass
class Key:
    public_key: bytes
    not_before: int
    not_after: int
    status: int


@dataclass
class TrustList:
    """A trust list whose root signature verified, indexed."""

    signed: pb.SignedTrustList
    raw: pb.TrustList
    keys: dict = field(default_factory=dict)  # (province, kid) -> Key
    rules: dict = field(default_factory=dict)  # id -> pb.Rule
    policy: dict = field(default_factory=dict)  # purpose -> set of field names
    max_lifetime: int = DEFAULT_MAX_LIFETIME_SECS

    @staticmethod
    def verify(signed_bytes_or_msg, root_pem):
        """Verifies the ECDSA P-256 / SHA-256 signature by the national root over
        "huren/trust-list/v1" 0x00 + the exact payload bytes, then the content."""
        signed = signed_bytes_or_msg
        if isinstance(signed, (bytes, bytearray)):
            signed = pb.SignedTrustList.FromString(bytes(signed))
        root = x509.load_pem_x509_certificate(root_pem)
        public = root.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
            raise Refused("bad_root", "the national root is not an ECDSA P-256 key")
        try:
            public.verify(signed.signature, TRUST_LIST_CONTEXT + signed.payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Refused("bad_signature", "trust list signature does not verify against the national root")
        raw = pb.TrustList.FromString(signed.payload)
        trust = TrustList(signed=signed, raw=raw)
        trust._index()
        return trust

    def _index(self):
        raw = self.raw
        if raw.version != 1:
            raise Refused("content", f"unsupported trust list version {raw.version}")
        if not raw.trust_domain:
            raise Refused("content", "empty trust domain")
        for p in raw.provinces:
            if not valid_province(p.code):
                raise Refused("content", f"province code {p.code!r}")
            for k in p.attestation_keys:
                if len(k.public_key) != 32:
                    raise Refused("content", f"province {p.code}: key is not 32 bytes")
                if k.kid != hashlib.sha256(k.public_key).digest()[:8]:
                    raise Refused("content", f"province {p.code}: kid does not match its key")
                if k.status == pb.KEY_STATUS_UNSPECIFIED:
                    raise Refused("content", f"province {p.code}: key without status")
                if (p.code, k.kid) in self.keys:
                    raise Refused("content", f"province {p.code}: duplicate key")
                self.keys[(p.code, k.kid)] = Key(k.public_key, k.not_before, k.not_after, k.status)
        for r in raw.rules:
            if not r.id or r.id in self.rules:
                raise Refused("content", f"rule id {r.id!r} empty or repeated")
            self.rules[r.id] = r
        if raw.HasField("attestation_bounds"):
            if raw.attestation_bounds.max_lifetime_seconds < 0:
                raise Refused("content", "negative attestation lifetime bound")
            if raw.attestation_bounds.max_lifetime_seconds > 0:
                self.max_lifetime = raw.attestation_bounds.max_lifetime_seconds
        if raw.HasField("field_policy") and raw.field_policy.purposes:
            for p in raw.field_policy.purposes:
                fields = set(p.fields)
                if not valid_purpose(p.purpose) or p.purpose in self.policy:
                    raise Refused("content", f"field policy purpose {p.purpose!r}")
                if not fields <= set(ALL_FIELDS) or not REQUIRED_FIELDS <= fields:
                    raise Refused("content", f"field policy for {p.purpose!r} names unknown fields or lacks required ones")
                self.policy[p.purpose] = fields
        else:
            # No policy: the default minimal dataset; venue entry carries no test-recency bucket.
            for purpose in DEFAULT_PURPOSES:
                self.policy[purpose] = set(ALL_FIELDS) - ({"test_recency"} if purpose == "venue.entry" else set())

    def province_name(self, code):
        return next((p.name for p in self.raw.provinces if p.code == code), code)


# ------------------------------------------------------------------ attestations


@dataclass
class Verified:
    province: str
    status: str
    issued_at: int
    expires_at: int
    rule_id: str
    rule_title: str
    test_recency: str
    purpose: str


def verify_attestation(trust, signed, now, province=None, token=None, purpose=None):
    """Believes `signed` (a pb.SignedAttestation) only if every wire rule holds; binds it
    to what the caller knows independently: the province asked or scanned, the token it
    holds, the purpose asked. Raises Refused with the label of the first failed check."""
    # 2. Key id.
    if len(signed.kid) != 8:
        raise Refused("kid_length")
    payload = signed.payload
    # 3-4. The payload's wire fields, strictly: size, known numbers once each with their
    # wire types, canonical bytes.
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Refused("oversized", f"{len(payload)} bytes")
    fields = read_canonical(payload, PAYLOAD_FIELDS)
    decoded = pb.AttestationPayload.FromString(payload)
    if decoded.SerializeToString(deterministic=True) != payload:
        raise Refused("non_canonical", "re-encoding does not give the signed bytes")
    # 5. Field policy of the payload's purpose, then the structure.
    allowed = trust.policy.get(decoded.purpose)
    if allowed is None:
        raise Refused("purpose_not_in_policy", decoded.purpose)
    for name in fields:
        if name not in allowed:
            raise Refused("field_not_allowed", f"{name} for {decoded.purpose}")
    if decoded.version != 1:
        raise Refused("invalid_payload", f"version {decoded.version}")
    if not valid_province(decoded.province):
        raise Refused("invalid_payload", "province code")
    if decoded.status not in (pb.HEALTH_STATUS_GREEN, pb.HEALTH_STATUS_YELLOW, pb.HEALTH_STATUS_RED):
        raise Refused("invalid_payload", "status")
    issued_at, expires_at = _int64(fields.get("issued_at", 0)), _int64(fields.get("expires_at", 0))
    if expires_at <= issued_at:
        raise Refused("invalid_payload", "expires_at not after issued_at")
    if len(decoded.token_digest) != 32:
        raise Refused("invalid_payload", "token digest length")
    green = decoded.status == pb.HEALTH_STATUS_GREEN
    if green and decoded.rule_id:
        raise Refused("invalid_payload", "a GREEN attestation cites a rule")
    if not green and not decoded.rule_id:
        raise Refused("missing_rule")
    if decoded.test_recency not in pb.TestRecency.values():
        raise Refused("invalid_payload", "test recency")
    if not valid_purpose(decoded.purpose):
        raise Refused("invalid_payload", "purpose")
    # 6. The key: one of the payload's province, not revoked, valid now.
    if decoded.province not in {p.code for p in trust.raw.provinces}:
        raise Refused("unknown_province", decoded.province)
    key = trust.keys.get((decoded.province, signed.kid))
    if key is None:
        raise Refused("unknown_key", f"{decoded.province}/{signed.kid.hex()}")
    if key.status == pb.KEY_STATUS_REVOKED:
        raise Refused("key_revoked", f"{decoded.province}/{signed.kid.hex()}")
    if not key.not_before <= now < key.not_after:
        raise Refused("key_not_valid", f"{decoded.province}/{signed.kid.hex()}")
    # 7. Ed25519 over the domain-separated exact bytes.
    try:
        nacl.signing.VerifyKey(key.public_key).verify(ATTESTATION_CONTEXT + payload, signed.signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        raise Refused("bad_signature")
    # 8. Time.
    if issued_at > now + MAX_CLOCK_SKEW_SECS:
        raise Refused("future_dated", str(issued_at))
    if expires_at <= now:
        raise Refused("expired", str(expires_at))
    # 9. Validity bounds: the trust list's lifetime bound and the key's window.
    if expires_at - issued_at > trust.max_lifetime:
        raise Refused("lifetime_too_long", f"{expires_at - issued_at} s > {trust.max_lifetime} s")
    if issued_at < key.not_before or expires_at > key.not_after:
        raise Refused("outside_key_validity")
    # 10. A non-green status: a registered rule that may assign it and names an authority
    # of the signing province.
    title = ""
    if not green:
        rule = trust.rules.get(decoded.rule_id)
        if rule is None:
            raise Refused("unregistered_rule", decoded.rule_id)
        if decoded.status not in rule.may_assign:
            raise Refused("rule_cannot_assign", decoded.rule_id)
        if not any(a.split("/", 1)[0] == decoded.province and "/" in a for a in rule.authorities):
            raise Refused("rule_not_for_province", decoded.rule_id)
        title = rule.title
    # 11. What the caller knows independently.
    if province is not None and decoded.province != province:
        raise Refused("province_mismatch", f"{decoded.province} is not {province}")
    if token is not None and decoded.token_digest != hashlib.sha256(token).digest():
        raise Refused("token_binding")
    if purpose is not None and decoded.purpose != purpose:
        raise Refused("purpose_mismatch", f"{decoded.purpose} is not {purpose}")
    return Verified(
        province=decoded.province,
        status=pb.HealthStatus.Name(decoded.status).removeprefix("HEALTH_STATUS_"),
        issued_at=issued_at,
        expires_at=expires_at,
        rule_id=decoded.rule_id,
        rule_title=title,
        test_recency=pb.TestRecency.Name(decoded.test_recency).removeprefix("TEST_RECENCY_"),
        purpose=decoded.purpose,
    )


# ------------------------------------------------------------------ QR codes


def decode_qr(text):
    """A QR string: "HRN1:" + RFC 4648 base32 without padding of a QrCode, strictly
    encoded (only QrCode's and SignedAttestation's fields, each once, canonical), with an
    attestation and a 16-byte token. Returns (pb.SignedAttestation, token). Verifies nothing."""
    text = text.strip()
    if len(text) > 1024:
        raise Refused("qr_too_long")
    if text[: len(QR_PREFIX)].upper() != QR_PREFIX:
        raise Refused("qr_prefix")
    body = text[len(QR_PREFIX) :].upper()
    if "=" in body:
        raise Refused("qr_encoding", "padding")
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise Refused("qr_encoding", "not base32")
    if base64.b32encode(raw).decode().rstrip("=") != body:
        raise Refused("qr_encoding", "not the canonical base32 of its bytes")
    outer = read_canonical(raw, QR_FIELDS, reason="qr_non_canonical", unknown="qr_unknown_field", duplicate="qr_unknown_field")
    if "attestation" not in outer:
        raise Refused("qr_missing_attestation")
    read_canonical(outer["attestation"], SIGNED_ATTESTATION_FIELDS, reason="qr_non_canonical", unknown="qr_unknown_field", duplicate="qr_unknown_field")
    qr = pb.QrCode.FromString(raw)
    if qr.SerializeToString(deterministic=True) != raw:
        raise Refused("qr_non_canonical")
    if len(qr.token) != TOKEN_LEN:
        raise Refused("qr_token")
    return qr.attestation, qr.token


def verify_qr(trust, text, now):
    """Offline: decodes a QR strictly and verifies its attestation, bound to the token the
    QR carries and the province its payload names (a QR carries no purpose)."""
    signed, token = decode_qr(text)
    claimed = pb.AttestationPayload.FromString(signed.payload).province if signed.payload else None
    return verify_attestation(trust, signed, now, province=claimed, token=token)


def token_from_text(text):
    """A token as the command line writes it: 26 base32 characters."""
    text = text.strip().upper()
    token = base64.b32decode(text + "=" * (-len(text) % 8))
    if len(token) != TOKEN_LEN:
        raise ValueError("a token is 16 bytes")
    return token


def now():
    return int(time.time())
