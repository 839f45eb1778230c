"""Reports on small datasets whose figures are worked out by hand in the comments."""

from __future__ import annotations

import pytest

from tests.conftest import Cli
from tests.datasets import build_shop

AS_OF = ("--as-of", "2026-04-01")


@pytest.fixture
def shop(cli: Cli) -> Cli:
    build_shop(cli)
    return cli


def test_pareto(shop: Cli) -> None:
    # Ranked B 300, A 150, F 150 (tie by id), C 100; total 700. Top ceil(0.2 x 4) = 1: B, 300/700.
    # Running totals 300, 450, 600: 600 is the first to reach 80% of 700 (560), at rank 3.
    result = shop.ok("report", "pareto", "-f", "json").json()
    assert result.pop("as_of").endswith("+00:00")
    assert result == {
        "customers": 4,
        "revenue": "700.00",
        "top_customers": 1,
        "top_revenue": "300.00",
        "top_share": 0.4286,
        "customers_for_80_percent": 3,
        "referrals_from_top": 1,
        "referrals_from_rest": 1,
        "referrals_from_non_buyers": 1,
    }


def test_rfm_scores_and_segments(shop: Cli) -> None:
    # Recency ascending: B (Feb 1) rank 1, F (Feb 25) rank 2, A and C (Mar 1) rank 3 -> r = 1, 2, 4, 4
    # Frequency: B, C (1) rank 1; A (2) rank 3; F (3) rank 4 -> f = 1, 1, 4, 5
    # Monetary: C (100) rank 1; A, F (150) rank 2; B (300) rank 4 -> m = 1, 2, 2, 5
    rows = shop.ok("report", "rfm", "--customers", *AS_OF, "-f", "json").json()
    got = {r["name"]: (r["r"], r["f"], r["m"], r["segment"]) for r in rows}
    assert got == {
        "A": (4, 4, 2, "Loyal"),
        "B": (1, 1, 5, "Hibernating"),
        "C": (4, 1, 1, "Promising"),
        "F": (2, 5, 2, "Can't Lose Them"),
    }
    assert set(rows[0]) >= {"id", "ref", "name", "r", "f", "m", "segment"}
    segments = {
        s["segment"]: (s["customers"], s["revenue"]) for s in shop.ok("report", "rfm", *AS_OF, "-f", "json").json()
    }
    assert segments["Loyal"] == (1, "150.00") and segments["Champions"] == (0, "0.00")
    assert sum(n for n, _ in segments.values()) == 4
    csv_rows = shop.ok("report", "rfm", "--customers", "--segment", "cant-lose-them", *AS_OF, "-f", "csv").stdout
    assert csv_rows.splitlines()[1].startswith("6,,F,2,5,2,Can't Lose Them")


def test_segments_drive_customer_list_and_coupons(shop: Cli) -> None:
    listed = shop.ok("customer", "list", "--segment", "hibernating", "-f", "json").json()
    assert [c["name"] for c in listed] == ["B"]
    issued = shop.ok("coupon", "issue", "--segment", "Loyal", "--percent", "15", "-f", "json").json()
    assert [c["customer_id"] for c in issued] == [1]
    result = shop("customer", "list", "--segment", "sleepy")
    assert result.exit_code == 1 and "unknown segment 'sleepy'" in result.stderr


def test_value_groups(shop: Cli) -> None:
    # Lifetime 150, 300, 100, 150: median (150 + 150) / 2 = 150; only B is strictly above.
    # Referral value: B brought C (100, verified); E brought D but E is no buyer; A's referral is pending.
    # Median referral value 0: only B is above. B is a champion, the rest misers.
    result = shop.ok("report", "value", "--customers", "-f", "json").json()
    assert (result["champions"], result["affluents"], result["advocates"], result["misers"]) == (1, 0, 0, 3)
    assert result["median_lifetime_value"] == "150.00" and result["median_referral_value"] == "0.00"
    assert result["rows"][0] == {
        "id": 2,
        "ref": None,
        "name": "B",
        "lifetime_value": "300.00",
        "referral_value": "100.00",
        "group": "champions",
    }


def test_funnel(shop: Cli) -> None:
    # All six start as leads; A, B, C, D, F reached customer; A and F repeat. Referred: C, E, D.
    result = shop.ok("report", "funnel", "-f", "json").json()
    stages = {s["stage"]: (s["customers"], s["by_referral"]) for s in result["stages"]}
    assert stages == {"lead": (6, 3), "verified": (5, 2), "prospect": (5, 2), "customer": (5, 2), "repeat": (2, 0)}
    assert result["stages"][1]["conversion"] == 0.8333
    assert result["stages"][4]["conversion"] == 0.4
    assert result["lost"] == 0


def test_referrals_report(shop: Cli) -> None:
    result = shop.ok("report", "referrals", "-f", "json").json()
    # D's referral was verified by a purchase that was then refunded: it is pending again.
    assert (result["referred_customers"], result["verified"], result["pending"]) == (3, 1, 2)
    assert result["verified_share"] == 0.3333
    assert result["verified_revenue"] == "100.00" and result["revenue_share"] == 0.1429
    assert result["top_referrers"][0]["name"] == "B"


def test_payment_cells(shop: Cli) -> None:
    # Big: ceil(0.2 x 4) = 1 -> B. A paid its only credit purchase late: poor. No credit = good.
    cells = shop.ok("report", "payment", *AS_OF, "-f", "json").json()["cells"]
    got = {(c["size"], c["payer"]): (c["customers"], c["revenue"]) for c in cells}
    assert got == {
        ("big", "good"): (1, "300.00"),
        ("big", "poor"): (0, "0.00"),
        ("small", "good"): (2, "250.00"),
        ("small", "poor"): (1, "150.00"),
    }
    assert {c["policy"] for c in cells} >= {"stop credit", "preferential terms"}


def test_as_of_moves_the_window(shop: Cli) -> None:
    # On Jan 31 only A's 100 and D's 200 exist, and D's was refunded: one buyer.
    result = shop.ok("report", "pareto", "--as-of", "2026-01-31", "-f", "json").json()
    assert (result["customers"], result["revenue"], result["top_share"]) == (1, "100.00", 1.0)


def test_satisfaction_distribution(cli: Cli) -> None:
    who = cli.new_id("customer", "add", "Ann")
    for rating in ("5", "5", "4", "3", "1"):
        cli.ok("interaction", "log", str(who), "--kind", "survey", "--rating", rating)
    result = cli.ok("report", "satisfaction", "-f", "json").json()
    assert (result["ratings"], result["average"]) == (5, 3.6)
    assert (result["loyal_share"], result["at_risk_share"], result["unhappy_share"]) == (0.4, 0.4, 0.2)
    csv = cli.ok("report", "satisfaction", "-f", "csv").stdout.splitlines()
    assert csv[0] == "rating,count,share,meaning" and csv[1] == "5,2,0.4,loyal"
    assert "█" in cli.ok("report", "satisfaction").stdout


def test_sla_times_and_check(cli: Cli) -> None:
    who = cli.new_id("customer", "add", "Ann")
    fast = cli.new_id("interaction", "log", str(who), "--kind", "complaint", "--at", "2026-03-01T10:00")
    cli.ok("interaction", "respond", str(fast), "--at", "2026-03-01T10:05")
    cli.ok("interaction", "resolve", str(fast), "--at", "2026-03-01T12:00")
    slow = cli.new_id("interaction", "log", str(who), "--kind", "complaint", "--at", "2026-03-02T10:00")
    cli.ok("interaction", "respond", str(slow), "--at", "2026-03-02T10:20")
    cli.ok("interaction", "resolve", str(slow), "--at", "2026-03-02T15:00")
    waiting = cli.new_id("interaction", "log", str(who), "--kind", "complaint", "--at", "2026-03-03T10:00")
    before = cli("report", "sla", "--as-of", "2026-03-03T10:09", "--check", "-f", "json")
    assert before.exit_code == 0 and before.json()["overdue"] == []
    result = cli("report", "sla", "--as-of", "2026-03-03T10:11", "--check", "-f", "json")
    assert result.exit_code == 3
    data = result.json()
    assert (data["complaints"], data["responded"], data["resolved"], data["open"]) == (3, 2, 2, 1)
    assert data["responded_in_time_share"] == 0.3333 and data["resolved_in_time_share"] == 0.3333
    assert data["median_first_response_minutes"] == 12.5 and data["median_resolution_minutes"] == 210.0
    assert [(o["id"], o["waiting"]) for o in data["overdue"]] == [(waiting, "first response")]
    cli.ok("interaction", "respond", str(waiting), "--at", "2026-03-03T10:12")
    later = cli("report", "sla", "--as-of", "2026-03-03T14:01", "--check", "-f", "json").json()
    assert [(o["id"], o["waiting"]) for o in later["overdue"]] == [(waiting, "resolution")]


@pytest.mark.parametrize("report", ["pareto", "rfm", "value", "funnel", "referrals", "payment", "satisfaction", "sla"])
def test_reports_on_an_empty_database(cli: Cli, report: str) -> None:
    result = cli.ok("report", report, "-f", "json")
    assert result.json() is not None
    assert cli.ok("report", report).exit_code == 0
    assert cli.ok("report", report, "-f", "csv").exit_code == 0


def test_one_customer_only(cli: Cli) -> None:
    who = cli.new_id("customer", "add", "Solo")
    cli.ok("purchase", "add", str(who), "10")
    pareto = cli.ok("report", "pareto", "-f", "json").json()
    assert (pareto["customers"], pareto["top_customers"], pareto["top_share"], pareto["customers_for_80_percent"]) == (
        1,
        1,
        1.0,
        1,
    )
    (row,) = cli.ok("report", "rfm", "--customers", "-f", "json").json()
    assert (row["r"], row["f"], row["m"]) == (1, 1, 1)  # PERCENT_RANK of a single row is 0
    value = cli.ok("report", "value", "-f", "json").json()
    assert value["misers"] == 1 and value["median_lifetime_value"] == "10.00"


def test_erased_customers_still_count_anonymously(shop: Cli) -> None:
    shop.ok("customer", "erase", "2", "--yes")
    result = shop.ok("report", "pareto", *AS_OF, "-f", "json").json()
    assert result["revenue"] == "700.00" and result["customers"] == 4


def test_dashboard(shop: Cli) -> None:
    result = shop.ok("report", "-f", "json").json()
    assert (result["customers"], result["buyers"], result["orders"], result["revenue"]) == (6, 4, 7, "700.00")
    assert result["top_20_percent_share"] == 0.4286
    assert "Your shop at a glance" in shop.ok("report").stdout
