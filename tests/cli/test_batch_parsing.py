"""A batch line's options are parsed as Click parses them when typed.

The batch works out each command's defaults once (``command_context``); these differential
tests give random lines to every command the batch runs and compare what the command would
receive, or the error it would print, with Click's own ``make_context``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.main import get_command

from crmcli.cli.app import app
from crmcli.cli.batch import NOT_IN_BATCH, BatchRunner, Defaults, LineError, _leaves, command_context, to_argv
from crmcli.cli.context import Runtime

ROOT = get_command(app)
RUNNER = BatchRunner(root_command=ROOT, root_name="crmcli", base=Runtime(), atomic=False)
COMMANDS = sorted(" ".join(words) for words in _leaves(ROOT, []) if words[0] not in NOT_IN_BATCH)
DEFAULTS: Defaults = {}  # shared by every example, as by every line of one batch

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "1", "2", "ann@example.com", "-5", "--x", "12,50", "2026-01-01", "json", "csv", "abc"]),
    st.lists(st.sampled_from(["a", "b", "1"]), max_size=2),
)


def parsed(make: Any) -> Any:
    """What the command would be called with (each parameter's value and where it came from),
    or the error it would stop with."""
    try:
        ctx = make()
    except Exception as exc:  # a usage error, as printed; anything else by its type
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return ("error", type(exc).__name__, message)
    return ("ok", ctx.params, {name: ctx.get_parameter_source(name) for name in ctx.params}, ctx.args)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(COMMANDS))
def test_a_line_is_parsed_as_click_parses_the_command_typed(data: Any, name: str) -> None:
    words = name.split()
    path, command = RUNNER.resolve(words)
    keys = st.sampled_from(sorted({p.name for p in command.params} | {"fmt", "quiet"}))
    args = data.draw(st.dictionaries(keys, values, max_size=4))
    try:
        argv = to_argv(command, args, name)
    except LineError:
        return  # refused before any parsing, the same way on both paths
    parent = RUNNER._context([c.name for c in path[1:]], Runtime())
    typed = parsed(lambda: command.make_context(command.name, list(argv), parent=parent))
    assert parsed(lambda: command_context(command, argv, parent, DEFAULTS)) == typed, argv
    assert parsed(lambda: command_context(command, argv, parent, DEFAULTS)) == typed, argv  # defaults known now


@pytest.mark.parametrize(
    ("name", "args"),
    [("purchase add", {"customer": "1", "amount": "5"}), ("customer add", {"name": "Ann"}), ("report rfm", {})],
)
def test_defaults_are_kept_once_worked_out_and_given_values_are_not(name: str, args: dict[str, Any]) -> None:
    path, command = RUNNER.resolve(name.split())
    parent = RUNNER._context([c.name for c in path[1:]], Runtime())
    defaults: Defaults = {}
    argv = to_argv(command, args, name)
    first = command_context(command, argv, parent, defaults)
    kept = {param for _, param in defaults}
    assert kept and "fmt" not in kept and not kept & set(args)  # what the line gives is never kept
    again = command_context(command, argv, parent, defaults)
    assert again.params == first.params == command.make_context(command.name, list(argv), parent=parent).params
