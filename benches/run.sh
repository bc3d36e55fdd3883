#!/usr/bin/env bash
# Issue #19's figures beside their peers, in one run, as one table (docs/performance.md).
#
#   benches/run.sh [--quick] [--binary PATH] [--no-install] [-- HARNESS-OPTIONS]
#
# Builds the release binary and examples/fill_store (unless --binary names a sundial binary:
# the tests pass their debug build, whose fill_store is then built beside it), compiles
# benches/floor.c into target/bench/, installs the peers that are missing (as root: Debian's
# cron, hyperfine, wrk, a C compiler; check-jsonschema and prefect from PyPI into
# target/bench-venv, unless target/tools-venv or target/prefect-venv already has them), then
# runs benches/harness.py, which measures and prints the table and cleans up its processes
# and temporary repositories, also on Ctrl-C. A peer that is missing and cannot be installed
# (not root, --no-install) is reported as "peer not available".
#
# --quick runs every figure small (10 lateness runs, 200 deployments, 10,000 stored runs,
# 2 s of wrk, no Prefect server) to check the harness works; it asserts nothing about time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=() binary= install=1 harness_args=()
while (($#)); do
  case $1 in
    --quick) quick=(--quick) ;;
    --binary) binary=$2; shift ;;
    --no-install) install= ;;
    --) shift; harness_args=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

can_install() { [[ -n $install && $(id -u) -eq 0 ]]; }
apt_updated=
install_deb() { # PACKAGE...
  can_install || return 1
  if [[ -z $apt_updated ]]; then apt-get update -qq >&2 && apt_updated=1; fi
  echo "run.sh: installing $* (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
# The path of COMMAND (installing PACKAGE when missing), or nothing.
tool() { # COMMAND PACKAGE
  command -v "$1" 2>/dev/null && return
  install_deb "$2" >/dev/null 2>&1 || true
  command -v "$1" 2>/dev/null || echo "run.sh: $1: peer not available" >&2
}

# A C compiler for the floor: needed, not a peer.
cc=$(command -v cc || command -v gcc || true)
if [[ -z $cc ]]; then
  install_deb gcc libc6-dev || { echo "run.sh: no C compiler (apt-get install gcc)" >&2; exit 1; }
  cc=$(command -v gcc)
fi

target=${CARGO_TARGET_DIR:-$root/target}
if [[ -z $binary ]]; then
  echo "run.sh: building the release binary and examples/fill_store" >&2
  nice -n 10 cargo build --release --locked --quiet --bin sundial --example fill_store
  binary=$target/release/sundial
  fill_store=$target/release/examples/fill_store
else
  binary=$(realpath "$binary")
  fill_store=$(dirname "$binary")/examples/fill_store
  if [[ ! -x $fill_store ]]; then
    # A debug binary gets a debug fill_store; any other (a release build, or a copy of one
    # kept elsewhere to compare builds) the release one.
    profile=(--release) dir=release
    [[ $(basename "$(dirname "$binary")") == debug ]] && profile=() dir=debug
    nice -n 10 cargo build --locked --quiet "${profile[@]}" --example fill_store
    fill_store=$target/$dir/examples/fill_store
  fi
fi

mkdir -p "$target/bench"
"$cc" -O2 -Wall -o "$target/bench/floor" benches/floor.c

cron=$(PATH=$PATH:/usr/sbin:/sbin tool cron cron)
hyperfine=$(tool hyperfine hyperfine)
wrk=$(tool wrk wrk)

# Python peers: the test suite's venvs when they have them, else target/bench-venv.
venv=$target/bench-venv
check_jsonschema=
for candidate in "$target/tools-venv/bin/check-jsonschema" "$venv/bin/check-jsonschema"; do
  [[ -x $candidate ]] && { check_jsonschema=$candidate; break; }
done
prefect_python=
for candidate in "$target/prefect-venv/bin/python" "$venv/bin/python"; do
  "$candidate" -c 'import prefect' 2>/dev/null && { prefect_python=$candidate; break; }
done
pip_missing=()
[[ -z $check_jsonschema ]] && pip_missing+=(check-jsonschema)
# Prefect is only a peer of the full run (--quick starts no Prefect server).
# (fastapi is held below 0.116 as in scripts/test.sh: newer ones break Prefect 3.8's server.)
[[ -z $prefect_python && ${#quick[@]} -eq 0 ]] && pip_missing+=(prefect 'fastapi<0.116')
if ((${#pip_missing[@]})) && [[ -n $install ]]; then
  echo "run.sh: installing ${pip_missing[*]} into $venv (pip)" >&2
  { [[ -x $venv/bin/python ]] || python3 -m venv "$venv"; } \
    && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pip_missing[@]}" >&2 \
    || echo "run.sh: pip install failed" >&2
  [[ -z $check_jsonschema && -x $venv/bin/check-jsonschema ]] && check_jsonschema=$venv/bin/check-jsonschema
  [[ -z $prefect_python ]] && "$venv/bin/python" -c 'import prefect' 2>/dev/null && prefect_python=$venv/bin/python
fi
[[ -z $check_jsonschema ]] && echo "run.sh: check-jsonschema: peer not available" >&2

args=(--binary "$binary" --floor "$target/bench/floor" --fill-store "$fill_store" "${quick[@]}")
[[ -n $check_jsonschema ]] && args+=(--check-jsonschema "$check_jsonschema")
[[ -n $hyperfine ]] && args+=(--hyperfine "$hyperfine")
[[ -n $wrk ]] && args+=(--wrk "$wrk")
[[ -n $cron ]] && args+=(--cron "$cron")
[[ -n $prefect_python ]] && args+=(--prefect-python "$prefect_python")

# The harness cleans up after itself on SIGINT/SIGTERM; forward them and wait for it.
python3 benches/harness.py "${args[@]}" "${harness_args[@]}" &
harness=$!
trap 'kill -TERM $harness 2>/dev/null; wait $harness' INT TERM
wait $harness
