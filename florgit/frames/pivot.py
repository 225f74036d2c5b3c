"""FlorDB's dataframe pivot: one row per run and loop context, one typed column per name.

Records are grouped by their loop chain (``dims``: "", "epoch", "epoch" NUL "step", ...).
Within a group, names are joined on the context. A value from a coarser group whose
chain is a prefix (run level, then outer loops) is broadcast onto the finer group's rows;
coarse rows that were broadcast are not repeated on their own, and coarse rows with no
finer rows (an epoch with no steps logged) stay as rows of their own. Rows come in the
order they were logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from florgit.frames import columns
from florgit.frames.contexts import Resolved, chain_of
from florgit.frames.typing import dtype_for, value_expr


@dataclass
class Group:
    loops: list[str]  # internal iteration columns of the group's loop chain
    names: list[str]  # logged names present in the group (user spelling)
    frame: pl.DataFrame  # run, ctx, seq, loop columns, one columns.logged column per name


def pivot(res: Resolved, names: list[str]) -> pl.DataFrame:
    """Rows for ``names`` keyed by ``run`` and loop columns (no run metadata yet); the
    records hold no other names."""
    recs = res.records
    dtypes = {n: dtype_for(k) for n, k in _kinds(recs, names).items()}
    all_dims = recs.get_column("dims").unique().to_list()
    groups = [_group(recs if len(all_dims) == 1 else recs.filter(pl.col("dims") == d), res, res.dims[d], names, dtypes) for d in all_dims]
    groups = [g for g in groups if g.names]
    if not groups:
        return pl.DataFrame(schema={"run": pl.UInt32, "seq": pl.Int64, **{columns.logged(n): dtypes[n] for n in names}})
    groups.sort(key=lambda g: -len(g.loops))
    covering: dict[int, list[pl.DataFrame]] = {id(g): [] for g in groups}
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
                coarse = p.frame.select(*keys, *map(columns.logged, spread)).unique(keys, keep="last", maintain_order=True)
                frame = frame.join(coarse, on=keys, how="left", maintain_order="left")
            if not shared:
                covering[id(p)].append(g.frame.select(keys).unique())
        for cover in covering[id(g)]:
            frame = frame.join(cover, on=["run", *g.loops], how="anti", maintain_order="left")
        out.append(frame.drop("ctx"))
    if len(out) == 1:
        return out[0]
    return pl.concat(out, how="diagonal_relaxed").sort("run", "seq", maintain_order=True)


def _kinds(recs: pl.DataFrame, names: list[str]) -> dict[str, set[int]]:
    """The value kinds each name has: a scan per name for a few names (comparing strings
    is cheaper than hashing 10M of them), a group-by for many."""
    if len(names) == 1:
        return {names[0]: set(recs.get_column("kind").unique().to_list())}
    if len(names) <= 8:
        found = recs.select(pl.col("kind").filter(pl.col("name") == n).unique().implode().alias(str(k)) for k, n in enumerate(names))
        return {n: set(found.get_column(str(k))[0].to_list()) for k, n in enumerate(names)}
    kinds = dict(recs.group_by("name").agg(pl.col("kind").unique()).iter_rows())
    return {n: set(kinds.get(n, [])) for n in names}


def _group(sub: pl.DataFrame, res: Resolved, dims: str, names: list[str], dtypes: dict) -> Group:
    chain = chain_of(dims)
    loops = [columns.loop(name) for name in chain]
    loop_cols = res.loop_columns(chain)
    parts, present = [], []
    for name in names:
        part = sub if len(names) == 1 else sub.filter(pl.col("name") == name)
        if part.is_empty():
            continue
        present.append(name)
        part = _last_per_context(part)
        parts.append(part.select("run", "ctx", "seq", *loop_cols, value_expr(dtypes[name]).alias(columns.logged(name))))
    if len(parts) <= 1:
        return Group(loops, present, parts[0] if parts else pl.DataFrame())
    both = pl.concat(parts, how="diagonal")
    merged = both.group_by("run", "ctx", maintain_order=True).agg(
        pl.col("seq").max(), *(pl.col(c).first() for c in loop_cols), *(pl.col(columns.logged(n)).drop_nulls().last() for n in present)
    )
    return Group(loops, present, merged.sort("run", "seq", maintain_order=True))


def _last_per_context(part: pl.DataFrame) -> pl.DataFrame:
    """Keep the last value a name got in each context (a name logged twice in one step)."""
    run, ctx = pl.col("run"), pl.col("ctx")
    in_order = ((run.diff() > 0) | ((run.diff() == 0) & (ctx.diff() >= 0))).fill_null(True).all()
    if part.select(in_order).item():
        repeated = ((run == run.shift(-1)) & (ctx == ctx.shift(-1))).fill_null(False)
        return part.filter(~repeated)
    return part.unique(["run", "ctx"], keep="last", maintain_order=True)


def _is_strict_prefix(short: list[str], long: list[str]) -> bool:
    return len(short) < len(long) and long[: len(short)] == short
