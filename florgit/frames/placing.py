"""Where each record sits in its run's loops, worked out once when runs are read from git.

A record names its iteration by context id, an iteration its loop instance by loop id,
and a loop instance its parent iteration by context id. Queries need the other way
round: a record's iteration number, item value and loop instance, and each loop
instance's parent loop instance and iteration. These are computed once, when runs are
read from git and checked, and stored with the records and loops in the query cache, so
a query never reads the (as long) iterations table nor joins records to it.

Rows are run-local (``lrow``: the row of the loop instance among its run's loops), so
cached runs can be reordered and stacked freely; ``globalize`` turns them into rows of
the stacked loops frame at query time with one addition.
"""

from __future__ import annotations

import polars as pl

from florgit.codec.values import NULL
from florgit.store.consistency import per_run

ITEM = ("kind", "i", "f", "s")  # a loop item's value, as the iterations table stores it
OWN_ITEM = tuple(f"own_{c}" for c in ITEM)  # a record's own iteration's item value (only when some item has one)
PARENT_ITEM = tuple(f"p_{c}" for c in ITEM)  # a loop instance's parent iteration's item value
RECORD_PLACE = ("lrow", "own_iteration")  # run-local loop row and iteration number (null at run level)
LOOP_PLACE = ("parent_lrow", "parent_iteration", *PARENT_ITEM)


def place(
    records: pl.DataFrame, starts: pl.DataFrame, loops: pl.DataFrame, start_offsets: list[int], loop_offsets: list[int]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``records`` with RECORD_PLACE (and OWN_ITEM where some loop item has a value), and
    ``loops`` with LOOP_PLACE, for runs stacked with a ``run`` column (tables checked by
    store.consistency; each run's rows together, in run order)."""
    run = pl.col("run")
    starts = starts.with_columns((pl.col("loop_id") - 1 + per_run(loop_offsets, run)).alias("loop_row"))
    starts = _checked_rows(starts, "loop_row", ["run", "loop_id"], loops)
    starts = starts.with_columns((pl.col("loop_row") - per_run(loop_offsets, run)).alias("lrow"))
    with_items = starts.height > 0 and (starts.get_column("kind").max() or NULL) != NULL
    own = {"lrow": "lrow", "iteration": "own_iteration", **({c: f"own_{c}" for c in ITEM} if with_items else {})}
    # Context ids count from 1 in each run: an iteration's row is arithmetic.
    sidx = pl.when(pl.col("ctx") > 0).then(pl.col("ctx") - 1 + per_run(start_offsets, run))
    records = pl.concat([records, _gathered(records.select("run", "ctx"), sidx, starts, own)], how="horizontal")
    parent = {"lrow": "parent_lrow", "iteration": "parent_iteration", **{c: f"p_{c}" for c in ITEM}}
    parents = loops.select("run", pl.col("parent").alias("ctx"))
    loops = pl.concat([loops, _gathered(parents, sidx, starts, parent)], how="horizontal")
    return records, loops


def globalize(records: pl.DataFrame, loops: pl.DataFrame, runs: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``loop_row`` of each record and ``parent_loop_row`` of each loop instance: rows of
    the stacked ``loops`` frame of ``runs`` runs (null at run level)."""
    run = pl.col("run")
    first = per_run(_offsets(loops, runs), run)
    records = records.with_columns((pl.col("lrow") + first).alias("loop_row")).drop("lrow")  # 10M rows: one copy, not two
    loops = loops.with_columns((pl.col("parent_lrow") + first).alias("parent_loop_row"))
    return records, loops


def _gathered(frame: pl.DataFrame, rows: pl.Expr, starts: pl.DataFrame, wanted: dict[str, str]) -> pl.DataFrame:
    """Columns ``wanted`` (renamed) of the iteration each row of ``frame`` (``run``, ``ctx``) names:
    found by row arithmetic (``rows``), with a join where ids came out of order."""
    if starts.height:
        index = frame.select(rows.alias("row")).get_column("row")
        picked = starts.select(pl.col("ctx").gather(index), *(pl.col(c).gather(index).alias(a) for c, a in wanted.items()))
        if (picked.get_column("ctx").fill_null(0) == frame.get_column("ctx")).all():
            return picked.drop("ctx")
    own = starts.select("run", "ctx", *(pl.col(c).alias(a) for c, a in wanted.items()))
    joined = frame.select("run", "ctx").join(own, on=["run", "ctx"], how="left", maintain_order="left")
    return joined.drop("run", "ctx")


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


def _offsets(frame: pl.DataFrame, runs: int) -> list[int]:
    """Each run's first row in ``frame`` (its rows are together, in run order): a binary
    search per run, not a group-by over every row."""
    firsts = pl.Series(range(runs), dtype=pl.UInt32)
    return frame.get_column("run").search_sorted(firsts, side="left").to_list()
