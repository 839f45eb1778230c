from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli


@pytest.fixture
def ann(cli: Cli) -> int:
    return cli.new_id("customer", "add", "Ann", "--email", "ann@example.com")


def test_log_and_list(cli: Cli, ann: int) -> None:
    first = cli.new_id(
        "interaction", "log", "ann@example.com", "--kind", "call", "--summary", "hi", "--at", "2026-03-01T10:00"
    )
    cli.ok("interaction", "log", str(ann), "--kind", "SURVEY", "--rating", "5", "--at", "2026-03-02")
    rows = cli.ok("interaction", "list", "--sort", "id", "-f", "json").json()
    assert [r["kind"] for r in rows] == ["call", "survey"]
    assert rows[0]["id"] == first and rows[0]["at"] == "2026-03-01T10:00:00+00:00"
    assert rows[1]["rating"] == 5
    assert [r["kind"] for r in cli.ok("interaction", "list", "--kind", "survey", "-f", "json").json()] == ["survey"]
    assert len(cli.ok("interaction", "list", "--since", "2026-03-02", "-f", "json").json()) == 1


@pytest.mark.parametrize("rating", ["0", "6"])
def test_rating_out_of_range(cli: Cli, ann: int, rating: str) -> None:
    result = cli("interaction", "log", str(ann), "--kind", "survey", "--rating", rating)
    assert result.exit_code == 1
    assert result.stderr == f"Error: rating must be 1 to 5 (5 = completely satisfied), not {rating}\n"
    assert cli.ok("interaction", "list", "-f", "json").json() == []


def test_unknown_kind_and_bad_date(cli: Cli, ann: int) -> None:
    assert "'fax' is not one of 'call', 'email'," in cli.usage_error("interaction", "log", str(ann), "--kind", "fax")
    result = cli("interaction", "log", str(ann), "--kind", "call", "--at", "yesterday-ish")
    assert result.exit_code == 1 and "bad date or time 'yesterday-ish'" in result.stderr


def test_times_are_shown_in_the_business_timezone(tmp_path: Path, cli: Cli, ann: int) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("timezone: Asia/Shanghai\n")
    cli.config_path = config
    cli.ok("interaction", "log", str(ann), "--kind", "call", "--at", "2026-03-01T10:00")
    row = cli.ok("interaction", "list", "-f", "json").json()[0]
    assert row["at"] == "2026-03-01T10:00:00+08:00"


def test_complaint_response_and_resolution(cli: Cli, ann: int) -> None:
    cid = cli.new_id(
        "interaction", "log", str(ann), "--kind", "complaint", "--summary", "late", "--at", "2026-03-01T10:00"
    )
    assert [r["id"] for r in cli.ok("interaction", "list", "--open", "-f", "json").json()] == [cid]
    responded = cli.ok("interaction", "respond", str(cid), "--at", "2026-03-01T10:07", "-f", "json").json()
    assert responded["responded_at"] == "2026-03-01T10:07:00+00:00"
    assert responded["customer"] == "Ann"  # regression: the row showed no customer name
    again = cli("interaction", "respond", str(cid))
    assert again.exit_code == 1 and "already had its first response" in again.stderr
    resolved = cli.ok(
        "interaction", "resolve", str(cid), "--summary", "refunded", "--at", "2026-03-01T12:00", "-f", "json"
    ).json()
    assert resolved["resolved_at"] == "2026-03-01T12:00:00+00:00" and resolved["resolution"] == "refunded"
    assert resolved["customer"] == "Ann"
    assert cli("interaction", "resolve", str(cid)).exit_code == 1
    assert cli.ok("interaction", "list", "--open", "-f", "json").json() == []


def test_only_complaints_are_responded_to(cli: Cli, ann: int) -> None:
    call = cli.new_id("interaction", "log", str(ann), "--kind", "call")
    result = cli("interaction", "respond", str(call))
    assert result.exit_code == 1 and "is a call, not a complaint" in result.stderr
    assert "no interaction 999" in cli("interaction", "resolve", "999").stderr


def test_response_before_the_complaint_is_refused(cli: Cli, ann: int) -> None:
    cid = cli.new_id("interaction", "log", str(ann), "--kind", "complaint", "--at", "2026-03-01T10:00")
    result = cli("interaction", "respond", str(cid), "--at", "2026-03-01T09:00")
    assert result.exit_code == 1 and "before the complaint" in result.stderr


def test_resolving_also_counts_as_the_first_response(cli: Cli, ann: int) -> None:
    cid = cli.new_id("interaction", "log", str(ann), "--kind", "complaint", "--at", "2026-03-01T10:00")
    row = cli.ok("interaction", "resolve", str(cid), "--at", "2026-03-01T10:05", "-f", "json").json()
    assert row["responded_at"] == row["resolved_at"]


def test_followup_due_by_date_and_by_stage_cadence(cli: Cli) -> None:
    lead = cli.new_id("customer", "add", "Lead Lucy")  # cadence 2 days
    regular = cli.new_id("customer", "add", "Regular Rita", "--stage", "repeat")  # cadence 60 days
    cli.ok("interaction", "log", str(regular), "--kind", "visit", "--at", "-1d", "--follow-up", "+1d")
    now_rows = cli.ok("followup", "due", "-f", "json").json()
    assert now_rows == []
    result = cli("followup", "due", "--check")
    assert result.exit_code == 0

    later = cli.ok("followup", "due", "--as-of", "+5d", "-f", "json").json()
    assert [(r["customer_id"], r["reason"]) for r in later] == [(regular, "follow-up"), (lead, "no contact")]
    assert cli("followup", "due", "--as-of", "+5d", "--check").exit_code == 3

    # Logging a contact closes the follow-up and resets the quiet clock (a contact cannot be
    # dated more than a day ahead: it must have happened).
    cli.ok("interaction", "log", str(regular), "--kind", "call", "--at", "+1d")
    cli.ok("interaction", "log", str(lead), "--kind", "call", "--at", "+1d")
    assert cli.ok("followup", "due", "--as-of", "+2d", "-f", "json").json() == []
    assert cli("interaction", "log", str(lead), "--kind", "call", "--at", "+4d").exit_code == 1


def test_follow_up_before_the_interaction_is_refused(cli: Cli, ann: int) -> None:
    result = cli("interaction", "log", str(ann), "--kind", "call", "--at", "2026-03-05", "--follow-up", "2026-03-01")
    assert result.exit_code == 1 and "before the interaction" in result.stderr
