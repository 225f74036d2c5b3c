"""One row per run with the last value of every logged name: ``flor.runs()`` and
``git flor log``.

Runs the query cache holds (frames.cache) come from it, last values included. The others'
last values come from their ``meta.json`` (written when the run ends), and are added to
the cache as a listing segment for the next listing; so a listing reads
no tables; a run's tables are read only where its meta has no summary (runs recorded
before florgit kept one, runs recovered after a kill) or where replays added names to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from florgit.codec.values import split
from florgit.errors import StoreError
from florgit.frames import columns, loader
from florgit.frames.cache import EMPTY, Part, QueryCache, in_order
from florgit.frames.typing import dtype_for, value_expr
from florgit.store.replays import REPLAYS_DIR
from florgit.validation import memory_budget


@dataclass
class RunList:
    frame: pl.DataFrame  # loader's runs frame, then one internal column (columns.logged) per name
    args: list[str]  # users' arg names, first among ``names``
    names: list[str]  # every logged name, args first, then the others sorted


def run_list(repo_path: str | None = None) -> RunList:
    repo, stored = loader.listed_runs(repo_path)
    cache = QueryCache.open(repo)
    cached = cache.load([r.tree for r in stored], None, listing=True) if cache is not None else None
    have = set(cached.runs.get_column("tree").to_list()) if cached is not None else set()
    listed = loader.metas_of(repo, [r for r in stored if r.tree not in have])
    trees = [run.tree for run, _meta in listed]
    meta = loader.meta_frame([meta for _run, meta in listed], trees)
    fresh = Part(meta, EMPTY, EMPTY, _last_values(repo, listed))
    if cache is not None:  # the next listing reads these runs' metas from the cache
        cache.add(fresh, {r.tree for r in stored}, listing_only=True)
    whole = in_order([cached, fresh], [r.tree for r in stored]) or fresh  # the listing's order
    last = whole.lasts
    frame = loader.runs_frame_from(repo, whole.runs)
    arg_names = list(dict.fromkeys(n for args in whole.runs.get_column("args").to_list() for n in args))
    logged = set(last.get_column("name").unique().to_list()) if last.height else set()
    names = arg_names + sorted(logged - set(arg_names))
    for name in names:  # joined under internal names: a name `run` or `status` collides with nothing
        part = last.filter(pl.col("name") == name)
        typed = part.select("run", value_expr(dtype_for(set(part.get_column("kind").to_list()))).alias(columns.logged(name)))
        frame = frame.join(typed, on="run", how="left", maintain_order="left")
    return RunList(frame, arg_names, names)


def _last_values(repo, listed: list) -> pl.DataFrame:
    """``run, name, kind, i, f, s``: each run's last value of each name."""
    rows: dict[str, list] = {"run": [], "name": [], "kind": [], "i": [], "f": [], "s": []}
    read: list[pl.DataFrame] = []
    budget = [memory_budget()]
    with repo.unverified_reads():  # as in queries: decoding checks structure, verify checks hashes
        for idx, (run, meta) in enumerate(listed):
            if meta.last is not None and repo.subtree(run.tree, REPLAYS_DIR) is None:
                for name, value in meta.last.items():
                    _append(rows, idx, name, value)
                continue
            try:  # no summary, or replays added names: the run's tables, as queries see them
                records = loader.read_run(repo, run, budget).records
            except StoreError as exc:
                loader.left_out(run.run_id, exc)
                continue
            last = records.group_by("name", maintain_order=True).last()
            read.append(last.select(pl.lit(idx, pl.UInt32).alias("run"), "name", "kind", "i", "f", "s"))
    summary = pl.DataFrame(rows, schema={"run": pl.UInt32, "name": pl.String, "kind": pl.Int8, "i": pl.Int64, "f": pl.Float64, "s": pl.String})
    return pl.concat([summary, *read]) if read else summary


def _append(rows: dict[str, list], idx: int, name: str, value: object) -> None:
    rows["run"].append(idx)
    rows["name"].append(name)
    for column, part in zip(("kind", "i", "f", "s"), split(value)):
        rows[column].append(part)

