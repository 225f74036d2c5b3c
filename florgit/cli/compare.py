"""``git flor diff RUN1 RUN2``: what differs between two runs, for a person to read.

Args and the last/min/max of every logged name side by side (differences marked), status,
duration, where each ran, and the diff of their code snapshots. Everything read from git
is shown as text (never markup, control characters made visible); the code diff is
coloured here, line by line, not by git, so a pulled run's bytes cannot drive the terminal.
"""

from __future__ import annotations

from datetime import datetime

from florgit.cli.display import show_value
from florgit.cli.display import visible as v


def compare(first: str, second: str) -> tuple[list[tuple[str, str, str, bool]], str | None, tuple[str, str]]:
    """Rows ``(what, run 1, run 2, differs)``, the code diff (None: not available) and
    the two run ids."""
    from florgit.cli.listing import code_diff, summaries
    from florgit.git import open_repo
    from florgit.store import runs

    repo = open_repo(require_workdir=False)
    stored = [runs.find_run(repo, first), runs.find_run(repo, second)]
    metas = [runs.read_meta(repo, s) for s in stored]
    rows = [
        _row("status", *(m.status for m in metas)),
        _row("duration", *(_duration(m.start, m.end) for m in metas)),
        _row("commit", *(f"{(m.user_commit or '-')[:12]}{'+' if m.dirty else ''}" for m in metas)),
        _row("branch", *(m.branch or "(detached)" for m in metas)),
        _row("script", *(m.script for m in metas)),
    ]
    args = list(dict.fromkeys([*metas[0].args, *metas[1].args]))
    rows += [_row(f"arg {name}", *(show_value(m.args.get(name, "-")) for m in metas)) for name in args]
    sums = [summaries(repo, s) for s in stored]
    for name in dict.fromkeys([*sums[0], *sums[1]]):
        if name in args:
            continue
        for label, pick in (("last", lambda s: s.last), ("min", lambda s: s.low), ("max", lambda s: s.high)):
            cells = [show_value(pick(s[name])) if name in s else "-" for s in sums]
            if label == "last" or any(c not in ("", "-") for c in cells):
                rows.append(_row(f"{name} {label}", *cells))
    cwd = repo.workdir or repo.git_dir
    trees = [m.code_tree for m in metas]
    diff = code_diff(cwd, trees[0], trees[1]) if all(trees) else None
    return rows, diff, (metas[0].run_id, metas[1].run_id)


def _row(what: str, one: object, two: object) -> tuple[str, str, str, bool]:
    a, b = v(show_value(one)), v(show_value(two))
    return v(what), a, b, a != b


def _duration(start: str, end: str | None) -> str:
    if not end:
        return "-"
    try:
        seconds = (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return "-"
    minutes, secs = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h{minutes:02d}m{secs:04.1f}s" if hours else f"{minutes}m{secs:04.1f}s" if minutes else f"{secs:.1f}s"


def coloured_diff(diff: str):
    """The diff as rich Text: additions green, removals red, hunk headers cyan."""
    from rich.text import Text

    out = Text()
    for line in diff.splitlines():
        style = ""
        if line.startswith(("+++", "---", "diff --git", "index ")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        out.append(v(line) + "\n", style=style)
    return out
