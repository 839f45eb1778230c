from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from crmcli import __version__
from crmcli.cli.app import app
from tests.conftest import Cli

# Typer renders help with Rich (welcome, per SPEC); the database stack must stay unloaded.
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "pydantic", "yaml", "babel", "charset_normalizer", "openpyxl")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmcli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def all_commands() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: Any, prefix: list[str]) -> None:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(None):
                walk(command.get_command(None, name), [*prefix, name])
        else:
            paths.append(prefix)

    walk(get_command(app), [])
    return paths


def test_help_does_not_import_the_database_stack() -> None:
    code = (  # the process ends in crmcli's exit: what it loaded is printed by an exit handler
        "import atexit, sys, runpy\n"
        "sys.argv = ['crmcli', '--help']\n"
        f"atexit.register(lambda: print('LOADED', sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))\n"
        "runpy.run_module('crmcli', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOADED []" in result.stdout, result.stdout[-500:]


def loaded_by(*args: str) -> set[str]:
    """The modules a run of ``crmcli ARGS`` imported."""
    code = (
        "import atexit, sys, runpy\n"
        f"sys.argv = ['crmcli', *{list(args)!r}]\n"
        "atexit.register(lambda: print('LOADED', ' '.join(sorted(sys.modules)), file=sys.stderr))\n"
        "runpy.run_module('crmcli', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line = next(line for line in result.stderr.splitlines() if line.startswith("LOADED "))
    return set(line.split()[1:])


def test_a_read_loads_only_what_it_uses(tmp_path: Path) -> None:
    db = str(tmp_path / "crm.db")
    config = tmp_path / "config.yaml"
    config.write_text("default_phone_region: US\n")  # checked without importing phonenumbers
    assert run("--db", db, "customer", "add", "Ann", "--email", "ann@example.com").returncode == 0
    loaded = loaded_by("--db", db, "--config", str(config), "customer", "show", "1")
    assert "crmcli.services.profile" in loaded and "rich.table" in loaded  # it did run, as a table
    assert "rich._emoji_codes" not in loaded  # titles and headers are text, not emoji codes
    # the schema is current: no Alembic; nothing parses emails, phones, amounts or file encodings
    unused = ("alembic", "email_validator", "phonenumbers", "babel", "charset_normalizer", "openpyxl", "numpy")
    assert not {m for m in loaded if m.split(".")[0] in unused}
    # only the command that runs is imported and built, not the other nouns
    assert not {m for m in loaded if m.startswith("crmcli.cli.")} - {
        "crmcli.cli.app",
        "crmcli.cli.context",
        "crmcli.cli.customer",
        "crmcli.cli.hints",
        "crmcli.cli.options",
        "crmcli.cli.process",
    }


def test_a_read_without_a_config_file_loads_no_yaml(tmp_path: Path) -> None:
    db = str(tmp_path / "crm.db")
    assert run("--db", db, "customer", "add", "Ann").returncode == 0
    loaded = loaded_by("--db", db, "customer", "show", "1")  # the test's config folder is empty
    assert "crmcli.services.profile" in loaded and "yaml" not in loaded
    config = tmp_path / "config.yaml"
    config.write_text("timezone: Europe/Paris\n")
    assert "yaml" in loaded_by("--db", db, "--config", str(config), "customer", "show", "1")


def test_help_lists_each_command_with_its_own_help() -> None:
    from crmcli.cli.app import COMMANDS, load_command

    for name, (_, _, line) in COMMANDS.items():
        assert (load_command(name).help or "").splitlines()[0] == line, name


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"crmcli {__version__}"


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(path: list[str]) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example" in result.stdout


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_is_documented(path: list[str]) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text(encoding="utf-8")
    assert f"crmcli {' '.join(path)}" in docs


def test_usage_error_exits_2(cli: Cli) -> None:
    assert cli("customer", "add").exit_code == 2
    assert cli("customer", "list", "--format", "xml").exit_code == 2
    assert cli("no-such-command").exit_code == 2


def test_missing_database_folder_is_a_one_line_error(tmp_path: Path) -> None:
    result = Cli(tmp_path / "missing" / "crm.db")("customer", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot open database")
    assert "does not exist" in result.stderr and result.stderr.count("\n") == 1


def test_traceback_only_with_debug(tmp_path: Path) -> None:
    db = str(tmp_path / "missing" / "crm.db")
    quiet = run("--db", db, "customer", "list")
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    loud = run("--db", db, "--debug", "customer", "list")
    assert loud.returncode != 0 and "Traceback" in loud.stderr
    env_debug = run("--db", db, "customer", "list", env={"CRMCLI_DEBUG": "1"})
    assert "Traceback" in env_debug.stderr


def test_db_from_env_and_python_m(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    added = run("customer", "add", "Ann", "-q", env={"CRMCLI_DB": str(db)})
    assert added.returncode == 0 and added.stdout == "1\n"
    listed = run("customer", "list", "-f", "json", env={"CRMCLI_DB": str(db)})
    assert [c["name"] for c in json.loads(listed.stdout)] == ["Ann"]


def test_demo_fills_once_and_refuses_real_data(cli: Cli, tmp_path: Path) -> None:
    first = cli.ok("demo", "--customers", "30", "-f", "json")
    summary = first.json()
    assert summary["customers"] == 30
    assert sum(s["customers"] for s in summary["stages"]) == 30
    assert summary["buyers"] > 0 and summary["orders"] >= summary["buyers"]
    assert sum(s["customers"] for s in summary["segments"]) == summary["buyers"]
    assert "Loaded 30 demo customers" in first.stderr
    again = cli.ok("demo", "--customers", "30", "-f", "json")
    assert again.json()["customers"] == 30 and "already" in again.stderr

    real = Cli(tmp_path / "real.db")
    real.ok("customer", "add", "A real customer")
    refused = real("demo")
    assert refused.exit_code == 1 and "already holds 1 real customer" in refused.stderr
    assert len(real.ok("customer", "list", "-f", "json").json()) == 1


def test_ci_runs_the_readme_test_command() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if "[test]" in line and "pytest" in line)
    assert command in ci.splitlines()


def test_default_database_on_a_fresh_machine(tmp_path: Path) -> None:
    """Regression: the user data folder does not exist yet on a new machine."""
    data_home = tmp_path / "fresh-home" / "data"
    result = run("customer", "add", "Ann", "-q", env={"XDG_DATA_HOME": str(data_home)})
    assert result.returncode == 0, result.stderr
    assert (data_home / "crmcli" / "crm.db").exists()
