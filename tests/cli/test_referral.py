from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli


@pytest.fixture
def gb(tmp_path: Path, cli: Cli) -> Cli:
    config = tmp_path / "c.yaml"
    config.write_text("default_phone_region: GB\n")
    cli.config_path = config
    return cli


def code_of(cli: Cli, who: int) -> str:
    return cli.ok("customer", "show", str(who), "-f", "json").json()["referral_code"]


def test_referral_by_code_is_pending_until_a_purchase(cli: Cli) -> None:
    ann = cli.new_id("customer", "add", "Ann")
    bob = cli.new_id("customer", "add", "Bob", "--referred-by", code_of(cli, ann).lower())
    rows = cli.ok("referral", "list", "-f", "json").json()
    assert [(r["referrer_id"], r["referred_id"], r["status"]) for r in rows] == [(ann, bob, "pending")]
    shown = cli.ok("customer", "show", str(bob), "-f", "json").json()
    assert shown["referred_by"] == {"id": ann, "name": "Ann", "status": "pending"}


def test_self_referral_by_email_in_another_case(cli: Cli) -> None:
    ann = cli.new_id("customer", "add", "Ann", "--email", "ann@example.com")
    result = cli("customer", "add", "Ann again", "--email", "ANN@Example.com", "--referred-by", str(ann))
    assert result.exit_code == 1
    assert result.stderr == "Error: a customer cannot refer themselves (the same email)\n"
    result = cli("referral", "add", str(ann), "ann@example.com")
    assert result.exit_code == 1 and "cannot refer themselves (the same customer)" in result.stderr


def test_self_referral_by_phone_in_another_format(gb: Cli) -> None:
    ann = gb.new_id("customer", "add", "Ann", "--phone", "+44 20 7946 0018")
    result = gb("customer", "add", "Ann's alias", "--phone", "(020) 7946-0018", "--referred-by", str(ann))
    assert result.exit_code == 1
    assert result.stderr == "Error: a customer cannot refer themselves (the same phone)\n"
    assert len(gb.ok("customer", "list", "-f", "json").json()) == 1


def test_a_customer_is_referred_only_once(cli: Cli) -> None:
    ann = cli.new_id("customer", "add", "Ann")
    bob = cli.new_id("customer", "add", "Bob")
    cy = cli.new_id("customer", "add", "Cy", "--referred-by", str(ann))
    result = cli("referral", "add", str(bob), str(cy))
    assert result.exit_code == 1
    assert result.stderr == f"Error: customer {cy} was already referred by customer {ann} (referral 1)\n"


@pytest.mark.parametrize("length", range(2, 11))
def test_cycles_of_any_length_are_refused(cli: Cli, length: int) -> None:
    ids = [cli.new_id("customer", "add", f"C{i}") for i in range(length)]
    for referrer, referred in zip(ids, ids[1:], strict=False):
        cli.ok("referral", "add", str(referrer), str(referred))
    result = cli("referral", "add", str(ids[-1]), str(ids[0]))
    assert result.exit_code == 1 and "cannot close a circle" in result.stderr
    assert len(cli.ok("referral", "list", "-f", "json").json()) == length - 1


def test_first_qualifying_purchase_verifies_and_rewards_both(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "referrals:\n  qualifying_purchase: 50\n"
        "  reward_referrer: {points: 100}\n  reward_referred: {amount: 5, expires_in_days: 30}\n"
    )
    cli.config_path = config
    ann = cli.new_id("customer", "add", "Ann")
    bob = cli.new_id("customer", "add", "Bob", "--referred-by", str(ann))
    small = cli.ok("purchase", "add", str(bob), "49.99", "-f", "json").json()
    assert small["referral_verified"] is None
    assert cli.ok("referral", "list", "-f", "json").json()[0]["status"] == "pending"
    big = cli.ok("purchase", "add", str(bob), "50", "-f", "json").json()
    assert big["referral_verified"] == 1
    assert cli.ok("referral", "list", "--status", "verified", "-f", "json").json()[0]["referred_id"] == bob
    # The rewards are real: Ann's points pay for something, Bob's coupon takes 5.00 off.
    assert cli.ok("points", "show", str(ann), "-f", "json").json()["balance"] == 100
    assert cli.ok("purchase", "add", str(ann), "10", "--points", "100", "-f", "json").json()["net"] == "9.00"
    (coupon,) = cli.ok("coupon", "list", "--customer", str(bob), "-f", "json").json()
    assert coupon["campaign"] == "referral" and coupon["amount"] == "5.00"
    assert cli.ok("purchase", "add", str(bob), "20", "--coupon", coupon["code"], "-f", "json").json()["net"] == "15.00"
    # A third purchase rewards nobody again.
    cli.ok("purchase", "add", str(bob), "80")
    assert cli.ok("points", "show", str(ann), "-f", "json").json()["balance"] == 0  # 9.00 net earns 0
    assert len(cli.ok("coupon", "list", "-f", "json").json()) == 1


def test_manual_verify_twice_rewards_once_and_reject(cli: Cli) -> None:
    ann = cli.new_id("customer", "add", "Ann")
    bob = cli.new_id("customer", "add", "Bob", "--referred-by", str(ann))
    cy = cli.new_id("customer", "add", "Cy", "--referred-by", str(ann))
    result = cli.ok("referral", "verify", "1", "-f", "json").json()
    assert result["referrer_reward"]["customer_id"] == ann and result["referred_reward"]["customer_id"] == bob
    again = cli("referral", "verify", "1")
    assert again.exit_code == 1 and again.stderr == "Error: referral 1 is already verified\n"
    assert len(cli.ok("coupon", "list", "-f", "json").json()) == 2
    blank = cli("referral", "reject", "2", "--reason", " ")
    assert blank.stderr == "Error: a rejection needs a reason (check --reason)\n"
    cli.ok("referral", "reject", "2", "--reason", "same household")
    assert cli("referral", "verify", "2").stderr == "Error: referral 2 is already rejected\n"
    cli.ok("purchase", "add", str(cy), "100")  # a rejected referral is not verified by a purchase
    statuses = {r["referred_id"]: r["status"] for r in cli.ok("referral", "list", "-f", "json").json()}
    assert statuses == {bob: "verified", cy: "rejected"}


def test_tree_counts_branches_and_revenue(cli: Cli) -> None:
    ann = cli.new_id("customer", "add", "Ann")
    bob = cli.new_id("customer", "add", "Bob", "--referred-by", str(ann))
    cy = cli.new_id("customer", "add", "Cy", "--referred-by", str(bob))
    dee = cli.new_id("customer", "add", "Dee", "--referred-by", str(ann))
    for who, amount in ((ann, "5"), (bob, "10"), (cy, "20"), (dee, "40")):
        cli.ok("purchase", "add", str(who), amount)
    tree = cli.ok("referral", "tree", str(ann), "-f", "json").json()
    assert tree["revenue"] == "5.00" and tree["branch_customers"] == 3 and tree["branch_revenue"] == "70.00"
    assert [(c["name"], c["branch_customers"], c["branch_revenue"]) for c in tree["referred"]] == [
        ("Bob", 1, "20.00"),
        ("Dee", 0, "0.00"),
    ]
    text = cli.ok("referral", "tree", str(ann)).stdout
    assert "└── Cy" in text and "brought 3 customer(s) worth 70.00" in text
    flat = cli.ok("referral", "tree", str(ann), "-f", "csv").stdout.splitlines()
    assert flat[0].startswith("depth,parent,id,name") and len(flat) == 5


def test_erase_and_merge_keep_referrals_consistent(cli: Cli) -> None:
    ann = cli.new_id("customer", "add", "Ann", "--email", "ann@example.com")
    bob = cli.new_id("customer", "add", "Bob", "--referred-by", str(ann))
    cli.ok("customer", "erase", str(ann), "--yes")
    rows = cli.ok("referral", "list", "-f", "json").json()
    assert [(r["referrer_id"], r["referrer"], r["referred_id"]) for r in rows] == [(ann, "(erased)", bob)]
    cy = cli.new_id("customer", "add", "Cy")
    result = cli("referral", "add", str(ann), str(cy))
    assert result.exit_code == 1 and "erased customer" in result.stderr
    assert cli.ok("db", "check").exit_code == 0
