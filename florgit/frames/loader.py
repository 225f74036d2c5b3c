"""Loading every run's tables from the shadow branch into polars frames.

Runs are numbered (``run`` column, UInt32) so joins never compare run-id strings; the
run id itself lives in the ``runs`` frame. Where each record sits in its run's loops
(its iteration, item value and loop instance) is worked out once, as runs are read from
git (frames.placing), and cached with the records: queries never read iterations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from florgit.codec import ipc_bounds, schemas
from florgit.errors import FlorgitWarning, InvalidDataError, RunInProgressError, StoreError, noting_warnings
from florgit.frames import listed as listed_memo
from florgit.frames import placing
from florgit.frames.cache import Part, QueryCache, in_order
from florgit.frames.loaded import Loaded, Marks, absent_names, assemble, runs_frame
from florgit.store import consistency, curation, layout
from florgit.store import runs as store_runs
from florgit.store.consistency import per_run
from florgit.store.curation import Curation
from florgit.store.meta import RunMeta
from florgit.store.recovery import open_recovered
from florgit.store.replays import read_replays
from florgit.validation import memory_budget

if TYPE_CHECKING:
    from florgit.git import GitRepo  # loads pygit2: a cache hit does without it

# Cached with each record: where it sits (placing.RECORD_PLACE, and placing.OWN_ITEM
# where some loop item has a value). Iterations themselves are not cached: no query reads
# them once records are placed (replay planning reads iterations from git).
_CACHED_RECORD_COLUMNS = ["run", "rank", "seq", "ctx", "name", "kind", "i", "f", "s", "replayed", *placing.RECORD_PLACE]
_CACHED_LOOP_COLUMNS = ["run", "loop_id", "parent", "depth", "loop", *placing.LOOP_PLACE]
LAST_COLUMNS = ["run", "name", "kind", "i", "f", "s"]


def metas_of(repo: GitRepo, stored: list[store_runs.StoredRun]) -> list[tuple[store_runs.StoredRun, RunMeta]]:
    """These runs with their validated metas (a run that fails is left out, warned)."""
    listed = []
    with repo.unverified_reads():
        for run in stored:
            checked = _CHECKED.get(run.tree)
            try:
                listed.append((run, checked[0] if checked else store_runs.read_meta(repo, run)))
            except StoreError as exc:
                left_out(run.run_id, exc)
    return listed


def runs_frame_from(repo: GitRepo, meta: pl.DataFrame) -> pl.DataFrame:
    """The runs frame from meta columns (``meta_frame``'s, or the query cache's)."""
    return runs_frame(meta, marks_of(curation.state(repo)))


def marks_of(curated: dict[str, Curation]) -> Marks:
    """The tags and notes of curated runs, as the runs frame shows them."""
    return {run_id: (c.tags, c.note) for run_id, c in curated.items() if c.tags or c.note}


# Runs this process has validated, by run tree id (content-addressed, so what passed once
# passes again): their meta and each table's decoded size. Later queries skip re-checking.
_CHECKED: dict[str, tuple[RunMeta, dict[str, int]]] = {}
_CHECKED_MAX = 200_000


@dataclass
class _RunTables:
    meta: RunMeta
    records: pl.DataFrame  # the run's own records, then the values replays added
    starts: pl.DataFrame
    loops: pl.DataFrame
    own: int  # how many of ``records`` the run logged itself
    # Tables checked but not decoded yet: decoded with the rest of the batch's (_decode_pending).
    pending: dict[str, tuple[bytes, ipc_bounds.StreamParts]] | None = None


def load(repo_path: str | None = None, names: list[str] | None = None) -> Loaded:
    """Every run's tables (records only of ``names`` when given): runs already in the
    query cache (frames.cache) come from there, the others are read from git, checked,
    and added to it. (Queries ask frames.listed first: when the cache holds every run the
    last listing named, and the refs still say the same, they need not come here.)"""
    repo = open_recovered(repo_path)
    key_before = listed_memo.key(repo)
    listed = store_runs.list_runs(repo)
    curated, curated_whole = noting_warnings(lambda: curation.state(repo))
    cache = QueryCache.open(repo)
    cached = cache.load([r.tree for r in listed], names) if cache is not None else None
    have = set(cached.runs.get_column("tree").to_list()) if cached is not None else set()
    budget = [memory_budget()]
    live, order = {r.tree for r in listed}, [r.tree for r in listed]
    parts: list[Part] = []
    seen: set[str] = set()  # names the runs read from git logged (for hints, when there is no cache)
    batch: list[_RunTables] = []
    trees: list[str] = []

    def settle() -> None:
        """Check, place and cache the runs read so far, keeping only what the query asks for:
        a sweep's first query holds one batch of raw tables at a time, not all of them."""
        for k, exc in sorted(_decode_pending(batch).items(), reverse=True):
            left_out(batch[k].meta.run_id, exc)
            del batch[k], trees[k]
        part = _checked_part(batch, trees)
        if cache is not None and part.runs.height:
            cache.add(part, live)
        elif part.records.height:
            seen.update(part.records.get_column("name").unique().to_list())
        if names is not None:
            part.records = part.records.filter(pl.col("name").is_in(names))
        parts.append(part)
        batch.clear()
        trees.clear()

    in_batch = 0  # records in ``batch``
    with repo.unverified_reads():  # Arrow decoding checks structure; `git flor verify` checks hashes
        for run in listed:
            if run.tree in have:
                continue
            try:
                batch.append(read_run(repo, run, budget, batched=True))
                trees.append(run.tree)
            except StoreError as exc:  # one bad run never breaks the others
                left_out(run.run_id, exc)
                continue
            in_batch += batch[-1].own if batch[-1].pending else batch[-1].records.height
            if in_batch >= FILL_BATCH_RECORDS:
                settle()
                in_batch = 0
    settle()  # the last batch, or an empty part with every column when nothing was read
    whole = in_order([cached, *parts], order) or parts[-1]  # the listing's order
    absent = absent_names(whole, names, cache, seen)
    marks = marks_of(curated)
    if cache is not None and curated_whole:
        listed_memo.keep(repo, key_before, order, marks)
    return assemble(whole, marks, absent)


FILL_BATCH_RECORDS = 4_000_000  # runs read from git are checked, placed and cached in batches of about this many records


def _checked_part(read: list[_RunTables], trees: list[str]) -> Part:
    """``read`` (runs of ``trees``) stacked and checked together, as one part; a run that
    fails a check is left out, warned."""
    while True:
        tables = _stack(read)
        bad = _inconsistent_runs(*tables)
        if not bad:
            return _fresh_part(read, trees, *tables)
        for idx, why in bad.items():
            left_out(read[idx].meta.run_id, InvalidDataError(f"run {read[idx].meta.run_id}", why, read[idx].meta.run_id))
        read = [r for i, r in enumerate(read) if i not in bad]
        trees = [t for i, t in enumerate(trees) if i not in bad]


def _fresh_part(read: list[_RunTables], trees: list[str], records, starts, loops, rec_offsets, start_offsets, loop_offsets) -> Part:
    """Runs just read from git as one part: each record numbered within its run (``seq``),
    marked when a replay added it, and placed in its run's loops (frames.placing)."""
    run = pl.col("run")
    records, loops = placing.place(records, starts, loops, start_offsets, loop_offsets)
    records = records.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) - per_run(rec_offsets, run)).alias("seq"),
    )
    records = records.with_columns((pl.col("seq") >= per_run([r.own for r in read], run)).alias("replayed"))
    meta = meta_frame([r.meta for r in read], trees)
    # A run's last values are rank 0's, as its meta.json's are (run listings show either).
    lasts = records.filter(pl.col("rank") == 0).group_by("run", "name", maintain_order=True).last().select(LAST_COLUMNS)
    own_items = [c for c in placing.OWN_ITEM if c in records.columns]
    return Part(meta, records.select(*_CACHED_RECORD_COLUMNS, *own_items), loops.select(_CACHED_LOOP_COLUMNS), lasts)


def read_run(repo, run: store_runs.StoredRun, budget: list[int], batched: bool = False) -> _RunTables:
    """One run's meta and tables, each validated; the declared size of every table is
    charged to ``budget`` before anything is decoded. The tables of a multi-process run's
    other ranks follow rank 0's, their context and loop ids shifted past the ranks before,
    so context ids stay 1..n in the run; ``rank`` tells whose each record is. With
    ``batched``, a plain run's tables are checked but left for ``_decode_pending``."""
    files = store_runs.read_files(repo, run, (layout.META_FILE, *_STORED_COLUMNS), budget[0])
    checked = _CHECKED.get(run.tree)
    # Checked by an earlier query of this process: the tree id fixes every byte; only sizes are charged.
    meta, sizes = checked if checked is not None else (store_runs.meta_from(files[layout.META_FILE], run.run_id), {})
    parts = read_replays(repo, run)
    if meta.world_size == 1 and not parts:  # the common run: decoded later, with its batch's
        pending = {name: _checked_stream(files[name], name, run.run_id, budget) for name in _STORED_COLUMNS}
        if checked is None and len(_CHECKED) < _CHECKED_MAX:
            _CHECKED[run.tree] = (meta, {name: p.declared for name, (_d, p) in pending.items()})
        tables = _RunTables(meta, _UNREAD, _UNREAD, _UNREAD, pending[layout.RECORDS][1].rows, pending)
        bad = {} if batched else _decode_pending([tables])
        if bad:
            raise bad[0]
        return tables
    frames = _decode_tables(files, "", run.run_id, budget, sizes)
    records, starts, loops = frames[layout.RECORDS].with_columns(_RANK0), frames[layout.STARTS], frames[layout.LOOPS]
    if meta.world_size > 1:
        records, starts, loops = _with_ranks(repo, run, meta, budget, sizes, records, starts, loops)
    if checked is None and len(_CHECKED) < _CHECKED_MAX:
        _CHECKED[run.tree] = (meta, sizes)
    own = records.height
    if parts:
        added = _additions(records, frames[layout.STARTS].height, parts, run.run_id, budget)
        records = pl.concat([records, *(a.with_columns(_RANK0) for a in added)])
    return _RunTables(meta, records, starts, loops, own)


_RANK0 = pl.lit(0, dtype=pl.UInt16).alias("rank")
_UNREAD = pl.DataFrame()  # a table of a _RunTables still pending
_TABLE_OF = {layout.RECORDS: "records", layout.STARTS: "starts", layout.LOOPS: "loops"}  # _RunTables field of each


_JOIN_MAX_BYTES = 1 << 20  # tables decoded together with others' (many small runs: 90 us a decode saved each)
_SLICE_SEARCH_LIMIT = 1_000_000  # slices x chunks past which one copy into one chunk is cheaper


def _ranked(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Records of a run's own process carry rank 0 (other ranks' are read apart)."""
    return frame.with_columns(_RANK0) if name == layout.RECORDS else frame


def _checked_stream(data: bytes, name: str, run_id: str, budget: list[int]) -> tuple[bytes, ipc_bounds.StreamParts]:
    """A stored table checked (its declared size charged to ``budget``), not decoded."""
    parts = ipc_bounds.check_stream_parts(data, _SCHEMAS[name], budget[0], f"{name} of run {run_id}", run_id)
    budget[0] -= parts.declared
    return data, parts


def _decode_pending(batch: list[_RunTables]) -> dict[int, StoreError]:
    """Decode the pending tables of ``batch``: each table of all its runs as one stream
    (those whose schema messages are the same bytes, as florgit writes them; a table over
    _JOIN_MAX_BYTES alone), split into runs by the row counts the checks found. Where a
    joined stream fails to decode (a corrupt compressed buffer passes the checks), its
    runs are decoded one by one: those that fail are returned (by position), the others
    are decoded."""
    waiting = [k for k, r in enumerate(batch) if r.pending is not None]
    bad: dict[int, StoreError] = {}
    for name, field_name in _TABLE_OF.items():
        groups: dict[bytes | int, list[int]] = {}
        for k in (k for k in waiting if k not in bad):  # a run already refused is not decoded further
            data, parts = batch[k].pending[name]
            # A long table decodes alone: joining would only copy its bytes once more.
            groups.setdefault(data[: parts.batches] if len(data) <= _JOIN_MAX_BYTES else k, []).append(k)
        for members in groups.values():
            for k, frame in zip(members, _decoded_runs(name, [batch[k] for k in members], bad, members)):
                if frame is not None:
                    setattr(batch[k], field_name, frame)
    for k in waiting:
        batch[k].pending = None
    return bad


def _decoded_runs(name: str, runs: list[_RunTables], bad: dict[int, StoreError], positions: list[int]) -> list[pl.DataFrame | None]:
    columns = _STORED_COLUMNS[name]
    streams = [r.pending[name] for r in runs]
    try:
        whole = ipc_bounds.decode_checked(ipc_bounds.joined_stream(streams), columns, name)
        rows = [parts.rows for _d, parts in streams]
        if whole.height == sum(rows):
            if len(rows) * whole.n_chunks() > _SLICE_SEARCH_LIMIT:  # a slice searches the chunks (one per batch)
                whole = whole.rechunk()  # 10,000 small runs: 165 us a slice before
            whole = _ranked(whole, name)
            out, at = [], 0
            for n in rows:
                out.append(whole.slice(at, n))
                at += n
            return out
    except InvalidDataError:
        pass  # one of them is bad: find which
    out = []
    for r, k, (data, _parts) in zip(runs, positions, streams):
        try:
            out.append(_ranked(ipc_bounds.decode_checked(data, columns, f"{name} of run {r.meta.run_id}", r.meta.run_id), name))
        except InvalidDataError as exc:
            bad.setdefault(k, exc)
            out.append(None)
    return out


def _decode_tables(files: dict[str, bytes], prefix: str, run_id: str, budget: list[int], sizes: dict[str, int]) -> dict[str, pl.DataFrame]:
    """The tables among ``files``, checked and decoded; ``sizes`` (by ``prefix`` + name)
    holds the decoded sizes of tables checked before, and gets the others'."""
    frames = {}
    for name in _STORED_COLUMNS:
        key = prefix + name
        if key not in sizes:
            frames[name] = _read(files[name], name, run_id, budget)
            sizes[key] = frames[name].estimated_size()
            continue
        if sizes[key] > budget[0]:
            raise InvalidDataError(f"{key} of run {run_id}", "it needs more memory than is free", run_id)
        budget[0] -= sizes[key]
        frames[name] = ipc_bounds.decode_checked(files[name], _STORED_COLUMNS[name], name, run_id)
    return frames


def _with_ranks(repo, run, meta: RunMeta, budget, sizes, records, starts, loops):
    """Rank 0's tables followed by every other rank's that checks out (a bad rank is left
    out, warned; the run keeps the others)."""
    all_records, all_starts, all_loops = [records], [starts], [loops]
    n_starts, n_loops = starts.height, loops.height
    for rank, files in store_runs.rank_files(repo, run, meta, (layout.META_FILE, *_STORED_COLUMNS), None, budget[0]):
        try:
            frames = _decode_tables(files, f"{layout.RANKS_DIR}/{rank}/", run.run_id, budget, sizes)
            wrong = consistency.one_run(frames[layout.RECORDS], frames[layout.STARTS], frames[layout.LOOPS])
            if wrong:
                raise InvalidDataError(f"rank {rank} of run {run.run_id}", wrong[0], run.run_id)
        except StoreError as exc:
            warnings.warn(f"florgit: rank {rank} of run {run.run_id} is left out: {exc}", FlorgitWarning, stacklevel=4)
            continue
        ctx, loop_id, parent = pl.col("ctx"), pl.col("loop_id"), pl.col("parent")
        shift = lambda col, by: pl.when(col > 0).then(col + by).otherwise(col)  # noqa: E731  (0: run level)
        all_records.append(frames[layout.RECORDS].with_columns(shift(ctx, n_starts), pl.lit(rank, dtype=pl.UInt16).alias("rank")))
        all_starts.append(frames[layout.STARTS].with_columns(ctx + n_starts, loop_id + n_loops))
        all_loops.append(frames[layout.LOOPS].with_columns(loop_id + n_loops, shift(parent, n_starts)))
        n_starts += frames[layout.STARTS].height
        n_loops += frames[layout.LOOPS].height
    return pl.concat(all_records), pl.concat(all_starts), pl.concat(all_loops)


def _additions(records: pl.DataFrame, n_starts: int, parts: list, run_id: str, budget: list[int]) -> list[pl.DataFrame]:
    """Replay values that may join the run: a replay only adds names, it never replaces
    what the run recorded (nor logs names it does not declare, nor in contexts the run
    does not have). A bad part loses its own values, never the run."""
    recorded = set(records.get_column("name").unique().to_list())
    out = []
    for part in parts:
        frame = _read(part.records, layout.RECORDS, run_id, budget)
        allowed = set(part.names) - recorded
        kept = frame.filter(pl.col("name").is_in(list(allowed)) & pl.col("ctx").is_between(0, n_starts))
        if kept.height != frame.height:
            warnings.warn(
                f"florgit: replay {part.replay_id}/{part.part} of run {run_id} holds values for names the run "
                "recorded itself, names it does not declare, or contexts the run does not have; those values "
                "are ignored (`git flor verify` lists them)", FlorgitWarning, stacklevel=4,
            )  # fmt: skip
        out.append(kept)
    return out


def left_out(run_id: str, exc: Exception) -> None:
    if isinstance(exc, RunInProgressError):
        return  # other ranks ended before rank 0: the run shows up when rank 0 stores it
    why = str(exc) if isinstance(exc, InvalidDataError) else f"{exc}; set it aside with `git flor rm {run_id}`"
    warnings.warn(f"florgit: run {run_id} is left out: {why}", FlorgitWarning, stacklevel=3)


def _stack(read: list[_RunTables]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, list[int], list[int], list[int]]:
    records, rec_offsets = _concat_with_run([r.records for r in read], [*_STORED_COLUMNS[layout.RECORDS], "rank"])
    starts, start_offsets = _concat_with_run([r.starts for r in read], _STORED_COLUMNS[layout.STARTS])
    loops, loop_offsets = _concat_with_run([r.loops for r in read], _STORED_COLUMNS[layout.LOOPS])
    return records, starts, loops, rec_offsets, start_offsets, loop_offsets


def _inconsistent_runs(records, starts, loops, _rec_offsets, start_offsets, loop_offsets) -> dict[int, str]:
    return consistency.inconsistent_runs(
        records, starts, loops, _heights(start_offsets, starts.height), _heights(loop_offsets, loops.height)
    )


def _heights(offsets: list[int], total: int) -> list[int]:
    return [b - a for a, b in zip(offsets, [*offsets[1:], total])]


# The tables a query reads (not ``ends``), each with every stored column.
_SCHEMAS = {name: layout.TABLE_COLUMNS[name] for name in (layout.RECORDS, layout.STARTS, layout.LOOPS)}
_STORED_COLUMNS = {name: schemas.names(columns) for name, columns in _SCHEMAS.items()}


def _concat_with_run(frames: list[pl.DataFrame], columns: list[str]) -> tuple[pl.DataFrame, list[int]]:
    """All runs' frames stacked, with a ``run`` column, and each run's first row."""
    heights = [f.height for f in frames]
    offsets = [0]
    for h in heights[:-1]:
        offsets.append(offsets[-1] + h)
    if not frames:
        return pl.DataFrame(schema={"run": pl.UInt32, **{c: _EMPTY_TYPES[c] for c in columns}}), []
    stacked = pl.concat(frames, rechunk=False)
    run = pl.Series("run", range(len(frames)), dtype=pl.UInt32).repeat_by(pl.Series(heights, dtype=pl.UInt32)).explode()
    return stacked.with_columns(run.alias("run")), offsets


def _read(data: bytes, name: str, run_id: str, budget: list[int]) -> pl.DataFrame:
    """A stored table, its declared size checked against what memory allows before it
    is decoded (without pyarrow: a query loads polars only). One decode per table: every
    extra eager polars call per run costs ~0.5 ms."""
    _checked_stream(data, name, run_id, budget)
    return ipc_bounds.decode_checked(data, _STORED_COLUMNS[name], f"{name} of run {run_id}", run_id)


_EMPTY_TYPES = {
    "run": pl.UInt32, "seq": pl.Int64, "ctx": pl.Int64, "name": pl.String, "kind": pl.Int8, "i": pl.Int64,
    "f": pl.Float64, "s": pl.String, "rank": pl.UInt16, "loop_id": pl.Int64, "iteration": pl.Int64,
    "t": pl.Float64, "parent": pl.Int64, "depth": pl.Int16, "loop": pl.String,
}  # fmt: skip


def meta_frame(metas: list[RunMeta], trees: list[str]) -> pl.DataFrame:
    """What the runs frame shows of each run's meta.json, with the run's tree id: as the
    query cache stores it."""
    return pl.DataFrame(
        {
            "run": pl.Series(range(len(metas)), dtype=pl.UInt32),
            "run_id": pl.Series([m.run_id for m in metas], dtype=pl.String),
            "start": pl.Series([m.start for m in metas], dtype=pl.String),
            "end": pl.Series([m.end for m in metas], dtype=pl.String),
            "script": pl.Series([m.script for m in metas], dtype=pl.String),
            "status": pl.Series([m.status for m in metas], dtype=pl.String),
            "user_commit": pl.Series([m.user_commit for m in metas], dtype=pl.String),
            "branch": pl.Series([m.branch for m in metas], dtype=pl.String),
            "author": pl.Series([m.author or None for m in metas], dtype=pl.String),
            "dirty": pl.Series([m.dirty for m in metas], dtype=pl.Boolean),
            "records": pl.Series([m.records for m in metas], dtype=pl.Int64),
            "checkpoints": pl.Series([m.checkpoints for m in metas], dtype=pl.Int64),
            "world_size": pl.Series([m.world_size for m in metas], dtype=pl.Int32),
            "args": pl.Series([list(m.args) for m in metas], dtype=pl.List(pl.String)),
            "tree": pl.Series(trees, dtype=pl.String),
        }
    )
