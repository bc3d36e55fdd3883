#!/usr/bin/env bash
# Fills fuzz/corpus/<target> (not committed) with seeds: the hand-picked inputs in
# fuzz/seeds/<target> (taken from the tests), the repository's manifests, and the cron,
# interval and rrule values and `{{ }}` strings that the manifests and the tests use.
# Schedule seeds are in the targets' text form: zone, instant and option lines, then the
# text (see fuzz_targets/input.rs).
set -euo pipefail
cd "$(dirname "$0")"
root=..
for target in manifest cron rrule interval template; do
  mkdir -p "corpus/$target"
  cp seeds/"$target"/* "corpus/$target/"
done
cp "$root"/deployments/*.yaml "$root"/.pre-commit-hooks.yaml corpus/manifest/

# One corpus file per distinct value, named by its hash.
add() {
  local target=$1 text=$2
  local name
  name=$(printf '%s' "$text" | sha1sum | cut -c1-16)
  printf '%s' "$text" >"corpus/$target/extracted-$name"
}
sources=("$root"/deployments/*.yaml "$root"/tests/*.rs "$root"/daemon/schedule/*.rs "$root"/daemon/schedule/tests/*.rs "$root"/daemon/validate/*.rs)
# `cron: "..."` in YAML (also inside Rust strings), `--cron", "..."` and `Schedule::cron("..."`.
grep -hoE '(cron: \\?"|"--cron", "|Schedule::cron\(")[^"\\]+' "${sources[@]}" |
  sed -E 's/^(cron: \\?"|"--cron", "|Schedule::cron\(")//' | sort -u |
  while IFS= read -r expr; do add cron $'UTC\n\n\n'"$expr"; done
grep -hoE '(rrule: \\?"|"--rrule", "|Schedule::rrule\(")[^"]+' "${sources[@]}" |
  sed -E 's/^(rrule: \\?"|"--rrule", "|Schedule::rrule\(")//; s/\\$//' | sort -u |
  while IFS= read -r text; do add rrule $'UTC\n\n\n'"$(printf '%b' "$text")"; done
grep -hoE '(interval: \\?"?|"--interval", "|parse_interval\(")[A-Za-z0-9:.]+' "${sources[@]}" |
  sed -E 's/^.*(: \\?"?|", "|\(")//' | grep -E '^[0-9PTHMSDWpt:.]+$' | sort -u |
  while IFS= read -r text; do add interval $'UTC\n\n\n'"$text"; done
grep -hoE '"[^"]*\{\{[^"]*"' "${sources[@]}" | sed -E 's/^"//; s/"$//' | sort -u |
  while IFS= read -r text; do add template "$text"; done

for target in manifest cron rrule interval template; do
  echo "$target: $(ls "corpus/$target" | wc -l) seeds"
done
