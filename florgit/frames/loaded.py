"""What a query reads: the runs frame and the placed records and loops of every run
(``Loaded``), assembled from query-cache parts (frames.cache) however they were found: from
the cache alone (frames.listed) or read from git on the way (frames.loader). Kept apart
from the loader so that a query the cache answers imports nothing that reads git."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from florgit.frames import placing
from florgit.frames.cache import Part, QueryCache

# Run id -> its tags and note, for runs that have either (store.curation's state; tags
# and notes change apart from the run, so they are never cached with it).
Marks = dict[str, tuple[tuple[str, ...], str | None]]


@dataclass
class Loaded:
    runs: pl.DataFrame  # run, run_id, start_time, end_time, script, status, ... one row per run
    # run, rank, seq, ctx, name, kind, i, f, s, replayed, own_iteration[, own_kind..own_s], loop_row
    records: pl.DataFrame
    # run, loop_id, parent, depth, loop, parent_lrow, parent_iteration, p_kind..p_s, parent_loop_row
    loops: pl.DataFrame  # one row per loop instance
    absent: dict[str, str] = field(default_factory=dict)  # asked-for name no run logged -> a hint


def absent_names(whole: Part, names: list[str] | None, cache: QueryCache | None, seen: set[str]) -> dict[str, str]:
    """For asked-for names no run logged: a hint from every name there is (the rare path)."""
    if names is None:
        return {}
    missing = set(names) - set(whole.lasts.get_column("name").unique().to_list())  # every run's names, small
    if missing:  # lasts are rank 0's: another rank may have logged it
        missing -= set(whole.records.filter(pl.col("name").is_in(list(missing))).get_column("name").unique().to_list())
    if not missing:
        return {}
    logged = set(cache.names()) if cache is not None else set()
    logged |= seen
    return _hints(missing, sorted(logged), whole.loops.get_column("loop").unique().to_list())


def assemble(whole: Part, marks: Marks, absent: dict[str, str]) -> Loaded:
    """The loaded runs: the runs frame, and records and loops with their loop rows in
    the stacked loops frame (frames.placing)."""
    records, loops = placing.globalize(whole.records, whole.loops, whole.runs.height)
    return Loaded(runs=runs_frame(whole.runs, marks), records=records, loops=loops, absent=absent)


def _hints(missing: set[str], logged: list[str], loops: list[str]) -> dict[str, str]:
    import difflib

    out = {}
    for name in sorted(missing):
        if name in loops:
            out[name] = f"{name!r} is a loop, never logged: its column comes with any name logged inside it"
        else:
            close = difflib.get_close_matches(name, logged, n=3)
            out[name] = f"no run logged {name!r}" + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
    return out


def runs_frame(meta: pl.DataFrame, marks: Marks) -> pl.DataFrame:
    """The runs frame: meta columns, times parsed, tags and note (they change apart from
    the run, so they are never cached), duration."""
    marked = pl.DataFrame(
        {
            "run_id": pl.Series(list(marks), dtype=pl.String),
            "tags": pl.Series([list(tags) for tags, _note in marks.values()], dtype=pl.List(pl.String)),
            "note": pl.Series([note for _tags, note in marks.values()], dtype=pl.String),
        }
    )
    if "world_size" not in meta.columns:  # a cache segment written before the column existed
        meta = meta.with_columns(pl.lit(1, dtype=pl.Int32).alias("world_size"))
    frame = meta.select(
        pl.col("run").cast(pl.UInt32),
        "run_id",
        pl.col("start").str.to_datetime(time_zone="UTC").alias("start_time"),
        pl.col("end").str.to_datetime(time_zone="UTC", strict=False).alias("end_time"),
        "script", "status", "user_commit", "branch", "author", "dirty", "records", "checkpoints", "world_size", "args",
    ).join(marked, on="run_id", how="left", maintain_order="left").with_columns(
        pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )  # fmt: skip
    seconds = (pl.col("end_time") - pl.col("start_time")).dt.total_milliseconds() / 1000
    return frame.with_columns(seconds.alias("duration_s"))
