"""coupon export / coupon import: the coupons not in the purchase file travel in their own."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import Cli


def shop(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com", "--ref", "12")
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com")
    cli.ok("coupon", "issue", "--customer", "ref:12", "--percent", "12.5", "--code", "ANN-1", "--campaign", "=x")
    cli.ok("coupon", "issue", "--customer", "bob@example.com", "--amount", "5", "--code", "BOB-1", "--max-uses", "3")
    cli.ok(
        "coupon",
        "issue",
        "--customer",
        "bob@example.com",
        "--amount",
        "2",
        "--code",
        "BOB-2",
        "--expires",
        "2030-01-31",
    )
    cli.ok("coupon", "redeem", "BOB-1", "--customer", "bob@example.com", "--amount", "10")  # a use without a sale
    cli.ok("purchase", "add", "bob@example.com", "20", "--coupon", "BOB-1", "--at", "2026-03-01T10:00")
    cli.ok("coupon", "void", "BOB-2")


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_coupons_travel_with_their_terms_uses_and_voids(cli: Cli, tmp_path: Path) -> None:
    shop(cli)
    files = {n: tmp_path / f"{n}.csv" for n in ("customers", "coupons", "purchases")}
    for noun, path in files.items():
        cli.ok(noun.removesuffix("s"), "export", "--out", str(path))
    rows = {r["code"]: r for r in read(files["coupons"])}
    assert rows["ANN-1"]["customer"] == "ref:12" and rows["ANN-1"]["percent"] == "12.5"
    assert rows["ANN-1"]["campaign"] == "'=x"  # guarded against formula injection
    assert rows["BOB-1"]["amount"] == "5.00" and rows["BOB-1"]["uses_without_sale"] == "1"
    assert rows["BOB-1"]["max_uses"] == "3"
    assert rows["BOB-2"]["voided_at"].endswith("+00:00") and rows["BOB-2"]["expires_at"].startswith("2030-01-31T23:59")

    copy = Cli(tmp_path / "copy.db")
    copy.ok("customer", "import", str(files["customers"]))
    assert copy.ok("coupon", "import", str(files["coupons"]), "--dry-run", "-f", "json").json()["inserted"] == 3
    assert copy.ok("coupon", "list", "-f", "json").json() == []
    copy.ok("coupon", "import", str(files["coupons"]))
    copy.ok("purchase", "import", str(files["purchases"]))
    listed = ("code", "customer", "percent", "amount", "expires_at", "uses", "max_uses", "campaign", "status")

    def coupons(shop: Cli) -> list[dict[str, object]]:
        return [{k: c[k] for k in listed} for c in shop.ok("coupon", "list", "--sort", "code", "-f", "json").json()]

    assert coupons(copy) == coupons(cli)
    assert copy.ok("coupon", "stats", "-f", "json").json() == cli.ok("coupon", "stats", "-f", "json").json()
    # Again: every code is there already.
    again = copy("coupon", "import", str(files["coupons"]))
    assert again.exit_code == 1 and "line 2: coupon code ANN-1 is already taken" in again.stderr
    assert (
        copy.ok("coupon", "import", str(files["coupons"]), "--on-duplicate", "skip", "-f", "json").json()["skipped"]
        == 3
    )


def test_a_bad_row_names_its_line_and_nothing_is_written(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    file = tmp_path / "coupons.csv"
    file.write_text(
        "code,customer,percent,amount,issued_at,voided_at,uses_without_sale,max_uses\n"
        "OK-1,email:ann@example.com,10,,2026-01-01T09:00:00+00:00,,,\n"
        "BAD-1,email:ann@example.com,10,5,2026-01-01T09:00:00+00:00,,,\n"
        "BAD-2,email:nobody@example.com,,5,,,,\n"
        "BAD-3,email:ann@example.com,,5,2026-02-01T09:00:00+00:00,2026-01-01T09:00:00+00:00,,\n"
        "BAD-4,email:ann@example.com,,5,,,2,1\n"
        "OK-1,email:ann@example.com,,5,,,,\n",
        encoding="utf-8",
    )
    result = cli("coupon", "import", str(file))
    assert result.exit_code == 1
    assert "line 3: a coupon takes either a percent or an amount off" in result.stderr
    assert "line 4: no customer 'email:nobody@example.com'" in result.stderr
    assert "line 5: the coupon is voided before it was issued" in result.stderr
    assert "line 6: uses_without_sale 2 is more than the coupon's max_uses 1" in result.stderr
    assert "line 7: same code as line 2 of this file" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: 5 bad row(s)")
    assert cli.ok("coupon", "list", "-f", "json").json() == []
    rejects = tmp_path / "rejects.csv"
    cli.ok("coupon", "import", str(file), "--skip-invalid", str(rejects))
    assert [c["code"] for c in cli.ok("coupon", "list", "-f", "json").json()] == ["OK-1"]
    assert [r["line"] for r in read(rejects)] == ["3", "4", "5", "6", "7"]


def test_a_reward_coupon_keeps_its_referral_and_is_not_given_twice(cli: Cli, tmp_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com", "--referred-by", "ann@example.com")
    cli.ok("purchase", "add", "bob@example.com", "30", "--at", "2026-03-01T10:00")  # verifies: both sides rewarded
    files = {n: tmp_path / f"{n}.csv" for n in ("customers", "coupons", "purchases")}
    for noun, path in files.items():
        cli.ok(noun.removesuffix("s"), "export", "--out", str(path))
    rewards = [r for r in read(files["coupons"]) if r["campaign"] == "referral"]
    assert sorted(r["referral"] for r in rewards) == ["email:bob@example.com"] * 2
    copy = Cli(tmp_path / "copy.db")
    for noun, path in files.items():
        copy.ok(noun.removesuffix("s"), "import", str(path))
    codes = sorted(c["code"] for c in copy.ok("coupon", "list", "-f", "json").json())
    assert codes == sorted(c["code"] for c in cli.ok("coupon", "list", "-f", "json").json())
    assert [r["status"] for r in copy.ok("referral", "list", "-f", "json").json()] == ["verified"]


def test_a_side_already_rewarded_is_not_rewarded_again(cli: Cli, tmp_path: Path) -> None:
    """The purchases imported before the coupons rewarded the referral: its reward coupons are refused."""
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com", "--referred-by", "ann@example.com")
    cli.ok("purchase", "add", "bob@example.com", "30", "--at", "2026-03-01T10:00")
    files = {n: tmp_path / f"{n}.csv" for n in ("customer", "purchase", "coupon")}
    for noun, path in files.items():
        cli.ok(noun, "export", "--out", str(path))
    copy = Cli(tmp_path / "copy.db")
    copy.ok("customer", "import", str(files["customer"]))
    copy.ok("purchase", "import", str(files["purchase"]))  # verifies and rewards both sides
    result = copy("coupon", "import", str(files["coupon"]))
    assert result.exit_code == 1
    assert "line 2: referral 1 has already rewarded customer 1 (coupon " in result.stderr
    assert "line 3: referral 1 has already rewarded customer 2 (coupon " in result.stderr
