"""Options with fixed choices list them in --help, accept any case and refuse others with exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crmcli.cli.app import app
from tests.conftest import Cli

STAGES = ("lead", "verified", "prospect", "customer", "repeat", "lost")
KINDS = ("call", "email", "meeting", "visit", "message", "complaint", "survey", "note")
ON_DUPLICATE = ("skip", "update", "error")
EXPORT_FORMATS = ("csv", "json")

# (command, how to pass a value, the choices)
CHOICES = [
    (["customer", "add", "Ann"], ["--stage"], STAGES),
    (["customer", "list"], ["--stage"], STAGES),
    (["customer", "edit", "1"], ["--stage"], STAGES),
    (["customer", "stage", "1"], [], STAGES),
    (["coupon", "issue", "--percent", "10"], ["--stage"], STAGES),
    (["interaction", "log", "1"], ["--kind"], KINDS),
    (["interaction", "list"], ["--kind"], KINDS),
    (["coupon", "list"], ["--status"], ("active", "used", "expired", "void")),
    (["referral", "list"], ["--status"], ("pending", "verified", "rejected")),
    (["customer", "import", "in.csv"], ["--on-duplicate"], ON_DUPLICATE),
    (["purchase", "import", "in.csv"], ["--on-duplicate"], ON_DUPLICATE),
    (["coupon", "import", "in.csv"], ["--on-duplicate"], ("skip", "error")),  # a coupon's terms are never rewritten
    (["customer", "export"], ["--format"], EXPORT_FORMATS),
    (["purchase", "export"], ["--format"], EXPORT_FORMATS),
]
IDS = [" ".join([c[0], c[1], *o]) for c, o, _ in CHOICES]


@pytest.mark.parametrize(("command", "option", "values"), CHOICES, ids=IDS)
def test_help_lists_the_choices(command: list[str], option: list[str], values: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command[:2], "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "|".join(values) in result.stdout


@pytest.mark.parametrize(("command", "option", "values"), CHOICES, ids=IDS)
def test_a_value_outside_the_choices_is_a_usage_error(
    cli: Cli, command: list[str], option: list[str], values: tuple[str, ...]
) -> None:
    message = cli.usage_error(*command, *option, "bogus")
    assert f"'bogus' is not one of {', '.join(repr(v) for v in values)}" in message


def test_choices_are_case_insensitive(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann", "--stage", "Prospect")
    cli.ok("customer", "stage", "1", "REPEAT")
    cli.ok("interaction", "log", "1", "--kind", "Complaint")
    assert [c["name"] for c in cli.ok("customer", "list", "--stage", "Repeat", "-f", "json").json()] == ["Ann"]
    assert len(cli.ok("interaction", "list", "--kind", "COMPLAINT", "-f", "json").json()) == 1
    assert cli.ok("coupon", "list", "--status", "Active", "-f", "json").json() == []
    assert cli.ok("referral", "list", "--status", "PENDING", "-f", "json").json() == []
    assert cli.ok("customer", "export", "--format", "JSON").json()[0]["stage"] == "repeat"


def test_coupon_issue_quiet_prints_only_the_codes(cli: Cli) -> None:
    """Regression: the docs say create commands take -q, and `coupon issue -q` was a usage error."""
    for name in ("Ann", "Bob"):
        cli.ok("customer", "add", name)
    codes = cli.ok("coupon", "issue", "--all", "--amount", "5", "-q").stdout.split()
    listed = {row["code"] for row in cli.ok("coupon", "list", "-f", "json").json()}
    assert len(codes) == 2 and set(codes) == listed
