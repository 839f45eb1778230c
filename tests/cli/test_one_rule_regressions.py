"""Regressions for the cases where a command and an import disagreed, through the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import Cli


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def balance(cli: Cli, who: str) -> int:
    return int(cli.ok("points", "show", who, "-f", "json").json()["balance"])


def test_split_import_gives_the_balance_of_one_file(tmp_path: Path) -> None:
    """Regression: 5 points when imported in one file, 0 when the payment arrived in a later file."""
    sales = "customer,amount,at,due,paid_at,ref\nref:A,100,2026-01-05,2026-01-10,{paid},S1\nref:A,50,2026-01-20,,,S2\n"
    balances = []
    for name, files in (
        ("one", [sales.format(paid="2026-01-25")]),
        (
            "two",
            [
                sales.format(paid=""),
                "customer,amount,at,due,paid_at,ref\nref:A,100,2026-01-05,2026-01-10,2026-01-25,S1\n",
            ],
        ),
    ):
        cli = Cli(tmp_path / f"{name}.db")
        cli.ok("customer", "add", "Ann", "--ref", "A")
        for n, text in enumerate(files):
            cli.ok("purchase", "import", str(write(tmp_path, f"{name}{n}.csv", text)), "--on-duplicate", "update")
        balances.append(balance(cli, "ref:A"))
    assert balances == [5, 5]  # the 10 earned by the due date were reset; the later 5 stay


def test_the_same_text_names_the_same_customer_everywhere(cli: Cli, tmp_path: Path) -> None:
    """Regression: "1" was customer id 1 on the command line but the customer with ref 1 in an import."""
    cli.ok("customer", "add", "Ann", "--ref", "2")
    cli.ok("customer", "add", "Bob", "--ref", "1")
    shown = cli("customer", "show", "1")
    imported = cli("purchase", "import", str(write(tmp_path, "p.csv", "customer,amount\n1,10\n")))
    for result in (shown, imported):
        assert result.exit_code == 1
        assert "'1' matches customer 2 by its ref and customer 1 by its id" in result.stderr
        assert "id:, ref:, email:, phone: or code:" in result.stderr
    assert cli.ok("customer", "show", "id:1", "-f", "json").json()["name"] == "Ann"
    assert cli.ok("customer", "show", "ref:1", "-f", "json").json()["name"] == "Bob"
    columns = "customer_id,customer_ref,amount\n1,,10\n,1,20\n"
    cli.ok("purchase", "import", str(write(tmp_path, "q.csv", columns)))
    rows = cli.ok("purchase", "list", "--sort", "id", "-f", "json").json()
    assert sorted((r["customer_id"], r["amount"]) for r in rows) == [(1, "10.00"), (2, "20.00")]


def test_a_referral_code_and_an_email_name_a_customer(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    code = cli.ok("customer", "show", "ann@example.com", "-f", "json").json()["referral_code"]
    assert cli.ok("customer", "show", code.lower(), "-f", "json").json()["name"] == "Ann"
    assert cli.ok("customer", "show", f"code:{code}", "-f", "json").json()["name"] == "Ann"
    assert cli.ok("customer", "show", "email:ANN@example.com", "-f", "json").json()["name"] == "Ann"


def test_accrual_after_a_merge(cli: Cli, db_path: Path) -> None:
    """Regression: after a merge, points accrue failed on the period '00003/merged-2'."""
    for name in ("Keep", "Drop"):
        cli.ok("customer", "add", name)
    with sqlite3.connect(db_path) as conn:  # both joined four months ago
        conn.execute("UPDATE customer SET created_at = datetime('now', '-4 months', '-1 day')")
    assert cli.ok("points", "accrue", "-f", "json").json()["points"] == 8
    cli.ok("customer", "merge", "1", "2", "--yes")
    again = cli.ok("points", "accrue", "-f", "json").json()
    assert again["points"] == 0
    assert balance(cli, "1") == 8  # the kept customer's 4 months and the merged customer's 4


def test_a_merge_that_would_close_a_circle_is_refused(cli: Cli) -> None:
    """Regression: X referred K, D referred X; merging D into K left a circle and a tree that never ended."""
    for name in ("D", "X", "K"):
        cli.ok("customer", "add", name)
    cli.ok("referral", "add", "1", "2")  # D brought X
    cli.ok("referral", "add", "2", "3")  # X brought K
    refused = cli("customer", "merge", "3", "1", "--yes")
    assert refused.exit_code == 1
    assert "customer 1 brought customer 3 through customer 2" in refused.stderr
    assert [r["referrer_id"] for r in cli.ok("referral", "list", "-f", "json").json()] == [1, 2]


def test_referral_tree_ends_on_a_database_with_a_circle(cli: Cli, db_path: Path) -> None:
    for name in ("A", "B", "C"):
        cli.ok("customer", "add", name)
    cli.ok("referral", "add", "1", "2")
    cli.ok("referral", "add", "2", "3")
    with sqlite3.connect(db_path) as conn:  # as an older version could leave it
        conn.execute(
            "INSERT INTO referral (referrer_id, referred_id, status, created_at) VALUES (3, 1, 'pending', '2026-01-01')"
        )
    tree = cli.ok("referral", "tree", "1", "-f", "json").json()
    assert tree["branch_customers"] == 2 and "circle" in tree["warning"]


def test_refunding_the_qualifying_purchase_reopens_the_referral(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com", "--referred-by", "ann@example.com")
    first = cli.new_id("purchase", "add", "bob@example.com", "40")
    assert cli.ok("referral", "list", "-f", "json").json()[0]["status"] == "verified"
    rewards = cli.ok("coupon", "list", "--campaign", "referral", "-f", "json").json()
    assert len(rewards) == 2
    cli.ok("purchase", "refund", str(first))
    assert cli.ok("referral", "list", "-f", "json").json()[0]["status"] == "pending"
    statuses = {c["status"] for c in cli.ok("coupon", "list", "--campaign", "referral", "-f", "json").json()}
    assert statuses == {"void"}
    cli.ok("purchase", "add", "bob@example.com", "30")  # verifies again, rewarding once more
    assert cli.ok("referral", "list", "-f", "json").json()[0]["status"] == "verified"
    active = [
        c for c in cli.ok("coupon", "list", "--campaign", "referral", "-f", "json").json() if c["status"] == "active"
    ]
    assert len(active) == 2


def test_a_recent_buyer_is_not_quiet(cli: Cli, db_path: Path) -> None:
    """A purchase is contact: a customer who bought five days ago is not 'no contact for 30 days'."""
    cli.ok("customer", "add", "Ann", "--stage", "customer")
    cli.ok("customer", "add", "Bob", "--stage", "customer")
    with sqlite3.connect(db_path) as conn:  # both joined two months ago
        conn.execute("UPDATE customer SET created_at = datetime('now', '-60 days')")
    cli.ok("purchase", "add", "1", "10", "--at", "-5d")
    due = cli.ok("followup", "due", "-f", "json").json()
    assert [row["customer_id"] for row in due if row["reason"] == "no contact"] == [2]


def test_a_phone_as_typed_finds_its_customer(cli: Cli) -> None:
    cli.ok("customer", "add", "Li", "--phone", "138 0013 8000")
    for typed in ("138 0013 8000", "138-0013-8000", "13800138000"):
        assert [c["name"] for c in cli.ok("customer", "list", "--search", typed, "-f", "json").json()] == ["Li"]
        assert cli.ok("customer", "show", typed, "-f", "json").json()["name"] == "Li"
