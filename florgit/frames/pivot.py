"""FlorDB's dataframe pivot: one row per run and loop context, one typed column per name.

Records are grouped by their loop chain (``dims``: "", "epoch", "epoch" NUL "step", ...).
Within a group, names are joined on the context. A value from a coarser group whose
chain is a prefix (run level, then outer loops) is spread onto the finer group's rows,
matched on the iteration *instance* (its context id), so a run that enters a loop of one
name twice keeps the two apart. A name logged at several levels takes, on a finer row,
the value of its nearest coarser level. Coarse rows all of whose values were spread are
not repeated on their own; coarse rows with values that were not (or with no finer rows:
an epoch with no steps logged) keep rows of their own, so no value is lost. Rows come in
the order they were logged."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from florgit.frames import columns
from florgit.frames.contexts import Resolved, chain_of
from florgit.frames.typing import dtype_for, value_expr


@dataclass
class Group:
    chain: list[str]  # the group's loops, outermost first
    names: list[str]  # logged names present in the group (user spelling)
    frame: pl.DataFrame  # run, ctx, seq, loop columns, outer loops' columns.loop_ctx, one columns.logged column per name

    def instance_keys(self, loops: int) -> list[str]:
        """Columns of this group's rows naming the iteration of each of its first
        ``loops`` loops: iteration instances, so two runs of a loop of one name stay apart."""
        return ["run", *("ctx" if k == len(self.chain) - 1 else columns.loop_ctx(name) for k, name in enumerate(self.chain[:loops]))]


def pivot(res: Resolved, names: list[str]) -> pl.DataFrame:
    """Rows for ``names`` keyed by ``run`` and loop columns (no run metadata yet); the
    records hold no other names."""
    recs = res.records
    dtypes = {n: dtype_for(k) for n, k in _kinds(recs, names).items()}
    all_dims = _present(recs.get_column("dims"), len(res.dims))
    groups = [_group(recs if len(all_dims) == 1 else _rows_of(recs, res, d), res, res.dims[d], names, dtypes) for d in all_dims]
    groups = [g for g in groups if g.names]
    if not groups:
        return pl.DataFrame(schema={"run": pl.UInt32, "seq": pl.Int64, **{columns.logged(n): dtypes[n] for n in names}})
    # Coarsest first: a group spreads onto finer rows what it received from coarser ones too.
    groups.sort(key=lambda g: len(g.chain))
    frames: dict[int, pl.DataFrame] = {}
    carried: dict[int, list[str]] = {}  # names on a group's rows: its own, then those spread onto them
    covering: dict[int, list[tuple[list[str], pl.DataFrame]]] = {id(g): [] for g in groups}
    for g in groups:
        frame, have = g.frame, list(g.names)
        for p in sorted((p for p in groups if _is_strict_prefix(p.chain, g.chain)), key=lambda p: -len(p.chain)):
            # Matched on the iteration instances of p's loops (context ids), not iteration numbers.
            p_keys, g_keys = p.instance_keys(len(p.chain)), g.instance_keys(len(p.chain))
            # The nearest coarser group's value wins: a name already on g's rows is not spread again.
            spread = [n for n in carried[id(p)] if n not in have]
            if spread:
                coarse = frames[id(p)].select(*(pl.col(a).alias(b) for a, b in zip(p_keys, g_keys)), *map(columns.logged, spread))
                frame = _spread(frame, coarse, g_keys)
                have += spread
            if len(spread) == len(carried[id(p)]):  # every value of p's rows is on g's rows: they need no rows of their own
                cover = _distinct(g.frame.select(pl.col(b).alias(a) for a, b in zip(p_keys, g_keys)))
                covering[id(p)].append((p_keys, cover))
        frames[id(g)], carried[id(g)] = frame, have
    out = []
    for g in groups:
        frame = frames[id(g)]
        for keys, cover in covering[id(g)]:
            frame = frame.join(cover, on=keys, how="anti", maintain_order="left")
        out.append(frame.drop("ctx", *(c for c in frame.columns if c.startswith(_CTX_PREFIX))))
    # A group all of whose rows went to finer ones (run-level args under a loop: the usual
    # case) adds no row, and its names are on those rows: stacking and sorting is then
    # skipped, as each group's rows are in order already.
    full = [f for f in out if f.height]
    if len(full) == 1 and all(set(f.columns) <= set(full[0].columns) for f in out):
        return full[0]
    if len(out) == 1:
        return out[0]
    return pl.concat(out, how="diagonal_relaxed").sort("run", "seq", maintain_order=True)


def _present(dims: pl.Series, chains: int) -> list[int]:
    """The loop chains (indexes into ``Resolved.dims``) records have: for a few chains, a
    scan each (1M records: ~0.4 ms a chain, where hashing them all takes ~5-10)."""
    if chains > 8:
        return dims.unique().to_list()
    return [k for k in range(chains) if (dims == k).any()]


def _spread(fine: pl.DataFrame, coarse: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``fine`` left-joined with ``coarse`` on ``keys``, in ``fine``'s order. Run-level values
    (one row a run, the usual case: args under a loop) are gathered by run number instead
    of hashed (1M rows: ~15 ms, not ~35)."""
    if keys == ["run"] and coarse.height:
        runs, fine_runs = coarse.get_column("run"), fine.get_column("run")
        size = max(runs.max(), fine_runs.max() or 0) + 1  # run numbers count the runs (frames.loader)
        if size <= 4 * (coarse.height + fine.height) + 1024 and (runs.len() == 1 or (runs.diff().drop_nulls() > 0).all()):
            where = pl.repeat(None, size, dtype=pl.UInt32, eager=True).scatter(runs, pl.int_range(coarse.height, dtype=pl.UInt32, eager=True))
            rows = where.gather(fine_runs)  # null: the run has no coarse row
            return pl.concat([fine, coarse.drop("run").select(pl.all().gather(rows))], how="horizontal")
    return fine.join(coarse, on=keys, how="left", maintain_order="left")


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


_CTX_PREFIX = columns.loop_ctx("")


def _loop_cols(res: Resolved, chain: list[str]) -> list[str]:
    """The loop columns rows of ``chain`` carry: their loops' and the outer loops' contexts."""
    return [*res.loop_columns(chain), *(columns.loop_ctx(name) for name in chain[:-1])]


def _rows_of(recs: pl.DataFrame, res: Resolved, chain_index: int) -> pl.DataFrame:
    """The records of one loop chain (``dims``), with only the columns its group reads:
    filtering the whole frame would copy every column (1M records: ~10 ms a group)."""
    wanted = ["run", "ctx", "seq", "name", "kind", "i", "f", "s", *_loop_cols(res, chain_of(res.dims[chain_index]))]
    return recs.lazy().filter(pl.col("dims") == chain_index).select(wanted).collect()


def _group(sub: pl.DataFrame, res: Resolved, dims: str, names: list[str], dtypes: dict) -> Group:
    chain = chain_of(dims)
    loop_cols = _loop_cols(res, chain)
    parts, present = [], []
    for name in names:
        part = sub if len(names) == 1 else sub.filter(pl.col("name") == name)
        if part.is_empty():
            continue
        present.append(name)
        part = part.select("run", "ctx", "seq", *loop_cols, value_expr(dtypes[name]).alias(columns.logged(name)))
        parts.append(_last_per_context(part))  # after the select: a filter copies only these columns
    if len(parts) <= 1:
        return Group(chain, present, parts[0] if parts else pl.DataFrame())
    both = pl.concat(parts, how="diagonal")
    merged = both.group_by("run", "ctx", maintain_order=True).agg(
        pl.col("seq").max(), *(pl.col(c).first() for c in loop_cols), *(pl.col(columns.logged(n)).drop_nulls().last() for n in present)
    )
    return Group(chain, present, merged.sort("run", "seq", maintain_order=True))


def _last_per_context(part: pl.DataFrame) -> pl.DataFrame:
    """Keep the last value a name got in each context (a name logged twice in one step)."""
    run, ctx = pl.col("run"), pl.col("ctx")
    before_run, before_ctx = run.shift(1), ctx.shift(1)
    if part.select(((before_run < run) | ((before_run == run) & (before_ctx < ctx))).fill_null(True).all()).item():
        return part  # one value a context, in order: the usual case, told in one pass
    in_order = ((run.diff() > 0) | ((run.diff() == 0) & (ctx.diff() >= 0))).fill_null(True).all()
    if part.select(in_order).item():
        repeated = ((run == run.shift(-1)) & (ctx == ctx.shift(-1))).fill_null(False)
        return part.filter(~repeated) if part.select(repeated.any()).item() else part
    return part.unique(["run", "ctx"], keep="last", maintain_order=True)


def _distinct(keys: pl.DataFrame) -> pl.DataFrame:
    """``keys.unique()``; one sorted column (runs: rows come in run order) is made unique in
    one pass instead of by hashing (1M rows: ~2 ms, not ~13)."""
    if keys.width == 1:
        column = keys.to_series()
        if column.is_sorted():
            return column.set_sorted().unique().to_frame()
    return keys.unique()


def _is_strict_prefix(short: list[str], long: list[str]) -> bool:
    return len(short) < len(long) and long[: len(short)] == short
