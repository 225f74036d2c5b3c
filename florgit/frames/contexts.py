"""Flattening loop contexts: each (run, ctx) gets its whole loop chain as columns.

A context row knows only its parent; the chain (``epoch=3, step=500``) is rebuilt with
one join per nesting level, all runs at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from florgit.codec.values import NULL
from florgit.frames.typing import dtype_for, kinds_of, value_expr

KEYS = ["run", "ctx"]


@dataclass
class Flat:
    frame: pl.DataFrame  # run, ctx, dims, <loop>..., <loop>_value...
    loops: list[str]  # loop names, outermost first
    value_columns: dict[str, str]  # loop -> its `<loop>_value` column, when it has values


def flatten(contexts: pl.DataFrame) -> Flat:
    if contexts.is_empty():
        empty = pl.DataFrame(schema={"run": pl.UInt32, "ctx": pl.Int64, "dims": pl.String})
        return Flat(empty, [], {})
    nodes = contexts.select("run", "ctx", "parent", "depth", "loop", "iteration", "kind", "i", "f", "s")
    cur = nodes.select("run", "ctx", pl.col("ctx").alias("anc"))
    levels = []
    while not cur.is_empty():
        hit = cur.join(nodes.rename({"ctx": "anc"}), on=["run", "anc"], how="inner")
        levels.append(hit.drop("anc", "parent"))
        cur = hit.filter(pl.col("parent") != 0).select("run", "ctx", pl.col("parent").alias("anc"))
    chain = pl.concat(levels)
    loops = _loop_order(nodes)
    dims = chain.sort("depth").group_by(KEYS, maintain_order=False).agg(pl.col("loop").str.join("/").alias("dims"))
    wide = chain.pivot(on="loop", index=KEYS, values="iteration", aggregate_function="first")
    frame = dims.join(wide, on=KEYS, how="left")
    value_columns = {}
    for loop in loops:
        vals = chain.filter((pl.col("loop") == loop) & (pl.col("kind") != NULL))
        if vals.is_empty():
            continue
        col = f"{loop}_value"
        value_columns[loop] = col
        typed = vals.select(*KEYS, value_expr(dtype_for(kinds_of(vals))).alias(col))
        frame = frame.join(typed, on=KEYS, how="left")
    return Flat(frame, loops, value_columns)


def _loop_order(nodes: pl.DataFrame) -> list[str]:
    firsts = nodes.group_by("loop").agg(pl.col("depth").min(), pl.col("ctx").min()).sort("depth", "ctx")
    return firsts.get_column("loop").to_list()


def chain_of(dims: str) -> list[str]:
    return dims.split("/") if dims else []
