"""Arrow encodings of a run's records and loop contexts.

A record is ``(ctx, name, value)``: the loop context it was logged in (0 = run level),
its name, and its value stored as a kind tag plus one typed column per kind. Contexts
are loop iterations: ``ctx, parent, depth, loop, iteration``, the loop item when it is a
scalar, and start/end times in seconds since the run started.

While a run goes, batches are appended to Arrow IPC *streams* (readable up to the last
complete batch after a kill); a finished run is stored as IPC *files* with zstd buffers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from florgit.codec.values import BOOL, FLOAT, INT, KIND_OF_TYPE, STR, fits_int64

VALUE_FIELDS = [
    pa.field("kind", pa.int8()),
    pa.field("i", pa.int64()),
    pa.field("f", pa.float64()),
    pa.field("s", pa.string()),
]
RECORD_SCHEMA = pa.schema(
    [pa.field("ctx", pa.int64()), pa.field("name", pa.string()), *VALUE_FIELDS]
)
# One row per loop event: a start row (is_end false) when an iteration begins and an end
# row when it finishes; finished runs fold them into one row with t_start and t_end.
EVENT_SCHEMA = pa.schema(
    [
        pa.field("ctx", pa.int64()),
        pa.field("parent", pa.int64()),
        pa.field("depth", pa.int16()),
        pa.field("loop", pa.string()),
        pa.field("iteration", pa.int64()),
        *VALUE_FIELDS,
        pa.field("t", pa.float64()),
        pa.field("is_end", pa.bool_()),
    ]
)
CONTEXT_SCHEMA = pa.schema(
    [
        pa.field("ctx", pa.int64()),
        pa.field("parent", pa.int64()),
        pa.field("depth", pa.int16()),
        pa.field("loop", pa.string()),
        pa.field("iteration", pa.int64()),
        *VALUE_FIELDS,
        pa.field("t_start", pa.float64()),
        pa.field("t_end", pa.float64()),
    ]
)
_WRITE_OPTIONS = ipc.IpcWriteOptions(compression="zstd")


def value_columns(values: Sequence[object]) -> list[pa.Array]:
    """Split Python scalars into ``kind, i, f, s`` columns, keeping each value's type."""
    n = len(values)
    types = set(map(type, values))
    if len(types) == 1:
        (only,) = types
        kind = KIND_OF_TYPE[only]
        kinds = pa.array([kind] * n, pa.int8())
        i = f = s = None
        if kind in (INT, BOOL):
            if kind == INT and not all(map(fits_int64, values)):  # type: ignore[arg-type]
                return value_columns([_big_int(v) for v in values])
            i = pa.array(values, pa.bool_()).cast(pa.int64()) if kind == BOOL else pa.array(values, pa.int64())
        elif kind == FLOAT:
            f = pa.array(values, pa.float64())
        elif kind == STR:
            s = pa.array(values, pa.string())
        return [kinds, _or_nulls(i, pa.int64(), n), _or_nulls(f, pa.float64(), n), _or_nulls(s, pa.string(), n)]
    return _mixed_value_columns(values)


def _mixed_value_columns(values: Sequence[object]) -> list[pa.Array]:
    kinds, ints, floats, strs = [], [], [], []
    for v in values:
        t = type(v)
        if t is int and not fits_int64(v):  # type: ignore[arg-type]
            v, t = _big_int(v), str
        k = KIND_OF_TYPE[t]
        kinds.append(k)
        ints.append(int(v) if k in (INT, BOOL) else None)  # type: ignore[arg-type]
        floats.append(v if k == FLOAT else None)
        strs.append(v if k == STR else None)
    return [
        pa.array(kinds, pa.int8()),
        pa.array(ints, pa.int64()),
        pa.array(floats, pa.float64()),
        pa.array(strs, pa.string()),
    ]


def _big_int(v: object) -> object:
    # Integers beyond 64 bits are kept exactly, as their decimal text.
    return str(v) if type(v) is int and not fits_int64(v) else v


def _or_nulls(arr: pa.Array | None, typ: pa.DataType, n: int) -> pa.Array:
    return arr if arr is not None else pa.nulls(n, typ)


def record_batch(records: Sequence[tuple[int, str, object]]) -> pa.RecordBatch:
    """Build a record batch from ``(ctx, name, value)`` tuples."""
    if not records:
        return pa.RecordBatch.from_pylist([], RECORD_SCHEMA)
    ctxs, names, values = _columns(records, 3)
    cols = [pa.array(ctxs, pa.int64()), pa.array(names, pa.string()), *value_columns(values)]
    return pa.RecordBatch.from_arrays(cols, schema=RECORD_SCHEMA)


def _columns(rows: Sequence[tuple], width: int) -> list[list]:
    # Transposes rows into columns; ~6x faster than zip(*rows) on a million rows.
    return [list(map(itemgetter(k), rows)) for k in range(width)]


def event_batch(events: Sequence[tuple]) -> pa.RecordBatch:
    """Build a loop-event batch from ``(ctx, parent, depth, loop, iteration, value, t, is_end)``."""
    if not events:
        return pa.RecordBatch.from_pylist([], EVENT_SCHEMA)
    ctx, parent, depth, loop, iteration, values, t, is_end = _columns(events, 8)
    cols = [
        pa.array(ctx, pa.int64()),
        pa.array(parent, pa.int64()),
        pa.array(depth, pa.int16()),
        pa.array(loop, pa.string()),
        pa.array(iteration, pa.int64()),
        *value_columns(values),
        pa.array(t, pa.float64()),
        pa.array(is_end, pa.bool_()),
    ]
    return pa.RecordBatch.from_arrays(cols, schema=EVENT_SCHEMA)


def fold_events(events: pa.Table) -> pa.Table:
    """Fold start/end loop events into one context row per iteration."""
    starts = events.filter(pc.invert(events["is_end"]))
    ends = events.filter(events["is_end"]).select(["ctx", "t"]).rename_columns(["ctx", "t_end"])
    starts = starts.drop_columns(["is_end"]).rename_columns(
        [c if c != "t" else "t_start" for c in starts.column_names if c != "is_end"]
    )
    joined = starts.join(ends, "ctx", join_type="left outer")
    return joined.select(CONTEXT_SCHEMA.names).cast(CONTEXT_SCHEMA).sort_by("ctx")


class StreamAppender:
    """Appends batches to an Arrow IPC stream file, flushed to the OS after each batch."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self._file = open(path, "ab")
        self._writer = ipc.new_stream(self._file, schema)

    def append(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)
            self._file.flush()

    def close(self) -> None:
        self._writer.close()
        self._file.close()


def read_stream(path: str, schema: pa.Schema) -> pa.Table:
    """Read every complete batch of a spooled stream; a torn tail (a kill) is ignored."""
    batches: list[pa.RecordBatch] = []
    try:
        with open(path, "rb") as f:
            reader = ipc.open_stream(f)
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
    except (OSError, pa.ArrowInvalid, pa.ArrowException):
        pass
    return pa.Table.from_batches(batches, schema=schema)


def to_file_bytes(table: pa.Table) -> bytes:
    """Serialise a finished table as a zstd-compressed Arrow IPC file."""
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema, options=_WRITE_OPTIONS) as writer:
        writer.write_table(table.combine_chunks())
    return sink.getvalue().to_pybytes()


def from_file_bytes(data: bytes) -> pa.Table:
    return ipc.open_file(pa.BufferReader(data)).read_all()


def concat(tables: Iterable[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else schema.empty_table()


__all__ = [
    "RECORD_SCHEMA",
    "EVENT_SCHEMA",
    "CONTEXT_SCHEMA",
    "record_batch",
    "event_batch",
    "fold_events",
    "StreamAppender",
    "read_stream",
    "to_file_bytes",
    "from_file_bytes",
    "concat",
]
