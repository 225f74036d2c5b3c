"""One row per run with the last value of every logged name: ``flor.runs()`` and
``git flor log``.

Runs the query cache holds (frames.cache) come from it, last values included. The others'
last values come from their ``meta.json`` (written when the run ends), and are added to
the cache as a listing segment for the next listing; so a listing reads
no tables; a run's tables are read only where its meta has no summary (runs recorded
before florgit kept one, runs recovered after a kill) or where replays added names to it.

The whole list is also kept as a memo (store.memo) keyed by the ids it derives from
(store.memo_keys), so the next listing of the same runs reads one file, and a fresh
process's first listing need not load pygit2. A listing that warned (a run left out) is
not kept: the next one reads the runs and warns again.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import polars as pl

from florgit.codec.values import split
from florgit.errors import StoreError, noting_warnings
from florgit.frames import columns
from florgit.frames.typing import dtype_for, value_expr
from florgit.store import memo, memo_keys
from florgit.validation import memory_budget

# Imported where the memo misses: they load pygit2, which a memo hit does without.
# florgit.frames.loader, florgit.frames.cache, florgit.store.runs, florgit.store.recovery


@dataclass
class RunList:
    frame: pl.DataFrame  # loader's runs frame, then one internal column (columns.logged) per name
    args: list[str]  # users' arg names, first among ``names``
    names: list[str]  # every logged name, args first, then the others sorted
    complete: bool = True  # False when a run (or part of one) was left out, warned


MEMO = "runlist"
MEMO_VERSION = 1  # bump when the frame's columns or their meaning change


def run_list(repo_path: str | None = None) -> RunList:
    from florgit import __version__

    remembered, repo, key = memo_keys.look_up(repo_path, _read_memo, MEMO_VERSION, __version__)
    if remembered is not None:
        return remembered
    listed, complete = noting_warnings(lambda: _run_list(repo))
    listed.complete = complete
    # Kept only when whole, and when no writer changed the runs while they were read.
    if listed.complete and memo_keys.listing_key(repo, MEMO_VERSION, __version__) == key:
        memo.write(repo.common_dir, MEMO, key, _to_memo(listed))
    return listed


def _read_memo(common_dir: str, key: str) -> RunList | None:
    return _from_memo(memo.read(common_dir, MEMO, key))


def _to_memo(listed: RunList) -> bytes:
    out = io.BytesIO()
    out.write(json.dumps({"args": listed.args, "names": listed.names}).encode() + b"\n")
    listed.frame.write_ipc(out, compression="uncompressed")
    return out.getvalue()


def _from_memo(payload: bytes | None) -> RunList | None:
    """The memo's list, when it is whole and has the columns its names say (else None)."""
    if payload is None:
        return None
    head, _, body = payload.partition(b"\n")
    try:
        names = json.loads(head)
        args, all_names = names["args"], names["names"]
        frame = pl.read_ipc(io.BytesIO(body))
    except (ValueError, KeyError, TypeError, OSError, pl.exceptions.PolarsError):
        return None
    if not (isinstance(all_names, list) and all(isinstance(n, str) for n in all_names)):
        return None
    if not (isinstance(args, list) and args == all_names[: len(args)]):
        return None
    if frame.columns != [*columns.RUNS_FRAME_COLUMNS, *(columns.logged(n) for n in all_names)]:
        return None
    return RunList(frame, args, all_names)


def _run_list(repo) -> RunList:
    from florgit.frames import loader
    from florgit.frames.cache import EMPTY, Part, QueryCache, in_order
    from florgit.store import runs as store_runs

    stored = store_runs.list_runs(repo)
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
    from florgit.frames import loader
    from florgit.store.replays import REPLAYS_DIR

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

