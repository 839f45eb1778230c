"""report clv: the CDNOW validation, the fallback with little data, the JSON surface, and the
churn segments in customer list, coupon issue, report value and customer show."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.datasets import build_shop

pytest.importorskip("scipy")

# CDNOW_sample.txt from the lifetimes package on PyPI (lifetimes/datasets/, version 0.11.3): the
# 2,357-customer sample of Fader, Hardie & Lee (2005). Columns: original id, sample id, date
# (YYYYMMDD), number of CDs, dollars.
CDNOW = Path(__file__).parent.parent / "data" / "CDNOW_sample.txt"
# Fader, Hardie & Lee 2005, "Counting your customers the easy way" (BG/NBD, weeks), and
# "RFM and CLV: using iso-value curves" (Gamma-Gamma on the 946 repeat buyers' averages).
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "log_likelihood": -9582.4}
PUBLISHED_SPEND = {"p": 6.25, "q": 3.74, "gamma": 15.44}


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The sample loaded through crmcli's own customer and purchase imports."""
    work = tmp_path_factory.mktemp("cdnow")
    config = work / "config.yaml"
    config.write_text("timezone: UTC\n")
    cli = Cli(work / "cdnow.db", config)
    rows = [line.split() for line in CDNOW.read_text().splitlines()]
    (work / "customers.csv").write_text(
        "ref,name\n" + "".join(f"{ref},CDNOW {ref}\n" for ref in sorted({r[0] for r in rows}))
    )
    (work / "purchases.csv").write_text(
        "customer_ref,amount,at\n" + "".join(f"{r[0]},{r[4]},{r[2][:4]}-{r[2][4:6]}-{r[2][6:]}\n" for r in rows)
    )
    cli.ok("customer", "import", str(work / "customers.csv"))
    # Eight customers' only purchase is $0.00. Where the import refuses a zero amount they are
    # left out (--skip-invalid) and the fit covers 2,349 customers instead of 2,357: one-time
    # buyers move the estimates by under 0.4%. The Gamma-Gamma fit uses repeat purchases only,
    # none of which is zero, so it sees the published 946 customers either way.
    loaded = cli.ok(
        "purchase", "import", str(work / "purchases.csv"), "--skip-invalid", str(work / "rejected.csv"), "-f", "json"
    ).json()
    assert loaded["rejected"] in (0, sum(1 for r in rows if float(r[4]) == 0))
    return cli


def test_cdnow_reproduces_the_published_estimates(cdnow: Cli) -> None:
    result = cdnow.ok("report", "clv", "--calibration-end", "1997-09-30", "--as-of", "1997-09-30", "-f", "json").json()
    assert result["status"] == "fitted" and result["method"] == "BG/NBD + Gamma-Gamma"
    for key, value in PUBLISHED.items():
        assert result["model"][key] == pytest.approx(value, rel=0.01), key
    for key, value in PUBLISHED_SPEND.items():
        assert result["spend_model"][key] == pytest.approx(value, rel=0.01), key
    assert result["spend_model"]["customers"] == 946


def test_cdnow_customers_and_holdout(cdnow: Cli) -> None:
    result = cdnow.ok(
        "report", "clv", "--calibration-end", "1997-09-30", "--as-of", "1998-06-30", "--horizon", "273",
        "--customers", "-f", "json",
    ).json()  # fmt: skip
    rows = result["rows"]
    assert len(rows) == result["customers"]
    values = [float(r["predicted_value"]) for r in rows]
    assert values == sorted(values, reverse=True)
    for row in rows:
        assert 0 <= row["p_alive"] <= 1 and row["churn_risk"] == pytest.approx(1 - row["p_alive"], abs=1e-4)
        band = "high" if row["churn_risk"] >= 0.5 else "medium" if row["churn_risk"] >= 0.25 else "low"
        assert row["risk"] == band
        # expected purchases are shown to 3 decimals, money to cents: the product is as exact as that
        purchases, spend = row["expected_purchases"], float(row["expected_spend"])
        rounding = 0.005 + 0.0005 * spend + 0.005 * purchases
        assert float(row["predicted_value"]) == pytest.approx(purchases * spend, abs=rounding)
    # The 39 weeks after the calibration end (to 1998-06-30): the forecast and what happened,
    # counted independently from the file (purchase days of the calibration customers).
    days: dict[str, set[str]] = defaultdict(set)
    for line in CDNOW.read_text().splitlines():
        ref, _, day, _, dollars = line.split()
        if float(dollars) > 0 or result["customers"] == 2357:
            days[ref].add(day)
    later = sum(1 for ref in days for d in days[ref] if "19971001" <= d <= "19980630")
    holdout = result["holdout"]
    assert holdout["actual_purchases"] == later
    assert holdout["weeks"] == pytest.approx(273 / 7)
    # The model forecasts about 12% fewer repeat purchase days than happened (1,653 for 1,882).
    assert holdout["expected_purchases"] == pytest.approx(later, rel=0.15)
    slipping = [r for r in rows if r["valuable_but_slipping"]]
    assert slipping and all(r["risk"] == "high" for r in slipping)
    assert result["valuable_but_slipping"] == len(slipping)
    top = rows[: -(-len(rows) // 5)]  # ceil(20%) by predicted value
    assert {r["id"] for r in slipping} == {r["id"] for r in top if r["risk"] == "high"}


def test_cdnow_segments_reach_lists_coupons_value_and_show(cdnow: Cli) -> None:
    listed = cdnow.ok("customer", "list", "--segment", "valuable-but-slipping", "-f", "json").json()
    expected = cdnow.ok("report", "clv", "--segment", "Valuable but Slipping", "-f", "json").json()["rows"]
    assert sorted(c["id"] for c in listed) == sorted(r["id"] for r in expected) and listed
    high = cdnow.ok("report", "clv", "--customers", "-f", "json").json()
    band_sizes = {b["risk"]: b["customers"] for b in high["risk"]}
    assert len(cdnow.ok("customer", "list", "--segment", "high churn risk", "-f", "json").json()) == band_sizes["high"]
    value = cdnow.ok("report", "value", "--predicted", "--customers", "-f", "json").json()
    by_id = {r["id"]: r for r in high["rows"]}
    for row in value["rows"][:50]:
        assert row["predicted_value"] == by_id[row["id"]]["predicted_value"]
    group_total = sum(float(g["predicted_value"]) for g in value["groups"])
    assert group_total == pytest.approx(sum(float(r["predicted_value"]) for r in high["rows"]))
    some = high["rows"][0]
    shown = cdnow.ok("customer", "show", str(some["id"]), "--predicted", "-f", "json").json()["predicted"]
    assert shown["status"] == "fitted"
    assert (shown["p_alive"], shown["predicted_value"], shown["risk"]) == (
        some["p_alive"],
        some["predicted_value"],
        some["risk"],
    )


def test_little_data_falls_back_to_gaps_and_says_so(cli: Cli) -> None:
    build_shop(cli)
    # A: Jan 1 and Mar 1 (one gap of 59 days); F: Feb 15, 20, 25 (gaps of 5); B and C bought once.
    # At Apr 1, A's last purchase is 31 days old (within the average gap: low risk), F's is 35
    # days old (more than twice the average gap: high risk).
    result = cli.ok("report", "clv", "--customers", "--as-of", "2026-04-01", "-f", "json").json()
    assert result["status"] == "not enough data" and result["method"] == "inter-purchase estimates"
    assert result["model"] is None and result["spend_model"] is None
    assert "2 customers with a repeat purchase (50 needed)" in result["note"]
    rows = {r["name"]: r for r in result["rows"]}
    assert {k: rows["A"][k] for k in ("risk", "average_gap_days", "shortest_gap_days", "longest_gap_days")} == {
        "risk": "low",
        "average_gap_days": 59.0,
        "shortest_gap_days": 59,
        "longest_gap_days": 59,
    }
    assert (rows["A"]["next_purchase"], rows["A"]["average_spend"]) == ("2026-04-29", "50.00")
    assert rows["F"]["risk"] == "high" and rows["F"]["next_purchase_latest"] == "2026-03-02"
    assert rows["B"]["risk"] == "unknown" and rows["B"]["next_purchase"] is None
    bands = {b["risk"]: b["customers"] for b in result["risk"]}
    assert bands == {"low": 1, "medium": 0, "high": 1, "unknown": 2}
    refused = cli("customer", "list", "--segment", "valuable but slipping")
    assert refused.exit_code == 1 and "needs predicted values" in refused.stderr
    # As of now (long after March 2026) both A and F have been silent for more than twice their gap.
    assert [c["name"] for c in cli.ok("customer", "list", "--segment", "high-churn-risk", "-f", "json").json()] == [
        "A",
        "F",
    ]
    issued = cli.ok("coupon", "issue", "--segment", "High Churn Risk", "--percent", "10", "-f", "json").json()
    assert [c["customer_id"] for c in issued] == [1, 6]


def test_a_fit_that_does_not_converge_is_reported_not_printed(cli: Cli, tmp_path: Path) -> None:
    # 60 customers who each buy every 10 days and always spend exactly 25.00: no spread of
    # spend for the Gamma-Gamma model to learn from.
    cli.ok("customer", "import", _write(tmp_path / "c.csv", "ref,name\n" + "".join(f"c{i},C{i}\n" for i in range(60))))
    lines = ["customer,amount,at"]
    for i in range(60):
        days = [i * 3 + k * 10 for k in range(3)]
        lines += [f"c{i},25.00,2026-{1 + d // 28:02d}-{1 + d % 28:02d}" for d in days]
    cli.ok("purchase", "import", _write(tmp_path / "p.csv", "\n".join(lines) + "\n"))
    result = cli.ok("report", "clv", "--as-of", "2026-12-31", "-f", "json").json()
    assert result["status"] == "did not converge"
    assert result["model"] is None and result["spend_model"] is None
    assert "Gamma-Gamma did not converge" in result["note"]


def test_missing_extra_is_one_line_naming_it(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    build_shop(cli)
    monkeypatch.setitem(sys.modules, "scipy", None)
    result = cli("report", "clv")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: report clv needs the analytics extra (numpy and scipy) (pip install 'crmcli[analytics]')"
    )
    shown = cli.ok("customer", "show", "1", "--predicted", "-f", "json").json()
    assert shown["predicted"]["status"] == "unavailable" and "crmcli[analytics]" in shown["predicted"]["note"]
    assert cli.ok("customer", "show", "1", "-f", "json").json().get("predicted") is None


def test_calibration_end_after_as_of_is_refused(cli: Cli) -> None:
    result = cli("report", "clv", "--calibration-end", "2026-05-01", "--as-of", "2026-04-01")
    assert result.exit_code == 1 and result.stderr.startswith("Error: the calibration end is after the as-of moment")


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
