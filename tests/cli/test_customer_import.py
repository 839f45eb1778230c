"""`crmcli customer import` and `customer export` through the CLI: files as users really have them.

Every test runs the real command against a temp database and checks what ended up in
it (customers, tags, referrals) and the exact error lines a user reads.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli

HEADER = (
    "name,email,phone,company,city,source,stage,tags,ref,referred_by,note,birthday,created_at,stage_history,"
    "referral_status,referral_decided_at,referral_reason,birthday_rewards,referral_code"
)
NOTHING = "nothing was imported (fix them, or pass --skip-invalid FILE to import the good rows)"


def write(tmp_path: Path, text: str, name: str = "in.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def customers(cli: Cli) -> list[dict[str, Any]]:
    return cli.ok("customer", "list", "-f", "json").json()


def query(cli: Cli, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(cli.db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(cli: Cli, table: str = "customer") -> int:
    return query(cli, f"SELECT count(*) FROM {table}")[0][0]


def imported(cli: Cli, path: Path, *args: str) -> dict[str, Any]:
    return cli.ok("customer", "import", str(path), *args, "-f", "json").json()


def refused(cli: Cli, path: Path, *args: str) -> list[str]:
    """The stderr lines of an import that must fail with exit 1 and one Error: line."""
    result = cli("customer", "import", str(path), *args)
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("Error: ")] == [lines[-1]]
    assert "Traceback" not in result.stderr
    return lines


def referrals(cli: Cli) -> list[tuple[str, str, str]]:
    return [(r["referrer"], r["referred"], r["status"]) for r in cli.ok("referral", "list", "-f", "json").json()]


def summary(rows: int, inserted: int = 0, updated: int = 0, skipped: int = 0, rejected: int = 0, **kw: Any) -> dict:
    return {
        "rows": rows,
        "inserted": inserted,
        "updated": updated,
        "skipped": skipped,
        "rejected": rejected,
        "dry_run": kw.get("dry_run", False),
        "referrals": kw.get("referrals", 0),
    }


# --- encodings and dialects ---------------------------------------------------------


def test_good_utf8_file(cli: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        f"{HEADER}\n"
        "Ann Lee,Ann@Example.COM,020 7946 0018,Acme,Riverton,web,prospect,VIP; local ;vip,A-1,,first visit\n"
        "Bob Stone,,,,,,,,,,\n"
        "Zoë Čapek,zoe@example.com,,,Brno,,,,,,\n",
    )
    assert imported(cli, file) == summary(3, inserted=3)
    ann, bob, zoe = customers(cli)
    assert {k: v for k, v in ann.items() if k != "created_at"} == {
        "id": 1,
        "name": "Ann Lee",
        "email": "ann@example.com",
        "phone": "02079460018",  # without default_phone_region, a phone is kept as its digits
        "company": "Acme",
        "city": "Riverton",
        "stage": "prospect",
        "tags": ["local", "vip"],
        "ref": "A-1",
    }
    assert (bob["name"], bob["email"], bob["stage"], bob["tags"]) == ("Bob Stone", None, "lead", [])
    assert (zoe["name"], zoe["city"]) == ("Zoë Čapek", "Brno")
    assert query(cli, "SELECT source, ref, note FROM customer WHERE id = 1") == [("web", "A-1", "first visit")]
    # every new customer starts its stage history and gets its own referral code
    assert query(cli, "SELECT customer_id, from_stage, to_stage FROM stage_change ORDER BY customer_id") == [
        (1, None, "prospect"),
        (2, None, "lead"),
        (3, None, "lead"),
    ]
    codes = [c for (c,) in query(cli, "SELECT referral_code FROM customer")]
    assert len(set(codes)) == 3 and all(len(c) == 8 for c in codes)


def test_utf8_with_bom(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,city\r\nAnn,Zürich\r\n", encoding="utf-8-sig")
    assert file.read_bytes().startswith(b"\xef\xbb\xbf")
    assert imported(cli, file)["inserted"] == 1
    assert [(c["name"], c["city"]) for c in customers(cli)] == [("Ann", "Zürich")]


def test_bom_file_with_forced_utf8_still_finds_the_name_column(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,city\nAnn,Zürich\n", encoding="utf-8-sig")
    assert imported(cli, file, "--encoding", "utf-8")["inserted"] == 1
    assert customers(cli)[0]["name"] == "Ann"


CHINESE = [("王小明", "北京", "老客户"), ("李华", "上海", "微信"), ("张伟", "广州", "")]


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_chinese_excel_file(cli: Cli, tmp_path: Path, encoding: str) -> None:
    text = "name,city,tags\r\n" + "".join(f"{n},{c},{t}\r\n" for n, c, t in CHINESE)
    file = write(tmp_path, text, encoding=encoding)
    with pytest.raises(UnicodeDecodeError):
        file.read_bytes().decode("utf-8")
    assert imported(cli, file)["inserted"] == 3
    rows = customers(cli)
    assert [(c["name"], c["city"]) for c in rows] == [(n, c) for n, c, _ in CHINESE]
    assert rows[0]["name"] == "王小明" and rows[0]["tags"] == ["老客户"]
    found = cli.ok("customer", "list", "--search", "李华", "-f", "json").json()
    assert [c["name"] for c in found] == ["李华"]


def test_tiny_gbk_file_with_chinese_only_at_the_end(cli: Cli, tmp_path: Path) -> None:
    # The one non-ASCII character sits in the last bytes of the file: not a UTF-8 character cut short.
    # Two bytes could be 王 (GBK), 韃 (Big5) or Íõ (cp1252): too little to tell, so it is refused.
    file = write(tmp_path, "name\nAnn\n王\n", encoding="gbk")
    result = cli("customer", "import", str(file))
    assert result.exit_code == 1
    assert "the encoding is unclear: it reads as gb18030 or big5 or cp1252" in result.stderr
    assert "(pass --encoding, for example" in result.stderr
    assert imported(cli, file, "--encoding", "gbk")["inserted"] == 2
    assert [c["name"] for c in customers(cli)] == ["Ann", "王"]


def test_gb18030_characters_beyond_gbk(cli: Cli, tmp_path: Path) -> None:
    # U+20BB7 (𠮷) exists only in GB18030's four-byte range, as Chinese Excel saves it
    file = write(tmp_path, "name,city\n𠮷野家,东京\n", encoding="gb18030")
    cli.ok("customer", "import", str(file))
    assert customers(cli)[0]["name"] == "𠮷野家"


def test_forced_encoding(cli: Cli, tmp_path: Path) -> None:
    latin = write(tmp_path, "name,city\nJosé,Málaga\n", encoding="latin-1")
    cli.ok("customer", "import", str(latin), "--encoding", "latin-1")
    assert [(c["name"], c["city"]) for c in customers(cli)] == [("José", "Málaga")]
    # GBK text forced to be read as UTF-8 is refused, naming the line and the way out
    chinese = write(tmp_path, "name\nAnn\n王小明\n", "gbk.csv", encoding="gbk")
    lines = refused(cli, chinese, "--encoding", "utf-8")
    assert lines == [
        f"Error: {chinese} line 3: not valid utf-8 "
        "(pass --encoding, for example utf-8, gb18030, big5, shift_jis or cp1252)"
    ]
    assert refused(cli, latin, "--encoding", "klingon") == [
        "Error: unknown encoding 'klingon': try utf-8, utf-16, gb18030, big5, shift_jis or cp1252"
    ]
    assert count(cli) == 1


def test_decoding_error_names_its_own_line_deep_in_the_file(cli: Cli, tmp_path: Path) -> None:
    rows = [f"Customer {i},c{i}@example.com" for i in range(1, 3000)]
    rows[1500] = "Jos\xe9,jose@example.com"  # one Latin-1 byte on line 1502
    path = tmp_path / "mixed.csv"
    path.write_bytes(("name,email\n" + "\n".join(rows) + "\n").encode("latin-1"))
    lines = refused(cli, path, "--encoding", "utf-8")
    assert lines[-1].startswith(f"Error: {path} line 1502: not valid utf-8")
    assert count(cli) == 0


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("name;email;city\nAnn;ann@example.com;Riverton, North\nBob;bob@example.com;Lakeside\n", ()),
        ("name\temail\tcity\nAnn\tann@example.com\tRiverton, North\nBob\tbob@example.com\tLakeside\n", ()),
        ("name;email;city\nAnn;ann@example.com;Riverton, North\nBob;bob@example.com;Lakeside\n", ("--delimiter", ";")),
        (
            "name\temail\tcity\nAnn\tann@example.com\tRiverton, North\nBob\tbob@example.com\tLakeside\n",
            ("--delimiter", "tab"),
        ),
        ("name|email|city\nAnn|ann@example.com|Riverton, North\nBob|bob@example.com|Lakeside\n", ()),
    ],
    ids=["semicolon", "tab", "forced-semicolon", "forced-tab", "pipe"],
)
def test_delimiters(cli: Cli, tmp_path: Path, text: str, args: tuple[str, ...]) -> None:
    assert imported(cli, write(tmp_path, text), *args)["inserted"] == 2
    assert [(c["name"], c["email"], c["city"]) for c in customers(cli)] == [
        ("Ann", "ann@example.com", "Riverton, North"),
        ("Bob", "bob@example.com", "Lakeside"),
    ]


def test_forced_delimiter_wins_over_detection(cli: Cli, tmp_path: Path) -> None:
    # The header has more commas than semicolons, but the file is semicolon-separated
    file = write(tmp_path, "name;note\nAnn;likes tea, cake, and jam\n")
    assert refused(cli, file, "--delimiter", ",")[-1].startswith(f"Error: {file}: unknown column(s) 'name;note'")
    cli.ok("customer", "import", str(file), "--delimiter", ";")
    assert query(cli, "SELECT name, note FROM customer") == [("Ann", "likes tea, cake, and jam")]
    assert refused(cli, file, "--delimiter", ";;") == ["Error: the delimiter must be one character, not ';;'"]


def test_map_renames_columns(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "Full Name,E-mail,Mobile,Town\nAnn,ann@example.com,+1 212 555 0100,Riverton\n")
    lines = refused(cli, file)
    assert lines[-1].startswith(f"Error: {file}: unknown column(s) 'Full Name', 'E-mail', 'Mobile', 'Town'")
    cli.ok(
        "customer",
        "import",
        str(file),
        "--map",
        "Full Name=name",
        "--map",
        "E-mail=email",
        "--map",
        "mobile=PHONE",  # both sides are matched without regard to case
        "--map",
        " Town = city ",
    )
    assert [(c["name"], c["email"], c["phone"], c["city"]) for c in customers(cli)] == [
        ("Ann", "ann@example.com", "+12125550100", "Riverton")
    ]
    assert refused(cli, file, "--map", "E-mail") == [
        "Error: bad column mapping 'E-mail': use CSVCOL=FIELD (check --map)"
    ]


def test_map_onto_a_column_that_exists_is_a_duplicate(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,email,E-mail\nAnn,ann@example.com,a@example.com\n")
    assert refused(cli, file, "--map", "E-mail=email") == [f"Error: {file}: column 'email' appears twice"]


# --- all or nothing -----------------------------------------------------------------


def test_one_bad_row_in_ten_thousand_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    rows = [f"Customer {i},c{i}@example.com,vip" for i in range(1, 10_001)]
    rows[9_998] = "Customer 9999,c9999@example,vip"  # data row 9,999 is line 10,000
    file = write(tmp_path, "name,email,tags\n" + "\n".join(rows) + "\n")
    lines = refused(cli, file)
    assert len(lines) == 2
    assert lines[0].startswith("line 10000: bad email 'c9999@example'")
    assert lines[1] == f"Error: 1 bad row(s) in {file}; {NOTHING}"
    assert count(cli) == 0 and count(cli, "customer_tag") == 0 and count(cli, "stage_change") == 0
    assert customers(cli) == []


def test_every_bad_row_is_reported_with_its_line(cli: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "name,email,phone,stage,tags\n"
        "Good,good@example.com,,,\n"  # line 2
        ",nameless@example.com,,,\n"  # 3
        "Bad Email,bad@,,,\n"  # 4
        "\n"  # 5: a blank line is skipped, but counted
        "Bad Stage,,,vip,\n"  # 6
        "Bad Phone,,call me,,\n"  # 7
        "Fine,,,customer,a;b\n"  # 8
        "Twice,GOOD@example.com,,,\n",  # 9
    )
    lines = refused(cli, file)
    assert lines[0] == "line 3: a customer needs a name"
    assert lines[1].startswith("line 4: bad email 'bad@'")
    assert lines[2] == "line 6: unknown stage 'vip': use one of lead, verified, prospect, customer, repeat, lost"
    assert lines[3] == "line 7: bad phone 'call me': use digits, or +country code and number"
    assert lines[4] == "line 9: same email as line 2 of this file"
    assert lines[5] == f"Error: 5 bad row(s) in {file}; {NOTHING}"
    assert count(cli) == 0


def test_a_row_spanning_lines_is_reported_at_its_first_line(cli: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        'name,email,note\nAnn,ann@example.com,"two\nlines"\nBob,bob@,"three\nmore\nlines"\nCy,cy@,\n',
    )
    lines = refused(cli, file)
    assert [line.split(":")[0] for line in lines[:-1]] == ["line 4", "line 7"]


def test_more_than_fifty_bad_rows_are_summarised(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,email\n" + "".join(f"N{i},bad{i}\n" for i in range(60)))
    lines = refused(cli, file)
    assert len(lines) == 52 and lines[0].startswith("line 2: bad email 'bad0'")
    assert lines[49].startswith("line 51: ") and lines[50] == "... and 10 more"
    assert lines[51] == f"Error: 60 bad row(s) in {file}; {NOTHING}"


# --- files that are wrong as a whole ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "{path} is empty (0 bytes): expected a header row"),
        ("\ufeff", "{path} is empty (only blank lines): expected a header row"),
        ("\n\r\n  \n", "{path} is empty (only blank lines): expected a header row"),
        ("email,city\nann@example.com,Riverton\n", "{path}: missing required column(s) name"),
        ("name,email,NAME\nAnn,ann@example.com,Bob\n", "{path}: column 'name' appears twice"),
    ],
    ids=["empty", "bom-only", "blank-lines", "no-name", "twice"],
)
def test_bad_files(cli: Cli, tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    assert refused(cli, path) == [f"Error: {message.format(path=path)}"]
    assert customers(cli) == []


def test_unknown_column_is_named_with_the_known_ones_and_map(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "name,Shoe Size,email\nAnn,42,ann@example.com\n")
    assert refused(cli, path) == [
        f"Error: {path}: unknown column(s) 'Shoe Size'; known columns are "
        "name, email, phone, company, city, source, stage, tags, ref, referred_by, note, birthday, created_at, "
        "stage_history, referral_status, referral_decided_at, referral_reason, birthday_rewards, referral_code "
        "(rename with --map CSVCOL=FIELD, ignore with --map CSVCOL=)"
    ]


def test_missing_file(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert refused(cli, path) == [f"Error: cannot read {path}: No such file or directory"]


def test_row_with_more_cells_than_the_header(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "name,city\nAnn,Riverton,oops\nBob,Lakeside,,\nCy,Hill\n")
    lines = refused(cli, path)
    assert lines[0] == "line 2: 3 cells but the header has 2"
    assert lines[1] == f"Error: 1 bad row(s) in {path}; {NOTHING}"
    # empty trailing cells, as spreadsheets write, are fine; so are short rows
    cli.ok("customer", "import", str(write(tmp_path, "name,city,\nBob,Lakeside,,\nCy\n", "ok.csv")))
    assert [(c["name"], c["city"]) for c in customers(cli)] == [("Bob", "Lakeside"), ("Cy", None)]


def test_an_unclosed_quote_is_an_error_not_a_crash(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, 'name,note\nAnn,"never closed\nBob,x\n')
    lines = refused(cli, path)
    assert lines == [f"Error: {path} line 2: a quoted cell is never closed (the file ends inside it)"]
    # a quote that closes and goes on is refused too, rather than silently dropped
    stray = write(tmp_path, 'name,note\nAnn,ok\nBob,"5" screen\n', "stray.csv")
    assert refused(cli, stray) == [f"Error: {stray} line 3: ',' expected after '\"'"]
    assert customers(cli) == []


# --- dry run and skipping bad rows ---------------------------------------------------


def test_dry_run_reports_counts_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    path = write(tmp_path, "name,email,tags\nAnn,ann@example.com,vip\nBob,bob@example.com,new\nCy,,\n")
    before = cli.ok("customer", "export").stdout
    assert imported(cli, path, "--dry-run", "--on-duplicate", "update") == summary(
        3, inserted=2, updated=1, dry_run=True
    )
    table = cli.ok("customer", "import", str(path), "--dry-run", "--on-duplicate", "skip")
    assert table.stdout.startswith("Dry run")
    assert cli.ok("customer", "export").stdout == before
    assert count(cli) == 1 and count(cli, "customer_tag") == 0 and count(cli, "stage_change") == 1
    # a dry run still finds every bad row
    bad = write(tmp_path, "name,email\nAnn,ann@example.com\nBob,nope\n", "bad.csv")
    lines = refused(cli, bad, "--dry-run")
    assert lines[0] == "line 2: email ann@example.com already belongs to customer 1 (a duplicate: skip it or update it)"
    assert lines[1].startswith("line 3: bad email 'nope'")
    # the row's reason says what it is; the command's hint says which flag handles it
    assert "pass --on-duplicate skip or update" in lines[-1]
    only_bad = write(tmp_path, "name,email\nBob,nope\n", "only_bad.csv")
    assert "--on-duplicate" not in refused(cli, only_bad)[-1]


def test_skip_invalid_imports_good_rows_and_writes_the_rejects(cli: Cli, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name,email,stage,note\n"
        "Ann,ann@example.com,,\n"
        'Bad,nope,,"has, a comma"\n'
        "Bob,bob@example.com,prospect,\n"
        "Worse,worse@example.com,vip,\n"
        "Again,ANN@example.com,,\n"
        "Long,long@example.com,,x,extra\n",
    )
    rejects = tmp_path / "rejects.csv"
    assert imported(cli, path, "--skip-invalid", str(rejects)) == summary(6, inserted=2, rejected=4)
    assert [c["name"] for c in customers(cli)] == ["Ann", "Bob"]
    raw = rejects.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["line", "error", *HEADER.split(",")]
    by_line = {r[0]: r for r in rows[1:]}
    assert sorted(by_line, key=int) == ["3", "5", "6", "7"]
    assert by_line["3"][1].startswith("bad email 'nope'")
    assert by_line["3"][2:] == ["Bad", "nope", *[""] * 8, "has, a comma", *[""] * 8]
    assert by_line["5"][1].startswith("unknown stage 'vip'")
    assert by_line["6"][1] == "same email as line 2 of this file"
    assert by_line["7"][1] == "5 cells but the header has 4"
    # the rejected row keeps what it had, so it can be fixed and imported again
    assert by_line["7"][2:4] == ["Long", "long@example.com"]


def test_skip_invalid_with_nothing_wrong_writes_no_reject_file(cli: Cli, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    path = write(tmp_path, "name\nAnn\n")
    assert imported(cli, path, "--skip-invalid", str(rejects))["inserted"] == 1
    assert not rejects.exists()


def test_skip_invalid_into_a_missing_folder(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "name\nAnn\n")
    target = tmp_path / "no" / "rejects.csv"
    assert refused(cli, path, "--skip-invalid", str(target)) == [
        f"Error: cannot write {target}: the folder {target.parent} does not exist (create the folder first)"
    ]
    assert customers(cli) == []


def test_a_rejected_referral_does_not_leave_its_customer_behind(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "name,email,referred_by\nAnn,ann@example.com,\nBob,bob@example.com,nobody\n")
    rejects = tmp_path / "rejects.csv"
    assert imported(cli, path, "--skip-invalid", str(rejects)) == summary(2, inserted=1, rejected=1)
    assert [c["name"] for c in customers(cli)] == ["Ann"]
    assert "3,referred_by 'nobody' is not a customer,Bob,bob@example.com" in rejects.read_text("utf-8-sig")
    assert count(cli, "stage_change") == 1 and count(cli, "referral") == 0


# --- duplicates ------------------------------------------------------------------------


DUPES = (
    "name,email,phone,ref,tags,city\nAnn,ann@example.com,,,vip,\nBob,,555 0100,,,\nCy,,,C-1,,\nNo Keys,,,,walk-in,\n"
)


def test_on_duplicate_error_names_the_existing_customer(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, DUPES)
    assert imported(cli, path) == summary(4, inserted=4)
    lines = refused(cli, path)
    assert lines == [
        "line 2: email ann@example.com already belongs to customer 1 (a duplicate: skip it or update it)",
        "line 3: phone 5550100 already belongs to customer 2 (a duplicate: skip it or update it)",
        "line 4: ref C-1 already belongs to customer 3 (a duplicate: skip it or update it)",
        "line 5: name No Keys already belongs to customer 4 (a duplicate: skip it or update it)",
        f"Error: 4 bad row(s) in {path}; nothing was imported (fix them; for the duplicates pass --on-duplicate"
        " skip or update; or pass --skip-invalid FILE to import the good rows)",
    ]
    assert count(cli) == 4


def test_on_duplicate_skip_twice_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, DUPES)
    assert imported(cli, path, "--on-duplicate", "skip") == summary(4, inserted=4)
    dump = "SELECT * FROM customer ORDER BY id"
    before = (query(cli, dump), query(cli, "SELECT * FROM customer_tag"), query(cli, "SELECT * FROM stage_change"))
    assert imported(cli, path, "--on-duplicate", "skip") == summary(4, skipped=4)
    assert imported(cli, path, "--on-duplicate", "skip") == summary(4, skipped=4)
    after = (query(cli, dump), query(cli, "SELECT * FROM customer_tag"), query(cli, "SELECT * FROM stage_change"))
    assert after == before


def test_keyless_rows_match_by_exact_name_only(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Dee", "--email", "dee@example.com")  # has a key: not a name match
    cli.ok("customer", "add", "Eve")
    path = write(tmp_path, "name\nDee\nEve\neve\n")
    assert imported(cli, path, "--on-duplicate", "skip") == summary(3, inserted=2, skipped=1)
    assert [c["name"] for c in customers(cli)] == ["Dee", "Eve", "Dee", "eve"]


def test_on_duplicate_update_fills_and_overwrites_and_adds_tags(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--city", "Oldtown", "--tag", "vip")
    cli.ok("customer", "add", "No Keys", "--tag", "walk-in")
    path = write(
        tmp_path,
        "name,email,phone,company,city,stage,tags,note\n"
        "Ann Lee,ANN@example.com,020 555 0101,Acme,Riverton,prospect,Local;vip,\n"
        "No Keys,,,,Lakeside,,regular,\n"
        "New,new@example.com,,,,,,\n",
    )
    assert imported(cli, path, "--on-duplicate", "update") == summary(3, inserted=1, updated=2)
    ann = cli.ok("customer", "show", "1", "-f", "json").json()
    assert (ann["name"], ann["email"], ann["phone"], ann["company"], ann["city"]) == (
        "Ann Lee",
        "ann@example.com",
        "0205550101",
        "Acme",
        "Riverton",
    )
    assert ann["stage"] == "prospect" and ann["tags"] == ["local", "vip"]
    assert query(cli, "SELECT from_stage, to_stage FROM stage_change WHERE customer_id = 1 ORDER BY id") == [
        (None, "lead"),
        ("lead", "prospect"),
    ]
    # a blank cell leaves the field alone, and a blank stage is not a move back to lead
    keyless = cli.ok("customer", "show", "2", "-f", "json").json()
    assert (keyless["city"], keyless["stage"], keyless["tags"]) == ("Lakeside", "lead", ["regular", "walk-in"])
    assert count(cli) == 3
    # updating again with the same file changes nothing more
    before = query(cli, "SELECT name, email, phone, company, city, stage FROM customer ORDER BY id")
    assert imported(cli, path, "--on-duplicate", "update")["updated"] == 3
    assert query(cli, "SELECT name, email, phone, company, city, stage FROM customer ORDER BY id") == before
    assert count(cli, "stage_change") == 4


def test_a_row_matching_two_customers_is_refused(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--ref", "B-1")
    path = write(tmp_path, "name,email,ref\nAnnBob,ann@example.com,B-1\n")
    for mode in ("skip", "update", "error"):
        lines = refused(cli, path, "--on-duplicate", mode)
        assert (
            lines[0] == "line 2: matches several customers: email ann@example.com is customer 1, ref B-1 is customer 2"
        )


def test_on_duplicate_must_be_known(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "name\nAnn\n")
    refused = cli.usage_error("customer", "import", str(path), "--on-duplicate", "merge")
    assert "'merge' is not one of 'skip', 'update', 'error'" in refused


@pytest.mark.parametrize("mode", ["error", "skip", "update"])
def test_duplicates_inside_one_file_are_reported(cli: Cli, tmp_path: Path, mode: str) -> None:
    path = write(
        tmp_path,
        "name,email,phone,ref\n"
        "Ann,ann@example.com,,\n"
        "Ann Again,ANN@Example.com,,\n"
        "Bob,,+44 20 7946 0018,\n"
        "Bobby,,+442079460018,\n"
        "Cy,,,C-1\n"
        "Cy,,,C-1\n"
        "Walk In,,,\n"
        "Walk In,,,\n",
    )
    lines = refused(cli, path, "--on-duplicate", mode)
    assert lines == [
        "line 3: same email as line 2 of this file",
        "line 5: same phone as line 4 of this file",
        "line 7: same ref as line 6 of this file",
        "line 9: same name as line 8 of this file",
        f"Error: 4 bad row(s) in {path}; {NOTHING}",
    ]
    assert count(cli) == 0


@pytest.mark.parametrize("mode", ["error", "skip", "update"])
def test_duplicates_far_apart_in_one_file_are_reported(cli: Cli, tmp_path: Path, mode: str) -> None:
    # rows are written in batches: a duplicate in a later batch is still a duplicate of the file
    rows = [f"C{i},c{i}@example.com" for i in range(1, 6002)]
    rows[6000] = "Late,C1@example.com"  # line 6002 repeats line 2
    path = write(tmp_path, "name,email\n" + "\n".join(rows) + "\n")
    lines = refused(cli, path, "--on-duplicate", mode)
    assert lines == ["line 6002: same email as line 2 of this file", f"Error: 1 bad row(s) in {path}; {NOTHING}"]
    assert count(cli) == 0


# --- tags, stages, referrals -------------------------------------------------------


def test_tags_are_split_on_semicolons(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, 'name,tags\nAnn,"VIP; Local ;;vip;  "\nBob,\nCy,one tag\n')
    cli.ok("customer", "import", str(path))
    assert [(c["name"], c["tags"]) for c in customers(cli)] == [
        ("Ann", ["local", "vip"]),
        ("Bob", []),
        ("Cy", ["one tag"]),
    ]
    assert query(cli, "SELECT customer_id, tag FROM customer_tag ORDER BY customer_id, tag") == [
        (1, "local"),
        (1, "vip"),
        (3, "one tag"),
    ]


def test_stage_is_validated(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "name,stage\nAnn,Prospect\nBob, repeat \nCy,\nDee,gold\n")
    assert refused(cli, path)[0] == (
        "line 5: unknown stage 'gold': use one of lead, verified, prospect, customer, repeat, lost"
    )
    cli.ok("customer", "import", str(write(tmp_path, "name,stage\nAnn,Prospect\nBob, repeat \nCy,\n", "ok.csv")))
    assert [c["stage"] for c in customers(cli)] == ["prospect", "repeat", "lead"]


def test_referred_by_creates_pending_referrals(cli: Cli, tmp_path: Path) -> None:
    old = cli.ok("customer", "add", "Old", "--email", "old@example.com", "-f", "json").json()
    cli.ok("customer", "add", "Numbered")  # customer 2, found by id
    path = write(
        tmp_path,
        "name,email,ref,referred_by\n"
        f"Ann,ann@example.com,A-1,{old['referral_code'].lower()}\n"  # by referral code, any case
        "Bob,,B-1,ANN@example.com\n"  # by email of a row earlier in the file
        "Cy,,C-1,A-1\n"  # by ref of a row earlier in the file
        "Dee,,,2\n"  # by id
        "Eve,,,old@example.com\n"
        "Fay,,,\n",
    )
    assert imported(cli, path) == summary(6, inserted=6, referrals=5)
    assert referrals(cli) == [
        ("Old", "Ann", "pending"),
        ("Ann", "Bob", "pending"),
        ("Ann", "Cy", "pending"),
        ("Numbered", "Dee", "pending"),
        ("Old", "Eve", "pending"),
    ]


def test_referred_by_a_row_later_in_the_file(cli: Cli, tmp_path: Path) -> None:
    rows = ["Bob,bob@example.com,ann@example.com"] + [f"C{i},c{i}@example.com," for i in range(6000)]
    path = write(tmp_path, "name,email,referred_by\n" + "\n".join([*rows, "Ann,ann@example.com,"]) + "\n")
    assert imported(cli, path)["referrals"] == 1
    assert referrals(cli) == [("Ann", "Bob", "pending")]


def test_referred_by_errors(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Old", "--email", "old@example.com")
    path = write(
        tmp_path,
        "name,email,ref,referred_by\n"
        "Zed,,,nobody\n"
        "Me,me@example.com,ME,ME\n"
        "Also Me,also@example.com,,also@example.com\n"
        "Fine,,,old@example.com\n",
    )
    lines = refused(cli, path)
    assert lines == [
        "line 2: referred_by 'nobody' is not a customer",
        "line 3: a customer cannot refer themselves (the same row)",
        "line 4: a customer cannot refer themselves (the same row)",
        f"Error: 3 bad row(s) in {path}; {NOTHING}",
    ]
    assert count(cli) == 1 and count(cli, "referral") == 0


def test_a_row_naming_a_rejected_row_as_referrer_is_rejected_too(cli: Cli, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name,email,referred_by\nAnn,ann@example.com,nobody\nBob,bob@example.com,ann@example.com\nCy,cy@example.com,\n",
    )
    assert refused(cli, path) == [
        "line 2: referred_by 'nobody' is not a customer",
        f"Error: 1 bad row(s) in {path}; {NOTHING}",
    ]
    rejects = tmp_path / "rejects.csv"
    assert imported(cli, path, "--skip-invalid", str(rejects)) == summary(3, inserted=1, rejected=2)
    assert [c["name"] for c in customers(cli)] == ["Cy"]
    assert count(cli, "referral") == 0 and count(cli, "stage_change") == 1
    rows = list(csv.reader(io.StringIO(rejects.read_text("utf-8-sig"))))
    assert [r[:4] for r in rows[1:]] == [
        ["2", "referred_by 'nobody' is not a customer", "Ann", "ann@example.com"],
        ["3", "its referrer, line 2, was rejected", "Bob", "bob@example.com"],
    ]


def test_referrals_in_a_file_cannot_close_a_circle(cli: Cli, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name,email,referred_by\nAnn,ann@example.com,bob@example.com\nBob,bob@example.com,ann@example.com\n",
    )
    assert refused(cli, path)[0] == (
        "line 2: referred_by 'bob@example.com' was brought by this customer, directly or through others: "
        "a referral cannot close a circle"
    )
    rejects = tmp_path / "rejects.csv"
    assert imported(cli, path, "--skip-invalid", str(rejects)) == summary(2, rejected=2)
    assert customers(cli) == [] and count(cli, "referral") == 0


def test_referred_by_a_keyless_customer_by_name(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Walk In")
    cli.ok("customer", "add", "Twin")
    cli.ok("customer", "add", "Twin", "--email", "twin@example.com")
    cli.ok("customer", "add", "Pair")
    cli.ok("customer", "add", "Pair")
    path = write(tmp_path, "name,referred_by\nAnn,Walk In\nBob,Twin\n")
    assert imported(cli, path)["referrals"] == 2
    assert referrals(cli) == [("Walk In", "Ann", "pending"), ("Twin", "Bob", "pending")]
    assert refused(cli, write(tmp_path, "name,referred_by\nCy,Pair\n", "pair.csv"))[0] == (
        "line 2: referred_by 'Pair' names 2 customers: use their email, ref or id"
    )


# --- export ----------------------------------------------------------------------------


def test_export_csv_has_a_bom_and_the_import_header(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert cli.ok("customer", "export", "--out", str(out)).stderr == f"Exported 0 customers to {out}\n"
    assert out.read_bytes() == b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n"
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--tag", "vip", "--tag", "local")
    cli.ok("customer", "export", "--out", str(out), "--force")
    # then when Ann joined, and her stage history
    ann = "Ann,ann@example.com,,,,,lead,local;vip,,,,,"
    assert out.read_bytes().startswith(b"\xef\xbb\xbf" + (HEADER + "\r\n" + ann).encode())
    assert cli.ok("customer", "export", "--out", str(out), "--no-bom", "--force").stdout == ""
    assert out.read_bytes().startswith(HEADER.encode())
    # to stdout, a pipe: no BOM (the test runner shows \r\n as \n)
    assert cli.ok("customer", "export").stdout.startswith(HEADER + "\n")


def test_export_json(cli: Cli, tmp_path: Path) -> None:
    assert cli.ok("customer", "export", "--format", "json").stdout == "[]\n"
    assert cli.ok("customer", "export", "-f", "json").json() == []
    cli.ok("customer", "add", "王小明", "--email", "w@example.com", "--tag", "vip", "--note", "a\nb")
    cli.ok("customer", "add", "=1+1", "--referred-by", "w@example.com", "--stage", "prospect")
    out = tmp_path / "out.json"
    cli.ok("customer", "export", "-f", "json", "--out", str(out))
    raw = out.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and "王小明".encode() in raw
    rows = json.loads(raw)
    made = ("created_at", "stage_history", "referral_code")  # when they joined; their code (generated)
    blank = dict.fromkeys(h for h in HEADER.split(",") if h not in made)
    assert [{k: v for k, v in row.items() if k not in made} for row in rows] == [
        blank | {"name": "王小明", "email": "w@example.com", "stage": "lead", "tags": "vip", "note": "a\nb"},
        # JSON is not a spreadsheet: nothing is neutralised
        blank | {"name": "=1+1", "stage": "prospect", "referred_by": "email:w@example.com"},
    ]
    assert list(rows[0]) == HEADER.split(",")
    assert "'xml' is not one of 'csv', 'json'" in cli.usage_error("customer", "export", "--format", "xml")


def refused_export(cli: Cli, *args: str) -> list[str]:
    result = cli("customer", "export", *args)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    return result.stderr.splitlines()


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_export_neutralises_formula_cells(cli: Cli, tmp_path: Path, start: str) -> None:
    cli.ok("customer", "add", "Safe", "--company", "Acme")
    # the CLI trims what users type, so such values arrive by import (a tab or CR inside the text)
    conn = sqlite3.connect(cli.db_path)
    with conn:
        conn.execute(
            "UPDATE customer SET name = ?, company = ?, city = ?, note = ?",
            (f'{start}HYPERLINK("http://evil")', f"{start}cmd|' /C calc'!A0", "'plain", f"{start}1+1"),
        )
    conn.close()
    out = tmp_path / "x.csv"
    cli.ok("customer", "export", "--out", str(out))
    with out.open(encoding="utf-8-sig", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["name"] == f'\'{start}HYPERLINK("http://evil")'
    assert row["company"] == f"'{start}cmd|' /C calc'!A0"
    assert row["note"] == f"'{start}1+1"
    assert row["city"] == "'plain"  # an apostrophe before harmless text is left alone
    assert row["stage"] == "lead"


def test_export_into_a_missing_folder(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "nope" / "x.csv"
    assert refused_export(cli, "--out", str(target)) == [
        f"Error: cannot write {target}: the folder {target.parent} does not exist (create the folder first)"
    ]
    assert not target.parent.exists()


def test_export_onto_a_folder(cli: Cli, tmp_path: Path) -> None:
    assert refused_export(cli, "--out", str(tmp_path)) == [
        f"Error: cannot write {tmp_path}: {tmp_path} is a folder (give a file name inside that folder)"
    ]
    assert [p.name for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}.")] == []


def test_export_leaves_out_erased_customers_and_erased_referrers(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Old", "--email", "old@example.com")
    cli.ok("customer", "add", "Ann", "--referred-by", "old@example.com")
    cli.ok("customer", "erase", "1", "--yes")
    out = tmp_path / "out.csv"
    cli.ok("customer", "export", "--out", str(out), "--no-bom")
    assert out.read_bytes().startswith(f"{HEADER}\r\nAnn,,,,,,lead,,,,,,".encode())


# --- round trip ------------------------------------------------------------------------


def round_trip(cli: Cli, tmp_path: Path, *, fmt: str = "csv") -> tuple[bytes, bytes]:
    first, second = tmp_path / f"first.{fmt}", tmp_path / f"second.{fmt}"
    cli.ok("customer", "export", "--out", str(first))
    fresh = Cli(tmp_path / "fresh.db")
    fresh.ok("customer", "import", str(first))
    fresh.ok("customer", "export", "--out", str(second))
    return first.read_bytes(), second.read_bytes()


def test_export_imports_back_byte_for_byte(cli: Cli, tmp_path: Path) -> None:
    ann = cli.new_id(
        "customer",
        "add",
        '=HYPERLINK("http://evil.example/?q=1","click")',
        "--email",
        "Ann@Example.com",
        "--phone",
        "+44 20 7946 0018",
        "--company",
        "@home",
        "--city",
        "'quoted",
        "--source",
        "+web",
        "--stage",
        "customer",
        "--tag",
        "vip",
        "--tag",
        "-minus",
        "--tag",
        "老客户",
        "--ref",
        "A-1",
        "--note",
        'line one\nline two, with a comma and "quotes"',
    )
    cli.ok("customer", "add", "Bob", "--referred-by", str(ann), "--phone", "020 555 0199", "--stage", "prospect")
    cli.ok("customer", "add", "王小明", "--referred-by", "A-1", "--email", "wang@example.com", "--city", "北京")
    cli.ok("customer", "add", "Cy", "--referred-by", "wang@example.com", "--note", "-5 points")
    first, second = round_trip(cli, tmp_path)
    assert second == first
    assert first.count(b"\r\n") == 5 and first.count(b"\n") == 6  # the note keeps its own \n
    text = first.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "'+442079460018" in text and "'@home" in text and "'-minus;vip;老客户" in text
    fresh = Cli(tmp_path / "fresh.db")
    got = fresh.ok("customer", "show", "A-1", "-f", "json").json()
    assert got["name"] == '=HYPERLINK("http://evil.example/?q=1","click")'
    assert got["phone"] == "+442079460018" and got["city"] == "'quoted" and got["source"] == "+web"
    assert got["tags"] == ["-minus", "vip", "老客户"]
    assert referrals(fresh) == [
        ('=HYPERLINK("http://evil.example/?q=1","click")', "Bob", "pending"),
        ('=HYPERLINK("http://evil.example/?q=1","click")', "王小明", "pending"),
        ("王小明", "Cy", "pending"),
    ]


def test_round_trip_with_referrers_that_have_no_email_or_ref(cli: Cli, tmp_path: Path) -> None:
    # ids in the new database differ: customer 1 is erased and left out of the export
    cli.ok("customer", "add", "Gone", "--email", "gone@example.com")
    cli.ok("customer", "add", "Phone Only", "--phone", "+1 212 555 0100")
    cli.ok("customer", "add", "Nothing At All")
    cli.ok("customer", "add", "Bob", "--referred-by", "2")
    cli.ok("customer", "add", "Cy", "--referred-by", "3")
    cli.ok("customer", "erase", "1", "--yes")
    first, second = round_trip(cli, tmp_path)
    assert second == first
    assert referrals(Cli(tmp_path / "fresh.db")) == [
        ("Phone Only", "Bob", "pending"),
        ("Nothing At All", "Cy", "pending"),
    ]


def test_round_trip_with_numeric_refs(cli: Cli, tmp_path: Path) -> None:
    # refs from a till are often numbers: ref "1" must not be read as customer id 1
    cli.ok("customer", "add", "Ann", "--ref", "2")
    cli.ok("customer", "add", "Bob", "--ref", "1")
    # "1" is customer id 1 (Ann) and the ref of customer 2 (Bob): refused, naming both
    refused = cli("customer", "add", "Cy", "--referred-by", "1")
    assert refused.exit_code == 1
    assert "'1' matches customer 2 by its ref and customer 1 by its id" in refused.stderr
    cli.ok("customer", "add", "Cy", "--referred-by", "id:1")  # Ann
    cli.ok("customer", "add", "Dee", "--referred-by", "3")  # customer id 3: Cy, who has no keys
    assert referrals(cli) == [("Ann", "Cy", "pending"), ("Cy", "Dee", "pending")]
    first, second = round_trip(cli, tmp_path)
    assert second == first
    assert referrals(Cli(tmp_path / "fresh.db")) == referrals(cli)


def test_round_trip_with_a_referrer_added_after_the_customer_they_brought(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com")
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("referral", "add", "ann@example.com", "bob@example.com")
    first, second = round_trip(cli, tmp_path)
    assert second == first
    assert referrals(Cli(tmp_path / "fresh.db")) == [("Ann", "Bob", "pending")]


def test_round_trip_of_an_empty_database(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "empty.csv"
    cli.ok("customer", "export", "--out", str(out))
    # a header-only file is a valid empty batch, as pipelines produce them
    assert imported(Cli(tmp_path / "fresh.db"), out)["rows"] == 0


def test_new_customers_follow_the_largest_id_and_keep_their_own_rows(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the import gives the new customers' ids itself (the next after the largest):
    each row's tags, stage history and referral land on the customer the row became, in two
    batches of a file, after customers whose ids have a gap."""
    from crmcli.io import customers as customer_io

    monkeypatch.setattr(customer_io, "BATCH", 2)
    for name in ("Old One", "Old Two", "Old Three"):
        cli.ok("customer", "add", name)
    cli.ok("customer", "merge", "3", "2", "--yes")  # 2 is merged into 3: ids 1 and 3 are left
    assert [c["id"] for c in customers(cli)] == [1, 3]
    rows = [f"New {i},,,,,,,t{i},N{i},{'ref:N0' if i == 2 else ''},,,,,,,,," for i in range(3)]
    file = write(tmp_path, f"{HEADER}\n" + "\n".join(rows) + "\n")
    assert imported(cli, file) == summary(3, inserted=3, referrals=1)
    found = {c["name"]: c for c in customers(cli)}
    assert [found[f"New {i}"]["id"] for i in range(3)] == [4, 5, 6]
    assert [found[f"New {i}"]["tags"] for i in range(3)] == [["t0"], ["t1"], ["t2"]]
    assert query(cli, "SELECT customer_id FROM stage_change WHERE customer_id > 3 ORDER BY customer_id") == [
        (4,),
        (5,),
        (6,),
    ]
    assert query(cli, "SELECT referrer_id, referred_id FROM referral") == [(4, 6)]
    codes = query(cli, "SELECT COUNT(DISTINCT referral_code) FROM customer")
    assert codes == [(5,)]
