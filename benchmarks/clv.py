"""report clv against report rfm on one database: the target is at most 3x.

    python benchmarks/clv.py --db benchmarks/work/crm.db     # a database run.py (--work) or generate.py built

Each report runs as its own process, timed from start to exit, best of ``--runs``
(median); the ratio is what counts on a shared machine. run.py measures the same
at the end of its report section.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def seconds(db: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "crmcli", "--db", str(db), *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    seconds(args.db, "report", "rfm", "-f", "json")  # warm the page cache for both
    rfm = statistics.median(seconds(args.db, "report", "rfm", "-f", "json") for _ in range(args.runs))
    clv = statistics.median(seconds(args.db, "report", "clv", "-f", "json") for _ in range(args.runs))
    print(f"report rfm {rfm:.2f} s, report clv {clv:.2f} s: {clv / rfm:.2f}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
