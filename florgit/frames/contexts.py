"""Resolving each record's loop context into loop columns (``epoch=3, step=500``).

Loop *instances* are few (an inner loop has one per outer iteration), iterations are many.
So the ancestor chain is built once per loop instance, in Python, and each record only
gathers its loop instance's chain by row number. Each record's own iteration and loop
instance were found when its run was read from git (frames.placing).
``dims`` names a record's chain of loops ("", "epoch", "epoch" NUL "step", ...). Loop
columns are named by :mod:`florgit.frames.columns`, apart from florgit's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from florgit.codec.values import NULL
from florgit.frames import columns
from florgit.frames.placing import OWN_ITEM, PARENT_ITEM
from florgit.frames.typing import dtype_for, value_expr

_VALUE = ("kind", "i", "f", "s")
_ITEM_TYPES = (pl.Int8, pl.Int64, pl.Float64, pl.String)


@dataclass
class Resolved:
    records: pl.DataFrame  # run, seq, ctx, name, kind, i, f, s, dims, then columns.loop(l)/loop_value(l) per loop
    loops: list[str]  # loop names, outermost first
    value_columns: dict[str, str]  # loop -> its columns.loop_value column, when it has values
    dims: list[str]  # the ``dims`` column holds indexes into this: "" (run level) is 0

    def loop_columns(self, loops: list[str] | None = None) -> list[str]:
        """Internal iteration and item-value columns of ``loops`` (default: all)."""
        return [c for name in (self.loops if loops is None else loops) for c in (columns.loop(name), self.value_columns.get(name)) if c]

    def display_pairs(self) -> list[tuple[str, str]]:
        """``(internal column, loop column name)`` in order, for columns.display."""
        out = []
        for name in self.loops:
            out.append((columns.loop(name), name))
            if name in self.value_columns:
                out.append((self.value_columns[name], f"{name}_value"))
        return out


def resolve(records: pl.DataFrame, loops: pl.DataFrame) -> Resolved:
    """Loop columns for ``records`` (loader.Loaded's: placed, with ``loop_row``) from the
    loop instances ``loops`` (with ``parent_loop_row``)."""
    with_values = _has_items(records, OWN_ITEM) or _has_items(loops, PARENT_ITEM)
    if with_values:  # item values somewhere: records of runs without any get null ones
        records = records.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in zip(OWN_ITEM, _ITEM_TYPES) if c not in records.columns)
    chains, loop_names, dims = _chains(loops, with_values)
    recs = pl.concat([records, _chain_columns(records, chains)], how="horizontal")
    out_cols, value_columns = [], {}
    is_own = {name: pl.col("own_loop") == code for code, name in enumerate(loop_names)}
    own_kinds = _own_kinds(recs, loop_names) if with_values else {}
    for name in loop_names:
        col = columns.loop(name)
        outer = col in recs.columns  # an outer loop somewhere: records inside it have its columns
        iteration = pl.when(is_own[name]).then(pl.col("own_iteration"))
        out_cols.append((iteration.otherwise(pl.col(col)) if outer else iteration).alias(col))
        if not with_values:
            continue
        kinds = set(own_kinds.get(name, set()))
        if outer:
            kinds |= set(recs.get_column(columns.ancestor(name, "kind")).unique().to_list())
        kinds = {k for k in kinds if k is not None and k != NULL}
        if kinds:
            value_columns[name] = columns.loop_value(name)
            value = pl.when(is_own[name]).then(value_expr(dtype_for(kinds), "own_"))
            if outer:
                value = value.otherwise(value_expr(dtype_for(kinds), lambda part, name=name: columns.ancestor(name, part)))
            out_cols.append(value.alias(value_columns[name]))
    out = recs.select(
        "run", "rank", "seq", "ctx", "name", "replayed", *_VALUE, pl.col("dims").fill_null(0), *out_cols,
        *(c for c in (columns.loop_ctx(name) for name in loop_names) if c in recs.columns),
    )  # fmt: skip
    return Resolved(out, loop_names, value_columns, dims)


def _has_items(frame: pl.DataFrame, item_columns: tuple[str, ...]) -> bool:
    kind = item_columns[0]
    return kind in frame.columns and frame.height > 0 and (frame.get_column(kind).max() or NULL) != NULL


def _chains(loops: pl.DataFrame, with_values: bool) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Per loop instance, in the rows of ``loops``: its loop (``own_loop``, an index into
    the loop names), its chain of loops (``dims``, an index into the chains), and the
    context id, iteration (and item value) of each loop that is an ancestor of some instance. Also
    the loop names, outermost first, and the chains ("" first)."""
    if loops.is_empty():
        return pl.DataFrame(schema={"own_loop": pl.Int32, "dims": pl.UInt32}), [], [""]
    nested = (pl.col("parent").cast(pl.Boolean).fill_null(False) & pl.col("parent_loop_row").is_not_null()).any()
    if not loops.select(nested).item():
        return _flat_chains(loops)
    return _walked_chains(loops, with_values)


def _flat_chains(loops: pl.DataFrame) -> tuple[pl.DataFrame, list[str], list[str]]:
    """``_chains`` when no loop instance is inside another (a run's epochs, and nothing
    else: the common case): each instance's chain is its own loop, found without a Python
    step per instance (10,000 runs: 0.1 s)."""
    order = loops.get_column("loop").unique(maintain_order=True).to_list()
    own = loops.get_column("loop").replace_strict(order, list(range(len(order))), return_dtype=pl.Int32)
    frame = pl.DataFrame({"own_loop": own, "dims": (own + 1).cast(pl.UInt32)})
    return frame, order, ["", *order]


def _walked_chains(loops: pl.DataFrame, with_values: bool) -> tuple[pl.DataFrame, list[str], list[str]]:
    value_cols = _VALUE if with_values else ()
    info = loops.select("parent", "depth", "loop", "parent_loop_row", "parent_iteration", *(f"p_{c}" for c in value_cols)).to_dicts()
    chains: list[tuple[list[str], dict[str, tuple]] | None] = [None] * len(info)
    order: list[str] = []
    for idx in sorted(range(len(info)), key=lambda k: info[k]["depth"] or 0):  # parents first
        row = info[idx]
        names, anc = [], {}
        parent_row = row["parent_loop_row"]
        if row["parent"] and parent_row is not None and chains[parent_row] is not None:
            p_names, p_anc = chains[parent_row]
            value = tuple(row[f"p_{c}"] for c in value_cols)
            names, anc = p_names, {**p_anc, p_names[-1]: (row["parent"], row["parent_iteration"], *value)}
        chains[idx] = ([*names, row["loop"]], anc)
        for name in chains[idx][0]:
            if name not in order:
                order.append(name)
    outer = [name for name in order if any(name in anc for _names, anc in chains)]
    code = {name: k for k, name in enumerate(order)}
    dims: dict[str, int] = {"": 0}
    data: dict[str, list] = {"own_loop": [], "dims": []}
    schema = {"own_loop": pl.Int32, "dims": pl.UInt32}
    for name in outer:
        data[columns.loop_ctx(name)] = []
        schema[columns.loop_ctx(name)] = pl.Int64
        data[columns.loop(name)] = []
        schema[columns.loop(name)] = pl.Int64
        for c, t in zip(value_cols, _ITEM_TYPES):
            data[columns.ancestor(name, c)] = []
            schema[columns.ancestor(name, c)] = t
    empty = (None,) * (2 + len(value_cols))
    for names, anc in chains:
        data["own_loop"].append(code[names[-1]])
        data["dims"].append(dims.setdefault(columns.DIMS_SEP.join(names), len(dims)))
        for name in outer:
            ctx, it, *value = anc.get(name, empty)
            data[columns.loop_ctx(name)].append(ctx)
            data[columns.loop(name)].append(it)
            for c, v in zip(value_cols, value):
                data[columns.ancestor(name, c)].append(v)
    return pl.DataFrame(data, schema=schema), order, list(dims)


def _chain_columns(records: pl.DataFrame, chains: pl.DataFrame) -> pl.DataFrame:
    """The chain of each record's loop instance, gathered by loop row (ints: no string
    is copied per record)."""
    if chains.is_empty():
        return pl.DataFrame({"own_loop": pl.Series([None] * records.height, dtype=pl.Int32), "dims": pl.Series([0] * records.height, dtype=pl.UInt32)})
    if chains.width == 2 and chains.select(pl.all().n_unique() == 1).row(0) == (True, True):
        # Every loop instance is of one loop with no outer loop (the common case): nothing to gather.
        own_loop, dims = chains.row(0)
        inside = pl.col("loop_row").is_not_null()
        return records.select(
            pl.when(inside).then(pl.lit(own_loop, dtype=pl.Int32)).alias("own_loop"),
            pl.when(inside).then(pl.lit(dims, dtype=pl.UInt32)).otherwise(pl.lit(0, dtype=pl.UInt32)).alias("dims"),
        )
    return chains.select(pl.all().gather(records.get_column("loop_row")))


def _own_kinds(recs: pl.DataFrame, loop_names: list[str]) -> dict[str, set[int]]:
    kinds = recs.group_by("own_loop").agg(pl.col("own_kind").unique())
    return {loop_names[code]: set(k) for code, k in kinds.iter_rows() if code is not None}


def chain_of(dims: str) -> list[str]:
    return dims.split(columns.DIMS_SEP) if dims else []
