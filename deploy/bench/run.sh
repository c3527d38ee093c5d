#!/usr/bin/env bash
# Huren benchmark suite: on one machine, in one run, side by side
#   1. hub → node direct (Attest with a gateway identity: the physical limit of the path)
#   2. hub → huren gateway → node (cache miss path: every lookup forwarded and verified)
#   3. hub → gateway with cache hits (--repeat-tokens), in-process cache; 3r. the same with the
#      shared Redis cache of replicated gateways (REDIS_URL; skipped when no Redis answers)
#   4. hub → nginx grpc_pass (mTLS both sides) → node
#   5. (max load only) hub → gateway, cache on, UNIQUE_TOKENS tokens each used once
#      (--unique-tokens: nothing repeats inside any cache window), and hub → gateway
#      LookupBatch of BATCH tokens (cache off; throughput counted in attestations)
# each at maximum load (closed loop) and all at one fixed rate, 50% of path 2's maximum
# (open loop), then the node store on its own (ingest, lookups, size, memory).
# Writes OUT/results.json and OUT/results.md (and prints the table).
#
# Usage: deploy/bench/run.sh            (from anywhere; builds huren in release mode)
# Knobs (environment):
#   DURATION=10s WARMUP=2s CONCURRENCY=64 CONNECTIONS=4   load generator
#   SUBJECTS=1000 TOKENS=1000                             seeded at the node
#   UNIQUE_TOKENS=100000 (0 skips path 5's unique run) BATCH=100
#   STORE_SUBJECTS=1000000 (0 skips the store benchmark; 10000000 for the full target)
#   OUT=target/bench-results/<UTC time>                   results folder
#   HUREN=/path/to/huren                                  skip the build, use this binary
#   LOADGEN_CPUS NODE_CPUS PROXY_CPUS                     taskset CPU lists (defaults below)
#   PORT_BASE=17440                                       node +1, gateway +2, nginx +3 (loopback)
#   PROFILE=1                                             extra perf-profiled path-2 run (needs perf)
#   CACHE=0|1                                             force path 3 off/on (default: detect)
#   REDIS_URL (default redis://127.0.0.1:6379/)           Redis for path 3r; REDIS_URL= skips it
#   GATEWAY_MISS_TOML / GATEWAY_CACHE_TOML                extra gateway.toml lines for paths 2 / 3
#   INSTALL_NGINX=1                                       apt-get install nginx if missing
#   HALF_LOAD=0                                           skip the half-load phase
#   RUNS="direct gateway"                                 only these runs (names as in the results;
#                                                         default all: direct gateway cached cached-redis
#                                                         gateway-unique batch nginx)
# Only loopback addresses are used; every process started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-64}
CONNECTIONS=${CONNECTIONS:-4}
SUBJECTS=${SUBJECTS:-1000}
TOKENS=${TOKENS:-1000}
UNIQUE_TOKENS=${UNIQUE_TOKENS:-100000}
BATCH=${BATCH:-100}
STORE_SUBJECTS=${STORE_SUBJECTS:-1000000}
PORT_BASE=${PORT_BASE:-17440}
OUT=${OUT:-$ROOT/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
PROFILE=${PROFILE:-0}
REDIS_URL=${REDIS_URL-redis://127.0.0.1:6379/}
if [ -n "$REDIS_URL" ] && ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
    echo "run.sh: no Redis answers at $REDIS_URL; the shared-cache path (3r) is skipped" >&2
    REDIS_URL=
fi
NODE_PORT=$((PORT_BASE + 1))
GATEWAY_PORT=$((PORT_BASE + 2))
NGINX_PORT=$((PORT_BASE + 3))

# CPU pinning. The load generator gets its own cores; everything under test (node,
# gateway or nginx) shares the rest, so each path is charged for all the CPU it uses.
CORES=$(nproc)
if [ "$CORES" -ge 4 ]; then
    DEF_NODE=1 DEF_PROXY=2 DEF_LOADGEN="3-$((CORES - 1))"
elif [ "$CORES" -ge 2 ]; then
    DEF_NODE=1 DEF_PROXY=1 DEF_LOADGEN=0
else
    DEF_NODE=0 DEF_PROXY=0 DEF_LOADGEN=0
fi
LOADGEN_CPUS=${LOADGEN_CPUS:-$DEF_LOADGEN}
NODE_CPUS=${NODE_CPUS:-$DEF_NODE}
PROXY_CPUS=${PROXY_CPUS:-$DEF_PROXY}

log() { echo "[bench] $*" >&2; }
RUNS=${RUNS:-all}
want() { [ "$RUNS" = all ] || [[ " $RUNS " == *" $1 "* ]]; }

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

if [ -z "${HUREN:-}" ]; then
    log "building huren (release)"
    (cd "$ROOT" && cargo build --release -p huren-cli --quiet)
    HUREN="${CARGO_TARGET_DIR:-$ROOT/target}/release/huren"
fi
[ -x "$HUREN" ] || { log "no huren binary at $HUREN"; exit 1; }
"$HUREN" bench --help >/dev/null || { log "$HUREN has no bench command"; exit 1; }

NGINX=${NGINX:-$(command -v nginx || true)}
if [ -z "$NGINX" ] && [ -x /usr/sbin/nginx ]; then NGINX=/usr/sbin/nginx; fi
if [ -z "$NGINX" ] && [ "${INSTALL_NGINX:-0}" = 1 ]; then
    log "installing nginx"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi

if [ -z "${CACHE:-}" ]; then
    if "$HUREN" gateway --print-default-config | grep -qi cache; then CACHE=1; else CACHE=0; fi
fi

WORK="$OUT/work"
mkdir -p "$WORK" "$WORK/nginx-tmp"
OUT=$(cd "$OUT" && pwd)
WORK="$OUT/work"
log "results in $OUT"
log "pinning: loadgen $LOADGEN_CPUS, node $NODE_CPUS, gateway/nginx $PROXY_CPUS ($CORES cores)"

# ------------------------------------------------------------------ PKI
PKI="$WORK/pki"
h() { "$HUREN" "$@"; }
h pki --dir "$PKI" init >/dev/null
h pki --dir "$PKI" province add 340000 --name Anhui --endpoint "https://127.0.0.1:$NODE_PORT" >/dev/null
for issue in "node 340000" "admin 340000" "gateway bench-gw" "hub bench-hub"; do
    # shellcheck disable=SC2086
    h pki --dir "$PKI" issue $issue >/dev/null
done
# Hub registration (the purposes a hub may declare), where the trust list carries one.
if h pki hub --help >/dev/null 2>&1; then
    h pki --dir "$PKI" hub register bench-hub --purpose transit.highway >/dev/null
fi
h pki --dir "$PKI" trust-list sign >/dev/null
ROOT_PEM="$PKI/root/ca.pem"
ISSUED="$PKI/issued"
ATT_KEY=$(ls "$PKI"/provinces/340000/attestation-*.key | head -n 1)
TLS_GW=(--cert "$ISSUED/gateway-bench-gw/cert.pem" --key "$ISSUED/gateway-bench-gw/key.pem" --ca "$ROOT_PEM")
TLS_HUB=(--cert "$ISSUED/hub-bench-hub/cert.pem" --key "$ISSUED/hub-bench-hub/key.pem" --ca "$ROOT_PEM")
TLS_ADMIN=(--cert "$ISSUED/admin-340000/cert.pem" --key "$ISSUED/admin-340000/key.pem" --ca "$ROOT_PEM")

# ------------------------------------------------------------------ servers
# start NAME CPUS LOGFILE CMD... : starts a server pinned to CPUS and waits for "listening on".
start() {
    local name=$1 cpus=$2 logfile=$3
    shift 3
    taskset -c "$cpus" "$@" >"$logfile" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do
        if grep -q "listening on" "$logfile" 2>/dev/null; then
            eval "${name}_PID=$pid"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    log "$name did not start:"
    cat "$logfile" >&2
    exit 1
}

stop() {
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

cat >"$WORK/node.toml" <<EOF
province = "340000"
listen = "127.0.0.1:$NODE_PORT"
data_dir = "$WORK/node-data"
cert = "$ISSUED/node-340000/cert.pem"
key = "$ISSUED/node-340000/key.pem"
ca = "$ROOT_PEM"
attestation_key = "$ATT_KEY"
trust_list = "$PKI/trust-list.bin"
admin_listen = "127.0.0.1:0"
EOF

gateway_toml() { # $1 = extra TOML lines
    cat >"$WORK/gateway.toml" <<EOF
listen = "127.0.0.1:$GATEWAY_PORT"
cert = "$ISSUED/gateway-bench-gw/cert.pem"
key = "$ISSUED/gateway-bench-gw/key.pem"
ca = "$ROOT_PEM"
trust_list = "$PKI/trust-list.bin"
data_dir = "$WORK/gateway-data"
admin_listen = "127.0.0.1:0"
hub_rate_per_sec = 0
$1
EOF
}

start NODE "$NODE_CPUS" "$WORK/node.log" "$HUREN" node --config "$WORK/node.toml"
log "node pid $NODE_PID on 127.0.0.1:$NODE_PORT"

log "seeding $SUBJECTS subjects and $TOKENS tokens"
h bench seed --node "127.0.0.1:$NODE_PORT" "${TLS_ADMIN[@]}" --subjects "$SUBJECTS" --tokens "$TOKENS" \
    --out "$WORK/tokens.txt" >/dev/null
if [ "$UNIQUE_TOKENS" -gt 0 ] && want gateway-unique; then
    log "seeding $UNIQUE_TOKENS more tokens for the unique-token run"
    h bench seed --node "127.0.0.1:$NODE_PORT" "${TLS_ADMIN[@]}" --subjects "$SUBJECTS" --tokens "$UNIQUE_TOKENS" \
        --out "$WORK/unique-tokens.txt" >/dev/null
fi
# Redis's own CPU counts in path 3r (when it runs on this machine).
REDIS_PID=""
if [ -n "$REDIS_URL" ]; then
    REDIS_PID=$(redis-cli -u "$REDIS_URL" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p' || true)
    [ -n "$REDIS_PID" ] && [ -d "/proc/$REDIS_PID" ] || REDIS_PID=""
fi

NGINX_OK=0
if [ -n "$NGINX" ] && [ -x "$NGINX" ]; then
    sed -e "s|@WORKERS@|$(taskset -c "$PROXY_CPUS" nproc)|" -e "s|@WORK@|$WORK|g" -e "s|@NODE_PORT@|$NODE_PORT|" \
        -e "s|@NGINX_PORT@|$NGINX_PORT|" -e "s|@GATEWAY_CERT@|$ISSUED/gateway-bench-gw/cert.pem|g" \
        -e "s|@GATEWAY_KEY@|$ISSUED/gateway-bench-gw/key.pem|g" -e "s|@ROOT@|$ROOT_PEM|" \
        "$HERE/nginx.conf.in" >"$WORK/nginx.conf"
    if "$NGINX" -t -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx-test.log" 2>&1; then
        NGINX_OK=1
    else
        log "nginx rejected its configuration; path 4 skipped:"
        cat "$WORK/nginx-test.log" >&2
    fi
else
    log "nginx not found (INSTALL_NGINX=1 installs Debian's); path 4 skipped"
fi

# ------------------------------------------------------------------ load
# load NAME JSON-OUT ARGS... : one pinned load-generator run.
load() {
    local name=$1 out=$2
    shift 2
    log "run $name"
    if ! taskset -c "$LOADGEN_CPUS" "$HUREN" bench lookup --label "$name" --json --duration "$DURATION" \
        --warmup "$WARMUP" --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" "$@" >"$out.tmp"; then
        log "  run $name failed; it is left out of the results"
        rm -f "$out.tmp"
        return 0
    fi
    mv "$out.tmp" "$out"
    log "  $(rps_of "$out") req/s, p99 $(grep -o '"p99":[0-9]*' "$out" | head -n 1 | cut -d: -f2) µs, errors $(grep -o '"errors":[0-9]*' "$out" | cut -d: -f2)"
}
rps_of() { grep -o '"rps":[0-9.]*' "$1" | cut -d: -f2; }

nginx_pids() { # master and workers, as --watch-pid arguments
    local master=$1
    local args=(--watch-pid "nginx-master=$master") i=0 w
    for w in $(pgrep -P "$master"); do
        i=$((i + 1))
        args+=(--watch-pid "nginx-worker$i=$w")
    done
    echo "${args[@]}"
}

DIRECT=(--target "127.0.0.1:$NODE_PORT" --rpc attest "${TLS_GW[@]}" --tokens "$WORK/tokens.txt")
VIA_GW=(--target "127.0.0.1:$GATEWAY_PORT" --rpc lookup "${TLS_HUB[@]}" --tokens "$WORK/tokens.txt")
VIA_NGINX=(--target "127.0.0.1:$NGINX_PORT" --rpc attest --expect gateway "${TLS_HUB[@]}" --tokens "$WORK/tokens.txt")

# phase max|half [RATE]: every path once; gateway and nginx run only while measured.
phase() {
    local kind=$1
    shift
    local rate=()
    [ "$kind" = half ] && rate=(--rate "$1")
    if want direct; then
        load direct "$OUT/$kind-direct.json" "${DIRECT[@]}" "${rate[@]}" --watch-pid "node=$NODE_PID"
    fi

    if want gateway; then
        gateway_toml "${GATEWAY_MISS_TOML:-cache = false}"
        start GATEWAY "$PROXY_CPUS" "$WORK/gateway.log" "$HUREN" gateway --config "$WORK/gateway.toml"
        load gateway "$OUT/$kind-gateway.json" "${VIA_GW[@]}" "${rate[@]}" \
            --watch-pid "gateway=$GATEWAY_PID" --watch-pid "node=$NODE_PID"
        stop "$GATEWAY_PID"
    fi

    if [ "$CACHE" = 1 ] && want cached; then
        gateway_toml "${GATEWAY_CACHE_TOML:-cache = true}"
        start GATEWAY "$PROXY_CPUS" "$WORK/gateway.log" "$HUREN" gateway --config "$WORK/gateway.toml"
        load cached "$OUT/$kind-cached.json" "${VIA_GW[@]}" --repeat-tokens "${rate[@]}" \
            --watch-pid "gateway=$GATEWAY_PID" --watch-pid "node=$NODE_PID"
        stop "$GATEWAY_PID"
    fi
    if [ "$CACHE" = 1 ] && [ -n "$REDIS_URL" ] && want cached-redis; then
        gateway_toml "${GATEWAY_CACHE_TOML:-cache = true}
redis_url = \"$REDIS_URL\"
redis_prefix = \"huren-bench-$$-$kind:\""
        start GATEWAY "$PROXY_CPUS" "$WORK/gateway.log" "$HUREN" gateway --config "$WORK/gateway.toml"
        load cached-redis "$OUT/$kind-cached-redis.json" "${VIA_GW[@]}" --repeat-tokens "${rate[@]}" \
            --watch-pid "gateway=$GATEWAY_PID" --watch-pid "node=$NODE_PID" \
            ${REDIS_PID:+--watch-pid "redis=$REDIS_PID"}
        stop "$GATEWAY_PID"
    fi

    if [ "$kind" = max ]; then
        if [ "$UNIQUE_TOKENS" -gt 0 ] && want gateway-unique; then
            gateway_toml "${GATEWAY_CACHE_TOML:-cache = true}"
            start GATEWAY "$PROXY_CPUS" "$WORK/gateway.log" "$HUREN" gateway --config "$WORK/gateway.toml"
            load gateway-unique "$OUT/$kind-gateway-unique.json" --target "127.0.0.1:$GATEWAY_PORT" --rpc lookup \
                "${TLS_HUB[@]}" --tokens "$WORK/unique-tokens.txt" --unique-tokens \
                --watch-pid "gateway=$GATEWAY_PID" --watch-pid "node=$NODE_PID"
            stop "$GATEWAY_PID"
        fi
        if want batch; then
            gateway_toml "${GATEWAY_MISS_TOML:-cache = false}"
            start GATEWAY "$PROXY_CPUS" "$WORK/gateway.log" "$HUREN" gateway --config "$WORK/gateway.toml"
            load batch "$OUT/$kind-batch.json" --target "127.0.0.1:$GATEWAY_PORT" --rpc lookup-batch --batch "$BATCH" \
                "${TLS_HUB[@]}" --tokens "$WORK/tokens.txt" --watch-pid "gateway=$GATEWAY_PID" --watch-pid "node=$NODE_PID"
            stop "$GATEWAY_PID"
        fi
    fi

    if [ "$NGINX_OK" = 1 ] && want nginx; then
        taskset -c "$PROXY_CPUS" "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx.log" 2>&1 &
        local nginx_pid=$!
        PIDS+=("$nginx_pid")
        for _ in $(seq 1 50); do
            [ -n "$(pgrep -P "$nginx_pid")" ] && break
            sleep 0.1
        done
        sleep 0.3
        # shellcheck disable=SC2046
        load nginx "$OUT/$kind-nginx.json" "${VIA_NGINX[@]}" "${rate[@]}" --watch-pid "node=$NODE_PID" \
            $(nginx_pids "$nginx_pid")
        stop "$nginx_pid"
    fi
}

phase max
HALF_RATE=0
if [ -f "$OUT/max-gateway.json" ]; then
    HALF_RATE=$(awk -v r="$(rps_of "$OUT/max-gateway.json")" 'BEGIN { printf "%.0f", r / 2 }')
fi
if [ "${HALF_LOAD:-1}" = 0 ]; then
    log "HALF_LOAD=0: half-load runs skipped"
elif [ "$HALF_RATE" -gt 0 ]; then
    log "half load: $HALF_RATE req/s on every path"
    phase half "$HALF_RATE"
else
    log "no gateway maximum; half-load runs skipped"
fi

# Where the gateway path's CPU goes: a separate, unrecorded max-load run under perf
# (sampling costs a little throughput, so it never touches the numbers above).
if [ "$PROFILE" = 1 ]; then
    if command -v perf >/dev/null; then
        gateway_toml "${GATEWAY_MISS_TOML:-cache = false}"
        start GATEWAY "$PROXY_CPUS" "$WORK/gateway.log" "$HUREN" gateway --config "$WORK/gateway.toml"
        log "profiling the gateway path (perf, cpu-clock)"
        secs=$(awk -v d="$DURATION" 'BEGIN { sub(/s$/, "", d); print d + 2 }')
        perf record -q -e cpu-clock -F 999 -g -p "$GATEWAY_PID,$NODE_PID" -o "$OUT/profile.perf.data" \
            -- sleep "$secs" >/dev/null 2>&1 &
        perf_pid=$!
        load profiled "$OUT/profile-run.json" "${VIA_GW[@]}" --watch-pid "gateway=$GATEWAY_PID" \
            --watch-pid "node=$NODE_PID"
        wait "$perf_pid" || true
        for who in gateway:$GATEWAY_PID node:$NODE_PID; do
            perf report -i "$OUT/profile.perf.data" --pid "${who#*:}" --percentage relative --no-children \
                -g none --sort dso,sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' >"$OUT/profile-${who%%:*}.txt" ||
                true
        done
        stop "$GATEWAY_PID"
    else
        log "perf not found (apt-get install linux-perf); no profile"
    fi
fi

stop "$NODE_PID"

if [ "$STORE_SUBJECTS" -gt 0 ]; then
    log "node store: $STORE_SUBJECTS subjects"
    mkdir -p "$WORK/store"
    taskset -c "$NODE_CPUS" "$HUREN" bench store --subjects "$STORE_SUBJECTS" --dir "$WORK/store" --json \
        >"$OUT/store.json"
fi

# ------------------------------------------------------------------ report
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)
git_rev=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)
nginx_version=$([ -n "$NGINX" ] && "$NGINX" -v 2>&1 | sed 's/.*nginx\///' || echo none)
cat >"$OUT/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "cpu_model": "$cpu_model", "cores": $CORES,
 "memory_kib": $(grep MemTotal /proc/meminfo | awk '{print $2}'), "kernel": "$(uname -r)", "git": "$git_rev",
 "nginx": "$nginx_version", "duration": "$DURATION", "warmup": "$WARMUP", "concurrency": $CONCURRENCY,
 "connections": $CONNECTIONS, "tokens": $TOKENS, "subjects": $SUBJECTS, "half_rate": $HALF_RATE,
 "loadavg_at_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "pinning": {"loadgen": "$LOADGEN_CPUS", "node": "$NODE_CPUS", "proxy": "$PROXY_CPUS"}, "cache_path": $CACHE}
EOF
h bench report "$OUT"
rm -rf "$WORK/node-data" "$WORK/store"
log "done: $OUT/results.md"
