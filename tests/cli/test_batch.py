"""crmcli batch: JSON commands in, one JSON result per line out, in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, Result


def lines(*commands: Any) -> str:
    return "".join((c if isinstance(c, str) else json.dumps(c)) + "\n" for c in commands)


def run_batch(cli: Cli, *commands: Any, options: tuple[str, ...] = ()) -> tuple[Result, list[dict[str, Any]]]:
    result = cli("batch", *options, input=lines(*commands))
    return result, [json.loads(line) for line in result.stdout.splitlines()]


def cmd(command: str, /, **args: Any) -> dict[str, Any]:
    return {"cmd": command, "args": args}


@pytest.fixture
def shop(cli: Cli) -> Cli:
    cli.ok("customer", "add", "Ann Lee", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob Wu", "--email", "bob@example.com")
    return cli


def purchases(cli: Cli) -> list[dict[str, Any]]:
    return cli.ok("purchase", "list", "-f", "json").json()  # type: ignore[no-any-return]


def test_results_are_the_commands_json_output(shop: Cli) -> None:
    result, out = run_batch(
        shop,
        cmd("purchase add", customer="ann@example.com", amount="59.90"),
        cmd("customer add", name="Cy", email="cy@example.com", tag=["vip", "new"], quiet=True),
        cmd("customer show", customer="cy@example.com"),
        cmd("purchase list"),
    )
    assert result.exit_code == 0, result.stderr
    assert [r["line"] for r in out] == [1, 2, 3, 4] and all(r["ok"] for r in out)
    assert out[0]["result"]["net"] == "59.90" and out[0]["result"]["customer"] == "Ann Lee"
    assert out[1]["result"] == 3  # --quiet: the new id
    assert out[2]["result"]["tags"] == ["new", "vip"]
    # what a batch line returns is what the command prints with --format json
    assert out[3]["result"] == purchases(shop)
    assert shop.ok("customer", "show", "3", "-f", "json").json() == out[2]["result"]


def test_options_by_name_or_flag_and_positional_values_that_look_like_options(shop: Cli) -> None:
    result, out = run_batch(
        shop,
        cmd("purchase add", customer="1", amount="10", at="2026-01-05", paid="2026-01-06"),
        cmd("purchase add", customer="1", amount="20", at="2026-01-05", paid_at="2026-01-07", ref="-7"),
        cmd("purchase add", customer=2, amount=5.5, unpaid=True, due="+30d"),
    )
    assert result.exit_code == 0, out
    assert out[0]["result"]["paid_at"].startswith("2026-01-06")
    assert out[1]["result"]["paid_at"].startswith("2026-01-07") and out[1]["result"]["ref"] == "-7"
    assert out[2]["result"]["amount"] == "5.50" and out[2]["result"]["paid_at"] is None


def test_errors_are_results_and_the_batch_goes_on(shop: Cli) -> None:
    result, out = run_batch(
        shop,
        cmd("purchase add", customer="nobody@example.com", amount="10"),
        cmd("purchase add", customer="1", amount="10", points="lots"),
        cmd("purchase add", customer="1", amount="10", colour="red"),
        cmd("purchase add", customer="1"),
        cmd("purchase add", customer="1", amount="10"),
    )
    assert result.exit_code == 1
    assert out[0] == {
        "line": 1,
        "ok": False,
        "exit": 1,
        "error": "no customer 'nobody@example.com' "
        "(give an id, email, phone, ref or referral code; see 'crmcli customer list')",
    }
    assert out[1]["exit"] == 2 and "'--points'" in out[1]["error"] and "whole number" in out[1]["error"]
    assert out[2]["exit"] == 2 and "no argument 'colour'" in out[2]["error"] and "coupon" in out[2]["error"]
    assert out[3] == {"line": 4, "ok": False, "error": "Missing argument 'amount'.", "exit": 2}  # as typed
    assert out[4]["ok"] is True
    assert len(purchases(shop)) == 1  # each command commits on its own


def test_a_malformed_line_names_its_line_number(shop: Cli) -> None:
    result, out = run_batch(shop, cmd("customer show", customer="1"), "", '{"cmd": "customer show", ', "[1, 2]")
    assert result.exit_code == 1
    assert [r["line"] for r in out] == [1, 3, 4]  # a blank line is skipped, and still counted
    assert out[1]["ok"] is False and out[1]["exit"] == 2
    assert out[1]["error"].startswith("line 3: not valid JSON")
    assert out[2]["error"].startswith('line 4: expected an object like {"cmd"')


def test_an_unknown_command_lists_the_valid_ones(shop: Cli) -> None:
    _, out = run_batch(shop, cmd("purchase ad"), cmd("frobnicate"), cmd("purchase"), cmd("batch"))
    assert out[0]["exit"] == 2
    assert out[0]["error"].startswith("unknown command 'purchase ad'; valid commands: purchase add, purchase pay")
    assert "customer show" in out[1]["error"] and "report rfm" in out[1]["error"]
    assert "'purchase' needs a subcommand" in out[2]["error"] and "purchase refund" in out[2]["error"]
    assert out[3]["error"].startswith("unknown command 'batch'")  # no batch inside a batch
    assert "batch" not in out[1]["error"].split("valid commands:")[1]


def test_atomic_is_all_or_nothing(shop: Cli) -> None:
    result, out = run_batch(
        shop,
        cmd("purchase add", customer="1", amount="10"),
        cmd("customer add", name="Cy", email="cy@example.com"),
        cmd("purchase add", customer="cy@example.com", amount="5"),
        cmd("purchase add", customer="nobody@example.com", amount="10"),
        cmd("purchase add", customer="1", amount="30"),
        options=("--atomic",),
    )
    assert result.exit_code == 1
    assert [r["error"] for r in out[:3]] == ["rolled back: line 4 failed"] * 3
    assert out[3]["line"] == 4 and out[3]["error"].startswith("no customer 'nobody@example.com'")
    assert len(out) == 4  # nothing after the failing line runs
    assert purchases(shop) == []
    assert [c["name"] for c in shop.ok("customer", "list", "-f", "json").json()] == ["Ann Lee", "Bob Wu"]
    assert shop.ok("audit", "list", "-f", "json").json()[0]["command"].startswith("crmcli customer add")


def test_atomic_commits_once_and_later_commands_see_earlier_ones(shop: Cli) -> None:
    result, out = run_batch(
        shop,
        cmd("customer add", name="Cy", email="cy@example.com", quiet=True),
        cmd("purchase add", customer="cy@example.com", amount="5"),
        cmd("customer show", customer="cy@example.com"),
        options=("--atomic",),
    )
    assert result.exit_code == 0, out
    assert out[2]["result"]["totals"]["orders"] == 1 and out[2]["result"]["stage"] == "customer"
    assert [p["customer"] for p in purchases(shop)] == ["Cy"]


def test_atomic_refuses_a_command_that_ends_the_transaction_itself(shop: Cli) -> None:
    result, out = run_batch(
        shop,
        cmd("purchase add", customer="1", amount="10"),
        cmd("customer merge", keep="1", drop="2", dry_run=True),
        options=("--atomic",),
    )
    assert result.exit_code == 1
    assert out[1]["ok"] is False and "dry run" in out[1]["error"]
    assert purchases(shop) == []
    _, out = run_batch(shop, cmd("db check"), options=("--atomic",))
    assert "cannot run inside an atomic batch" in out[0]["error"]


def test_audit_entries_are_those_of_the_single_commands(shop: Cli, cli: Cli, tmp_path: Path) -> None:
    single = Cli(tmp_path / "single.db")
    single.ok("customer", "add", "Ann Lee", "--email", "ann@example.com")
    single.ok("customer", "add", "Bob Wu", "--email", "bob@example.com")
    single.ok("purchase", "add", "1", "10", "-f", "json")
    single.ok("customer", "edit", "2", "--city", "Oslo", "-f", "json")
    run_batch(shop, cmd("purchase add", customer="1", amount="10"), cmd("customer edit", customer="2", city="Oslo"))
    run_batch(
        shop,
        cmd("purchase add", customer="1", amount="10"),
        cmd("customer edit", customer="2", city="Oslo"),
        options=("--atomic",),
    )

    def log(c: Cli) -> list[tuple[str, list[str]]]:
        entries = c.ok("audit", "list", "-f", "json").json()
        return [
            (e["command"], sorted(f"{r['table']}:{r['op']}" for r in e["details"]["records"]))
            for e in reversed(entries)
        ]

    expected = log(single)[2:]
    assert len(expected) == 2
    assert log(shop)[2:] == expected * 2  # each command one entry, in atomic mode too


def test_decimal_comma_of_one_line_does_not_leak_into_the_next(shop: Cli) -> None:
    _, out = run_batch(
        shop,
        cmd("purchase add", customer="1", amount="1.234,50", decimal_comma=True),
        cmd("purchase add", customer="1", amount="12.50"),
    )
    assert [r["result"]["amount"] for r in out] == ["1234.50", "12.50"]


def test_commands_never_read_the_batch_as_their_input(shop: Cli) -> None:
    # merge asks for confirmation on a terminal; in a batch it is refused as off a terminal
    result, out = run_batch(shop, cmd("customer merge", keep="1", drop="2"), cmd("customer show", customer="2"))
    assert "pass --yes" in out[0]["error"] and out[1]["ok"] is True


def test_batch_from_a_file_and_messages(shop: Cli, tmp_path: Path) -> None:
    file = tmp_path / "commands.jsonl"
    file.write_text(lines(cmd("customer add", name="Dee", phone="555 0101")), encoding="utf-8")
    result = shop("batch", str(file))
    assert result.exit_code == 0
    (out,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert out["result"]["phone"] == "5550101"
    assert any("region" in m for m in out["messages"])  # what the command said on stderr
    missing = shop("batch", str(tmp_path / "missing.jsonl"))
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: ")


def test_a_closed_pipe_stops_the_batch_and_says_so(tmp_path: Path) -> None:
    """Regression: a batch whose reader went away stopped with exit 0, so a script could not
    tell that the rest of its commands never ran (a listing cut short is not a failure; this is)."""
    db = tmp_path / "pipe.db"
    env = {**os.environ, "CRMCLI_DB": str(db)}
    subprocess.run([sys.executable, "-m", "crmcli", "customer", "add", "Ann"], env=env, check=True, capture_output=True)
    commands = tmp_path / "commands.jsonl"
    commands.write_text(lines(*[cmd("customer show", customer="1")] * 500), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crmcli", "batch", str(commands)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as with `| head -1`
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert json.loads(first)["ok"] is True
    message = err.decode()
    assert message.startswith("Error: the output was closed while the result of line ")  # one line, no traceback
    assert message.rstrip("\n").endswith("the lines after it were not run") and message.count("\n") == 1
    assert proc.returncode == 1


def test_a_check_that_finds_something_fails_with_its_rows(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann Lee")
    _, out = run_batch(cli, cmd("followup due", as_of="+400d", check=True), cmd("followup due", check=False))
    assert out[0]["ok"] is False and out[0]["exit"] == 3 and out[0]["error"] == "exit status 3"
    assert [row["customer"] for row in out[0]["result"]] == ["Ann Lee"]
    assert out[1]["ok"] is True


def test_a_byte_order_mark_is_skipped_and_bytes_that_are_not_utf8_are_one_error(shop: Cli, tmp_path: Path) -> None:
    _, out = run_batch(shop, "\ufeff" + json.dumps(cmd("customer show", customer="1")))
    assert out[0]["ok"] is True
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(json.dumps(cmd("customer add", name="X")).encode() + b"\n" + b'{"cmd": "customer add \xe9"}\n')
    result = shop("batch", str(bad))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the commands are not UTF-8 text") and result.stderr.count("\n") == 1


def test_a_dry_run_inside_an_atomic_batch_writes_nothing_and_the_batch_goes_on(cli: Cli) -> None:
    """A command that undoes its own work (daily --dry-run) undoes only that: its tenure points
    are not kept, the commands around it are, each with its audit entry."""
    cli.ok("customer", "add", "Old Timer", "--at", "2025-01-01")
    result, out = run_batch(
        cli,
        cmd("customer add", name="Zed", quiet=True),
        cmd("daily", dry_run=True),
        cmd("customer add", name="Yan", quiet=True),
        options=("--atomic",),
    )
    assert result.exit_code == 0 and [line["ok"] for line in out] == [True, True, True]
    assert out[1]["result"]["tenure_points"]["points"] > 0  # what it would have given
    assert cli.ok("points", "show", "1", "-f", "json").json()["balance"] == 0
    assert [c["name"] for c in cli.ok("customer", "list", "--sort", "id", "-f", "json").json()] == [
        "Old Timer",
        "Zed",
        "Yan",
    ]
    commands = [e["command"] for e in cli.ok("audit", "list", "-f", "json").json()]
    assert len(commands) == 3 and not any("daily" in c for c in commands)


def test_a_purchase_import_inside_an_atomic_batch_sees_earlier_lines_and_rolls_back_with_them(
    shop: Cli, tmp_path: Path
) -> None:
    sales = tmp_path / "sales.csv"
    sales.write_text("customer,amount,coupon,coupon_discount\ncy@example.com,20.00,,\n1,30.00,WELCOME5,5.00\n")
    steps = (
        cmd("customer add", name="Cy", email="cy@example.com"),
        cmd("purchase import", file=str(sales)),
        cmd("customer show", customer="cy@example.com"),
    )
    result, out = run_batch(
        shop, *steps, cmd("purchase add", customer="nobody@example.com", amount="1"), options=("--atomic",)
    )
    assert result.exit_code == 1 and out[1]["error"] == "rolled back: line 4 failed"
    assert purchases(shop) == [] and len(shop.ok("customer", "list", "-f", "json").json()) == 2

    result, out = run_batch(shop, *steps, options=("--atomic",))
    assert result.exit_code == 0, out
    assert out[1]["result"]["inserted"] == 2 and out[2]["result"]["totals"]["orders"] == 1
    assert sorted(p["net"] for p in purchases(shop)) == ["20.00", "25.00"]


def test_a_batch_keeps_more_sqlite_statements_prepared_than_one_command(
    shop: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy

    from crmcli.cli.batch import BATCH_STATEMENT_CACHE
    from crmcli.db import DEFAULT_STATEMENT_CACHE

    made: list[Any] = []
    create = sqlalchemy.create_engine

    def recording(url: Any, **kw: Any) -> Any:
        made.append(kw.get("connect_args", {}).get("cached_statements"))
        return create(url, **kw)

    monkeypatch.setattr(sqlalchemy, "create_engine", recording)
    shop.ok("purchase", "add", "ann@example.com", "5.00")
    result, out = run_batch(shop, cmd("purchase add", customer="ann@example.com", amount="59.90"))
    assert result.exit_code == 0 and out[0]["ok"]
    assert made == [DEFAULT_STATEMENT_CACHE, BATCH_STATEMENT_CACHE]
    assert made[1] > made[0]  # the batch keeps more prepared than a single command


def test_a_number_is_read_with_the_digits_it_was_written_with(shop: Cli) -> None:
    """Regression: JSON numbers went through a float, so `19.999999999999999` was recorded as
    20.00 and `1e3` as 1000.00, while the same text in quotes is refused."""
    _, out = run_batch(
        shop,
        '{"cmd": "purchase add", "args": {"customer": "1", "amount": 59.90}}',
        '{"cmd": "purchase add", "args": {"customer": "1", "amount": 19.999999999999999}}',
        cmd("purchase add", customer="1", amount="19.999999999999999"),
        '{"cmd": "purchase add", "args": {"customer": "1", "amount": 1e3}}',
        cmd("purchase add", customer="1", amount="1e3"),
    )
    assert out[0]["result"]["amount"] == "59.90"
    assert [o["ok"] for o in out[1:]] == [False] * 4
    assert out[1]["error"] == out[2]["error"] and out[3]["error"] == out[4]["error"]
