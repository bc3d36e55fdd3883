"""Start lateness of a 1-second schedule (native command, Python entrypoint, pre-started)
beside the floor program, quiet and loaded, and the Prefect 3 process worker as a peer."""

import os
import re
import subprocess
import time

from .common import (
    Daemon, PROCS, base_env, deployment, free_port, get, group_rss_mib, lateness_ms,
    make_repo, pct, read_stamps, wait_for, write_files, yes_no,
)


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
