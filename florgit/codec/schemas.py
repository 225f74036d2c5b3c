"""The columns of florgit's stored tables, described without pyarrow.

One source of truth: ``codec.arrow`` builds its pyarrow schemas from these, and
``codec.ipc_bounds`` checks stored streams against them without importing pyarrow (a
query loads polars only). Types are Arrow's names for the few flat types florgit writes.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")

Columns = tuple[tuple[str, str], ...]  # (name, type), type one of TYPES

TYPES = ("int8", "int16", "int32", "int64", "float32", "float64", "utf8", "bool")

# A value is a kind tag plus one typed column per kind (see codec.values).
_VALUE: Columns = (("kind", "int8"), ("i", "int64"), ("f", "float64"), ("s", "utf8"))

RECORDS: Columns = (("ctx", "int64"), ("name", "utf8"), *_VALUE)
LOOPS: Columns = (("loop_id", "int64"), ("parent", "int64"), ("depth", "int16"), ("loop", "utf8"))
STARTS: Columns = (("ctx", "int64"), ("loop_id", "int64"), ("iteration", "int64"), *_VALUE, ("t", "float64"))
ENDS: Columns = (("ctx", "int64"), ("t", "float64"))


# The rows of each table as tuples (the hot path packs starts and records: codec.packed).
LoopRow = tuple[int, int, int, str]  # loop_id, parent ctx, depth, loop name
StartRow = tuple[int, int, int, object, float]  # ctx, loop_id, iteration, item value, t
EndRow = tuple[int, float]  # ctx, t
RecordRow = tuple[int, str, object]  # ctx, name, value


class Tables(NamedTuple, Generic[T]):
    """One thing per stored table (rows, batches, streams), named rather than indexed."""

    loops: T
    starts: T
    ends: T
    records: T


def names(columns: Columns) -> list[str]:
    return [name for name, _type in columns]
