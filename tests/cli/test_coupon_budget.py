"""coupon issue --budget-uses/--budget-amount and coupon stats: a campaign's cap, spent and left."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli


def issue(cli: Cli, who: str, *extra: str) -> str:
    rows = cli.ok("coupon", "issue", "--customer", who, "--amount", "5", "--campaign", "winback", *extra, "-f", "json")
    return str(rows.json()[0]["code"])


def test_a_campaign_budget_refuses_the_use_that_would_pass_it(cli: Cli) -> None:
    for name in ("Ann", "Bob", "Cy"):
        cli.new_id("customer", "add", name)
    first = issue(cli, "1", "--budget-uses", "2", "--budget-amount", "9")
    second, third = issue(cli, "2"), issue(cli, "3")
    cli.ok("purchase", "add", "1", "20", "--coupon", first)
    refused = cli("purchase", "add", "2", "20", "--coupon", second)
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: campaign winback has 4.00 of its 9.00 budget left, less than this discount of 5.00\n"
    )
    cli.ok("coupon", "redeem", second, "--customer", "2", "--amount", "4")  # a 4.00 order: 4.00 off
    refused = cli("coupon", "redeem", third, "--customer", "3", "--amount", "4")
    assert refused.stderr == "Error: campaign winback has used its budget of 2 coupon uses\n"
    (row,) = cli.ok("coupon", "stats", "--campaign", "winback", "-f", "json").json()
    assert {k: row[k] for k in ("budget_uses", "left_uses", "budget_amount", "spent_amount", "left_amount")} == {
        "budget_uses": 2,
        "left_uses": 0,
        "budget_amount": "9.00",
        "spent_amount": "9.00",
        "left_amount": "0.00",
    }
    table = cli.ok("coupon", "stats").stdout
    assert "uses left" in table and "budget" in table and "9.00" in table


def test_a_budget_needs_a_campaign_and_cannot_go_below_what_is_spent(cli: Cli) -> None:
    cli.new_id("customer", "add", "Ann")
    assert "give --campaign too" in cli.usage_error(
        "coupon", "issue", "--customer", "1", "--amount", "5", "--budget-uses", "3"
    )
    code = issue(cli, "1")
    cli.ok("purchase", "add", "1", "20", "--coupon", code)
    refused = cli(
        "coupon", "issue", "--customer", "1", "--amount", "5", "--campaign", "winback", "--budget-amount", "2"
    )
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: campaign winback has already given more discount than that budget")
    assert "--budget-amount" in refused.stderr


def test_a_purchase_file_with_recorded_discounts_is_held_to_the_budget(cli: Cli, tmp_path: Path) -> None:
    """A sale imported with the discount it was given (an export read back) uses its coupon as a
    sale typed at the till does: its campaign's budget counts it and refuses what passes it."""
    for name in ("Ann", "Bob"):
        cli.new_id("customer", "add", name)
    first = issue(cli, "1", "--budget-uses", "1")
    second = issue(cli, "2")
    sales = tmp_path / "sales.csv"
    sales.write_text(
        "customer,amount,coupon,coupon_discount,net\n"
        f"id:1,20.00,{first},5.00,15.00\n"
        f"id:2,20.00,{second},5.00,15.00\n",
        encoding="utf-8",
    )
    refused = cli("purchase", "import", str(sales))
    assert refused.exit_code == 1
    assert "line 3: campaign winback has used its budget of 1 coupon uses" in refused.stderr
    assert cli.ok("purchase", "list", "-f", "json").json() == []
    header = sales.read_text(encoding="utf-8").splitlines(keepends=True)[0]
    sales.write_text(header + f"id:1,20.00,{first},5.00,15.00\n", encoding="utf-8")
    cli.ok("purchase", "import", str(sales))
    (row,) = cli.ok("coupon", "stats", "--campaign", "winback", "-f", "json").json()
    assert (row["uses"], row["spent_uses"], row["left_uses"], row["spent_amount"]) == (1, 1, 0, "5.00")
    refused = cli("purchase", "add", "2", "20", "--coupon", second)
    assert refused.stderr == "Error: campaign winback has used its budget of 1 coupon uses\n"
