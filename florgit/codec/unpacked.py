"""One flush's packed rows (``codec.packed``) read as numpy columns, and their Arrow batches.

Reading is a view of the taken bytes plus a few vectorised passes; only the rows whose
values sit in a side list (kept loop items, and records that are not a float or a 64-bit
int) go through Python, and those are few in a training loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from florgit.codec import packed
from florgit.codec.pyarrays import bitmap, from_numpy, from_parts, strings_of_codes
from florgit.codec.values import BOOL, FLOAT, INT, NULL

_START_ROW = np.dtype([("ctx", "<i8"), ("loop_id", "<i8"), ("iteration", "<i8"), ("t", "<f8")])
_RECORD_ROW = np.dtype([("ctx", "<i8"), ("code", "<i8"), ("bits", "<i8")])


def take_bytes(buf: bytearray, size: int) -> bytearray:
    """The whole rows in ``buf``, removed from it. Each row was appended by one ``+=`` (one
    step under the GIL), so the length is always whole rows; rows appended meanwhile stay."""
    n = len(buf) - len(buf) % size
    rows = buf[:n]  # one copy, read in place by numpy
    del buf[:n]
    return rows


class Starts:
    """Iteration starts: ``ctx``, ``loop_id``, ``iteration``, ``t`` (seconds since ``t0``)
    as numpy columns, and the kept items with their row positions."""

    def __init__(self, raw: bytes | bytearray, items: Sequence, t0: float = 0.0) -> None:
        """``items``: the side list; its first entries are those of the flagged rows (it
        may go on with entries of rows not taken yet)."""
        rows = np.frombuffer(raw, _START_ROW)
        self.n = len(rows)
        self.ctx = np.ascontiguousarray(rows["ctx"])
        loop_id = rows["loop_id"]
        if items:  # some rows may carry the flag
            self.loop_id = loop_id & ~packed.HAS_ITEM
            self.item_pos = np.flatnonzero(loop_id != self.loop_id)
        else:  # a flagged row's item comes first, so with none there is no flag
            self.loop_id = np.ascontiguousarray(loop_id)
            self.item_pos = np.empty(0, np.intp)
        self.iteration = np.ascontiguousarray(rows["iteration"])
        self.t = rows["t"] - t0
        side = 2 * len(self.item_pos)
        wanted, given = self.ctx[self.item_pos].tolist(), list(items[0:side:2])
        if wanted == given:  # in order, as one thread appends them
            self.items = list(items[1:side:2])
        else:  # two threads' loops interleaved their appends: match by ctx (unique per start)
            kept = dict(zip(given, items[1:side:2]))
            self.items = [kept.get(c) for c in wanted]

    @classmethod
    def take(cls, buf: bytearray, items: list, t0: float, take=take_bytes) -> Starts:
        """``take``: take_bytes, or what does the same (api/_hotpath.c's take_rows)."""
        starts = cls(take(buf, packed.START_SIZE), items, t0)
        del items[: 2 * len(starts.item_pos)]  # the entries it read; appends go to the end
        return starts

    def row(self, pos: int) -> tuple[int, int, int]:
        return int(self.ctx[pos]), int(self.loop_id[pos]), int(self.iteration[pos])

    def batch(self) -> pa.RecordBatch:
        from florgit.codec.arrow import START_SCHEMA

        n = self.n
        values = value_columns_packed(np.full(n, NULL, np.int8), np.zeros(n, np.int64), self.item_pos, self.items)
        cols = [from_numpy(self.ctx, pa.int64()), from_numpy(self.loop_id, pa.int64()), from_numpy(self.iteration, pa.int64()),
                *values, from_numpy(self.t, pa.float64())]  # fmt: skip
        return pa.RecordBatch.from_arrays(cols, schema=START_SCHEMA)


class Records:
    """Records: ``ctx`` and the name's index as numpy columns, values as kind + 64 bits,
    and the side-list values with their row positions."""

    def __init__(self, raw: bytes | bytearray, others: Sequence, names: Sequence[str]) -> None:
        """``others``: the side list; its first entries are those of the marked rows (it
        may go on with entries of rows not taken yet)."""
        rows = np.frombuffer(raw, _RECORD_ROW)
        self.n = len(rows)
        self.names = names
        self.ctx = rows["ctx"].copy()  # written below; a one-row view would be read-only
        code = rows["code"]
        row_kind = code & packed.KIND_MASK
        self.name_idx = code >> packed.KIND_BITS
        self.bits = np.ascontiguousarray(rows["bits"])
        self.kind = np.where(row_kind == packed.INT_ROW, np.int8(INT), np.int8(FLOAT))
        # A marked row's value comes first, so with none there is no marked row.
        self.other_pos = np.flatnonzero(row_kind == packed.OTHER_ROW) if others else np.empty(0, np.intp)
        k = len(self.other_pos)
        self.others = list(others[2 : 3 * k : 3])
        if k:  # each side entry names its own ctx and name (threads may interleave appends)
            self.ctx[self.other_pos] = np.fromiter(others[0 : 3 * k : 3], np.int64, count=k)
            self.name_idx[self.other_pos] = np.fromiter(others[1 : 3 * k : 3], np.int64, count=k) >> packed.KIND_BITS
        self._other_at: dict[int, object] | None = None

    @classmethod
    def take(cls, buf: bytearray, others: list, names: Sequence[str], take=take_bytes) -> Records:
        records = cls(take(buf, packed.RECORD_SIZE), others, names)
        del others[: 3 * len(records.other_pos)]  # the entries it read; appends go to the end
        return records

    def value(self, pos: int) -> object:
        if self._other_at is None:
            self._other_at = dict(zip(self.other_pos.tolist(), self.others))
        if pos in self._other_at:
            return self._other_at[pos]
        bits = self.bits[pos]
        return float(bits.view(np.float64)) if self.kind[pos] == FLOAT else int(bits)

    def row(self, pos: int) -> tuple[int, str, object]:
        return int(self.ctx[pos]), self.names[int(self.name_idx[pos])], self.value(pos)

    def newest(self) -> dict[str, object]:
        """Each name's last value among these rows."""
        if not self.n:
            return {}
        last = np.full(int(self.name_idx.max()) + 1, -1, np.int64)
        np.maximum.at(last, self.name_idx, np.arange(self.n, dtype=np.int64))
        return {self.names[i]: self.value(int(last[i])) for i in np.flatnonzero(last >= 0).tolist()}

    def batch(self) -> pa.RecordBatch:
        from florgit.codec.arrow import RECORD_SCHEMA

        names = strings_of_codes(self.name_idx, self.names)
        values = value_columns_packed(self.kind, self.bits, self.other_pos, self.others)
        return pa.RecordBatch.from_arrays([from_numpy(self.ctx, pa.int64()), names, *values], schema=RECORD_SCHEMA)


def value_columns_packed(kind: np.ndarray, bits: np.ndarray, pos: np.ndarray, values: list) -> list[pa.Array]:
    """``kind, i, f, s`` columns of ``len(kind)`` rows: each row's kind and its 64 bits (an
    int, or a float's bits), except the rows at ``pos``, whose Python ``values`` decide."""
    from florgit.codec.arrow import value_columns

    n = len(kind)
    if len(pos) == n and n:  # every value in Python (a batch of strings): the plain path
        return value_columns(values)
    s = pa.nulls(n, pa.string())
    if len(pos):
        kind, bits = kind.copy(), bits.copy()
        k_kind, k_i, k_f, k_s = value_columns(values)
        kind[pos] = _data(k_kind, np.int8)
        for col, dtype in ((k_i, np.int64), (k_f, np.float64)):
            data, valid = _data(col, dtype), _valid(col)
            bits[pos[valid]] = data[valid].view(np.int64)
        if k_s.null_count < len(k_s):
            s = _spread_strings(k_s, pos, n)
    ints = (kind == INT) | (kind == BOOL)
    return [from_numpy(kind, pa.int8()), _masked(bits, ints, pa.int64()), _masked(bits.view(np.float64), kind == FLOAT, pa.float64()), s]


def _data(arr: pa.Array, dtype) -> np.ndarray:
    """A fixed-width array's values, nulls included (as whatever their slots hold)."""
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))[arr.offset :]


def _valid(arr: pa.Array) -> np.ndarray:
    n = len(arr)
    if arr.null_count == 0:
        return np.ones(n, bool)
    if arr.null_count == n:
        return np.zeros(n, bool)
    bits = np.unpackbits(np.frombuffer(arr.buffers()[0], np.uint8), bitorder="little")
    return bits[arr.offset : arr.offset + n].astype(bool)


def _masked(data: np.ndarray, valid: np.ndarray, typ: pa.DataType) -> pa.Array:
    n = len(data)
    nulls = n - int(np.count_nonzero(valid))
    if nulls == n:
        return pa.nulls(n, typ)
    if nulls == 0:
        return from_numpy(data, typ)
    clean = np.where(valid, data, 0).astype(data.dtype)  # no stray bits under the nulls
    return pa.Array.from_buffers(typ, n, [bitmap(valid), pa.py_buffer(clean)], null_count=nulls)


def _spread_strings(strings: pa.Array, pos: np.ndarray, n: int) -> pa.Array:
    """``strings`` (one per position, maybe null) placed at ``pos`` among ``n`` null rows."""
    k = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], np.int32, count=strings.offset + k + 1)[strings.offset :]
    valid = np.zeros(n, bool)
    valid[pos] = _valid(strings)
    lengths = np.zeros(n, np.int64)
    lengths[pos] = np.diff(offsets)
    data = strings.buffers()[2]
    data = data.slice(int(offsets[0]), int(offsets[-1] - offsets[0])) if data is not None else b""
    nulls = n - int(np.count_nonzero(valid))
    return from_parts(data, lengths, n, [bitmap(valid)] if nulls else None, nulls)
