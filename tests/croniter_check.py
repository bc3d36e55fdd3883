"""Prints croniter's next fire for each line of a file: `expr<TAB>zone<TAB>after<TAB>day_or`.

`after` is a Unix timestamp; the answer is `OK <timestamp>` or `ERR <exception class>`.
Used by tests/croniter.rs to cross-check sundial's cron against the implementation Prefect uses.
"""

import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter


def main(path):
    out = []
    with open(path) as f:
        for line in f:
            expr, zone, after, day_or = line.rstrip("\n").split("\t")
            start = datetime.fromtimestamp(float(after), tz=ZoneInfo(zone))
            try:
                it = croniter(expr, start, day_or=(day_or == "1"))
                out.append("OK %d" % int(it.get_next(datetime).timestamp()))
            except Exception as e:  # noqa: BLE001 - any refusal is an answer to compare
                out.append("ERR " + type(e).__name__)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
