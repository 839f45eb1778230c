"""The terminal surface: tables at 80 and 120 columns, sorting and paging, fields, NDJSON
and TSV, formula cells, closed pipes, colour, help and shell completion."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crmcli.cli.app import app
from crmcli.render import Column, Format, Output, Shape, fit_columns
from tests.conftest import Cli

LONG_NAME = "Maximiliane Alexandra Vandenberghe-Oppenheimer"
FORMULA = '=HYPERLINK("http://evil.example","click")'

# every listing and report row set, with the JSON key holding its rows (None: the output is the list)
LISTINGS: list[tuple[list[str], str | None]] = [
    (["customer", "list"], None),
    (["customer", "duplicates"], None),
    (["purchase", "list"], None),
    (["interaction", "list"], None),
    (["followup", "due", "--as-of", "2030-01-01"], None),
    (["coupon", "list"], None),
    (["coupon", "stats"], None),
    (["referral", "list"], None),
    (["audit", "list"], None),
    (["report", "rfm"], None),
    (["report", "rfm", "--customers"], None),
    (["report", "value"], "groups"),
    (["report", "funnel"], "stages"),
    (["report", "referrals"], "top_referrers"),
    (["report", "payment"], "cells"),
    (["report", "satisfaction"], "distribution"),
    (["report", "sla"], "overdue"),
    (["report", "cohorts"], "cohorts"),
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shop with long names and text, a formula-looking name, purchases, contacts,
    complaints, coupons and a referral."""
    path = tmp_path_factory.mktemp("shop") / "crm.db"
    cli = Cli(path)
    people = [
        (LONG_NAME, "max.vandenberghe-oppenheimer@a-very-long-domain.example.com", "Riverton-upon-the-Long-River"),
        ("Ann Lee", "ann@example.com", "Leeds"),
        (FORMULA, "formula@example.com", "Nowhere"),
        ("Bob Stone", "bob@example.com", "York"),
        ("Bob Stone", "bob2@example.com", "York"),
    ]
    ids = []
    for name, email, city in people:
        ids.append(
            cli.new_id(
                "customer",
                "add",
                name,
                "--email",
                email,
                "--city",
                city,
                "--company",
                "International Widgets and Sprockets Limited",
                "--tag",
                "vip",
                "--tag",
                "wholesale",
            )
        )
    for n, cid in enumerate(ids):
        for month in range(1, 4 + n):
            cli.ok("purchase", "add", str(cid), f"{10 * (n + 1) + month}.50", "--at", f"2026-0{month}-1{n} 10:3{n}")
        cli.ok(
            "interaction",
            "log",
            str(cid),
            "--kind",
            "call",
            "--at",
            f"2026-04-0{n + 1} 09:15",
            "--summary",
            "asked about the long-sleeved winter jackets in every colour and size we stock",
            "--follow-up",
            "2026-05-01",
        )
    cli.ok(
        "interaction",
        "log",
        str(ids[0]),
        "--kind",
        "complaint",
        "--rating",
        "2",
        "--at",
        "2026-04-20",
        "--summary",
        "the parcel arrived two weeks late and the box was crushed",
    )
    cli.ok("interaction", "log", str(ids[1]), "--kind", "survey", "--rating", "5", "--at", "2026-04-21")
    cli.ok("coupon", "issue", "--all", "--percent", "10", "--expires", "2026-12-31", "--campaign", "spring-sale-2026")
    cli.ok("referral", "add", str(ids[1]), str(ids[3]))
    return path


@pytest.fixture
def run(shop: Path) -> Any:
    def invoke(*args: str, columns: int = 200, env: dict[str, str] | None = None) -> Any:
        result = CliRunner().invoke(app, ["--db", str(shop), *args], env={"COLUMNS": str(columns), **(env or {})})
        assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
        return result

    return invoke


def _rows_of(run: Any, args: list[str], key: str | None) -> list[dict[str, Any]]:
    data = json.loads(run(*args, "-f", "json").stdout)
    if key is None:
        return data if isinstance(data, list) else [data]
    return data[key]


# --- 1. tables for people ----------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize(("args", "key"), LISTINGS, ids=lambda a: " ".join(a) if isinstance(a, list) else str(a))
def test_no_value_is_split_across_lines(run: Any, args: list[str], key: str | None, columns: int) -> None:
    rows = _rows_of(run, args, key)
    if not rows:
        pytest.skip("nothing to list")
    table = run(*args, columns=columns, env={"NO_COLOR": "1"}).stdout
    lines = table.splitlines()
    assert all(len(line) <= columns for line in lines), table
    if key is None:  # a plain listing: one line per row, whatever the width
        body = [line for line in lines if line.strip() and not set(line.strip()) <= {"─"}]
        caption = [line for line in body if line.startswith("amounts in")]
        assert len(body) - len(caption) == len(rows) + 1, table  # a header and a line per row
    # ids and dates are never cut: each row's id, where shown, is whole on its line
    if key is None and "id" in rows[0] and re.match(r"\s*id\b", lines[0]):
        shown = [line.split()[0] for line in lines[2:] if line.strip() and not line.startswith("amounts in")]
        assert shown == [str(r["id"]) for r in rows], table


def test_purchase_list_at_80_columns_is_readable(run: Any) -> None:
    table = run("purchase", "list", columns=80).stdout
    assert "amounts in USD" in table
    assert re.search(r"^\s*\d+\s+2026-0\d-\d\d\s+\S", table, re.M), table  # dates as dates, one line each
    assert "T10:3" not in table and "+00:00" not in table  # no ISO timestamps in a table
    assert "…" in table  # the long name is cut, not wrapped
    header = table.splitlines()[0]
    assert "ref" not in header.split() and "net" in header.split()  # the least important columns go first


def test_json_and_csv_keep_full_timestamps(run: Any) -> None:
    row = json.loads(run("purchase", "list", "-f", "json").stdout)[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", row["at"])
    first = next(csv.DictReader(io.StringIO(run("purchase", "list", "-f", "csv").stdout)))
    assert first["at"] == row["at"]


def test_interaction_list_shows_the_time_of_day(run: Any) -> None:
    assert re.search(r"2026-04-\d\d 09:15", run("interaction", "list", columns=120).stdout)


def test_records_show_money_with_the_currency(run: Any) -> None:
    assert re.search(r"revenue\s+[\d.]+ USD", run("report").stdout)


def test_fit_drops_the_most_droppable_column_first() -> None:
    laid = [
        (Column("id", numeric=True), False, ["1"], False),
        (Column("name"), False, ["a rather long name of somebody"], True),
        (Column("note", drop=2), False, ["x" * 40], True),
        (Column("city", drop=1), False, ["Leeds"], True),
    ]
    widths = fit_columns(laid, 44)
    assert widths[2] is None and widths[0] == 2 and widths[3] == 5
    assert sum(w for w in widths if w) + 2 * 2 <= 44
    narrow = fit_columns(laid, 30)  # then the next optional one, then text is cut
    assert narrow[2] is None and narrow[3] is None and narrow[1] is not None and narrow[1] < 30


# --- 2. order and paging ------------------------------------------------------------------


@pytest.mark.parametrize("noun", ["purchase", "interaction", "audit", "coupon"])
def test_time_ordered_lists_are_newest_first(run: Any, noun: str) -> None:
    key = {"coupon": "issued_at"}.get(noun, "at")
    rows = json.loads(run(noun, "list", "-f", "json").stdout)
    stamps = [r[key] for r in rows]
    assert stamps == sorted(stamps, reverse=True)
    newest = json.loads(run(noun, "list", "-f", "json", "--limit", "2").stdout)
    assert newest == rows[:2]


def test_sort_offset_and_limit(run: Any) -> None:
    rows = json.loads(run("purchase", "list", "-f", "json").stdout)
    by_net = sorted(rows, key=lambda r: float(r["net"]))
    got = json.loads(run("purchase", "list", "-f", "json", "--sort", "net", "--offset", "2", "--limit", "3").stdout)
    assert [r["id"] for r in got] == [r["id"] for r in by_net[2:5]]
    down = json.loads(run("purchase", "list", "-f", "json", "--sort", "-net", "-n", "1").stdout)
    assert down[0]["id"] == by_net[-1]["id"]


def test_customer_sort_by_a_column_the_query_cannot_order_by(run: Any) -> None:
    rows = json.loads(run("customer", "list", "-f", "json", "--sort", "-city", "--limit", "2").stdout)
    everyone = json.loads(run("customer", "list", "-f", "json").stdout)
    assert [r["city"] for r in rows] == sorted((r["city"] for r in everyone), key=str.casefold, reverse=True)[:2]


def test_unknown_sort_field_names_the_valid_ones(shop: Path) -> None:
    result = Cli(shop)("purchase", "list", "--sort", "shoe_size")
    assert result.exit_code == 1 and "unknown sort field 'shoe_size'" in result.stderr and "net" in result.stderr


def test_pager_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    paged = tmp_path / "paged.txt"
    monkeypatch.setenv("CRMCLI_PAGER", f"cat > {paged}")
    monkeypatch.setenv("LINES", "10")
    rows = [{"id": n, "name": f"customer {n}"} for n in range(50)]
    Output(stdout=Terminal(), width=80).rows(rows)
    assert "customer 49" in paged.read_text()
    paged.unlink()
    screen = Terminal()
    Output(stdout=screen, width=80, pager=False).rows(rows)  # --no-pager
    assert "customer 49" in screen.getvalue() and not paged.exists()
    piped = io.StringIO()
    Output(stdout=piped, width=80).rows(rows)  # a pipe is never paged
    assert "customer 49" in piped.getvalue() and not paged.exists()


# --- 3. output a script can shape ----------------------------------------------------------


@pytest.mark.parametrize(("args", "key"), LISTINGS, ids=lambda a: " ".join(a) if isinstance(a, list) else str(a))
def test_fields_pick_and_order_every_row_set(run: Any, args: list[str], key: str | None) -> None:
    rows = _rows_of(run, args, key)
    if not rows:
        pytest.skip("nothing to list")
    names = list(rows[0])[:2][::-1]
    picked = json.loads(run(*args, "-f", "json", "--fields", ",".join(names)).stdout)
    assert [list(r) for r in picked] == [names] * len(picked) and len(picked) == len(rows)
    header = run(*args, "-f", "tsv", "--fields", ",".join(names)).stdout.splitlines()[0]
    assert header.split("\t") == names


def test_unknown_field_lists_the_valid_ones(shop: Path) -> None:
    result = Cli(shop)("customer", "list", "--fields", "id,shoe_size")
    assert result.exit_code == 1
    assert "unknown field 'shoe_size'" in result.stderr and "email" in result.stderr


def test_ndjson_is_one_object_per_line(run: Any) -> None:
    rows = json.loads(run("customer", "list", "-f", "json").stdout)
    lines = run("customer", "list", "-f", "ndjson").stdout.splitlines()
    assert [json.loads(line) for line in lines] == rows


def test_tsv_has_one_line_per_row(run: Any) -> None:
    out = run("interaction", "list", "-f", "tsv", "--fields", "id,summary").stdout.splitlines()
    assert out[0] == "id\tsummary" and all(line.count("\t") == 1 for line in out)


@pytest.mark.parametrize(
    "args",
    [["customer", "list"], ["interaction", "list"], ["followup", "due", "--as-of", "2030-01-01"], ["coupon", "list"]],
    ids=" ".join,
)
@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_formula_cells_are_neutralised(run: Any, args: list[str], fmt: str) -> None:
    out = run(*args, "-f", fmt).stdout
    assert FORMULA.replace('"', '""') not in out.replace("'=", "") or "'=HYPERLINK" in out
    for line in out.splitlines():
        for cell in next(csv.reader([line], delimiter="\t" if fmt == "tsv" else ",")):
            assert not cell.startswith(("=", "@")), line
    assert "'=HYPERLINK" in out


def test_negative_numbers_are_not_neutralised() -> None:
    from decimal import Decimal

    out = io.StringIO()
    Output(format=Format.csv, stdout=out).rows([{"amount": Decimal("-5.00"), "name": "-x"}])
    assert out.getvalue().splitlines()[1] == "-5.00,'-x"


def test_a_closed_pipe_exits_quietly_with_success(shop: Path) -> None:
    script = f"{sys.executable} -m crmcli --db {shop} customer list -f csv | head -1"
    for _ in range(3):
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", script + " > /dev/null"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "80"},
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_closed_pipe_on_a_big_listing_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    subprocess.run(
        [sys.executable, "-m", "crmcli", "--db", str(db), "demo", "--customers", "300"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{sys.executable} -m crmcli --db {db} purchase list -f csv | head -1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.startswith("id,") and result.stderr == ""


def test_no_color(run: Any) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    rows = [{"stage": "lead", "customers": 3}]
    columns = [Column("stage"), Column("customers", numeric=True, bar=True)]
    coloured, plain = Terminal(), Terminal()
    Output(stdout=coloured, width=80, pager=False).rows(rows, columns)
    Output(stdout=plain, width=80, pager=False, color=False).rows(rows, columns)
    if not os.environ.get("NO_COLOR"):
        assert "\x1b[" in coloured.getvalue()
    assert "\x1b[" not in plain.getvalue()
    assert run("--no-color", "customer", "list").exit_code == 0


# --- 4. help that teaches -------------------------------------------------------------------


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    return result.stdout


def test_help_lists_fixed_choices_and_no_type_placeholders() -> None:
    text = _help("customer", "list")
    assert "lead|verified|prospect|customer|repeat|lost" in text
    assert "table|json|ndjson|csv|tsv" in text
    assert "At Risk" in text and "High Churn Risk" in text
    assert "<bool>" not in text and "<str>" not in text
    assert "complaint" in _help("interaction", "list")
    assert "active|used|expired|void" in _help("coupon", "list")


@pytest.mark.parametrize(
    "group",
    ["customer", "interaction", "followup", "purchase", "coupon", "points", "referral", "report", "db", "audit"],
)
def test_every_group_help_has_an_example(group: str) -> None:
    text = _help(group)
    assert "Example: crmcli" in text and "<bool>" not in text


def test_every_listing_takes_the_shaping_options() -> None:
    for args, _ in LISTINGS:
        text = _help(*[a for a in args if not a.startswith("--") and not a[0].isdigit()])
        for option in ("--sort", "--offset", "--limit", "--fields", "--no-pager"):
            assert option in text, (args, option)


def _complete(shop: Path, *words: str) -> list[str]:
    env = {
        **os.environ,
        "_CRMCLI_COMPLETE": "complete_bash",
        "COMP_WORDS": " ".join(["crmcli", *words]),
        "COMP_CWORD": str(len(words)),
        "CRMCLI_DB": str(shop),
    }
    result = subprocess.run([sys.executable, "-m", "crmcli"], capture_output=True, text=True, env=env, timeout=60)
    return result.stdout.split()


def test_completion_of_stages_kinds_segments_reports_and_customers(shop: Path) -> None:
    assert _complete(shop, "customer", "list", "--stage", "pro") == ["prospect"]
    assert "complaint" in _complete(shop, "interaction", "list", "--kind", "")
    assert _complete(shop, "customer", "list", "--segment", "Hib") == ["Hibernating"]
    assert {"pareto", "rfm", "cohorts"} <= set(_complete(shop, "report", ""))
    assert _complete(shop, "customer", "show", "bo") == ["bob2@example.com", "bob@example.com"]
    assert _complete(shop, "purchase", "list", "--customer", "ann") == ["ann@example.com"]


def test_completion_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert _complete(missing, "customer", "show", "a") == []
    assert not missing.exists()


def test_shape_applies_sort_then_slice_then_fields() -> None:
    rows = [{"id": 1, "v": 3}, {"id": 2, "v": None}, {"id": 3, "v": 1}]
    got, columns = Shape(fields=("v",), sort="-v", offset=0, limit=2).apply(rows, [Column("id"), Column("v")])
    assert got == [{"v": 3}, {"v": 1}] and [c.key for c in columns] == ["v"]


def test_fields_on_an_empty_row_set_without_columns_give_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    Output(format=Format.json, stdout=out, shape=Shape(fields=("id",))).record({"overdue": []}, csv_rows="overdue")
    assert json.loads(out.getvalue()) == []


def test_a_title_or_header_with_colons_is_printed_as_written() -> None:
    """Rich would turn ":thumbs_up:" in a title or a column name into an emoji."""
    out = io.StringIO()
    record = {"note:smile:": "a value long enough for the title to fit on its line", "rows": [{"a:cake:": 1}]}
    Output(stdout=out, width=80).record(record, title="Coupon :thumbs_up:")
    text = out.getvalue()
    assert "Coupon :thumbs_up:" in text and "note:smile:" in text and "a:cake:" in text
