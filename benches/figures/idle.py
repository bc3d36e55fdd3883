"""Idle RSS and CPU of the daemon on this repository's deployments, beside Debian's cron
(and Prefect's server and worker, measured by the Prefect peer)."""

import os
import subprocess
import time

from .common import Daemon, PROCS, ROOT, rss_kib, yes_no


def idle(args, tmp, rows):
    """The daemon on this repository's own deployments/, idle; Debian's cron beside it."""
    daemon = Daemon(args, ROOT, os.path.join(tmp, "idle-state"))
    daemon.wait_ready()
    time.sleep(2)
    c0, t0 = daemon.cpu_seconds(), time.time()
    time.sleep(args.idle_seconds)
    cpu = 100 * (daemon.cpu_seconds() - c0) / (time.time() - t0)
    rss = daemon.rss_mib()
    anon, file = (rss_kib(daemon.proc.pid, f) / 1024 for f in ("RssAnon", "RssFile"))
    count = len(daemon.json("/api/deployments"))
    daemon.stop()
    peers = []
    if args.cron:
        cron = PROCS.start([args.cron, "-f"], stderr=subprocess.PIPE)
        time.sleep(2)
        if cron.poll() is None:
            peers.append(f"Debian cron {rss_kib(cron.pid) / 1024:.1f} MiB")
            cron_rss = rss_kib(cron.pid) / 1024
        else:
            peers.append(f"cron not measured: it exited: {cron.stderr.read().decode().strip()[:80]}")
            cron_rss = None
        PROCS.stop(cron)
    else:
        peers.append("cron: peer not available")
        cron_rss = None
    if getattr(args, "prefect_rss", None):
        peers.append(f"Prefect server + worker {args.prefect_rss:.0f} MiB (while running the bench flow)")
    rows["idle"].figure = f"idle RSS / CPU with the {count} example deployments ({args.idle_seconds} s)"
    rows["idle"].set(f"{rss:.1f} MiB (own memory {anon:.1f}, binary and library pages {file:.1f}) / {cpu:.2f} %",
                     "; ".join(peers),
                     f"{rss / cron_rss:.1f} (÷ cron)" if cron_rss else None, yes_no(rss <= 10))
