"""Import files as shops and pipelines make them: encodings, decimal commas, empty files,
standard input, rejected-rows files, and Excel workbooks."""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli

GERMAN = "name,city\nGünter Müller,Köln\nJosé Núñez,Málaga\n"


def write(tmp_path: Path, text: str, name: str = "in.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def customers(cli: Cli) -> list[dict[str, Any]]:
    return cli.ok("customer", "list", "-f", "json").json()


def purchases(cli: Cli) -> list[dict[str, Any]]:
    return cli.ok("purchase", "list", "--sort", "id", "-f", "json").json()


def count(cli: Cli, table: str) -> int:
    conn = sqlite3.connect(cli.db_path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def shop(cli: Cli) -> Cli:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--ref", "T-1")
    return cli


# --- encodings -------------------------------------------------------------------


def test_windows_1252_is_not_read_as_gb18030(cli: Cli, tmp_path: Path) -> None:
    # Regression: "Günter Müller, Köln" was stored as "G黱ter M黮ler, K鰈n" with exit 0.
    cli.ok("customer", "import", str(write(tmp_path, GERMAN, encoding="cp1252")))
    assert [(c["name"], c["city"]) for c in customers(cli)] == [("Günter Müller", "Köln"), ("José Núñez", "Málaga")]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_excel_unicode_text_is_utf16_with_bom_and_tabs(cli: Cli, tmp_path: Path, encoding: str) -> None:
    text = "\ufeffname\tcity\n王小明\t北京\nGünter\tKöln\n" if encoding != "utf-16" else "name\tcity\n王小明\t北京\n"
    cli.ok("customer", "import", str(write(tmp_path, text, encoding=encoding)))
    assert customers(cli)[0]["name"] == "王小明"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("name,city\n王小明,台北\n陳大文,高雄\n", "big5"),
        ("name,city\n山田太郎,東京\n鈴木花子,大阪\n", "shift_jis"),
        ("name,city,note\n张伟,广州市,老客户，喜欢绿茶\n刘洋,深圳,新客户\n", "gb18030"),
    ],
)
def test_east_asian_encodings_are_detected(cli: Cli, tmp_path: Path, text: str, encoding: str) -> None:
    cli.ok("customer", "import", str(write(tmp_path, text, encoding=encoding)))
    expected = [tuple(line.split(",")[:2]) for line in text.splitlines()[1:]]
    assert [(c["name"], c["city"]) for c in customers(cli)] == expected


def test_an_unclear_encoding_is_refused_with_the_ones_that_fit(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name\nAnn\n王\n", encoding="gbk")
    result = cli("customer", "import", str(file))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {file}: the encoding is unclear: it reads as gb18030 or big5 or cp1252; most likely gb18030 "
        "(pass --encoding, for example utf-8, gb18030, big5, shift_jis or cp1252)\n"
    )
    assert customers(cli) == []
    cli.ok("customer", "import", str(file), "--encoding", "gbk")


@pytest.mark.parametrize("codec", ["rot13", "zlib", "uu", "base64", "undefined", "unicode_escape"])
def test_only_text_encodings_can_be_forced(cli: Cli, tmp_path: Path, codec: str) -> None:
    result = cli("customer", "import", str(write(tmp_path, GERMAN)), "--encoding", codec)
    assert result.exit_code == 1 and "is not a text encoding" in result.stderr


def test_a_forced_wrong_encoding_names_the_line(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name\nAnn\nBob\nGünter\n", encoding="cp1252")
    result = cli("customer", "import", str(file), "--encoding", "utf-8")
    assert result.exit_code == 1 and f"{file} line 4: not valid utf-8" in result.stderr


# --- amounts and dates in files --------------------------------------------------


def test_a_decimal_comma_file_is_refused_then_read_with_the_option(shop: Cli, tmp_path: Path) -> None:
    # Regression: a ;-delimited file from a decimal-comma Excel imported 19,90 as 1990.00 with exit 0.
    file = write(tmp_path, "customer;amount;at\nT-1;19,90;2026-01-05\nT-1;1.234,50;2026-01-06\n")
    result = shop("purchase", "import", str(file))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "line 2: bad amount '19,90': ambiguous decimal comma; is it 19.90? "
        "Write that, or pass --decimal-comma (config number_format)"
    )
    assert purchases(shop) == []
    shop.ok("purchase", "import", str(file), "--decimal-comma")
    assert [p["amount"] for p in purchases(shop)] == ["19.90", "1234.50"]


def test_currency_signs_grouping_and_spreadsheet_dates_in_a_file(tmp_path: Path, shop: Cli) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("date_order: dmy\ncurrency: {code: CNY, minor_digits: 2}\n")
    cli = Cli(shop.db_path, config)
    file = write(
        tmp_path,
        'customer,amount,at\nT-1,¥88.80,2026/10/1 14:30\nT-1,"1,234.50 元",2026年10月2日\nT-1,CNY 5,3.10.2026\n',
    )
    cli.ok("purchase", "import", str(file))
    rows = purchases(cli)
    assert [p["amount"] for p in rows] == ["88.80", "1234.50", "5.00"]
    assert [p["at"][:16] for p in rows] == ["2026-10-01T14:30", "2026-10-02T00:00", "2026-10-03T00:00"]


def test_free_orders_import_and_earn_nothing(shop: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "customer,amount,at\nT-1,0.00,2026-01-05\nT-1,10.00,2026-01-06\n")
    summary = shop.ok("purchase", "import", str(file), "-f", "json").json()
    assert (summary["inserted"], summary["rejected"]) == (2, 0)
    assert [p["amount"] for p in purchases(shop)] == ["0.00", "10.00"]
    ann = shop.ok("customer", "show", "1", "-f", "json").json()
    assert ann["points"] == 1 and ann["stage"] == "repeat"


def test_bad_values_in_a_file_name_their_line_and_column(shop: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "customer,amount,at,due,paid_at\n"
        "T-1,1e5,,,\n"
        "T-1,5,2999-01-01,,\n"
        "T-1,5,+3d,,\n"
        "T-1,5,2026-01-01,,2026-13-01\n"
        "T-1,5,2026-01-01,soon,\n"
        "T-1,NaN,,,\n",
    )
    lines = shop("purchase", "import", str(file)).stderr.splitlines()
    assert lines[:6] == [
        "line 2: bad amount '1e5': exponents are not accepted; write the number out",
        "line 3: at: bad date '2999-01-01': years from 1900 to 2200 only",
        f"line 4: at {lines[2].split()[3]} is in the future: only what has happened can be recorded",
        "line 5: paid_at: bad date '2026-13-01': there is no such day",
        "line 6: due: bad date or time 'soon': use YYYY-MM-DD, 2026/10/1, 2026年10月1日, "
        "an ISO timestamp, today, yesterday, +30d or -7d",
        "line 7: bad amount 'NaN': not a number",
    ]


# --- files as pipelines use them -------------------------------------------------


def test_a_header_only_file_is_an_empty_batch(shop: Cli, tmp_path: Path) -> None:
    for command, header in (("customer", "name,email\n"), ("purchase", "customer,amount\n")):
        summary = shop.ok(command, "import", str(write(tmp_path, header)), "-f", "json").json()
        assert summary["rows"] == 0 and summary["inserted"] == 0


def test_a_zero_byte_file_is_an_error(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "")
    result = cli("purchase", "import", str(file))
    assert result.exit_code == 1 and result.stderr == f"Error: {file} is empty (0 bytes): expected a header row\n"


def test_standard_input(shop: Cli) -> None:
    copies = set(Path(tempfile.gettempdir()).glob("crmcli-stdin-*"))
    shop.ok("customer", "import", "-", input="name,email\nBob,bob@example.com\n")
    shop.ok("purchase", "import", "-", input="customer,amount\nbob@example.com,12.00\n")
    assert [p["customer"] for p in purchases(shop)] == ["Bob"]
    result = shop("purchase", "import", "-", input="customer,amount\nnobody,1\n")
    assert result.exit_code == 1 and "in standard input; nothing was imported" in result.stderr
    empty = shop("customer", "import", "-", input="")
    assert empty.exit_code == 1 and "standard input is empty" in empty.stderr
    assert set(Path(tempfile.gettempdir()).glob("crmcli-stdin-*")) == copies  # the private copies are gone


def test_the_rejected_rows_file_imports_back_once_fixed(shop: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, 'name,email,note\nGood,good@example.com,\nBad,bad@,=HYPERLINK("x")\n')
    rejects = tmp_path / "rejected.csv"
    shop.ok("customer", "import", str(file), "--skip-invalid", str(rejects))
    text = rejects.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("line,error,name,email")
    assert "'=HYPERLINK" in text  # guarded against formula injection, as exports are
    rejects.write_text(text.replace("bad@", "bad@example.com"), encoding="utf-8-sig")
    shop.ok("customer", "import", str(rejects))
    assert [(c["name"], c["email"]) for c in customers(shop)][-1] == ("Bad", "bad@example.com")
    assert shop.ok("customer", "show", "bad@example.com", "-f", "json").json()["note"] == '=HYPERLINK("x")'

    sales = write(tmp_path, "customer,amount\nT-1,5\nT-1,5,5\n", "p.csv")
    shop.ok("purchase", "import", str(sales), "--skip-invalid", str(tmp_path / "p-rejected.csv"))
    shop.ok("purchase", "import", str(tmp_path / "p-rejected.csv"))
    assert len(purchases(shop)) == 2


def test_map_to_nothing_ignores_a_column(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,Shoe Size,email\nAnn,42,ann@example.com\n")
    cli.ok("customer", "import", str(file), "--map", "Shoe Size=")
    assert customers(cli)[0]["email"] == "ann@example.com"


def test_a_referrer_rejected_earlier_is_the_reason(cli: Cli, tmp_path: Path) -> None:
    # Regression: a row whose referrer was an earlier, rejected row ended in "unexpected KeyError".
    file = write(tmp_path, "name,email,referred_by\nAnn,bad@,\nBob,bob@example.com,Ann\nCy,cy@example.com,bad@\n")
    lines = cli("customer", "import", str(file)).stderr.splitlines()
    assert lines[1:3] == ["line 3: its referrer, line 2, was rejected", "line 4: its referrer, line 2, was rejected"]
    summary = cli.ok("customer", "import", str(file), "--skip-invalid", str(tmp_path / "r.csv"), "-f", "json").json()
    assert (summary["inserted"], summary["rejected"]) == (0, 3)


def test_nul_characters_and_huge_cells_are_refused_with_their_line(cli: Cli, tmp_path: Path) -> None:
    nul = write(tmp_path, "name,email\nAnn,\nB\x00b,\n")
    assert "line 3: a cell holds a NUL character" in cli("customer", "import", str(nul)).stderr
    huge = write(tmp_path, "name,note\nAnn,\nBob," + "x" * 200_000 + "\n", "huge.csv")
    result = cli("customer", "import", str(huge))
    assert result.exit_code == 1 and "line 3: a cell is longer than 131072 characters" in result.stderr
    assert count(cli, "customer") == 0


# --- Excel workbooks -------------------------------------------------------------


def workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_xlsx_customers_with_numbers_kept_whole(cli: Cli, tmp_path: Path) -> None:
    book = workbook(
        tmp_path / "customers.xlsx",
        {"Customers": [["Name", "Phone", "City"], ["王小明", 13800138000, "北京"], ["Günter", 4930123456, "Berlin"]]},
    )
    summary = cli.ok("customer", "import", str(book), "-f", "json").json()
    assert summary["inserted"] == 2
    assert [(c["name"], c["phone"]) for c in customers(cli)] == [("王小明", "13800138000"), ("Günter", "4930123456")]


def test_xlsx_purchases_with_date_cells_sheets_and_row_numbers(shop: Cli, tmp_path: Path) -> None:
    book = workbook(
        tmp_path / "sales.xlsx",
        {
            "Notes": [["just", "notes"]],
            "Sales": [
                ["customer", "amount", "at", "due"],
                ["T-1", 19.9, datetime(2026, 10, 1, 14, 30), date(2026, 11, 1)],
                ["T-1", 0, date(2026, 10, 2), None],
                [],
                ["nobody", 5, date(2026, 10, 3), None],
            ],
        },
    )
    result = shop("purchase", "import", str(book), "--sheet", "Sales")
    assert result.exit_code == 1 and result.stderr.splitlines()[0] == "line 5: no customer 'nobody'"
    assert purchases(shop) == []
    dry = shop.ok("purchase", "import", str(book), "--sheet", "Sales", "--dry-run", "--skip-invalid", "r.csv")
    assert "Dry run" in dry.stdout and purchases(shop) == []
    rejects = tmp_path / "rejected.csv"
    shop.ok("purchase", "import", str(book), "--sheet", "Sales", "--skip-invalid", str(rejects))
    rows = purchases(shop)
    assert [(p["amount"], p["at"][:16], (p["due_at"] or "")[:19]) for p in rows] == [
        ("19.90", "2026-10-01T14:30", "2026-11-01T23:59:59"),  # a date cell is a day: due by its end
        ("0.00", "2026-10-02T00:00", ""),
    ]
    assert rejects.read_text(encoding="utf-8-sig").splitlines()[1].startswith("5,no customer 'nobody',nobody,5,")
    first = shop("purchase", "import", str(book))
    assert first.exit_code == 1 and "unknown column(s) 'just', 'notes'" in first.stderr
    missing = shop("purchase", "import", str(book), "--sheet", "Nope")
    assert missing.exit_code == 1 and "has no sheet 'Nope'; its sheets are Notes, Sales" in missing.stderr


def test_a_file_that_is_not_a_workbook(cli: Cli, tmp_path: Path) -> None:
    fake = write(tmp_path, "name\nAnn\n", "fake.xlsx")
    result = cli("customer", "import", str(fake))
    assert result.exit_code == 1 and "is not a readable .xlsx workbook" in result.stderr
    old = write(tmp_path, "x", "old.xls")
    assert "save it as .xlsx or CSV" in cli("customer", "import", str(old)).stderr


def test_a_workbook_without_openpyxl_names_the_extra(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = workbook(tmp_path / "c.xlsx", {"S": [["name"], ["Ann"]]})
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    result = cli("customer", "import", str(book))
    assert result.exit_code == 1 and "pip install 'crmcli[excel]'" in result.stderr


def test_a_workbook_on_standard_input(cli: Cli, tmp_path: Path) -> None:
    book = workbook(tmp_path / "c.xlsx", {"S": [["name"], ["Ann"]]})
    result = cli.runner.invoke(
        __import__("crmcli.cli.app", fromlist=["app"]).app,
        ["--db", str(cli.db_path), "customer", "import", "-"],
        input=book.read_bytes(),
    )
    assert result.exit_code == 0, result.stderr
    assert [c["name"] for c in customers(cli)] == ["Ann"]


def test_phones_in_a_file_match_by_digits_with_a_warning(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Wang", "--phone", "138 0013 8000")
    file = write(tmp_path, "name,phone\nLi,13800138000\nZhao,139-0013-9000\n")
    refused = cli("customer", "import", str(file))
    assert refused.exit_code == 1 and "line 2: phone 13800138000 already belongs to customer 1" in refused.stderr
    assert "default_phone_region" not in refused.stderr  # no advice on top of a refusal
    result = cli("customer", "import", str(file), "--on-duplicate", "skip")
    assert result.exit_code == 0 and "Warning: phone numbers without +country code" in result.stderr
    assert [c["phone"] for c in customers(cli)] == ["13800138000", "13900139000"]


@pytest.mark.parametrize(
    ("text", "encoding"),
    [("name,city\nИванов Иван,Москва\n", "cp1251"), ("name,city\n김민수,서울\n", "euc-kr")],
)
def test_other_encodings_are_refused_not_misread(cli: Cli, tmp_path: Path, text: str, encoding: str) -> None:
    file = write(tmp_path, text, encoding=encoding)
    result = cli("customer", "import", str(file))
    assert result.exit_code == 1 and "the encoding is unclear" in result.stderr and "--encoding" in result.stderr
    cli.ok("customer", "import", str(file), "--encoding", encoding)
    assert customers(cli)[0]["name"] == text.splitlines()[1].split(",")[0]


def test_half_width_katakana_in_shift_jis(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "import", str(write(tmp_path, "name,city\nﾔﾏﾀﾞﾀﾛｳ,ﾄｳｷｮｳ\n", encoding="shift_jis")))
    assert customers(cli)[0]["name"] == "ﾔﾏﾀﾞﾀﾛｳ"


@pytest.mark.parametrize("order", ["utf-16-le", "utf-16-be"])
def test_bad_bytes_in_utf16_are_found_on_their_line(cli: Cli, tmp_path: Path, order: str) -> None:
    # Regression: a newline is two bytes in UTF-16, and the line was counted one short.
    lone_surrogate = b"\x00\xd8" if order.endswith("le") else b"\xd8\x00"
    body = "\ufeffname\tcity\n" + "Ann\tX\n" * 3000
    file = tmp_path / "u16.txt"
    file.write_bytes(body.encode(order) + lone_surrogate + "Bob\tY\n".encode(order))
    result = cli("customer", "import", str(file))
    assert result.exit_code == 1 and f"{file} line 3002: not valid utf-16" in result.stderr


def test_a_long_or_multiline_value_is_quoted_on_one_short_line(shop: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, 'customer,amount\nT-1,"' + "9" * 100_000 + '"\nT-1,"1\n2"\n')
    lines = shop("purchase", "import", str(file)).stderr.splitlines()
    assert len(lines) == 3 and all(len(line) <= 510 for line in lines)
    assert lines[0].startswith("line 2: bad amount '9999") and lines[0].endswith("...")
    assert lines[1] == "line 3: bad amount '1\\n2': use a number such as 19.90"


def test_an_export_imports_back_under_a_decimal_comma_config(shop: Cli, tmp_path: Path) -> None:
    shop.ok("purchase", "add", "T-1", "1234.50", "--at", "2026-01-05")
    out = tmp_path / "purchases.csv"
    shop.ok("purchase", "export", "--out", str(out))
    config = tmp_path / "config.yaml"
    config.write_text("number_format: decimal_comma\n")
    fresh = Cli(tmp_path / "fresh.db", config)
    fresh.ok("customer", "add", "Ann", "--ref", "T-1")
    assert "ambiguous decimal point" in fresh("purchase", "import", str(out)).stderr
    fresh.ok("--number-format", "decimal_point", "purchase", "import", str(out))
    assert [p["amount"] for p in purchases(fresh)] == ["1234.50"]


@pytest.mark.parametrize(
    ("noun", "header", "row", "listed"),
    [
        ("points", "customer,at,kind,points,reason", "id:1,2026-11-20T10:00:00+00:00,adjust,150,goodwill", "points"),
        ("interaction", "customer,kind,at,summary", "id:1,call,2026-11-20T10:00:00+00:00,asked about sizes", "calls"),
    ],
)
def test_the_same_entry_is_never_written_twice(
    cli: Cli, tmp_path: Path, noun: str, header: str, row: str, listed: str
) -> None:
    """Regression: a points or contact file imported twice (or a row given twice) doubled what it
    records: a balance of 300 for 150 given."""
    cli.ok("customer", "add", "Ann")

    def recorded() -> Any:
        if listed == "points":
            return cli.ok("points", "show", "1", "-f", "json").json()["balance"]
        return len(cli.ok("interaction", "list", "--customer", "1", "-f", "json").json())

    once = write(tmp_path, f"{header}\n{row}\n", name="once.csv")
    cli.ok(noun, "import", str(once))
    after_one = recorded()
    again = cli(noun, "import", str(once))
    assert again.exit_code == 1 and "line 2: customer 1 already has this entry" in again.stderr
    later = row.replace("20T10", "21T10")
    twice = write(tmp_path, f"{header}\n{later}\n{later}\n", name="twice.csv")
    refused = cli(noun, "import", str(twice))
    assert refused.exit_code == 1 and "line 3: the same entry as line 2 of this file" in refused.stderr
    assert recorded() == after_one  # neither wrote anything
