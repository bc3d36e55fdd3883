#!/usr/bin/env python3
"""Every figure of issue #19 beside its peer, in one run, as one table (run by benches/run.sh).

    python3 benches/harness.py --binary B --floor F --fill-store X [--quick] [peer paths...]

Each figure runs the release daemon on a temporary git repository and its peer on the same
machine in the same run, then the table prints: figure | sundial | peer | ratio | target | met?
(ratio = sundial / peer). A figure that fails prints its error in its row and the run goes on;
the exit status is 1 when any sundial figure produced no number. Nothing here asserts a time:
`met?` is reported, never enforced.

Every process started here carries SUNDIAL_BENCH_MARK in its environment (inherited by what
it starts: sundial's runs, Prefect's flow processes); the cleanup kills each process group it
started, then anything still carrying the mark, and removes the temporary directory, also on
Ctrl-C or SIGTERM.

Each figure is a module of benches/figures/ (what they share is figures/common.py); this file
holds the table, its rows and the order the figures run in.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

from figures.api import api
from figures.burst import burst
from figures.commits import commits
from figures.common import PROCS, Row
from figures.idle import idle
from figures.lateness import lateness_phase, prefect_peer
from figures.validate import validate


def make_rows():
    rows = {}
    for key, figure, target in [
        ("lateness-quiet", "start lateness, native command, 1-second schedule (child stamps its start)", "p99 ≤ floor p99"),
        ("lateness-loaded", "the same, both cores kept busy", "p99 ≤ floor p99 + 0.5 ms"),
        ("python", "start lateness of a Python entrypoint (function entered), 1-second schedule", "p99 ≤ 5 ms (needs `prestart_seconds`)"),
        ("python-early", "the same with `prestart_seconds: 0.4` (interpreter started and module imported ahead)", "p99 ≤ 5 ms"),
        ("burst", "deployments due at one minute boundary: last child started", "≤ 1.0× the serial floor"),
        ("apply", "start → ready: first commit applied", "≤ 1 s"),
        ("rss", "RSS with the deployments loaded", "≤ 40 MiB, back down after"),
        ("commit", "commit → applied (`/api/status` shows the sha)", "p50 ≤ 20 ms, p99 ≤ 50 ms"),
        ("edit", "a one-line change in a large repository → applied", "≤ 50 ms"),
        ("idle", "idle RSS / CPU with the example deployments", "≤ 10 MiB"),
        ("validate", "`sundial validate`", "≤ 50 ms and ≥ 50×"),
        ("api", "`/api/runs?limit=50`", "≥ 10,000 req/s, p99 ≤ 5 ms"),
        ("dashboard", "dashboard page", "≤ 20 ms a page"),
    ]:
        rows[key] = Row(figure, target)
    return rows


def print_table(rows, quick):
    header = ["figure", "sundial", "peer", "ratio", "target", "met?"]
    lines = []
    for row in rows.values():
        peer = "; ".join(p for p in (row.floor, row.peer) if p) or "—"
        lines.append([row.figure, row.sundial or "not measured", peer, row.ratio or "—", row.target,
                      "(not asserted)" if quick and row.ok else row.met or "—"])
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for line in lines:
        print("| " + " | ".join(c.replace("|", "/") for c in line) + " |")
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--floor", required=True)
    p.add_argument("--fill-store", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--check-jsonschema")
    p.add_argument("--hyperfine")
    p.add_argument("--wrk")
    p.add_argument("--cron")
    p.add_argument("--prefect-python")
    p.add_argument("--only", help="comma-separated: lateness,burst,commits,idle,validate,api,prefect")
    p.add_argument("--runs", type=int, help="lateness runs per phase (300; quick 10)")
    p.add_argument("--deployments", type=int, help="deployments of the burst (10000; quick 200)")
    p.add_argument("--store-runs", type=int, help="runs seeded for the API (1000000; quick 10000)")
    args = p.parse_args()
    q = args.quick
    args.runs = args.runs or (10 if q else 300)
    args.deployments = args.deployments or (200 if q else 10000)
    args.store_runs = args.store_runs or (10000 if q else 1000000)
    args.edits = 3 if q else 10
    args.commits = 5 if q else 30
    args.idle_seconds = 2 if q else 10
    args.validate_deployments = 50 if q else 1000
    args.wrk_seconds = 2 if q else 10
    args.prefect_interval, args.prefect_runs, args.prefect_budget = 5, 30, 300
    args.python = os.path.realpath(sys.executable)
    only = set((args.only or "lateness,burst,commits,idle,validate,api,prefect").split(","))

    tmp = tempfile.mkdtemp(prefix="sundial-bench-")
    rows = make_rows()

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    steps = [
        ("lateness", "start lateness, quiet", lambda: lateness_phase(args, tmp, "quiet", False, rows)),
        ("lateness", "start lateness, loaded", lambda: lateness_phase(args, tmp, "loaded", True, rows)),
        ("prefect", "Prefect 3 peer", lambda: prefect_peer(args, tmp, rows)),
        ("burst", f"{args.deployments} deployments", lambda: burst(args, tmp, rows)),
        ("commits", "commit → applied", lambda: commits(args, tmp, rows)),
        ("validate", "validate", lambda: validate(args, tmp, rows)),
        ("api", "API and dashboard", lambda: api(args, tmp, rows)),
        ("idle", "idle", lambda: idle(args, tmp, rows)),
    ]
    failed = []
    try:
        for key, what, step in steps:
            if key not in only:
                continue
            t0 = time.time()
            print(f"bench: {what} ...", file=sys.stderr, flush=True)
            try:
                step()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # noqa: BLE001 - one figure's failure is reported in the table
                failed.append(what)
                print(f"bench: {what} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                for row in rows.values():
                    if not row.ok and row.sundial is None and key in ROW_STEPS.get(row_key(rows, row), ()):
                        row.sundial = f"error: {e}"[:120]
            print(f"bench: {what} took {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        PROCS.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.only:
        rows = {k: r for k, r in rows.items() if only.intersection(ROW_STEPS[k])}
    print_table(rows, q)
    missing = [r.figure for r in rows.values() if not r.ok]
    if missing:
        print("no number for: " + "; ".join(missing), file=sys.stderr)
    return 1 if missing or failed else 0


ROW_STEPS = {"lateness-quiet": ("lateness",), "lateness-loaded": ("lateness",), "python": ("lateness", "prefect"),
             "python-early": ("lateness",),
             "burst": ("burst",), "apply": ("burst",), "rss": ("burst",), "edit": ("burst",),
             "commit": ("commits",), "idle": ("idle",), "validate": ("validate",), "api": ("api",),
             "dashboard": ("api",)}


def row_key(rows, row):
    return next(k for k, r in rows.items() if r is row)


if __name__ == "__main__":
    sys.exit(main())
