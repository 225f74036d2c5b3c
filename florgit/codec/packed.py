"""Rows as the hot path appends them: fixed-width structs packed into a ``bytearray``.

A loop step appends one iteration-start row and a ``log`` call one record row, each with
``buf += PACK(...)``: one step under the GIL, as appending a tuple to a list was. The
flusher takes whole rows with one copy and reads them as numpy columns
(``codec.unpacked``): a million steps become Arrow batches in ~0.2 s of GIL time, where a
flat list of boxed ints and floats took ~0.7 s (a converting pass per column); and a
waiting row takes 24-32 bytes, not ~140.

Rows, little-endian:

- iteration start ``<qqqd``: ctx, loop_id, iteration, t (raw ``perf_counter``). A start
  whose item is kept (a scalar other than its index) has ``HAS_ITEM`` set in loop_id, and
  its ``(ctx, item)`` went to the side list ``items`` just before the row.
- record ``<qqd`` / ``<qqq``: ctx, code, value. ``code`` is the name's index in the run's
  name table, shifted left by 2, with the row's kind in the low bits:
  ``FLOAT_ROW`` (the value's bits), ``INT_ROW`` (a 64-bit int), or ``OTHER_ROW``: a bool,
  str, None or wider int, whose ``(ctx, code, value)`` went to the side list ``others``
  just before the row (the row holds 0).

A side entry is appended before its row and taken after the rows, so the first *k* side
entries belong to the *k* marked rows taken (entries are matched by ctx or taken whole, so
two threads interleaving their appends cannot mix values up).

No numpy here: the hot path imports this module.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Sequence

from florgit.codec.values import INT64_MAX, INT64_MIN

START = struct.Struct("<qqqd")
RECORD_FLOAT = struct.Struct("<qqd")
RECORD_INT = struct.Struct("<qqq")
START_SIZE = START.size  # 32
RECORD_SIZE = RECORD_FLOAT.size  # 24
HAS_ITEM = 1 << 62  # in a start row's loop_id: its item is in the side list
FLOAT_ROW, INT_ROW, OTHER_ROW = 0, 1, 2  # api/_hotpath.c packs the first two itself: change both
KIND_BITS = 2
KIND_MASK = (1 << KIND_BITS) - 1


def append_record(buf: bytearray, others: list, ctx: int, code: int, value: object) -> None:
    """Append one record of any stored scalar type (``code``: the name's, kind bits clear)."""
    kind = type(value)
    if kind is float:
        buf += RECORD_FLOAT.pack(ctx, code, value)
    elif kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
        buf += RECORD_INT.pack(ctx, code | INT_ROW, value)
    else:
        others += (ctx, code | OTHER_ROW, value)  # before its row: see the module's text
        buf += RECORD_INT.pack(ctx, code | OTHER_ROW, 0)


def append_start(buf: bytearray, items: list, ctx: int, loop_id: int, iteration: int, item: object, t: float) -> None:
    """Append one iteration start; ``item`` None keeps none. (``Recorder.loop`` inlines this.)"""
    if item is None:
        buf += START.pack(ctx, loop_id, iteration, t)
    else:
        items += (ctx, item)
        buf += START.pack(ctx, loop_id | HAS_ITEM, iteration, t)


class NameTable:
    """The run's logged names and their codes (index << KIND_BITS)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}  # read by the hot path on every log call
        self.names: list[str] = []  # read by the flusher: a row's name is names[code >> KIND_BITS]
        self._lock = threading.Lock()  # registering is rare; two threads must not share an index

    def code_of(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            with self._lock:
                code = self.codes.get(name)
                if code is None:
                    self.names.append(name)  # first: a row never names a missing entry
                    code = self.codes[name] = (len(self.names) - 1) << KIND_BITS
        return code


# -- pure-Python reading, for replays (few rows) and tests ----------------------------------


def start_rows(buf: bytes | bytearray, items: Sequence) -> list[tuple]:
    """``(ctx, loop_id, iteration, item or None, t)`` per packed start, in order."""
    rows = list(START.iter_unpack(bytes(buf)))
    flagged = [ctx for ctx, loop_id, _i, _t in rows if loop_id & HAS_ITEM]
    if flagged == list(items[0::2]):  # in order, as one thread appends them
        side = iter(items[1::2])
        item_of = lambda ctx: next(side)  # noqa: E731
    else:  # two threads' loops interleaved their appends: match by ctx (unique per start)
        item_of = dict(zip(items[0::2], items[1::2])).get
    return [
        (ctx, loop_id & ~HAS_ITEM, iteration, item_of(ctx), t) if loop_id & HAS_ITEM else (ctx, loop_id, iteration, None, t)
        for ctx, loop_id, iteration, t in rows
    ]


def record_rows(buf: bytes | bytearray, others: Sequence, names: Sequence[str]) -> list[tuple]:
    """``(ctx, name, value)`` per packed record, in order."""
    data = bytes(buf)
    side = iter(zip(others[0::3], others[1::3], others[2::3]))
    out = []
    for (ctx, code, bits), (_c, _n, real) in zip(RECORD_INT.iter_unpack(data), RECORD_FLOAT.iter_unpack(data)):
        kind = code & KIND_MASK
        if kind == OTHER_ROW:
            ctx, code, value = next(side)
        else:
            value = real if kind == FLOAT_ROW else bits
        out.append((ctx, names[code >> KIND_BITS], value))
    return out


def pack_starts(rows: Iterable[tuple]) -> tuple[bytearray, list]:
    """``(ctx, loop_id, iteration, item or None, t)`` tuples, packed: (rows, items)."""
    buf, items = bytearray(), []
    for ctx, loop_id, iteration, item, t in rows:
        append_start(buf, items, ctx, loop_id, iteration, item, t)
    return buf, items


def pack_records(rows: Iterable[tuple]) -> tuple[bytearray, list, list[str]]:
    """``(ctx, name, value)`` tuples, packed: (rows, others, names)."""
    buf, others, table = bytearray(), [], NameTable()
    for ctx, name, value in rows:
        append_record(buf, others, ctx, table.code_of(name), value)
    return buf, others, table.names
