"""`sundial validate` of a file of N deployments beside check-jsonschema (hyperfine)."""

import json
import os
import subprocess
import time

from .common import ROOT, base_env, pct, write_files, yes_no


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
