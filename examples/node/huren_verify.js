// An independent verifier of Huren trust lists, attestations and QR codes, for Node.js.
//
// Written from proto/proto/huren/v1/huren.proto and the README's "Wire rules" and "Gateway
// checks on every lookup" alone: no Huren code. Every refusal carries the same short label
// the Rust verifier (`huren_pki::verify_attestation`) reports. Ed25519 and ECDSA come from
// Node's built-in crypto; messages are decoded with protobufjs from the proto file.
//
// Layout: readCanonical reads a message's fields off the wire strictly (the canonical
// encoding rule); verifyTrustList checks the root's signature and indexes the list;
// verifyAttestation runs the checks in the README's order; decodeQr reads a QR string.
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const protobuf = require('protobufjs');

const PROTO = path.join(__dirname, '..', '..', 'proto', 'proto', 'huren', 'v1', 'huren.proto');
// Field names as the proto file spells them (snake_case).
const root = new protobuf.Root().loadSync(PROTO, { keepCase: true });
const T = (name) => root.lookupType(`huren.v1.${name}`);
const HealthStatus = root.lookupEnum('huren.v1.HealthStatus').values;
const KeyStatus = root.lookupEnum('huren.v1.KeyStatus').values;
const TestRecency = root.lookupEnum('huren.v1.TestRecency').values;

const ATTESTATION_CONTEXT = Buffer.from('huren/attestation/v1\0');
const TRUST_LIST_CONTEXT = Buffer.from('huren/trust-list/v1\0');
const QR_PREFIX = 'HRN1:';
const TOKEN_LEN = 16;
const MAX_PAYLOAD_BYTES = 256;
const MAX_CLOCK_SKEW_SECS = 60;
const DEFAULT_MAX_LIFETIME_SECS = 3600;

const VARINT = 0;
const LEN = 2;
// AttestationPayload: field number -> [name, wire type].
const PAYLOAD_FIELDS = {
  1: ['version', VARINT], 2: ['province', LEN], 3: ['status', VARINT], 4: ['issued_at', VARINT],
  5: ['expires_at', VARINT], 6: ['token_digest', LEN], 7: ['rule_id', LEN], 8: ['test_recency', VARINT],
  9: ['purpose', LEN],
};
const ALL_FIELDS = Object.values(PAYLOAD_FIELDS).map(([n]) => n);
const REQUIRED_FIELDS = ['version', 'province', 'status', 'issued_at', 'expires_at', 'token_digest', 'rule_id', 'purpose'];
const DEFAULT_PURPOSES = ['transit.rail', 'transit.highway', 'transit.air', 'transit.general', 'venue.entry'];
const SIGNED_ATTESTATION_FIELDS = { 1: ['payload', LEN], 2: ['signature', LEN], 3: ['kid', LEN] };
const QR_FIELDS = { 1: ['attestation', LEN], 2: ['token', LEN] };

// An attestation, QR or trust list that is not believed; `reason` is the label.
class Refused extends Error {
  constructor(reason, detail = '') {
    super(detail ? `${reason}: ${detail}` : reason);
    this.reason = reason;
  }
}

// ------------------------------------------------------------------ canonical encoding

// Reads a varint (as a BigInt) at pos; refuses a non-minimal one (a trailing 0x00 byte).
function varint(buf, pos, reason) {
  let value = 0n;
  let shift = 0n;
  const start = pos;
  for (;;) {
    if (pos >= buf.length || shift > 63n) throw new Refused('malformed', 'truncated or overlong varint');
    const byte = buf[pos++];
    value |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
    if (!(byte & 0x80)) break;
  }
  if (pos - start > 1 && buf[pos - 1] === 0) throw new Refused(reason, 'varint not in its shortest form');
  return [value, pos];
}

// The fields of a flat proto3 message as {name: raw value}, read strictly: only the numbers
// `fields` defines, each at most once and with its wire type, in ascending order, tags,
// varints and lengths in their shortest form, no default (0 or empty) value written.
// Varints come back as BigInts, length-delimited fields as Buffers.
function readCanonical(buf, fields, labels = {}) {
  const { reason = 'non_canonical', unknown = 'unknown_field', duplicate = 'duplicate_field' } = labels;
  const out = {};
  let pos = 0;
  let last = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = varint(buf, pos, reason);
    const number = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (!(number in fields)) throw new Refused(unknown, `field number ${number}`);
    const [name, wantType] = fields[number];
    if (name in out) throw new Refused(duplicate, `field number ${number}`);
    if (wireType !== wantType) throw new Refused('malformed', `field ${name} has wire type ${wireType}`);
    if (number < last) throw new Refused(reason, 'fields out of order');
    last = number;
    let value;
    if (wireType === VARINT) {
      [value, pos] = varint(buf, pos, reason);
      if (value === 0n) throw new Refused(reason, `default value of ${name} written`);
    } else {
      let length;
      [length, pos] = varint(buf, pos, reason);
      if (pos + Number(length) > buf.length) throw new Refused('malformed', `field ${name} truncated`);
      value = buf.subarray(pos, pos + Number(length));
      pos += Number(length);
      if (value.length === 0) throw new Refused(reason, `empty ${name} written`);
    }
    out[name] = value;
  }
  return out;
}

// A varint read as protobuf int64 (two's complement), as a Number (Unix seconds fit).
const int64 = (v) => Number(BigInt.asIntN(64, v ?? 0n));
const num = (v) => (typeof v === 'object' && v !== null ? v.toNumber() : Number(v || 0));

// ------------------------------------------------------------------ the trust list

const validProvince = (code) => /^[1-9][0-9]{5}$/.test(code);
const validPurpose = (p) => p.length >= 1 && p.length <= 64 && p.split('.').every((w) => /^[a-z_]+$/.test(w));

function decode(type, bytes) {
  return T(type).decode(bytes);
}

// Verifies the ECDSA P-256 / SHA-256 (DER) signature by the national root over
// "huren/trust-list/v1" 0x00 + the exact payload bytes, then the content; returns the index.
function verifyTrustList(signedBytesOrMsg, rootPem) {
  const signed = Buffer.isBuffer(signedBytesOrMsg) ? decode('SignedTrustList', signedBytesOrMsg) : signedBytesOrMsg;
  const rootKey = new crypto.X509Certificate(rootPem).publicKey;
  if (rootKey.asymmetricKeyType !== 'ec' || rootKey.asymmetricKeyDetails.namedCurve !== 'prime256v1') {
    throw new Refused('bad_root', 'the national root is not an ECDSA P-256 key');
  }
  const ok = crypto.verify('sha256', Buffer.concat([TRUST_LIST_CONTEXT, signed.payload]),
    { key: rootKey, dsaEncoding: 'der' }, signed.signature);
  if (!ok) throw new Refused('bad_signature', 'trust list signature does not verify against the national root');
  const raw = decode('TrustList', signed.payload);
  const trust = { signed, raw, keys: new Map(), rules: new Map(), policy: new Map(), maxLifetime: DEFAULT_MAX_LIFETIME_SECS };
  if (raw.version !== 1) throw new Refused('content', `unsupported trust list version ${raw.version}`);
  if (!raw.trust_domain) throw new Refused('content', 'empty trust domain');
  for (const p of raw.provinces) {
    if (!validProvince(p.code)) throw new Refused('content', `province code ${p.code}`);
    for (const k of p.attestation_keys) {
      const pk = Buffer.from(k.public_key);
      if (pk.length !== 32) throw new Refused('content', `province ${p.code}: key is not 32 bytes`);
      const kid = crypto.createHash('sha256').update(pk).digest().subarray(0, 8);
      if (!kid.equals(Buffer.from(k.kid))) throw new Refused('content', `province ${p.code}: kid does not match its key`);
      if (!k.status) throw new Refused('content', `province ${p.code}: key without status`);
      const id = `${p.code}/${kid.toString('hex')}`;
      if (trust.keys.has(id)) throw new Refused('content', `province ${p.code}: duplicate key`);
      const publicKey = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: pk.toString('base64url') }, format: 'jwk' });
      trust.keys.set(id, { publicKey, notBefore: num(k.not_before), notAfter: num(k.not_after), status: k.status });
    }
  }
  for (const r of raw.rules) {
    if (!r.id || trust.rules.has(r.id)) throw new Refused('content', `rule id ${r.id} empty or repeated`);
    trust.rules.set(r.id, r);
  }
  const bound = raw.attestation_bounds ? num(raw.attestation_bounds.max_lifetime_seconds) : 0;
  if (bound < 0) throw new Refused('content', 'negative attestation lifetime bound');
  if (bound > 0) trust.maxLifetime = bound;
  if (raw.field_policy && raw.field_policy.purposes.length > 0) {
    for (const p of raw.field_policy.purposes) {
      const fields = new Set(p.fields);
      if (!validPurpose(p.purpose) || trust.policy.has(p.purpose)) throw new Refused('content', `field policy purpose ${p.purpose}`);
      if (![...fields].every((f) => ALL_FIELDS.includes(f)) || !REQUIRED_FIELDS.every((f) => fields.has(f))) {
        throw new Refused('content', `field policy for ${p.purpose} names unknown fields or lacks required ones`);
      }
      trust.policy.set(p.purpose, fields);
    }
  } else {
    // No policy: the default minimal dataset; venue entry carries no test-recency bucket.
    for (const purpose of DEFAULT_PURPOSES) {
      trust.policy.set(purpose, new Set(ALL_FIELDS.filter((f) => purpose !== 'venue.entry' || f !== 'test_recency')));
    }
  }
  trust.provinceName = (code) => (raw.provinces.find((p) => p.code === code) || {}).name || code;
  return trust;
}

// ------------------------------------------------------------------ attestations

const statusName = (v) => Object.keys(HealthStatus).find((k) => HealthStatus[k] === v).replace('HEALTH_STATUS_', '');

// Believes `signed` ({payload, signature, kid} Buffers) only if every wire rule holds, bound
// to what the caller knows independently: the province asked or scanned, the token it
// holds, the purpose asked. Throws Refused with the label of the first failed check.
function verifyAttestation(trust, signed, now, expected = {}) {
  const payload = Buffer.from(signed.payload);
  const kid = Buffer.from(signed.kid);
  const signature = Buffer.from(signed.signature);
  // 2. Key id.
  if (kid.length !== 8) throw new Refused('kid_length');
  // 3-4. The payload's wire fields, strictly: size, known numbers once each with their wire
  // types, canonical bytes.
  if (payload.length > MAX_PAYLOAD_BYTES) throw new Refused('oversized', `${payload.length} bytes`);
  const fields = readCanonical(payload, PAYLOAD_FIELDS);
  const type = T('AttestationPayload');
  const p = type.decode(payload);
  if (!Buffer.from(type.encode(p).finish()).equals(payload)) {
    throw new Refused('non_canonical', 're-encoding does not give the signed bytes');
  }
  const str = (name) => (fields[name] ? fields[name].toString('utf8') : '');
  const province = str('province');
  const purpose = str('purpose');
  const ruleId = str('rule_id');
  const status = Number(fields.status ?? 0n);
  const recency = Number(fields.test_recency ?? 0n);
  // 5. Field policy of the payload's purpose, then the structure.
  const allowed = trust.policy.get(purpose);
  if (!allowed) throw new Refused('purpose_not_in_policy', purpose);
  for (const name of Object.keys(fields)) {
    if (!allowed.has(name)) throw new Refused('field_not_allowed', `${name} for ${purpose}`);
  }
  if (Number(fields.version ?? 0n) !== 1) throw new Refused('invalid_payload', 'version');
  if (!validProvince(province)) throw new Refused('invalid_payload', 'province code');
  if (![HealthStatus.HEALTH_STATUS_GREEN, HealthStatus.HEALTH_STATUS_YELLOW, HealthStatus.HEALTH_STATUS_RED].includes(status)) {
    throw new Refused('invalid_payload', 'status');
  }
  const issuedAt = int64(fields.issued_at);
  const expiresAt = int64(fields.expires_at);
  if (expiresAt <= issuedAt) throw new Refused('invalid_payload', 'expires_at not after issued_at');
  const digest = fields.token_digest || Buffer.alloc(0);
  if (digest.length !== 32) throw new Refused('invalid_payload', 'token digest length');
  const green = status === HealthStatus.HEALTH_STATUS_GREEN;
  if (green && ruleId) throw new Refused('invalid_payload', 'a GREEN attestation cites a rule');
  if (!green && !ruleId) throw new Refused('missing_rule');
  if (!Object.values(TestRecency).includes(recency)) throw new Refused('invalid_payload', 'test recency');
  if (!validPurpose(purpose)) throw new Refused('invalid_payload', 'purpose');
  // 6. The key: one of the payload's province, not revoked, valid now.
  if (!trust.raw.provinces.some((x) => x.code === province)) throw new Refused('unknown_province', province);
  const keyId = `${province}/${kid.toString('hex')}`;
  const key = trust.keys.get(keyId);
  if (!key) throw new Refused('unknown_key', keyId);
  if (key.status === KeyStatus.KEY_STATUS_REVOKED) throw new Refused('key_revoked', keyId);
  if (!(key.notBefore <= now && now < key.notAfter)) throw new Refused('key_not_valid', keyId);
  // 7. Ed25519 over the domain-separated exact bytes.
  let good = false;
  try {
    good = signature.length === 64 && crypto.verify(null, Buffer.concat([ATTESTATION_CONTEXT, payload]), key.publicKey, signature);
  } catch {
    good = false;
  }
  if (!good) throw new Refused('bad_signature');
  // 8. Time.
  if (issuedAt > now + MAX_CLOCK_SKEW_SECS) throw new Refused('future_dated', String(issuedAt));
  if (expiresAt <= now) throw new Refused('expired', String(expiresAt));
  // 9. Validity bounds: the trust list's lifetime bound and the key's window.
  if (expiresAt - issuedAt > trust.maxLifetime) {
    throw new Refused('lifetime_too_long', `${expiresAt - issuedAt} s > ${trust.maxLifetime} s`);
  }
  if (issuedAt < key.notBefore || expiresAt > key.notAfter) throw new Refused('outside_key_validity');
  // 10. A non-green status: a registered rule that may assign it and names an authority of
  // the signing province.
  let title = '';
  if (!green) {
    const rule = trust.rules.get(ruleId);
    if (!rule) throw new Refused('unregistered_rule', ruleId);
    if (!rule.may_assign.includes(status)) throw new Refused('rule_cannot_assign', ruleId);
    if (!rule.authorities.some((a) => a.startsWith(`${province}/`) && a.length > 7)) {
      throw new Refused('rule_not_for_province', ruleId);
    }
    title = rule.title;
  }
  // 11. What the caller knows independently.
  if (expected.province !== undefined && province !== expected.province) {
    throw new Refused('province_mismatch', `${province} is not ${expected.province}`);
  }
  if (expected.token !== undefined && !crypto.createHash('sha256').update(expected.token).digest().equals(digest)) {
    throw new Refused('token_binding');
  }
  if (expected.purpose !== undefined && purpose !== expected.purpose) {
    throw new Refused('purpose_mismatch', `${purpose} is not ${expected.purpose}`);
  }
  const recencyName = Object.keys(TestRecency).find((k) => TestRecency[k] === recency).replace('TEST_RECENCY_', '');
  return { province, status: statusName(status), issuedAt, expiresAt, ruleId, ruleTitle: title, testRecency: recencyName, purpose };
}

// ------------------------------------------------------------------ QR codes and tokens

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Decode(text) {
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text) {
    const i = BASE32.indexOf(c);
    if (i < 0) throw new Refused('qr_encoding', 'not base32');
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >> (bits - 8)) & 0xff);
      bits -= 8;
      value &= (1 << bits) - 1;
    }
  }
  // Unpadded RFC 4648: leftover bits must be zero and fewer than a character's worth.
  if (bits >= 5 || (value & ((1 << bits) - 1)) !== 0) throw new Refused('qr_encoding', 'not canonical base32');
  return Buffer.from(out);
}

function base32Encode(bytes) {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >> (bits - 5)) & 31];
      bits -= 5;
      value &= (1 << bits) - 1;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

const QR_LABELS = { reason: 'qr_non_canonical', unknown: 'qr_unknown_field', duplicate: 'qr_unknown_field' };

// A QR string: "HRN1:" + RFC 4648 base32 without padding of a QrCode, strictly encoded
// (only QrCode's and SignedAttestation's fields, each once, canonical), with an attestation
// and a 16-byte token. Returns {attestation, token}. Verifies nothing.
function decodeQr(text) {
  text = text.trim();
  if (text.length > 1024) throw new Refused('qr_too_long');
  if (text.slice(0, QR_PREFIX.length).toUpperCase() !== QR_PREFIX) throw new Refused('qr_prefix');
  const raw = base32Decode(text.slice(QR_PREFIX.length).toUpperCase());
  const outer = readCanonical(raw, QR_FIELDS, QR_LABELS);
  if (!outer.attestation) throw new Refused('qr_missing_attestation');
  const inner = readCanonical(outer.attestation, SIGNED_ATTESTATION_FIELDS, QR_LABELS);
  if (!outer.token || outer.token.length !== TOKEN_LEN) throw new Refused('qr_token');
  return {
    attestation: { payload: inner.payload || Buffer.alloc(0), signature: inner.signature || Buffer.alloc(0), kid: inner.kid || Buffer.alloc(0) },
    token: outer.token,
  };
}

// Offline: decodes a QR strictly and verifies its attestation, bound to the token the QR
// carries and the province its payload names (a QR carries no purpose).
function verifyQr(trust, text, now) {
  const { attestation, token } = decodeQr(text);
  const claimed = T('AttestationPayload').decode(attestation.payload).province;
  return verifyAttestation(trust, attestation, now, { province: claimed, token });
}

// A token as the command line writes it: 26 base32 characters.
function tokenFromText(text) {
  const token = base32Decode(text.trim().toUpperCase());
  if (token.length !== TOKEN_LEN) throw new Error('a token is 16 bytes');
  return token;
}

const now = () => Math.floor(Date.now() / 1000);

module.exports = {
  Refused, readCanonical, verifyTrustList, verifyAttestation, decodeQr, verifyQr, tokenFromText, base32Encode,
  now, PAYLOAD_FIELDS, MAX_CLOCK_SKEW_SECS, KeyStatus, T, PROTO,
};
