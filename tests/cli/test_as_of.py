"""Regressions: --as-of shows the past as it was, past dates typed in are kept, and the three
exports import back whole (the cases found trying the commands as a new user would)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli

OCT_5 = ("--as-of", "2026-10-05")


def stages(result: dict[str, object]) -> dict[str, int]:
    return {row["stage"]: row["customers"] for row in result["stages"]}  # type: ignore[attr-defined, index]


def test_dashboard_stages_are_those_of_then_like_the_funnel(cli: Cli) -> None:
    """Regression: the dashboard showed today's stages next to the buyers of the day asked for."""
    for name in ("Ann", "Bob", "Cy"):
        cli.ok("customer", "add", name, "--ref", name, "--at", "2026-09-01")
    cli.ok("purchase", "add", "Ann", "10", "--at", "2026-10-01")
    cli.ok("purchase", "add", "Bob", "10", "--at", "2026-10-20")  # after Oct 5
    cli.ok("purchase", "add", "Ann", "10", "--at", "2026-10-21")
    then = cli.ok("report", *OCT_5, "-f", "json").json()
    assert (then["customers"], then["buyers"]) == (3, 1)
    assert stages(then) == {"lead": 2, "verified": 0, "prospect": 0, "customer": 1, "repeat": 0, "lost": 0}
    funnel = cli.ok("report", "funnel", *OCT_5, "-f", "json").json()
    assert [(r["stage"], r["customers"]) for r in funnel["stages"]][3:] == [("customer", 1), ("repeat", 0)]
    now = cli.ok("report", "-f", "json").json()
    assert stages(now)["repeat"] == 1 and stages(now)["customer"] == 1


def test_followup_due_as_of_uses_the_stage_and_contacts_of_then(cli: Cli) -> None:
    """Regression: a customer who was still a lead then was left out (today's stage and later
    interactions were read)."""
    cli.ok("customer", "add", "Ann", "--ref", "Ann", "--at", "2026-09-01")
    cli.ok("interaction", "log", "Ann", "--kind", "call", "--at", "2026-09-20")
    cli.ok("purchase", "add", "Ann", "10", "--at", "2026-10-10")
    cli.ok("interaction", "log", "Ann", "--kind", "call", "--at", "2026-10-11")
    due = cli.ok("followup", "due", *OCT_5, "-f", "json").json()
    assert [(r["customer"], r["reason"], r["detail"]) for r in due] == [
        ("Ann", "no contact", "lead: no contact for over 2 days")
    ]
    assert due[0]["last_contact"].startswith("2026-09-20")


def test_sla_as_of_waits_for_the_first_response_until_it_is_dated(cli: Cli) -> None:
    """Regression: a complaint said it was waiting for resolution before its first response."""
    cli.ok("customer", "add", "Ann", "--ref", "Ann", "--at", "2026-09-01")
    complaint = cli.new_id("interaction", "log", "Ann", "--kind", "complaint", "--at", "2026-10-01")
    cli.ok("interaction", "respond", str(complaint), "--at", "2026-10-06")
    then = cli.ok("report", "sla", *OCT_5, "-f", "json").json()
    assert then["responded"] == 0 and [r["waiting"] for r in then["overdue"]] == ["first response"]
    later = cli.ok("report", "sla", "--as-of", "2026-10-07", "-f", "json").json()
    assert later["responded"] == 1 and [r["waiting"] for r in later["overdue"]] == ["resolution"]


def test_customers_added_in_the_past_count_then(cli: Cli, tmp_path: Path) -> None:
    """Regression: customers added by command or import were dated today, so last month had
    buyers but no customers."""
    cli.ok("customer", "add", "Ann", "--ref", "Ann", "--at", "2026-09-01")
    file = tmp_path / "people.csv"
    file.write_text("name,ref,created_at\nBob,Bob,2026-09-02\nCy,Cy,\n", encoding="utf-8")
    cli.ok("customer", "import", str(file))
    cli.ok("purchase", "add", "Bob", "10", "--at", "2026-09-15")
    then = cli.ok("report", "--as-of", "2026-09-30", "-f", "json").json()
    assert (then["customers"], then["buyers"]) == (2, 1)  # Cy joined today
    bob = cli.ok("customer", "show", "Bob", "-f", "json").json()
    assert bob["created_at"].startswith("2026-09-02") and bob["stage_history"][0]["at"].startswith("2026-09-02")
    assert cli("customer", "show", "Cy", "--as-of", "2026-09-30").exit_code == 1


def test_points_show_as_of_reads_without_a_reset_due_later(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann", "--ref", "Ann", "--at", "2026-09-01")
    cli.ok("purchase", "add", "Ann", "100", "--at", "2026-09-05", "--due", "2026-09-20")  # never paid: a reset
    before = cli.ok("points", "show", "Ann", "--as-of", "2026-09-10", "-f", "json").json()
    assert before["balance"] == 10 and [e["kind"] for e in before["ledger"]] == ["earn"]
    after = cli.ok("points", "show", "Ann", "--as-of", "2026-09-25", "-f", "json").json()
    assert after["balance"] == 0 and [(e["kind"], e["delta"]) for e in after["ledger"]] == [
        ("reset", -10),
        ("earn", 10),
    ]


def test_a_backdated_purchase_dates_the_stage_change_at_the_sale(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann", "--ref", "Ann", "--at", "2026-09-01")
    cli.ok("purchase", "add", "Ann", "10", "--at", "2026-09-05")
    history = cli.ok("customer", "show", "Ann", "-f", "json").json()["stage_history"]
    assert [(h["to"], h["at"][:10]) for h in history] == [("lead", "2026-09-01"), ("customer", "2026-09-05")]


def test_purchase_export_imports_back_whole(cli: Cli, tmp_path: Path) -> None:
    """Regression: coupon and points discounts were lost (revenue grew), refunds were dropped
    (a verified referral went back to pending), and a coupon the new database lacked was refused."""
    cli.ok("customer", "add", "Ann", "--ref", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    cli.ok(
        "customer",
        "add",
        "Bob",
        "--ref",
        "Bob",
        "--email",
        "bob@example.com",
        "--referred-by",
        "Ann",
        "--at",
        "2026-01-02",
    )
    cli.ok("coupon", "issue", "--customer", "Ann", "--percent", "10", "--code", "CHPB9-MHKML")
    cli.ok("purchase", "add", "Ann", "3000", "--at", "2026-01-10")  # earns 300 points
    cli.ok("purchase", "add", "Ann", "100", "--coupon", "CHPB9-MHKML", "--points", "300", "--at", "2026-02-01")
    cli.ok("purchase", "add", "Bob", "40", "--at", "2026-02-02")
    refunded = cli.new_id("purchase", "add", "Bob", "60", "--at", "2026-02-03")
    cli.ok("purchase", "refund", str(refunded), "--at", "2026-02-04")
    files = {name: tmp_path / f"{name}.csv" for name in ("customers", "purchases", "interactions")}
    cli.ok("customer", "export", "--out", str(files["customers"]))
    cli.ok("purchase", "export", "--out", str(files["purchases"]))
    header, _, first = files["purchases"].read_text(encoding="utf-8-sig").splitlines()[:3]
    assert header.endswith("coupon,coupon_discount,points,points_discount,net,ref")
    assert ",100.00," in first and ",CHPB9-MHKML,10.00,300,3.00,87.00," in first
    fresh = Cli(tmp_path / "fresh.db")
    fresh.ok("customer", "import", str(files["customers"]))
    fresh.ok("purchase", "import", str(files["purchases"]))
    for name in ("Ann", "Bob"):
        assert (
            fresh.ok("customer", "show", name, "-f", "json").json()["totals"]
            == (cli.ok("customer", "show", name, "-f", "json").json()["totals"])
        )
    for report in ("", "referrals", "pareto", "funnel", "payment"):
        args = ["report", *([report] if report else []), "--as-of", "2026-03-01", "-f", "json"]
        assert fresh.ok(*args).json() == cli.ok(*args).json(), report
    assert fresh.ok("report", "--as-of", "2026-03-01", "-f", "json").json()["revenue"] == "3127.00"
    coupon = fresh.ok("coupon", "show", "CHPB9-MHKML", "-f", "json").json()
    assert (coupon["amount"], coupon["uses"], coupon["customer"]) == ("10.00", 1, "Ann")
    bad = tmp_path / "bad.csv"
    bad.write_text("customer,amount,coupon_discount,net\nemail:ann@example.com,10,2,9\n", encoding="utf-8")
    refused = fresh("purchase", "import", str(bad))
    assert refused.exit_code == 1 and "a coupon discount needs the coupon it came from" in refused.stderr


def test_interaction_import_is_all_or_nothing_and_exports_back(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--ref", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    file = tmp_path / "contacts.csv"
    file.write_text(
        "customer,kind,at,summary,rating,follow_up_at,responded_at,resolved_at\n"
        "ann@example.com,call,2026-01-05,asked about sizes,5,2026-01-10,,\n"
        "ann@example.com,complaint,2026-01-07 10:00,late parcel,,,2026-01-07 10:05,2026-01-07 12:00\n"
        "ann@example.com,note,2026-01-08,,,,2026-01-08,\n",
        encoding="utf-8",
    )
    refused = cli("interaction", "import", str(file))
    assert refused.exit_code == 1 and "line 4: only a complaint is responded to or resolved" in refused.stderr
    assert cli.ok("interaction", "list", "-f", "json").json() == []
    file.write_text("\n".join(file.read_text(encoding="utf-8").splitlines()[:3]) + "\n", encoding="utf-8")
    assert cli.ok("interaction", "import", str(file), "-f", "json").json()["inserted"] == 2
    sla = cli.ok("report", "sla", "--as-of", "2026-01-31", "-f", "json").json()
    assert (sla["complaints"], sla["responded_in_time_share"], sla["resolved_in_time_share"]) == (1, 1.0, 1.0)
    # The complaint on Jan 7 closed the call's follow-up: nothing due on Jan 10.
    due = cli.ok("followup", "due", "--as-of", "2026-01-08", "-f", "json").json()
    assert [r["reason"] for r in due] == []
    out = tmp_path / "out.csv"
    cli.ok("interaction", "export", "--out", str(out))
    fresh = Cli(tmp_path / "fresh.db")
    fresh.ok("customer", "add", "Ann", "--ref", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    fresh.ok("interaction", "import", str(out))
    for report in ("sla", "satisfaction"):
        args = ("report", report, "--as-of", "2026-01-31", "-f", "json")
        assert fresh.ok(*args).json() == cli.ok(*args).json()


def test_profile_timeline_and_stage_history_now_and_then(cli: Cli) -> None:
    """What customer show lists as the latest events and the stage steps: ratings and
    summaries, refunds marked once they happened, newest first, and nothing after --as-of."""
    cli.ok("customer", "add", "Ann", "--ref", "Ann", "--at", "2026-09-01")
    cli.ok("interaction", "log", "Ann", "--kind", "survey", "--rating", "4", "--summary", "nice", "--at", "2026-09-10")
    cli.ok("interaction", "log", "Ann", "--kind", "call", "--at", "2026-09-12")
    sale = cli.ok("purchase", "add", "Ann", "10", "--at", "2026-10-01", "-q").stdout.strip()
    cli.ok("purchase", "add", "Ann", "12.50", "--at", "2026-10-03")
    cli.ok("purchase", "refund", sale, "--at", "2026-10-04")
    now = cli.ok("customer", "show", "Ann", "-f", "json").json()
    assert [(e["at"][:10], e["event"], e["detail"]) for e in now["timeline"]] == [
        ("2026-10-03", "purchase", "12.50"),
        ("2026-10-01", "purchase", "10.00 (refunded)"),
        ("2026-09-12", "call", ""),
        ("2026-09-10", "survey", "rating 4: nice"),
    ]
    assert [(h["at"][:10], h["from"], h["to"]) for h in now["stage_history"]][0] == ("2026-09-01", None, "lead")
    then = cli.ok("customer", "show", "Ann", "--as-of", "2026-10-02", "-f", "json").json()
    assert [(e["at"][:10], e["detail"]) for e in then["timeline"]] == [
        ("2026-10-01", "10.00"),  # not refunded yet then
        ("2026-09-12", ""),
        ("2026-09-10", "rating 4: nice"),
    ]
    assert then["stage_history"] and all(h["at"][:10] <= "2026-10-02" for h in then["stage_history"])


def test_referral_signals_are_shown_for_today_only(cli: Cli) -> None:
    """The fraud checks keep no history: a past moment gets no counts rather than today's."""
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--email", "bob@mailinator.com", "--referred-by", "1")
    cli.ok("purchase", "add", "2", "50")
    today = cli.ok("report", "referrals", "-f", "json").json()
    assert {s["signal"]: s["referrals"] for s in today["signals"]}["disposable_email"] == 1
    assert cli.ok("report", "referrals", "--as-of", "2099-01-01", "-f", "json").json()["signals"] is None
