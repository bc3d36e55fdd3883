#!/usr/bin/env bash
# Render times of the dashboard's pages (and GET /api/runs?limit=50) against a release
# daemon whose store holds 1,000,000 runs, each beside the same page with 1,000 runs.
# The runs are bulk-inserted with sqlite3 in one transaction into a database the daemon
# created (so the schema and its indexes are the real ones): 20 deployments, 35 days of
# history, mostly Completed, some Failed/Crashed/Cancelled/Skipped, retries and manual
# runs. Each figure is p50 / p99 of N sequential requests on one keep-alive connection
# (loopback), after a warm-up.
# Needs sqlite3 and python3. Usage: benches/dashboard.sh [RUNS] [REQUESTS] [PEER_RUNS]
# (the figures in the issue's closing note: benches/dashboard.sh 1000000 200 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000} requests=${2:-200} peer=${3:-1000}
command -v sqlite3 >/dev/null || { echo "sqlite3 is not installed (apt-get install sqlite3)" >&2; exit 2; }
# SUNDIAL_BIN: measure that binary instead of building the release one.
if [[ -z ${SUNDIAL_BIN:-} ]]; then
  cargo build --release --locked --quiet --bin sundial
fi
bin=${SUNDIAL_BIN:-${CARGO_TARGET_DIR:-target}/release/sundial}

dir=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

# 20 deployments, each with a schedule and a parameter schema.
mkdir -p "$dir/repo/deployments" "$dir/repo/flows"
# The entrypoint the manifests name (validate checks that it is there and defines main).
printf 'def main():\n    pass\n' > "$dir/repo/flows/etl.py"
{
  echo "deployments:"
  for i in $(seq 0 19); do
    cat <<EOF
  - name: deployment-$i
    entrypoint: flows/etl.py:main
    parameters: {batch_size: 500, day: 1}
    parameter_openapi_schema:
      type: object
      properties: {batch_size: {type: integer, minimum: 1}, day: {type: integer}}
    timeout_seconds: 600
    schedules:
      - cron: "$((i * 3)) * * * *"
        timezone: Europe/Madrid
EOF
  done
} > "$dir/repo/deployments/all.yaml"
git -C "$dir/repo" init -q -b main
git -C "$dir/repo" add .
git -C "$dir/repo" -c user.name=bench -c user.email=bench@sundial.invalid commit -q -m bench

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start() {
  # Retention would prune the history to 1,000 runs a deployment: keep it all.
  SUNDIAL_LOG=warn "$bin" daemon --repo "$dir/repo" --state-dir "$1" --listen "127.0.0.1:$port" \
    --keep-runs 100000000 --keep-days 36500 &
  pid=$!
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && return
    sleep 0.1
  done
  echo "the daemon did not get ready" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" || true; pid=; }

# fill STATE_DIR COUNT: the daemon creates the schema, then sqlite3 adds COUNT runs.
fill() {
  mkdir -p "$1"
  start "$1"; stop
  local count=$2
  sqlite3 "$1/state.db" <<EOF
PRAGMA synchronous=OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $count - 1),
rows AS (
  SELECT i,
         'deployment-' || (i % 20) AS deployment,
         -- One run every 3 s over the history, newest now; retries share their slot.
         strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (($count - i) * 3) || ' seconds') AS at,
         -- States spread over the deployments (not in step with i % 20).
         CASE WHEN i * 7919 % 100 < 85 THEN 'Completed' WHEN i * 7919 % 100 < 93 THEN 'Failed'
              WHEN i * 7919 % 100 < 94 THEN 'Crashed' WHEN i * 7919 % 100 < 96 THEN 'Cancelled'
              ELSE 'Skipped' END AS state,
         CASE WHEN i % 97 = 0 THEN 'manual' WHEN i % 31 = 0 THEN 'retry' ELSE 'schedule' END AS trigger
  FROM n)
INSERT INTO runs (deployment, schedule_id, scheduled_for, trigger, state, reason, attempt,
                  commit_sha, parameters, created_at, started_at, ended_at, exit_code)
SELECT deployment,
       CASE WHEN trigger = 'manual' THEN NULL ELSE 'sched-' || i END,
       CASE WHEN trigger = 'manual' THEN NULL ELSE at END,
       trigger, state,
       CASE state WHEN 'Skipped' THEN 'missed' WHEN 'Cancelled' THEN 'overlap' END,
       CASE WHEN trigger = 'retry' THEN 2 ELSE 1 END,
       '0123456789abcdef0123456789abcdef01234567',
       '{"batch_size":500,"day":' || (i % 7) || '}',
       at,
       CASE WHEN state IN ('Skipped', 'Cancelled') THEN NULL
            ELSE strftime('%Y-%m-%dT%H:%M:%fZ', at, '+0.' || (5 + i % 90) || ' seconds') END,
       CASE WHEN state IN ('Skipped', 'Cancelled') THEN at
            ELSE strftime('%Y-%m-%dT%H:%M:%fZ', at, '+' || (1 + i % 40) || ' seconds') END,
       CASE state WHEN 'Completed' THEN 0 WHEN 'Failed' THEN 1 END
FROM rows;
COMMIT;
EOF
}

# One day a week ago, the same for both stores (UTC, as the runs list reads it).
since=$(date -u -d '7 days ago' +%Y-%m-%dT%H:%M) until=$(date -u -d '6 days ago' +%Y-%m-%dT%H:%M)
measure() { # STATE_DIR: prints "path p50 p99" lines
  start "$1"
  sleep 3 # the start-up retention pass reads every run once; let it finish first
  python3 - "$port" "$requests" "$since" "$until" <<'EOF'
import http.client, statistics, sys, time
port, n, since, until = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
paths = [
    "/",
    "/runs",
    "/runs?deployment=deployment-3&state=Failed",
    "/runs?trigger=manual",
    "/runs?state=Crashed&before=500000",
    f"/runs?since={since}&until={until}",
    "/deployments/deployment-3",
    "/api/runs?limit=50",
]
conn = http.client.HTTPConnection("127.0.0.1", port)
for path in paths:
    times = []
    for k in range(n + 10):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse(); r.read()
        if r.status != 200:
            sys.exit(f"{path}: {r.status}")
        if k >= 10:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(path, f"{statistics.median(times):.2f}", f"{times[int(len(times) * 0.99) - 1]:.2f}")
EOF
  stop
}

fill "$dir/peer" "$peer"
fill "$dir/big" "$runs"
echo "runs in the stores: $(sqlite3 "$dir/peer/state.db" 'SELECT COUNT(*) FROM runs') and $(sqlite3 "$dir/big/state.db" 'SELECT COUNT(*) FROM runs')"
measure "$dir/peer" > "$dir/peer.txt"
measure "$dir/big" > "$dir/big.txt"
printf '%-46s %22s %22s\n' "GET (ms, p50 / p99 of $requests)" "$peer runs" "$runs runs"
join <(sort "$dir/peer.txt") <(sort "$dir/big.txt") | sort -k1,1 |
  while read -r path p50a p99a p50b p99b; do
    printf '%-46s %10s / %-9s %10s / %-9s\n' "$path" "$p50a" "$p99a" "$p50b" "$p99b"
  done
