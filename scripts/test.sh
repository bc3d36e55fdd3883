#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need when it is
# missing (Python tools from PyPI into venvs under target/; git, systemd-analyze,
# chromium and PostgreSQL from apt), starts a private PostgreSQL for the run, then checks
# formatting and lints and runs every test.
# `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools from Debian's packages: installed when run as root (as CI is), else named
# with the command that installs them.
need_deb() { # COMMAND PACKAGE
  command -v "$1" >/dev/null && return
  install_deb "$1" "$2"
}
install_deb() { # WHAT PACKAGE
  if [[ $(id -u) -ne 0 ]]; then
    echo "the tests need \`$1\`: run \`sudo apt-get install -y $2\`, then this script again" >&2
    exit 1
  fi
  apt-get update -qq && apt-get install -y -qq "$2"
}
# Debian's python3 makes virtual environments only with python3-venv.
python3 -c 'import venv, ensurepip' 2>/dev/null || install_deb "python3 -m venv" python3-venv
# Python tools in a venv under target/ (never the system Python): pre-commit and
# check-jsonschema for the validate tests, croniter for the cron cross-check. Its bin/
# comes first on PATH, so `python3` in the tests is that venv's (a stock Python).
tools=target/tools-venv
if ! "$tools/bin/python" -c 'import croniter' 2>/dev/null \
  || [[ ! -x "$tools/bin/pre-commit" || ! -x "$tools/bin/check-jsonschema" ]]; then
  echo "installing pre-commit, check-jsonschema and croniter into $tools from PyPI" >&2
  mkdir -p target
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
    pre-commit check-jsonschema croniter
fi
export PATH="$PWD/$tools/bin:$PATH"
need_deb git git
# systemd-analyze checks systemd/sundial.service (verify, security); no running systemd needed.
need_deb systemd-analyze systemd
# The dashboard test loads the page in real headless Chromium (Debian's package).
need_deb chromium chromium
# The clock-step test moves the daemon's wall clock with libfaketime (Debian's package).
[[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]] || install_deb libfaketime libfaketime
# The PostgreSQL store's tests run against a private cluster of Debian's PostgreSQL, started
# here for the whole run (scripts/pg-cluster.sh) and stopped when this script exits.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  # Debian's package would otherwise create and start a "main" cluster on port 5432.
  if [[ $(id -u) -eq 0 ]]; then
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/sundial-tests.conf
  fi
  install_deb "PostgreSQL's initdb" postgresql
fi
# The test server speaks TLS with a CA of its own, made by openssl (the sslmode tests).
need_deb openssl openssl
# A real Prefect in its own venv, for the test that runs a Prefect @flow under sundial.
# (fastapi is held below 0.116: newer ones break Prefect 3.8's temporary server.)
prefect_python=target/prefect-venv/bin/python
if ! "$prefect_python" -c 'import prefect' 2>/dev/null; then
  echo "installing prefect into target/prefect-venv from PyPI" >&2
  mkdir -p target
  python3 -m venv target/prefect-venv
  "$prefect_python" -m pip install --quiet --disable-pip-version-check prefect 'fastapi<0.116'
fi
# schemathesis in its own venv (pinned: a newer one may add checks), for the test that
# fuzzes the live daemon's API from its OpenAPI document (tests/schemathesis.rs).
schemathesis_version=4.32.5
schemathesis=target/schemathesis-venv/bin/schemathesis
if ! "$schemathesis" --version 2>/dev/null | grep -qF "$schemathesis_version"; then
  echo "installing schemathesis $schemathesis_version into target/schemathesis-venv from PyPI" >&2
  mkdir -p target
  python3 -m venv target/schemathesis-venv
  target/schemathesis-venv/bin/python -m pip install --quiet --disable-pip-version-check \
    "schemathesis==$schemathesis_version"
fi

pg_cluster=$(scripts/pg-cluster.sh start)
eval "$pg_cluster"
trap 'scripts/pg-cluster.sh stop "$PG_CLUSTER_DIR"' EXIT

cargo fmt --check
cargo clippy --locked --all-targets --quiet -- -D warnings
cargo test --locked
