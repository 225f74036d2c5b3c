"""FlorDB's dataframe pivot: one row per run and loop context, one typed column per name.

Records are grouped by their loop chain (``dims``: "", "epoch", "epoch/step", ...).
Within a group, names are joined on the context. A value from a coarser group whose
chain is a prefix (run level, then outer loops) is broadcast onto the finer group's rows;
coarse rows that were broadcast are not repeated on their own, and coarse rows with no
finer rows (an epoch with no steps logged) stay as rows of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from florgit.errors import QueryError
from florgit.frames.contexts import KEYS, Flat, chain_of
from florgit.frames.typing import dtype_for, kinds_of, value_expr


@dataclass
class Group:
    dims: str
    loops: list[str]
    names: list[str]
    frame: pl.DataFrame


def pivot(records: pl.DataFrame, flat: Flat, names: list[str]) -> pl.DataFrame:
    """Rows for ``names`` keyed by ``run`` and loop columns (no run metadata yet)."""
    _check_collisions(names, flat)
    recs = records.join(flat.frame.select(*KEYS, "dims"), on=KEYS, how="left").with_columns(pl.col("dims").fill_null(""))
    dtypes = {n: dtype_for(kinds_of(recs.filter(pl.col("name") == n))) for n in names}
    groups = [_group(recs, flat, dims, names, dtypes) for dims in sorted(recs.get_column("dims").unique().to_list())]
    groups.sort(key=lambda g: -len(g.loops))
    covering: dict[str, list[pl.DataFrame]] = {g.dims: [] for g in groups}
    out = []
    for g in groups:
        frame = g.frame
        for p in groups:
            if not _is_strict_prefix(p.loops, g.loops):
                continue
            shared = set(p.names) & set(g.names)
            spread = [n for n in p.names if n not in shared]
            keys = ["run", *p.loops]
            if spread:
                frame = frame.join(p.frame.select(*keys, *spread).unique(keys, keep="last", maintain_order=True), on=keys, how="left")
            if not shared:
                covering[p.dims].append(g.frame.select(keys).unique())
        for cover in covering[g.dims]:
            frame = frame.join(cover, on=["run", *g.loops], how="anti")
        out.append(frame.drop("ctx"))
    if not out:
        return pl.DataFrame(schema={"run": pl.UInt32, **{n: dtypes.get(n, pl.Null()) for n in names}})
    return pl.concat(out, how="diagonal_relaxed")


def _group(recs: pl.DataFrame, flat: Flat, dims: str, names: list[str], dtypes: dict) -> Group:
    sub = recs.filter(pl.col("dims") == dims)
    frame = None
    present = []
    for name in names:
        part = sub.filter(pl.col("name") == name)
        if part.is_empty():
            continue
        present.append(name)
        part = part.unique(KEYS, keep="last", maintain_order=True).select(*KEYS, value_expr(dtypes[name]).alias(name))
        frame = part if frame is None else frame.join(part, on=KEYS, how="full", coalesce=True)
    loops = chain_of(dims)
    loop_cols = [c for loop in loops for c in (loop, flat.value_columns.get(loop)) if c]
    if loops:
        frame = frame.join(flat.frame.select(*KEYS, *loop_cols), on=KEYS, how="left")
    return Group(dims, loops, present, frame)


def _is_strict_prefix(short: list[str], long: list[str]) -> bool:
    return len(short) < len(long) and long[: len(short)] == short


def _check_collisions(names: list[str], flat: Flat) -> None:
    taken = {*flat.loops, *flat.value_columns.values()}
    clash = [n for n in names if n in taken]
    if clash:
        raise QueryError(
            f"{clash[0]!r} is both a logged name and a loop column of the dataframe; "
            "rename the flor.loop or the flor.log name so the columns can be told apart"
        )
