"""Fuzzing what users feed crmcli: no input ends in "Error: unexpected ...".

Hypothesis writes import files (random bytes, other encodings, NUL characters, huge
cells, unbalanced quotes, a thousand columns, odd dates and amounts) and argument
values. Every case must end in success, or in exit 1 with one ``Error:`` line (after
``line N: reason`` lines for bad rows), or exit 2 for a usage error; an all-or-nothing
import that fails leaves the database exactly as it was.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmcli.cli.app import app
from tests.conftest import Cli, Result

# No example database: examples can be megabytes, and each run should explore afresh.
FAST = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TABLES = ("customer", "purchase", "referral", "points_entry", "stage_change", "customer_tag")
ROW_PROBLEM = re.compile(r"line \d+: .+|\.\.\. and \d+ more|Warning: .+")

ODD_AMOUNTS = [
    "19.90",
    "0",
    "0.00",
    "-1",
    "1,234.50",
    "12,50",
    "1.234,50",
    "1,2,3",
    "1e5",
    "1E400",
    "NaN",
    "-inf",
    "Infinity",
    "9" * 40,
    "1000000000000.01",
    "¥88",
    "$ 5",
    "19.90 元",
    "RMB",
    "²",
    "١٢",
    "0x1F",
    "",
    " ",
    "--5",
    "5-",
    "1_000",
    "١٢٫٥",
    "1'000.00",
    "\u00a05",
]
ODD_DATES = [
    "2026-10-01",
    "2026/10/1",
    "2026/10/01 14:30",
    "2026年10月1日",
    "1.10.2026",
    "10/1/2026",
    "today",
    "yesterday",
    "+30d",
    "-7d",
    "+99999999999999d",
    "-999999999w",
    "9999-12-31",
    "0001-01-01",
    "2026-02-30",
    "2026-10-01 25:61",
    "2026-10-01T14:30:00+25:00",
    "20261001T1430",
    "T",
    "-",
    "+",
    "now",
    "",
    "٢٠٢٦-١٠-٠١",
    "2026-10-01\x00",
    "1" * 30,
    "2026-W40-1",
]
# Identifiers past the 64-bit id range and Unicode digits once reached int() and SQLite as they were.
BREAK_RESOLUTION = ["99999999999999999999", "²", "id:99999999999999999999", "id:²"]
CUSTOMER_IDS = [
    "1",
    "ann@example.com",
    "T-1",
    "0",
    "-1",
    "+12125550100",
    "",
    "nobody",
    "id:1",
    "code:X",
    *BREAK_RESOLUTION,
]
HUGE = "x" * 10_000_000
SURROGATE = b"\xff\xfe caf\xe9".decode("utf-8", "surrogateescape")
CUSTOMER_HEADER = ["name", "email", "phone", "company", "city", "source", "stage", "tags", "ref", "referred_by", "note"]
PURCHASE_HEADER = ["customer", "amount", "at", "due", "paid_at", "coupon", "ref"]


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    # Typer's test runner rebuilds the Click command tree on every call, four fifths of an
    # in-process run; the tree does not change, so build it once for the thousand calls here.
    command = typer.testing._get_command(app)
    patch = pytest.MonkeyPatch()
    patch.setattr(typer.testing, "_get_command", lambda _app: command)
    work = tmp_path_factory.mktemp("fuzz")
    cli = Cli(work / "crm.db")
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--ref", "T-1", "--phone", "+12125550100")
    cli.ok("customer", "add", "Bob", "--ref", "T-2")
    yield cli, work
    patch.undo()


def counts(db: Path) -> tuple[int, ...]:
    conn = sqlite3.connect(db)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES)
    finally:
        conn.close()


def breaks_resolution(text: str) -> bool:
    core = text.strip()
    return core.isdigit() and (not core.isdecimal() or len(core) > 18)


def check(result: Result) -> None:
    """Success, a usage error, or ``Error:`` last with only row problems before it."""
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr[-500:])
    assert "Error: unexpected" not in result.stderr, result.stderr[-500:]
    if result.exit_code == 1:
        lines = result.stderr.splitlines()
        assert lines and lines[-1].startswith("Error: "), result.stderr[-500:]
        assert len(lines[-1]) <= 510, "an error is one readable line"
        for line in lines[:-1]:
            assert ROW_PROBLEM.fullmatch(line) and len(line) <= 530, line


# --- files -----------------------------------------------------------------------


cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(ODD_AMOUNTS),
    st.sampled_from(ODD_DATES),
    st.sampled_from(CUSTOMER_IDS),
    st.text(alphabet="\",;\t\r\n\x00'=", max_size=4),
).filter(lambda cell: not breaks_resolution(cell))


@st.composite
def files(draw: st.DrawFn, header: list[str]) -> bytes:
    kind = draw(st.sampled_from(["rows", "rows", "rows", "bytes", "wide", "raw-quotes", "huge"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "huge":  # one 10 MB cell
        return (",".join(header[:2]) + "\n" + draw(st.sampled_from(["", '"'])) + HUGE + "\n").encode()
    columns = draw(st.lists(st.sampled_from([*header, "shoe size", ""]), min_size=1, max_size=len(header), unique=True))
    if kind == "wide":
        columns = [*columns, *(f"c{i}" for i in range(1000))]
    rows = draw(st.lists(st.lists(cells, max_size=len(columns) + 1), max_size=5))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    if kind == "raw-quotes":  # written by hand: quotes left open, cells running over lines
        text = "\n".join(delimiter.join(row) for row in [columns, *rows]) + draw(st.sampled_from(["", "\n", '"']))
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
        writer.writerows([columns, *rows])
        text = buffer.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "gb18030", "cp1252", "big5", "shift_jis"]))
    return text.encode(encoding, errors="replace")


options = st.fixed_dictionaries(
    {},
    optional={
        "--encoding": st.sampled_from(["utf-8", "latin-1", "gb18030", "utf-16", "rot13", "zlib", "klingon", "utf-32"]),
        "--delimiter": st.sampled_from([",", ";", "tab", ";;", '"', ""]),
        "--map": st.sampled_from(["shoe size=", "shoe size=note", "x", "=name", "amount=amount"]),
        "--dry-run": st.just(""),
        "--skip-invalid": st.just("REJECTS"),
        "--on-duplicate": st.sampled_from(["skip", "update", "error", "maybe"]),
    },
)


def import_args(opts: dict[str, str], work: Path) -> list[str]:
    args: list[str] = []
    for name, value in opts.items():
        if name == "--dry-run":
            args.append(name)
        elif name == "--skip-invalid":
            args += [name, str(work / "rejected.csv")]
        else:
            args += [name, value]
    return args


def run_import(fuzz: tuple[Cli, Path], command: str, data: bytes, opts: dict[str, str]) -> None:
    cli, work = fuzz
    path = work / f"{command}.csv"
    path.write_bytes(data)
    (work / "rejected.csv").unlink(missing_ok=True)
    before = counts(cli.db_path)
    result = cli(command, "import", str(path), *import_args(opts, work))
    check(result)
    if result.exit_code != 0 or "--dry-run" in opts:
        assert counts(cli.db_path) == before, "a refused or dry-run import wrote something"


@FAST
@given(data=files(CUSTOMER_HEADER), opts=options)
def test_customer_import_never_crashes(fuzz: tuple[Cli, Path], data: bytes, opts: dict[str, str]) -> None:
    run_import(fuzz, "customer", data, opts)


@FAST
@given(data=files(PURCHASE_HEADER), opts=options, comma=st.booleans())
def test_purchase_import_never_crashes(fuzz: tuple[Cli, Path], data: bytes, opts: dict[str, str], comma: bool) -> None:
    run_import(fuzz, "purchase", data, {**opts, **({"--decimal-comma": ""} if comma else {})})


# --- arguments -------------------------------------------------------------------


values = st.one_of(st.text(max_size=15), st.sampled_from([*ODD_AMOUNTS, *ODD_DATES, *CUSTOMER_IDS, SURROGATE]))
customer_values = values.filter(lambda value: not breaks_resolution(value))


@settings(FAST, max_examples=400)
@given(amount=values, at=st.one_of(st.none(), values), customer=st.sampled_from(CUSTOMER_IDS))
def test_purchase_add_never_crashes(fuzz: tuple[Cli, Path], amount: str, at: str | None, customer: str) -> None:
    cli, _ = fuzz
    check(cli("purchase", "add", customer, amount, *(["--at", at] if at is not None else [])))


@settings(FAST, max_examples=200)
@given(customer=customer_values)
def test_customer_show_never_crashes(fuzz: tuple[Cli, Path], customer: str) -> None:
    cli, _ = fuzz
    check(cli("customer", "show", customer))


@settings(FAST, max_examples=200)
@given(as_of=values)
def test_points_accrue_never_crashes(fuzz: tuple[Cli, Path], as_of: str) -> None:
    cli, _ = fuzz
    check(cli("points", "accrue", "--as-of", as_of))


@pytest.mark.parametrize("value", BREAK_RESOLUTION)
def test_customer_identifiers_beyond_the_id_range(fuzz: tuple[Cli, Path], value: str) -> None:
    cli, work = fuzz
    check(cli("customer", "show", value))
    check(cli("purchase", "add", value, "10"))
    (work / "by-id.csv").write_text(f"customer,amount\n{value},10\n", encoding="utf-8")
    check(cli("purchase", "import", str(work / "by-id.csv")))
    (work / "referred.csv").write_text(f"name,referred_by\nZed,{value}\n", encoding="utf-8")
    check(cli("customer", "import", str(work / "referred.csv")))


OPTION_TEMPLATES = [
    ["purchase", "list", "--since", "{}"],
    ["purchase", "pay", "{}"],
    ["purchase", "add", "1", "5", "--due", "{}"],
    ["interaction", "log", "1", "--kind", "call", "--at", "{}"],
    ["interaction", "log", "1", "--kind", "call", "--follow-up", "{}", "--rating", "{}"],
    ["coupon", "issue", "--customer", "1", "--percent", "{}"],
    ["coupon", "issue", "--customer", "1", "--amount", "{}", "--expires", "{}"],
    ["report", "pareto", "--as-of", "{}"],
    ["followup", "due", "--as-of", "{}"],
    ["referral", "verify", "{}"],
    ["points", "add", "1", "{}", "--reason", "x"],
    ["customer", "list", "--limit", "{}"],
]


@settings(FAST, max_examples=300)
@given(template=st.sampled_from(OPTION_TEMPLATES), value=values)
def test_other_values_never_crash(fuzz: tuple[Cli, Path], template: list[str], value: str) -> None:
    cli, _ = fuzz
    check(cli(*(value if part == "{}" else part for part in template)))
