"""What one SQL statement costs through the stack crmcli is built on, against plain sqlite3.

A `crmcli batch` line of `purchase add` sends about 11 statements. This measures the same
kinds of statement on a crmcli database, each run many times in one transaction:

- through a SQLModel session, as crmcli's services send them (a statement built once,
  bound values changing: SQLAlchemy's compiled cache hit every time);
- through plain `sqlite3`, the same SQL text and parameters (the driver's own statement
  cache hit every time).

The difference is the floor a line pays for the stack (SQLAlchemy's statement layer), whatever
the rules do. Usage:

    python benchmarks/statement_cost.py [--db PATH] [--repeat N]

Without --db it builds a 200-customer demo database in a temporary directory.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def timed(fn: Any, repeat: int) -> float:
    """Microseconds per call: the best of five rounds of ``repeat`` calls."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for i in range(repeat):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return best / repeat * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="a crmcli SQLite database (default: a fresh demo shop)")
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crmcli-statements-"))
    db = args.db
    if db is None:
        db = work / "demo.db"
        subprocess.run(
            [sys.executable, "-m", "crmcli", "--db", str(db), "demo", "--customers", "200"],
            check=True,
            capture_output=True,
        )

    from sqlalchemy import bindparam, select, update

    from crmcli.db import Database
    from crmcli.models import Customer, PointsEntry, table_of

    c, e = table_of(Customer), table_of(PointsEntry)
    ids: Any = bindparam("ids", expanding=True)
    # each statement as crmcli builds it, with the SQL text SQLAlchemy sends for it
    statements = {
        "select one column by key": (
            select(c.c.stage).where(c.c.id == bindparam("cid")),
            lambda i: {"cid": i % 200 + 1},
            "SELECT customer.stage FROM customer WHERE customer.id = ?",
            lambda i: (i % 200 + 1,),
        ),
        "select rows by an IN-list": (
            select(e.c.customer_id, e.c.at, e.c.delta, e.c.kind).where(e.c.customer_id.in_(ids)),
            lambda i: {"ids": [i % 200 + 1]},
            "SELECT points_entry.customer_id, points_entry.at, points_entry.delta, points_entry.kind "
            "FROM points_entry WHERE points_entry.customer_id IN (?)",
            lambda i: (i % 200 + 1,),
        ),
        "update one row": (
            update(c).where(c.c.id == bindparam("cid")).values(city=bindparam("city")),
            lambda i: {"cid": i % 200 + 1, "city": f"c{i}"},
            "UPDATE customer SET city=? WHERE customer.id = ?",
            lambda i: (f"c{i}", i % 200 + 1),
        ),
    }
    database = Database(str(db))  # crmcli's own engine: its pragmas, statement cache and listeners
    plain = sqlite3.connect(db, isolation_level=None)
    rows = []
    for label, (statement, params, sql, values) in statements.items():
        with database.session(write=True) as session:

            def through_sqlalchemy(i: int, statement: Any = statement, params: Any = params) -> None:
                result = session.execute(statement, params(i))
                if result.returns_rows:
                    result.all()

            ours = timed(through_sqlalchemy, args.repeat)
            session.rollback()

        def through_sqlite3(i: int, sql: str = sql, values: Any = values) -> None:
            plain.execute(sql, values(i)).fetchall()

        plain.execute("BEGIN")
        theirs = timed(through_sqlite3, args.repeat)
        plain.execute("ROLLBACK")
        rows.append((label, ours, theirs))

    # a command's write transaction around one statement: session, BEGIN IMMEDIATE, audit entry, COMMIT
    def session_cycle(i: int) -> None:
        with database.session(write=True) as session:
            session.execute(statements["update one row"][0], statements["update one row"][1](i))

    def plain_cycle(i: int) -> None:
        plain.execute("BEGIN IMMEDIATE")
        plain.execute(statements["update one row"][2], statements["update one row"][3](i))
        plain.execute(
            "INSERT INTO audit_entry (at, os_user, command, details) VALUES (?, ?, ?, ?)", ("t", "u", "c", "{}")
        )
        plain.execute("COMMIT")

    database.audit_command = "benchmark"
    rows.append(
        ("write transaction, audited", timed(session_cycle, args.repeat // 4), timed(plain_cycle, args.repeat // 4))
    )

    print(f"{'statement':<28} {'SQLModel session':>18} {'plain sqlite3':>15} {'ratio':>7} {'overhead':>10}")
    for label, ours, theirs in rows:
        print(f"{label:<28} {ours:>15.1f} µs {theirs:>12.1f} µs {ours / theirs:>6.1f}× {ours - theirs:>7.1f} µs")
    overhead = sum(ours - theirs for _, ours, theirs in rows[:-1]) / (len(rows) - 1)
    cycle = rows[-1][1] - rows[-1][2]
    print(f"mean overhead per statement: {overhead:.0f} µs; a sale's 11 statements and its transaction: ", end="")
    print(f"{(overhead * 11 + cycle) / 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
