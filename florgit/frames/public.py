"""The public query functions: ``dataframe``, ``scan``, ``query`` and ``runs``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from florgit.codec.values import BOOL, FLOAT, INT, KIND_NAMES, STR
from florgit.errors import FlorgitWarning, QueryError
from florgit.frames import columns
from florgit.frames.allocator import import_polars

if TYPE_CHECKING:
    import polars as pl

RUN_COLUMNS = ["run_id", "start_time", "script"]


def dataframe(
    *names: str, repo: str | None = None, where: str | None = None, rank: int | Sequence[int] | str | None = None
) -> pl.DataFrame:
    """One row per run and loop context, with one typed column per name (FlorDB's pivot).

    Run-level values (args, final metrics) are repeated on each loop row of their run.
    With no names: one row per run with every run-level value. ``where`` keeps the rows
    an SQL predicate over the frame's columns selects, e.g. ``where="lr < 0.01"``.

    Runs of multi-process training (torchrun) show rank 0's records. ``rank=1``,
    ``rank=[0, 1]`` or ``rank="all"`` show those ranks' with a ``rank`` column (rank 0's
    run-level values, its args, repeated on every rank's rows); so does a ``where`` that
    names ``rank``.
    """
    import_polars()
    from florgit.frames.frame import wrap
    from florgit.frames.results import through

    ranks = _ranks_wanted(rank, where)
    _check_names(names)
    names = tuple(dict.fromkeys(names))  # a name asked for twice is one column
    frame = through(lambda: _dataframe(names, repo, ranks), repo, "dataframe", names, ranks)
    if where:
        from florgit.frames.where import apply_where

        frame = apply_where(frame, where)
    return wrap(frame)


ALL_RANKS = "all"


def _ranks_wanted(rank: int | Sequence[int] | str | None, where: str | None) -> list[int] | None:
    """The ranks a frame shows, with a ``rank`` column; None: rank 0 and no such column."""
    if rank is None:
        from florgit.frames.where import mentions

        return [] if where and mentions(where, "rank") else None  # []: every rank
    if rank == ALL_RANKS:
        return []
    wanted = [rank] if isinstance(rank, int) else list(rank) if isinstance(rank, (list, tuple, range)) else None
    if wanted is None or not wanted or any(type(r) is not int or r < 0 for r in wanted):
        raise QueryError(f"rank= takes a rank (0, 1, ...), a list of ranks or {ALL_RANKS!r}, not {rank!r}")
    return sorted(set(wanted))


def _check_names(names: tuple[str, ...]) -> None:
    for name in names:
        if not isinstance(name, str):
            raise QueryError(f"dataframe() takes names as str, got {name!r}; e.g. flor.dataframe('lr', 'loss')")


def _dataframe(names: tuple[str, ...], repo: str | None, ranks: list[int] | None = None) -> pl.DataFrame:
    import polars as pl

    from florgit.frames import ranked
    from florgit.frames.contexts import resolve
    from florgit.frames.listed import load
    from florgit.frames.pivot import pivot

    loaded = load(repo, list(names) if names else None)
    records = ranked.select_ranks(loaded.records, ranks)
    run_meta = loaded.runs.select("run", *RUN_COLUMNS)
    meta_columns = RUN_COLUMNS if ranks is None else [*RUN_COLUMNS, ranked.RANK]
    if not names:
        run_level = records.filter(pl.col("ctx") == 0)
        wanted = run_level.get_column("name").unique(maintain_order=True).to_list()
        body = ranked.split_key(pivot(resolve(run_level, loaded.loops.clear()), wanted), ranks)
        # A run with no run-level values keeps its row; with ranks, a row per rank that has some.
        return _finish(run_meta.join(body, on="run", how="left", maintain_order="left"), [], wanted, meta_columns)
    for hint in loaded.absent.values():
        warnings.warn(f"florgit: {hint}", FlorgitWarning, stacklevel=2)
    res = resolve(records, loaded.loops)
    del loaded, records  # the long frames go before the result's run columns are made (peak memory)
    body = ranked.split_key(pivot(res, list(names)), ranks)
    loop_pairs = [(c, shown) for c, shown in res.display_pairs() if c in body.columns]
    del res
    return _finish(_with_run_columns(body, run_meta), loop_pairs, list(names), meta_columns)


def _with_run_columns(body: pl.DataFrame, run_meta: pl.DataFrame) -> pl.DataFrame:
    """``body`` with its run's columns: by position where ``run`` numbers the runs frame's
    rows (as the loader makes it), which copies 10M rows' strings faster than a join."""
    import polars as pl

    runs = run_meta.get_column("run")
    if runs.equals(pl.Series("run", range(runs.len()), dtype=runs.dtype)):
        return pl.concat([body, run_meta.drop("run").select(pl.all().gather(body.get_column("run")))], how="horizontal")
    return body.join(run_meta, on="run", how="left", maintain_order="left")


def _finish(
    frame: pl.DataFrame, loop_pairs: list[tuple[str, str]], names: list[str], meta_columns: list[str] = RUN_COLUMNS
) -> pl.DataFrame:
    """Readable column names, by the one rule in florgit.frames.columns."""
    import polars as pl

    name_pairs = [(columns.logged(n), n) for n in names]
    shown = columns.display(meta_columns, loop_pairs, name_pairs)
    missing = [pl.lit(None).alias(c) for c, _n in name_pairs if c not in frame.columns]
    picked = frame.with_columns(missing).select(*meta_columns, *(c for c, _n in loop_pairs), *(c for c, _n in name_pairs))
    return picked.rename(shown)


def scan(repo: str | None = None) -> pl.LazyFrame:
    """Every record of every run in long format, as a LazyFrame.

    Columns: run_id, start_time, script, rank (of multi-process training; 0 otherwise),
    seq, name, the loop columns, ``kind`` (the
    value's type name), ``value_bool``/``value_int``/``value_float``/``value_str``, and
    ``replayed`` (the value was computed afterwards by ``git flor replay``).
    """
    import_polars()
    from florgit.frames.listed import load

    return _long(load(repo)).lazy()


def _long(loaded) -> pl.DataFrame:
    import polars as pl

    from florgit.frames.contexts import resolve

    res = resolve(loaded.records, loaded.loops)
    loop_pairs = res.display_pairs()
    kind = pl.col("kind")
    recs = _with_run_columns(res.records, loaded.runs.select("run", *RUN_COLUMNS))
    frame = recs.select(
        *RUN_COLUMNS,
        "rank",
        "seq",
        "name",
        "replayed",
        *(c for c, _n in loop_pairs),
        kind.replace_strict(KIND_NAMES, return_dtype=pl.String).alias("kind"),
        pl.when(kind == BOOL).then(pl.col("i").cast(pl.Boolean)).alias("value_bool"),
        pl.when(kind == INT).then(pl.col("i")).alias("value_int"),
        pl.when(kind == FLOAT).then(pl.col("f")).alias("value_float"),
        pl.when(kind == STR).then(pl.col("s")).alias("value_str"),
    )
    fixed = [*RUN_COLUMNS, "rank", "seq", "name", "replayed", "kind", "value_bool", "value_int", "value_float", "value_str"]
    return frame.rename(columns.display(fixed, loop_pairs, []))


def runs(repo: str | None = None) -> pl.DataFrame:
    """One row per recorded run, oldest first: id, times, script, status, user commit,
    branch, dirty flag, author, records, checkpoints, ``world_size`` (processes of a
    torchrun launch; 1 for one process), tags, note, duration, then each arg's value and each
    logged name's last value (a name equal to one of these columns shows as ``log:NAME``).
    Reads no tables: the last values come from each run's metadata."""
    import_polars()
    from florgit.frames import columns
    from florgit.frames.frame import wrap
    from florgit.frames.runlist import run_list

    listed = run_list(repo)
    frame = listed.frame.drop("run")
    return wrap(frame.rename(columns.display(frame.columns, [], [(columns.logged(n), n) for n in listed.names])))


def query(sql: str, repo: str | None = None) -> pl.DataFrame:
    """Run polars SQL over the tables ``records`` (see :func:`scan`) and ``runs``."""
    pl = import_polars()

    from florgit.frames.frame import wrap
    from florgit.frames.listed import load

    loaded = load(repo)  # one read of the repository serves both tables
    ctx = pl.SQLContext(records=_long(loaded).lazy(), runs=loaded.runs.drop("run").lazy())
    return wrap(ctx.execute(sql).collect())
