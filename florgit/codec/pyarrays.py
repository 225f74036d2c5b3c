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
    if typ == pa.bool_():  # bit-packed; Array.cast would import pyarrow.compute
        if None not in values:
            return pa.Array.from_buffers(typ, n, [None, bitmap(np.array(values, dtype=bool))])
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        bits = bitmap(np.array([bool(v) for v in values], dtype=bool))
        return pa.Array.from_buffers(typ, n, [bitmap(valid), bits], null_count=n - int(valid.sum()))
    dtype = _NUMPY[typ]
    if None not in values:
        return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(np.fromiter(values, dtype, count=n))])
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    data = np.array([0 if v is None else v for v in values], dtype=dtype)
    return pa.Array.from_buffers(typ, n, [bitmap(valid), pa.py_buffer(data)], null_count=n - int(valid.sum()))


def filled(value: int, n: int, typ: pa.DataType) -> pa.Array:
    """``n`` copies of one integer."""
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(np.full(n, value, dtype=_NUMPY[typ]))])


def from_numpy(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A null-free numpy array as an Arrow array of ``typ``."""
    data = np.ascontiguousarray(values, dtype=_NUMPY[typ])
    return pa.Array.from_buffers(typ, len(data), [None, pa.py_buffer(data)])


def _strings(values: Sequence, n: int) -> pa.Array:
    distinct = set(values)
    if len(distinct) * 8 < n and None not in distinct:  # logged names: a few, repeated
        return _repeated_strings(values, list(distinct), n)
    return _plain_strings(values, n)


_COMPARE_NAMES = 4  # up to this many distinct strings, codes come from numpy comparisons
_FEW_NAMES = 64  # longer name tables: only the names a batch uses are encoded
_PAD_BYTES = 64  # longest string laid out padded rather than joined


def _repeated_strings(values: Sequence, distinct: list, n: int) -> pa.Array:
    """A few distinct strings repeated: each row's code, then the strings of the codes."""
    if len(distinct) == 1:
        codes = np.zeros(n, dtype=np.intp)
    elif len(distinct) <= _COMPARE_NAMES:
        objects = np.array(values, dtype=object)
        codes = np.zeros(n, dtype=np.intp)
        for k, v in enumerate(distinct[1:], 1):
            codes[objects == v] = k
    else:
        code = {v: k for k, v in enumerate(distinct)}
        codes = np.fromiter(map(code.__getitem__, values), dtype=np.intp, count=n)
    return strings_of_codes(codes, distinct)


def strings_of_codes(codes: np.ndarray, table: Sequence[str]) -> pa.Array:
    """A string array whose row r is ``table[codes[r]]``, its bytes gathered in numpy
    (joining a million short strings costs ~40 ns a row): each row's string as a
    fixed-size item of the widest's width, then, for names of several widths, the padding
    dropped by a mask gathered the same way (25,000 rows: one width ~0.1 ms, several ~0.7)."""
    n = len(codes)
    if not n:
        return from_parts(b"", np.zeros(0, np.int64), 0)
    if len(table) > _FEW_NAMES:  # a long name table: only the names these rows use are encoded
        used = np.flatnonzero(np.bincount(codes, minlength=len(table)))
        remap = np.zeros(len(table), dtype=np.intp)
        remap[used] = np.arange(len(used))
        codes, table = remap[codes], [table[i] for i in used.tolist()]
    encoded = [v.encode() for v in table]
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    widest = int(sizes.max())
    if int(sizes.min()) == widest:  # one width (one name, most often)
        if not widest:
            return from_offsets(b"", np.zeros(n + 1, dtype=np.int64), n)
        data = np.frombuffer(b"".join(encoded), np.dtype((np.void, widest)))[codes].tobytes()
        return from_offsets(data, np.arange(0, (n + 1) * widest, widest, dtype=np.int64), n)
    lengths = sizes[codes]
    if widest > _PAD_BYTES:
        return from_parts(b"".join(map(encoded.__getitem__, codes.tolist())), lengths, n)
    item = np.dtype((np.void, widest))
    padded = np.frombuffer(b"".join(e.ljust(widest, b"\0") for e in encoded), item)[codes].view(np.uint8)
    kept = np.frombuffer(b"".join(b"\1" * len(e) + b"\0" * (widest - len(e)) for e in encoded), item)[codes].view(np.bool_)
    return from_parts(padded[kept].tobytes(), lengths, n)


def from_parts(data, lengths: np.ndarray, n: int, validity: list | None = None, nulls: int = 0) -> pa.Array:
    """A string array from its bytes (any buffer) and each row's length."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return from_offsets(data, offsets, n, validity, nulls)


def from_offsets(data, offsets: np.ndarray, n: int, validity: list | None = None, nulls: int = 0) -> pa.Array:
    """A string array from its bytes and its ``n + 1`` offsets (int64, checked to fit int32)."""
    if offsets[-1] > _MAX_STRING_BYTES:
        raise ValueError(f"{offsets[-1]:,} bytes of text in one batch; at most {_MAX_STRING_BYTES:,} fit")
    return pa.Array.from_buffers(pa.string(), n, [*(validity or [None]), pa.py_buffer(offsets.astype(np.int32)), data if isinstance(data, pa.Buffer) else pa.py_buffer(data)], null_count=nulls)


def _plain_strings(values: Sequence, n: int) -> pa.Array:
    encoded = [b"" if v is None else v.encode() for v in values]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    if None in values:
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        return from_parts(b"".join(encoded), lengths, n, [bitmap(valid)], n - int(valid.sum()))
    return from_parts(b"".join(encoded), lengths, n)


def view(arr: pa.Array) -> np.ndarray:
    """A null-free numeric array as a numpy view (``Array.to_numpy`` imports pandas)."""
    dtype = _NUMPY[arr.type]
    if not len(arr):
        return np.empty(0, dtype=dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))[arr.offset :]


def bitmap(valid: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
