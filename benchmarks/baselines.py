"""The baselines crmcli is measured against: the same work done with the standard library.

    python benchmarks/baselines.py insert-customers DB CSV
    python benchmarks/baselines.py insert-purchases DB CSV
    python benchmarks/baselines.py insert-purchases-fast DB CSV     # with a 256 MB page cache
    python benchmarks/baselines.py capture-sql DB rfm|pareto|value|export > statements.json
    python benchmarks/baselines.py run-sql DB statements.json
    python benchmarks/baselines.py export-customers DB OUT statements.json

The inserts write the same rows crmcli writes (customers with their tags, stage
history and referrals; purchases with their points) into a database that already
has crmcli's schema and indexes, with ``executemany`` in one transaction and WAL,
and no validation at all: the limit of what Python and SQLite can do.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

NOW = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# ``insert-purchases-fast``: the same writer with its best pragma, a 256 MB page cache
# (measured: 32.4 s -> 20.2 s for 1M purchases), the limit a purchase import is held to.
CACHE_MB = 0


def connect(db: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    if CACHE_MB:
        conn.execute(f"PRAGMA cache_size = -{CACHE_MB * 1024}")
    return conn


def insert_customers(db: str, path: str) -> None:
    conn = connect(db)
    conn.execute("BEGIN IMMEDIATE")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        col = {name: i for i, name in enumerate(header)}
        batch, tags, refs = [], [], []
        next_id = 1
        ids: dict[str, int] = {}
        for row in reader:
            ref = row[col["ref"]]
            ids[ref] = next_id
            batch.append(
                (
                    next_id,
                    row[col["name"]],
                    row[col["email"]] or None,
                    row[col["phone"]] or None,
                    row[col["company"]] or None,
                    row[col["city"]] or None,
                    row[col["source"]] or None,
                    row[col["stage"]],
                    ref,
                    f"B{next_id:09d}",
                    NOW,
                    NOW,
                )
            )
            tags.extend((next_id, t) for t in row[col["tags"]].split(";") if t)
            if row[col["referred_by"]]:
                refs.append((ids[row[col["referred_by"]]], next_id, "pending", NOW))
            next_id += 1
            if len(batch) >= 5000:
                flush_customers(conn, batch, tags, refs)
        flush_customers(conn, batch, tags, refs)
    conn.execute("COMMIT")


def flush_customers(conn: sqlite3.Connection, batch: list, tags: list, refs: list) -> None:
    conn.executemany(
        "INSERT INTO customer (id, name, email, phone, company, city, source, stage, ref, referral_code, "
        "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        batch,
    )
    conn.executemany(
        "INSERT INTO stage_change (customer_id, to_stage, at) VALUES (?,?,?)", [(row[0], row[7], NOW) for row in batch]
    )
    conn.executemany("INSERT INTO customer_tag (customer_id, tag) VALUES (?,?)", tags)
    conn.executemany("INSERT INTO referral (referrer_id, referred_id, status, created_at) VALUES (?,?,?,?)", refs)
    batch.clear()
    tags.clear()
    refs.clear()


def insert_purchases(db: str, path: str) -> None:
    conn = connect(db)
    conn.execute("BEGIN IMMEDIATE")
    ids = dict(conn.execute("SELECT ref, id FROM customer"))
    next_id = (conn.execute("SELECT coalesce(max(id), 0) FROM purchase").fetchone()[0]) + 1
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        batch, points = [], []
        for customer, amount, at, due, paid, ref in reader:
            cents = int(Decimal(amount) * 100)
            when = at.replace("T", " ") + ".000000"
            batch.append(
                (next_id, ids[customer], ref, cents, cents, when, due or None, paid or (None if due else when), NOW)
            )
            if cents >= 1000:
                points.append((ids[customer], cents // 1000, "earn", next_id, when))
            next_id += 1
            if len(batch) >= 5000:
                flush_purchases(conn, batch, points)
        flush_purchases(conn, batch, points)
    conn.execute("COMMIT")


def flush_purchases(conn: sqlite3.Connection, batch: list, points: list) -> None:
    conn.executemany(
        "INSERT INTO purchase (id, customer_id, ref, gross_minor, coupon_discount_minor, points_used, "
        "points_discount_minor, net_minor, at, due_at, paid_at, created_at) VALUES (?,?,?,?,0,0,0,?,?,?,?,?)",
        batch,
    )
    conn.executemany("INSERT INTO points_entry (customer_id, delta, kind, purchase_id, at) VALUES (?,?,?,?,?)", points)
    batch.clear()
    points.clear()


def capture_sql(db: str, kind: str) -> None:
    """The statements crmcli sends for a report or an export, with their parameters."""
    from sqlalchemy import event

    from crmcli.config import Config
    from crmcli.db import Database
    from crmcli.values import utcnow

    database = Database(db)
    statements: list[tuple[str, list]] = []

    @event.listens_for(database.engine, "before_cursor_execute")
    def grab(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, list(parameters)))

    config, now = Config(), utcnow()
    with database.session() as session:
        if kind == "rfm":
            from crmcli.reports.rfm import rfm_segments

            rfm_segments(session=session, config=config, as_of=now)
        elif kind == "pareto":
            from crmcli.reports.pareto import pareto

            pareto(session=session, config=config, as_of=now)
        elif kind == "value":
            from crmcli.reports.value import value_report

            value_report(session=session, config=config, as_of=now)
        elif kind == "export":
            from crmcli.io.customers import export_rows

            for _ in export_rows(session.connection()):
                break
    json.dump(statements, sys.stdout)


def run_sql(db: str, file: str) -> None:
    conn = connect(db)
    results = [conn.execute(sql, params).fetchall() for sql, params in json.loads(Path(file).read_text())]
    json.dump(results, sys.stdout, default=str)


def export_customers(db: str, out: str, file: str) -> None:
    (sql, params), *_ = json.loads(Path(file).read_text())
    conn = connect(db)
    with open(out, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        cursor = conn.execute(sql, params)
        writer.writerow([d[0] for d in cursor.description])
        while rows := cursor.fetchmany(5000):
            writer.writerows(rows)


def insert_purchases_fast(db: str, path: str) -> None:
    global CACHE_MB
    CACHE_MB = 256
    insert_purchases(db, path)


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    {
        "insert-customers": insert_customers,
        "insert-purchases": insert_purchases,
        "insert-purchases-fast": insert_purchases_fast,
        "capture-sql": capture_sql,
        "run-sql": run_sql,
        "export-customers": export_customers,
    }[command](*rest)
