"""The run listing of ``git flor log`` and the run report of ``git flor show``."""

from __future__ import annotations

import polars as pl

from florgit.errors import QueryError


def run_table(where: str | None = None) -> pl.DataFrame:
    """One row per run, newest first, with the last value of every logged name."""
    from florgit.frames.loader import load
    from florgit.frames.typing import dtype_for, value_expr

    loaded = load()
    runs = loaded.runs
    arg_names = list(dict.fromkeys(n for names in runs.get_column("args").to_list() for n in names))
    last = loaded.records.group_by("run", "name").agg(pl.all().sort_by("seq").last())
    names = arg_names + sorted(set(last.get_column("name").unique().to_list()) - set(arg_names))
    frame = runs.select(
        "run",
        "run_id",
        pl.col("start_time").dt.strftime("%Y-%m-%d %H:%M").alias("date"),
        (pl.col("user_commit").str.slice(0, 7).fill_null("-------") + pl.when(pl.col("dirty")).then(pl.lit("+")).otherwise(pl.lit(""))).alias("commit"),
        pl.col("branch").fill_null("(detached)"),
        "script",
        "status",
    )
    for name in names:
        if name in frame.columns:
            continue  # a metric named like a listing column stays in `git flor show`
        part = last.filter(pl.col("name") == name)
        typed = part.select("run", value_expr(dtype_for(set(part.get_column("kind").to_list()))).alias(name))
        frame = frame.join(typed, on="run", how="left", maintain_order="left")
    frame = frame.sort("run", descending=True).drop("run")
    if where:
        try:
            frame = frame.sql(f"SELECT * FROM self WHERE {where}")
        except Exception as exc:
            raise QueryError(f"--where {where!r} is not a valid SQL predicate over {frame.columns}: {exc}") from None
    return frame


def show_run(prefix: str) -> str:
    """A plain-text report of one run."""
    from florgit.git import open_repo
    from florgit.git.command import run_git
    from florgit.store import checkpoints, runs

    repo = open_repo(require_workdir=False)
    stored = runs.find_run(repo, prefix)
    meta = runs.read_meta(repo, stored)
    cwd = repo.workdir or repo.git_dir
    lines = [
        f"run      {meta.run_id}   status {meta.status}" + (f"   error {meta.error}" if meta.error else ""),
        f"started  {meta.start}   ended {meta.end or '-'}",
        f"script   {meta.script}   argv {' '.join(meta.argv)}",
        f"commit   {meta.user_commit or '(no commits yet)'}{' + uncommitted changes' if meta.dirty else ''}"
        f"   branch {meta.branch or '(detached HEAD)'}",
        f"versions python {meta.python}, torch {meta.torch or '-'}, florgit {meta.florgit}; host {meta.host}, pid {meta.pid}",
    ]
    if meta.skipped_files:
        lines.append(f"left out of the code snapshot (large untracked files): {', '.join(meta.skipped_files)}")
    lines.append("")
    lines.append("args     " + (" ".join(f"{k}={v}" for k, v in meta.args.items()) or "-"))
    if meta.unused_kwargs:
        lines.append(f"unused --kwargs: {', '.join(meta.unused_kwargs)}")
    lines += ["", "metrics"] + _metrics(repo, stored)
    taken = checkpoints.list_checkpoints(repo, meta.run_id)
    lines += ["", f"checkpoints {len(taken)}" + (f" ({sum(c.stored for c in taken) / 1e6:.1f} MB stored)" if taken else "")]
    for info in taken[:20]:
        lines.append(f"  {info.loop} iteration {info.iteration:>4}: {info.nbytes / 1e6:.2f} MB")
    from florgit.store.replays import read_replays

    done = read_replays(repo, stored)
    lines += ["", f"replays  {len(done) or 'none recorded'}"]
    for replay_meta, _data in done:
        lines.append(f"  {', '.join(replay_meta['names'])}: {replay_meta['values']} values, strategy {replay_meta['strategy']}, part {replay_meta['part']}")
    if meta.user_commit and meta.code_tree:
        diff = run_git(cwd, "diff", "--stat", "--patch", "--no-color", meta.user_commit, meta.code_tree, check=False).stdout
        lines += ["", f"code diff against {meta.user_commit[:12]}:", diff.rstrip() or "  (the run used the committed code)"]
    return "\n".join(lines)


def _metrics(repo, stored) -> list[str]:
    from florgit.codec.values import FLOAT, INT
    from florgit.store import layout, runs

    records = pl.from_arrow(runs.read_table(repo, stored, layout.RECORDS))
    out = []
    for name in records.get_column("name").unique(maintain_order=True).to_list():
        part = records.filter(pl.col("name") == name)
        numeric = part.filter(pl.col("kind").is_in([INT, FLOAT]))
        values = numeric.select(pl.when(pl.col("kind") == FLOAT).then(pl.col("f")).otherwise(pl.col("i").cast(pl.Float64)).alias("v"))
        last = part.row(-1, named=True)
        shown = last["f"] if last["kind"] == FLOAT else last["i"] if last["kind"] == INT else last["s"]
        stats = ""
        if values.height > 1:
            v = values.get_column("v")
            stats = f"   min {v.min():.6g}  max {v.max():.6g}"
        out.append(f"  {name:24s} {part.height:>8,} logged   last {shown}{stats}")
    return out or ["  -"]
