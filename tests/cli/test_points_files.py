"""points export / points import: points given and redeemed by hand and referral rewards."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import Cli

ROUND_TRIP = ("customer", "coupon", "points", "purchase")


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def move(cli: Cli, tmp_path: Path) -> Cli:
    """Export every file and import them in the documented order into an empty database."""
    files = {noun: tmp_path / f"{noun}.csv" for noun in ROUND_TRIP}
    for noun, path in files.items():
        cli.ok(noun, "export", "--out", str(path))
    copy = Cli(tmp_path / "copy.db", cli.config_path)
    for noun, path in files.items():
        copy.ok(noun, "import", str(path), *(["--before-sales"] if noun == "points" else []))
    return copy


def balance(cli: Cli, who: str) -> int:
    return int(cli.ok("points", "show", who, "-f", "json").json()["balance"])


def test_points_by_hand_and_a_reopened_referrals_points_come_back(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("referrals:\n  reward_referrer: {points: 30}\n  reward_referred: {points: 20}\n")
    cli.config_path = config
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    cli.ok("customer", "add", "Bob", "--ref", "7", "--referred-by", "ann@example.com", "--at", "2026-01-02")
    sale = cli.new_id("purchase", "add", "ref:7", "40", "--at", "2026-02-01T10:00")  # verifies: 30 and 20 points
    cli.ok("purchase", "refund", str(sale), "--at", "2026-02-03T10:00")  # reopens; the points stay given
    cli.ok("points", "add", "ann@example.com", "15", "--reason", "=gift")
    cli.ok("points", "redeem", "ann@example.com", "40", "--reason", "mug")
    assert balance(cli, "ann@example.com") == 5
    assert balance(cli, "ref:7") == 20
    rows = read_export(cli, tmp_path)
    assert [(r["customer"], r["kind"], r["points"], r["referral"]) for r in rows] == [
        ("email:ann@example.com", "referral", "30", "ref:7"),
        ("ref:7", "referral", "20", "ref:7"),
        ("email:ann@example.com", "adjust", "15", ""),
        ("email:ann@example.com", "redeem", "40", ""),
    ]
    assert rows[2]["reason"] == "'=gift"  # guarded against formula injection
    copy = move(cli, tmp_path)
    assert balance(copy, "ann@example.com") == 5 and balance(copy, "ref:7") == 20
    assert [r["status"] for r in copy.ok("referral", "list", "-f", "json").json()] == ["pending"]
    # A later sale verifies the referral again: its points were given once, in either database.
    for shop in (cli, copy):
        shop.ok("purchase", "add", "ref:7", "10", "--at", "2026-03-01T10:00")
        assert balance(shop, "ann@example.com") == 5 and balance(shop, "ref:7") == 21  # 1 earned on 10.00


def refused(cli: Cli, file: Path, bad_rows: int) -> str:
    """Import ``file``, which must be refused as a whole for ``bad_rows`` rows; the messages."""
    result = cli("points", "import", str(file))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {bad_rows} bad row(s)")
    return result.stderr


def read_export(cli: Cli, tmp_path: Path) -> list[dict[str, str]]:
    out = tmp_path / "points-listed.csv"
    cli.ok("points", "export", "--out", str(out))
    return read(out)


def test_a_bad_row_names_its_line_and_nothing_is_written(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com", "--referred-by", "ann@example.com")
    cli.ok("customer", "add", "Cy", "--email", "cy@example.com")
    file = tmp_path / "points.csv"
    file.write_text(
        "customer,at,kind,points,reason,referral\n"
        "email:ann@example.com,2026-01-05T09:00:00+00:00,adjust,10,welcome,\n"
        "email:ann@example.com,2026-01-05T09:00:00+00:00,redeem,-5,,\n"
        "email:ann@example.com,2026-01-05T09:00:00+00:00,bonus,5,,\n"
        "email:cy@example.com,2026-01-05T09:00:00+00:00,referral,5,,email:bob@example.com\n"
        "email:ann@example.com,2026-01-05T09:00:00+00:00,referral,30,,email:bob@example.com\n"
        "email:ann@example.com,2026-01-06T09:00:00+00:00,referral,30,,email:bob@example.com\n"
        "email:nobody@example.com,,adjust,1,,\n",
        encoding="utf-8",
    )
    stderr = refused(cli, file, 5)
    assert "line 3: points must be a positive whole number up to 1000000000, not '-5'" in stderr
    assert "line 4: kind must be one of adjust, redeem, referral, birthday, apology, not 'bonus'" in stderr
    assert "line 5: referral: customer 3 is neither side of referral 1" in stderr
    assert "line 7: referral 1 rewards customer 1 once (line 6)" in stderr
    assert "line 8: no customer 'email:nobody@example.com'" in stderr
    assert balance(cli, "ann@example.com") == 0
    dry = cli.ok("points", "import", str(file), "--dry-run", "--skip-invalid", str(tmp_path / "r.csv"), "-f", "json")
    assert dry.json()["inserted"] == 2 and balance(cli, "ann@example.com") == 0
    cli.ok("points", "import", str(file), "--skip-invalid", str(tmp_path / "rejects.csv"))
    assert balance(cli, "ann@example.com") == 40
    assert [r["line"] for r in read(tmp_path / "rejects.csv")] == ["3", "4", "5", "7", "8"]


def test_referral_decisions_by_hand_travel_with_the_customers(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    cli.ok("customer", "add", "Bob", "--ref", "7", "--referred-by", "ann@example.com", "--at", "2026-01-02")
    cli.ok("customer", "add", "Cy", "--ref", "8", "--referred-by", "ann@example.com", "--at", "2026-01-03")
    cli.ok("customer", "add", "Di", "--ref", "9", "--referred-by", "ann@example.com", "--at", "2026-01-04")
    cli.ok("referral", "verify", "1")  # by hand, before any sale: both sides get a coupon
    cli.ok("referral", "reject", "2", "--reason", "=same household")
    cli.ok("purchase", "add", "ref:9", "30", "--at", "2026-02-01T10:00")  # verified by its sale
    for who in ("ref:7", "ref:8"):
        cli.ok("purchase", "add", who, "30", "--at", "2026-02-02T10:00")
    exported = tmp_path / "customers-listed.csv"
    cli.ok("customer", "export", "--out", str(exported))
    decided = {r["ref"]: (r["referral_status"], r["referral_reason"]) for r in read(exported) if r["ref"]}
    assert decided == {"7": ("verified", ""), "8": ("rejected", "'=same household"), "9": ("", "")}
    copy = move(cli, tmp_path)
    shown = ("referrer_id", "referred_id", "status", "created_at", "decided_at", "reason")

    def referrals(shop: Cli) -> list[dict[str, object]]:
        return [{k: r[k] for k in shown} for r in shop.ok("referral", "list", "-f", "json").json()]

    assert referrals(copy) == referrals(cli)
    assert [r["status"] for r in referrals(copy)] == ["verified", "rejected", "verified"]
    rewards = [c["code"] for c in cli.ok("coupon", "list", "--campaign", "referral", "-f", "json").json()]
    assert len(rewards) == 4  # two referrals verified, both sides once: no second reward for the hand-verified one
    assert sorted(
        c["code"] for c in copy.ok("coupon", "list", "--campaign", "referral", "-f", "json").json()
    ) == sorted(rewards)


def test_a_referral_decision_is_checked(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "customers.csv"
    file.write_text(
        "name,ref,referred_by,created_at,referral_status,referral_decided_at,referral_reason\n"
        "Ann,1,,2026-01-01T09:00:00+00:00,,,\n"
        "Bob,2,ref:1,2026-01-02T09:00:00+00:00,rejected,2026-01-03T09:00:00+00:00,\n"
        "Cy,3,ref:1,2026-01-02T09:00:00+00:00,verified,2026-01-01T09:00:00+00:00,\n"
        "Di,4,,2026-01-02T09:00:00+00:00,verified,2026-01-03T09:00:00+00:00,\n"
        "Ed,5,ref:1,2026-01-02T09:00:00+00:00,review,2026-01-03T09:00:00+00:00,\n"
        "Flo,6,ref:1,2026-01-02T09:00:00+00:00,rejected,2026-01-03T09:00:00+00:00,fake\n",
        encoding="utf-8",
    )
    result = cli("customer", "import", str(file))
    assert result.exit_code == 1
    assert "line 3: a rejected referral needs its reason (referral_reason)" in result.stderr
    assert "line 4: referral_decided_at: the referral is decided before the customer joined" in result.stderr
    assert "line 5: a referral_status needs the referral: give referred_by" in result.stderr
    assert "line 6: referral_status must be verified or rejected (a decision made by hand), not 'review'" in (
        result.stderr
    )
    assert cli.ok("referral", "list", "-f", "json").json() == []
    cli.ok("customer", "import", str(file), "--skip-invalid", str(tmp_path / "rejects.csv"))
    rows = cli.ok("referral", "list", "-f", "json").json()
    assert [(r["status"], r["reason"], r["decided_at"]) for r in rows] == [
        ("rejected", "fake", "2026-01-03T09:00:00+00:00")
    ]


def test_the_daily_jobs_rewards_are_not_given_again_after_a_move(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "birthday_reward: {points: 10, days_before: 60}\nsla:\n  breach_reward: {amount: 5, campaign: apology}\n"
    )
    cli.config_path = config
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--birthday", "03-10", "--at", "2026-01-01")
    cli.ok("interaction", "log", "ann@example.com", "--kind", "complaint", "--summary", "late", "--at", "2026-02-01")
    cli.ok("interaction", "log", "ann@example.com", "--kind", "note", "--summary", "fine", "--at", "2026-02-02")
    cli.ok("daily", "--as-of", "2026-03-01")  # 10 birthday points, an apology coupon
    files = {noun: tmp_path / f"{noun}.csv" for noun in (*ROUND_TRIP, "interaction")}
    for noun, path in files.items():
        cli.ok(noun, "export", "--out", str(path))
    contacts = read(files["interaction"])
    assert [(r["kind"], r["apology_points"], bool(r["apology_coupon"])) for r in contacts] == [
        ("complaint", "", True),
        ("note", "", False),
    ]
    assert read(files["customer"])[0]["birthday_rewards"].startswith("2026@2026-03-01")
    copy = Cli(tmp_path / "copy.db", config)
    for noun, path in files.items():
        copy.ok(noun, "import", str(path))
    for shop in (cli, copy):
        shop.ok("daily", "--as-of", "2026-03-02")  # nothing new is due
    assert balance(copy, "ann@example.com") == balance(cli, "ann@example.com") == 10 + 2  # and two months' tenure
    codes = [sorted(c["code"] for c in shop.ok("coupon", "list", "-f", "json").json()) for shop in (cli, copy)]
    assert codes[0] == codes[1] and len(codes[0]) == 1
    amends = [shop.ok("report", "sla", "--as-of", "2026-03-02", "-f", "json").json() for shop in (cli, copy)]
    assert amends[0] == amends[1]


def test_an_apology_in_the_contact_file_is_checked(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    file = tmp_path / "contacts.csv"
    file.write_text(
        "customer,kind,at,apology_at,apology_coupon,apology_points\n"
        "email:ann@example.com,note,2026-01-05T09:00:00+00:00,2026-01-06T09:00:00+00:00,,5\n"
        "email:ann@example.com,complaint,2026-01-05T09:00:00+00:00,2026-01-04T09:00:00+00:00,,5\n"
        "email:ann@example.com,complaint,2026-01-05T09:00:00+00:00,2026-01-06T09:00:00+00:00,NOPE-1,\n"
        "email:ann@example.com,complaint,2026-01-05T09:00:00+00:00,,,5\n"
        "email:ann@example.com,complaint,2026-01-05T09:00:00+00:00,2026-01-06T09:00:00+00:00,,5\n",
        encoding="utf-8",
    )
    result = cli("interaction", "import", str(file))
    assert result.exit_code == 1
    assert "line 2: only a complaint gets an apology, not a note" in result.stderr
    assert "line 3: the apology is before the complaint" in result.stderr
    assert "line 4: apology_coupon NOPE-1 is not a coupon of this database" in result.stderr
    assert "line 5: apology_coupon and apology_points need the time of the apology (apology_at)" in result.stderr
    assert "line 6" not in result.stderr
    assert cli.ok("interaction", "list", "-f", "json").json() == []


def test_a_referral_verified_by_hand_stays_verified_after_the_daily_check(cli: Cli, tmp_path: Path) -> None:
    """Regression: imported without its reward time, the daily check sent it back to review."""
    cli.ok("customer", "add", "Ann Lee", "--email", "ann@example.com", "--city", "Riverton", "--at", "2026-01-01")
    cli.ok("customer", "add", "Bob Lee", "--ref", "7", "--city", "Riverton", "--referred-by", "ann@example.com")
    cli.ok("referral", "verify", "1")  # same household: a person looked and said yes
    copy = move(cli, tmp_path)
    for shop in (cli, copy):
        shop.ok("daily")
        assert [r["status"] for r in shop.ok("referral", "list", "-f", "json").json()] == ["verified"]


def test_a_redemption_the_points_held_cannot_cover_is_refused_with_its_line(cli: Cli, tmp_path: Path) -> None:
    """Regression: a points file could redeem more than a customer held (exit 0, a negative
    balance that then refused every later write of that customer)."""
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    cli.ok("purchase", "add", "ann@example.com", "100", "--at", "2026-01-10T10:00")  # earns 10
    cli.ok("points", "redeem", "ann@example.com", "8", "--reason", "mug")  # today: 2 left
    file = tmp_path / "points.csv"
    file.write_text(
        "customer,at,kind,points\n"
        "email:ann@example.com,2026-01-05T09:00:00+00:00,redeem,1\n"  # before the sale: none held
        "email:ann@example.com,2026-02-01T09:00:00+00:00,redeem,99999\n"
        "email:ann@example.com,2026-02-02T09:00:00+00:00,redeem,4\n"  # covered, but leaves today's 8 short
        "email:ann@example.com,2026-02-03T09:00:00+00:00,adjust,1\n",
        encoding="utf-8",
    )
    stderr = refused(cli, file, 3)
    assert "line 2: customer 1 would have 0 points on 2026-01-05 09:00, fewer than the 1 redeemed by" in stderr
    assert "line 3: customer 1 would have 10 points on 2026-02-01 09:00, fewer than the 99999 redeemed" in stderr
    assert "line 4: customer 1 would have 7 points on " in stderr
    assert "fewer than the 8 redeemed by hand then, after this redemption of 4" in stderr
    assert balance(cli, "ann@example.com") == 2  # nothing was written
    rejects = tmp_path / "rejects.csv"
    summary = cli.ok("points", "import", str(file), "--skip-invalid", str(rejects), "-f", "json").json()
    assert (summary["inserted"], summary["rejected"], summary["awaiting_sales"]) == (1, 3, 0)
    assert [r["line"] for r in read(rejects)] == ["2", "3", "4"]
    assert balance(cli, "ann@example.com") == 3  # 10 earned + 1 given - 8 redeemed
    cli.ok("points", "redeem", "ann@example.com", "3", "--reason", "pen")  # later writes go through


def test_a_redemption_before_any_sale_is_checked_when_the_sales_come(cli: Cli, tmp_path: Path) -> None:
    """In a moved shop the points file comes before the sales that paid for its redemptions
    (--before-sales): they are checked by the purchase import, which refuses a history that
    overdraws."""
    for name in ("ann", "bob", "cy"):
        cli.ok("customer", "add", name, "--email", f"{name}@example.com", "--at", "2026-01-01")
    points = tmp_path / "points.csv"
    points.write_text(
        "customer,at,kind,points\n"
        "email:ann@example.com,2026-02-01T09:00:00+00:00,redeem,5\n"
        "email:bob@example.com,2026-02-01T09:00:00+00:00,redeem,5\n"
        "email:cy@example.com,2026-01-05T09:00:00+00:00,adjust,10\n"  # covers cy's redemption: checked now
        "email:cy@example.com,2026-02-01T09:00:00+00:00,redeem,5\n",
        encoding="utf-8",
    )
    refused = cli("points", "import", str(points))  # without --before-sales: checked now
    assert refused.exit_code == 1
    assert "line 2: customer 1 would have 0 points on 2026-02-01 09:00, fewer than the 5" in refused.stderr
    summary = cli.ok("points", "import", str(points), "--before-sales", "-f", "json").json()
    assert (summary["inserted"], summary["awaiting_sales"]) == (4, 2)
    sales = tmp_path / "purchases.csv"
    sales.write_text(
        "customer,amount,at\n"
        "email:ann@example.com,100,2026-01-10T10:00:00+00:00\n"  # earns 10: covers her 5
        "email:bob@example.com,20,2026-01-10T10:00:00+00:00\n",  # earns 2: short of his 5
        encoding="utf-8",
    )
    result = cli("purchase", "import", str(sales))
    assert result.exit_code == 1
    assert "customer 2 would have 2 points on 2026-02-01 09:00, fewer than the 5 redeemed by hand then" in result.stderr
    assert "import all of the customer's sales in one file" in " ".join(result.stderr.split())
    assert cli.ok("purchase", "list", "-f", "json").json() == []  # all or nothing
    sales.write_text(sales.read_text(encoding="utf-8").replace(",20,", ",50,"), encoding="utf-8")
    cli.ok("purchase", "import", str(sales))
    assert balance(cli, "ann@example.com") == 5 and balance(cli, "bob@example.com") == 0


def test_a_ledger_short_before_the_file_does_not_stop_the_import(cli: Cli, tmp_path: Path) -> None:
    """The check judges the file's own redemptions: a customer already short (here, a moved
    shop's redemption whose sales never came) is left as it was, and the rest imports."""
    for name in ("ann", "bob"):
        cli.ok("customer", "add", name, "--email", f"{name}@example.com", "--at", "2026-01-01")
    early = tmp_path / "early.csv"
    early.write_text("customer,at,kind,points\nemail:ann@example.com,2026-02-01T09:00:00+00:00,redeem,500\n")
    cli.ok("points", "import", str(early), "--before-sales")
    cli.ok("purchase", "add", "ann@example.com", "20", "--at", "2026-03-01T10:00")
    later = tmp_path / "later.csv"
    later.write_text(
        "customer,at,kind,points\n"
        "email:ann@example.com,2026-04-01T09:00:00+00:00,adjust,5\n"
        "email:bob@example.com,2026-04-01T09:00:00+00:00,adjust,7\n"
    )
    summary = cli.ok("points", "import", str(later), "-f", "json").json()
    assert (summary["inserted"], summary["rejected"]) == (2, 0)
    assert balance(cli, "bob@example.com") == 7


def test_many_short_redemptions_are_each_refused_once(cli: Cli, tmp_path: Path) -> None:
    """Forty customers short at once: each shortfall refuses the one redemption behind it (the
    first for some, the second for others), and the covered redemptions of the file stay."""
    rows = ["customer,at,kind,points"]
    for n in range(1, 41):
        cli.ok("customer", "add", f"c{n}", "--ref", f"c{n}", "--at", "2026-01-01")
        cli.ok("purchase", "add", f"ref:c{n}", "100", "--at", "2026-01-10T10:00")  # earns 10
        rows.append(f"ref:c{n},2026-02-01T09:00:00+00:00,redeem,{50 if n % 2 else 4}")
        rows.append(f"ref:c{n},2026-02-02T09:00:00+00:00,redeem,{3 if n % 2 else 7}")  # short after the 4
    file = tmp_path / "points.csv"
    file.write_text("\n".join(rows) + "\n")
    rejects = tmp_path / "rejects.csv"
    summary = cli.ok("points", "import", str(file), "--skip-invalid", str(rejects), "-f", "json").json()
    refused = read(rejects)
    # odd customers: the 50 is refused and the 3 kept; even ones: the 4 is kept and the 7 refused
    assert [r["points"] for r in refused] == ["50" if n % 2 else "7" for n in range(1, 41)]
    assert (summary["inserted"], summary["rejected"]) == (40, 40)
    assert balance(cli, "ref:c1") == 7 and balance(cli, "ref:c2") == 6


def test_a_customer_already_short_gets_none_of_the_files_redemptions(cli: Cli, tmp_path: Path) -> None:
    """Regression: a customer already short (here, a move's redemption whose sales never came)
    was left unchecked, so a later file could overdraw it without limit, exit 0."""
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    early = tmp_path / "early.csv"
    early.write_text("customer,at,kind,points\nemail:ann@example.com,2026-11-01T10:00:00+00:00,redeem,50\n")
    cli.ok("points", "import", str(early), "--before-sales")
    later = tmp_path / "later.csv"
    later.write_text(
        "customer,at,kind,points\n"
        "email:ann@example.com,2026-10-01T09:00:00+00:00,adjust,10\n"
        "email:ann@example.com,2026-10-15T09:00:00+00:00,redeem,2\n"  # covered, but the ledger is short later
        "email:ann@example.com,,redeem,1000\n"
    )
    stderr = refused(cli, later, 2)
    short = "customer 1 would have 8 points on 2026-11-01 10:00, fewer than the 50 redeemed by hand then"
    assert f"line 3: {short}: the customer's points were short before this file" in stderr
    assert f"line 4: {short}: the customer's points were short before this file" in stderr
    assert balance(cli, "ann@example.com") == -50  # nothing written


def test_a_move_without_before_sales_is_pointed_to_it(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    file = tmp_path / "points.csv"
    file.write_text("customer,at,kind,points\nemail:ann@example.com,2026-02-01T09:00:00+00:00,redeem,5\n")
    stderr = refused(cli, file, 1)
    assert "pass --before-sales, then import the purchases" in " ".join(stderr.split())


def test_a_redemption_at_the_till_does_not_make_a_purchase_file_strict(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    """Only redemptions of customers with no sales before the file wait for it (--before-sales).
    A shop's customer who redeemed at the till, whose ledger an older version left short, keeps
    buying through a purchase file, as through `purchase add`."""
    import sqlite3

    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--at", "2026-01-01")
    cli.ok("purchase", "add", "ann@example.com", "100", "--at", "2026-01-10T10:00")  # earns 10
    cli.ok("points", "redeem", "ann@example.com", "8", "--reason", "mug")
    with sqlite3.connect(db_path) as conn:  # as an older version could leave it: short
        conn.execute("UPDATE points_entry SET delta = -50 WHERE kind = 'redeem'")
    sales = tmp_path / "sales.csv"
    sales.write_text("customer,amount,at\nemail:ann@example.com,20,2026-02-01T10:00:00+00:00\n")
    cli.ok("purchase", "import", str(sales))
    cli.ok("purchase", "add", "ann@example.com", "20", "--at", "2026-02-02T10:00")
    assert len(cli.ok("purchase", "list", "-f", "json").json()) == 3
