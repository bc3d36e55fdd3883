"""The example ETL flow that deployments/analytics.yaml schedules."""

import json
import os


def daily_job(batch_size: int = 500, source: str = "warehouse") -> None:
    """Pretends to move `batch_size` rows from `source`; prints what it was asked to do."""
    print(json.dumps({
        "job": "daily_job",
        "batch_size": batch_size,
        "source": source,
        "scheduled_for": os.environ.get("SUNDIAL_SCHEDULED_FOR"),
        "attempt": os.environ.get("SUNDIAL_ATTEMPT"),
    }))
