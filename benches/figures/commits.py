"""Commit → applied: from `git commit` returning to /api/status showing the commit."""

import os
import time

from .common import Daemon, deployment, git, make_repo, pct, wait_for, write_files, yes_no


def commits(args, tmp, rows):
    """Commit → applied on a one-deployment repository: from `git commit` returning to
    /api/status showing the commit (polled every 2 ms)."""
    repo = os.path.join(tmp, "commits", "repo")

    def manifest(i):
        return {"deployments/job.yaml": "deployments:\n" + deployment(
            "job", entrypoint="flows/job.py:run", schedule='cron: "0 9 * * *"\n        timezone: America/Chicago',
            extra=f"    parameters: {{n: {i}}}\n"), "flows/job.py": "def run(n):\n    pass\n"}
    make_repo(repo, manifest(0))
    daemon = Daemon(args, repo, os.path.join(tmp, "commits", "state"))
    daemon.wait_ready()
    late, gits = [], []
    for i in range(1, args.commits + 1):
        write_files(repo, manifest(i))
        git(repo, "add", "-A")
        t0 = time.perf_counter()
        git(repo, "commit", "-q", "-m", str(i))
        t1 = time.perf_counter()
        sha = git(repo, "rev-parse", "HEAD")
        wait_for("the commit to be applied", 60, lambda: daemon.json("/api/status").get("commit") == sha, every=0.002)
        late.append((time.perf_counter() - t1) * 1000)
        gits.append((t1 - t0) * 1000)
        time.sleep(0.05)
    daemon.stop()
    rows["commit"].figure += f" [{len(late)} commits]"
    rows["commit"].set(f"p50 {pct(late, 50):.1f}, p99 {pct(late, 99):.1f} ms",
                       f"`git commit` itself: p50 {pct(gits, 50):.1f} ms",
                       f"{pct(late, 50) / pct(gits, 50):.1f}", yes_no(pct(late, 50) <= 20 and pct(late, 99) <= 50))
