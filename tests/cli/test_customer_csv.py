"""Customer CSV import and export: encodings, mistakes, duplicates, round trips."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Cli

HEADER = (
    "name,email,phone,company,city,source,stage,tags,ref,referred_by,note,birthday,created_at,stage_history,"
    "referral_status,referral_decided_at,referral_reason,birthday_rewards,referral_code"
)


def write(tmp_path: Path, text: str, name: str = "c.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def customers(cli: Cli) -> list[dict]:
    return cli.ok("customer", "list", "-f", "json").json()


def count(cli: Cli) -> int:
    conn = sqlite3.connect(cli.db_path)
    try:
        return conn.execute("SELECT count(*) FROM customer").fetchone()[0]
    finally:
        conn.close()


def test_plain_utf8_import(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,email,tags,stage\nAnn Lee,Ann@Example.com,VIP;local,prospect\nBob,,,\n")
    summary = cli.ok("customer", "import", str(file), "-f", "json").json()
    assert summary == {
        "rows": 2,
        "inserted": 2,
        "updated": 0,
        "skipped": 0,
        "rejected": 0,
        "dry_run": False,
        "referrals": 0,
    }
    ann, bob = customers(cli)
    assert (ann["email"], ann["tags"], ann["stage"]) == ("ann@example.com", ["local", "vip"], "prospect")
    assert bob["stage"] == "lead"
    history = cli.ok("customer", "show", str(ann["id"]), "-f", "json").json()["stage_history"]
    assert [h["to"] for h in history] == ["prospect"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030", "gbk"])
def test_bom_and_chinese_excel_files(cli: Cli, tmp_path: Path, encoding: str) -> None:
    file = write(tmp_path, "name,city\n王小明,北京\n李华,上海\n", encoding=encoding)
    cli.ok("customer", "import", str(file))
    assert [(c["name"], c["city"]) for c in customers(cli)] == [("王小明", "北京"), ("李华", "上海")]


def test_forced_encoding_and_delimiters(cli: Cli, tmp_path: Path) -> None:
    latin = write(tmp_path, "name;city\nJosé;Málaga\n", "l.csv", encoding="latin-1")
    result = cli("customer", "import", str(latin), "--encoding", "utf-8")
    assert result.exit_code == 1 and "not valid utf-8" in result.stderr
    cli.ok("customer", "import", str(latin), "--encoding", "latin-1")
    tabbed = write(tmp_path, "name\tcity\nAnn\tRiverton\n", "t.csv")
    cli.ok("customer", "import", str(tabbed))
    piped = write(tmp_path, "name|city\nBob|Lakeside\n", "p.csv")
    cli.ok("customer", "import", str(piped), "--delimiter", "|")
    assert [(c["name"], c["city"]) for c in customers(cli)] == [
        ("José", "Málaga"),
        ("Ann", "Riverton"),
        ("Bob", "Lakeside"),
    ]
    assert "unknown encoding 'klingon'" in cli("customer", "import", str(piped), "--encoding", "klingon").stderr


def test_map_renames_columns(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "Full Name,E-mail,Mobile\nAnn,ann@example.com,+1 212 555 0100\n")
    cli.ok("customer", "import", str(file), "--map", "Full Name=name", "--map", "E-mail=email", "--map", "mobile=phone")
    (ann,) = customers(cli)
    assert (ann["name"], ann["email"], ann["phone"]) == ("Ann", "ann@example.com", "+12125550100")
    refused = cli("customer", "import", str(file), "--map", "oops")
    assert refused.stderr == "Error: bad column mapping 'oops': use CSVCOL=FIELD (check --map)\n"


def test_one_bad_row_in_ten_thousand_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    lines = [f"Customer {i},c{i}@example.com" for i in range(1, 10_001)]
    lines[9_998] = "Customer 9999,not-an-email"  # data row 9,999 is on line 10,000
    file = write(tmp_path, "name,email\n" + "\n".join(lines) + "\n")
    result = cli("customer", "import", str(file))
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert errors[0].startswith("line 10000: bad email 'not-an-email'")
    assert errors[-1] == (
        f"Error: 1 bad row(s) in {file}; nothing was imported "
        "(fix them, or pass --skip-invalid FILE to import the good rows)"
    )
    assert count(cli) == 0


def test_every_bad_row_is_reported(cli: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "name,email,stage,phone\nOK,ok@example.com,,\n,x@example.com,,\nBad,bad@,,\n"
        "Stage,,vip,\nPhone,,,call me\nDup,OK@example.com,,\n",
    )
    result = cli("customer", "import", str(file))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "line 3: a customer needs a name"
    assert lines[1].startswith("line 4: bad email 'bad@'")
    assert lines[2].startswith("line 5: unknown stage 'vip'")
    assert lines[3].startswith("line 6: bad phone 'call me'")
    assert lines[4] == "line 7: same email as line 2 of this file"
    assert "5 bad row(s)" in lines[-1] and count(cli) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("\ufeff\n\n", "is empty"),
        ("name,shoe_size\nAnn,42\n", "unknown column(s) 'shoe_size'"),
        ("email\nann@example.com\n", "missing required column(s) name"),
        ("name,email,Name\nA,a@example.com,B\n", "column 'name' appears twice"),
    ],
)
def test_bad_files(cli: Cli, tmp_path: Path, text: str, message: str) -> None:
    result = cli("customer", "import", str(write(tmp_path, text)))
    assert result.exit_code == 1 and message in result.stderr
    assert result.stderr.count("Error:") == 1 and "Traceback" not in result.stderr


def test_unknown_column_suggests_map(cli: Cli, tmp_path: Path) -> None:
    result = cli("customer", "import", str(write(tmp_path, "name,E-mail\nA,a@example.com\n")))
    assert "rename with --map CSVCOL=FIELD" in result.stderr


def test_row_with_too_many_cells(cli: Cli, tmp_path: Path) -> None:
    result = cli("customer", "import", str(write(tmp_path, "name,city\nAnn,Riverton,extra\n")))
    assert result.exit_code == 1 and "line 2: 3 cells but the header has 2" in result.stderr


def test_missing_file(cli: Cli, tmp_path: Path) -> None:
    result = cli("customer", "import", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1 and "cannot read" in result.stderr


def test_dry_run_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,email\nAnn,ann@example.com\n")
    summary = cli.ok("customer", "import", str(file), "--dry-run", "-f", "json").json()
    assert summary["inserted"] == 1 and summary["dry_run"] is True
    assert count(cli) == 0


def test_skip_invalid_imports_good_rows_and_keeps_the_bad(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,email\nAnn,ann@example.com\nBad,nope\nBob,bob@example.com\n")
    rejects = tmp_path / "rejected.csv"
    summary = cli.ok("customer", "import", str(file), "--skip-invalid", str(rejects), "-f", "json").json()
    assert (summary["inserted"], summary["rejected"]) == (2, 1)
    text = rejects.read_text(encoding="utf-8-sig").splitlines()
    assert text[0] == "line,error," + HEADER
    assert text[1].startswith("3,bad email 'nope'") and text[1].endswith(",Bad,nope" + "," * 17)
    bad = cli("customer", "import", str(file), "--skip-invalid", str(tmp_path / "no" / "r.csv"))
    assert bad.exit_code == 1 and f"the folder {tmp_path / 'no'} does not exist" in bad.stderr


def test_on_duplicate_modes(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "name,email,ref,tags,city\nAnn,ann@example.com,,vip,\nBob,,B-1,,\nNo Keys,,,,\n")
    cli.ok("customer", "import", str(file))
    again = cli("customer", "import", str(file))
    assert again.exit_code == 1
    assert "line 2: email ann@example.com already belongs to customer 1 (a duplicate: skip it or update it)" in (
        again.stderr
    )
    assert "line 4: name No Keys already belongs to customer 3" in again.stderr
    before = cli.ok("customer", "export").stdout
    skipped = cli.ok("customer", "import", str(file), "--on-duplicate", "skip", "-f", "json").json()
    assert (skipped["inserted"], skipped["skipped"]) == (0, 3)
    assert cli.ok("customer", "export").stdout == before  # re-running with skip changes nothing
    update = write(tmp_path, "name,email,tags,city\nAnn Lee,ANN@example.com,local,Riverton\n", "u.csv")
    updated = cli.ok("customer", "import", str(update), "--on-duplicate", "update", "-f", "json").json()
    assert updated["updated"] == 1
    ann = cli.ok("customer", "show", "1", "-f", "json").json()
    assert (ann["name"], ann["city"], ann["tags"]) == ("Ann Lee", "Riverton", ["local", "vip"])
    refused = cli.usage_error("customer", "import", str(file), "--on-duplicate", "merge")
    assert "'--on-duplicate'" in refused and "'merge' is not one of 'skip', 'update', 'error'" in refused


def test_a_row_matching_two_customers(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--ref", "B-1")
    file = write(tmp_path, "name,email,ref\nAnnBob,ann@example.com,B-1\n")
    result = cli("customer", "import", str(file), "--on-duplicate", "update")
    assert result.exit_code == 1 and "matches several customers" in result.stderr


def test_referred_by_column(cli: Cli, tmp_path: Path) -> None:
    code = cli.ok("customer", "add", "Old", "-f", "json").json()["referral_code"]
    file = write(
        tmp_path, f"name,email,ref,referred_by\nAnn,ann@example.com,A,{code.lower()}\nBob,,B,ann@example.com\nCy,,C,A\n"
    )
    summary = cli.ok("customer", "import", str(file), "-f", "json").json()
    assert summary["referrals"] == 3
    pairs = [(r["referrer"], r["referred"]) for r in cli.ok("referral", "list", "-f", "json").json()]
    assert pairs == [("Old", "Ann"), ("Ann", "Bob"), ("Ann", "Cy")]
    bad = write(tmp_path, "name,referred_by\nZed,nobody\n", "b.csv")
    result = cli("customer", "import", str(bad))
    assert result.exit_code == 1 and "line 2: referred_by 'nobody' is not a customer" in result.stderr
    selfish = write(tmp_path, "name,ref,referred_by\nMe,ME,ME\n", "s.csv")
    result = cli("customer", "import", str(selfish))
    assert result.exit_code == 1 and "cannot refer themselves" in result.stderr
    assert count(cli) == 4


def test_export_csv_and_json(cli: Cli, tmp_path: Path) -> None:
    assert cli.ok("customer", "export", "--format", "json").json() == []
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--tag", "vip", "--tag", "local")
    out = tmp_path / "out.csv"
    cli.ok("customer", "export", "--out", str(out))
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf" + HEADER.encode())
    rows = json.loads(cli.ok("customer", "export", "--format", "json").stdout)
    assert rows == [
        {
            "name": "Ann",
            "email": "ann@example.com",
            "phone": None,
            "company": None,
            "city": None,
            "source": None,
            "stage": "lead",
            "tags": "local;vip",
            "ref": None,
            "referred_by": None,
            "note": None,
            "birthday": None,
            # when the customer joined, and the stage history's changes by hand
            "created_at": rows[0]["created_at"],
            "stage_history": f"lead@{rows[0]['created_at']}",
            # a referral decided by hand (none here)
            "referral_status": None,
            "referral_decided_at": None,
            "referral_reason": None,
            "birthday_rewards": None,  # the years the daily job gave a birthday reward
            "referral_code": cli.ok("customer", "show", "1", "-f", "json").json()["referral_code"],
        }
    ]
    assert not cli.ok("customer", "export", "--no-bom").stdout.startswith("\ufeff")
    missing = cli("customer", "export", "--out", str(tmp_path / "nope" / "x.csv"))
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_formula_injection_is_neutralised(cli: Cli, tmp_path: Path, start: str) -> None:
    cli.ok("customer", "add", "--note", f"{start}1+1", "--", f'{start}HYPERLINK("http://evil")')
    out = tmp_path / "x.csv"
    cli.ok("customer", "export", "--out", str(out))
    line = out.read_text(encoding="utf-8-sig").splitlines()[1]
    assert line.startswith(f"\"'{start}HYPERLINK") and f",'{start}1+1," in line


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=x", "''"])
def test_neutralise_and_back(value: str) -> None:
    from crmcli.io.reader import unneutralise
    from crmcli.io.writer import neutralise

    assert neutralise(value).startswith("'") and unneutralise(neutralise(value)) == value
    assert neutralise("plain") == "plain" and unneutralise("plain") == "plain"


def test_export_imports_back_unchanged(cli: Cli, tmp_path: Path) -> None:
    ann = cli.new_id(
        "customer",
        "add",
        '=HYPERLINK("http://x")',
        "--email",
        "ann@example.com",
        "--phone",
        "+44 20 7946 0018",
        "--tag",
        "vip",
        "--tag",
        "-minus",
        "--ref",
        "A-1",
        "--note",
        "line one\nline two, with a comma",
        "--company",
        "@home",
        "--city",
        "'quoted",
    )
    cli.ok("customer", "add", "Bob", "--referred-by", str(ann), "--phone", "020 555", "--stage", "prospect")
    cli.ok("customer", "add", "王小明", "--source", "+web")
    first = tmp_path / "first.csv"
    cli.ok("customer", "export", "--out", str(first))
    fresh = Cli(tmp_path / "fresh.db")
    fresh.ok("customer", "import", str(first))
    second = tmp_path / "second.csv"
    fresh.ok("customer", "export", "--out", str(second))
    assert second.read_bytes() == first.read_bytes()
    assert fresh.ok("customer", "show", "A-1", "-f", "json").json()["name"] == '=HYPERLINK("http://x")'


def test_a_row_refused_for_its_referral_leaves_no_customer_behind(cli: Cli, tmp_path: Path) -> None:
    """Regression: with --skip-invalid, the customer of a row rejected for its referrer was still written."""
    cli.ok("customer", "add", "Old", "--email", "old@example.com")
    file = write(
        tmp_path,
        "name,email,referred_by\nGood,good@example.com,old@example.com\n"
        "Orphan,orphan@example.com,nobody@example.com\nSame,OLD2@example.com,old2@example.com\n"
        "Later,later@example.com,good@example.com\n",
    )
    rejects = tmp_path / "r.csv"
    summary = cli.ok("customer", "import", str(file), "--skip-invalid", str(rejects), "-f", "json").json()
    assert (summary["inserted"], summary["rejected"], summary["referrals"]) == (2, 2, 2)
    assert sorted(c["name"] for c in customers(cli)) == ["Good", "Later", "Old"]
    pairs = {(r["referrer"], r["referred"]) for r in cli.ok("referral", "list", "-f", "json").json()}
    assert pairs == {("Old", "Good"), ("Good", "Later")}
    reasons = rejects.read_text(encoding="utf-8-sig")
    assert "referred_by 'nobody@example.com' is not a customer" in reasons and "cannot refer themselves" in reasons


def test_an_unclosed_quote_is_an_error_not_lost_rows(cli: Cli, tmp_path: Path) -> None:
    """Regression: an unclosed quote swallowed every later row into one cell, silently."""
    result = cli("customer", "import", str(write(tmp_path, 'name,note\nAnn,"unclosed\nBob,fine\n')))
    assert result.exit_code == 1 and "a quoted cell is never closed" in result.stderr
    assert count(cli) == 0


def test_round_trip_with_numeric_refs_and_an_erased_referrer(cli: Cli, tmp_path: Path) -> None:
    """Regression: a referrer's numeric ref was read as an id, and an erased referrer was exported by id."""
    for name, ref in (("One", "2"), ("Two", "1")):
        cli.ok("customer", "add", name, "--ref", ref)
    cli.ok("customer", "add", "Three", "--ref", "T", "--referred-by", "id:1")  # "One", whose ref is "2"
    gone = cli.new_id("customer", "add", "Gone", "--email", "gone@example.com")
    cli.ok("customer", "add", "Four", "--referred-by", str(gone))
    cli.ok("customer", "erase", str(gone), "--yes")
    first = tmp_path / "first.csv"
    cli.ok("customer", "export", "--out", str(first))
    lines = first.read_text(encoding="utf-8-sig").splitlines()
    assert lines[3].startswith("Three,") and ",T,ref:2," in lines[3]
    four = next(csv.reader([lines[4]]))
    assert four[0] == "Four" and four[9:11] == ["", ""]  # no referrer, no note
    fresh = Cli(tmp_path / "fresh.db")
    fresh.ok("customer", "import", str(first))
    assert fresh.ok("customer", "show", "T", "-f", "json").json()["referred_by"]["name"] == "One"
    second = tmp_path / "second.csv"
    fresh.ok("customer", "export", "--out", str(second))
    assert second.read_bytes() == first.read_bytes()


def test_referral_codes_move_with_their_customers(cli: Cli, tmp_path: Path) -> None:
    """Regression: the customer file did not carry referral codes, so a moved shop gave every
    customer a new one and the codes already handed out stopped working."""
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com", "--referred-by", "ann@example.com")
    codes = {cid: cli.ok("customer", "show", cid, "-f", "json").json()["referral_code"] for cid in ("1", "2")}
    moved = tmp_path / "customers.csv"
    cli.ok("customer", "export", "--out", str(moved))
    fresh = Cli(tmp_path / "fresh.db")
    fresh.ok("customer", "import", str(moved))
    for cid, code in codes.items():
        assert fresh.ok("customer", "show", f"code:{code}", "-f", "json").json()["id"] == int(cid)
    # a new customer's code must be its own: held by a customer, twice in the file, or malformed
    clash = tmp_path / "clash.csv"
    clash.write_text(
        "name,email,referral_code\n"
        f"Cy,cy@example.com,{codes['1']}\n"
        "Di,di@example.com,ABCDEFGH\n"
        "Ed,ed@example.com,abcdefgh\n"
        "Flo,flo@example.com,IOIOIOIO\n"
    )
    refused = fresh("customer", "import", str(clash))
    assert refused.exit_code == 1
    assert f"line 2: referral_code {codes['1']} already belongs to customer 1" in refused.stderr
    assert "line 4: referral_code ABCDEFGH already belongs to line 3 of this file" in refused.stderr
    assert "line 5: referral_code 'IOIOIOIO' is not a referral code" in refused.stderr
    assert len(fresh.ok("customer", "list", "-f", "json").json()) == 2  # nothing was written
    # a duplicate row updated in place keeps the customer's own code
    fresh.ok("customer", "import", str(moved), "--on-duplicate", "update")
    assert fresh.ok("customer", "show", "1", "-f", "json").json()["referral_code"] == codes["1"]
