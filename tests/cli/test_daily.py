"""crmcli daily and the loyalty rules it runs, through the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Cli

CONFIG = """
points: {expire_after_days: 30, per_month_of_tenure: 1}
birthday_reward: {amount: 5, days_before: 7, expires_in_days: 30}
sla:
  breach_reward: {percent: 15, campaign: sorry}
referrals: {hold_days: 0, max_per_hour: 5}
"""


@pytest.fixture
def shop(tmp_path: Path) -> Cli:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return Cli(tmp_path / "crm.db", config)


def in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%m-%d")


def test_daily_runs_every_rule_once_and_a_second_run_changes_nothing(shop: Cli) -> None:
    ann = shop.new_id("customer", "add", "Ann", "--birthday", in_days(3))
    shop.ok("purchase", "add", str(ann), "100", "--at", "-40d")  # its 10 points expired 10 days ago
    shop.ok("interaction", "log", str(ann), "--kind", "complaint", "--at", "-1d")
    first = shop.ok("daily", "-f", "json").json()
    assert first["dry_run"] is False
    assert first["points_expiry"] == {"entries": 0, "points": 0}  # recorded already, when the sale was read
    assert first["birthday_rewards"] == {"customers": 1, "coupons": 1, "points": 0}
    assert first["sla_apologies"] == {"customers": 1, "coupons": 1, "points": 0}
    assert set(first) == {
        "as_of",
        "dry_run",
        "late_payment_resets",
        "tenure_points",
        "points_expiry",
        "birthday_rewards",
        "sla_apologies",
        "referral_checks",
        "referral_rewards_released",
    }
    again = shop.ok("daily", "-f", "json").json()
    assert again["points_expiry"]["entries"] == again["birthday_rewards"]["coupons"] == 0
    assert again["sla_apologies"]["coupons"] == again["tenure_points"]["points"] == 0
    campaigns = {row["campaign"]: row["issued"] for row in shop.ok("coupon", "stats", "-f", "json").json()}
    assert campaigns == {"birthday": 1, "sorry": 1}
    assert [e["kind"] for e in shop.ok("points", "show", str(ann), "-f", "json").json()["ledger"]] == [
        "expire",
        "earn",
    ]
    table = shop.ok("daily").stdout
    assert "points expiry" in table and "birthday rewards" in table


def test_daily_as_of_a_day_runs_as_then(shop: Cli) -> None:
    ann = shop.new_id("customer", "add", "Ann", "--birthday", "03-14")
    shop.ok("interaction", "log", str(ann), "--kind", "complaint", "--at", "2026-03-09 10:00")
    run = shop.ok("daily", "--as-of", "2026-03-10", "-f", "json").json()
    assert run["as_of"] == "2026-03-10T00:00:00+00:00"
    assert run["birthday_rewards"]["coupons"] == 1 and run["sla_apologies"]["coupons"] == 1


def test_a_dry_run_says_what_it_would_do_and_writes_nothing(shop: Cli) -> None:
    ann = shop.new_id("customer", "add", "Ann", "--birthday", "03-14")
    dry = shop.ok("daily", "--as-of", "2026-03-10", "--dry-run", "-f", "json").json()
    assert dry["dry_run"] is True and dry["birthday_rewards"]["coupons"] == 1
    assert shop.ok("coupon", "list", "--customer", str(ann), "-f", "json").json() == []
    assert shop.ok("audit", "list", "--command", "daily", "-f", "json").json() == []  # nothing happened
    assert shop.ok("daily", "--as-of", "2026-03-10", "-f", "json").json()["birthday_rewards"]["coupons"] == 1
    (entry,) = shop.ok("audit", "list", "--command", "daily", "-f", "json").json()
    assert entry["details"]["daily"]["birthday_rewards"] == {"customers": 1, "coupons": 1}


def test_points_accrue_stays_the_tenure_part(shop: Cli) -> None:
    shop.ok("customer", "add", "Ann")
    assert shop.ok("points", "accrue", "-f", "json").json() == {"customers": 0, "points": 0}
    assert "crmcli daily" in shop.ok("points", "accrue", "--help").stdout


def test_points_show_gives_expiring_soon_and_reads_as_of(shop: Cli) -> None:
    ann = shop.new_id("customer", "add", "Ann")
    shop.ok("points", "add", str(ann), "40", "--reason", "welcome")
    shown = shop.ok("points", "show", str(ann), "-f", "json").json()
    assert shown["balance"] == 40
    (soon,) = shown["expiring_soon"]
    assert soon["points"] == 40
    before = shop.ok("points", "show", str(ann), "--as-of", "2020-01-01", "-f", "json").json()
    assert before["balance"] == 0 and before["ledger"] == [] and before["expiring_soon"] == []


def test_birthday_is_read_exactly_and_shown(shop: Cli) -> None:
    ann = shop.new_id("customer", "add", "Ann", "--birthday", "3/4")
    assert shop.ok("customer", "show", str(ann), "-f", "json").json()["birthday"] == "03-04"
    shop.ok("customer", "edit", str(ann), "--birthday", "02-29")
    assert shop.ok("customer", "show", str(ann), "-f", "json").json()["birthday"] == "02-29"
    refused = shop("customer", "edit", str(ann), "--birthday", "02-30")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: bad birthday '02-30': write the month and day as MM-DD, e.g. 03-14 (check --birthday)\n"
    )
    shop.ok("customer", "edit", str(ann), "--birthday", "")
    assert shop.ok("customer", "show", str(ann), "-f", "json").json()["birthday"] is None


def test_birthday_import_and_export_column(shop: Cli, tmp_path: Path) -> None:
    file = tmp_path / "in.csv"
    file.write_text("name,email,birthday\nAnn,ann@example.com,12-01\nBob,bob@example.com,\n", encoding="utf-8")
    shop.ok("customer", "import", str(file))
    rows = shop.ok("customer", "export", "--format", "json").json()
    assert [(r["name"], r["birthday"]) for r in rows] == [("Ann", "12-01"), ("Bob", None)]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,birthday\nCy,13-01\n", encoding="utf-8")
    refused = shop("customer", "import", str(bad))
    assert refused.exit_code == 1 and "bad birthday '13-01'" in refused.stderr


def test_a_referral_with_a_blocking_signal_waits_for_review(shop: Cli) -> None:
    ann = shop.new_id("customer", "add", "Ann", "--email", "ann@example.com")
    bob = shop.new_id("customer", "add", "Bob", "--email", "bob@mailinator.com", "--referred-by", str(ann))
    cy = shop.new_id("customer", "add", "Cy", "--email", "ann@example.org", "--referred-by", str(ann))
    shop.ok("purchase", "add", str(bob), "30")
    shop.ok("purchase", "add", str(cy), "30")
    held = shop.ok("referral", "list", "--status", "review", "-f", "json").json()
    assert [(r["referred"], r["signals"], r["reason"]) for r in held] == [
        ("Bob", "disposable_email", "held for review: disposable_email"),
        ("Cy", "same_email", "held for review: same_email"),
    ]
    assert shop.ok("coupon", "list", "-f", "json").json() == []
    shop.ok("referral", "verify", str(held[0]["id"]))
    shop.ok("referral", "reject", str(held[1]["id"]), "--reason", "same person")
    assert len(shop.ok("coupon", "list", "--campaign", "referral", "-f", "json").json()) == 2
    report = shop.ok("report", "referrals", "-f", "json").json()
    assert (report["verified"], report["rejected"], report["review"], report["pending"]) == (1, 1, 0, 0)
    counts = {s["signal"]: (s["referrals"], s["blocking"]) for s in report["signals"]}
    assert counts["disposable_email"] == (1, True) and counts["same_email"] == (1, True)
    assert counts["no_repeat_purchase"] == (0, False)
    table = shop.ok("referral", "list").stdout
    assert "signals" in table and "disposable_email" in table


def test_report_sla_check_gives_the_apology_and_shows_who_came_back(shop: Cli) -> None:
    ann = shop.new_id("customer", "add", "Ann")
    bob = shop.new_id("customer", "add", "Bob")
    shop.ok("interaction", "log", str(ann), "--kind", "complaint", "--at", "2026-01-10 10:00")
    shop.ok("interaction", "log", str(bob), "--kind", "complaint", "--at", "2026-01-10 11:00")
    checked = shop("report", "sla", "--check", "-f", "json")
    assert checked.exit_code == 3
    codes = {c["customer_id"]: c["code"] for c in shop.ok("coupon", "list", "--campaign", "sorry", "-f", "json").json()}
    assert set(codes) == {ann, bob}
    shop.ok("purchase", "add", str(ann), "40", "--coupon", codes[ann])
    result = shop("report", "sla", "--check", "-f", "json").json()
    assert len(shop.ok("coupon", "list", "--campaign", "sorry", "-f", "json").json()) == 2  # once per complaint
    assert (result["breached"], result["compensated"], result["bought_again_after_breach"]) == (2, 2, 1)
    by_customer = {b["customer_id"]: b for b in result["breaches"]}
    assert by_customer[ann]["bought_again"] is True and by_customer[ann]["apology_used"] is True
    assert by_customer[bob]["bought_again"] is False and by_customer[bob]["missed"] == "first response"
