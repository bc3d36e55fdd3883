"""Commit → applied: from `git commit` returning to /api/status showing the commit."""

import os
import time

from .common import Daemon, commit_applied, deployment, make_repo, pct, write_files, yes_no


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
        committing, applying = commit_applied(repo, daemon, str(i))
        gits.append(committing)
        late.append(applying)
        time.sleep(0.05)
    daemon.stop()
    rows["commit"].figure += f" [{len(late)} commits]"
    rows["commit"].set(f"p50 {pct(late, 50):.1f}, p99 {pct(late, 99):.1f} ms",
                       f"`git commit` itself: p50 {pct(gits, 50):.1f} ms",
                       f"{pct(late, 50) / pct(gits, 50):.1f}", yes_no(pct(late, 50) <= 20 and pct(late, 99) <= 50))
