#!/usr/bin/env python3
"""Chaos soak: the real daemon under commits and SIGKILLs, then an audit of what it did.

About twenty deployments (1 s and 2 s intervals, an every-minute cron, some failing once
and retried, some behind a concurrency limit) run under `sundial daemon` while this
script commits every few seconds and SIGKILLs the daemon at random moments, restarting
it after a random pause. At the end it stops the daemon with SIGTERM and checks, from the
children's own records and the store:

- doubles: no (deployment, slot, attempt) started twice;
- lost: every slot of every schedule, from its first row to its last, has a row (a run,
  or Skipped with its reason);
- the records and the store agree (every started process has its run row);
- `PRAGMA integrity_check` is ok;
- orphans: no process carrying this state directory's run mark is left.

It prints one line of figures and exits 1 if any check fails. Standard library only.

    python3 scripts/chaos.py --duration 600 [--binary target/release/sundial] [--seed N]
"""

import argparse
import collections
import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(repo, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="chaos", GIT_AUTHOR_EMAIL="chaos@sundial.invalid",
               GIT_COMMITTER_NAME="chaos", GIT_COMMITTER_EMAIL="chaos@sundial.invalid",
               GIT_CONFIG_NOSYSTEM="1", HOME=repo)
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def deployments(records, generation):
    """The manifest: (name, schedule, command, extra keys). `generation` changes an env
    value of each, so every commit changes every deployment without changing a schedule."""
    record = f'echo "$SUNDIAL_DEPLOYMENT $SUNDIAL_SCHEDULED_FOR $SUNDIAL_ATTEMPT $SUNDIAL_RUN_ID $$" >> {records}'
    items = []
    for i in range(8):
        items.append((f"every1-{i}", "interval: 1", f"sh -c '{record}'", ""))
    for i in range(5):
        items.append((f"every2-{i}", "interval: 2", f"sh -c '{record}; sleep 0.5'", ""))
    items.append(("minutely", 'cron: "* * * * *"', f"sh -c '{record}'", ""))
    for i in range(3):
        # Fails on its first attempt, succeeds on the retry.
        items.append((f"flaky-{i}", "interval: 2",
                      f"sh -c '{record}; test \"$SUNDIAL_ATTEMPT\" != 1'",
                      "    retries: 2\n    retry_delay_seconds: 1\n"))
    for i in range(3):
        items.append((f"limited-{i}", "interval: 1", f"sh -c '{record}; sleep 1.5'",
                      "    concurrency_limit: 1\n"))
    text = "deployments:\n"
    for name, schedule, command, extra in items:
        text += (f"  - name: {name}\n    work_pool:\n      job_variables:\n"
                 f"        command: {command}\n        env: {{GENERATION: \"{generation}\"}}\n"
                 f"    schedules:\n      - {schedule}\n        slug: main\n{extra}")
    return text, [name for name, *_ in items]


class Daemon:
    def __init__(self, binary, repo, state, log):
        self.binary, self.repo, self.state, self.log = binary, repo, state, log
        self.proc = None

    def start(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SUNDIAL_") and k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [self.binary, "daemon", "--repo", self.repo, "--state-dir", self.state,
                 "--listen", "127.0.0.1:0", "--poll-interval", "1", "--grace", "2"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def ready(self, within=30.0):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                with open(os.path.join(self.state, "url")) as f:
                    url = f.read().strip()
                with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        return False


def parse_time(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def marked_processes(instance):
    """Live processes carrying this state directory's run mark."""
    found = []
    needle = f"SUNDIAL_RUN_MARK={instance}.".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and any(v.startswith(needle) for v in environ.split(b"\0")):
            found.append(int(pid))
    return found


def audit(state, records, names, schedules):
    problems = []
    db = sqlite3.connect(os.path.join(state, "state.db"))
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    rows = db.execute(
        "SELECT id, deployment, schedule_id, scheduled_for, trigger, state, reason, attempt FROM runs"
    ).fetchall()
    by_id = {r[0]: r for r in rows}
    # Pending rows wait in their queue across a stop; nothing may be left Running.
    unfinished = [r for r in rows if r[5] in ("Scheduled", "Running")]
    if unfinished:
        problems.append(f"{len(unfinished)} rows unfinished after the stop: {unfinished[:3]}")

    # Doubles and agreement, from the children's own records.
    started = collections.Counter()
    unknown = []
    with open(records) as f:
        lines = [line.split() for line in f if line.strip()]
    for deployment, slot, attempt, run_id, _pid in lines:
        started[(deployment, parse_time(slot), int(attempt))] += 1
        row = by_id.get(int(run_id))
        if row is None or row[1] != deployment or int(row[7]) != int(attempt) \
                or parse_time(row[3]) != parse_time(slot):
            unknown.append((deployment, slot, attempt, run_id, row))
    doubles = [k for k, n in started.items() if n > 1]
    if doubles:
        problems.append(f"{len(doubles)} slots started twice: {doubles[:5]}")
    if unknown:
        problems.append(f"{len(unknown)} processes without their run row: {unknown[:3]}")

    # Lost: every slot from a schedule's first row to its last has a row.
    lost = 0
    slots_total = 0
    for name in names:
        step = schedules[name]
        slots = sorted({parse_time(r[3]) for r in rows if r[1] == name and r[3] and r[7] == 1
                        and not (r[6] or "").startswith("missed: ")})
        if not slots:
            problems.append(f"{name}: no rows at all")
            continue
        expected = int((slots[-1] - slots[0]).total_seconds() // step) + 1
        slots_total += expected
        missing = expected - len(slots)
        if missing:
            lost += missing
            have = set(slots)
            gaps = [slots[0] + dt.timedelta(seconds=i * step) for i in range(expected)]
            gaps = [g for g in gaps if g not in have]
            problems.append(f"{name}: {missing} slots without a row, first {gaps[:3]}")
    return problems, len(lines), slots_total, len(doubles), lost


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of chaos")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/debug/sundial"))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    work = tempfile.mkdtemp(prefix="sundial-chaos-")
    repo, state = os.path.join(work, "repo"), os.path.join(work, "state")
    records, log = os.path.join(work, "records.txt"), os.path.join(work, "daemon.log")
    os.makedirs(os.path.join(repo, "deployments"))
    open(records, "w").close()
    git(repo, "init", "-q", "-b", "main")
    generation = 0

    def commit():
        nonlocal generation
        generation += 1
        text, names = deployments(records, generation)
        with open(os.path.join(repo, "deployments", "chaos.yaml"), "w") as f:
            f.write(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"generation {generation}")
        return names

    names = commit()
    schedules = {n: (60 if n == "minutely" else 2 if n.startswith(("every2", "flaky")) else 1)
                 for n in names}
    daemon = Daemon(os.path.abspath(args.binary), repo, state, log)
    daemon.start()
    if not daemon.ready():
        sys.exit(f"the daemon did not become ready; see {log}")
    kills = commits = 0
    end = time.monotonic() + args.duration
    next_commit = time.monotonic() + rng.uniform(1, 4)
    next_kill = time.monotonic() + rng.uniform(2, 10)
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_commit:
            commit()
            commits += 1
            next_commit = now + rng.uniform(1, 4)
        if now >= next_kill:
            daemon.kill()
            kills += 1
            time.sleep(rng.uniform(0, 3))
            daemon.start()
            if not daemon.ready():
                sys.exit(f"the daemon did not become ready after kill {kills}; see {log}")
            next_kill = time.monotonic() + rng.uniform(2, 10)
        time.sleep(0.05)
    code = daemon.terminate()
    with open(os.path.join(state, "instance")) as f:
        instance = f.read().strip()
    orphans = marked_processes(instance)
    problems, started, slots, doubles, lost = audit(state, records, names, schedules)
    if code != 0:
        problems.append(f"the final SIGTERM ended with {code}")
    if orphans:
        problems.append(f"orphaned processes: {orphans}")
    print(json.dumps({"seed": seed, "seconds": args.duration, "kills": kills, "commits": commits,
                      "slots": slots, "processes": started, "doubles": doubles, "lost": lost,
                      "orphans": len(orphans), "ok": not problems}))
    for p in problems:
        print("problem:", p)
    if problems:
        print(f"work directory kept: {work}")
        sys.exit(1)
    if args.keep:
        print(f"work directory kept: {work}")
    else:
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
