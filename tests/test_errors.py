"""Below the CLI, errors speak the domain: no flag and no command in their text."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import crmcli
from crmcli import errors

PACKAGE = Path(crmcli.__file__).parent
ERRORS = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)}
CLI_WORDS = re.compile(r"(?<![\w-])--?[a-z]|'crmcli\b|\bcrmcli --")
BELOW_THE_CLI = sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts)


REFUSALS = ("reject", "duplicate", "refuse")  # an import's refused row: its reason is an error's text too


def error_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (getattr(n.func, "id", None) in ERRORS or getattr(n.func, "attr", None) in REFUSALS)
    ]


@pytest.mark.parametrize("path", BELOW_THE_CLI, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_errors_below_the_cli_name_no_flag_or_command(path: Path) -> None:
    texts = [
        (part.lineno, part.value)
        for call in error_calls(path)
        for part in ast.walk(call)
        if isinstance(part, ast.Constant) and isinstance(part.value, str)
    ]
    assert [f"line {line}: {text!r}" for line, text in texts if CLI_WORDS.search(text)] == []


@pytest.mark.parametrize("path", BELOW_THE_CLI, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_hints_are_left_to_the_cli(path: Path) -> None:
    hints = [call.lineno for call in error_calls(path) for kw in call.keywords if kw.arg == "hint"]
    assert hints == [], "say what the error is about (subject, key, fields); crmcli/cli/hints.py words the hint"


def test_the_check_finds_a_flag() -> None:
    assert CLI_WORDS.search("give --paid or --unpaid, not both")
    assert CLI_WORDS.search("see 'crmcli purchase list'")
    assert CLI_WORDS.search("run it on its own database: crmcli --db demo.db demo")
    assert not CLI_WORDS.search("cannot be both paid and unpaid; +30d or -7d; a well-known; not a crmcli database")
