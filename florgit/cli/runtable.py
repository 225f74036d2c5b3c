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
from typing import TYPE_CHECKING

from florgit.cli.display import show_column
from florgit.errors import QueryError

if TYPE_CHECKING:
    import polars as pl

MAX_TEXT = 24  # a text cell wider than this is cut in the terminal view
GAP = "  "
_DETAILS = ("commit", "branch", "script")


@dataclass
class Column:
    header: str
    cells: list[str]  # every value as shown in full (display.show_column)
    numeric: bool  # numbers align right and are never cut


@dataclass
class Listing:
    """What a table of runs shows, as text: each run's id, date and status, then the value
    columns by priority. Plain lists: ``git flor log`` keeps one as a memo (cli.log_memo)
    and lays it out without polars."""

    run_ids: list[str]
    dates: list[str]  # "YYYY-MM-DD HH:MM", UTC
    statuses: list[str]  # as shown
    values: list[Column]

    def head(self, n: int) -> Listing:
        return self._rows(slice(None, n))

    def reverse(self) -> Listing:
        return self._rows(slice(None, None, -1))

    def _rows(self, rows: slice) -> Listing:
        values = [Column(c.header, c.cells[rows], c.numeric) for c in self.values]
        return Listing(self.run_ids[rows], self.dates[rows], self.statuses[rows], values)


def listing_of(frame: pl.DataFrame, value_columns: list[str]) -> Listing:
    """The text of a run table's rows (run_id, date, status and ``value_columns``)."""
    return Listing(
        frame.get_column("run_id").to_list(),
        show_column(frame.get_column("date")),
        show_column(frame.get_column("status")),
        [Column(c, show_column(frame.get_column(c)), frame.get_column(c).dtype.is_numeric()) for c in value_columns],
    )


@dataclass
class Layout:
    headers: list[str]
    columns: list[list[str]]  # each shown column's cells
    right: list[bool]  # numbers align right
    hidden: list[str]  # value columns that did not fit
    width: int | None = None  # the terminal's, for the footer


def select(frame: pl.DataFrame, value_columns: list[str], *, columns: str | None, sort: str | None,
           reverse: bool, only_changed: bool, tag: str | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Apply ``--tag``, ``--columns``, ``--only-changed`` and ``--sort``; returns the frame
    and the value columns still in it, in display order."""  # fmt: skip
    import polars as pl

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


def terminal(listing: Listing, width: int, now: datetime | None = None) -> Layout:
    """Short id, age, status, then the value columns that fit in ``width``."""
    now = now or datetime.now(timezone.utc)
    ages: dict[str, str] = {}  # runs of a sweep share their minute
    fixed = [
        ("run", [rid[-8:] for rid in listing.run_ids], False),
        ("age", [ages[d] if d in ages else ages.setdefault(d, _age(d, now)) for d in listing.dates], True),
        ("status", listing.statuses, False),
    ]
    optional = [(c.header, _cut(c), c.numeric) for c in listing.values]
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


def wide(listing: Listing) -> Layout:
    """Every column in full: run id, date, status, the value columns."""
    base = [("run_id", listing.run_ids, False), ("date", listing.dates, False), ("status", listing.statuses, False)]
    return _layout([*base, *((c.header, c.cells, c.numeric) for c in listing.values)], [])


def ordered_values(frame: pl.DataFrame, args: list[str], metrics: list[str]) -> list[str]:
    """Value columns by priority: tags (when any run has one), metrics, args, then where
    and what ran, and notes."""
    used = {c for c in ("tags", "note") if c in frame.columns and frame.get_column(c).fill_null("").str.len_chars().max()}
    details = [c for c in _DETAILS if c in frame.columns]
    return [*(["tags"] if "tags" in used else []), *metrics, *args, *details, *(["note"] if "note" in used else [])]


def render(layout: Layout) -> str:
    widths = [_width(h, cells) for h, cells in zip(layout.headers, layout.columns)]
    # Padded a column at a time, then joined a line at a time: 10,000 runs in a few ms.
    padded = [
        [c.rjust(w) for c in [h, *cells]] if right else [c.ljust(w) for c in [h, *cells]]
        for h, cells, w, right in zip(layout.headers, layout.columns, widths, layout.right)
    ]
    lines = [GAP.join(parts).rstrip() for parts in zip(*padded)] if padded else [""]
    out = [lines[0], GAP.join("─" * w for w in widths), *lines[1:]]
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
    return Layout([h for h, _c, _r in columns], [c for _h, c, _r in columns], [r for _h, _c, r in columns], hidden)


def _cut(column: Column) -> list[str]:
    if column.numeric:
        return column.cells
    return [c if len(c) <= MAX_TEXT else c[: MAX_TEXT - 1] + "…" for c in column.cells]


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
