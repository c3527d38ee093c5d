#!/usr/bin/env bash
# Runs the worked examples (examples/python, examples/node) against a live loopback
# federation: `huren demo --info` keeps a three-province federation serving and writes where
# it is (addresses, certificates, the seeded travellers' QR codes) to a JSON file; each
# example reads that file, talks to the gateway with its own gRPC stack and exits 0 when
# every step behaved as expected.
#
#   examples/run.sh [python|node ...]      (default: both)
#
# HUREN: the huren binary (default target/debug/huren, built if missing). Dependencies:
# examples/python/.venv (python3 -m venv … && pip install -r requirements.txt) and
# examples/node/node_modules (npm ci); .ci/run sets both up.
set -euo pipefail
cd "$(dirname "$0")/.."

HUREN="${HUREN:-target/debug/huren}"
if [ ! -x "$HUREN" ]; then
  cargo build --locked -p huren-cli
fi
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(python node)

work="$(mktemp -d "${TMPDIR:-/tmp}/huren-examples-XXXXXX")"
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ]; then
    kill "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$HUREN" demo --dir "$work/federation" --info "$work/federation.json" >"$work/demo.log" 2>&1 &
demo_pid=$!
# Wait (bounded) for the federation to serve: the info file appears once it does.
for _ in $(seq 600); do
  [ -s "$work/federation.json" ] && break
  if ! kill -0 "$demo_pid" 2>/dev/null; then
    echo "huren demo stopped:" >&2
    cat "$work/demo.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ ! -s "$work/federation.json" ]; then
  echo "huren demo did not start serving within 60 s" >&2
  cat "$work/demo.log" >&2
  exit 1
fi

status=0
for example in "${which[@]}"; do
  case "$example" in
    python)
      echo "== examples/python"
      examples/python/.venv/bin/python examples/python/hub_example.py --info "$work/federation.json" || status=1
      ;;
    node)
      echo "== examples/node"
      node examples/node/hub_example.js --info "$work/federation.json" || status=1
      ;;
    *)
      echo "unknown example $example (python, node)" >&2
      exit 64
      ;;
  esac
done
exit $status
