"""report cohorts on the hand-worked shop of tests/datasets.py."""

from __future__ import annotations

import re

from tests.conftest import Cli
from tests.datasets import build_shop

AS_OF = ("--as-of", "2026-04-01")


def test_monthly_cohorts_by_hand(cli: Cli) -> None:
    build_shop(cli)
    # First purchases: A in January (D's January purchase was refunded), B and F in February,
    # C in March. A bought again in March (+2); nobody else bought in a later month.
    result = cli.ok("report", "cohorts", *AS_OF, "-f", "json").json()
    assert result["period"] == "month"
    cohorts = {c["cohort"]: c for c in result["cohorts"]}
    assert list(cohorts) == ["2026-01", "2026-02", "2026-03"]
    january = cohorts["2026-01"]
    assert (january["customers"], january["revenue"]) == (1, "150.00")
    assert [(p["period"], p["customers"], p["share"], p["revenue"]) for p in january["periods"]] == [
        (0, 1, 1.0, "100.00"),
        (1, 0, 0.0, "0.00"),
        (2, 1, 1.0, "50.00"),
        (3, 0, 0.0, "0.00"),  # April, up to --as-of: the triangle's edge
    ]
    february = cohorts["2026-02"]
    assert [(p["customers"], p["revenue"]) for p in february["periods"]] == [(2, "450.00"), (0, "0.00"), (0, "0.00")]
    assert [p["period"] for p in cohorts["2026-03"]["periods"]] == [0, 1]


def test_quarterly_revenue_triangle_as_csv_and_table(cli: Cli) -> None:
    build_shop(cli)
    csv_text = cli.ok("report", "cohorts", "--period", "quarter", "--metric", "revenue", *AS_OF, "-f", "csv").stdout
    assert csv_text.splitlines() == ["cohort,customers,+0,+1", "2026-Q1,4,700.00,0.00"]
    shares = cli.ok("report", "cohorts", *AS_OF, "-f", "csv").stdout.splitlines()
    assert shares[0] == "cohort,customers,+0,+1,+2,+3"
    assert shares[1:] == ["2026-01,1,1.0,0.0,1.0,0.0", "2026-02,2,1.0,0.0,0.0,", "2026-03,1,1.0,0.0,,"]
    table = cli.ok("report", "cohorts", *AS_OF).stdout
    assert table.startswith("Monthly cohorts: share still buying")
    assert re.search(r"^2026-01 +1 +1\.0 +0\.0 +1\.0 +0\.0 *$", table, re.M), table


def test_unknown_period_is_a_usage_error(cli: Cli) -> None:
    assert cli("report", "cohorts", "--period", "week").exit_code == 2
