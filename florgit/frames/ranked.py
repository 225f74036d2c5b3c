"""Which ranks of multi-process runs (torchrun) a dataframe shows.

Records carry ``rank`` (0 for single-process runs). By default a frame shows rank 0, as if
the run were one process. Asked for more ranks, the pivot must keep ranks of one run apart:
it keys rows by ``run``, so for the pivot ``run`` becomes ``run * 2^16 + rank`` (ranks are
below 2^16, checked where metas are read) and is split back afterwards.
"""

from __future__ import annotations

import polars as pl

RANK = "rank"
_SPAN = 1 << 16


def select_ranks(records: pl.DataFrame, ranks: list[int] | None) -> pl.DataFrame:
    """``records`` of the ranks asked for (None: rank 0; []: every rank), keyed for the
    pivot; each shown rank gets rank 0's run-level values (a launch's args are rank 0's)
    for the names it did not log at run level itself."""
    rank, ctx = pl.col(RANK), pl.col("ctx")
    if ranks is None:  # no copy when every record is rank 0's (single-process runs)
        return records if (records.get_column(RANK).max() or 0) == 0 else records.filter(rank == 0)
    kept = records.filter(rank.is_in(ranks)) if ranks else records
    others = kept.filter(rank != 0).select("run", RANK).unique()
    if others.height:
        run_level = records.filter((rank == 0) & (ctx == 0)).drop(RANK)
        copies = others.join(run_level, on="run", how="inner").join(
            kept.filter(ctx == 0).select("run", RANK, "name"), on=["run", RANK, "name"], how="anti"
        )
        kept = pl.concat([kept, copies.select(kept.columns)])
    return kept.with_columns((pl.col("run").cast(pl.UInt64) * _SPAN + rank.cast(pl.UInt64)).alias("run"))


def split_key(frame: pl.DataFrame, ranks: list[int] | None) -> pl.DataFrame:
    """The pivot's rows with ``run`` and ``rank`` again (as :func:`select_ranks` keyed them)."""
    if ranks is None:
        return frame
    key = pl.col("run").cast(pl.UInt64)
    return frame.with_columns((key // _SPAN).cast(pl.UInt32).alias("run"), (key % _SPAN).cast(pl.UInt16).alias(RANK))

