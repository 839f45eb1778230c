from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli


@pytest.fixture
def ann(cli: Cli) -> int:
    return cli.new_id("customer", "add", "Ann", "--email", "ann@example.com")


def profile(cli: Cli, who: int | str) -> dict:
    return cli.ok("customer", "show", str(who), "-f", "json").json()


def test_purchase_earns_points_and_advances_the_stage(cli: Cli, ann: int) -> None:
    first = cli.ok("purchase", "add", "ann@example.com", "59.90", "-f", "json").json()
    assert first["amount"] == "59.90" and first["net"] == "59.90"
    assert first["points_earned"] == 5  # 0.1 point per unit, rounded down
    assert first["stage"] == "customer"
    second = cli.ok("purchase", "add", str(ann), "100", "-f", "json").json()
    assert second["stage"] == "repeat" and second["points_earned"] == 10
    shown = profile(cli, ann)
    assert shown["totals"]["orders"] == 2 and shown["totals"]["net_spend"] == "159.90"
    assert shown["points"] == 15
    assert [(h["from"], h["to"]) for h in shown["stage_history"]] == [
        (None, "lead"),
        ("lead", "customer"),
        ("customer", "repeat"),
    ]


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("-5", "the amount cannot be negative"),
        ("19.999", "at most 2 decimal places"),
        ("abc", "bad amount 'abc'"),
        ("NaN", "bad amount 'NaN'"),
    ],
)
def test_bad_amounts(cli: Cli, ann: int, amount: str, message: str) -> None:
    result = (
        cli("purchase", "add", str(ann), "--", amount)
        if amount.startswith("-")
        else cli("purchase", "add", str(ann), amount)
    )
    assert result.exit_code == 1 and message in result.stderr
    assert cli.ok("purchase", "list", "-f", "json").json() == []


def test_paid_and_unpaid_together_are_refused(cli: Cli, ann: int) -> None:
    result = cli("purchase", "add", str(ann), "20", "--paid", "today", "--unpaid")
    assert result.exit_code == 1
    assert result.stderr == "Error: a purchase cannot be both paid and unpaid (check --paid and --unpaid)\n"


def test_coupon_discount_and_its_rules(cli: Cli, ann: int) -> None:
    bob = cli.new_id("customer", "add", "Bob")
    issued = cli.ok(
        "coupon", "issue", "--customer", str(ann), "--percent", "15", "--min-spend", "20", "-f", "json"
    ).json()
    code = issued[0]["code"]
    result = cli("purchase", "add", str(bob), "50", "--coupon", code)
    assert result.exit_code == 1 and "belongs to another customer" in result.stderr
    result = cli("purchase", "add", str(ann), "19.99", "--coupon", code)
    assert result.exit_code == 1 and "needs a spend of at least 20.00" in result.stderr
    result = cli("purchase", "add", str(ann), "50", "--coupon", "NOPE-NOPE")
    assert result.exit_code == 1 and "no coupon 'NOPE-NOPE'" in result.stderr
    row = cli.ok("purchase", "add", str(ann), "33.33", "--coupon", code.lower(), "-f", "json").json()
    assert row["coupon_discount"] == "5.00" and row["net"] == "28.33"  # 15% of 33.33 = 4.9995 -> 5.00
    again = cli("purchase", "add", str(ann), "50", "--coupon", code)
    assert again.exit_code == 1 and f"coupon {code} was already used" in again.stderr
    assert len(cli.ok("purchase", "list", "-f", "json").json()) == 1


def test_fixed_coupon_never_exceeds_the_amount(cli: Cli, ann: int) -> None:
    code = cli.ok("coupon", "issue", "--customer", str(ann), "--amount", "25", "-f", "json").json()[0]["code"]
    row = cli.ok("purchase", "add", str(ann), "10", "--coupon", code, "-f", "json").json()
    assert row["coupon_discount"] == "10.00" and row["net"] == "0.00" and row["points_earned"] == 0


def test_void_coupon_is_refused(cli: Cli, ann: int) -> None:
    code = cli.ok("coupon", "issue", "--customer", str(ann), "--amount", "5", "-f", "json").json()[0]["code"]
    cli.ok("coupon", "void", code)
    result = cli("purchase", "add", str(ann), "10", "--coupon", code)
    assert result.exit_code == 1 and "was voided" in result.stderr
    assert "already void" in cli("coupon", "void", code).stderr
    assert [c["status"] for c in cli.ok("coupon", "list", "--status", "void", "-f", "json").json()] == ["void"]


def test_points_as_discount_and_overdraw(cli: Cli, ann: int) -> None:
    cli.ok("points", "add", str(ann), "300", "--reason", "welcome")
    result = cli("purchase", "add", str(ann), "10", "--points", "400")
    assert result.exit_code == 1 and "has 300 points, fewer than the 400" in result.stderr
    result = cli("purchase", "add", str(ann), "2", "--points", "300")
    assert result.exit_code == 1 and "worth 3.00, more than the 2.00 left to pay" in result.stderr
    row = cli.ok("purchase", "add", str(ann), "20", "--points", "300", "-f", "json").json()
    assert row["points_discount"] == "3.00" and row["net"] == "17.00" and row["points_earned"] == 1
    assert profile(cli, ann)["points"] == 1


def test_points_redeem_never_below_zero(cli: Cli, ann: int) -> None:
    cli.ok("points", "add", str(ann), "50", "--reason", "gift")
    result = cli("points", "redeem", str(ann), "51", "--reason", "too much")
    assert result.exit_code == 1 and "has 50 points, fewer than the 51" in result.stderr
    shown = cli.ok("points", "redeem", str(ann), "50", "--reason", "coffee", "-f", "json").json()
    assert shown["balance"] == 0
    assert [e["kind"] for e in shown["ledger"]] == ["redeem", "adjust"]
    assert cli("points", "add", str(ann), "0", "--reason", "x").exit_code == 2  # a usage error: N is 1 or more


def test_late_payment_resets_the_balance(cli: Cli, ann: int) -> None:
    cli.ok("points", "add", str(ann), "80", "--reason", "gift")  # given today: after the due date
    pid = cli.new_id("purchase", "add", str(ann), "100", "--at", "2026-01-10", "--due", "2026-01-31")
    # The due date has passed unpaid: the 10 points earned by then are reset, the gift stays.
    assert profile(cli, ann)["points"] == 80
    paid = cli.ok("purchase", "pay", str(pid), "--at", "2026-02-03", "-f", "json").json()
    assert paid["late"] is True and paid["points_reset"] == 10
    shown = cli.ok("points", "show", str(ann), "-f", "json").json()
    assert shown["balance"] == 80
    assert [(e["kind"], e["delta"], e["at"][:10]) for e in shown["ledger"] if e["kind"] == "reset"] == [
        ("reset", -10, "2026-01-31")
    ]
    again = cli("purchase", "pay", str(pid))
    assert again.exit_code == 1 and "already paid" in again.stderr


def test_paying_on_the_due_date_is_on_time(cli: Cli, ann: int) -> None:
    pid = cli.new_id("purchase", "add", str(ann), "100", "--at", "2026-01-10", "--due", "2026-01-31")
    paid = cli.ok("purchase", "pay", str(pid), "--at", "2026-01-31T23:00", "-f", "json").json()
    assert paid["late"] is False and paid["points_reset"] == 0
    assert profile(cli, ann)["points"] == 10


def test_late_payment_without_reset_keeps_points(tmp_path: Path, cli: Cli, ann: int) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("points: {reset_on_late_payment: false}\n")
    cli.config_path = config
    pid = cli.new_id("purchase", "add", str(ann), "100", "--at", "2026-01-10", "--due", "2026-01-11")
    assert cli.ok("purchase", "pay", str(pid), "--at", "2026-02-01", "-f", "json").json()["points_reset"] == 0
    assert profile(cli, ann)["points"] == 10


def test_refund_reverses_points_once(cli: Cli, ann: int) -> None:
    pid = cli.new_id("purchase", "add", str(ann), "200")
    assert profile(cli, ann)["points"] == 20
    refunded = cli.ok("purchase", "refund", str(pid), "-f", "json").json()
    assert refunded["points_reversed"] == 20 and refunded["refunded_at"]
    shown = profile(cli, ann)
    assert shown["points"] == 0 and shown["totals"]["net_spend"] == "0.00"
    again = cli("purchase", "refund", str(pid))
    assert again.exit_code == 1 and "already refunded" in again.stderr
    assert "no purchase 999" in cli("purchase", "refund", "999").stderr


def test_buy_redeem_refund_farms_nothing(cli: Cli, ann: int) -> None:
    pid = cli.new_id("purchase", "add", str(ann), "200")
    cli.ok("points", "redeem", str(ann), "15", "--reason", "spent")
    refunded = cli.ok("purchase", "refund", str(pid), "-f", "json").json()
    assert refunded["points_reversed"] == 5 and refunded["points_shortfall"] == 15
    assert profile(cli, ann)["points"] == 0


def test_refund_gives_back_points_used(cli: Cli, ann: int) -> None:
    cli.ok("points", "add", str(ann), "100", "--reason", "gift")
    pid = cli.new_id("purchase", "add", str(ann), "50", "--points", "100")
    assert profile(cli, ann)["points"] == 4  # 100 spent, 4 earned on 49.00
    cli.ok("purchase", "refund", str(pid))
    assert profile(cli, ann)["points"] == 100


def test_tiers_by_net_spend(cli: Cli, ann: int) -> None:
    cli.ok("purchase", "add", str(ann), "999.99")
    assert profile(cli, ann)["tier"] == "bronze"
    cli.ok("purchase", "add", str(ann), "0.01")
    assert profile(cli, ann)["tier"] == "silver"
    assert cli.ok("points", "show", str(ann), "-f", "json").json()["tier"] == "silver"


def test_accrue_is_cron_safe(cli: Cli) -> None:
    old = cli.new_id("customer", "add", "Old timer")
    cli.new_id("customer", "add", "Newbie")
    # Backdate the first customer's membership to three and a half months ago.
    import sqlite3

    conn = sqlite3.connect(cli.db_path)
    conn.execute("UPDATE customer SET created_at = '2026-01-15 12:00:00.000000' WHERE id = ?", (old,))
    conn.commit()
    conn.close()
    first = cli.ok("points", "accrue", "--as-of", "2026-04-30", "-f", "json").json()
    assert first == {"customers": 1, "points": 3}
    assert cli.ok("points", "accrue", "--as-of", "2026-04-30", "-f", "json").json() == {"customers": 0, "points": 0}
    assert cli.ok("points", "accrue", "--as-of", "2026-05-15T12:00", "-f", "json").json()["points"] == 1
    assert profile(cli, old)["points"] == 4


def test_purchase_ref_is_unique_and_list_filters(cli: Cli, ann: int) -> None:
    cli.ok("purchase", "add", str(ann), "10", "--ref", "R-1", "--at", "2026-01-01")
    result = cli("purchase", "add", str(ann), "10", "--ref", "R-1")
    assert result.exit_code == 1 and "ref R-1 already exists" in result.stderr
    cli.ok("purchase", "add", str(ann), "20", "--at", "2026-02-01", "--unpaid")
    assert [p["amount"] for p in cli.ok("purchase", "list", "--unpaid", "-f", "json").json()] == ["20.00"]
    assert [p["amount"] for p in cli.ok("purchase", "list", "--since", "2026-01-15", "-f", "json").json()] == ["20.00"]
    assert [p["amount"] for p in cli.ok("purchase", "list", "--until", "2026-01-01", "-f", "json").json()] == ["10.00"]


def test_coupon_issue_to_a_stage_and_stats(cli: Cli, ann: int) -> None:
    cli.new_id("customer", "add", "Bob", "--stage", "prospect")
    cli.new_id("customer", "add", "Cy", "--stage", "prospect")
    issued = cli.ok(
        "coupon", "issue", "--stage", "prospect", "--amount", "5", "--campaign", "spring", "-f", "json"
    ).json()
    assert len(issued) == 2 and len({c["code"] for c in issued}) == 2
    assert all(len(c["code"]) == 11 for c in issued)
    cli.ok("purchase", "add", str(issued[0]["customer_id"]), "30", "--coupon", issued[0]["code"])
    stats = cli.ok("coupon", "stats", "-f", "json").json()
    assert stats == [
        {
            "campaign": "spring",
            "issued": 2,
            "used": 1,
            "uses": 1,
            "redemption_rate": "0.5000",
            "discount": "5.00",
            "revenue": "25.00",
            "budget_uses": None,
            "budget_amount": None,
            "spent_uses": 1,
            "spent_amount": "5.00",
            "left_uses": None,
            "left_amount": None,
        }
    ]
    shown = cli.ok("coupon", "show", issued[0]["code"], "-f", "json").json()
    assert shown["status"] == "used" and shown["purchases"][0]["net"] == "25.00"


def test_coupon_issue_needs_one_target_and_one_kind(cli: Cli, ann: int) -> None:
    one_target = (
        "Error: coupons go to exactly one of: a customer, a segment, a stage or everyone"
        " (check --customer, --segment, --stage and --all)\n"
    )
    assert cli("coupon", "issue", "--percent", "5").stderr == one_target
    assert cli("coupon", "issue", "--all", "--stage", "lead", "--percent", "5").stderr == one_target
    assert cli("coupon", "issue", "--all").stderr == (
        "Error: a coupon takes either a percent or an amount off (check --percent and --amount)\n"
    )
    assert cli("coupon", "issue", "--all", "--percent", "150").stderr == (
        "Error: the percent off must be more than 0 and at most 100 (check --percent)\n"
    )
    assert cli("coupon", "issue", "--all", "--amount", "5", "--min-spend", "-1").stderr == (
        "Error: the minimum spend cannot be negative (check --min-spend)\n"
    )
    result = cli("coupon", "issue", "--all", "--amount", "5", "--code", "MINE")
    assert result.exit_code == 0  # one customer in the database
    again = cli("coupon", "issue", "--customer", str(ann), "--amount", "5", "--code", "mine")
    assert again.exit_code == 1 and again.stderr == "Error: coupon code MINE is already taken (check --code)\n"
    cli.ok("customer", "add", "Bob")
    several = cli("coupon", "issue", "--all", "--amount", "5", "--code", "OURS")
    assert several.stderr == (
        "Error: a chosen code names a single coupon, for one customer (check --code and --customer)\n"
    )


def test_coupon_redeem_without_purchase(cli: Cli, ann: int) -> None:
    code = cli.ok("coupon", "issue", "--customer", str(ann), "--percent", "10", "--max-uses", "2", "-f", "json").json()[
        0
    ]["code"]
    row = cli.ok("coupon", "redeem", code, "--customer", str(ann), "--amount", "40", "-f", "json").json()
    assert row["discount"] == "4.00" and row["to_pay"] == "36.00" and row["uses"] == 1
    cli.ok("coupon", "redeem", code, "--customer", str(ann))
    result = cli("coupon", "redeem", code, "--customer", str(ann))
    assert result.exit_code == 1 and "already used (2 of 2 uses)" in result.stderr


@pytest.mark.parametrize("zone", ["Pacific/Honolulu", "UTC", "Asia/Shanghai", "Pacific/Kiritimati"])
def test_coupon_expiry_is_the_end_of_the_day_in_the_business_timezone(
    tmp_path: Path, cli: Cli, ann: int, zone: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"timezone: {zone}\n")
    cli.config_path = config
    code = cli.ok(
        "coupon",
        "issue",
        "--customer",
        str(ann),
        "--amount",
        "1",
        "--max-uses",
        "5",
        "--expires",
        "2026-06-30",
        "-f",
        "json",
    ).json()[0]["code"]
    assert cli.ok("purchase", "add", str(ann), "10", "--coupon", code, "--at", "2026-06-30T23:59:59").exit_code == 0
    late = cli("purchase", "add", str(ann), "10", "--coupon", code, "--at", "2026-07-01T00:00:00")
    assert late.exit_code == 1 and "expired at 2026-06-30T23:59:59" in late.stderr


def test_a_payment_and_a_refund_show_whose_purchase_it_is(cli: Cli, ann: int) -> None:
    """Regression: the rows of `purchase pay` and `purchase refund` showed no customer name."""
    sale = cli.new_id("purchase", "add", str(ann), "30", "--unpaid")
    paid = cli.ok("purchase", "pay", str(sale), "-f", "json").json()
    refunded = cli.ok("purchase", "refund", str(sale), "-f", "json").json()
    assert paid["customer"] == refunded["customer"] == "Ann"
    assert paid["customer_id"] == refunded["customer_id"] == ann
