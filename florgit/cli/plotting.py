"""``git flor plot``: a logged name over its loop iterations, one line per run.

The series come from ``flor.dataframe``: x is the name's loop (its innermost one; with
nested loops, the iterations counted through the run), y its value. A terminal gets a
plotext chart; ``-o`` writes PNG or SVG with matplotlib, or an HTML page that embeds the
SVG (no script, no CDN: it opens offline). Both libraries are the ``plot`` extra.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass

import polars as pl

from florgit.errors import QueryError


@dataclass
class Series:
    run_id: str
    name: str
    x: list[float]
    y: list[float]

    @property
    def label(self) -> str:
        return f"{self.run_id[-8:]} {self.name}"


def series(
    names: list[str], runs: list[str] | None = None, run_ids: set[str] | None = None,
    frame: pl.DataFrame | None = None, frame_names: list[str] | None = None,
) -> tuple[list[Series], str]:
    """One series per run and name, and the x axis' label; ``runs`` are references,
    ``run_ids`` exact ids (both narrow the runs when given). ``frame``: the dataframe of
    ``frame_names`` (which include ``names``) when the caller has it already."""
    from florgit import dataframe

    if frame is None:
        frame, frame_names = dataframe(*names), names
    if run_ids is not None:
        frame = frame.filter(pl.col("run_id").is_in(list(run_ids)))
    if runs:
        from florgit.git import open_repo
        from florgit.store.runs import find_run

        repo = open_repo(require_workdir=False)
        frame = frame.filter(pl.col("run_id").is_in([find_run(repo, r).run_id for r in runs]))
    # dataframe's columns: run_id, start_time, script, the loop columns, then the names
    loop_columns = frame.columns[3 : len(frame.columns) - len(frame_names or names)]
    candidates = [c for c in loop_columns if frame.schema[c].is_integer()]
    out, x_label = [], "run"
    for name in names:
        if not frame.schema[name].is_numeric():
            raise QueryError(f"{name!r} holds {frame.schema[name]} values; plot takes numbers")
        rows = frame.filter(pl.col(name).is_not_null())
        loops = [c for c in candidates if rows.get_column(c).null_count() < rows.height]  # the name's own loops
        if loops:
            x_label = loops[0] if len(loops) == 1 else f"{loops[-1]} (counted through the run)"
        for run_id, part in rows.group_by("run_id", maintain_order=True):
            ys = part.get_column(name).cast(pl.Float64).to_list()
            xs = part.get_column(loops[0]).to_list() if len(loops) == 1 else list(range(len(ys)))
            out.append(Series(str(run_id[0]), name, [float(x) for x in xs], ys))
    if not out:
        raise QueryError(f"no run logged {', '.join(map(repr, names))} with the runs selected; see `git flor log`")
    return out, x_label


def terminal(lines: list[Series], x_label: str, width: int, height: int, colour: bool) -> str:
    plt = _plotext()
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("pro" if colour else "clear")
    for s in lines:
        plt.plot(s.x, s.y, label=s.label, marker="braille")
    plt.xlabel(x_label)
    chart = plt.build()
    return (chart if colour else _ANSI.sub("", chart)) + "\n"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # plotext's own colour codes, even in its plain theme


def write(lines: list[Series], x_label: str, path: str) -> None:
    """PNG, SVG or HTML by the file's extension."""
    kind = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if kind not in ("png", "svg", "html", "htm"):
        raise QueryError(f"cannot tell what to write to {path!r}: name it .png, .svg or .html")
    figure = _figure(lines, x_label)
    if kind == "png":
        figure.savefig(path, dpi=120)
        return
    svg = io.StringIO()
    figure.savefig(svg, format="svg")
    if kind == "svg":
        with open(path, "w", encoding="utf-8") as f:
            f.write(svg.getvalue())
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(page([(", ".join(dict.fromkeys(s.name for s in lines)), svg.getvalue())], "florgit plot"))


def svg(lines: list[Series], x_label: str) -> str:
    out = io.StringIO()
    _figure(lines, x_label).savefig(out, format="svg")
    return out.getvalue()


def page(figures: list[tuple[str, str]], title: str, body_html: str = "", script: str = "") -> str:
    """A self-contained HTML page: inline SVG figures (and ``script``, inline), nothing
    fetched. ``figures`` are (caption, SVG document); an empty SVG shows the caption alone."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}figure{margin:1em 0}svg{max-width:100%;height:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "th{cursor:pointer;background:#f4f4f4}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        body_html,
    ]
    for caption, figure in figures:
        start = figure.find("<svg")
        shown = figure[start:] if start >= 0 else ""
        parts.append(f"<figure>{shown}<figcaption>{html.escape(caption)}</figcaption></figure>")
    if script:
        parts.append(f"<script>{script}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _figure(lines: list[Series], x_label: str):
    try:
        import matplotlib
    except ImportError:
        raise QueryError("writing plots needs matplotlib: `pip install 'florgit[plot]'`") from None

    matplotlib.use("Agg")  # files only: never a window
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "florgit"  # the same data gives the same SVG
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for s in lines:
        axes.plot(s.x, s.y, label=s.label, linewidth=1.2)
    axes.set_xlabel(x_label)
    axes.set_ylabel(", ".join(dict.fromkeys(s.name for s in lines)))
    axes.grid(alpha=0.3)
    if len(lines) <= 12:
        axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _plotext():
    try:
        import plotext
    except ImportError:
        raise QueryError("plotting in the terminal needs plotext: `pip install 'florgit[plot]'`") from None
    return plotext
