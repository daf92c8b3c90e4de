"""The pipeline filter (Python) and the search pre-filter (SQL) must agree on every document."""

import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connector.embedded.sql_filters import filter_sql
from connector.filters import FieldFilter

DOCS = [
    {"type": "hotel", "rating": 4.5, "city": "Paris", "pets": True, "geo": {"country": "FR"}},
    {"type": "hotel", "rating": 3.0, "city": "Lyon", "pets": False},
    {"type": "landmark", "city": "Paris", "rating": None},
    {"type": "hotel", "rating": 5, "city": "Rome", "tags": ["spa"]},
    {"name": "no type"},
]

CASES = [
    ({"type": "hotel"}, [0, 1, 3]),
    ({"type": "hotel", "city": "Paris"}, [0]),
    ({"rating": {"gte": 4}}, [0, 3]),
    ({"rating": {"gt": 3, "lt": 5}}, [0]),
    ({"city": {"in": ["Paris", "Rome"]}}, [0, 2, 3]),
    ({"city": {"nin": ["Paris"]}}, [1, 3, 4]),
    ({"type": {"ne": "hotel"}}, [2, 4]),
    ({"rating": {"exists": True}}, [0, 1, 3]),
    ({"rating": {"exists": False}}, [2, 4]),
    ({"pets": True}, [0]),
    ({"pets": False}, [1]),
    ({"geo.country": "FR"}, [0]),
    ({"rating": None}, [2]),
]


def sql_matches(flt: FieldFilter) -> list[int]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE d (i INTEGER, body TEXT)")
    rows = [(i, json.dumps(d)) for i, d in enumerate(DOCS)]
    conn.executemany("INSERT INTO d VALUES (?, ?)", rows)
    cond, args = filter_sql(flt)
    return [r[0] for r in conn.execute(f"SELECT i FROM d WHERE {cond} ORDER BY i", args)]


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_python_and_sql_agree(spec: dict, expected: list[int]) -> None:
    flt = FieldFilter.model_validate(spec)
    assert [i for i, d in enumerate(DOCS) if flt.matches(d)] == expected
    assert sql_matches(flt) == expected


scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", "c"]), st.booleans())
docs = st.dictionaries(st.sampled_from(["x", "y"]), scalars, max_size=2)
conds = st.one_of(
    scalars.map(lambda v: v),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
              st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"]))),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["in", "nin"]), st.lists(scalars, max_size=3)),
    st.builds(lambda v: {"exists": v}, st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(doc=docs, field=st.sampled_from(["x", "y"]), cond=conds)
def test_python_and_sql_agree_on_generated_cases(doc: dict, field: str, cond: object) -> None:
    # Comparisons across types are excluded: SQLite orders them, Python refuses them.
    values = [doc.get(field)] + (list(cond.values()) if isinstance(cond, dict) else [cond])
    kinds = {type(v) for v in values if v is not None and not isinstance(v, list | bool)}
    if isinstance(cond, dict) and set(cond) & {"gt", "gte", "lt", "lte"} and len(kinds) > 1:
        return
    if isinstance(cond, dict) and set(cond) & {"gt", "gte", "lt", "lte"} and isinstance(
        doc.get(field), bool
    ):
        return
    flt = FieldFilter.model_validate({field: cond})
    conn = sqlite3.connect(":memory:")
    sql, args = filter_sql(flt)
    got = conn.execute(f"SELECT {sql} FROM (SELECT ? AS body)", [*args, json.dumps(doc)])
    assert bool(got.fetchone()[0]) == flt.matches(doc), (doc, cond, sql)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"x": {"like": 1}}, "unknown operator 'like'"),
        ({"x": {"in": 3}}, "'in' needs a list"),
        ({"x": {"exists": "yes"}}, "'exists' needs true or false"),
        ({"a..b": 1}, "not a field name"),
    ],
)
def test_bad_filters(spec: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        FieldFilter.model_validate(spec)
