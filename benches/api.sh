#!/usr/bin/env bash
# Load test of the run-history API: GET /api/runs?limit=50 against a release daemon whose
# store holds 100,000 runs (filled through sundial::store by examples/fill_store.rs).
# Needs `wrk` (Debian package). Usage: benches/api.sh [RUNS] [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100000} seconds=${2:-10} connections=${3:-16}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet --bin sundial --example fill_store
bin=${CARGO_TARGET_DIR:-target}/release

dir=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

mkdir -p "$dir/repo/deployments" "$dir/state"
printf 'deployments:\n  - name: idle\n    entrypoint: idle.py:main\n' > "$dir/repo/deployments/idle.yaml"
git -C "$dir/repo" init -q -b main
git -C "$dir/repo" add .
git -C "$dir/repo" -c user.name=bench -c user.email=bench@sundial.invalid commit -q -m bench
"$bin/examples/fill_store" "$dir/state/state.db" "$runs"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SUNDIAL_LOG=warn "$bin/sundial" daemon --repo "$dir/repo" --state-dir "$dir/state" --listen "127.0.0.1:$port" &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port/api/runs?limit=50"
curl -fs "$url" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)), "runs per answer")'
echo "wrk -t2 -c$connections -d${seconds}s --latency $url"
wrk -t2 -c"$connections" -d"${seconds}s" --latency "$url"
