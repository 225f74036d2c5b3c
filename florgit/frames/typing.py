"""One typed polars column per logged name, from the stored ``kind, i, f, s`` columns.

A name logged only as ints is Int64, only floats (or ints and floats) Float64, only bools
Boolean, only strings String; a name whose values mix text with other types is String.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from florgit.codec.values import BOOL, FLOAT, INT, NULL, STR


def dtype_for(kinds: set[int]) -> pl.DataType:
    kinds = kinds - {NULL}
    if not kinds:
        return pl.Null()
    if STR in kinds:
        return pl.String()
    if FLOAT in kinds:
        return pl.Float64()
    if INT in kinds:
        return pl.Int64()
    return pl.Boolean()


def value_expr(dtype: pl.DataType, prefix: str | Callable[[str], str] = "") -> pl.Expr:
    """An expression reading ``kind, i, f, s`` (their names prefixed, or mapped by a
    function) as ``dtype``."""
    named = prefix if callable(prefix) else (lambda c: prefix + c)
    kind, i, f, s = (pl.col(named(c)) for c in ("kind", "i", "f", "s"))
    if dtype == pl.Null():
        return pl.lit(None, dtype=pl.Null())
    if dtype == pl.Boolean():
        return i.cast(pl.Boolean)
    if dtype == pl.Int64():
        return i
    if dtype == pl.Float64():
        return pl.when(kind == FLOAT).then(f).otherwise(i.cast(pl.Float64))
    return (
        pl.when(kind == STR)
        .then(s)
        .when(kind == FLOAT)
        .then(_float_text(f))
        .when(kind == BOOL)
        .then(pl.when(i == 1).then(pl.lit("True")).otherwise(pl.lit("False")))
        .when(kind == INT)
        .then(i.cast(pl.String))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def _float_text(f: pl.Expr) -> pl.Expr:
    return f.map_elements(repr, return_dtype=pl.String)


def kinds_of(frame: pl.DataFrame, kind_col: str = "kind") -> set[int]:
    return set(frame.get_column(kind_col).unique().to_list())


__all__ = ["dtype_for", "value_expr", "kinds_of"]
