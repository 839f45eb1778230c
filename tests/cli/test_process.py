"""How a crmcli process starts and ends (crmcli/cli/process.py): the collector is held only
while the libraries load, and the quick exit keeps the exit status, the output and the exit
handlers of the ordinary one."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crmcli.cli.process import exit_now, hold_collection, work_begins


def test_collection_is_held_until_the_work_begins() -> None:
    assert gc.isenabled()
    try:
        hold_collection()
        assert not gc.isenabled()
        work_begins()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        work_begins()  # once only
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


def test_work_begins_leaves_a_collector_it_did_not_hold_alone() -> None:
    gc.disable()
    try:
        work_begins()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_exit_now_is_the_ordinary_exit_while_another_thread_runs() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.raises(SystemExit) as done:
            exit_now(3)
        assert done.value.code == 3
    finally:
        stop.set()
        thread.join()


def test_exit_now_leaves_a_text_code_to_the_ordinary_exit() -> None:
    with pytest.raises(SystemExit) as done:
        exit_now("bad things")
    assert done.value.code == "bad things"


def crmcli(*args: str, atexit_code: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m crmcli ARGS`` with an exit handler (``atexit_code``) registered first."""
    code = (
        "import atexit, gc, sys, runpy\n"
        f"atexit.register(lambda: {atexit_code or 'None'})\n"
        f"sys.argv = ['crmcli', *{list(args)!r}]\n"
        "runpy.run_module('crmcli', run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_process_keeps_its_exit_status_output_and_exit_handlers(tmp_path: Path) -> None:
    db = str(tmp_path / "crm.db")
    added = crmcli("--db", db, "customer", "add", "Ann", "--email", "ann@example.com")
    assert added.returncode == 0, added.stderr
    shown = crmcli(
        "--db",
        db,
        "customer",
        "show",
        "1",
        "--format",
        "json",
        atexit_code="print('HANDLER', gc.isenabled(), gc.get_freeze_count() > 0, file=sys.stderr)",
    )
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["email"] == "ann@example.com"  # all of it, flushed
    # the exit handlers ran; the collector was back on for the work, the start-up's objects frozen
    assert "HANDLER True True" in shown.stderr
    missing = crmcli("--db", db, "customer", "show", "2")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no customer '2'")
    assert crmcli("--db", db, "customer", "show").returncode == 2
    assert crmcli("--db", db, "--help").returncode == 0
    # the database was closed before the process ended: SQLite folded its write-ahead log back
    assert not os.path.exists(db + "-wal")
