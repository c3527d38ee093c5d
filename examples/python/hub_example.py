"""A transport hub's own gRPC stack talking to a Huren federation: stock grpcio, PyNaCl,
cryptography. Written from proto/ and the README alone.

    python hub_example.py --info federation.json

`federation.json` is what `huren demo --info` writes (examples/run.sh starts one): the
gateway's address, the national root, a hub certificate and the demo travellers' tokens
and QR strings. The example

1. loads the trust list (the coordinator's file, and the gateway's copy) and verifies its
   signature against the national root;
2. lists the gateway's services with the stock reflection client (grpcio-reflection);
3. looks each traveller up over mutual TLS with an ordinary hostname check — no
   ssl_target_name_override: the gateway's certificate names the host dialled — and
   verifies the attestation itself by every wire rule (huren_verify.py);
4. verifies each traveller's QR offline;
5. makes refused calls and acts on the google.rpc.ErrorInfo reason in the
   grpc-status-details-bin trailer;
6. checks that the verifier refuses tampered attestations, each for the right reason.

Exits 0 when everything behaved as expected, 1 otherwise.
"""

import argparse
import base64
import copy
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "proto", "proto")
GENERATED = os.path.join(HERE, "_generated")


def generate_stubs():
    """Compiles huren.proto with grpcio-tools into _generated/ when it is missing or older."""
    proto = os.path.join(PROTO_DIR, "huren", "v1", "huren.proto")
    out = os.path.join(GENERATED, "huren", "v1", "huren_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(proto):
        os.makedirs(GENERATED, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={GENERATED}",
             f"--grpc_python_out={GENERATED}", proto],
            check=True,
        )
    sys.path.insert(0, GENERATED)


generate_stubs()

import grpc  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status  # noqa: E402

import huren_verify as hv  # noqa: E402
from huren.v1 import huren_pb2 as pb  # noqa: E402
from huren.v1 import huren_pb2_grpc as rpc  # noqa: E402

failures = []


def check(ok, what):
    print(f"  [{'ok' if ok else 'FAILED'}] {what}")
    if not ok:
        failures.append(what)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ------------------------------------------------------------------ refusals


# What a hub does for each reason (README, "Refusals: reasons, not English").
ACTIONS = {
    "TOKEN_UNKNOWN": "ask the traveller for a fresh code",
    "NO_CURRENT_STATUS": "the home province must re-assess the traveller",
    "PROVINCE_UNKNOWN": "the province is not in the federation: do not admit on this code",
    "PURPOSE_NOT_REGISTERED": "declare one of the hub's registered purposes",
    "HUB_NOT_REGISTERED": "ask the coordinators to register this hub",
    "INVALID_REQUEST": "fix the request field named in the metadata",
    "CERTIFICATE_REFUSED": "get a valid certificate",
    "NOT_AUTHORIZED": "call with the identity the RPC is for",
    "POLICY_VIOLATION": "do not rely on this answer; verify the QR offline",
    "PROVINCE_MISCONFIGURED": "operators must act; verify the QR offline meanwhile",
    "SUNSET": "the federation has ended: stop asking",
}
RETRYABLE = {"RATE_LIMITED", "TOO_MANY_UNKNOWN_TOKENS", "PROVINCE_UNAVAILABLE", "PROVINCE_TIMEOUT",
             "STORAGE_FAILURE", "NO_SIGNING_KEY"}


def refusal(error):
    """(gRPC code name, ErrorInfo reason or None, metadata, retry delay in s or None) of a
    failed call, read from the google.rpc.Status in the grpc-status-details-bin trailer."""
    status = rpc_status.from_call(error)
    reason, metadata, delay = None, {}, None
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == "huren.gov":
                reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return error.code().name, reason, metadata, delay


def act_on(code, reason, metadata, delay):
    """The hub's decision for a refusal: act on the reason; an unknown reason (a newer
    server) or none at all (a transport failure) by its gRPC code."""
    if reason in RETRYABLE:
        return f"retry after {delay if delay is not None else 1} s, or verify the QR offline meanwhile"
    if reason in ACTIONS:
        return ACTIONS[reason]
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
        return "no answer: try another gateway, or verify the QR offline"
    return f"refused ({code}): do not admit on this code"


def lookup(stub, province, token, purpose, trust):
    """Lookup, and the independent verification of what came back."""
    response = stub.Lookup(pb.LookupRequest(province=province, token=token, purpose=purpose), timeout=10)
    return hv.verify_attestation(trust, response.attestation, hv.now(), province=province, token=token, purpose=purpose)


# ------------------------------------------------------------------ the run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--info", required=True, help="the JSON file `huren demo --info` writes")
    args = parser.parse_args()
    with open(args.info) as f:
        info = json.load(f)
    root_pem = read(info["root_ca"])
    hub = next(h for h in info["hubs"] if "transit.highway" in h["purposes"])
    purpose = "transit.highway"

    # Ordinary mutual TLS: the national root as the only trust anchor, the hub's certificate
    # and key. No channel options, no name override.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root_pem, private_key=read(hub["key"]), certificate_chain=read(hub["cert"])
    )

    print("1. The trust list, verified against the national root")
    trust = hv.TrustList.verify(read(info["trust_list"]), root_pem)
    check(True, f"coordinator's file: sequence {trust.raw.sequence}, {len(trust.raw.provinces)} provinces")
    # Dialled by IP address: the certificate carries an IP SAN, and no SNI is sent.
    with grpc.secure_channel(info["gateway"]["address"], credentials) as channel:
        signed = rpc.TrustRegistryStub(channel).GetTrustList(pb.GetTrustListRequest(), timeout=10)
    served = hv.TrustList.verify(signed, root_pem)
    check(served.raw.sequence >= trust.raw.sequence, f"gateway's copy (dialled by IP): sequence {served.raw.sequence}")
    trust = served
    forged = copy.deepcopy(signed)
    forged.payload = forged.payload + b"\x00"
    try:
        hv.TrustList.verify(forged, root_pem)
        check(False, "an altered trust list is refused")
    except hv.Refused as e:
        check(e.reason == "bad_signature", f"an altered trust list is refused ({e.reason})")

    # Dialled by DNS name: SNI carries it, the certificate's DNS SAN matches it.
    channel = grpc.secure_channel(info["gateway"]["dns"], credentials)
    stub = rpc.LookupStub(channel)

    print("2. The gateway's services, by the stock reflection client")
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    check("huren.v1.Lookup" in services and "huren.v1.TrustRegistry" in services, f"listed: {', '.join(services)}")

    print("3. Lookups over mTLS, each attestation verified independently")
    for t in info["travellers"]:
        token = hv.token_from_text(t["token"])
        try:
            v = lookup(stub, t["province"], token, purpose, trust)
        except grpc.RpcError as e:
            check(False, f"{t['subject_ref']}: {refusal(e)}")
            continue
        except hv.Refused as e:
            check(False, f"{t['subject_ref']}: attestation refused: {e}")
            continue
        line = f"{trust.province_name(v.province)} ({v.province}): {v.status}"
        if v.rule_id:
            line += f" under {v.rule_id} \"{v.rule_title}\""
        line += f", valid until {time.strftime('%H:%M:%S', time.gmtime(v.expires_at))} UTC"
        check(v.status == t["status"] and v.rule_id == t["rule_id"] and bool(v.rule_title) == bool(t["rule_id"]), line)

    print("4. QR codes verified offline against the trust list")
    for t in info["travellers"]:
        try:
            v = hv.verify_qr(trust, t["qr"], hv.now())
            check(v.status == t["status"] and v.rule_id == t["rule_id"], f"{t['subject_ref']}: {v.status} {v.rule_id}".rstrip())
        except hv.Refused as e:
            check(False, f"{t['subject_ref']}: QR refused: {e}")

    print("5. Refusals, acted on by their reason")
    someone = info["travellers"][0]
    token = hv.token_from_text(someone["token"])
    cases = [
        ("an unknown token", "340000", os.urandom(16), purpose, "NOT_FOUND", "TOKEN_UNKNOWN"),
        ("a province outside the federation", "810000", token, purpose, "NOT_FOUND", "PROVINCE_UNKNOWN"),
        ("a purpose the hub is not registered for", someone["province"], token, "venue.entry", "PERMISSION_DENIED",
         "PURPOSE_NOT_REGISTERED"),
        ("a token of the wrong length", someone["province"], b"short", purpose, "INVALID_ARGUMENT", "INVALID_REQUEST"),
    ]
    for what, province, tok, purp, want_code, want_reason in cases:
        try:
            lookup(stub, province, tok, purp, trust)
            check(False, f"{what}: accepted")
        except grpc.RpcError as e:
            code, reason, metadata, delay = refusal(e)
            meta = ", ".join(f"{k}={v}" for k, v in sorted(metadata.items()))
            check(code == want_code and reason == want_reason,
                  f"{what}: {code} {reason} ({meta}) -> {act_on(code, reason, metadata, delay)}")
    channel.close()

    print("6. The verifier refuses tampered attestations, each for its reason")
    with grpc.secure_channel(info["gateway"]["dns"], credentials) as ch:
        t = next(t for t in info["travellers"] if t["status"] == "RED")
        token = hv.token_from_text(t["token"])
        good = rpc.LookupStub(ch).Lookup(
            pb.LookupRequest(province=t["province"], token=token, purpose=purpose), timeout=10
        ).attestation
    self_tests(trust, good, t["province"], token, purpose)

    print("\nEvery step behaved as expected." if not failures else f"\n{len(failures)} step(s) failed.")
    return 1 if failures else 0


def self_tests(trust, good, province, token, purpose):
    """Each wire rule, broken once: the verifier must refuse for exactly that reason."""
    now = hv.now()
    decoded = pb.AttestationPayload.FromString(good.payload)

    def expect(reason, signed=good, trust=trust, at=now, **binding):
        bind = dict(province=province, token=token, purpose=purpose)
        bind.update(binding)
        try:
            hv.verify_attestation(trust, signed, at, **bind)
            check(False, f"{reason}: accepted")
        except hv.Refused as e:
            check(e.reason == reason, f"{reason}: {e}")

    def altered(**changes):
        s = copy.deepcopy(good)
        for k, v in changes.items():
            setattr(s, k, v)
        return s

    def with_trust(edit):
        t = copy.deepcopy(trust)
        edit(t)
        return t

    key = (decoded.province, good.kid)
    expect("kid_length", altered(kid=good.kid[:7]))
    expect("unknown_key", altered(kid=bytes(8)))
    expect("bad_signature", altered(signature=bytes([good.signature[0] ^ 1]) + good.signature[1:]))
    expect("unknown_field", altered(payload=good.payload + bytes([10 << 3, 1])))
    expect("duplicate_field", altered(payload=good.payload + bytes([3 << 3, 1])))
    # Fields out of order (version and province swapped).
    province_end = 2 + 2 + good.payload[3]
    swapped = good.payload[2:province_end] + good.payload[:2] + good.payload[province_end:]
    expect("non_canonical", altered(payload=swapped))
    try:
        hv.read_canonical(bytes([1 << 3, 1, 8 << 3, 0]), hv.PAYLOAD_FIELDS)
        check(False, "non_canonical: a default value written is accepted")
    except hv.Refused as e:
        check(e.reason == "non_canonical", f"non_canonical (a default value written): {e}")
    tag = good.payload.index(bytes([3 << 3]))
    expect("non_canonical", altered(payload=good.payload[: tag + 1] + bytes([good.payload[tag + 1] | 0x80, 0]) + good.payload[tag + 2 :]))
    expect("oversized", altered(payload=good.payload + bytes([9 << 3 | 2, 250]) + b"x" * 250))
    expect("token_binding", token=bytes(16))
    expect("purpose_mismatch", purpose="transit.rail")
    expect("province_mismatch", province="440000" if province != "440000" else "370000")
    expect("expired", at=decoded.expires_at)
    expect("future_dated", at=decoded.issued_at - hv.MAX_CLOCK_SKEW_SECS - 1)
    expect("key_not_valid", at=trust.keys[key].not_after)
    expect("key_revoked", trust=with_trust(lambda t: setattr(t.keys[key], "status", pb.KEY_STATUS_REVOKED)))
    expect("lifetime_too_long", trust=with_trust(lambda t: setattr(t, "max_lifetime", 10)))
    expect("outside_key_validity", trust=with_trust(lambda t: setattr(t.keys[key], "not_after", decoded.expires_at - 1)))
    expect("field_not_allowed", trust=with_trust(lambda t: t.policy[purpose].discard("test_recency")))
    expect("purpose_not_in_policy", trust=with_trust(lambda t: t.policy.pop(purpose)))
    expect("unregistered_rule", trust=with_trust(lambda t: t.rules.pop(decoded.rule_id)))

    def cannot_assign(t):
        t.rules[decoded.rule_id] = copy.deepcopy(t.rules[decoded.rule_id])
        del t.rules[decoded.rule_id].may_assign[:]

    def other_province(t):
        t.rules[decoded.rule_id] = copy.deepcopy(t.rules[decoded.rule_id])
        t.rules[decoded.rule_id].authorities[:] = [a for a in t.rules[decoded.rule_id].authorities
                                                  if not a.startswith(decoded.province + "/")]

    expect("rule_cannot_assign", trust=with_trust(cannot_assign))
    expect("rule_not_for_province", trust=with_trust(other_province))
    # A QR whose bytes are not canonical, or that smuggles a field, is refused before
    # anything is verified.
    qr = pb.QrCode(attestation=good, token=token).SerializeToString()

    def qr_text(raw):
        return "HRN1:" + base64.b32encode(raw).decode().rstrip("=")

    check(hv.verify_qr(trust, qr_text(qr), now).status == "RED", "a well-formed QR verifies")
    for what, raw in [("qr_unknown_field", qr + bytes([3 << 3 | 2, 1, 0])), ("qr_token", pb.QrCode(attestation=good, token=token[:8]).SerializeToString())]:
        try:
            hv.verify_qr(trust, qr_text(raw), now)
            check(False, f"{what}: accepted")
        except hv.Refused as e:
            check(e.reason == what, f"{what}: {e}")


if __name__ == "__main__":
    sys.exit(main())
