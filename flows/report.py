"""The example report flow that deployments/madrid.yaml schedules."""

import datetime


def morning_report(office: str, digest: bool = False) -> None:
    kind = "digest" if digest else "report"
    print(f"{kind} for {office} at {datetime.datetime.now().isoformat(timespec='seconds')}")
