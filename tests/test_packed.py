"""The hot path's packed rows (codec.packed) and the flusher's reading of them
(codec.unpacked): every value comes back with its type and bits, in log order, whatever
mix of kinds, and side-list values stay with their own rows when threads interleave."""

from __future__ import annotations

import math
import struct
import sys
import threading

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from florgit.api.flusher import Buffers
from florgit.codec import arrow, packed, unpacked
from florgit.codec.values import same_value

NAMES = st.sampled_from(["loss", "acc", "é∂", "x" * 100, "val/loss", "a", ""])
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),  # past 64 bits too
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
)


def _stored(value: object) -> object:
    return str(value) if type(value) is int and not -(2**63) <= value < 2**63 else value


def _bits_equal(a: object, b: object) -> bool:
    if type(a) is float and type(b) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)  # NaN payloads and -0.0 too
    return same_value(a, b)


def _decoded(batch: pa.RecordBatch) -> list[tuple]:
    out = []
    for row in batch.to_pylist():
        value = {0: None, 1: None if row["i"] is None else bool(row["i"]), 2: row["i"], 3: row["f"], 4: row["s"]}[row["kind"]]
        out.append((row["ctx"], row.get("name"), value))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**62), NAMES, VALUES), max_size=80))
def test_records_of_any_mix_come_back_in_order_with_their_types_and_bits(rows):
    buf, others, names = packed.pack_records(rows)
    assert len(buf) == packed.RECORD_SIZE * len(rows)
    back = packed.record_rows(buf, others, names)  # the pure-Python reading (replays)
    assert len(back) == len(rows) and all(b[:2] == r[:2] and _bits_equal(b[2], r[2]) for b, r in zip(back, rows))
    records = unpacked.Records(bytes(buf), others, names)
    got = _decoded(records.batch())
    assert len(got) == len(rows)
    assert all(g[:2] == r[:2] and _bits_equal(g[2], _stored(r[2])) for g, r in zip(got, rows))
    assert all(_bits_equal(records.row(k)[2], r[2]) and records.row(k)[:2] == r[:2] for k, r in enumerate(rows))
    newest = {name: value for _c, name, value in rows}
    assert records.newest().keys() == newest.keys()
    assert all(_bits_equal(records.newest()[k], v) for k, v in newest.items())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), VALUES), max_size=60), st.floats(0, 1e6))
def test_starts_keep_their_items_and_times(items, t0):
    rows = [(k + 1, 3 + k % 2, k, item, t0 + k / 8) for k, item in enumerate(items)]
    buf, side = packed.pack_starts(rows)
    back = packed.start_rows(buf, side)
    assert len(back) == len(rows)
    assert all(b[:3] == r[:3] and b[4] == r[4] and _bits_equal(b[3], r[3]) for b, r in zip(back, rows))
    starts = unpacked.Starts(bytes(buf), side, t0)
    batch = starts.batch()
    assert batch.column("loop_id").to_pylist() == [r[1] for r in rows]  # the item flag is not part of the id
    assert batch.column("t").to_pylist() == [(t0 + k / 8) - t0 for k in range(len(rows))]
    got = _decoded(batch.drop_columns(["loop_id", "iteration", "t"]))
    assert all(g[0] == r[0] and _bits_equal(g[2], _stored(r[3])) for g, r in zip(got, rows))


def test_interleaved_threads_keep_side_values_with_their_own_rows():
    """Two threads append side values for their own contexts while a third takes: the side
    entry and its row are two steps, so a switch can fall between them; every record
    still carries its own ctx, name and value, and none is lost or doubled."""
    buffers = Buffers()
    n = 20_000
    taken: list[tuple] = []
    done = threading.Event()

    def writer(tag: str, ctx: int) -> None:
        code = buffers.table.code_of(tag)
        for k in range(n):
            packed.append_record(buffers.records, buffers.others, ctx, code, f"{tag}{k}")
            packed.append_record(buffers.records, buffers.others, ctx, code, float(k))

    def taker() -> None:
        while True:
            finished = done.is_set()
            records = unpacked.Records.take(buffers.records, buffers.others, buffers.table.names)
            taken.extend(records.row(k) for k in range(records.n))
            if finished:
                return

    threads = [threading.Thread(target=writer, args=(tag, ctx)) for tag, ctx in (("a", 1), ("b", 2))]
    reader = threading.Thread(target=taker)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch between any two steps, as often as it can
    try:
        reader.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        reader.join()
    finally:
        sys.setswitchinterval(switch)
    assert len(taken) == 4 * n and not buffers.records and not buffers.others
    texts = [(ctx, name, value) for ctx, name, value in taken if type(value) is str]
    assert all(value.startswith(name) and ctx == {"a": 1, "b": 2}[name] for ctx, name, value in texts)
    for tag in "ab":
        assert sorted(int(v[1:]) for _c, name, v in texts if name == tag) == list(range(n))
        mine = [v for _c, name, v in taken if name == tag and type(v) is float]
        assert mine == [float(k) for k in range(n)]  # one thread's own rows keep their order


def test_a_side_value_whose_row_is_not_appended_yet_waits_for_the_next_take():
    buffers = Buffers()
    code = buffers.table.code_of("note")
    packed.append_record(buffers.records, buffers.others, 5, code, "first")
    buffers.others += (6, code | packed.OTHER_ROW, "second")  # a switch came before its row
    records = unpacked.Records.take(buffers.records, buffers.others, buffers.table.names)
    assert [records.row(k) for k in range(records.n)] == [(5, "note", "first")]
    buffers.records += packed.RECORD_INT.pack(6, code | packed.OTHER_ROW, 0)
    records = unpacked.Records.take(buffers.records, buffers.others, buffers.table.names)
    assert [records.row(k) for k in range(records.n)] == [(6, "note", "second")]


def test_names_registered_by_racing_threads_get_one_code_each():
    buffers = Buffers()
    names = [f"n{k}" for k in range(2_000)]
    codes: list[dict] = [{}, {}]

    def register(out: dict) -> None:
        for name in names:
            out[name] = buffers.table.code_of(name)

    threads = [threading.Thread(target=register, args=(out,)) for out in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes[0] == codes[1]
    assert sorted(buffers.table.names) == sorted(names) and len(set(codes[0].values())) == len(names)
    assert all(buffers.table.names[code >> packed.KIND_BITS] == name for name, code in codes[0].items())


def test_record_batch_keeps_negative_zero_and_nan_payloads():
    weird = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0BAD))[0]
    batch = arrow.record_batch([(1, "z", -0.0), (2, "n", weird), (3, "i", math.inf)])
    f = batch.column("f")
    assert math.copysign(1, f[0].as_py()) == -1
    assert struct.pack("<d", f[1].as_py()) == struct.pack("<d", weird)
