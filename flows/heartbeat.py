"""The heartbeat command of deployments/heartbeat.yaml: prints the run it belongs to."""

import os
import sys

if "--quiet" not in sys.argv:
    print(dict(os.environ))
print("alive", os.environ.get("SUNDIAL_RUN_ID"), os.environ.get("SUNDIAL_SCHEDULED_FOR"))
