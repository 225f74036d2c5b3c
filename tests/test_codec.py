"""Logged values survive Arrow (spool streams and final files) with their types."""

from __future__ import annotations

import math
import os

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from florgit.codec import arrow
from florgit.codec.values import same_value

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
records = st.lists(st.tuples(st.integers(0, 10**6), st.text(min_size=1, max_size=10), scalars), max_size=60)


def _decode(table: pa.Table) -> list[tuple]:
    out = []
    for row in table.to_pylist():
        kind = row["kind"]
        value = {0: None, 1: bool(row["i"]) if row["i"] is not None else None, 2: row["i"], 3: row["f"], 4: row["s"]}[kind]
        out.append((row["ctx"], row["name"], value))
    return out


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(x[:2] == y[:2] and same_value(x[2], y[2]) for x, y in zip(a, b))


def _same_batches(a: pa.RecordBatch, b: pa.RecordBatch) -> bool:
    """Equal schemas and values, NaN equal to NaN (``RecordBatch.equals`` says a NaN differs)."""
    if a.schema != b.schema or len(a) != len(b):
        return False
    return all(
        all(same_value(x, y) for x, y in zip(a.column(k).to_pylist(), b.column(k).to_pylist())) for k in range(a.num_columns)
    )


@settings(max_examples=150, deadline=None)
@given(records)
def test_stored_round_trip_keeps_values_and_types(recs):
    table = pa.Table.from_batches([arrow.record_batch(recs)], schema=arrow.RECORD_SCHEMA)
    back = arrow.from_stream_bytes(arrow.to_stream_bytes(table))
    assert _same(_decode(back), recs)


@settings(max_examples=40, deadline=None)
@given(st.lists(records, min_size=1, max_size=4))
def test_stream_round_trip_over_several_batches(tmp_path_factory, batches):
    path = os.path.join(tmp_path_factory.mktemp("spool"), "records.arrows")
    appender = arrow.StreamAppender(path, arrow.RECORD_SCHEMA)
    for recs in batches:
        appender.append(arrow.record_batch(recs))
    appender.close()
    back = arrow.read_stream(path, arrow.RECORD_SCHEMA)
    assert _same(_decode(back), [r for recs in batches for r in recs])


# What a flush sees most: a few names repeated many times, every value of one type (ints
# past 64 bits included). These take the codec's fast paths (numpy codes and gathers).
_ONE_KIND = st.sampled_from([
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),  # beyond 64 bits too: stored as text
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
])  # fmt: skip
_NAME_POOL = ["loss", "acc", "lr", "é∂", "x" * 100, "grad_norm", "a", "val/loss", "n8", "n9"]


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_packed_rows_of_repeated_names_and_one_value_type_round_trip(data):
    pool = data.draw(st.lists(st.sampled_from(_NAME_POOL), min_size=1, max_size=10, unique=True))
    values = data.draw(st.lists(data.draw(_ONE_KIND), min_size=1, max_size=300))
    recs = [(data.draw(st.integers(0, 10**6)), data.draw(st.sampled_from(pool)), v) for v in values]
    expected = [(c, n, str(v) if type(v) is int and not -(2**63) <= v < 2**63 else v) for c, n, v in recs]
    assert _same(_decode(pa.Table.from_batches([arrow.record_batch(recs)])), expected)
    starts = [(c, 7, k, v, 0.5 + k) for k, (c, _n, v) in enumerate(recs)]
    batch = arrow.start_batch(starts, 0.25)
    assert batch.column("t").to_pylist() == [0.25 + k for k in range(len(starts))]
    assert _same(_decode(pa.Table.from_batches([batch]).drop(["loop_id", "iteration", "t"]).add_column(1, "name", pa.array(["n"] * len(starts)))), [(c, "n", v) for c, _n, v in expected])


def test_torn_stream_tail_keeps_complete_batches(tmp_path):
    path = str(tmp_path / "records.arrows")
    appender = arrow.StreamAppender(path, arrow.RECORD_SCHEMA)
    appender.append(arrow.record_batch([(1, "a", 1.5)]))
    appender.append(arrow.record_batch([(2, "b", 2.5)]))
    size = os.path.getsize(path)
    appender.close()
    with open(path, "r+b") as f:  # a kill in the middle of the second batch
        f.truncate(size - 20)
    back = _decode(arrow.read_stream(path, arrow.RECORD_SCHEMA))
    assert back == [(1, "a", 1.5)]


def test_integers_beyond_64_bits_are_kept_exactly_as_text():
    back = _decode(pa.Table.from_batches([arrow.record_batch([(0, "big", 2**70), (0, "f", math.pi)])]))
    assert back == [(0, "big", str(2**70)), (0, "f", math.pi)]


def test_loop_tables_round_trip():
    loops = arrow.loop_batch([(1, 0, 1, "epoch"), (2, 1, 2, "step")])
    starts = arrow.start_batch([(1, 1, 0, None, 0.0), (2, 2, 0, None, 0.1), (3, 1, 1, "b", 1.5)])
    ends = arrow.end_batch([(2, 0.2), (1, 1.5)])
    for batch in (loops, starts, ends):
        table = pa.Table.from_batches([batch])
        assert arrow.from_stream_bytes(arrow.to_stream_bytes(table)).equals(table)
    assert starts.column("s").to_pylist() == [None, None, "b"]
    assert starts.column("kind").to_pylist() == [0, 0, 4]


@settings(max_examples=200, deadline=None)
@given(
    table=st.lists(st.text(max_size=80), min_size=1, max_size=70),
    picks=st.lists(st.integers(0, 10**6), max_size=60),
)
def test_strings_of_codes_is_the_table_looked_up(table, picks):
    """Names of one width, of several, empty ones, NULs, long ones, long tables: each row
    is its code's string."""
    import numpy as np

    from florgit.codec.pyarrays import strings_of_codes

    codes = np.array([p % len(table) for p in picks], dtype=np.intp)
    got = strings_of_codes(codes, table)
    assert got.type == pa.string() and got.null_count == 0
    assert got.to_pylist() == [table[c] for c in codes.tolist()]
