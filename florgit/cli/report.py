"""``git flor report``: one self-contained HTML file with the run table and plots.

How a team looks at a repository's runs without a server: the file holds everything
(inline SVG plots, inline CSS, a few lines of inline script that sort the table when a
header is clicked) and fetches nothing. Every value from git is HTML-escaped.
"""

from __future__ import annotations

import html

import polars as pl

from florgit.cli import plotting
from florgit.cli.display import show_value, visible

MAX_PLOTS = 6

_SORT = """
document.querySelectorAll("table.runs").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var down = th.getAttribute("data-order") !== "asc";
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return down ? -c : c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
      th.setAttribute("data-order", down ? "desc" : "asc");
    });
  });
  table.setAttribute("data-sortable", "ready");
});
"""


def build(metrics: list[str] | None, where: str | None, title: str, on_step=None) -> tuple[str, int, int]:
    """The page, and how many runs and plots it holds; ``on_step(i, n, what)`` follows
    its progress."""
    from florgit.cli.listing import run_table

    table = run_table(where)
    frame = table.frame
    chosen = metrics if metrics else [m for m in table.metrics if frame.schema[m].is_numeric()][:MAX_PLOTS]
    figures = []
    run_ids = set(frame.get_column("run_id").to_list()) if where else None
    from florgit import dataframe

    values = dataframe(*chosen) if chosen else None  # one load for every plot
    for i, name in enumerate(chosen):
        if on_step is not None:
            on_step(i, len(chosen), f"plotting {name}")
        try:
            lines, x_label = plotting.series([name], run_ids=run_ids, frame=values, frame_names=chosen)
        except Exception as exc:  # one metric that cannot be plotted never loses the report
            figures.append((f"{name}: not plotted ({visible(exc)})", ""))
            continue
        figures.append((name, plotting.svg(lines, x_label)))
    body = _table_html(frame, [*table.metrics, *table.args])
    page = plotting.page(figures, title, body, script=_SORT)
    return page, frame.height, sum(1 for _c, svg in figures if svg)


def _table_html(frame: pl.DataFrame, values: list[str]) -> str:
    columns = ["run_id", "date", "status", "tags", "commit", "branch", *values, "note"]
    columns = [c for c in dict.fromkeys(columns) if c in frame.columns]
    head = "".join(f"<th>{html.escape(visible(c))}</th>" for c in columns)
    rows = []
    for row in frame.select(columns).iter_rows():
        cells = "".join(
            f'<td data-v="{html.escape(_sort_key(v), quote=True)}">{html.escape(show_value(v))}</td>' for v in row
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f"<p>{frame.height} runs; click a column to sort.</p>"
        f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _sort_key(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return show_value(value)
