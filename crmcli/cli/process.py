"""How a crmcli process starts and ends: the two costs of a short command that are not its work.

Start-up imports the libraries (SQLAlchemy, pydantic, Typer, Rich: about 135,000 objects that
live until the process ends). Python's cyclic garbage collector runs every 700 new objects and
would walk them again and again, finding nothing: a twelfth of ``crmcli customer show``. So
collection waits until the command starts on its data (``work_begins``, when the database
opens); the objects made by then are frozen out of later collections, and the work runs with
the collector as usual.

At the end, the interpreter would free each of those objects one by one (another sixth of a
read command). Once the output is flushed and the exit handlers have run, nothing is left to
do, so the process ends there (``exit_now``).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from typing import Any

_held = False  # collection is held back while the process starts


def hold_collection() -> None:
    """Called first by the entry point: no cyclic collection while the libraries load."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def work_begins() -> None:
    """The start-up is over: freeze what it made, and collect as usual from here on."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def exit_now(code: Any) -> None:
    """End the process with ``code`` once its output is out, without the interpreter's teardown.

    Falls back to the ordinary exit when another thread still runs (the interpreter would wait
    for it) or the code is not a number (SystemExit prints a text code)."""
    if code is None:
        code = 0
    if not isinstance(code, int) or threading.active_count() > 1:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()  # what the interpreter runs first at exit: logging's flush, finalizers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(code & 0xFF)  # as the interpreter's own exit status: the low byte
