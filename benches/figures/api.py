"""`/api/runs` under wrk with a million runs stored, beside `/healthz`; the dashboard's pages."""

import os
import re
import sqlite3
import subprocess
import time

from .common import Daemon, base_env, get, make_repo, pct, yes_no


def wrk(args, url):
    out = subprocess.run([args.wrk, "-t2", "-c16", f"-d{args.wrk_seconds}s", "--latency", url], check=True,
                         capture_output=True, text=True, env=base_env()).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk {url}: {errors.group(1)} non-2xx answers")
    return rps, p99


def one_client(args, url):
    """Requests/s and p99 (ms) of one client asking `url` in a loop (when wrk is missing)."""
    times, end = [], time.time() + args.wrk_seconds
    while time.time() < end:
        t = time.perf_counter()
        if get(url)[0] != 200:
            raise RuntimeError(f"GET {url} failed")
        times.append(time.perf_counter() - t)
    return len(times) / sum(times), pct(times, 99) * 1000


def api(args, tmp, rows):
    n = args.store_runs
    work = os.path.join(tmp, "api")
    repo = os.path.join(work, "repo")
    make_repo(repo, {"deployments/idle.yaml": "deployments:\n  - name: idle\n    entrypoint: idle.py:main\n",
                     "idle.py": "def main():\n    pass\n"})
    state = os.path.join(work, "state")
    os.makedirs(state)
    t0 = time.time()
    subprocess.run([args.fill_store, os.path.join(state, "state.db"), str(n)], check=True, capture_output=True)
    fill_s = time.time() - t0
    # Retention would prune the seeded history (a run per minute for N minutes).
    daemon = Daemon(args, repo, state, extra=["--keep-runs", "100000000", "--keep-days", "100000"])
    daemon.wait_ready()
    runs_url = daemon.url + "/api/runs?limit=50"
    if len(daemon.json("/api/runs?limit=50")) != 50:
        raise RuntimeError("GET /api/runs?limit=50 did not answer 50 runs")
    page_ms = []
    for _ in range(5 if args.quick else 30):
        t = time.perf_counter()
        status, body = get(daemon.url + "/")
        page_ms.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise RuntimeError(f"GET / answered {status}")
    run_id = daemon.json("/api/runs?limit=1")[0]["id"]
    run_page_ms = []
    for _ in range(5 if args.quick else 30):
        t = time.perf_counter()
        status, _ = get(f"{daemon.url}/runs/{run_id}")
        run_page_ms.append((time.perf_counter() - t) * 1000)
    if args.wrk:
        rps, p99 = wrk(args, runs_url)
        base_rps, base_p99 = wrk(args, daemon.url + "/healthz")
        how = f"wrk -t2 -c16 -d{args.wrk_seconds}s"
    else:
        rps, p99 = one_client(args, runs_url)
        base_rps, base_p99 = one_client(args, daemon.url + "/healthz")
        how = f"wrk: peer not available; one Python client for {args.wrk_seconds} s"
    daemon.stop()
    con = sqlite3.connect(f"file:{os.path.join(state, 'state.db')}?mode=ro", uri=True)
    stored = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    con.close()
    if stored < n:
        raise RuntimeError(f"only {stored} of the {n} seeded runs were left in the store")
    rows["api"].figure = f"`/api/runs?limit=50` with {stored:,} runs stored ({how}; seeded in {fill_s:.0f} s)"
    rows["api"].set(f"{rps:,.0f} req/s, p99 {p99:.2f} ms", f"GET /healthz, same server: {base_rps:,.0f} req/s, p99 {base_p99:.2f} ms",
                    f"{rps / base_rps:.2f}", yes_no(rps >= 10000 and p99 <= 5))
    rows["dashboard"].figure = f"dashboard page (`/`, and `/runs/ID`) with {stored:,} runs, one client"
    rows["dashboard"].set(f"p50 {pct(page_ms, 50):.1f}, max {max(page_ms):.1f} ms; run page p50 {pct(run_page_ms, 50):.1f} ms",
                          None, None, yes_no(max(page_ms) <= 20 and max(run_page_ms) <= 20))
