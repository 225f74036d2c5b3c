"""``--where``: one SQL predicate over a frame's columns, never pasted into a query.

The text is parsed by ``polars.sql_expr`` as exactly one SQL expression (it refuses
``UNION``, ``;`` and anything else that is not an expression); subqueries, the one way
an expression could name another table (``x IN (SELECT ... FROM read_csv(...))``), are
refused before parsing. Every failure is one line naming the columns there are.
"""

from __future__ import annotations

import difflib
import re

import polars as pl

from florgit.errors import QueryError

_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_SUBQUERY = re.compile(r"\b(SELECT|VALUES)\b", re.IGNORECASE)
_MAX_COLUMNS_SHOWN = 40


def apply_where(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    """The rows of ``frame`` for which the SQL predicate ``where`` is true."""
    columns = frame.columns
    if _SUBQUERY.search(_QUOTED.sub("''", where)):
        raise _error(where, "subqueries (SELECT, VALUES) are not allowed; write a predicate over the columns", columns)
    try:
        expr = pl.sql_expr(where)
    except Exception as exc:  # polars raises SQLInterfaceError/SQLSyntaxError/ComputeError
        raise _error(where, f"not one SQL expression ({_first_line(exc)})", columns) from None
    try:
        names = expr.meta.root_names()
    except Exception:
        names = []
    if ".subplan(" in str(expr) or any(n.startswith("_POLARS_TMP_SQL") for n in names):
        raise _error(where, "subqueries are not allowed; write a predicate over the columns", columns)
    unknown = [n for n in dict.fromkeys(names) if n not in columns]
    if unknown:
        guess = difflib.get_close_matches(unknown[0], columns, n=3)
        hint = f"; did you mean {' or '.join(repr(g) for g in guess)}?" if guess else ""
        raise _error(where, f"unknown column {unknown[0]!r}{hint}", columns)
    try:
        return frame.filter(expr)
    except Exception as exc:
        raise _error(where, _first_line(exc), columns) from None


def mentions(where: str, column: str) -> bool:
    """Whether the predicate ``where`` names ``column`` (False if it does not parse:
    :func:`apply_where` says why)."""
    try:
        return column in pl.sql_expr(where).meta.root_names()
    except Exception:
        return False


def _error(where: str, why: str, columns: list[str]) -> QueryError:
    shown = ", ".join(repr(c) for c in columns[:_MAX_COLUMNS_SHOWN])
    if len(columns) > _MAX_COLUMNS_SHOWN:
        shown += f", ... ({len(columns) - _MAX_COLUMNS_SHOWN} more)"
    return QueryError(
        f"--where {where!r} is not a valid SQL predicate: {why}. Columns: {shown}. "
        "Quote names with other characters in double quotes, e.g. \"loss[train]\" > 1."
    )


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
