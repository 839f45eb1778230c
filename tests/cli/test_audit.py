"""The audit log, safe merges and erasing for good, through the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from crmcli.models import Purchase, table_of
from tests.conftest import Cli


def entries(cli: Cli, *args: str) -> list[dict]:  # type: ignore[type-arg]
    return cli.ok("audit", "list", "-f", "json", *args).json()


def test_every_write_is_recorded_with_masked_personal_values(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann Lee", "--email", "ann@example.com")
    cli.ok("customer", "edit", "1", "--email", "ann2@example.com", "--stage", "prospect")
    cli.ok("purchase", "add", "1", "10")
    cli.ok("customer", "list")  # a read leaves nothing
    log = entries(cli)
    assert [e["command"].split()[1:3] for e in log] == [["purchase", "add"], ["customer", "edit"], ["customer", "add"]]
    edit = log[1]
    assert edit["user"] and edit["command"].startswith("crmcli customer edit")
    (customer,) = [r for r in edit["details"]["records"] if r["table"] == "customer"]
    assert customer["op"] == "update" and customer["fields"]["email"] == ["***", "***"]
    assert customer["fields"]["stage"] == ["lead", "prospect"]
    text = json.dumps(log)
    assert "ann@example.com" not in text and "ann2@example.com" not in text and "Ann Lee" not in text
    assert "ann" not in " ".join(e["command"] for e in log)  # options are named, never their values


def test_a_sale_records_its_row_field_by_field_and_its_customer(cli: Cli) -> None:
    """The sale is written by one INSERT, not an ORM flush: its entry still lists the row."""
    cli.ok("customer", "add", "Ann")
    cli.ok("customer", "add", "Bob")
    cli.ok("purchase", "add", "2", "12.50", "--ref", "T-1", "--due", "+7d")
    (entry,) = entries(cli, "--command", "purchase add")
    (sale,) = [r for r in entry["details"]["records"] if r["table"] == "purchase"]
    assert sale["op"] == "insert" and sale["id"] == 1
    fields = sale["fields"]
    # every column but the id and those the sale left empty
    every_column = {column.name for column in table_of(Purchase).columns}
    assert set(fields) == every_column - {"id", "paid_at", "coupon_id", "refunded_at"}
    assert (fields["customer_id"], fields["gross_minor"], fields["net_minor"], fields["ref"]) == (2, 1250, 1250, "***")
    assert entry["details"]["changed"] >= 1
    assert [e["id"] for e in entries(cli, "--customer", "2")][0] == entry["id"]
    assert all(e["command"].split()[1:3] == ["customer", "add"] for e in entries(cli, "--customer", "1"))


def test_an_import_is_one_entry_with_its_counts(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "c.csv"
    file.write_text("name,email\n" + "".join(f"P{n},p{n}@example.com\n" for n in range(30)))
    cli.ok("customer", "import", str(file))
    (entry,) = entries(cli)
    assert entry["details"]["inserted"] == 30 and entry["details"]["file"] == str(file)
    cli.ok("customer", "import", str(file), "--dry-run", "--on-duplicate", "skip")
    assert len(entries(cli)) == 1  # a dry run changed nothing, so it left nothing


def test_filters_by_customer_and_command(cli: Cli) -> None:
    for name in ("Ann", "Bob"):
        cli.ok("customer", "add", name)
    cli.ok("interaction", "log", "2", "--kind", "call")
    assert [e["command"].split()[1:3] for e in entries(cli, "--customer", "2")] == [
        ["interaction", "log"],
        ["customer", "add"],
    ]
    assert len(entries(cli, "--command", "interaction")) == 1
    assert entries(cli, "--since", "+1d") == []


def test_merge_asks_off_a_terminal_and_dry_run_changes_nothing(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Ann L", "--phone", "+442079460018")
    cli.ok("purchase", "add", "2", "20")
    refused = cli("customer", "merge", "1", "2")
    assert refused.exit_code == 1 and "pass --yes to confirm, or --dry-run" in refused.stderr
    preview = cli.ok("customer", "merge", "1", "2", "--dry-run", "-f", "json").json()
    assert preview["dry_run"] is True and preview["moved"]["purchase"] == 1
    assert len(cli.ok("customer", "list", "-f", "json").json()) == 2  # nothing moved
    done = cli.ok("customer", "merge", "1", "2", "--yes", "-f", "json").json()
    assert done["dry_run"] is False and done["kept"] == 1
    (merge,) = entries(cli, "--command", "merge")
    assert merge["details"]["merged"]["kept"] == 1 and merge["details"]["merged"]["dropped"] == 2


def test_merge_on_a_terminal_shows_both_and_asks(cli: Cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import crmcli.cli.customer as command

    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com")
    monkeypatch.setattr(command, "is_interactive", lambda stream=None: True)
    declined = cli("customer", "merge", "1", "2", input="n\n")
    assert declined.exit_code == 1
    assert "keep: customer 1 Ann <ann@example.com>" in declined.stderr
    assert "merge in, then remove: customer 2 Bob <bob@example.com>" in declined.stderr
    assert len(cli.ok("customer", "list", "-f", "json").json()) == 2
    cli.ok("customer", "merge", "1", "2", input="y\n")
    assert len(cli.ok("customer", "list", "-f", "json").json()) == 1


def test_erase_leaves_no_value_in_the_database_the_wal_or_the_log(cli: Cli, db_path: Path) -> None:
    cli.ok("customer", "add", "Zelda Quux", "--email", "zelda.quux@example.com", "--phone", "+442079460099")
    cli.ok("interaction", "log", "1", "--kind", "note", "--summary", "zelda likes blue")
    reader = sqlite3.connect(db_path)  # another process holding the database open
    reader.execute("SELECT count(*) FROM customer").fetchone()
    cli.ok("customer", "erase", "1", "--yes")
    reader.close()
    raw = b"".join(
        Path(f"{db_path}{suffix}").read_bytes() for suffix in ("", "-wal") if Path(f"{db_path}{suffix}").exists()
    )
    assert b"zelda.quux@example.com" not in raw and b"Zelda Quux" not in raw and b"likes blue" not in raw
    log = json.dumps(entries(cli))
    assert "zelda" not in log.lower()
    assert entries(cli, "--command", "erase")[0]["details"]["erased"] == 1


def test_erase_names_the_backups_that_still_hold_the_customer(cli: Cli, db_path: Path) -> None:
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    backup = Path(cli.ok("db", "backup").stdout.strip())
    result = cli.ok("customer", "erase", "1", "--yes")
    assert f"the backup {backup} still holds this customer's data" in result.stderr


def test_audit_list_refuses_bad_filters_with_one_line(cli: Cli) -> None:
    cli.ok("customer", "add", "Ann")
    unknown = cli("audit", "list", "--customer", "nobody@example.com")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("Error: no customer 'nobody@example.com'")
    bad_date = cli("audit", "list", "--since", "yesterday-ish")
    assert bad_date.exit_code == 1 and bad_date.stderr.startswith("Error: ") and "\n" == bad_date.stderr[-1]
    assert bad_date.stderr.count("\n") == 1
    assert cli.usage_error("audit", "list", "--limit", "0")
    assert cli.ok("audit", "list", "--command", "no-such-command", "-f", "json").json() == []


def test_writes_made_in_sql_leave_an_entry_naming_their_customers(cli: Cli) -> None:
    """Regression: points, coupons and referral decisions are written with set-based SQL the ORM
    does not see, and these commands left no entry at all."""
    cli.ok("customer", "add", "Ann", "--email", "ann@example.com")
    cli.ok("customer", "add", "Bob", "--email", "bob@example.com", "--referred-by", "ann@example.com")
    cli.ok("customer", "add", "Cy", "--email", "cy@example.com", "--referred-by", "ann@example.com")
    writes = [
        (["points", "add", "1", "50", "--reason", "goodwill"], {1}),
        (["points", "redeem", "1", "2", "--reason", "gift"], {1}),
        (["coupon", "issue", "--customer", "1", "--amount", "2", "--code", "C1"], {1}),
        (["coupon", "redeem", "C1", "--customer", "1"], {1}),
        (["coupon", "issue", "--customer", "2", "--amount", "3", "--code", "C2"], {2}),
        (["coupon", "void", "C2"], {2}),
        (["referral", "verify", "1"], {1, 2}),
        (["referral", "reject", "2", "--reason", "same household"], {1, 3}),
    ]
    for args, customers in writes:
        before = len(entries(cli))
        cli.ok(*args)
        log = entries(cli)
        assert len(log) == before + 1, args
        assert log[0]["command"].split()[1:3] == args[:2]
        assert log[0]["details"]["changed"] or log[0]["details"]["written"], args
        for customer in (1, 2, 3):
            listed = log[0]["id"] in {e["id"] for e in entries(cli, "--customer", str(customer))}
            assert listed == (customer in customers), (args, customer)


def test_an_entry_names_every_customer_however_many_in_parts(cli: Cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Regression: an entry's customers were written in one statement built in memory at
    once; a 5M-row import that rewarded 94,000 referrals held 35 MB for it at its peak.
    They are written a part at a time (here parts of 3), every one of them."""
    import crmcli.audit

    monkeypatch.setattr(crmcli.audit, "CUSTOMER_ROWS", 3)
    for n in range(7):
        cli.ok("customer", "add", f"C{n}", "--ref", f"c{n}")
    cli.ok("coupon", "issue", "--all", "--amount", "1")
    issued = entries(cli)[0]
    assert issued["command"].split()[1:3] == ["coupon", "issue"]
    for n in range(1, 8):
        named = [e["id"] for e in cli.ok("audit", "list", "--customer", str(n), "-f", "json").json()]
        assert issued["id"] in named, n
