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

generate() { # N FILE: the harness's generated manifest (benches/figures/validate.py)
  python3 -c 'import sys; sys.path.insert(0, "benches"); from figures.validate import generate_validate; generate_validate(int(sys.argv[1]), sys.argv[2])' "$1" "$2"
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
