#!/bin/sh
# One-shot PKI and configuration for the compose demo (service "pki").
#
# DEMO ONLY. Everything lands in one shared volume, including the national root key
# (/pki/root/ca.key) and every province CA key. In production:
#   - the root key stays offline with the coordinators (`huren pki` runs on their machine);
#   - each province receives only its own material: issued/node-<code>/, issued/admin-<code>/,
#     provinces/<code>/attestation-<kid>.key, root/ca.pem and trust-list.bin — never
#     provinces/<code>/ca.key, another province's files, or root/ca.key;
#   - the national operator receives issued/gateway-<name>/, root/ca.pem, trust-list.bin.
#
# Idempotent: an existing PKI (trust-list.bin present) is kept; the TOML files are rewritten.
# Start over with `docker compose down -v`.
set -eu

PKI=/pki
PROVINCES="340000:Anhui 370000:Shandong 440000:Guangdong"
OTLP=http://otel-collector:4317

h() { huren pki --dir "$PKI" "$@"; }

if [ -f "$PKI/trust-list.bin" ]; then
    echo "pki: keeping the existing PKI in $PKI (trust list present)"
elif [ -e "$PKI/root/ca.pem" ]; then
    echo "pki: $PKI holds a half-made PKI (no trust list); run 'docker compose down -v' and start again" >&2
    exit 1
else
    h init
    for p in $PROVINCES; do
        code=${p%%:*}
        name=${p#*:}
        h province add "$code" --name "$name" --endpoint "https://node-$code:7443"
        h issue node "$code"
        h issue admin "$code"
    done
    # Public-health authorities: only their own certificates can assign non-green statuses.
    h issue authority 340000/hefei-cdc
    h issue authority 370000/jinan-cdc
    h issue authority 440000/guangzhou-cdc
    # One rule, so the demo can publish non-green statuses (every non-green status cites a rule).
    h rule add --id NHC-CC-2022-9 --title "Close contact of a confirmed case" \
        --legal-basis "demo" --may-assign RED --max-duration-seconds 1209600 \
        --exit-condition "two negative tests 24 h apart" --lapses-to GREEN \
        --authority 340000/hefei-cdc --authority 370000/jinan-cdc --authority 440000/guangzhou-cdc
    # One certificate per gateway replica (a shared one works too: the identity is the role).
    # Each names its compose service, so stock gRPC clients can check the name as usual
    # (a node's certificate names its registered endpoint's host by default).
    h issue gateway national-1 --dns gateway-1
    h issue gateway national-2 --dns gateway-2
    # Hubs: registered while issuing, or separately.
    h issue hub sd-jinan-highway-g3 --purpose transit.highway
    h issue hub gz-south-rail
    h hub register gz-south-rail --purpose transit.rail --purpose transit.general
    h issue coordinator national-ops
    h issue auditor demo-auditor
    h trust-list sign
fi

mkdir -p "$PKI/config"

# Gateways: one file for both replicas; each replica sets its own certificate through
# HUREN_GATEWAY_CERT / HUREN_GATEWAY_KEY in docker-compose.yml.
cat >"$PKI/config/gateway.toml" <<EOT
# Written by deploy/compose/pki-init.sh
listen = "0.0.0.0:8443"
trust_domain = "huren.gov"
cert = "$PKI/issued/gateway-national-1/cert.pem"
key = "$PKI/issued/gateway-national-1/key.pem"
ca = "$PKI/root/ca.pem"
trust_list = "$PKI/trust-list.bin"
data_dir = "/var/lib/huren/gateway"
node_timeout_ms = 2000
connect_timeout_ms = 1000
redis_url = "redis://redis:6379/"
redis_prefix = "huren:"
admin_listen = "0.0.0.0:9090"
otlp_endpoint = "$OTLP"
EOT

for p in $PROVINCES; do
    code=${p%%:*}
    cat >"$PKI/config/node-$code.toml" <<EOT
# Written by deploy/compose/pki-init.sh
province = "$code"
listen = "0.0.0.0:7443"
trust_domain = "huren.gov"
data_dir = "/var/lib/huren/node"
cert = "$PKI/issued/node-$code/cert.pem"
key = "$PKI/issued/node-$code/key.pem"
ca = "$PKI/root/ca.pem"
attestation_key = "$PKI/provinces/$code"
trust_list = "$PKI/trust-list.bin"
gateway = "gateway:8443"
attestation_ttl_seconds = 300
token_lifetime_seconds = 300
default_status_validity_seconds = 604800
admin_listen = "0.0.0.0:9091"
otlp_endpoint = "$OTLP"
EOT
done

echo "pki: ready; configuration in $PKI/config"
