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
value of each name) and ``sums`` (each file's CRC-32 and size, and the record value
columns no record fills, which queries do not read back). A segment is written
under a temporary name and renamed into place, so two processes filling the cache at
once each publish whole segments (a run in two segments is read from the first). A
segment that fails its digest, or cannot be read, is deleted and its runs are read from
git again. When there are more than ``MAX_SEGMENTS``, the smaller half of them, and any
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
from dataclasses import dataclass

import polars as pl

from florgit import envflags
from florgit.git import GitRepo

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
    def __init__(self, repo: GitRepo) -> None:
        self.dir = os.path.join(repo.common_dir, CACHE_DIR)
        self._index: dict[bool, dict[str, tuple[str, int]]] = {}  # listing? -> tree -> (segment, run in it)

    @classmethod
    def open(cls, repo: GitRepo) -> QueryCache | None:
        if not envflags.enabled(DISABLE_ENV, True):
            return None
        return cls(repo)

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
                for i, tree in enumerate(trees):
                    index.setdefault(tree, (segment, i))
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
        parts = []
        for segment, wanted in by_segment.items():
            try:
                parts.append(_load_segment(segment, wanted, names, listing))
            except (OSError, pl.exceptions.PolarsError, ValueError, KeyError):
                _drop(segment)
                self._index = {}
                return self.load(trees, names, listing)
        return in_order(parts, trees)

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
                parts.append(_load_segment(segment, keep, None, kind == LISTING))  # every table it has
            except (OSError, pl.exceptions.PolarsError, ValueError, KeyError):
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
    """Parts one after the other, ``run`` renumbered to follow."""
    offsets, total = [], 0
    for part in parts:
        offsets.append(total)
        total += part.runs.height

    def stack(table: str) -> pl.DataFrame:
        frames = [getattr(p, table).with_columns(pl.col("run") + pl.lit(o, dtype=pl.UInt32)) for p, o in zip(parts, offsets)]
        return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]  # records may lack item values

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


def _load_segment(segment: str, wanted: list[int], names: list[str] | None, listing: bool = False) -> Part:
    sums = json.loads(_read_bytes(os.path.join(segment, "sums")))
    needed = ("runs", "lasts") if listing else TABLES
    for table in needed:
        if _digest(os.path.join(segment, f"{table}.arrow")) != sums[table]:
            raise ValueError(f"{segment}: {table} does not match its digest")
    runs, lasts = _read(segment, "runs"), _read(segment, "lasts")
    if listing:
        return reorder(Part(runs, EMPTY, EMPTY, lasts), wanted)
    records = _read_records(os.path.join(segment, "records.arrow"), sums, names)
    return reorder(Part(runs, records, _read(segment, "loops"), lasts), wanted)


def _read_records(path: str, sums: dict, names: list[str] | None) -> pl.DataFrame:
    """A segment's records (only those of ``names`` when given), read a column at a time
    and each made one chunk before the next is read: the file's batches come back as many
    chunks, which polars would otherwise align, copying, at each column a query combines,
    and copying the whole frame at once would hold it twice (10M records: 0.8 GB at the
    peak instead of 1.3 GB, and faster)."""
    schema = pl.read_ipc_schema(path)
    scan = pl.scan_ipc(path)
    listed = _listed_names(sums)
    keep = name_column = None
    if names is not None and not (listed is not None and set(listed) <= set(names)):
        name_column = scan.select("name").collect().to_series()
        keep = name_column.is_in(names)  # only the asked-for names' rows are kept
    narrow = [c for c in sums.get("narrow", []) if c in _NARROW and c != "lrow"]  # lrow: only summed into loop_row
    empty = [c for c in sums.get("null_records", []) if c in _SPARSE]  # not read: a constant column of nulls
    columns = []
    for name in schema:
        if name in empty:
            continue
        if name == "name" and name_column is not None:
            column = name_column
        else:
            column = scan.select(pl.col(name).cast(pl.Int64) if name in narrow else pl.col(name)).collect().to_series()
        if keep is not None:
            column = column.filter(keep)
        columns.append(column.rechunk() if column.n_chunks() > 1 else column)
        del column
    frame = pl.DataFrame(columns)
    return frame.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in empty) if empty else frame


_SPARSE = ("i", "f", "s")  # record value columns often entirely null in a segment
_NARROW = ("seq", "ctx", "lrow", "own_iteration")  # Int64 record columns stored as Int32 when they fit
_MAX_LISTED_NAMES = 256
_MAX_LISTED_CHARS = 16 * 1024  # sums stays well under what _read_bytes reads


def _fits_int32(column: pl.Series) -> bool:
    low, high = column.min(), column.max()
    return low is None or (low >= -(2**31) and high < 2**31)


def _listed_names(sums: dict) -> list[str] | None:
    names = sums.get("names")
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _read(segment: str, table: str, columns: list[str] | None = None) -> pl.DataFrame:
    return pl.read_ipc(os.path.join(segment, f"{table}.arrow"), columns=columns)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(1 << 16)


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
