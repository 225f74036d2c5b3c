"""Loading every run's tables from the shadow branch into polars frames.

Runs are numbered (``run`` column, UInt32) so joins never compare run-id strings; the
run id itself lives in the ``runs`` frame. Every record also gets ``sidx``, the row of
its loop iteration in the concatenated ``starts`` frame: context ids are handed out in
order from 1 in each run, so the row is ``offset + ctx - 1`` and no join is needed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import polars as pl

from florgit.git import open_repo
from florgit.store import layout
from florgit.store import runs as store_runs
from florgit.store.recovery import recover_abandoned
from florgit.store.replays import read_replays

_RECORD_COLUMNS = ["run", "seq", "ctx", "name", "kind", "i", "f", "s", "sidx", "replayed"]
_START_COLUMNS = ["run", "ctx", "loop_id", "loop_row", "iteration", "kind", "i", "f", "s", "t"]
_LOOP_COLUMNS = ["run", "loop_id", "parent", "depth", "loop", "parent_sidx"]


@dataclass
class Loaded:
    runs: pl.DataFrame  # run, run_id, start_time, end_time, script, status, ... one row per run
    records: pl.DataFrame  # run, seq, ctx, name, kind, i, f, s, sidx, replayed
    starts: pl.DataFrame  # run, ctx, loop_id, loop_row, iteration, kind, i, f, s, t: one per iteration
    loops: pl.DataFrame  # run, loop_id, parent, depth, loop, parent_sidx: one row per loop instance


def load_runs(repo_path: str | None = None) -> pl.DataFrame:
    """The ``runs`` frame alone: reads each run's meta.json and no tables."""
    repo = open_repo(repo_path, require_workdir=False)
    recover_abandoned(repo)
    with repo.unverified_reads():
        metas = [store_runs.read_meta(repo, run) for run in store_runs.list_runs(repo)]
    return _runs_frame(metas)


def load(repo_path: str | None = None, names: list[str] | None = None) -> Loaded:
    repo = open_repo(repo_path, require_workdir=False)
    recover_abandoned(repo)  # runs of killed processes show up in the next query
    metas: list = []
    originals: list[int] = []  # each run's own record count (replayed ones follow)
    tables: dict[str, list] = {layout.RECORDS: [], layout.STARTS: [], layout.LOOPS: []}
    with repo.unverified_reads():  # Arrow decoding checks structure; `git flor verify` checks hashes
        for run in store_runs.list_runs(repo):
            files = store_runs.read_files(repo, run, (layout.META_FILE, *tables))
            metas.append(store_runs.meta_from(files[layout.META_FILE]))
            for name, frames in tables.items():
                frames.append(_read(files[name], _STORED_COLUMNS[name]))
            originals.append(tables[layout.RECORDS][-1].height)
            replayed = [_read(data, _STORED_COLUMNS[layout.RECORDS]) for _m, data in read_replays(repo, run)]
            if replayed:  # replay values come after the run's own, so they win per context
                tables[layout.RECORDS][-1] = pl.concat([tables[layout.RECORDS][-1], *replayed])
    # Per-run columns are added once over the concatenation: per-run frame operations
    # cost more than the data when runs are many.
    records, rec_offsets = _concat_with_run(tables[layout.RECORDS], _STORED_COLUMNS[layout.RECORDS])
    starts, start_offsets = _concat_with_run(tables[layout.STARTS], _STORED_COLUMNS[layout.STARTS])
    loops, loop_offsets = _concat_with_run(tables[layout.LOOPS], _STORED_COLUMNS[layout.LOOPS])
    run = pl.col("run")
    records = records.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) - _per_run(rec_offsets, run)).alias("seq"),
        pl.when(pl.col("ctx") > 0).then(pl.col("ctx") - 1 + _per_run(start_offsets, run)).alias("sidx"),
    )
    records = records.with_columns((pl.col("seq") >= _per_run(originals, run)).alias("replayed"))
    if names is not None:
        records = records.filter(pl.col("name").is_in(names))
    # Loop ids, like context ids, count from 1 in each run: the loop's row is arithmetic.
    starts = starts.with_columns((pl.col("loop_id") - 1 + _per_run(loop_offsets, run)).alias("loop_row"))
    starts = _checked_rows(starts, "loop_row", ["run", "loop_id"], loops)
    loops = loops.with_columns(
        pl.when(pl.col("parent") > 0).then(pl.col("parent") - 1 + _per_run(start_offsets, run)).alias("parent_sidx")
    )
    loops = _checked_rows(loops, "parent_sidx", ["run", "parent"], starts.rename({"ctx": "parent"}))
    return Loaded(
        runs=_runs_frame(metas),
        records=records.select(_RECORD_COLUMNS),
        starts=starts.select(_START_COLUMNS),
        loops=loops.select(_LOOP_COLUMNS),
    )


_STORED_COLUMNS = {
    layout.RECORDS: ["ctx", "name", "kind", "i", "f", "s"],
    layout.STARTS: ["ctx", "loop_id", "iteration", "kind", "i", "f", "s", "t"],
    layout.LOOPS: ["loop_id", "parent", "depth", "loop"],
}


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


def _checked_rows(frame: pl.DataFrame, column: str, keys: list[str], target: pl.DataFrame) -> pl.DataFrame:
    """Check arithmetic row numbers against ``target``'s keys; where ids came out of order
    (loops started by several threads), find the rows with a join instead."""
    rows = frame.get_column(column)
    found = target.select(pl.col(k).gather(rows) for k in keys)
    expected = frame.select(pl.when(rows.is_not_null()).then(pl.col(k)) for k in keys)
    if found.equals(expected):
        return frame
    numbered = target.select(keys).with_row_index(column).with_columns(pl.col(column).cast(pl.Int64))
    return frame.drop(column).join(numbered, on=keys, how="left", maintain_order="left")


def _per_run(values: list[int], run: pl.Expr) -> pl.Expr:
    """``values[run]`` for every row."""
    return pl.lit(pl.Series(values, dtype=pl.Int64)).gather(run)


def _read(data: bytes, columns: list[str]) -> pl.DataFrame:
    # One call per table: every extra eager polars call per run costs ~0.5 ms.
    return pl.read_ipc_stream(io.BytesIO(data), columns=columns)


_EMPTY_TYPES = {
    "run": pl.UInt32, "seq": pl.Int64, "ctx": pl.Int64, "name": pl.String, "kind": pl.Int8, "i": pl.Int64,
    "f": pl.Float64, "s": pl.String, "sidx": pl.Int64, "loop_id": pl.Int64, "iteration": pl.Int64,
    "t": pl.Float64, "parent": pl.Int64, "loop_row": pl.Int64, "replayed": pl.Boolean, "depth": pl.Int16, "loop": pl.String, "parent_sidx": pl.Int64,
}  # fmt: skip


def _runs_frame(metas: list) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run": pl.Series(range(len(metas)), dtype=pl.UInt32),
            "run_id": pl.Series([m.run_id for m in metas], dtype=pl.String),
            "start_time": pl.Series([m.start for m in metas], dtype=pl.String).str.to_datetime(time_zone="UTC"),
            "end_time": pl.Series([m.end for m in metas], dtype=pl.String).str.to_datetime(time_zone="UTC", strict=False),
            "script": pl.Series([m.script for m in metas], dtype=pl.String),
            "status": pl.Series([m.status for m in metas], dtype=pl.String),
            "user_commit": pl.Series([m.user_commit for m in metas], dtype=pl.String),
            "branch": pl.Series([m.branch for m in metas], dtype=pl.String),
            "dirty": pl.Series([m.dirty for m in metas], dtype=pl.Boolean),
            "records": pl.Series([m.records for m in metas], dtype=pl.Int64),
            "checkpoints": pl.Series([m.checkpoints for m in metas], dtype=pl.Int64),
            "args": pl.Series([list(m.args) for m in metas], dtype=pl.List(pl.String)),
        }
    )
