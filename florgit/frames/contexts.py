"""Resolving each record's loop context into loop columns (``epoch=3, step=500``).

Loop *instances* are few (an inner loop has one per outer iteration), iterations are many.
So the ancestor chain is built once per loop instance, in Python, and each record only
gathers its own iteration and its loop instance's chain by row number: context and loop
ids count up from 1 in each run, so rows are found without joins (with a join as the
fallback when ids arrive out of order, e.g. loops started by several threads).
``dims`` names a record's chain of loops ("", "epoch", "epoch" NUL "step", ...). Loop
columns are named by :mod:`florgit.frames.columns`, apart from florgit's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from florgit.codec.values import NULL
from florgit.frames import columns
from florgit.frames.typing import dtype_for, value_expr

_VALUE = ("kind", "i", "f", "s")


@dataclass
class Resolved:
    records: pl.DataFrame  # run, seq, ctx, name, kind, i, f, s, dims, then columns.loop(l)/loop_value(l) per loop
    loops: list[str]  # loop names, outermost first
    value_columns: dict[str, str]  # loop -> its columns.loop_value column, when it has values

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


def resolve(records: pl.DataFrame, starts: pl.DataFrame, loops: pl.DataFrame) -> Resolved:
    with_values = starts.height > 0 and "kind" in starts.columns and (starts.get_column("kind").max() or NULL) != NULL
    own = _own_iterations(records, starts, with_values)
    chains, loop_names = _chains(starts, loops, with_values)
    recs = pl.concat([records, own, _chain_columns(own, chains, loops)], how="horizontal")
    out_cols, value_columns = [], {}
    is_own = {name: pl.col("own_loop") == name for name in loop_names}
    own_kinds = _own_kinds(recs) if with_values else {}
    for name in loop_names:
        col = columns.loop(name)
        out_cols.append(pl.when(is_own[name]).then(pl.col("own_iteration")).otherwise(pl.col(col)).alias(col))
        if not with_values:
            continue
        kinds = own_kinds.get(name, set()) | set(recs.get_column(columns.ancestor(name, "kind")).unique().to_list())
        kinds = {k for k in kinds if k is not None and k != NULL}
        if kinds:
            value_columns[name] = columns.loop_value(name)
            own_value = value_expr(dtype_for(kinds), "own_")
            anc_value = value_expr(dtype_for(kinds), lambda part, name=name: columns.ancestor(name, part))
            out_cols.append(pl.when(is_own[name]).then(own_value).otherwise(anc_value).alias(value_columns[name]))
    out = recs.select("run", "rank", "seq", "ctx", "name", "replayed", *_VALUE, pl.col("dims").fill_null(""), *out_cols)
    return Resolved(out, loop_names, value_columns)


def _own_iterations(records: pl.DataFrame, starts: pl.DataFrame, with_values: bool) -> pl.DataFrame:
    """Each record's iteration row (loop row, iteration, item value)."""
    wanted = {"loop_row": "loop_row", "iteration": "own_iteration"}
    if with_values:
        wanted.update({c: f"own_{c}" for c in _VALUE})
    if starts.height:
        rows = records.get_column("sidx")
        picked = starts.select(pl.col("ctx").gather(rows), *(pl.col(c).gather(rows).alias(a) for c, a in wanted.items()))
        if (picked.get_column("ctx").fill_null(0) == records.get_column("ctx")).all():
            return picked.drop("ctx")
    own = starts.select("run", "ctx", *(pl.col(c).alias(a) for c, a in wanted.items()))
    joined = records.select("run", "ctx").join(own, on=["run", "ctx"], how="left", maintain_order="left")
    return joined.drop("run", "ctx")


def _chains(starts: pl.DataFrame, loops: pl.DataFrame, with_values: bool) -> tuple[pl.DataFrame, list[str]]:
    """Per loop instance, in the rows of ``loops``: its name, ``dims``, and each ancestor's
    iteration (and item value)."""
    if loops.is_empty():
        return pl.DataFrame({"own_loop": [], "dims": []}, schema={"own_loop": pl.String, "dims": pl.String}), []
    value_cols = _VALUE if with_values else ()
    rows = loops.get_column("parent_sidx")
    parents = starts.select(pl.col(c).gather(rows).alias(f"p_{c}") for c in ("loop_row", "iteration", *value_cols))
    info = pl.concat([loops.select("parent", "depth", "loop"), parents], how="horizontal").to_dicts()
    chains: list[tuple[list[str], dict[str, tuple]] | None] = [None] * len(info)
    order: list[str] = []
    for idx in sorted(range(len(info)), key=lambda k: info[k]["depth"] or 0):  # parents first
        row = info[idx]
        names, anc = [], {}
        parent_row = row["p_loop_row"]
        if row["parent"] and parent_row is not None and chains[parent_row] is not None:
            p_names, p_anc = chains[parent_row]
            value = tuple(row[f"p_{c}"] for c in value_cols)
            names, anc = p_names, {**p_anc, p_names[-1]: (row["p_iteration"], *value)}
        chains[idx] = ([*names, row["loop"]], anc)
        for name in chains[idx][0]:
            if name not in order:
                order.append(name)
    data: dict[str, list] = {"own_loop": [], "dims": []}
    schema = {"own_loop": pl.String, "dims": pl.String}
    for name in order:
        data[columns.loop(name)] = []
        schema[columns.loop(name)] = pl.Int64
        for c, t in zip(value_cols, (pl.Int8, pl.Int64, pl.Float64, pl.String)):
            data[columns.ancestor(name, c)] = []
            schema[columns.ancestor(name, c)] = t
    empty = (None,) * (1 + len(value_cols))
    for names, anc in chains:
        data["own_loop"].append(names[-1])
        data["dims"].append(columns.DIMS_SEP.join(names))
        for name in order:
            it, *value = anc.get(name, empty)
            data[columns.loop(name)].append(it)
            for c, v in zip(value_cols, value):
                data[columns.ancestor(name, c)].append(v)
    return pl.DataFrame(data, schema=schema), order


def _chain_columns(own: pl.DataFrame, chains: pl.DataFrame, loops: pl.DataFrame) -> pl.DataFrame:
    """The chain of each record's loop instance, gathered by loop row."""
    if chains.is_empty():
        return pl.DataFrame({"own_loop": pl.Series([None] * own.height, dtype=pl.String), "dims": [""] * own.height})
    return chains.select(pl.all().gather(own.get_column("loop_row")))


def _own_kinds(recs: pl.DataFrame) -> dict[str, set[int]]:
    kinds = recs.group_by("own_loop").agg(pl.col("own_kind").unique())
    return {name: set(k) for name, k in kinds.iter_rows() if name is not None}


def chain_of(dims: str) -> list[str]:
    return dims.split(columns.DIMS_SEP) if dims else []
