"""Shared fixtures: a temp SQLite database per test, and a CLI runner around it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crmcli.cli.app import app
from crmcli.config import Config
from crmcli.db import Database


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's real config or database, and output has a fixed width."""
    for name in ("CRMCLI_DB", "CRMCLI_CONFIG", "CRMCLI_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "crm.db"


@pytest.fixture
def database(db_path: Path) -> Iterator[Database]:
    db = Database(str(db_path))
    yield db
    db.close()


@pytest.fixture
def config() -> Config:
    return Config()


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``crmcli --db <temp db> ARGS`` in-process and returns exit code and streams."""

    def __init__(self, db_path: Path, config_path: Path | None = None) -> None:
        self.db_path = db_path
        self.config_path = config_path
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        prefix = ["--db", str(self.db_path)]
        if self.config_path is not None:
            prefix += ["--config", str(self.config_path)]
        result = self.runner.invoke(app, [*prefix, *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
        return result

    def new_id(self, *args: str) -> int:
        return int(self.ok(*args, "-q").stdout.strip())

    def usage_error(self, *args: str) -> str:
        """Run a command that must be refused as misused (exit 2); its message as one line.

        Typer draws the message in a box and wraps it; the box and the wrapping are dropped.
        """
        result = self(*args)
        assert result.exit_code == 2, f"exit {result.exit_code}: {result.stderr}"
        return " ".join(re.sub(r"[\u2500-\u257f]", " ", result.stderr).split())


@pytest.fixture
def cli(db_path: Path) -> Cli:
    return Cli(db_path)
