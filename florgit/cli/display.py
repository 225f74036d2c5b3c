"""Showing data read from git (maybe from a teammate's push) without letting it act.

Everything the CLI prints that it did not write itself goes through here:

* :func:`visible` turns control characters (C0 such as ESC and CR, DEL, C1 such as
  CSI, Unicode line separators and bidi overrides) into their escape text, e.g. ``\\x1b``,
  so none reaches the terminal raw;
* :func:`markup` also escapes rich markup, for text inside a rich markup string
  (``acc[/]`` and ``loss[train]`` show as themselves);
* :func:`cell` makes a table cell: a :class:`rich.text.Text`, which rich never parses;
* :func:`json_line` writes JSON that every parser reads: NaN and infinities become the
  strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.

Importing this module loads no rich (git hooks use :func:`visible`); the rich helpers
import it when called.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _escape_text(code: int) -> str:
    named = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
    if code in named:
        return named[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_CONTROLS = [
    *range(0x00, 0x20),  # C0: ESC, CR, BS, BEL, ...
    *range(0x7F, 0xA0),  # DEL and C1 (0x9b is a one-byte CSI on some terminals)
    0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A),  # bidi marks and overrides
    0x2028, 0x2029,  # line and paragraph separators
    0xFEFF,  # zero-width no-break space / BOM
]  # fmt: skip
_TABLE = {code: _escape_text(code) for code in _CONTROLS}
_TABLE_KEEP_NEWLINES = {code: text for code, text in _TABLE.items() if code not in (0x09, 0x0A)}


def visible(value: object, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with every control character shown as its escape text; with
    ``keep_newlines`` (for multi-line text such as a diff) newlines and tabs stay."""
    text = value if isinstance(value, str) else str(value)
    return text.translate(_TABLE_KEEP_NEWLINES if keep_newlines else _TABLE)


def markup(value: object, *, keep_newlines: bool = False) -> str:
    """Data to put inside a rich markup string: visible, with ``[`` escaped."""
    from rich.markup import escape

    return escape(visible(value, keep_newlines=keep_newlines))


def show_value(value: object) -> str:
    """A value as one line of text: floats to 6 significant digits, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return visible(value)


def show_column(series) -> list[str]:
    """``show_value`` of every value of a polars Series, the common cases without a Python
    call per value (a 10,000-run table has 100,000 cells)."""
    import polars as pl

    dtype = series.dtype
    if dtype.is_integer():
        return series.cast(pl.String).fill_null("").to_list()
    if dtype == pl.String and not series.str.contains(_CONTROL_PATTERN).any():
        return series.fill_null("").to_list()
    if dtype.is_float():
        six = "{:.6g}".format
        return ["" if v is None else six(v) for v in series.to_list()]
    return [show_value(v) for v in series.to_list()]


# The characters visible() rewrites, as one regex class for polars.
_CONTROL_PATTERN = "[" + "".join(f"\\x{{{code:x}}}" for code in _CONTROLS) + "]"


def cell(value: object, style: str = ""):
    """A table cell (or header, or title) that rich shows exactly as written."""
    from rich.text import Text

    return Text(show_value(value), style=style)


def text(value: object, *, keep_newlines: bool = True):
    """A block of data text (a report, a diff) for ``Console.print``: never markup."""
    from rich.text import Text

    return Text(visible(value, keep_newlines=keep_newlines))


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinite floats replaced by "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_line(value: Any) -> str:
    """Strict JSON (no NaN/Infinity tokens, non-ASCII and controls as \\u escapes)."""
    return json.dumps(json_safe(value), default=str, allow_nan=False)


def frame_rows_json(frame) -> str:
    """A polars DataFrame as JSON lines, one object per row (the shape of ``log --json``),
    times in ISO 8601, strict: NaN and infinities as strings, not null."""
    return "\n".join(
        json.dumps(json_safe(row), default=_iso, allow_nan=False, separators=(",", ":")) for row in frame.iter_rows(named=True)
    )


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def visible_frame(frame):
    """A polars DataFrame whose text columns and column names are :func:`visible`."""
    import polars as pl

    columns = [
        pl.Series(name, [None if v is None else visible(v) for v in frame.get_column(name).to_list()], dtype=pl.String)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    ]
    if columns:
        frame = frame.with_columns(columns)
    renames = {name: visible(name) for name in frame.columns if visible(name) != name}
    if renames and len(set(frame.columns) - set(renames) | set(renames.values())) == len(frame.columns):
        frame = frame.rename(renames)
    return frame
