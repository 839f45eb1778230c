"""Values typed on the command line: amounts, free orders, dates that cannot have happened, ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli


@pytest.fixture
def ann(cli: Cli) -> int:
    return cli.new_id("customer", "add", "Ann", "--email", "ann@example.com")


def purchases(cli: Cli) -> list[dict]:
    return cli.ok("purchase", "list", "--sort", "id", "-f", "json").json()


# --- amounts ---------------------------------------------------------------------


def test_a_decimal_comma_is_refused_not_deleted(cli: Cli, ann: int) -> None:
    # Regression: "12,50" was stored as 1250.00.
    result = cli("purchase", "add", "ann@example.com", "12,50")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: bad amount '12,50': ambiguous decimal comma; is it 12.50? "
        "Write that, or pass --decimal-comma (config number_format)"
    )
    assert purchases(cli) == []


def test_grouping_and_currency_signs_are_read(cli: Cli, ann: int) -> None:
    cli.ok("purchase", "add", str(ann), "1,234.50")
    cli.ok("purchase", "add", str(ann), "$19.90")
    cli.ok("purchase", "add", str(ann), "USD 5")
    assert [p["amount"] for p in purchases(cli)] == ["1234.50", "19.90", "5.00"]


def test_decimal_comma_per_command_globally_and_in_the_config(tmp_path: Path, cli: Cli, ann: int) -> None:
    cli.ok("purchase", "add", str(ann), "12,50", "--decimal-comma")
    cli.ok("--number-format", "decimal_comma", "purchase", "add", str(ann), "1.234,50")
    config = tmp_path / "config.yaml"
    config.write_text("number_format: decimal_comma\n")
    european = Cli(cli.db_path, config)
    european.ok("purchase", "add", str(ann), "€ 19,90")
    assert european("purchase", "add", str(ann), "19.90").exit_code == 1  # a point is now ambiguous
    european.ok("--number-format", "decimal_point", "purchase", "add", str(ann), "19.90")
    assert [p["amount"] for p in purchases(cli)] == ["12.50", "1234.50", "19.90", "19.90"]
    assert cli("--number-format", "swiss", "customer", "list").exit_code == 2


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("1e5", "exponents are not accepted"),
        ("inf", "not a number"),
        ("1000000000000.01", "more than 10^12"),
        ("99999999999999999999999999", "more than 10^12"),
        ("²", "use a number such as 19.90"),
    ],
)
def test_amounts_out_of_bounds_are_refused(cli: Cli, ann: int, amount: str, reason: str) -> None:
    result = cli("purchase", "add", str(ann), amount)
    assert result.exit_code == 1 and reason in result.stderr and "unexpected" not in result.stderr


def test_coupon_amounts_use_the_same_reading(cli: Cli, ann: int) -> None:
    result = cli("coupon", "issue", "--customer", str(ann), "--amount", "5,5")
    assert result.exit_code == 1 and "bad --amount '5,5': ambiguous decimal comma" in result.stderr
    cli.ok("--number-format", "decimal_comma", "coupon", "issue", "--customer", str(ann), "--amount", "5,50")


# --- free orders -----------------------------------------------------------------


def test_a_free_order_counts_as_a_purchase_and_earns_nothing(cli: Cli, ann: int) -> None:
    cli.ok("purchase", "add", str(ann), "0.00")
    (free,) = purchases(cli)
    assert (free["amount"], free["net"]) == ("0.00", "0.00")
    profile = cli.ok("customer", "show", str(ann), "-f", "json").json()
    assert profile["points"] == 0 and profile["stage"] == "customer"


# --- dates -----------------------------------------------------------------------


def test_spreadsheet_dates_on_the_command_line(cli: Cli, ann: int) -> None:
    cli.ok("purchase", "add", str(ann), "10", "--at", "2026/10/1 14:30")
    cli.ok("purchase", "add", str(ann), "10", "--at", "2026年10月2日")
    cli.ok("--date-order", "dmy", "purchase", "add", str(ann), "10", "--at", "3.10.2026")
    refused = cli("purchase", "add", str(ann), "10", "--at", "3.10.2026")
    assert refused.exit_code == 1 and "date_order: dmy or mdy" in refused.stderr
    assert [p["at"][:16] for p in purchases(cli)] == ["2026-10-01T14:30", "2026-10-02T00:00", "2026-10-03T00:00"]


@pytest.mark.parametrize(
    "args",
    [
        ["purchase", "add", "1", "10", "--at", "+3d"],
        ["purchase", "add", "1", "10", "--paid", "2200-01-01"],
        ["interaction", "log", "1", "--kind", "call", "--at", "+2d"],
        ["points", "accrue", "--as-of", "+40d"],
    ],
    ids=["purchase-at", "purchase-paid", "interaction-at", "accrue-as-of"],
)
def test_what_has_happened_cannot_be_dated_in_the_future(cli: Cli, ann: int, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 1 and "is in the future" in result.stderr


def test_future_due_dates_follow_ups_and_expiries_stay_allowed(cli: Cli, ann: int) -> None:
    cli.ok("purchase", "add", str(ann), "10", "--due", "+30d")
    cli.ok("interaction", "log", str(ann), "--kind", "call", "--follow-up", "+30d")
    cli.ok("coupon", "issue", "--customer", str(ann), "--percent", "10", "--expires", "2027/6/30")
    pid = purchases(cli)[0]["id"]
    assert cli("purchase", "pay", str(pid), "--at", "+5d").exit_code == 1


@pytest.mark.parametrize("when", ["9999-12-31", "+99999999999d", "-99999999w", "1066-10-14"])
def test_years_out_of_range_are_refused_not_overflowing(cli: Cli, ann: int, when: str) -> None:
    for args in (["purchase", "add", str(ann), "10", "--at", when], ["report", "pareto", "--as-of", when]):
        result = cli(*args)
        assert result.exit_code == 1 and "years from 1900 to 2200" in result.stderr, result.stderr


# --- ids and counts --------------------------------------------------------------


@pytest.mark.parametrize("value", ["99999999999999999999", "9223372036854775808", "0", "²", "٣", "1.5", "x"])
@pytest.mark.parametrize("command", [["purchase", "refund"], ["interaction", "respond"], ["referral", "verify"]])
def test_ids_out_of_range_are_usage_errors(cli: Cli, command: list[str], value: str) -> None:
    result = cli(*command, value)
    assert result.exit_code == 2 and "unexpected" not in result.stderr


def test_negative_ids_and_counts_are_usage_errors(cli: Cli, ann: int) -> None:
    assert cli("purchase", "refund", "-1").exit_code == 2
    assert cli("purchase", "refund", "--", "-1").exit_code == 2
    assert cli("points", "add", str(ann), "99999999999999999999", "--reason", "x").exit_code == 2
    assert cli("purchase", "list", "--limit", "99999999999999999999").exit_code == 2
    assert cli("purchase", "add", str(ann), "10", "--points", "٣").exit_code == 2
    assert cli("purchase", "refund", "9223372036854775807").exit_code == 1  # in range: not found


def test_arguments_that_are_not_utf8_are_refused(cli: Cli, ann: int) -> None:
    undecodable = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of Latin-1 bytes in argv
    result = cli("customer", "add", undecodable)
    assert result.exit_code == 2 and "is not valid UTF-8 text" in result.stderr
    assert cli("purchase", "add", str(ann), "10", "--ref", undecodable).exit_code == 2


# --- phones ----------------------------------------------------------------------


def test_phones_without_a_region_match_by_digits_and_say_how_to_set_it(cli: Cli) -> None:
    first = cli("customer", "add", "Wang", "--phone", "13800138000")
    assert first.exit_code == 0 and "set default_phone_region" in first.stderr
    again = cli("customer", "add", "Wang Again", "--phone", "138 0013 8000")
    assert again.exit_code == 1 and "already has phone 13800138000" in again.stderr
    short = cli("customer", "add", "Short", "--phone", "12345")
    assert short.exit_code == 1 and "too short" in short.stderr


@pytest.mark.parametrize(
    ("percent", "reason"),
    [("inf", "not a number"), ("NaN", "not a number"), ("1e2", "exponents"), ("12,5", "ambiguous decimal comma")],
)
def test_coupon_percentages_are_read_like_amounts(cli: Cli, ann: int, percent: str, reason: str) -> None:
    # Regression: --percent inf ended in "unexpected OverflowError".
    result = cli("coupon", "issue", "--customer", str(ann), "--percent", percent)
    assert result.exit_code == 1 and reason in result.stderr
    cli.ok("coupon", "issue", "--customer", str(ann), "--percent", "12.5%")
