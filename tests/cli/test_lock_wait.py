"""A command waiting for another process's write lock says so, and gives up at the configured limit.

Two real processes: one holds SQLite's write lock with BEGIN IMMEDIATE, the other runs crmcli.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Cli

WAITING = "waiting for another crmcli to finish writing…"


@contextmanager
def write_lock_held(db_path: Path, seconds: float) -> Iterator[None]:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "conn.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n"
            "conn.execute('COMMIT')\n",
            str(db_path),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.wait(timeout=60)


def crmcli(db_path: Path, config: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "crmcli", "--db", str(db_path), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - start


def test_a_write_waiting_for_the_lock_says_so_and_then_succeeds(db_path: Path, tmp_path: Path) -> None:
    ann = Cli(db_path).new_id("customer", "add", "Ann")
    config = tmp_path / "config.yaml"
    config.write_text("lock_timeout_seconds: 30\n", encoding="utf-8")
    with write_lock_held(db_path, 3):
        result, took = crmcli(db_path, config, "purchase", "add", str(ann), "5.00")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == WAITING
    assert took >= 2


def test_a_write_that_waits_too_long_names_the_limit_and_the_key(db_path: Path, tmp_path: Path) -> None:
    ann = Cli(db_path).new_id("customer", "add", "Ann")
    config = tmp_path / "config.yaml"
    config.write_text("lock_timeout_seconds: 1.5\n", encoding="utf-8")
    with write_lock_held(db_path, 6):
        result, _ = crmcli(db_path, config, "purchase", "add", str(ann), "5.00")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        WAITING,
        "Error: another process kept the database locked for writing beyond the 1.5 s limit (lock_timeout_seconds) "
        "(try again when it is done, or raise lock_timeout_seconds in the config file)",
    ]


def test_a_short_wait_is_silent(db_path: Path, tmp_path: Path) -> None:
    ann = Cli(db_path).new_id("customer", "add", "Ann")
    config = tmp_path / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    with write_lock_held(db_path, 0.3):
        result, _ = crmcli(db_path, config, "purchase", "add", str(ann), "5.00", "-q")
    assert result.returncode == 0
    assert result.stderr == ""


def test_reads_do_not_wait_for_a_writer(db_path: Path, tmp_path: Path) -> None:
    Cli(db_path).ok("customer", "add", "Ann")
    config = tmp_path / "config.yaml"
    config.write_text("lock_timeout_seconds: 1\n", encoding="utf-8")
    with write_lock_held(db_path, 4):
        result, took = crmcli(db_path, config, "customer", "list", "-f", "json")
    assert result.returncode == 0 and result.stderr == ""
    assert took < 4
