"""Where `crmcli customer show` spends its start-up: each step one more import, in a fresh process.

    python benchmarks/startup.py --db DB [--config FILE] [--customer 100] [--runs 7]

Each step is a fresh process that imports what the step before did plus one more layer,
started and ended as crmcli's entry point does (the cyclic collector held while the
libraries load, the process ended without the interpreter's teardown); the last step is the
command itself. Printed: the median CPU time (user + system) of ``--runs`` processes of each
step, taken in turns, and what each step adds; the first line is ``python -c "import sqlmodel"``
as the benchmark's baseline runs it (with the collector and the teardown).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

PY = sys.executable
START = "import gc, os, sys; gc.disable()\n"
END = "\nsys.stdout.flush(); os._exit(0)\n"
LAYERS = [
    ("Python and import sqlmodel (SQLAlchemy, pydantic)", "import sqlmodel"),
    ("Typer (with its pydantic-based option parsing)", "import typer, typer.main, typer._coercion, typer._adapters"),
    ("Rich's console and table", "import rich.console, rich.table"),
    ("the SQLModel tables (crmcli.models)", "import crmcli.models"),
    ("the typed config (without PyYAML)", "import crmcli.config"),
    ("PyYAML", "import yaml"),
    ("the SQLite driver and dialect", "import sqlite3, sqlalchemy.dialects.sqlite"),
    (
        "crmcli's CLI, renderer and service modules",
        "import crmcli.cli.app, crmcli.cli.customer, crmcli.cli.process, crmcli.render, crmcli.db, crmcli.audit,"
        " crmcli.services.profile, crmcli.services.identify, crmcli.services.coupons, crmcli.services.points",
    ),
]


def cpu(command: list[str]) -> float:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {command}\n{proc.stderr.read().decode() if proc.stderr else ''}")
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--config")
    parser.add_argument("--customer", default="100")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    options = ["--db", args.db, *(["--config", args.config] if args.config else [])]
    steps: list[tuple[str, list[str]]] = [("import sqlmodel, as the baseline runs it", [PY, "-c", "import sqlmodel"])]
    code = START
    for label, line in LAYERS:
        code += line + "\n"
        steps.append((label, [PY, "-c", code + END]))
    steps.append(("the command's work", [PY, "-m", "crmcli", *options, "customer", "show", args.customer]))
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(args.runs):
        for i, (_, command) in enumerate(steps):
            times[i].append(cpu(command))
    medians = [statistics.median(t) for t in times]
    print(f"{'step':<55} {'CPU s':>7} {'adds':>7}")
    for i, (label, _) in enumerate(steps):
        adds = "" if i < 2 else f"{medians[i] - medians[i - 1]:+.3f}"
        print(f"{label:<55} {medians[i]:7.3f} {adds:>7}")
    print(f"customer show / import sqlmodel: {medians[-1] / medians[0]:.2f}x; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
