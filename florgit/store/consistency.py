"""Whether runs' tables agree with themselves: every record's iteration, every iteration's
loop and every loop's parent iteration exist, kinds and names are ones florgit writes.

One check for queries (all runs at once, vectorised: per-run checks cost more than the
data when runs are many) and for ``git flor verify`` and pull (one run at a time). The
frames are stacked runs with a ``run`` column numbering them from 0.
"""

from __future__ import annotations

import polars as pl

from florgit.validation import name_problem


def inconsistent_runs(
    records: pl.DataFrame, starts: pl.DataFrame, loops: pl.DataFrame, n_starts: list[int], n_loops: list[int]
) -> dict[int, str]:
    """``{run: why}`` for every run whose tables fail a check; ``n_starts``/``n_loops``
    are each run's number of iterations and loop instances."""
    run = pl.col("run")
    starts_of, loops_of = per_run(n_starts, run), per_run(n_loops, run)
    checks = [
        (records, (pl.col("ctx") < 0) | (pl.col("ctx") > starts_of), "its records refer to loop iterations it does not have"),
        (records, ~pl.col("kind").is_between(0, 4), "its records hold a value kind florgit does not write"),
        (starts, (pl.col("loop_id") < 1) | (pl.col("loop_id") > loops_of) | (pl.col("ctx") < 1), "its iterations refer to loops it does not have"),
        (starts, ~pl.col("kind").is_between(0, 4), "its loop items hold a value kind florgit does not write"),
        (loops, (pl.col("parent") < 0) | (pl.col("parent") > starts_of) | (pl.col("loop_id") < 1), "its loops refer to iterations it does not have"),
    ]  # fmt: skip
    bad: dict[int, str] = {}
    for (frame, wrong, why), found in zip(checks, _any_each(checks)):
        if found:  # the rare path: find which runs
            for number in frame.filter(wrong.fill_null(True)).get_column("run").unique().to_list():
                bad.setdefault(number, why)
    for frame, column in ((records, "name"), (loops, "loop")):
        for name in frame.get_column(column).unique().to_list():
            problem = name_problem(name)
            if problem is not None:
                for number in frame.filter(pl.col(column) == name).get_column("run").unique().to_list():
                    bad.setdefault(number, f"it holds a name florgit would refuse ({problem})")
    return bad


def one_run(records: pl.DataFrame, starts: pl.DataFrame, loops: pl.DataFrame) -> list[str]:
    """What :func:`inconsistent_runs` finds wrong with the tables of one run (no ``run``
    column): ``git flor verify`` and each rank of a multi-process run are checked alone."""
    run = pl.lit(0, dtype=pl.UInt32).alias("run")
    bad = inconsistent_runs(
        records.with_columns(run), starts.with_columns(run), loops.with_columns(run), [starts.height], [loops.height]
    )
    return list(bad.values())


def per_run(values: list[int], run: pl.Expr) -> pl.Expr:
    """``values[run]`` for every row."""
    return pl.lit(pl.Series(values, dtype=pl.Int64)).gather(run)


def _any_each(checks: list[tuple[pl.DataFrame, pl.Expr, str]]) -> list[bool]:
    """Whether any row fails each check, one pass per frame."""
    out = []
    for frame in dict.fromkeys(id(f) for f, _w, _y in checks):
        owned = [(f, w) for f, w, _y in checks if id(f) == frame]
        exprs = [w.fill_null(True).any().alias(str(k)) for k, (_f, w) in enumerate(owned)]
        row = owned[0][0].select(exprs).row(0) if owned[0][0].height else (False,) * len(exprs)
        out += list(row)
    return out
