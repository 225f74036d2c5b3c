"""The run listing of ``git flor log`` and the run report of ``git flor show``."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from florgit.cli.display import visible as v
from florgit.validation import OID


LISTING_COLUMNS = [
    "run_id", "date", "commit", "branch", "script", "status", "tags", "note",
    "duration_s", "author", "user_commit", "dirty",  # in --json/--csv/--wide; --columns picks them
]  # fmt: skip


@dataclass
class RunTable:
    frame: pl.DataFrame  # LISTING_COLUMNS, then one column per arg, then per metric
    args: list[str]  # the arg columns, as named in frame
    metrics: list[str]  # the other logged names' columns (their last value)
    complete: bool = True  # False when a run was left out (warned)


def run_table(where: str | None = None) -> RunTable:
    """One row per run, newest first, with the last value of every logged name (named by
    the rule of florgit.frames.columns: a metric called ``status`` is ``log:status``)."""
    from florgit.frames import columns
    from florgit.frames.runlist import run_list

    listed = run_list()
    frame = listed.frame.select(
        "run",
        "run_id",
        pl.col("start_time").dt.strftime("%Y-%m-%d %H:%M").alias("date"),
        (pl.col("user_commit").str.slice(0, 7).fill_null("-------") + pl.when(pl.col("dirty")).then(pl.lit("+")).otherwise(pl.lit(""))).alias("commit"),
        pl.col("branch").fill_null("(detached)"),
        "script",
        "status",
        pl.col("tags").list.join(","),  # one text column: `--where "tags LIKE '%best%'"`
        "note",
        "duration_s",
        "author",
        "user_commit",
        "dirty",
        *(columns.logged(n) for n in listed.names),
    )
    shown = columns.display(LISTING_COLUMNS, [], [(columns.logged(n), n) for n in listed.names])
    frame = frame.sort("run", descending=True).drop("run").rename(shown)
    if where:
        from florgit.frames.where import apply_where

        frame = apply_where(frame, where)
    as_shown = [shown[columns.logged(n)] for n in listed.names]
    n_args = len(listed.args)
    return RunTable(frame, as_shown[:n_args], as_shown[n_args:], listed.complete)


def show_run(prefix: str) -> str:
    """A plain-text report of one run; every value read from git is made visible (no
    control characters), so print it as text, never as rich markup."""
    from florgit.git import open_repo
    from florgit.store import checkpoints, runs

    repo = open_repo(require_workdir=False)
    stored = runs.find_run(repo, prefix)
    meta = runs.read_meta(repo, stored)
    cwd = repo.workdir or repo.git_dir
    lines = [
        f"run      {v(meta.run_id)}   status {v(meta.status)}" + (f"   error {v(meta.error)}" if meta.error else ""),
        f"started  {v(meta.start)}   ended {v(meta.end or '-')}",
        f"script   {v(meta.script)}   argv {v(' '.join(meta.argv))}",
        f"commit   {v(meta.user_commit or '(no commits yet)')}{' + uncommitted changes' if meta.dirty else ''}"
        f"   branch {v(meta.branch or '(detached HEAD)')}",
        f"versions python {v(meta.python)}, torch {v(meta.torch or '-')}, florgit {v(meta.florgit)}; "
        f"host {v(meta.host)}, pid {meta.pid}",
    ]
    from florgit.store import curation

    marks = curation.state(repo).get(meta.run_id)
    if marks is not None and (marks.tags or marks.note):
        lines.append(f"tags     {v(', '.join(marks.tags) or '-')}" + (f"   note {v(marks.note)}" if marks.note else ""))
    if meta.skipped_files:
        lines.append(f"left out of the code snapshot (large untracked files): {v(', '.join(meta.skipped_files))}")
    lines.append("")
    lines.append("args     " + (" ".join(f"{v(k)}={v(val)}" for k, val in meta.args.items()) or "-"))
    if meta.unused_kwargs:
        lines.append(f"unused --kwargs: {v(', '.join(meta.unused_kwargs))}")
    lines += ["", "metrics"] + _metrics(repo, stored, set(meta.args))
    taken = checkpoints.list_checkpoints(repo, meta.run_id)
    lines += ["", f"checkpoints {len(taken)}" + (f" ({sum(c.stored for c in taken) / 1e6:.1f} MB stored)" if taken else "")]
    for info in taken[:20]:
        lines.append(f"  {v(info.loop)} iteration {info.iteration:>4}: {info.nbytes / 1e6:.2f} MB")
    from florgit.store.replays import read_replays

    done = read_replays(repo, stored)
    lines += ["", f"replays  {len(done) or 'none recorded'}"]
    for part in done:
        lines.append(f"  {v(', '.join(part.names))}: {part.values} values, strategy {part.strategy}, part {part.part}")
    if meta.user_commit and meta.code_tree:
        diff = code_diff(cwd, meta.user_commit, meta.code_tree)
        if diff is None:
            lines += ["", "code diff: not shown (the run's commit or code snapshot is not a git object id)"]
        else:
            shown = v(diff.rstrip(), keep_newlines=True) or "  (the run used the committed code)"
            lines += ["", f"code diff against {meta.user_commit[:12]}:", shown]
    return "\n".join(lines)


def code_diff(cwd: str, commit: str, tree: str) -> str | None:
    """``git diff`` of a run's snapshot against its commit; None unless both are object
    ids. ``--end-of-options`` keeps an id that starts with ``-`` from being an option."""
    from florgit.git.command import run_git

    if not (isinstance(commit, str) and isinstance(tree, str) and OID.match(commit) and OID.match(tree)):
        return None
    args = ("diff", "--stat", "--patch", "--no-color", "--end-of-options", commit, tree, "--")
    return run_git(cwd, *args, check=False).stdout


@dataclass(frozen=True)
class Summary:
    name: str
    count: int
    last: object
    low: float | None  # min and max of the numeric values, when there are several
    high: float | None


def summaries(repo, stored) -> dict[str, Summary]:
    """Each logged name of a run (its own records): how often, the last value, min and max."""
    from florgit.codec.values import FLOAT, INT
    from florgit.store import layout, runs

    records = pl.from_arrow(runs.read_table(repo, stored, layout.RECORDS))
    out = {}
    for name in records.get_column("name").unique(maintain_order=True).to_list():
        part = records.filter(pl.col("name") == name)
        numeric = part.filter(pl.col("kind").is_in([INT, FLOAT]))
        column = numeric.select(pl.when(pl.col("kind") == FLOAT).then(pl.col("f")).otherwise(pl.col("i").cast(pl.Float64))).to_series()
        last = part.row(-1, named=True)
        shown = last["f"] if last["kind"] == FLOAT else last["i"] if last["kind"] == INT else last["s"]
        several = column.len() > 1
        out[name] = Summary(name, part.height, shown, column.min() if several else None, column.max() if several else None)
    return out


def _metrics(repo, stored, args: set[str]) -> list[str]:
    out = []
    for s in summaries(repo, stored).values():
        if s.name in args:
            continue  # shown under args
        stats = f"   min {s.low:.6g}  max {s.high:.6g}" if s.low is not None else ""
        out.append(f"  {v(s.name):24s} {s.count:>8,} logged   last {v(s.last)}{stats}")
    return out or ["  -"]
