"""Laying out ``git flor log`` for a person: columns that fit the terminal, never squeezed.

A terminal gets each run's short id (the random end of its id, which every command
accepts), its age and status, then as many value columns as fit at their full width:
metrics first, then args, then commit, branch and script. Columns that do not fit are
left out and named in a footer line (``--columns`` picks, ``--wide`` shows all). Numbers
are never cut; long text (branch, script, string values) is cut with an ellipsis.
``--wide`` (and any output that is not a terminal) shows every column in full.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from florgit.cli.display import show_column, show_value
from florgit.errors import QueryError

MAX_TEXT = 24  # a text cell wider than this is cut in the terminal view
GAP = "  "
_DETAILS = ("commit", "branch", "script")


@dataclass
class Layout:
    headers: list[str]
    rows: list[list[str]]
    right: list[bool]  # numbers align right
    hidden: list[str]  # value columns that did not fit
    width: int | None = None  # the terminal's, for the footer


def select(frame: pl.DataFrame, value_columns: list[str], *, columns: str | None, sort: str | None,
           reverse: bool, only_changed: bool, tag: str | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Apply ``--tag``, ``--columns``, ``--only-changed`` and ``--sort``; returns the frame
    and the value columns still in it, in display order."""  # fmt: skip
    if tag:
        frame = frame.filter(pl.col("tags").str.split(",").list.contains(tag))
    if only_changed:
        value_columns = [c for c in value_columns if frame.get_column(c).n_unique() > 1]
    if columns:
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        for name in wanted:
            _known(name, frame.columns, "--columns")
        value_columns = [c for c in wanted if c not in ("run_id", "date", "status")]
    if sort:
        _known(sort, frame.columns, "--sort")
        frame = frame.sort(sort, descending=reverse, nulls_last=True, maintain_order=True)
    elif reverse:
        frame = frame.reverse()
    return frame, value_columns


def _known(name: str, have: list[str], option: str) -> None:
    if name not in have:
        close = difflib.get_close_matches(name, have, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise QueryError(f"{option}: no column {name!r}{hint} Columns: {', '.join(have)}")


def terminal(frame: pl.DataFrame, value_columns: list[str], width: int, now: datetime | None = None) -> Layout:
    """Short id, age, status, then the value columns that fit in ``width``."""
    now = now or datetime.now(timezone.utc)
    fixed = [
        ("run", [rid[-8:] for rid in frame.get_column("run_id").to_list()], False),
        ("age", [_age(d, now) for d in frame.get_column("date").to_list()], True),
        ("status", [show_value(s) for s in frame.get_column("status").to_list()], False),
    ]
    optional = [(c, *_cells(frame.get_column(c), cut=True)) for c in value_columns]
    used = sum(_width(h, cells) for h, cells, _r in fixed) + len(GAP) * (len(fixed) - 1)
    shown, hidden = list(fixed), []
    for header, cells, right in optional:
        need = len(GAP) + _width(header, cells)
        if not hidden and used + need <= width:
            shown.append((header, cells, right))
            used += need
        else:
            hidden.append(header)  # keep the priority order: once one is dropped, the rest go too
    layout = _layout(shown, hidden)
    layout.width = width
    return layout


def wide(frame: pl.DataFrame, value_columns: list[str]) -> Layout:
    """Every column in full: run id, date, status, the value columns."""
    base = [c for c in ("run_id", "date", "status") if c in frame.columns]
    return _layout([(c, *_cells(frame.get_column(c), cut=False)) for c in [*base, *value_columns]], [])


def ordered_values(frame: pl.DataFrame, args: list[str], metrics: list[str]) -> list[str]:
    """Value columns by priority: tags (when any run has one), metrics, args, then where
    and what ran, and notes."""
    used = {c for c in ("tags", "note") if c in frame.columns and frame.get_column(c).fill_null("").str.len_chars().max()}
    details = [c for c in _DETAILS if c in frame.columns]
    return [*(["tags"] if "tags" in used else []), *metrics, *args, *details, *(["note"] if "note" in used else [])]


def render(layout: Layout) -> str:
    widths = [_width(h, [r[i] for r in layout.rows]) for i, h in enumerate(layout.headers)]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if right else c.ljust(w) for c, w, right in zip(cells, widths, layout.right)]
        return GAP.join(parts).rstrip()

    out = [line(layout.headers), GAP.join("─" * w for w in widths)]
    out += [line(row) for row in layout.rows]
    if layout.hidden:
        out.append(_footer(layout.hidden, layout.width))
    return "\n".join(out) + "\n"


def _footer(hidden: list[str], width: int | None) -> str:
    """``(N more: a, b, ...; --columns A,B or --wide)``, as many names as fit."""
    for shown in range(len(hidden), -1, -1):
        names = ", ".join(hidden[:shown]) + (", ..." if shown < len(hidden) else "")
        line = f"({len(hidden)} more: {names}; --columns A,B or --wide)"
        if width is None or len(line) <= width:
            return line
    return line[:width]


def _layout(columns: list[tuple[str, list[str], bool]], hidden: list[str]) -> Layout:
    n = len(columns[0][1]) if columns else 0
    rows = [[cells[i] for _h, cells, _r in columns] for i in range(n)]
    return Layout([h for h, _c, _r in columns], rows, [r for _h, _c, r in columns], hidden)


def _cells(series: pl.Series, *, cut: bool) -> tuple[list[str], bool]:
    numeric = series.dtype.is_numeric()
    cells = show_column(series)
    if cut and not numeric:
        cells = [c if len(c) <= MAX_TEXT else c[: MAX_TEXT - 1] + "…" for c in cells]
    return cells, numeric


def _width(header: str, cells: list[str]) -> int:
    return max([len(header), *map(len, cells)])


def _age(date: str | None, now: datetime) -> str:
    if not date:
        return "?"
    try:
        then = datetime.strptime(date, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
    except ValueError:
        return "?"
    seconds = max(0, (now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "now"
