"""What every figure uses: the processes started (and their cleanup), git repositories, a
daemon on a temporary state directory, /proc readings, the stamp files, the table's rows."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def commit_applied(repo, daemon, message):
    """Commits what is in the work tree; returns (ms `git commit` took, ms from its return
    to /api/status showing the commit, polled every 2 ms)."""
    git(repo, "add", "-A")
    t0 = time.perf_counter()
    git(repo, "commit", "-q", "-m", message)
    t1 = time.perf_counter()
    sha = git(repo, "rev-parse", "HEAD")
    wait_for("the commit to be applied", 60, lambda: daemon.json("/api/status").get("commit") == sha, every=0.002)
    return (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000


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


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
