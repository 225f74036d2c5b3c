"""The checkpoint manifest as one typed model, parsed from git bytes at one boundary.

A manifest may come from a teammate's push, so :meth:`Manifest.parse` checks everything
code above it relies on before any of it is used: field types, known dtypes (never an
object dtype), shapes that agree with ``nbytes``, ``nbytes`` that agree with the chunk
count, chunk ids and sizes, and state trees that only refer to arrays that exist. What
it cannot check from the JSON alone (the chunks' content, memory to hold them) is
checked by the loader in ``store.checkpoints``.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from florgit.codec import tensors
from florgit.errors import CheckpointError, InvalidDataError, StoreError
from florgit.validation import MAX_TEXT, Fields, integer, load_json, name, name_problem, number, run_id, text

FORMAT_VERSION = 1
KINDS = ("torch", "numpy")
MAX_DIMS = 64  # numpy's limit; torch's is the same in practice
MAX_DEPTH = 64  # nesting of a state tree: decode recurses, and real state_dicts are shallow
MAX_LABEL = 160  # of an array's tree path in messages

# Canonical names (what str(dtype) gives) of the torch dtypes a checkpoint can hold, with
# their item sizes, so a manifest is checked without importing torch. Quantized and
# sub-byte placeholder dtypes have no plain byte layout and are refused.
TORCH_ITEMSIZE = {
    "bool": 1, "uint8": 1, "int8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
    "int64": 8, "uint64": 8, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
    "complex32": 4, "complex64": 8, "complex128": 16, "float8_e4m3fn": 1,
    "float8_e4m3fnuz": 1, "float8_e5m2": 1, "float8_e5m2fnuz": 1, "float8_e8m0fnu": 1,
}  # fmt: skip
# numpy's dtype.str of plain-data dtypes only: an object dtype ("|O") can never match.
_NUMPY_DTYPE = re.compile(
    r"\A[<>|=]?(?:(?P<code>b|[iu]|f|c)(?P<size>[0-9]{1,2})"
    r"|(?P<flex>[SUV])(?P<width>[1-9][0-9]{0,8})"
    r"|[Mm]8(?:\[[0-9]{0,6}(?:Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\])?)\Z"
)
_NUMPY_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8, 12, 16), "c": (8, 16, 24, 32)}
_TENSOR, _ARRAY, _TUPLE, _DICT, _DTYPE = "__tensor__", "__ndarray__", "__tuple__", "__dict__", "__dtype__"
_TAGS = (_TENSOR, _ARRAY, _TUPLE, _DICT, _DTYPE)
_HEX40 = re.compile(r"\A[0-9a-f]{40}\Z")
_DTYPE_NAME = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")


class ManifestError(CheckpointError, InvalidDataError):
    """A checkpoint manifest read from git is malformed or hostile."""

    def __init__(self, where: str, why: str, run: str | None = None) -> None:
        self.what, self.why, self.run_id = where, why, run
        StoreError.__init__(
            self,
            f"{where}: the checkpoint manifest is not valid ({why}); refusing to load it. "
            "Other checkpoints still load; `git flor verify` lists every bad one",
        )


@dataclass(frozen=True)
class Chunk:
    id: str  # git blob id of the zstd frame
    size: int  # compressed bytes (the blob's size)
    raw: int  # bytes it must decompress to: CHUNK_BYTES, or what is left for the last one


@dataclass(frozen=True)
class ManifestArray:
    index: int
    path: str  # where a state tree holds it ("model.0.weight"); "" if none refers to it
    kind: str  # "torch" or "numpy"
    dtype: str
    shape: tuple[int, ...]
    device: str
    nbytes: int
    sha1: str  # of the raw bytes
    chunks: tuple[Chunk, ...]

    @property
    def label(self) -> str:
        return f"array {self.index}" + (f" ({self.path})" if self.path else "")


@dataclass(frozen=True)
class Manifest:
    run: str
    loop: str
    loop_id: int
    boundary: int
    phase: str  # "start" or "after:<inner loop>"
    time: float | None
    types: dict[str, str]  # object name -> its class, as recorded
    objects: dict  # object name -> encoded state tree (see codec.statetree)
    grads: dict  # object name -> {parameter name: tensor reference}
    rng: dict
    arrays: tuple[ManifestArray, ...]
    variables: dict = field(default_factory=dict)  # loop-carried variable -> encoded value
    inexact: dict = field(default_factory=dict)  # loop-carried variable not stored -> its type

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    @property
    def stored(self) -> int:
        return sum(c.size for a in self.arrays for c in a.chunks)

    @property
    def chunk_ids(self) -> tuple[str, ...]:
        return tuple(c.id for a in self.arrays for c in a.chunks)

    @classmethod
    def parse(cls, data: bytes, where: str, run: str | None = None) -> Manifest:
        """The manifest in ``data``, or :class:`ManifestError` naming ``where`` and the field."""
        try:
            return _parse(data, where, run)
        except InvalidDataError as exc:
            raise ManifestError(where, f"{exc.what}: {exc.why}", run) from None
        except _Invalid as exc:
            raise ManifestError(where, str(exc), run) from None


class _Invalid(ValueError):
    """A structural problem found outside Fields (trees, cross-field checks)."""


def _parse(data: bytes, where: str, run: str | None) -> Manifest:
    top = Fields(load_json(data, "manifest", run), "manifest", run)
    version = top.get("format", lambda v: v)
    if type(version) is not int or version != FORMAT_VERSION:
        raise _Invalid(f"format {str(version)[:20]}, this florgit reads format {FORMAT_VERSION}")
    raw_arrays = _field(top, "arrays", _list_problem)
    paths: dict[int, tuple[str, str]] = {}  # array index -> (tree path, kind the tree expects)
    trees = {}
    for part in ("objects", "grads", "rng", "variables"):
        trees[part] = _field(top, part, _trees_problem, default={})
        _walk(trees[part], "" if part == "objects" else part, 0, len(raw_arrays), paths)
    for key in (*trees["variables"], *_field(top, "inexact", _text_map_problem, default={})):
        if not key.isidentifier() or keyword.iskeyword(key):
            raise _Invalid(f"{key[:40]!r} is not a Python variable name")
    _check_grads(trees["grads"])
    arrays = tuple(_array(raw, i, paths, run) for i, raw in enumerate(raw_arrays))
    for index, (path, kind) in paths.items():
        if arrays[index].kind != kind:
            raise _Invalid(f"{path} refers to array {index} as {kind}, but it is {arrays[index].kind}")
    return Manifest(
        run=top.get("run", run_id),
        loop=top.get("loop", name),
        loop_id=top.get("loop_id", integer),
        boundary=top.get("boundary", integer),
        phase=_field(top, "phase", _phase_problem, default="start"),
        time=top.get("time", number, default=None, optional=True),
        types=_field(top, "types", _text_map_problem, default={}),
        objects=trees["objects"],
        grads=trees["grads"],
        rng=trees["rng"],
        arrays=arrays,
        variables=trees["variables"],
        inexact=_field(top, "inexact", _text_map_problem, default={}),
    )


def _field(f: Fields, key: str, problem: Callable[[Any], str | None], **default: Any) -> Any:
    """Field ``key``, refused with ``problem(value)`` when that says what is wrong."""
    value = f.get(key, lambda v: v, **default)
    why = problem(value) if key in f.raw else None
    if why:
        raise f.fail(key, why)
    return value


def _list_problem(value: Any) -> str | None:
    return None if type(value) is list else f"must be a list, not {type(value).__name__}"


def _trees_problem(value: Any) -> str | None:
    if type(value) is not dict or (len(value) == 1 and next(iter(value)) in _TAGS):
        return "must be a JSON object of named state trees"
    return None


def _phase_problem(value: Any) -> str | None:
    if value == "start":
        return None
    inner = value.removeprefix("after:") if type(value) is str else None
    if inner is None or inner == value or name_problem(inner):
        return "must be 'start' or 'after:<loop name>'"
    return None


def _text_map_problem(value: Any) -> str | None:
    if type(value) is not dict or not all(type(v) is str and len(v) <= MAX_TEXT for v in value.values()):
        return "must be a JSON object of strings"
    return None


# -- state trees -----------------------------------------------------------------------
_SCALARS = frozenset({int, float, bool, str, type(None)})

def _walk(node: Any, path: str, depth: int, n_arrays: int, paths: dict[int, tuple[str, str]]) -> None:
    """Check a state tree's shape (what codec.statetree.decode accepts) and note where
    each array reference sits."""
    if depth > MAX_DEPTH:
        raise _Invalid(f"{path or 'a state tree'} nests deeper than {MAX_DEPTH} levels")
    if type(node) is list:
        if _SCALARS.issuperset(map(type, node)):
            return  # scalars only (an RNG state's 625 ints): nothing to check inside
        for i, item in enumerate(node):
            _walk(item, _join(path, i), depth + 1, n_arrays, paths)
    elif type(node) is dict and len(node) == 1 and next(iter(node)) in _TAGS:
        _walk_tagged(*next(iter(node.items())), path, depth, n_arrays, paths)
    elif type(node) is dict:
        for key, item in node.items():
            _walk(item, _join(path, key), depth + 1, n_arrays, paths)


def _walk_tagged(tag: str, value: Any, path: str, depth: int, n_arrays: int, paths: dict) -> None:
    if tag in (_TENSOR, _ARRAY):
        if type(value) is not int or not 0 <= value < n_arrays:
            raise _Invalid(f"{path or 'a state tree'} refers to array {str(value)[:20]}, which the manifest does not have")
        kind = "torch" if tag == _TENSOR else "numpy"
        if paths.setdefault(value, (path, kind))[1] != kind:
            raise _Invalid(f"{path} refers to array {value} as {kind}, and {paths[value][0]} as the other kind")
    elif tag == _TUPLE:
        if type(value) is not list:
            raise _Invalid(f"{path}: a tuple must be a list")
        _walk(value, path, depth + 1, n_arrays, paths)
    elif tag == _DICT:
        if type(value) is not list or not all(type(p) is list and len(p) == 2 and _key_ok(p[0]) for p in value):
            raise _Invalid(f"{path}: a dict must be a list of [key, value] pairs with scalar or tuple keys")
        for key, item in value:
            _walk(item, _join(path, _key_text(key)), depth + 1, n_arrays, paths)
    elif type(value) is not str or not _DTYPE_NAME.match(value):  # decode asks torch for it by name
        raise _Invalid(f"{path}: {str(value)[:40]!r} is not a torch dtype name")


def _key_ok(key: Any) -> bool:
    """Keys must decode to something hashable: a scalar, or a tuple/list of scalars."""
    if type(key) is dict and len(key) == 1 and _TUPLE in key:
        key = key[_TUPLE]
    if type(key) is list:
        return all(_scalar(k) for k in key)
    return _scalar(key)


def _scalar(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _key_text(key: Any) -> str:
    return str(key[_TUPLE] if type(key) is dict else key)


def _join(path: str, key: Any) -> str:
    return (f"{path}.{key}" if path else str(key))[:MAX_LABEL]


def _check_grads(grads: dict) -> None:
    """restore() assigns each one to ``param.grad``: object -> {parameter: tensor}."""
    for obj, params in grads.items():
        if type(params) is not dict or (len(params) == 1 and next(iter(params)) in _TAGS):
            raise _Invalid(f"grads.{obj} must map parameter names to tensors")
        for pname, ref in params.items():
            if type(ref) is not dict or list(ref) != [_TENSOR]:
                raise _Invalid(f"grads.{obj}.{pname} must be a tensor")


# -- arrays ----------------------------------------------------------------------------
def _array(raw: Any, index: int, paths: dict[int, tuple[str, str]], run: str | None) -> ManifestArray:
    path = paths.get(index, ("", ""))[0]
    label = f"array {index}" + (f" ({path})" if path else "")
    f = Fields(raw, label, run)
    kind = _field(f, "kind", lambda v: None if v in KINDS else f"must be one of {', '.join(KINDS)}")
    dtype = f.get("dtype", lambda v: text(v, 40))
    itemsize = _itemsize(kind, dtype)
    if itemsize is None:
        raise f.fail("dtype", f"{dtype!r} is not a {kind} dtype florgit stores (plain numbers, bool, bytes; never objects)")
    shape = tuple(_field(f, "shape", _shape_problem))
    nbytes = f.get("nbytes", integer)
    if nbytes != math.prod(shape) * itemsize:
        raise f.fail("nbytes", f"is {nbytes:,}, but shape {list(shape)} of {dtype} holds {math.prod(shape) * itemsize:,} bytes")
    return ManifestArray(
        index=index,
        path=path,
        kind=kind,
        dtype=dtype,
        shape=shape,
        device=f.get("device", lambda v: text(v, 64), default="cpu"),
        nbytes=nbytes,
        sha1=_field(f, "sha1", _hex40_problem),
        chunks=_chunks(f, nbytes, label, run),
    )


def _hex40_problem(value: Any) -> str | None:
    return None if type(value) is str and _HEX40.match(value) else "must be 40 lowercase hex digits"


def _shape_problem(value: Any) -> str | None:
    if type(value) is not list or len(value) > MAX_DIMS:
        return f"must be a list of at most {MAX_DIMS} sizes"
    if not all(type(d) is int and 0 <= d <= 2**62 for d in value):
        return "must hold non-negative integers"
    return None


def _itemsize(kind: str, dtype: str) -> int | None:
    if kind == "torch":
        return TORCH_ITEMSIZE.get(dtype)
    m = _NUMPY_DTYPE.match(dtype)
    if m is None:
        return None
    if m["code"]:
        size = int(m["size"])
        return size if size in _NUMPY_SIZES[m["code"]] else None
    if m["flex"]:
        return int(m["width"]) * (4 if m["flex"] == "U" else 1)
    return 8  # datetime64 / timedelta64


def _chunks(f: Fields, nbytes: int, label: str, run: str | None) -> tuple[Chunk, ...]:
    """Every chunk but the last holds exactly CHUNK_BYTES raw bytes (an empty array: one
    empty chunk), so the count is fixed by nbytes and each chunk's raw size is known."""
    listed = _field(f, "chunks", _list_problem)
    step = tensors.CHUNK_BYTES
    expected = max(1, -(-nbytes // step))
    if len(listed) != expected:
        raise f.fail("chunks", f"lists {len(listed)} chunks, but {nbytes:,} bytes take {expected}")
    out = []
    for j, raw in enumerate(listed):
        size = min(step, nbytes - j * step)
        c = Fields(raw, f"{label} chunk {j}", run)
        out.append(Chunk(id=_field(c, "id", _hex40_problem), size=c.get("size", lambda v: integer(v, 0, _compress_bound(size))), raw=size))
    return tuple(out)


def _compress_bound(raw: int) -> int:
    """zstd never makes a frame bigger than this (ZSTD_compressBound plus frame headers)."""
    return raw + (raw >> 8) + (128 * 1024 >> 11) + 1024
