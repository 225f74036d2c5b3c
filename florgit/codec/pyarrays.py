"""Arrow arrays from Python lists without ``pyarrow.array``.

``pyarrow.array`` asks whether its input is a pandas object, and that question imports
pandas whenever pandas is installed: ~0.5 s of CPU in the flusher thread, and at
interpreter exit (a short run's first flush) an import that fails and loses the run
("can't register atexit after shutdown"). Building the buffers with numpy asks nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_NUMPY = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
          pa.float32(): np.float32, pa.float64(): np.float64}  # fmt: skip
_MAX_STRING_BYTES = 2**31 - 1  # pa.string() has 32-bit offsets


def array(values: Sequence, typ: pa.DataType) -> pa.Array:
    """``values`` (Python scalars or None) as an Arrow array of ``typ``."""
    n = len(values)
    if typ == pa.string():
        return _strings(values, n)
    if typ == pa.bool_():
        return array(values, pa.int8()).cast(pa.bool_())
    dtype = _NUMPY[typ]
    if None not in values:
        return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(np.array(values, dtype=dtype))])
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    data = np.array([0 if v is None else v for v in values], dtype=dtype)
    return pa.Array.from_buffers(typ, n, [_bitmap(valid), pa.py_buffer(data)], null_count=n - int(valid.sum()))


def _strings(values: Sequence, n: int) -> pa.Array:
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n), out=offsets[1:])
    if offsets[-1] > _MAX_STRING_BYTES:
        raise ValueError(f"{offsets[-1]:,} bytes of text in one batch; at most {_MAX_STRING_BYTES:,} fit")
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))]
    if None in values:
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        return pa.Array.from_buffers(pa.string(), n, [_bitmap(valid), *buffers[1:]], null_count=n - int(valid.sum()))
    return pa.Array.from_buffers(pa.string(), n, buffers)


def _bitmap(valid: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
