"""N deployments due at one instant: the first commit's apply, RSS, a one-line change, and
the last child's start beside the floor's serial posix_spawn of the same children."""

import os
import re
import time

from .common import (
    CoresBusy, Daemon, PROCS, commit_applied, deployment, get, iso, make_repo, pct, read_stamps,
    sleep_until, stamped, wait_for, yes_no,
)


def burst(args, tmp, rows):
    """N deployments due at one instant (a minute boundary in the full run): the first commit's
    apply, RSS before and after, a one-line change, and the last child's start."""
    n, per_file = args.deployments, 100
    work = os.path.join(tmp, "burst")
    stamps, floor_stamps = os.path.join(work, "stamps.txt"), os.path.join(work, "floor.txt")
    now = time.time()
    if args.quick:
        at = int(now) + 12
    else:
        at = (int(now + 60) // 60 + 1) * 60  # the minute boundary at least 60 s ahead
    # An hourly interval anchored at that boundary: due there, and not again during the bench.
    schedule = f'interval: 3600\n        anchor_date: "{iso(at)}"'
    files = {}
    for f in range(0, n, per_file):
        files[f"deployments/batch-{f // per_file:04d}.yaml"] = "deployments:\n" + "".join(
            deployment(f"job-{i}", command=f"{args.floor} stamp {stamps}", schedule=schedule,
                       extra=f"    description: deployment {i}\n")
            for i in range(f, min(n, f + per_file)))
    repo = os.path.join(work, "repo")
    make_repo(repo, files)
    daemon = Daemon(args, repo, os.path.join(work, "state"))
    ready = daemon.wait_ready()
    apply_s = ready - daemon.started
    rows["apply"].set(f"{apply_s * 1000:.0f} ms", None, None, yes_no(apply_s <= 1.0))
    rows["apply"].figure = f"start → ready: first commit of {n:,} deployments applied"
    time.sleep(1)
    rss_loaded = daemon.rss_mib()

    # One-line changes (a description) while nothing runs, before the burst.
    late_ms, git_ms = [], []
    for k in range(args.edits):
        if time.time() > at - 5:
            break
        path = os.path.join(repo, "deployments/batch-0000.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"description: deployment 0( edit \d+)?\n", f"description: deployment 0 edit {k}\n", text, 1))
        committing, applying = commit_applied(repo, daemon, f"edit {k}")
        git_ms.append(committing)
        late_ms.append(applying)
        time.sleep(0.2)
    if late_ms:
        rows["edit"].set(f"p50 {pct(late_ms, 50):.0f}, max {max(late_ms):.0f} ms ({len(late_ms)} commits)",
                         f"`git commit` itself: p50 {pct(git_ms, 50):.0f} ms",
                         f"{pct(late_ms, 50) / pct(git_ms, 50):.1f}", yes_no(pct(late_ms, 50) <= 50))
    else:
        rows["edit"].sundial = "no time left before the burst"
    rows["edit"].figure = f"a one-line change in a repository of {n:,} deployments → applied"

    # The burst.
    if time.time() > at - 1:
        raise RuntimeError(f"the daemon was ready only {time.time() - at:.1f} s after the boundary")
    sleep_until(at)
    cores, own = CoresBusy(), daemon.cpu_seconds()
    wait_for(f"{n} children", 600 + n * 0.05, lambda: daemon.alive() and stamped(stamps) >= n, every=0.05)
    busy, own = cores.busy(), daemon.cpu_seconds() - own
    last = max(s for s, _ in read_stamps(stamps)) - at
    rss_peak = daemon.rss_mib()

    def settled():
        status, body = get(daemon.url + "/metrics")
        m = re.search(r"^sundial_running_processes (\d+)", body, re.M)
        return status == 200 and m and int(m.group(1)) == 0
    wait_for("every run of the burst to end", 300 + n * 0.05, settled, every=0.5)
    time.sleep(1 if args.quick else 5)
    rss_after = daemon.rss_mib()
    daemon.stop()

    # The floor: the same children, spawned one after the other from one instant.
    floor_at = int(time.time()) + 2
    floor_proc = PROCS.start([args.floor, "burst", str(n), str(floor_at), floor_stamps])
    sleep_until(floor_at)
    cores = CoresBusy()
    wait_for(f"the floor's {n} children", 600 + n * 0.05, lambda: stamped(floor_stamps) >= n, every=0.05)
    floor_busy = cores.busy()
    floor_proc.wait(timeout=60)
    floor_last = max(s for s, _ in read_stamps(floor_stamps)) - floor_at
    rows["burst"].figure = f"{n:,} deployments due at one {'instant' if args.quick else 'minute boundary'}: last child started"
    rows["burst"].set(f"{last:.2f} s after (cores {busy:.0%} busy; the daemon's own CPU {own:.2f} s)",
                      f"floor, serial posix_spawn: {floor_last:.2f} s (cores {floor_busy:.0%} busy)",
                      f"{last / floor_last:.2f}", yes_no(last <= floor_last))
    rows["rss"].figure = f"RSS with {n:,} deployments loaded"
    rows["rss"].set(f"{rss_loaded:.1f} MiB; {rss_peak:.1f} at the last start; {rss_after:.1f} after the burst",
                    None, None, yes_no(rss_loaded <= 40 and rss_after <= rss_loaded * 1.1))
