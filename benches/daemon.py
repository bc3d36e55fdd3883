#!/usr/bin/env python3
"""Daemon figures: start lateness, commit -> applied latency, idle RSS and CPU.

    benches/daemon.py [--runs 300] [--commits 30]

Builds the release binary, then on a temporary git repository:
- start lateness: a deployment every 0.1 s whose command is `date +%s.%N`, so the child
  itself prints when it started; lateness = that time - scheduled_for (p50, p99, max);
- commit -> applied: commits that each change a manifest; the time from starting `git commit`
  to /api/status showing that commit (polled every 2 ms; p50, p99);
- idle RSS and CPU of the daemon running this repository's own deployments/.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

from figures.common import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "sundial")
ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@sundial.invalid",
           GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@sundial.invalid")


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True, text=True).stdout.strip()




def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def start(repo, state, port):
    proc = subprocess.Popen([BIN, "daemon", "--repo", repo, "--state-dir", state, "--listen", f"127.0.0.1:{port}",
                             "--poll-interval", "30"], stdout=subprocess.DEVNULL, stderr=open(os.path.join(state, "daemon.log"), "w"),
                            start_new_session=True)
    deadline = time.time() + 30
    while get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
        if time.time() > deadline:
            sys.exit("the daemon did not become ready")
        time.sleep(0.02)
    return proc


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def lateness(runs_wanted):
    with tempfile.TemporaryDirectory() as tmp:
        repo, state = os.path.join(tmp, "repo"), os.path.join(tmp, "state")
        os.makedirs(os.path.join(repo, "deployments"))
        os.makedirs(state)
        git(repo, "init", "-q", "-b", "main")
        with open(os.path.join(repo, "deployments", "clock.yaml"), "w") as f:
            f.write("deployments:\n  - name: clock\n    work_pool:\n      job_variables:\n        command: date +%s.%N\n"
                    "    schedules:\n      - interval: 0.1\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "clock")
        port = free_port()
        proc = start(repo, state, port)
        deadline = time.time() + runs_wanted * 0.1 + 60
        while True:
            _, body = get(f"http://127.0.0.1:{port}/api/runs?deployment=clock&state=Completed&limit=1000")
            done = json.loads(body or "[]")
            if len(done) >= runs_wanted or time.time() > deadline:
                break
            time.sleep(0.5)
        stop(proc)
        late, spawned = [], []
        for run in done:
            with open(os.path.join(state, "logs", f"{run['id']}.log")) as f:
                printed = [l for l in f.read().splitlines() if l and not l.startswith("#")]
            started = float(printed[-1])
            scheduled = datetime.fromisoformat(run["scheduled_for"].replace("Z", "+00:00")).timestamp()
            late.append((started - scheduled) * 1000)
            spawn = datetime.fromisoformat(run["started_at"].replace("Z", "+00:00")).timestamp()
            spawned.append((spawn - scheduled) * 1000)
        print(f"start lateness over {len(late)} runs (child-measured, ms): p50 {pct(late, 50):.2f}  p99 {pct(late, 99):.2f}  max {max(late):.2f}")
        print(f"  of which spawn returned (daemon-measured, ms): p50 {pct(spawned, 50):.2f}  p99 {pct(spawned, 99):.2f}")


def commit_latency(commits):
    with tempfile.TemporaryDirectory() as tmp:
        repo, state = os.path.join(tmp, "repo"), os.path.join(tmp, "state")
        os.makedirs(os.path.join(repo, "deployments"))
        os.makedirs(os.path.join(repo, "flows"))
        os.makedirs(state)
        git(repo, "init", "-q", "-b", "main")
        # The entrypoint the manifest names (validate checks that it defines `run`).
        with open(os.path.join(repo, "flows", "job.py"), "w") as f:
            f.write("def run(n=0):\n    pass\n")
        manifest = os.path.join(repo, "deployments", "job.yaml")

        def write(i):
            with open(manifest, "w") as f:
                f.write(f"deployments:\n  - name: job\n    entrypoint: flows/job.py:run\n    parameters: {{n: {i}}}\n"
                        "    schedules:\n      - cron: \"0 9 * * *\"\n        timezone: America/Chicago\n")
        write(0)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "0")
        port = free_port()
        proc = start(repo, state, port)
        latencies = []
        for i in range(1, commits + 1):
            write(i)
            git(repo, "add", "-A")
            t0 = time.perf_counter()  # before `git commit`: includes git's own time, so an upper bound
            git(repo, "commit", "-q", "-m", str(i))
            sha = git(repo, "rev-parse", "HEAD")
            while json.loads(get(f"http://127.0.0.1:{port}/api/status")[1] or "{}").get("commit") != sha:
                time.sleep(0.002)
            latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.05)
        stop(proc)
        print(f"commit -> applied over {len(latencies)} commits (ms): p50 {pct(latencies, 50):.1f}  p99 {pct(latencies, 99):.1f}")


def idle():
    with tempfile.TemporaryDirectory() as state:
        port = free_port()
        proc = start(ROOT, state, port)
        time.sleep(2)

        def cpu():
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu(), time.time()
        time.sleep(10)
        c1, t1 = cpu(), time.time()
        with open(f"/proc/{proc.pid}/status") as f:
            rss = next(l for l in f if l.startswith("VmRSS")).split()[1]
        _, body = get(f"http://127.0.0.1:{port}/api/deployments")
        stop(proc)
        print(f"idle with this repository's {len(json.loads(body))} example deployments: RSS {int(rss) / 1024:.1f} MiB, "
              f"CPU {100 * (c1 - c0) / (t1 - t0):.2f} % over {t1 - t0:.0f} s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--commits", type=int, default=30)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    lateness(args.runs)
    commit_latency(args.commits)
    idle()


if __name__ == "__main__":
    main()
