// A transport hub's own gRPC stack talking to a Huren federation: @grpc/grpc-js,
// @grpc/proto-loader, protobufjs and Node's built-in crypto (Ed25519, ECDSA). Written from
// proto/ and the README alone.
//
//     node hub_example.js --info federation.json
//
// `federation.json` is what `huren demo --info` writes (examples/run.sh starts one). The
// example loads and verifies the trust list, looks each traveller up over mutual TLS with
// an ordinary hostname check (no ssl_target_name_override), verifies each attestation
// itself by every wire rule (huren_verify.js), verifies each QR offline, acts on the
// google.rpc.ErrorInfo reasons of refusals, and checks that the verifier refuses tampered
// attestations for the right reasons. Exits 0 when everything behaved as expected.
'use strict';

const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const hv = require('./huren_verify');

const failures = [];
function check(ok, what) {
  console.log(`  [${ok ? 'ok' : 'FAILED'}] ${what}`);
  if (!ok) failures.push(what);
}

// ------------------------------------------------------------------ gRPC

const definition = protoLoader.loadSync(hv.PROTO, { keepCase: true, longs: String, enums: Number, defaults: true });
const huren = grpc.loadPackageDefinition(definition).huren.v1;

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 10_000 }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

// ------------------------------------------------------------------ refusals

// google.rpc.Status and the details Huren sends, as the googleapis protos define them.
const rpcTypes = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: 'string', id: 1 },
                domain: { type: 'string', id: 2 },
                metadata: { keyType: 'string', type: 'string', id: 3 },
              },
            },
            RetryInfo: { fields: { retry_delay: { type: 'google.protobuf.Duration', id: 1 } } },
          },
        },
      },
    },
  },
});

// What a hub does for each reason (README, "Refusals: reasons, not English").
const ACTIONS = {
  TOKEN_UNKNOWN: 'ask the traveller for a fresh code',
  NO_CURRENT_STATUS: 'the home province must re-assess the traveller',
  PROVINCE_UNKNOWN: 'the province is not in the federation: do not admit on this code',
  PURPOSE_NOT_REGISTERED: "declare one of the hub's registered purposes",
  HUB_NOT_REGISTERED: 'ask the coordinators to register this hub',
  INVALID_REQUEST: 'fix the request field named in the metadata',
  CERTIFICATE_REFUSED: 'get a valid certificate',
  NOT_AUTHORIZED: 'call with the identity the RPC is for',
  POLICY_VIOLATION: 'do not rely on this answer; verify the QR offline',
  PROVINCE_MISCONFIGURED: 'operators must act; verify the QR offline meanwhile',
  SUNSET: 'the federation has ended: stop asking',
};
const RETRYABLE = new Set(['RATE_LIMITED', 'TOO_MANY_UNKNOWN_TOKENS', 'PROVINCE_UNAVAILABLE', 'PROVINCE_TIMEOUT',
  'STORAGE_FAILURE', 'NO_SIGNING_KEY']);

// {code, reason, metadata, delay} of a failed call, read from the google.rpc.Status in the
// grpc-status-details-bin trailer.
function refusal(err) {
  const code = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) || String(err.code);
  const out = { code, reason: null, metadata: {}, delay: null };
  const [bin] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!bin) return out;
  const status = rpcTypes.lookupType('google.rpc.Status').decode(bin);
  for (const any of status.details) {
    if (any.type_url.endsWith('/google.rpc.ErrorInfo')) {
      const info = rpcTypes.lookupType('google.rpc.ErrorInfo').decode(any.value);
      if (info.domain === 'huren.gov') {
        out.reason = info.reason;
        out.metadata = info.metadata;
      }
    } else if (any.type_url.endsWith('/google.rpc.RetryInfo')) {
      const retry = rpcTypes.lookupType('google.rpc.RetryInfo').decode(any.value);
      const d = retry.retry_delay || {};
      out.delay = Number(d.seconds || 0) + (d.nanos || 0) / 1e9;
    }
  }
  return out;
}

// The hub's decision for a refusal: act on the reason; an unknown reason (a newer server)
// or none at all (a transport failure) by its gRPC code.
function actOn({ code, reason, delay }) {
  if (RETRYABLE.has(reason)) return `retry after ${delay ?? 1} s, or verify the QR offline meanwhile`;
  if (reason in ACTIONS) return ACTIONS[reason];
  if (['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'CANCELLED'].includes(code)) return 'no answer: try another gateway, or verify the QR offline';
  return `refused (${code}): do not admit on this code`;
}

// ------------------------------------------------------------------ the run

async function main() {
  const at = process.argv.indexOf('--info');
  if (at < 0 || !process.argv[at + 1]) {
    console.error('usage: node hub_example.js --info federation.json');
    return 64;
  }
  const info = JSON.parse(fs.readFileSync(process.argv[at + 1], 'utf8'));
  const rootPem = fs.readFileSync(info.root_ca);
  const hub = info.hubs.find((h) => h.purposes.includes('transit.highway'));
  const purpose = 'transit.highway';
  // Ordinary mutual TLS: the national root as the only trust anchor, the hub's key and
  // certificate. No channel options, no name override.
  const credentials = grpc.credentials.createSsl(rootPem, fs.readFileSync(hub.key), fs.readFileSync(hub.cert));

  console.log('1. The trust list, verified against the national root');
  let trust = hv.verifyTrustList(fs.readFileSync(info.trust_list), rootPem);
  check(true, `coordinator's file: sequence ${trust.raw.sequence}, ${trust.raw.provinces.length} provinces`);
  // Dialled by IP address: the certificate carries an IP SAN.
  const byIp = new huren.TrustRegistry(info.gateway.address, credentials);
  const signed = await call(byIp, 'GetTrustList', {});
  byIp.close();
  const served = hv.verifyTrustList({ payload: signed.payload, signature: signed.signature }, rootPem);
  check(BigInt(served.raw.sequence) >= BigInt(trust.raw.sequence), `gateway's copy (dialled by IP): sequence ${served.raw.sequence}`);
  trust = served;
  try {
    hv.verifyTrustList({ payload: Buffer.concat([signed.payload, Buffer.from([0])]), signature: signed.signature }, rootPem);
    check(false, 'an altered trust list is refused');
  } catch (e) {
    check(e.reason === 'bad_signature', `an altered trust list is refused (${e.reason})`);
  }

  // Dialled by DNS name: SNI carries it, the certificate's DNS SAN matches it.
  const lookup = new huren.Lookup(info.gateway.dns, credentials);
  const ask = async (province, token, purp) => {
    const response = await call(lookup, 'Lookup', { province, token, purpose: purp });
    return hv.verifyAttestation(trust, response.attestation, hv.now(), { province, token, purpose: purp });
  };

  console.log('2. Lookups over mTLS, each attestation verified independently');
  for (const t of info.travellers) {
    try {
      const v = await ask(t.province, hv.tokenFromText(t.token), purpose);
      let line = `${trust.provinceName(v.province)} (${v.province}): ${v.status}`;
      if (v.ruleId) line += ` under ${v.ruleId} "${v.ruleTitle}"`;
      line += `, valid until ${new Date(v.expiresAt * 1000).toISOString()}`;
      check(v.status === t.status && v.ruleId === t.rule_id && !!v.ruleTitle === !!t.rule_id, line);
    } catch (e) {
      check(false, `${t.subject_ref}: ${e instanceof hv.Refused ? `attestation refused: ${e.message}` : JSON.stringify(refusal(e))}`);
    }
  }

  console.log('3. QR codes verified offline against the trust list');
  for (const t of info.travellers) {
    try {
      const v = hv.verifyQr(trust, t.qr, hv.now());
      check(v.status === t.status && v.ruleId === t.rule_id, `${t.subject_ref}: ${v.status} ${v.ruleId}`.trim());
    } catch (e) {
      check(false, `${t.subject_ref}: QR refused: ${e.message}`);
    }
  }

  console.log('4. Refusals, acted on by their reason');
  const someone = info.travellers[0];
  const token = hv.tokenFromText(someone.token);
  const cases = [
    ['an unknown token', '340000', require('node:crypto').randomBytes(16), purpose, 'NOT_FOUND', 'TOKEN_UNKNOWN'],
    ['a province outside the federation', '810000', token, purpose, 'NOT_FOUND', 'PROVINCE_UNKNOWN'],
    ['a purpose the hub is not registered for', someone.province, token, 'venue.entry', 'PERMISSION_DENIED', 'PURPOSE_NOT_REGISTERED'],
    ['a token of the wrong length', someone.province, Buffer.from('short'), purpose, 'INVALID_ARGUMENT', 'INVALID_REQUEST'],
  ];
  for (const [what, province, tok, purp, wantCode, wantReason] of cases) {
    try {
      await ask(province, tok, purp);
      check(false, `${what}: accepted`);
    } catch (e) {
      if (e instanceof hv.Refused) {
        check(false, `${what}: ${e.message}`);
        continue;
      }
      const r = refusal(e);
      const meta = Object.entries(r.metadata).map(([k, v]) => `${k}=${v}`).sort().join(', ');
      check(r.code === wantCode && r.reason === wantReason, `${what}: ${r.code} ${r.reason} (${meta}) -> ${actOn(r)}`);
    }
  }

  console.log('5. The verifier refuses tampered attestations, each for its reason');
  const red = info.travellers.find((t) => t.status === 'RED');
  const redToken = hv.tokenFromText(red.token);
  const good = (await call(lookup, 'Lookup', { province: red.province, token: redToken, purpose })).attestation;
  lookup.close();
  selfTests(trust, good, red.province, redToken, purpose);

  console.log(failures.length ? `\n${failures.length} step(s) failed.` : '\nEvery step behaved as expected.');
  return failures.length ? 1 : 0;
}

// Each wire rule, broken once: the verifier must refuse for exactly that reason.
function selfTests(trust, good, province, token, purpose) {
  const now = hv.now();
  const payload = Buffer.from(good.payload);
  const decoded = hv.T('AttestationPayload').decode(payload);
  const issuedAt = Number(decoded.issued_at);
  const expiresAt = Number(decoded.expires_at);
  const kidHex = Buffer.from(good.kid).toString('hex');
  const keyId = `${decoded.province}/${kidHex}`;

  const expect = (reason, { signed = good, t = trust, when = now, ...binding } = {}) => {
    const bind = { province, token, purpose, ...binding };
    try {
      hv.verifyAttestation(t, signed, when, bind);
      check(false, `${reason}: accepted`);
    } catch (e) {
      check(e.reason === reason, `${reason}: ${e.message}`);
    }
  };
  const altered = (changes) => ({ ...good, ...changes });
  // A copy of the trust index with one thing changed.
  const edited = (edit) => {
    const t = { ...trust, keys: new Map([...trust.keys].map(([k, v]) => [k, { ...v }])), rules: new Map(trust.rules),
      policy: new Map([...trust.policy].map(([k, v]) => [k, new Set(v)])) };
    edit(t);
    return t;
  };

  expect('kid_length', { signed: altered({ kid: Buffer.from(good.kid).subarray(0, 7) }) });
  expect('unknown_key', { signed: altered({ kid: Buffer.alloc(8) }) });
  const sig = Buffer.from(good.signature);
  sig[0] ^= 1;
  expect('bad_signature', { signed: altered({ signature: sig }) });
  expect('unknown_field', { signed: altered({ payload: Buffer.concat([payload, Buffer.from([10 << 3, 1])]) }) });
  expect('duplicate_field', { signed: altered({ payload: Buffer.concat([payload, Buffer.from([3 << 3, 1])]) }) });
  const provinceEnd = 2 + 2 + payload[3];
  const swapped = Buffer.concat([payload.subarray(2, provinceEnd), payload.subarray(0, 2), payload.subarray(provinceEnd)]);
  expect('non_canonical', { signed: altered({ payload: swapped }) });
  const tag = payload.indexOf(3 << 3);
  const longVarint = Buffer.concat([payload.subarray(0, tag + 1), Buffer.from([payload[tag + 1] | 0x80, 0]), payload.subarray(tag + 2)]);
  expect('non_canonical', { signed: altered({ payload: longVarint }) });
  try {
    hv.readCanonical(Buffer.from([1 << 3, 1, 8 << 3, 0]), hv.PAYLOAD_FIELDS);
    check(false, 'non_canonical: a default value written is accepted');
  } catch (e) {
    check(e.reason === 'non_canonical', `non_canonical (a default value written): ${e.message}`);
  }
  const big = Buffer.concat([payload, Buffer.from([(9 << 3) | 2, 250]), Buffer.alloc(250, 0x78)]);
  expect('oversized', { signed: altered({ payload: big }) });
  expect('token_binding', { token: Buffer.alloc(16) });
  expect('purpose_mismatch', { purpose: 'transit.rail' });
  expect('province_mismatch', { province: province === '440000' ? '370000' : '440000' });
  expect('expired', { when: expiresAt });
  expect('future_dated', { when: issuedAt - hv.MAX_CLOCK_SKEW_SECS - 1 });
  expect('key_not_valid', { when: trust.keys.get(keyId).notAfter });
  expect('key_revoked', { t: edited((t) => { t.keys.get(keyId).status = hv.KeyStatus.KEY_STATUS_REVOKED; }) });
  expect('lifetime_too_long', { t: edited((t) => { t.maxLifetime = 10; }) });
  expect('outside_key_validity', { t: edited((t) => { t.keys.get(keyId).notAfter = expiresAt - 1; }) });
  expect('field_not_allowed', { t: edited((t) => { t.policy.get(purpose).delete('test_recency'); }) });
  expect('purpose_not_in_policy', { t: edited((t) => { t.policy.delete(purpose); }) });
  expect('unregistered_rule', { t: edited((t) => { t.rules.delete(decoded.rule_id); }) });
  expect('rule_cannot_assign', { t: edited((t) => { t.rules.set(decoded.rule_id, { ...t.rules.get(decoded.rule_id), may_assign: [] }); }) });
  expect('rule_not_for_province', {
    t: edited((t) => {
      const rule = t.rules.get(decoded.rule_id);
      t.rules.set(decoded.rule_id, { ...rule, authorities: rule.authorities.filter((a) => !a.startsWith(`${decoded.province}/`)) });
    }),
  });
  // A QR whose bytes smuggle a field, or whose token is short, is refused before anything is verified.
  const QrCode = hv.T('QrCode');
  const qr = (tok, extra = Buffer.alloc(0)) => `HRN1:${hv.base32Encode(Buffer.concat([
    Buffer.from(QrCode.encode({ attestation: { payload, signature: Buffer.from(good.signature), kid: Buffer.from(good.kid) }, token: tok }).finish()),
    extra]))}`;
  check(hv.verifyQr(trust, qr(token), now).status === 'RED', 'a well-formed QR verifies');
  for (const [what, text] of [['qr_unknown_field', qr(token, Buffer.from([(3 << 3) | 2, 1, 0]))], ['qr_token', qr(token.subarray(0, 8))]]) {
    try {
      hv.verifyQr(trust, text, now);
      check(false, `${what}: accepted`);
    } catch (e) {
      check(e.reason === what, `${what}: ${e.message}`);
    }
  }
}

main().then((code) => process.exit(code), (e) => {
  console.error(`hub example failed: ${e.stack || e}`);
  process.exit(1);
});
