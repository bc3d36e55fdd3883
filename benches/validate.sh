#!/usr/bin/env bash
# Times `sundial validate` on generated 50- and 1,000-deployment prefect.yaml files with
# hyperfine, next to check-jsonschema on the same files (a peer that checks only the
# schema), so the figures read as ratios on a noisy machine.
#
#   benches/validate.sh            # needs hyperfine (apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin="$PWD/target/release/sundial"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

generate() { # N FILE
  python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
zones = ["America/Chicago", "Europe/Madrid", "UTC", "Asia/Kolkata", "Australia/Lord_Howe"]
with open(path, "w") as f:
    f.write("name: bench\nprefect-version: 3.1.0\ndeployments:\n")
    for i in range(n):
        f.write(f"""  - name: job-{i}
    description: generated deployment {i}
    tags: [bench, n{i % 7}]
    entrypoint: flows/etl.py:daily_job
    parameters: {{batch_size: {i + 1}, source: warehouse}}
    parameter_openapi_schema:
      type: object
      properties:
        batch_size: {{type: integer, minimum: 1}}
        source: {{type: string}}
    work_pool:
      name: local
      job_variables:
        env: {{LOG_LEVEL: info, SHARD: "{i}"}}
    schedules:
      - cron: "{i % 60} {i % 24} * * 1-5"
        timezone: {zones[i % len(zones)]}
      - interval: {300 + i}
      - rrule: "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE={i % 60}"
        timezone: Europe/Madrid
    retries: 2
    retry_delay_seconds: [10, 60]
""")
PY
}

# The entrypoint the manifests name (validate checks that it is there and defines it).
mkdir -p "$work/flows"
printf 'def daily_job(batch_size, source):\n    pass\n' > "$work/flows/etl.py"
generate 50 "$work/p50.yaml"
generate 1000 "$work/p1000.yaml"
"$bin" validate "$work/p50.yaml" >/dev/null
"$bin" validate "$work/p1000.yaml" >/dev/null

cmds=("$bin validate $work/p50.yaml" "$bin validate $work/p1000.yaml")
if command -v check-jsonschema >/dev/null; then
  schema="$PWD/schema/deployment-manifest.schema.json"
  cmds+=("check-jsonschema --schemafile $schema $work/p50.yaml" "check-jsonschema --schemafile $schema $work/p1000.yaml")
fi
hyperfine --warmup 3 --min-runs 10 -N "${cmds[@]}"
