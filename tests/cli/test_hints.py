"""The CLI words the next step of a domain error: a command to run, or its own flags."""

from __future__ import annotations

from typing import Any

from typer.main import get_command

from crmcli.cli.app import app
from crmcli.cli.hints import next_step
from crmcli.errors import Conflict, CrmError, ImportFailed, Invalid, NotFound


def command(*path: str) -> Any:
    found: Any = get_command(app)
    for name in path:
        found = found.get_command(None, name)
    return found


def test_a_missing_record_points_to_its_list() -> None:
    assert next_step(NotFound("no purchase 9", subject="purchase", key=9)) == "see 'crmcli purchase list'"
    assert next_step(NotFound("no customer 'x'", subject="customer", key="x")) == (
        "give an id, email, phone, ref or referral code; see 'crmcli customer list'"
    )


def test_a_clash_points_to_the_existing_record() -> None:
    clash = Conflict("customer 3 already has email a@b.com", subject="customer", key=3)
    assert next_step(clash) == "see 'crmcli customer show 3'"


def test_fields_become_the_running_command_s_flags() -> None:
    issue = command("coupon", "issue")
    error = Invalid("...", fields=("customer", "segment", "stage", "everyone"))
    assert next_step(error, issue) == "check --customer, --segment, --stage and --all"
    assert next_step(Invalid("...", fields=("min_spend",)), issue) == "check --min-spend"
    assert next_step(Invalid("...", fields=("new_stage",)), command("customer", "stage")) == "check STAGE"


def test_fields_the_command_does_not_take_give_no_hint() -> None:
    assert next_step(Invalid("...", fields=("limit",)), command("coupon", "issue")) is None
    assert next_step(Invalid("...", fields=("limit",))) is None


def test_an_explicit_hint_wins() -> None:
    assert next_step(CrmError("...", hint="restore from a backup", subject="customer")) == "restore from a backup"
    failed = ImportFailed("2 bad row(s)", [(2, "bad"), (3, "bad")])
    assert next_step(failed) == "fix them, or pass --skip-invalid FILE to import the good rows"
