from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Cli


def add(cli: Cli, name: str, *args: str) -> int:
    return cli.new_id("customer", "add", name, *args)


def count(db_path: Path, table: str = "customer") -> int:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_add_normalises_and_shows_the_profile(cli: Cli) -> None:
    cid = add(
        cli,
        "  Ann Lee ",
        "--email",
        "Ann.Lee@Example.COM",
        "--tag",
        "VIP",
        "--tag",
        "vip",
        "--tag",
        "local",
        "--city",
        "Lakeside",
        "--ref",
        "till-17",
    )
    profile = cli.ok("customer", "show", str(cid), "-f", "json").json()
    assert profile["name"] == "Ann Lee"
    assert profile["email"] == "ann.lee@example.com"
    assert profile["tags"] == ["local", "vip"]
    assert profile["stage"] == "lead"
    assert profile["ref"] == "till-17"
    assert len(profile["referral_code"]) == 8
    assert profile["totals"] == {"orders": 0, "net_spend": "0.00", "last_purchase": None}
    assert profile["points"] == 0 and profile["tier"] == "bronze"
    assert profile["stage_history"][0]["to"] == "lead"
    assert profile["created_at"].endswith("+00:00")


@pytest.mark.parametrize("ident", ["1", "ann@example.com", "ANN@example.com", "till-17"])
def test_customer_is_found_by_id_email_or_ref(cli: Cli, ident: str) -> None:
    add(cli, "Ann", "--email", "ann@example.com", "--ref", "till-17")
    assert cli.ok("customer", "show", ident, "-f", "json").json()["id"] == 1


def test_duplicate_email_in_another_case_is_refused(cli: Cli, db_path: Path) -> None:
    add(cli, "Ann", "--email", "Ann@X.com")
    result = cli("customer", "add", "Other Ann", "--email", "ann@x.com")
    assert result.exit_code == 1
    assert result.stderr == "Error: customer 1 already has email ann@x.com (see 'crmcli customer show 1')\n"
    assert count(db_path) == 1


def test_duplicate_phone_and_ref_are_refused(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("default_phone_region: GB\n")
    cli.config_path = config
    add(cli, "Ann", "--phone", "020 7946 0018", "--ref", "A1")
    result = cli("customer", "add", "Bob", "--phone", "+44 20 7946 0018")
    assert result.exit_code == 1 and "already has phone +442079460018" in result.stderr
    result = cli("customer", "add", "Bob", "--ref", "A1")
    assert result.exit_code == 1 and "already has ref A1" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-email"], "Error: bad email 'not-an-email'"),
        (["--email", "a@b"], "Error: bad email 'a@b'"),
        (["--phone", "call me"], "Error: bad phone 'call me'"),
        (["--referred-by", "999"], "Error: no customer '999'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli: Cli, db_path: Path, args: list[str], message: str) -> None:
    result = cli("customer", "add", "Zed", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert count(db_path) == 0


def test_blank_name_is_refused(cli: Cli) -> None:
    result = cli("customer", "add", "   ")
    assert result.exit_code == 1 and "needs a name" in result.stderr


def test_unknown_customer(cli: Cli) -> None:
    result = cli("customer", "show", "nobody@example.com")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: no customer 'nobody@example.com' "
        "(give an id, email, phone, ref or referral code; see 'crmcli customer list')\n"
    )


def test_list_filters_sort_and_formats(cli: Cli) -> None:
    add(cli, "Cara", "--city", "Riverton", "--tag", "vip")
    add(cli, "Abe", "--city", "Lakeside", "--stage", "prospect")
    add(cli, "Bea", "--city", "Riverton", "--email", "bea@example.com")
    names = [r["name"] for r in cli.ok("customer", "list", "--sort", "name", "-f", "json").json()]
    assert names == ["Abe", "Bea", "Cara"]
    assert [r["name"] for r in cli.ok("customer", "list", "--sort", "-name", "-n", "1", "-f", "json").json()] == [
        "Cara"
    ]
    assert [r["name"] for r in cli.ok("customer", "list", "--tag", "VIP", "-f", "json").json()] == ["Cara"]
    assert [r["name"] for r in cli.ok("customer", "list", "--stage", "prospect", "-f", "json").json()] == ["Abe"]
    assert [r["name"] for r in cli.ok("customer", "list", "--search", "river", "-f", "json").json()] == ["Cara", "Bea"]
    csv_out = cli.ok("customer", "list", "--sort", "name", "-f", "csv").stdout.splitlines()
    assert csv_out[0] == "id,name,email,phone,company,city,stage,tags"
    assert csv_out[1] == "2,Abe,,,,Lakeside,prospect,"
    table = cli.ok("customer", "list").stdout
    assert "Cara" in table and "Riverton" in table


def test_empty_list_is_an_empty_json_array(cli: Cli) -> None:
    assert cli.ok("customer", "list", "-f", "json").json() == []
    result = cli.ok("customer", "list")
    assert result.stdout == "" and "No customers" in result.stderr


def test_bad_sort_field(cli: Cli) -> None:
    result = cli("customer", "list", "--sort", "shoe_size")
    assert result.exit_code == 1 and "unknown sort field 'shoe_size'" in result.stderr


def test_edit_changes_fields_tags_and_clears(cli: Cli) -> None:
    cid = add(cli, "Ann", "--email", "ann@example.com", "--tag", "old", "--city", "X")
    profile = cli.ok(
        "customer",
        "edit",
        str(cid),
        "--name",
        "Ann Lee",
        "--email",
        "ANN.LEE@example.com",
        "--add-tag",
        "new",
        "--remove-tag",
        "old",
        "--city",
        "",
        "-f",
        "json",
    ).json()
    assert profile["name"] == "Ann Lee"
    assert profile["email"] == "ann.lee@example.com"
    assert profile["tags"] == ["new"]
    assert profile["city"] is None


def test_edit_to_another_customers_email_is_refused(cli: Cli) -> None:
    add(cli, "Ann", "--email", "ann@example.com")
    bob = add(cli, "Bob", "--email", "bob@example.com")
    result = cli("customer", "edit", str(bob), "--email", "ANN@example.com")
    assert result.exit_code == 1 and "customer 1 already has email" in result.stderr
    assert cli.ok("customer", "show", str(bob), "-f", "json").json()["email"] == "bob@example.com"


def test_stage_changes_are_recorded(cli: Cli) -> None:
    cid = add(cli, "Ann")
    assert "lead -> prospect" in cli.ok("customer", "stage", str(cid), "prospect").stderr
    assert "already prospect" in cli.ok("customer", "stage", str(cid), "PROSPECT").stderr
    cli.ok("customer", "stage", str(cid), "lost")
    history = cli.ok("customer", "show", str(cid), "-f", "json").json()["stage_history"]
    assert [(h["from"], h["to"]) for h in history] == [(None, "lead"), ("lead", "prospect"), ("prospect", "lost")]
    refused = cli.usage_error("customer", "stage", str(cid), "gold")
    assert "'gold' is not one of 'lead', 'verified', 'prospect', 'customer', 'repeat', 'lost'" in refused


def test_duplicates_and_merge_move_everything(cli: Cli, db_path: Path) -> None:
    keep = add(cli, "Ann Lee", "--email", "ann@example.com", "--tag", "vip")
    drop = add(cli, "ann  lee", "--phone", "+15555550100", "--tag", "local", "--city", "Lakeside")
    add(cli, "Ann Lee ", "--ref", "third")
    other = add(cli, "Bob")
    groups = cli.ok("customer", "duplicates", "-f", "json").json()
    assert {r["id"] for r in groups} == {keep, 3}  # "ann  lee" has two spaces: not the same name
    cli.ok("interaction", "log", str(drop), "--kind", "call")
    cli.ok("customer", "add", "Friend", "--referred-by", str(drop))
    cli.ok("customer", "add", "Friend2", "--referred-by", str(other))
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE referral SET referred_id = ? WHERE referrer_id = ?", (drop, other))
    conn.commit()
    conn.close()
    result = cli.ok("customer", "merge", str(keep), str(drop), "--yes", "-f", "json").json()
    assert result["kept"] == keep and result["dropped"] == drop
    profile = cli.ok("customer", "show", str(keep), "-f", "json").json()
    assert profile["phone"] == "+15555550100" and profile["city"] == "Lakeside"
    assert profile["tags"] == ["local", "vip"]
    assert [r["name"] for r in profile["referred"]] == ["Friend"]
    assert profile["referred_by"]["id"] == other
    assert [e["event"] for e in profile["timeline"]] == ["call"]
    assert cli("customer", "show", str(drop)).exit_code == 1
    # The phone moved with the merge, so it is free of the dropped row's unique slot.
    assert cli("customer", "add", "X", "--phone", "+15555550100").exit_code == 1


def test_merge_with_itself_is_refused(cli: Cli) -> None:
    cid = add(cli, "Ann")
    result = cli("customer", "merge", str(cid), str(cid), "--yes")
    assert result.exit_code == 1 and "with itself" in result.stderr


def test_merge_drops_a_referral_between_the_two(cli: Cli) -> None:
    a = add(cli, "A")
    b = cli.new_id("customer", "add", "B", "--referred-by", str(a))
    cli.ok("customer", "merge", str(a), str(b), "--yes")
    profile = cli.ok("customer", "show", str(a), "-f", "json").json()
    assert profile["referred"] == [] and profile["referred_by"] is None


def test_erase_removes_personal_data_for_good(cli: Cli, db_path: Path) -> None:
    cid = add(
        cli,
        "Ann Lee",
        "--email",
        "ann@example.com",
        "--phone",
        "+15555550100",
        "--note",
        "likes red",
        "--tag",
        "vip",
        "--company",
        "Lee & Sons",
    )
    cli.ok("interaction", "log", str(cid), "--kind", "complaint", "--summary", "Ann's order was late")
    result = cli("customer", "erase", str(cid))
    assert result.exit_code == 1 and "--yes" in result.stderr
    cli.ok("customer", "erase", str(cid), "--yes")
    raw = sqlite3.connect(db_path)
    dump = "\n".join(raw.iterdump())
    raw.close()
    for secret in ("Ann Lee", "ann@example.com", "5555550100", "likes red", "Lee & Sons", "late"):
        assert secret not in dump
    assert cli.ok("customer", "list", "-f", "json").json() == []
    assert "already erased" in cli("customer", "erase", str(cid), "--yes").stderr
    # The email is free again for a new sign-up.
    add(cli, "Ann Lee", "--email", "ann@example.com")


def test_quiet_prints_only_the_id(cli: Cli) -> None:
    result = cli.ok("customer", "add", "Ann", "-q")
    assert result.stdout == "1\n"
