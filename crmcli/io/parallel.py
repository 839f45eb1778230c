"""Reading and validating a large file in a second process while this one writes.

An import does two kinds of work on each row: reading and validating it (pure Python:
the CSV parser, money, dates) and resolving and staging it (the database). On a machine
with a second core, a forked child does the first while the parent does the second, and
the batches travel between them through a pipe: the parent's work per row is then only
what needs the database.

The result is the same as reading in one process, row for row and batch for batch: the
child runs the same loop, so the batches have the same boundaries and the refused rows
reach ``reject`` in the same order (tests/io/test_parallel.py compares the two).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from crmcli.errors import CrmError

T = TypeVar("T")

# Below this size one process is faster: a fork and the pipe cost more than they save.
PARALLEL_MIN_BYTES = 2 << 20


def validated_batches(
    source: Any,
    validate: Callable[[int, dict[str, str]], T],
    *,
    size: int,
    reject: Callable[[int, dict[str, str], str], None],
    progress: Callable[[int], None] | None = None,
    pack: Callable[[T], Any] | None = None,
    unpack: Callable[[Any], T] | None = None,
) -> Iterator[list[T]]:
    """The rows of ``source`` passed through ``validate``, ``size`` valid rows at a time; a row
    it refuses (a :class:`CrmError`) goes to ``reject(line, cells, reason)`` instead.

    What ``validate`` returns travels through a pipe when a second process reads: plain
    values (tuples of str, int, datetime, None) are cheap to send, objects with dicts are
    not. ``pack`` makes them plain in the reading process and ``unpack`` rebuilds them here.
    """
    if not second_process_pays(source):
        yield from _batches(source, validate, size, reject, progress)
        return
    if pack is not None:
        validate = _then(validate, pack)
    for batch in _from_child(source, validate, size, reject, progress):
        yield batch if unpack is None else [unpack(item) for item in batch]


def _then(first: Callable[[int, dict[str, str]], Any], then: Callable[[Any], Any]) -> Callable[..., Any]:
    return lambda line, raw: then(first(line, raw))


def second_process_pays(source: Any) -> bool:
    """A second process helps a large file on a machine with a second core, where fork exists."""
    if sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2:
        return False
    try:
        return bool(os.stat(source.path).st_size >= PARALLEL_MIN_BYTES)
    except OSError:
        return False


def _batches(
    source: Any,
    validate: Callable[[int, dict[str, str]], T],
    size: int,
    reject: Callable[[int, dict[str, str], str], None],
    progress: Callable[[int], None] | None,
) -> Iterator[list[T]]:
    batch: list[T] = []
    for line, raw in source.rows(progress):
        try:
            batch.append(validate(line, raw))
        except CrmError as exc:
            reject(line, raw, str(exc))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _from_child(
    source: Any,
    validate: Callable[[int, dict[str, str]], T],
    size: int,
    reject: Callable[[int, dict[str, str], str], None],
    progress: Callable[[int], None] | None,
) -> Iterator[list[T]]:
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_produce, args=(source, validate, size, sending), name="crmcli-reader", daemon=True)
    child.start()  # (multiprocessing flushes this process's output first: nothing is written twice)
    sending.close()  # (the child's end: when it exits, a read here ends instead of waiting)
    try:
        while True:
            try:
                kind, payload, position = receiving.recv()
            except EOFError:
                raise CrmError(f"reading {source.label} stopped unexpectedly; nothing was imported") from None
            if progress is not None and position:
                progress(position)
            if kind == "rows":
                refused, batch = payload
                for line, raw, reason in refused:
                    reject(line, raw, reason)
                if batch:
                    yield batch
            elif kind == "error":
                raise payload
            else:
                return
    finally:
        receiving.close()
        child.join(timeout=5)
        if child.is_alive():
            child.terminate()
            child.join()


def _produce(source: Any, validate: Callable[[int, dict[str, str]], Any], size: int, pipe: Any) -> None:
    """The child: the loop of :func:`_batches`, each batch sent with the rows refused before it.

    It writes nothing to the terminal (its failures travel to the parent) and leaves Ctrl-C to
    the parent, which ends it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    position = [0]
    refused: list[tuple[int, dict[str, str], str]] = []

    def seen(offset: int) -> None:
        position[0] = offset

    def refuse(line: int, raw: dict[str, str], reason: str) -> None:
        refused.append((line, raw, reason))

    try:
        for batch in _batches(source, validate, size, refuse, seen):
            pipe.send(("rows", (refused[:], batch), position[0]))
            refused.clear()
        pipe.send(("rows", (refused, []), position[0]))  # the rows refused after the last batch
        pipe.send(("done", None, 0))
    except BrokenPipeError:
        pass  # the parent stopped reading (it failed or was interrupted): nothing to tell
    except BaseException as exc:  # noqa: BLE001 - every failure is the parent's to report
        pipe.send(("error", _portable(exc), 0))
    finally:
        pipe.close()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives the pipe as itself, else an error that says the same."""
    try:
        back = pickle.loads(pickle.dumps(exc))
        if type(back) is type(exc) and str(back) == str(exc):
            return exc
    except Exception:  # noqa: BLE001, S110 - any failure to pickle means: send the text
        pass
    if isinstance(exc, CrmError):
        return CrmError(str(exc))
    return RuntimeError(f"{type(exc).__name__}: {exc}")
