"""Where a `crmcli batch` line's time goes, by layer, from a py-spy raw profile.

    pip install py-spy
    py-spy record -r 400 -f raw -o batch.txt -- python -m crmcli --db demo.db batch sales.jsonl
    python benchmarks/batch_profile.py batch.txt

Each sample is put in one layer: SQLite (inside the driver's execute, BEGIN or COMMIT),
Click parsing a line's options, else the innermost frame's library: SQLAlchemy's ORM,
SQLAlchemy Core, crmcli's own code, or Typer and Rich. Samples outside the lines (start-up,
reading the file) are counted apart. (`sales.jsonl`: see `run.py --scripting`, which writes it.)
"""

from __future__ import annotations

import collections
import re
import sys

DRIVER = ("do_execute ", "do_executemany", "do_commit", "do_begin", "_begin_without_waiting")
LIBRARIES = ("sqlalchemy/", "sqlmodel/", "crmcli/", "typer", "click", "rich/")


def layer(frames: list[str]) -> str:
    if not any("BatchRunner.invoke" in f for f in frames):
        return "outside the lines (start-up, reading the file)"
    if any(any(d in f for d in DRIVER) for f in frames):
        return "SQLite (the driver's execute, BEGIN, COMMIT)"
    if any("core.py" in f and ("make_context" in f or "parse_args" in f) for f in frames):
        return "Click parsing the line's options"
    for frame in reversed(frames):
        found = re.search(r"\((.*?):\d+\)$", frame)
        path = found.group(1) if found else frame
        if any(lib in path for lib in LIBRARIES):
            if "sqlalchemy/orm" in path:
                return "SQLAlchemy ORM (session, unit of work, loading objects)"
            if "sqlalchemy/" in path or "sqlmodel/" in path:
                return "SQLAlchemy Core (compiled cache, parameters, results, events)"
            if "crmcli/" in path:
                return "crmcli's own code (rules, replay, audit, rendering)"
            return "Typer and Rich"
    return "other"


def main(path: str) -> int:
    shares: collections.Counter[str] = collections.Counter()
    for line in open(path, encoding="utf-8"):
        stack, _, count = line.rstrip().rpartition(" ")
        if stack:
            shares[layer(stack.split(";"))] += int(count)
    total = sum(shares.values())
    for name, samples in shares.most_common():
        print(f"{100 * samples / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
