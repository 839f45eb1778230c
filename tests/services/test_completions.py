"""Shell completion's customer lookup: a prefix range over the unique indexes, the same on
SQLite and PostgreSQL, erased customers never offered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crmcli.config import Config
from crmcli.db import Database
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.identify import customer_completions
from crmcli.services.merge import erase_customer


def test_prefix_lookup_of_emails_and_refs(backend: Any, tmp_path: Path) -> None:
    target, drop = backend(tmp_path, "completions")
    db = Database(target)
    try:
        with db.session(write=True) as session:
            for n, (email, ref) in enumerate(
                [
                    ("ann@example.com", "T-1"),
                    ("anna@example.com", None),
                    ("bob@example.com", "T-2"),
                    ("an_x@example.com", "ANN-9"),
                    (None, "Tz-3"),
                ]
            ):
                add_customer(session=session, data=CustomerInput(name=f"C{n}", email=email, ref=ref), config=Config())
            gone = add_customer(
                session=session, data=CustomerInput(name="Gone", email="ann.gone@example.com"), config=Config()
            )
            erase_customer(session=session, customer=gone)
        with db.session() as session:
            assert customer_completions(session, "ann") == ["ann@example.com", "anna@example.com"]
            assert customer_completions(session, "ANN") == ["ANN-9", "ann@example.com", "anna@example.com"]
            assert customer_completions(session, "an_") == ["an_x@example.com"]  # _ is not a wildcard
            assert customer_completions(session, "T-") == ["T-1", "T-2"]
            assert len(customer_completions(session, "", limit=3)) == 3
            assert customer_completions(session, "zzz") == []
    finally:
        db.close()
        drop()
