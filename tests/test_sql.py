"""The conditions on sets of values: one id or many find the same rows, and the single-id and
constant-list forms compile to SQL that runs as it is (no per-execution rewrite)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select

from crmcli.sql import among, bound_ids, is_in, one_of

metadata = MetaData()
things = Table("thing", metadata, Column("id", Integer, primary_key=True), Column("kind", String))
KINDS = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def engine() -> Any:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(things.insert(), [{"id": i, "kind": KINDS[i % 4]} for i in range(1, 41)])
    return engine


def expands(statement: Any, engine: Any) -> bool:
    """The statement has a parameter SQLAlchemy rewrites into the SQL on every execution."""
    return "POSTCOMPILE" in str(statement.compile(engine))


@given(ids=st.lists(st.integers(min_value=-2, max_value=45), max_size=5), kinds=st.sets(st.sampled_from(KINDS)))
def test_one_id_or_many_find_what_an_in_list_finds(engine: Any, ids: list[int], kinds: set[str]) -> None:
    wanted = sorted(kinds)
    with engine.connect() as conn:
        expected = set(
            conn.execute(select(things.c.id).where(things.c.id.in_(ids), things.c.kind.in_(wanted))).scalars()
        )
        many, value = bound_ids(ids)
        bound = select(things.c.id).where(among(things.c.id, "ids", many), one_of(things.c.kind, wanted))
        inline = select(things.c.id).where(is_in(things.c.id, ids), one_of(things.c.kind, wanted))
        assert set(conn.execute(bound, {"ids": value}).scalars()) == expected
        assert set(conn.execute(inline).scalars()) == expected


def test_one_id_and_a_constant_list_compile_without_a_rewrite(engine: Any) -> None:
    many, value = bound_ids([7])
    assert (many, value) == (False, 7)
    single = select(things.c.id).where(among(things.c.id, "ids", many), one_of(things.c.kind, KINDS))
    assert not expands(single, engine)
    assert not expands(select(things.c.id).where(is_in(things.c.id, [7])), engine)
    # many ids keep the IN-list (an import's chunk of 900)
    assert bound_ids([7, 8]) == (True, [7, 8])
    assert expands(select(things.c.id).where(among(things.c.id, "ids", True)), engine)
