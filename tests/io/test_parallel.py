"""Differential: a file read and validated by a second process imports exactly as one read in
the same process (the same rows, refusals, rejected-rows file and database), for purchases and
for customers."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import CrmError, ImportFailed
from crmcli.io import parallel
from crmcli.io import purchases as purchase_io
from crmcli.io.reader import CsvOptions
from crmcli.services.coupons import CouponTerms, issue_coupons
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.purchases import PurchaseInput, add_purchase

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
HEADER = ["customer", "amount", "at", "due", "paid_at", "coupon", "coupon_discount", "ref"]
TABLES = ("customer", "customer_tag", "purchase", "points_entry", "coupon", "referral", "stage_change", "auto_reward")
EXAMPLES = int(os.environ.get("CRMCLI_PARALLEL_EXAMPLES", "25"))


def shop(path: Path | str, config: Config) -> None:
    """Ten customers (refs C1..C10, C2 referred by C1), a coupon and a sale with ref EXIST."""
    db = Database(str(path))
    db.upgrade()
    with db.session(write=True) as s:
        people = [
            add_customer(
                session=s,
                data=CustomerInput(name=f"Person {i}", email=f"p{i}@example.com", ref=f"C{i}"),
                config=config,
                referred_by="ref:C1" if i == 2 else None,
                now=NOW,
            )
            for i in range(1, 11)
        ]
        first = people[0]
        assert first.id is not None
        issue_coupons(session=s, customer_ids=[first.id], terms=CouponTerms(amount_minor=500), code="SAVE5", now=NOW)
        add_purchase(
            session=s,
            customer=first,
            data=PurchaseInput(amount_minor=1000, at=NOW, ref="EXIST"),
            config=config,
            now=NOW,
        )
    db.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "template.db"
    shop(path, Config())
    return path


def copy_of(template: Path, folder: Path, name: str) -> Path:
    target = folder / name
    with sqlite3.connect(template) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables an import changes (coupon and referral codes are random: left out)."""
    out = {}
    with sqlite3.connect(path) as conn:
        for table in TABLES:
            cursor = conn.execute(f"SELECT * FROM {table}")  # noqa: S608
            names = [d[0] for d in cursor.description]
            kept = [i for i, name in enumerate(names) if name not in ("code", "referral_code")]
            out[table] = sorted((tuple(row[i] for i in kept) for row in cursor), key=repr)
    return out


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count the second processes started (the differential test must really use one)."""
    started: list[int] = []
    original = parallel._from_child

    def counting(*args: Any) -> Any:
        started.append(1)
        return original(*args)

    monkeypatch.setattr(parallel, "_from_child", counting)
    yield started


def import_both_ways(
    template: Path,
    folder: Path,
    text: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    on_duplicate: str = "error",
    rejects: bool = False,
    importer: Any = None,
) -> list[dict[str, Any]]:
    """The outcome of importing ``text`` into a copy of the template, read in one process and in two."""
    importer = importer or purchase_io.import_purchases
    file = folder / "sales.csv"
    file.write_text(text, encoding="utf-8")
    outcomes = []
    for mode in ("one process", "two processes"):
        monkeypatch.setattr(parallel, "second_process_pays", lambda source, two=mode == "two processes": two)
        path = copy_of(template, folder, f"{mode}.db")
        rejected = folder / f"{mode}.rejected.csv"
        db = Database(str(path))
        try:
            result: Any = importer(
                db=db,
                config=Config(),
                path=file,
                options=CsvOptions(),
                on_duplicate=on_duplicate,
                reject_file=rejected if rejects else None,
                now=NOW,
            )
        except ImportFailed as exc:  # (the problems, sorted, are the same list)
            result = (str(exc), exc.problems)
        except CrmError as exc:
            result = str(exc)
        finally:
            db.close()
        outcomes.append(
            {
                "result": result,
                "rejected": rejected.read_text(encoding="utf-8-sig") if rejected.exists() else None,
                "database": dump(path),
            }
        )
    return outcomes


cells = st.fixed_dictionaries(
    {
        "customer": st.sampled_from(["C1", "C2", "ref:C3", "p4@example.com", "id:5", "C9", "nobody", "", "ref:ZZ"]),
        "amount": st.sampled_from(["10.00", "12.50", "0", "99.99", "abc", "-5", "", "1.999"]),
        "at": st.sampled_from(["2026-01-05", "2026-02-10T10:30:00", "", "2026-13-01", "2027-01-01"]),
        "due": st.sampled_from(["", "", "2026-03-01", "2025-01-01"]),
        "paid_at": st.sampled_from(["", "", "2026-02-20"]),
        "coupon": st.sampled_from(["", "", "", "SAVE5", "NOPE"]),
        "coupon_discount": st.sampled_from(["", "", "", "2.00"]),
        "ref": st.sampled_from(["", "", "R1", "R2", "R3", "EXIST"]),
    }
)


def as_csv(rows: list[dict[str, str]], extra: set[int]) -> str:
    lines = [",".join(HEADER)]
    for i, row in enumerate(rows):
        line = ",".join(row[c] for c in HEADER)
        lines.append(line + (",surplus" if i in extra else ""))
    return "\n".join(lines) + "\n"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(cells, min_size=1, max_size=30),
    extra=st.sets(st.integers(0, 29), max_size=3),
    batch=st.sampled_from([1, 3, 7, 5000]),
    on_duplicate=st.sampled_from(["error", "skip", "update"]),
    rejects=st.booleans(),
)
def test_two_processes_import_exactly_as_one(
    template: Path,
    monkeypatch: pytest.MonkeyPatch,
    forced: list[int],
    rows: list[dict[str, str]],
    extra: set[int],
    batch: int,
    on_duplicate: str,
    rejects: bool,
) -> None:
    monkeypatch.setattr(purchase_io, "BATCH", batch)
    with tempfile.TemporaryDirectory() as folder:
        before = len(forced)
        one, two = import_both_ways(
            template,
            Path(folder),
            as_csv(rows, extra),
            monkeypatch,
            on_duplicate=on_duplicate,
            rejects=rejects,
        )
        assert len(forced) == before + 1  # the second import did read in a child process
        assert two == one


def test_a_large_file_is_read_by_a_second_process_and_gives_the_same_database(
    template: Path, monkeypatch: pytest.MonkeyPatch, forced: list[int], tmp_path: Path
) -> None:
    rows = [f"C{i % 10 + 1},{i % 97 + 1}.50,2026-01-{i % 28 + 1:02d},,,,,S{i}" for i in range(3000)]
    monkeypatch.setattr(purchase_io, "BATCH", 500)
    one, two = import_both_ways(template, tmp_path, ",".join(HEADER) + "\n" + "\n".join(rows) + "\n", monkeypatch)
    assert forced == [1]
    assert one["result"]["inserted"] == 3000 and two == one


def test_a_file_the_reader_refuses_gives_the_same_error(
    template: Path, monkeypatch: pytest.MonkeyPatch, forced: list[int], tmp_path: Path
) -> None:
    one, two = import_both_ways(template, tmp_path, "customer,amount,colour\nC1,10,red\n", monkeypatch)
    assert "unknown column(s) 'colour'" in one["result"] and two == one
    bad = tmp_path / "latin.csv"
    bad.write_bytes(("customer,amount\n" + "C1,10\n" * 2000 + "Jos\xe9,10\n").encode("latin-1"))
    monkeypatch.setattr(parallel, "second_process_pays", lambda source: True)
    db = Database(str(copy_of(template, tmp_path, "latin.db")))
    try:
        with pytest.raises(CrmError) as refused:
            purchase_io.import_purchases(
                db=db, config=Config(), path=bad, options=CsvOptions(encoding="utf-8"), now=NOW
            )
        assert "latin.csv" in str(refused.value)
    finally:
        db.close()
    assert dump(tmp_path / "latin.db")["purchase"] == dump(template)["purchase"]


def test_a_reader_that_dies_fails_the_import_and_writes_nothing(
    template: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parent = os.getpid()
    validate = purchase_io.validate_row

    def dying(line: int, raw: dict[str, str], run: Any) -> Any:
        if os.getpid() != parent and line == 50:
            os._exit(9)  # killed mid-file
        return validate(line, raw, run)

    monkeypatch.setattr(purchase_io, "validate_row", dying)
    monkeypatch.setattr(parallel, "second_process_pays", lambda source: True)
    file = tmp_path / "sales.csv"
    file.write_text("customer,amount\n" + "C1,10\n" * 100, encoding="utf-8")
    db = Database(str(copy_of(template, tmp_path, "dies.db")))
    try:
        with pytest.raises(CrmError, match="stopped unexpectedly; nothing was imported"):
            purchase_io.import_purchases(db=db, config=Config(), path=file, options=CsvOptions(), now=NOW)
    finally:
        db.close()
    assert dump(tmp_path / "dies.db") == dump(template)


def test_a_second_process_only_for_a_large_file_on_a_machine_with_two_cores(tmp_path: Path) -> None:
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small.write_text("customer,amount\nC1,10\n", encoding="utf-8")
    large.write_bytes(b"customer,amount\n" + b"C1,10.00\n" * (parallel.PARALLEL_MIN_BYTES // 9 + 1))

    class Source:
        def __init__(self, path: Path) -> None:
            self.path = path

    two_cores = sys.platform == "linux" and len(os.sched_getaffinity(0)) > 1
    assert not parallel.second_process_pays(Source(small))
    assert parallel.second_process_pays(Source(large)) == two_cores
    assert not parallel.second_process_pays(Source(tmp_path / "missing.csv"))


def test_output_buffered_before_the_fork_is_written_once(tmp_path: Path) -> None:
    file = tmp_path / "rows.csv"
    file.write_text("customer,amount\nC1,10\nC2,5\n", encoding="utf-8")
    script = f"""
import sys
from pathlib import Path
from crmcli.io import parallel
from crmcli.io.reader import CsvOptions, open_source
parallel.second_process_pays = lambda source: True
sys.stdout.write("an earlier result\\n")  # a pipe: still in the buffer when the reader starts
source = open_source(Path({str(file)!r}), CsvOptions(), fields=("customer", "amount"), required=())
batches = list(parallel.validated_batches(source, lambda line, raw: (line,), size=10, reject=print))
print(batches)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout == "an earlier result\n[[(2,), (3,)]]\n" and done.stderr == ""


people = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["Ann Lee", "Bo", "", "Chen Wei", "Person 3"]),
        "email": st.sampled_from(["", "ann@example.com", "p3@example.com", "bad@", "new@example.org"]),
        "phone": st.sampled_from(["", "+14155550101", "(415) 555-0102", "12", "+86 138 0013 8000"]),
        "ref": st.sampled_from(["", "", "N1", "N2", "C4"]),
        "referred_by": st.sampled_from(["", "", "ref:C1", "ref:N1", "ref:N2", "nobody@example.com"]),
        "stage": st.sampled_from(["", "lead", "prospect", "vip"]),
        "created_at": st.sampled_from(["", "2026-01-02", "2031-01-01"]),
        "referral_status": st.sampled_from(["", "", "verified", "rejected"]),
        "referral_decided_at": st.sampled_from(["", "2026-02-01"]),
        "referral_reason": st.sampled_from(["", "same household"]),
        "birthday_rewards": st.sampled_from(["", "", "2025@2025-03-01", "2025@2025-03-01;2026@2026-03-02"]),
    }
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(people, min_size=1, max_size=20),
    batch=st.sampled_from([1, 4, 5000]),
    on_duplicate=st.sampled_from(["error", "skip", "update"]),
    rejects=st.booleans(),
)
def test_two_processes_import_customers_exactly_as_one(
    template: Path,
    monkeypatch: pytest.MonkeyPatch,
    forced: list[int],
    rows: list[dict[str, str]],
    batch: int,
    on_duplicate: str,
    rejects: bool,
) -> None:
    from crmcli.io import customers as customer_io

    monkeypatch.setattr(customer_io, "BATCH", batch)
    columns = list(rows[0])
    text = ",".join(columns) + "\n" + "".join(",".join(row[c] for c in columns) + "\n" for row in rows)
    config = Config(default_phone_region="US")

    def importer(**kw: Any) -> Any:
        return customer_io.import_customers(**{**kw, "config": config})

    with tempfile.TemporaryDirectory() as folder:
        before = len(forced)
        one, two = import_both_ways(
            template, Path(folder), text, monkeypatch, on_duplicate=on_duplicate, rejects=rejects, importer=importer
        )
        assert len(forced) == before + 1
        assert two == one


def test_a_workbook_is_read_by_a_second_process_as_by_one(
    template: Path, monkeypatch: pytest.MonkeyPatch, forced: list[int], tmp_path: Path
) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Customer", "Amount", "At", "Ref"])
    for i in range(40):
        sheet.append([f"C{i % 10 + 1}", 10 + i, datetime(2026, 1, 1 + i % 28, 9, 30), f"W{i}"])
    sheet.append(["nobody", 5, datetime(2026, 1, 2), "W99"])
    path = tmp_path / "sales.xlsx"
    book.save(path)
    outcomes = []
    for two in (False, True):
        monkeypatch.setattr(parallel, "second_process_pays", lambda source, two=two: two)
        db_path = copy_of(template, tmp_path, f"book{two}.db")
        db = Database(str(db_path))
        try:
            result = purchase_io.import_purchases(
                db=db, config=Config(), path=path, options=CsvOptions(), reject_file=tmp_path / f"r{two}.csv", now=NOW
            )
        finally:
            db.close()
        outcomes.append((result, (tmp_path / f"r{two}.csv").read_text(encoding="utf-8-sig"), dump(db_path)))
    assert forced == [1]
    assert outcomes[0][0]["inserted"] == 40 and "nobody" in outcomes[0][1]
    assert outcomes[1] == outcomes[0]


def test_both_ways_agree_on_each_backend(
    backend: Any, monkeypatch: pytest.MonkeyPatch, forced: list[int], tmp_path: Path
) -> None:
    """A second process forked while the import holds a database connection (a socket on
    PostgreSQL) leaves that connection working: the same import both ways, on both databases."""
    from sqlalchemy import text

    rows = [f"C{i % 10 + 1},{i % 97 + 1}.50,2026-01-{i % 28 + 1:02d},,,,,S{i}" for i in range(300)]
    file = tmp_path / "sales.csv"
    file.write_text(",".join(HEADER) + "\n" + "\n".join([*rows, "nobody,1,,,,,,X"]) + "\n", encoding="utf-8")
    monkeypatch.setattr(purchase_io, "BATCH", 50)
    outcomes = []
    for two in (False, True):
        monkeypatch.setattr(parallel, "second_process_pays", lambda source, two=two: two)
        target, drop = backend(tmp_path, f"both{two}")
        try:
            shop(target, Config())
            db = Database(target)
            try:
                result = purchase_io.import_purchases(
                    db=db,
                    config=Config(),
                    path=file,
                    options=CsvOptions(),
                    reject_file=tmp_path / f"r{two}.csv",
                    now=NOW,
                )
                with db.engine.connect() as conn:  # the connection the import used works after the fork
                    state = {
                        table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]  # noqa: S608
                        for table in ("purchase", "points_entry", "stage_change")
                    }
            finally:
                db.close()
        finally:
            drop()
        outcomes.append((result, state))
    assert forced == [1]  # the second way did read in a child process
    assert outcomes[0][0]["inserted"] == 300 and outcomes[0][0]["rejected"] == 1
    assert outcomes[1] == outcomes[0]


def test_every_field_of_a_customer_row_crosses_to_the_writing_process(
    template: Path, monkeypatch: pytest.MonkeyPatch, forced: list[int], tmp_path: Path
) -> None:
    from crmcli.io import customers as customer_io

    text = (
        "name,email,ref,tags,referred_by,stage_history,referral_status,referral_decided_at,referral_reason,"
        "birthday,birthday_rewards\n"
        "New One,n1@example.com,N1,vip;local,ref:C1,lead@2026-01-02,verified,2026-02-01,,03-01,2025@2025-03-01\n"
        "New Two,n2@example.com,N2,,ref:C3,lead@2026-01-05,rejected,2026-02-02,same household,,\n"
    )

    def importer(**kw: Any) -> Any:
        return customer_io.import_customers(**kw)

    one, two = import_both_ways(template, tmp_path, text, monkeypatch, importer=importer)
    assert forced == [1] and one["result"]["inserted"] == 2
    assert len(one["database"]["auto_reward"]) == 1 and len(one["database"]["referral"]) == 3
    assert two == one
