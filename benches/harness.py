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
"""

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = uuid.uuid4().hex
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@sundial.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@sundial.invalid"}


def base_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SUNDIAL_") and k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    env.update(GIT_ENV)
    env["SUNDIAL_BENCH_MARK"] = MARK
    env.update(extra)
    return env


class Procs:
    """The process groups started by the harness, ended at cleanup."""

    def __init__(self):
        self.groups = []

    def start(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("env", base_env())
        proc = subprocess.Popen(argv, start_new_session=True, **kw)
        self.groups.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, grace=30):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def cleanup(self):
        for proc in reversed(self.groups):
            self.stop(proc, grace=10)
        # Whatever left its group (a daemon's run, a Prefect flow process) still has the mark.
        for _ in range(3):
            marked = [pid for pid in os.listdir("/proc") if pid.isdigit() and has_mark(pid)]
            for pid in marked:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not marked:
                break
            time.sleep(0.2)


def has_mark(pid):
    if int(pid) == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"SUNDIAL_BENCH_MARK={MARK}".encode() in f.read()
    except OSError:
        return False


PROCS = Procs()


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, env=base_env(), check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(path, files):
    os.makedirs(path)
    git(path, "init", "-q", "-b", "main")
    write_files(path, files)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "bench")
    return git(path, "rev-parse", "HEAD")


def write_files(repo, files):
    for rel, text in files.items():
        full = os.path.join(repo, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)


def get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def wait_for(what, within, cond, every=0.005):
    deadline = time.time() + within
    while True:
        value = cond()
        if value:
            return value
        if time.time() > deadline:
            raise RuntimeError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(every)


class Daemon:
    """A sundial daemon on a temporary state directory; `started` is just before exec."""

    def __init__(self, args, repo, state, extra=()):
        os.makedirs(state, exist_ok=True)
        self.state = state
        self.log = os.path.join(state, "daemon.log")
        self.started = time.time()
        self.proc = PROCS.start([args.binary, "daemon", "--repo", repo, "--state-dir", state, "--listen",
                                 "127.0.0.1:0", "--poll-interval", "30", *extra],
                                stderr=open(self.log, "w"), env=base_env(SUNDIAL_LOG="info"))

        def url():
            try:
                with open(os.path.join(state, "url")) as f:
                    text = f.read().strip()
            except OSError:
                return None
            return text if text.startswith("http://") and not text.endswith(":0") else None
        self.url = wait_for("the daemon's url file", 60, url)

    def wait_ready(self, within=300):
        wait_for("the daemon to be ready", within, lambda: self.alive() and get(self.url + "/readyz")[0] == 200)
        return time.time()

    def alive(self):
        if self.proc.poll() is not None:
            with open(self.log) as f:
                tail = f.read()[-2000:]
            raise RuntimeError(f"the daemon exited ({self.proc.returncode}): {tail}")
        return True

    def json(self, path):
        status, body = get(self.url + path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]}")
        return json.loads(body)

    def rss_mib(self):
        return rss_kib(self.proc.pid) / 1024

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        PROCS.stop(self.proc, grace=60)


def rss_kib(pid, field="VmRSS"):
    """VmRSS (all resident pages), or RssAnon (the process's own memory) or RssFile (pages of
    its binary and libraries: page cache, shared and reclaimable) from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith(field + ":")).split()[1])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_rss_mib(pgid):
    """RSS of every process whose process group or session is `pgid`."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid or int(fields[3]) == pgid:
                total += rss_kib(pid)
        except (OSError, StopIteration):
            pass
    return total / 1024


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def epoch(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamped(path):
    """How many stamp lines `path` has: cheap enough to poll while a burst runs (parsing
    them would take CPU from the burst being measured)."""
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def sleep_until(t):
    time.sleep(max(0.0, t - time.time()))


class CoresBusy:
    """The share of all cores' time spent busy (not idle, not waiting for I/O) from its
    creation to `busy()`, from /proc/stat: how much room a burst left unused."""

    def __init__(self):
        self.start = self.read()

    @staticmethod
    def read():
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]

    def busy(self):
        total, idle = self.read()
        elapsed = total - self.start[0]
        return 1 - (idle - self.start[1]) / elapsed if elapsed else 0.0


def read_stamps(path, after=None):
    """(started, scheduled_for) of each stamp line, scheduled_for after `after` if given."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[1] == "-":
            continue
        scheduled = epoch(parts[1])
        if after is None or scheduled > after:
            out.append((float(parts[0]), scheduled))
    return out


def lateness_ms(stamps):
    return [(started - scheduled) * 1000 for started, scheduled in stamps]


def deployment(name, command=None, entrypoint=None, schedule="", extra=""):
    text = f"  - name: {name}\n"
    if entrypoint:
        text += f"    entrypoint: {entrypoint}\n"
    if command:
        text += f"    work_pool:\n      job_variables:\n        command: {command}\n"
    text += f"    schedules:\n      - {schedule}\n{extra}"
    return text


# --- the figures -------------------------------------------------------------------------------

class Row:
    def __init__(self, figure, target):
        self.figure, self.target = figure, target
        self.sundial = self.peer = self.ratio = self.met = None
        self.floor = None  # a second peer, printed before `peer`
        self.ok = False

    def set(self, sundial, peer=None, ratio=None, met=None):
        self.sundial, self.peer, self.ratio, self.met = sundial, peer, ratio, met
        self.ok = True


def yes_no(cond):
    return "yes" if cond else "no"


def lateness_phase(args, tmp, name, loaded, rows):
    """Native (and, when quiet, Python) start lateness of a 1-second schedule beside the floor
    ticking at +500 ms of the same seconds, so the two never spawn at the same instant."""
    work = os.path.join(tmp, name)
    native, python, early, floor = (os.path.join(work, f)
                                    for f in ("native.txt", "python.txt", "early.txt", "floor.txt"))
    deps = deployment("native", command=f"{args.floor} stamp {native}",
                      schedule='interval: 1\n        anchor_date: "2020-01-01T00:00:00Z"')
    if not loaded:
        deps += deployment("python", entrypoint="flows/stamp.py:stamp",
                           schedule='interval: 1\n        anchor_date: "2020-01-01T00:00:00.250Z"',
                           extra=f"    parameters: {{path: {python}}}\n"
                                 f"    work_pool:\n      job_variables:\n        python: {args.python}\n")
        # The same function started 0.4 s ahead (`prestart_seconds`), due at +750 ms.
        deps += deployment("python-early", entrypoint="flows/stamp.py:stamp",
                           schedule='interval: 1\n        anchor_date: "2020-01-01T00:00:00.750Z"',
                           extra=f"    parameters: {{path: {early}}}\n"
                                 f"    work_pool:\n      job_variables:\n        python: {args.python}\n"
                                 f"        prestart_seconds: 0.4\n")
    make_repo(os.path.join(work, "repo"), {
        "deployments/clock.yaml": "deployments:\n" + deps,
        "flows/stamp.py": STAMP_PY,
    })
    spinners = []
    if loaded:
        # Two processes that never sleep: both cores busy (not pinned; the scheduler spreads them).
        spinners = [PROCS.start(["yes"]) for _ in range(2)]
    daemon = Daemon(args, os.path.join(work, "repo"), os.path.join(work, "state"))
    ready = daemon.wait_ready()
    first = ready + 1.5  # slots due before this may be a start's catch-up, not the schedule
    runs = args.runs
    floor_proc = PROCS.start([args.floor, "ticks", str(runs + 2), "500", floor])
    want_python = not loaded

    def done():
        daemon.alive()
        n = len(read_stamps(native, first))
        p = len(read_stamps(python, first)) if want_python else runs
        e = len(read_stamps(early, first)) if want_python else runs
        return n >= runs and p >= runs and e >= runs and floor_proc.poll() is not None
    wait_for(f"{runs} runs of each", runs * 3 + 120, done, every=0.5)
    daemon.stop()
    for spinner in spinners:
        PROCS.stop(spinner)
    sun = lateness_ms(read_stamps(native, first)[:runs])
    flo = lateness_ms(read_stamps(floor)[:runs])
    label = "loaded (2 spinning `yes`)" if loaded else "quiet"
    row = rows[f"lateness-{name}"]
    s99, f99 = pct(sun, 99), pct(flo, 99)
    target = f99 + (0.5 if loaded else 0)
    row.set(f"p50 {pct(sun, 50):.2f}, p99 {s99:.2f}, max {max(sun):.2f} ms",
            f"floor p50 {pct(flo, 50):.2f}, p99 {f99:.2f}, max {max(flo):.2f} ms",
            f"{s99 / f99:.2f}" if f99 > 0 else "-", yes_no(s99 <= target))
    row.figure += f" [{label}, {len(sun)} runs]"
    if want_python:
        py = lateness_ms(read_stamps(python, first)[:runs])
        rows["python"].set(f"p50 {pct(py, 50):.1f}, p99 {pct(py, 99):.1f}, max {max(py):.1f} ms", None, None,
                           yes_no(pct(py, 99) <= 5))
        # The floor of a plain Python start: the same interpreter calling the same function,
        # spawned by the floor program at +250 ms of each second (the daemon is stopped).
        direct = os.path.join(work, "direct.txt")
        flows = os.path.join(work, "repo", "flows")
        code = f"import sys; sys.path.insert(0, {flows!r}); import stamp; stamp.stamp({direct!r})"
        n_direct = min(runs, 60)
        subprocess.run([args.floor, "ticks", str(n_direct), "250", direct, "--", args.python, "-c", code],
                       check=True, timeout=n_direct * 3 + 60)
        di = lateness_ms(read_stamps(direct)[:n_direct])
        rows["python"].floor = (f"the same Python and function started by the floor: p50 {pct(di, 50):.1f}, "
                                f"p99 {pct(di, 99):.1f}, max {max(di):.1f} ms ({len(di)} runs)")
        rows["python"].ratio = f"{pct(py, 99) / pct(di, 99):.2f} (÷ floor)" if pct(di, 99) > 0 else "-"
        ea = lateness_ms(read_stamps(early, first)[:runs])
        rows["python-early"].set(f"p50 {pct(ea, 50):.2f}, p99 {pct(ea, 99):.2f}, max {max(ea):.2f} ms",
                                 f"the same without it: p99 {pct(py, 99):.1f} ms",
                                 f"{pct(ea, 99) / pct(py, 99):.3f}" if pct(py, 99) > 0 else "-",
                                 yes_no(pct(ea, 99) <= 5))


STAMP_PY = '''import os
import time


def stamp(path):
    now = time.time()
    with open(path, "a") as f:
        f.write(f"{now:.6f} {os.environ.get('SUNDIAL_SCHEDULED_FOR', '-')}\\n")
'''

PREFECT_FLOW = '''import time

from prefect import flow


@flow(log_prints=False)
def stamp(path: str):
    now = time.time()
    from prefect.runtime import flow_run

    scheduled = flow_run.scheduled_start_time
    with open(path, "a") as f:
        f.write(f"{now:.6f} {scheduled.isoformat()}\\n")
'''


# Prefect 3.7's scheduler service fails here ("Can't evaluate bulk DML statement" with the
# SQLAlchemy in its venv), so the runs of a 5-second "schedule" are created through the client
# as Scheduled flow runs at those instants, which is what the scheduler would have made.
PREFECT_SCHEDULE = '''import sys
from datetime import datetime, timezone

from prefect.client.orchestration import get_client
from prefect.states import Scheduled

first, interval, count = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
with get_client(sync_client=True) as client:
    deployment = client.read_deployment_by_name("stamp/bench")
    for i in range(count):
        at = datetime.fromtimestamp(first + i * interval, timezone.utc)
        client.create_flow_run_from_deployment(deployment.id, state=Scheduled(scheduled_time=at))
'''


def prefect_peer(args, tmp, rows):
    """The Python entrypoint figure's peer: a Prefect 3 server and process worker running the
    same stamping function as a @flow on an interval schedule (5 s: each flow run is a new
    Python process importing prefect, seconds of CPU on a small host)."""
    row = rows["python"]
    if args.quick:
        row.peer = "not measured in --quick (a Prefect server takes ~30 s to start)"
        return
    if not args.prefect_python:
        row.peer = "peer not available (Prefect: no venv with prefect)"
        return
    work = os.path.join(tmp, "prefect")
    flows, stamps = os.path.join(work, "flows"), os.path.join(work, "stamps.txt")
    os.makedirs(flows)
    port = free_port()
    bindir = os.path.dirname(os.path.abspath(args.prefect_python))
    env = base_env(PREFECT_HOME=os.path.join(work, "home"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
                   DO_NOT_TRACK="1", PATH=bindir + os.pathsep + os.environ["PATH"])
    write_files(flows, {
        "stamp_flow.py": PREFECT_FLOW,
        "prefect.yaml": f"""name: bench
prefect-version: 3.0.0
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: {flows}
deployments:
  - name: bench
    entrypoint: stamp_flow.py:stamp
    parameters: {{path: {stamps}}}
    work_pool: {{name: bench}}
""",
        "schedule_runs.py": PREFECT_SCHEDULE,
    })
    log = open(os.path.join(work, "prefect.log"), "w")
    t0 = time.time()
    server = PROCS.start([os.path.join(bindir, "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                          str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    budget = t0 + args.prefect_budget
    try:
        wait_for("the Prefect server", 180, lambda: server.poll() is None and
                 get(f"http://127.0.0.1:{port}/api/health")[0] == 200, every=0.5)
        server_up = time.time() - t0

        def prefect(*argv):
            subprocess.run([os.path.join(bindir, "prefect"), *argv], cwd=flows, env=env, check=True,
                           stdout=log, stderr=subprocess.STDOUT, timeout=180)
        prefect("work-pool", "create", "bench", "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        worker = PROCS.start([os.path.join(bindir, "prefect"), "worker", "start", "--pool", "bench"],
                             env=env, stdout=log, stderr=subprocess.STDOUT, cwd=flows)
        deployed = time.time()
        want = args.prefect_runs
        first = int(time.time()) + 30
        subprocess.run([args.prefect_python, "schedule_runs.py", str(first), str(args.prefect_interval), str(want)],
                       cwd=flows, env=env, check=True, stdout=log, stderr=subprocess.STDOUT, timeout=120)
        while time.time() < budget and len(read_stamps(stamps, deployed)) < want:
            if server.poll() is not None or worker.poll() is not None:
                raise RuntimeError("the Prefect server or worker exited (see its log)")
            time.sleep(1)
        rss = group_rss_mib(server.pid) + group_rss_mib(worker.pid)
        late = lateness_ms(read_stamps(stamps, deployed))
    except Exception as e:  # noqa: BLE001 - a peer that fails is reported, not fatal
        row.peer = f"not measured: Prefect {type(e).__name__}: {e}"[:160]
        return
    finally:
        for proc in reversed(PROCS.groups):
            if proc.pid in (server.pid,) or proc.args[1:3] == ["worker", "start"]:
                PROCS.stop(proc, grace=10)
    args.prefect_rss = rss
    if not late:
        row.peer = (f"not measured: no Prefect flow run entered its function within "
                    f"{args.prefect_budget} s (server up after {server_up:.0f} s)")
        return
    row.peer = (f"Prefect 3 process worker: p50 {pct(late, 50):.0f}, p99 {pct(late, 99):.0f}, "
                f"max {max(late):.0f} ms ({len(late)} runs, {args.prefect_interval} s interval)")
    if row.ok:
        p99 = float(re.search(r"p99 ([\d.]+)", row.sundial).group(1))
        prefect = f"{p99 / pct(late, 99):.3f} (÷ Prefect)" if pct(late, 99) > 0 else "-"
        row.ratio = f"{row.ratio}; {prefect}" if row.floor and row.ratio else prefect


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


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
        git(repo, "add", "-A")
        t0 = time.perf_counter()
        git(repo, "commit", "-q", "-m", f"edit {k}")
        t1 = time.perf_counter()
        sha = git(repo, "rev-parse", "HEAD")
        wait_for("the edit to be applied", 60, lambda: daemon.json("/api/status").get("commit") == sha, every=0.002)
        late_ms.append((time.perf_counter() - t1) * 1000)
        git_ms.append((t1 - t0) * 1000)
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


VALIDATE_GEN = """name: bench
prefect-version: 3.1.0
deployments:
"""


def generate_validate(n, path):
    zones = ["America/Chicago", "Europe/Madrid", "UTC", "Asia/Kolkata", "Australia/Lord_Howe"]
    with open(path, "w") as f:
        f.write(VALIDATE_GEN)
        for i in range(n):
            f.write(f"""  - name: job-{i}
    description: generated deployment {i}
    tags: [bench, n{i % 7}]
    entrypoint: flows/etl.py:daily_job
    parameters: {{batch_size: {i + 1}, source: warehouse}}
    parameter_openapi_schema:
      type: object
      properties:
        batch_size: {{type: integer, minimum: 1}}
        source: {{type: string}}
    work_pool:
      name: local
      job_variables:
        env: {{LOG_LEVEL: info, SHARD: "{i}"}}
    schedules:
      - cron: "{i % 60} {i % 24} * * 1-5"
        timezone: {zones[i % len(zones)]}
      - interval: {300 + i}
      - rrule: "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE={i % 60}"
        timezone: Europe/Madrid
    retries: 2
    retry_delay_seconds: [10, 60]
""")


def time_command(args, argv, cwd):
    """Mean wall time (ms) of `argv`: hyperfine when installed, else a loop here."""
    runs = 3 if args.quick else 20
    if args.hyperfine:
        out = os.path.join(cwd, "hyperfine.json")
        subprocess.run([args.hyperfine, "-N", "-i", "--warmup", "1" if args.quick else "3", "--runs", str(runs),
                        "--export-json", out, " ".join(argv)], cwd=cwd, check=True, capture_output=True,
                       env=base_env())
        with open(out) as f:
            result = json.load(f)["results"][0]
        return result["median"] * 1000, "hyperfine"
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, env=base_env())
        times.append((time.perf_counter() - t0) * 1000)
    return pct(times, 50), "python timer"


def validate(args, tmp, rows):
    n = args.validate_deployments
    work = os.path.join(tmp, "validate")
    write_files(work, {"flows/etl.py": "def daily_job(batch_size, source):\n    pass\n"})
    path = os.path.join(work, "prefect.yaml")
    generate_validate(n, path)
    ours, how = time_command(args, [args.binary, "validate", path], work)
    rows["validate"].figure = f"`sundial validate`, {n:,} deployments (median, {how})"
    if args.check_jsonschema:
        schema = os.path.join(ROOT, "schema", "deployment-manifest.schema.json")
        theirs, _ = time_command(args, [args.check_jsonschema, "--schemafile", schema, path], work)
        rows["validate"].set(f"{ours:.0f} ms", f"check-jsonschema, same file: {theirs:.0f} ms",
                             f"{ours / theirs:.3f} ({theirs / ours:.0f}× faster)",
                             yes_no(ours <= 50 and theirs / ours >= 50))
    else:
        rows["validate"].set(f"{ours:.0f} ms", "check-jsonschema: peer not available", None, yes_no(ours <= 50))


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


# --- the table ---------------------------------------------------------------------------------

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
