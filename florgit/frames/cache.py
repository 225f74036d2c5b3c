"""A local columnar cache of runs' decoded tables, so a query reads each run once.

Everything in it is derived from git objects and keyed by the run's tree id on the shadow
branch. That id fixes every byte the run's tables and replays hold, so an entry can never
be stale: a run changed by a replay, a pull or a rewrite has a new tree id and is read
from git again; a run set aside (``rm``) is simply not asked for. ``git gc`` repacks
objects without changing ids. The cache is never pushed and may be deleted at any time.

It lives in ``.git/flor/cache/v3/`` as segments: a folder of Arrow IPC files (``runs``:
one row per run with its tree id and the columns ``flor.runs()`` shows; ``records`` and
``loops``: the validated tables, each row placed in its run's loops (frames.placing),
rows of a run together, ``run`` numbering the segment's runs; ``lasts``: each run's last
value of each name) and ``sums`` (each file's CRC-32 and size, the record value columns
no record fills, and the record columns of one value (rank, kind, replayed), which
queries do not read back). A segment is written
under a temporary name and renamed into place, so two processes filling the cache at
once each publish whole segments (a run in two segments is read from the first). A
segment that fails its digest, or cannot be read, is deleted and its runs are read from
git again. A query reads the records of all the segments it needs together, a column at a
time (``_read_records``): each column one chunk, copied once, so 10M records are not held
twice on the way. When there are more than ``MAX_SEGMENTS``, the smaller half of them, and any
whose runs are mostly gone (replaced, removed), are merged into one, keeping live runs only.
Run listings (``flor.runs()``, ``git flor log``) read runs' metas, not their tables; what
they read is kept in listing segments (``lst-``: runs and last values only), which
queries for records never use.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING

import polars as pl

from florgit import envflags

if TYPE_CHECKING:
    from florgit.git import GitRepo  # loads pygit2: a cache hit does without it

CACHE_DIR = os.path.join("flor", "cache", "v3")  # v2: records carry rank; v3: records are placed, no iterations
TABLES = ("runs", "records", "loops", "lasts")
MAX_SEGMENTS = 16  # of each kind
BIG_SEGMENT_RECORDS = 1_000_000  # segments this big are merged only once most of their runs are gone
FULL, LISTING = "seg-", "lst-"  # segment folder prefixes: every table, or what run listings show
DISABLE_ENV = envflags.QUERY_CACHE


@dataclass
class Part:
    """Runs' stacked tables: ``run`` numbers them 0..n-1 in the order of ``runs``, and
    each run's rows are together, in that order, in every table."""

    runs: pl.DataFrame  # run, tree, run_id, ... (loader.meta_frame's columns)
    records: pl.DataFrame
    loops: pl.DataFrame
    lasts: pl.DataFrame  # run, name, kind, i, f, s: each run's last value of each name (run listings)


class QueryCache:
    def __init__(self, common_dir: str) -> None:
        self.dir = os.path.join(common_dir, CACHE_DIR)
        self._index: dict[bool, dict[str, tuple[str, int]]] = {}  # listing? -> tree -> (segment, run in it)

    @classmethod
    def open(cls, repo: GitRepo) -> QueryCache | None:
        return cls.open_at(repo.common_dir)

    @classmethod
    def open_at(cls, common_dir: str) -> QueryCache | None:
        """The cache of the repository whose common git dir is ``common_dir`` (None when off)."""
        if not envflags.enabled(DISABLE_ENV, True):
            return None
        return cls(common_dir)

    # -- reading -----------------------------------------------------------------------------
    def index(self, listing: bool = False) -> dict[str, tuple[str, int]]:
        """Where each cached run is: in full segments, or (``listing``) in any."""
        if listing not in self._index:
            index: dict[str, tuple[str, int]] = {}
            for segment in self._segments(FULL) + (self._segments(LISTING) if listing else []):
                try:
                    trees = _read(segment, "runs", columns=["tree"]).get_column("tree").to_list()
                except (OSError, pl.exceptions.PolarsError, ValueError):
                    _drop(segment)
                    continue
                for tree, at in zip(trees, zip(repeat(segment), range(len(trees)))):  # the first copy wins
                    index.setdefault(tree, at)
            self._index[listing] = index
        return self._index[listing]

    def load(self, trees: list[str], names: list[str] | None, listing: bool = False) -> Part | None:
        """The cached runs among ``trees``, in that order, as one part (records only of
        ``names`` when given; with ``listing``, no records or loops: what a run
        listing needs); None when none is cached. A damaged segment is dropped and its
        runs reported missing: the caller reads them from git."""
        index = self.index(listing)
        by_segment: dict[str, list[int]] = {}
        for tree in trees:
            if tree in index:
                segment, local = index[tree]
                by_segment.setdefault(segment, []).append(local)
        try:  # segments in the order of their first run in ``trees``: stacked, usually in order already
            part = _load_segments(list(by_segment.items()), names, listing)
        except (OSError, pl.exceptions.PolarsError, ValueError, KeyError) as exc:
            # One bad segment goes; a failure no one segment is blamed for (stacking them)
            # takes them all: the cache is derived, and their runs are read from git again.
            for segment in [exc.segment] if isinstance(exc, BadSegment) else list(by_segment):
                _drop(segment)
            self._index = {}
            return self.load(trees, names, listing)
        return in_order([part], trees) if part is not None else None

    def names(self) -> list[str]:
        """Every name any cached record has (for hints when a query asks for an unknown one)."""
        found: set[str] = set()
        for segment in self._segments(FULL):
            try:
                listed = _listed_names(json.loads(_read_bytes(os.path.join(segment, "sums"))))
                found.update(listed if listed is not None else pl.scan_ipc(os.path.join(segment, "records.arrow"))
                             .select(pl.col("name").unique()).collect().get_column("name").to_list())  # fmt: skip
            except (OSError, ValueError, pl.exceptions.PolarsError):
                continue
        return sorted(found)

    # -- writing -----------------------------------------------------------------------------
    def add(self, part: Part, live: set[str], listing_only: bool = False) -> None:
        """Publish ``part`` (runs read from git and checked) as a new segment: a full one,
        or with ``listing_only`` one of just what run listings show (runs and last values:
        a listing reads metas, not tables). Past ``MAX_SEGMENTS`` of a kind, merge them,
        keeping only runs of ``live`` trees (what replays, pulls and removals left behind
        goes) and, in listing segments, only runs no full segment has. Failing to write
        (a read-only .git) only costs speed."""
        if part.runs.height == 0:
            return
        kind = LISTING if listing_only else FULL
        try:
            if not os.path.isdir(self.dir):  # the first segment of this format: earlier formats' go
                _drop_old_formats(os.path.dirname(self.dir))
            self._publish(part, kind)
            segments = self._segments(kind)
            if len(segments) > MAX_SEGMENTS:
                live = live if kind == FULL else live - set(self.index())
                merging = _to_merge(segments, live)
                if merging:
                    self._compact(merging, live, kind)
        except OSError:
            pass
        self._index = {}

    def _publish(self, part: Part, kind: str) -> str:
        os.makedirs(self.dir, exist_ok=True)
        tmp = os.path.join(self.dir, f"tmp-{secrets.token_hex(8)}")
        os.mkdir(tmp)
        try:
            sums: dict = {}
            # Ids and counters that fit are stored as Int32: decoding 10M of them takes half as long.
            sums["narrow"] = [c for c in _NARROW if c in part.records.columns and _fits_int32(part.records.get_column(c))]
            for table in TABLES:
                path = os.path.join(tmp, f"{table}.arrow")
                frame = getattr(part, table)
                if table == "records":
                    frame = frame.with_columns(pl.col(sums["narrow"]).cast(pl.Int32))
                # LZ4: the mostly-null value columns and sequential ids shrink to little, so
                # checking and reading a segment touches a fraction of the bytes.
                frame.write_ipc(path, compression="lz4")
                sums[table] = _digest(path)
            # The names records hold, when few: a query for all of them filters no record.
            names = part.records.get_column("name").unique().to_list() if "name" in part.records.columns else []
            sums["names"] = sorted(names) if len(names) <= _MAX_LISTED_NAMES and sum(map(len, names)) <= _MAX_LISTED_CHARS else None
            # Record value columns no record of the segment fills (ints or text) are not read back.
            sums["null_records"] = [c for c in _SPARSE if c in part.records.columns and part.records.get_column(c).null_count() == part.records.height]
            # Record columns with one value in the whole segment (rank 0, one value type, nothing
            # replayed: most segments) are not read back either.
            sums["constant_records"] = _constant_columns(part.records)
            with open(os.path.join(tmp, "sums"), "w") as f:
                json.dump(sums, f)
            final = os.path.join(self.dir, f"{kind}{secrets.token_hex(8)}")
            os.rename(tmp, final)  # a segment appears whole or not at all
            return final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _compact(self, segments: list[str], live: set[str], kind: str) -> None:
        """Merge the segments' live runs into one (first copy of each tree, and none another
        segment of the kind keeps), then drop them."""
        seen = {t for other in self._segments(kind) if other not in segments for t in _trees(other)}
        parts = []
        for segment in segments:
            try:
                trees = _trees(segment)
                keep = [i for i, t in enumerate(trees) if t in live and t not in seen]
                seen.update(trees)
                loaded = _load_segments([(segment, keep)], None, kind == LISTING)  # every table it has
                if loaded is not None:
                    parts.append(loaded)
            except (OSError, pl.exceptions.PolarsError, ValueError, KeyError):  # BadSegment included
                continue
        merged = concat_parts(parts) if parts else None
        if merged is not None and merged.runs.height:
            self._publish(merged, kind)
        for segment in segments:
            _drop(segment)

    def _segments(self, kind: str) -> list[str]:
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.startswith(kind))
        except OSError:
            return []
        return [os.path.join(self.dir, n) for n in names]


EMPTY = pl.DataFrame({"run": pl.Series([], dtype=pl.UInt32)})  # a table of no rows, for parts without it


def in_order(parts: list[Part | None], trees: list[str]) -> Part | None:
    """The parts' runs as one part, in the order of ``trees`` (None when they hold none)."""
    parts = [p for p in parts if p is not None and p.runs.height]
    if not parts:
        return None
    merged = concat_parts(parts)
    position = {tree: i for i, tree in enumerate(merged.runs.get_column("tree").to_list())}
    return reorder(merged, [position[t] for t in trees if t in position])


def concat_parts(parts: list[Part]) -> Part:
    """Parts one after the other, ``run`` renumbered to follow. The parts are handed over:
    their records are taken (stacking them must not hold the records twice)."""
    if len(parts) == 1:
        return parts[0]
    offsets, total = [], 0
    for part in parts:
        offsets.append(total)
        total += part.runs.height

    def stack(table: str) -> pl.DataFrame:
        frames = [getattr(p, table).with_columns(pl.col("run") + pl.lit(o, dtype=pl.UInt32)) for p, o in zip(parts, offsets)]
        if len(frames) == 1:
            return frames[0]
        stacked = pl.concat(frames, how="diagonal_relaxed")  # records may lack item values
        if table != "records":
            return stacked
        # The big one: made one chunk a column at a time once nothing else holds the parts'.
        for p in parts:
            p.records = EMPTY
        frames.clear()
        return one_chunk_each(stacked)

    return Part(*(stack(t) for t in TABLES))


def reorder(part: Part, order: list[int]) -> Part:
    """Keep runs ``order`` (indexes into ``part.runs``) in that order, renumbered 0..n-1,
    each table's rows grouped by run in the new order."""
    if order == list(range(part.runs.height)):
        return part
    new_index = pl.Series([None] * part.runs.height, dtype=pl.UInt32)
    new_index = new_index.scatter(order, pl.Series(range(len(order)), dtype=pl.UInt32)) if order else new_index
    runs = part.runs.with_columns(new_index.alias("run")).filter(pl.col("run").is_not_null()).sort("run")

    def renumber(frame: pl.DataFrame) -> pl.DataFrame:
        mapped = frame.with_columns(pl.lit(new_index).gather(pl.col("run")).alias("run"))
        return mapped.filter(pl.col("run").is_not_null()).sort("run", maintain_order=True)

    return Part(runs, *(renumber(getattr(part, t)) for t in TABLES[1:]))


class BadSegment(ValueError):
    """A segment that cannot be read as its sums say: it is dropped, and its runs read from git."""

    def __init__(self, segment: str, why: str) -> None:
        super().__init__(f"{segment}: {why}")
        self.segment = segment


@contextmanager
def _blame(segment: str) -> Iterator[None]:
    try:
        yield
    except (OSError, pl.exceptions.PolarsError, ValueError, KeyError, TypeError) as exc:
        raise BadSegment(segment, str(exc)[:200]) from None


def _load_segments(items: list[tuple[str, list[int]]], names: list[str] | None, listing: bool = False) -> Part | None:
    """Runs ``wanted`` of each segment (``(segment, wanted)``, each's runs by their index in
    it), stacked in that order as one part; records only of ``names`` when given (none with
    ``listing``). Every file is checked against its digest first."""
    opened: list[tuple[str, dict, Part]] = []
    tables = ("runs", "lasts") if listing else TABLES
    digests = _digests([os.path.join(segment, f"{table}.arrow") for segment, _w in items for table in tables])
    for segment, _wanted in items:
        with _blame(segment):
            sums = json.loads(_read_bytes(os.path.join(segment, "sums")))
            for table in tables:
                found = digests[os.path.join(segment, f"{table}.arrow")]
                if isinstance(found, OSError):
                    raise found
                if found != sums[table]:
                    raise ValueError(f"{table} does not match its digest")
            small = Part(_read(segment, "runs"), EMPTY, EMPTY if listing else _read(segment, "loops"), _read(segment, "lasts"))
        opened.append((segment, sums, small))
    if not opened:
        return None
    whole = concat_parts([small for _s, _sums, small in opened])
    if not listing:
        offsets, total = [], 0
        for _segment, _sums, small in opened:
            offsets.append(total)
            total += small.runs.height
        whole.records = _read_records([(seg, sums, off) for (seg, sums, _p), off in zip(opened, offsets)], names)
    order, base = [], 0
    for (_segment, wanted), (_s, _sums, small) in zip(items, opened):
        order += [base + i for i in wanted]
        base += small.runs.height
    return reorder(whole, order)


def _read_records(segments: list[tuple[str, dict, int]], names: list[str] | None) -> pl.DataFrame:
    """The records of segments (``(segment, sums, run offset)``: ``run`` numbers continue
    from the segments before), only those of ``names`` when given, stacked a column at a
    time: each column is read from every segment, then copied into one chunk before the
    next is read. The files' batches come back as many chunks, which polars would otherwise
    align, copying the whole frame, when a column chunked otherwise joins it; copying it
    all at once would hold it twice. So each chunk is copied once, and the memory the small
    chunks took is what the next column reads into (10M records: ~0.5 GB less at the peak).
    A column every segment stores as Int32 (ids that fit) is stacked so and widened once."""
    plans = [_plan(segment, sums, offset, names) for segment, sums, offset in segments]
    schema = pl.concat([pl.DataFrame(schema=p.schema) for p in plans], how="diagonal_relaxed").schema  # widened
    columns, constants = [], {}
    for name, dtype in schema.items():
        values = {p.constants[name] if name in p.constants else None for p in plans if name not in p.schema or name in p.constants}
        if all(name not in p.schema or name in p.constants for p in plans) and len(values) == 1:
            constants[name] = pl.lit(values.pop(), dtype=dtype)  # never read: one value in every segment
            continue
        # Stored as Int32 in every segment: stacked as stored, widened once (one copy fewer).
        narrow = dtype == pl.Int64 and all(p.stored.get(name) == pl.Int32 and name not in p.constants for p in plans)
        stacked_as = pl.Int32 if narrow else dtype
        pieces = [p.column(name, stacked_as) for p in plans]
        column = pl.concat(pieces, rechunk=True) if len(pieces) > 1 else _one_chunk(pieces[0])
        del pieces
        columns.append(column.cast(dtype) if stacked_as != dtype else column)
        del column
    for p in plans:
        p.name_column = None
    frame = pl.DataFrame(columns)  # run, seq and the like are never constants: the frame has its height
    return frame.with_columns(expr.alias(c) for c, expr in constants.items()).select(list(schema)) if constants else frame


@dataclass
class _Plan:
    """How to read one segment's records: which rows, which columns as stored."""

    segment: str
    scan: pl.LazyFrame
    stored: dict[str, pl.DataType]  # as the file has them
    schema: dict[str, pl.DataType]  # as loaded: narrow ids widened back to Int64
    keep: pl.Series | None  # rows of the asked-for names, when the segment has others
    name_column: pl.Series | None  # read already, to pick those rows
    constants: dict[str, object]  # columns not read: their one value
    height: int
    offset: int  # added to ``run``

    def column(self, name: str, dtype: pl.DataType) -> pl.Series:
        with _blame(self.segment):
            if name not in self.schema or name in self.constants:
                return pl.repeat(self.constants.get(name), self.height, dtype=dtype, eager=True).alias(name)
            if name == "name" and self.name_column is not None:
                column = self.name_column
            else:
                read_as = dtype if dtype == self.stored[name] else self.schema[name]  # narrow, where asked so
                column = self.scan.select(pl.col(name).cast(read_as)).collect().to_series()
            column = column.filter(self.keep) if self.keep is not None else column
            if len(column) != self.height:
                raise ValueError(f"records column {name} has {len(column)} rows, not {self.height}")
            if name == "run" and self.offset:
                column = column + self.offset  # cast back to the stored type below
            return column.cast(dtype)


def _plan(segment: str, sums: dict, offset: int, names: list[str] | None) -> _Plan:
    with _blame(segment):
        path = os.path.join(segment, "records.arrow")
        scan = pl.scan_ipc(path)
        stored = pl.read_ipc_schema(path)
        for column, expected in _RECORD_TYPES.items():  # what every segment's records hold, as written
            expected = pl.Int32 if column in _NARROW and column in sums.get("narrow", []) else expected
            if column not in stored:
                raise ValueError(f"its records have no {column} column")
            if stored[column] != expected:
                raise ValueError(f"its records column {column} is {stored[column]}, not {expected}")
        narrow = [c for c in sums.get("narrow", []) if c in _NARROW and c != "lrow"]  # lrow: only summed into loop_row
        schema = {c: pl.Int64 if c in narrow else t for c, t in stored.items()}
        listed = _listed_names(sums)
        keep = name_column = None
        if names is not None and not (listed is not None and set(listed) <= set(names)):
            name_column = scan.select("name").collect().to_series()
            keep = name_column.is_in(names)  # only the asked-for names' rows are kept
        height = int(keep.sum()) if keep is not None else scan.select(pl.len()).collect().item()
        # Not read: columns no record fills are null, and with one name asked, ``name`` is it.
        constants: dict[str, object] = {c: None for c in sums.get("null_records", []) if c in _SPARSE and c in schema}
        constants.update(_listed_constants(sums))
        if names is not None and len(names) == 1:
            constants["name"] = names[0]
        return _Plan(segment, scan, dict(stored), schema, keep, name_column, constants, height, offset)


def one_chunk_each(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (handed over: its many-chunk columns are taken out) with each column in
    one chunk, copied a column at a time, so the copy holds one column twice, never the
    frame. Polars combines columns chunked alike, or constants, without copying; a frame
    chunked unlike a column added to it is aligned by copying it whole."""
    counts = dict(zip(frame.columns, frame.n_chunks("all")))
    order = frame.columns
    copied = []
    for name in [c for c in order if counts[c] > 1]:  # constants (one chunk) stay constants
        column = frame.drop_in_place(name)
        copied.append(_one_chunk(column))
        del column
    return frame.with_columns(copied).select(order) if copied else frame


def _one_chunk(column: pl.Series) -> pl.Series:
    return column.rechunk() if column.n_chunks() > 1 else column  # a constant (all-null) column stays one


_RECORD_TYPES = {
    "run": pl.UInt32, "rank": pl.UInt16, "seq": pl.Int64, "ctx": pl.Int64, "name": pl.String, "kind": pl.Int8,
    "i": pl.Int64, "f": pl.Float64, "s": pl.String, "replayed": pl.Boolean, "lrow": pl.Int64, "own_iteration": pl.Int64,
}  # fmt: skip
_SPARSE = ("i", "f", "s")  # record value columns often entirely null in a segment
_CONSTANT_RECORDS = {  # record columns often of one value in a segment, and what a value must be
    "rank": lambda v: type(v) is int and 0 <= v < 2**16,
    "kind": lambda v: type(v) is int and -(2**7) <= v < 2**7,
    "replayed": lambda v: type(v) is bool,
}
_NARROW = ("seq", "ctx", "lrow", "own_iteration")  # Int64 record columns stored as Int32 when they fit
_MAX_LISTED_NAMES = 256
_MAX_LISTED_CHARS = 16 * 1024  # sums stays well under what _read_bytes reads


def _fits_int32(column: pl.Series) -> bool:
    low, high = column.min(), column.max()
    return low is None or (low >= -(2**31) and high < 2**31)


def _constant_columns(records: pl.DataFrame) -> dict[str, object]:
    """``{column: value}`` for the columns of _CONSTANT_RECORDS that hold one value, no null."""
    out = {}
    for name in _CONSTANT_RECORDS:
        if name in records.columns and records.height:
            column = records.get_column(name)
            if column.null_count() == 0 and column.min() == column.max():
                out[name] = column[0]
    return out


def _listed_constants(sums: dict) -> dict[str, object]:
    """The constant record columns ``sums`` lists, those of the right type only."""
    listed = sums.get("constant_records")
    if not isinstance(listed, dict):
        return {}
    return {name: value for name, value in listed.items() if name in _CONSTANT_RECORDS and _CONSTANT_RECORDS[name](value)}


def _listed_names(sums: dict) -> list[str] | None:
    names = sums.get("names")
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _read(segment: str, table: str, columns: list[str] | None = None) -> pl.DataFrame:
    return pl.read_ipc(os.path.join(segment, f"{table}.arrow"), columns=columns)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(1 << 16)


def _digests(paths: list[str]) -> dict[str, str | OSError]:
    """Each file's :func:`_digest` (or the error reading it), several files at once: zlib
    and file reads let go of the GIL, and 100M records are ~2 GB of segments to check."""
    def one(path: str) -> str | OSError:
        try:
            return _digest(path)
        except OSError as exc:
            return exc

    big = sum(_size(p) for p in paths) >= _PARALLEL_DIGEST_BYTES
    if not big or len(paths) < 2:
        return {p: one(p) for p in paths}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(paths, pool.map(one, paths)))


_PARALLEL_DIGEST_BYTES = 64 * 1024 * 1024  # below this, threads cost more than they save


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _digest(path: str) -> str:
    """CRC-32 of the file and its size: catches a damaged file at ~1.5 GB/s (a query reads
    every byte it checks; the data is derived and local, so no adversary picks the bytes)."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return f"crc32:{crc:08x}:{size}"


def _to_merge(segments: list[str], live: set[str]) -> list[str]:
    """Which segments to merge: the smaller half and one more of those under
    BIG_SEGMENT_RECORDS (so their number halves), and any whose runs are mostly no
    longer live. A big segment (a long run's first query writes ~4M-record ones) is
    rewritten only once most of it is dead; there may then be more than MAX_SEGMENTS."""
    # Records by the runs' metas (a file size would rank segments by how well they compress).
    runs = {s: _runs_columns(s, ["tree", "records"]) for s in segments}
    size = {s: int(r.get_column("records").sum() or 0) if r is not None else 0 for s, r in runs.items()}
    small = sorted((s for s in segments if size[s] < BIG_SEGMENT_RECORDS), key=size.__getitem__)
    chosen = set(small[: len(small) // 2 + 1]) if len(small) > 1 else set()
    for s, r in runs.items():
        if r is not None and r.get_column("tree").is_in(list(live)).sum() * 2 < r.height:
            chosen.add(s)
    return [s for s in segments if s in chosen]


def _trees(segment: str) -> list[str]:
    runs = _runs_columns(segment, ["tree"])
    return runs.get_column("tree").to_list() if runs is not None else []


def _runs_columns(segment: str, columns: list[str]) -> pl.DataFrame | None:
    """Columns of a segment's runs table; None when it cannot be read (compaction skips it)."""
    try:
        return _read(segment, "runs", columns=columns)
    except (OSError, pl.exceptions.PolarsError, ValueError):
        return None


def _drop_old_formats(parent: str) -> None:
    """Delete caches an earlier florgit wrote (``v1``, ``v2``): nothing reads them now."""
    current = os.path.basename(CACHE_DIR)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if re.fullmatch(r"v[0-9]{1,4}", name) and name != current:
            _drop(os.path.join(parent, name))


def _drop(segment: str) -> None:
    """Take a damaged segment away (renamed first, so no reader sees half of it)."""
    gone = f"{segment}.gone-{secrets.token_hex(4)}"
    try:
        os.rename(segment, gone)
    except OSError:
        return
    shutil.rmtree(gone, ignore_errors=True)
