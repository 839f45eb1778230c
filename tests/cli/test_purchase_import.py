from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from crmcli.db import Database
from crmcli.models import PointsEntry, table_of
from tests.conftest import Cli


@pytest.fixture
def people(cli: Cli) -> Cli:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--ref", "T-1")
    cli.ok("customer", "add", "Bob", "--ref", "T-2", "--referred-by", "1")
    return cli


def write(tmp_path: Path, text: str, name: str = "p.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def purchases(cli: Cli) -> list[dict]:
    return cli.ok("purchase", "list", "--sort", "id", "-f", "json").json()


def test_import_names_customers_by_id_email_or_ref(people: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "customer,amount,at,ref\n1,10.00,2026-01-05,R1\nANN@example.com,20,2026-01-06,R2\n"
        "T-2,30.5,2026-01-07T15:30:00,R3\n",
    )
    summary = people.ok("purchase", "import", str(file), "-f", "json").json()
    # Ann: lead -> customer -> repeat (two steps, as two commands would record); Bob: lead -> customer.
    assert (summary["inserted"], summary["stage_changes"], summary["referrals_verified"]) == (3, 3, 1)
    rows = purchases(people)
    assert [(p["customer_id"], p["amount"], p["ref"]) for p in rows] == [
        (1, "10.00", "R1"),
        (1, "20.00", "R2"),
        (2, "30.50", "R3"),
    ]
    assert rows[2]["at"] == "2026-01-07T15:30:00+00:00" and rows[0]["paid_at"] == rows[0]["at"]
    ann = people.ok("customer", "show", "1", "-f", "json").json()
    assert ann["stage"] == "repeat" and ann["points"] == 3  # 1 + 2 points earned
    bob = people.ok("customer", "show", "2", "-f", "json").json()
    assert bob["stage"] == "customer" and bob["referred_by"]["status"] == "verified"
    assert len(people.ok("coupon", "list", "--campaign", "referral", "-f", "json").json()) == 2


def test_all_or_nothing_with_every_bad_row_reported(people: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "customer,amount\n1,10\nnobody,5\n1,0\n1,-3\n1,2.999\n,4\n1,abc\n")
    result = people("purchase", "import", str(file))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[:5] == [
        "line 3: no customer 'nobody'",
        "line 5: the amount cannot be negative: a refund is recorded on the sale it refunds",
        "line 6: bad amount '2.999': at most 2 decimal places",
        "line 7: no customer given",
        "line 8: bad amount 'abc': use a number such as 19.90",
    ]
    assert lines[-1].startswith("Error: 5 bad row(s)") and "nothing was imported" in lines[-1]
    assert purchases(people) == []


def test_skip_invalid_and_dry_run(people: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "customer,amount\n1,10\nnobody,5\n")
    dry = people.ok(
        "purchase", "import", str(file), "--dry-run", "--skip-invalid", str(tmp_path / "r.csv"), "-f", "json"
    ).json()
    assert dry["dry_run"] is True and purchases(people) == []
    rejects = tmp_path / "rejects.csv"
    summary = people.ok("purchase", "import", str(file), "--skip-invalid", str(rejects), "-f", "json").json()
    assert (summary["inserted"], summary["rejected"]) == (1, 1)
    assert rejects.read_text(encoding="utf-8-sig").splitlines()[1] == "3,no customer 'nobody',nobody,5" + "," * 14


def test_duplicate_refs(people: Cli, tmp_path: Path) -> None:
    file = write(tmp_path, "customer,amount,ref,due\n1,10,R1,\n1,20,R2,2026-12-31\n")
    people.ok("purchase", "import", str(file))
    again = people("purchase", "import", str(file))
    assert again.exit_code == 1 and "line 2: ref R1 is already purchase 1" in again.stderr
    skipped = people.ok("purchase", "import", str(file), "--on-duplicate", "skip", "-f", "json").json()
    assert (skipped["inserted"], skipped["skipped"]) == (0, 2)
    assert len(purchases(people)) == 2
    within = write(tmp_path, "customer,amount,ref\n1,10,X\n1,20,X\n", "w.csv")
    result = people("purchase", "import", str(within))
    assert result.exit_code == 1 and "line 3: same ref as line 2 of this file" in result.stderr


def test_update_brings_a_later_payment(people: Cli, tmp_path: Path) -> None:
    first = write(tmp_path, "customer,amount,at,due,ref\n1,100,2026-01-01,2026-01-31,R1\n")
    people.ok("purchase", "import", str(first))
    assert purchases(people)[0]["paid_at"] is None
    later = write(tmp_path, "customer,amount,at,due,paid_at,ref\n1,100,2026-01-01,2026-01-31,2026-02-10,R1\n", "l.csv")
    summary = people.ok("purchase", "import", str(later), "--on-duplicate", "update", "-f", "json").json()
    assert summary["updated"] == 1
    row = purchases(people)[0]
    assert row["paid_at"] == "2026-02-10T00:00:00+00:00" and row["late"] is True
    assert people.ok("points", "show", "1", "-f", "json").json()["balance"] == 0  # reset by the late payment


def test_update_that_brings_a_due_date_forward_writes_the_reset_it_calls_for(people: Cli, tmp_path: Path) -> None:
    first = write(tmp_path, "customer,amount,at,due,ref\n1,100,2026-01-01,2099-01-31,R1\n")
    people.ok("purchase", "import", str(first))  # on credit, due long after today
    earlier = write(tmp_path, "customer,amount,at,due,ref\n1,100,2026-01-01,2026-01-31,R1\n", "e.csv")
    people.ok("purchase", "import", str(earlier), "--on-duplicate", "update")  # due in January: late since
    with Database(str(people.db_path)).session() as s:  # as the import left it, before any read settles
        e = table_of(PointsEntry)
        resets = s.execute(select(e.c.delta).where(e.c.kind == "reset")).scalars().all()
    assert resets == [-10]


def test_late_payment_in_the_file_resets_points_earned_before_it(people: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "customer,amount,at,due,paid_at\n"
        "1,100,2026-01-01,2026-01-10,2026-01-20\n"  # 10 points, paid late on Jan 20
        "1,50,2026-03-01,,\n",
    )  # 5 points after the reset
    people.ok("purchase", "import", str(file))
    ledger = people.ok("points", "show", "1", "-f", "json").json()
    assert ledger["balance"] == 5
    assert sorted(e["kind"] for e in ledger["ledger"]) == ["earn", "earn", "reset"]


def test_coupon_column_uses_the_coupon(people: Cli, tmp_path: Path) -> None:
    code = people.ok("coupon", "issue", "--customer", "1", "--amount", "5", "-f", "json").json()[0]["code"]
    file = write(tmp_path, f"customer,amount,coupon\n1,30,{code}\n1,30,{code}\n")
    result = people("purchase", "import", str(file))
    assert result.exit_code == 1 and f"line 3: coupon {code} was already used" in result.stderr
    assert purchases(people) == []
    one = write(tmp_path, f"customer,amount,coupon\n1,30,{code}\n", "one.csv")
    people.ok("purchase", "import", str(one))
    assert purchases(people)[0]["net"] == "25.00"


def test_gbk_file_with_chinese_names(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "王小明", "--ref", "客户-1")
    file = write(tmp_path, "customer,amount\n客户-1,88.80\n", encoding="gb18030")
    # Four bytes of Chinese read as GB18030, Big5, Shift-JIS or cp1252: refused until chosen
    refused = cli("purchase", "import", str(file))
    assert refused.exit_code == 1 and "the encoding is unclear" in refused.stderr and "--encoding" in refused.stderr
    cli.ok("purchase", "import", str(file), "--encoding", "gb18030")
    assert purchases(cli)[0]["customer"] == "王小明"


def test_export_imports_back(people: Cli, tmp_path: Path) -> None:
    file = write(
        tmp_path, "customer,amount,at,due,paid_at,ref\n1,10,2026-01-05,,,R1\nT-2,20,2026-01-06,2026-02-01,,R2\n"
    )
    people.ok("purchase", "import", str(file))
    out = tmp_path / "out.csv"
    people.ok("purchase", "export", "--out", str(out))
    text = out.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0] == (
        "customer,amount,at,due,paid_at,refunded_at,coupon,coupon_discount,points,points_discount,net,ref"
    )
    fresh = Cli(tmp_path / "fresh.db")
    fresh.ok("customer", "add", "Ann", "--email", "ann@example.com", "--ref", "T-1")
    fresh.ok("customer", "add", "Bob", "--ref", "T-2")
    fresh.ok("purchase", "import", str(out))
    again = tmp_path / "again.csv"
    fresh.ok("purchase", "export", "--out", str(again))
    assert again.read_text(encoding="utf-8-sig") == text


def test_recorded_points_are_refused_when_only_the_sale_itself_earns_them(cli: Cli, tmp_path: Path) -> None:
    """Regression: a file's sale could spend the points that sale earns, which `purchase add`
    refuses; both ways in now agree, and a spend the ledger covers still goes through."""
    cli.ok("customer", "add", "Cy", "--email", "cy@example.com")
    cli.ok("purchase", "add", "cy@example.com", "100", "--at", "2026-10-01")  # earns 10
    typed = cli("purchase", "add", "cy@example.com", "200", "--at", "2026-11-01", "--points", "25")
    assert typed.exit_code == 1 and "10 points, fewer than the 25" in typed.stderr
    header = "customer,amount,at,points,points_discount,net\n"
    too_many = tmp_path / "too_many.csv"
    too_many.write_text(header + "email:cy@example.com,200.00,2026-11-01,25,0.25,199.75\n")
    refused = cli("purchase", "import", str(too_many))
    assert refused.exit_code == 1 and "would have 10 points" in refused.stderr
    assert cli.ok("points", "show", "1", "-f", "json").json()["balance"] == 10  # nothing was written
    covered = tmp_path / "covered.csv"
    covered.write_text(header + "email:cy@example.com,200.00,2026-11-01,10,0.10,199.90\n")
    cli.ok("purchase", "import", str(covered))
    typed_too = cli.ok("purchase", "add", "cy@example.com", "5", "--at", "2026-11-02", "--points", "19")
    assert cli.ok("points", "show", "1", "-f", "json").json()["balance"] == 0, typed_too.stdout
