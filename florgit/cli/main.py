"""``git flor``: list runs, print dataframes, recover killed runs.

Exit codes: 0 success, 1 a florgit error (the message says how to fix it), 2 bad usage,
130 interrupted. Unexpected errors print one line (``FLORGIT_DEBUG=1`` adds the traceback).

Data read from git may come from a teammate's push: everything printed goes through
:mod:`florgit.cli.display` (no markup, no raw control characters, strict JSON).
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from enum import Enum

import typer
from rich.console import Console
from rich.table import Table

from florgit import envflags
from florgit.cli.display import cell, frame_rows_json, json_line, markup, visible, visible_frame
from florgit.cli.display import text as data_text
from florgit.errors import FlorgitError, FlorgitWarning

app = typer.Typer(
    name="git flor",
    help=(
        "florgit: runs, logs, checkpoints and hindsight replay, stored in this git repository.\n\n"
        "Exit codes: 0 success; 1 a florgit error (the message says how to fix it), a failed "
        "`verify` or a failed replay; 2 bad usage; 130 interrupted. Unexpected errors print one "
        "line; set FLORGIT_DEBUG=1 for the traceback."
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True)


def _out() -> Console:
    # Piped output (less, grep, a file) gets wide lines instead of squeezed columns.
    console = Console()
    return console if console.is_terminal else Console(width=250)


@app.command("help")
def help_cmd(ctx: typer.Context, command: str = typer.Argument(None, help="A command to explain.")) -> None:
    """Show this help, or one command's (`git flor --help` is taken by git for man pages)."""
    root = ctx.parent.command if ctx.parent is not None else ctx.command
    if command is None:
        print(root.get_help(ctx.parent or ctx))
        return
    sub = root.get_command(ctx, command) if hasattr(root, "get_command") else None
    if sub is None:
        raise typer.BadParameter(f"no command {command!r}; `git flor help` lists them")
    with typer.Context(sub, info_name=command, parent=ctx.parent) as sub_ctx:
        print(sub.get_help(sub_ctx))


@app.command("log")
def log_cmd(
    n: int = typer.Option(0, "-n", help="Show at most N runs (0: all)."),
    where: str = typer.Option(None, "--where", help="SQL predicate over the columns, e.g. \"lr < 0.01 AND status = 'ok'\"."),
    tag: str = typer.Option(None, "--tag", "-t", help="Only runs with this tag."),
    columns: str = typer.Option(None, "--columns", help="Show these columns, comma-separated (run id, date and status always)."),
    sort: str = typer.Option(None, "--sort", help="Sort by this column (default: newest first)."),
    reverse: bool = typer.Option(False, "--reverse", "-r", help="Reverse the order."),
    only_changed: bool = typer.Option(False, "--only-changed", help="Leave out args and metrics that are the same in every run."),
    wide: bool = typer.Option(False, "--wide", help="Every column in full (the default when output is not a terminal)."),
    as_json: bool = typer.Option(
        False, "--json", help='One JSON object per line; NaN and infinities are written as "NaN", "Infinity", "-Infinity".'
    ),
    as_csv: bool = typer.Option(False, "--csv", help="CSV with a header line."),
) -> None:
    """List recorded runs, newest first. On a terminal: short id, age, status, then the
    metrics (last value), args, commit, branch and script that fit; the rest are named
    below the table."""
    from florgit.cli import runtable

    if not (where or tag or columns or sort or only_changed or as_json or as_csv):
        listing = _plain_listing(n, reverse)
    else:
        from florgit.cli.listing import run_table

        table = run_table(where)
        if table.frame.is_empty() and not where:
            _hint_remote_runs()
        values = runtable.ordered_values(table.frame, table.args, table.metrics)
        frame, values = runtable.select(
            table.frame, values, columns=columns, sort=sort, reverse=reverse, only_changed=only_changed, tag=tag
        )
        if n:
            frame = frame.head(n)
        if as_json or as_csv:
            frame = frame.select("run_id", "date", "status", *values) if (columns or only_changed) else frame
            if as_json:
                for row in frame.iter_rows(named=True):
                    print(json_line(row))
            else:
                _write_data(frame.write_csv())
            return
        listing = runtable.listing_of(frame, values)
    console = Console()
    if wide or not console.is_terminal:
        layout = runtable.wide(listing)
    else:
        layout = runtable.terminal(listing, console.width)
    _write_data(runtable.render(layout))


def _plain_listing(n: int, reverse: bool):
    """Every run's row, newest first (or ``reverse``), at most ``n``: from the memo of the
    same runs' table when there is one (no polars, no run read), else built and remembered."""
    from florgit.cli import log_memo, runtable

    listing, repo, key = log_memo.look_up()  # a hit needs neither pygit2 nor polars
    if listing is None:
        from florgit.cli.listing import run_table

        table = run_table()
        if table.frame.is_empty():
            _hint_remote_runs()
        listing = runtable.listing_of(table.frame, runtable.ordered_values(table.frame, table.args, table.metrics))
        if table.complete and listing.run_ids and log_memo.key(repo) == key:  # no writer changed the runs meanwhile
            log_memo.save(repo, key, listing)
    listing = listing.reverse() if reverse else listing
    return listing.head(n) if n else listing


def _hint_remote_runs() -> None:
    """A fresh clone has no runs yet, but its remote may: say how to get them."""
    from florgit.git import open_repo

    repo = open_repo(require_workdir=False)
    remotes = sorted({r.split("/")[2] for r in repo.refs_under("refs/remotes/") if r.endswith("/flor.shadow")})
    if remotes:
        _err.print(cell(f"no runs here yet, but {', '.join(remotes)} has some: `git flor pull {remotes[0]}` brings them "
                        "(`git flor install` makes every `git pull` bring them)"))  # fmt: skip


def _write_data(text: str) -> None:
    """CSV and the like: exact bytes into a pipe or file, control characters made
    visible on a terminal (a logged ESC must not drive it)."""
    sys.stdout.write(visible(text, keep_newlines=True) if sys.stdout.isatty() else text)


@app.command("show")
def show_cmd(run: str = typer.Argument(..., help="Run: id, unique prefix or suffix, latest or latest~N.")) -> None:
    """A run's metadata, args, metrics, code diff, checkpoints and replays."""
    from florgit.cli.listing import show_run

    _out().print(data_text(show_run(run)), highlight=False)


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


@app.command("diff")
def diff_cmd(
    first: str = typer.Argument(..., help="A run: id, unique prefix or suffix, latest or latest~N."),
    second: str = typer.Argument("latest", help="The other run (default: latest)."),
    show_all: bool = typer.Option(False, "--all", "-a", help="Also show what is the same in both."),
    no_code: bool = typer.Option(False, "--no-code", help="Leave out the code diff."),
) -> None:
    """Compare two runs: status, duration, args, the last/min/max of each logged name,
    and the diff of their code."""
    from florgit.cli.compare import coloured_diff, compare

    rows, diff, ids = compare(first, second)
    out = _out()
    for label, run_id in zip(("run 1", "run 2"), ids):
        out.print(cell(f"{label}: {run_id}"))
    table = Table()
    for title in ("", "run 1", "run 2"):
        table.add_column(cell(title), no_wrap=True)
    always = {"status", "duration"}
    for what, one, two, differs in rows:
        if differs or show_all or what in always:
            style = "bold yellow" if differs else ""
            table.add_row(cell(what, style), cell(one, style), cell(two, style))
    out.print(table)
    if no_code:
        return
    if diff is None:
        out.print(cell("code: not compared (a run has no code snapshot)"))
    elif not diff.strip():
        out.print(cell("code: the same"))
    elif out.is_terminal:
        out.print(coloured_diff(diff), highlight=False, soft_wrap=True)
    else:
        _write_data(diff)


@app.command("plot")
def plot_cmd(
    names: list[str] = typer.Argument(..., help="Logged names to plot (numbers)."),
    where: str = typer.Option(None, "--where", help="Runs by `git flor log`'s columns, e.g. \"lr < 0.01 AND tags LIKE '%best%'\"."),
    run: list[str] = typer.Option(None, "--run", help="Only this run (id, prefix, suffix, latest, latest~N); repeatable."),
    output: str = typer.Option(None, "-o", "--output", help="Write FILE (.png, .svg, or .html that opens offline)."),
    height: int = typer.Option(20, "--height", min=5, help="Terminal chart height in lines."),
) -> None:
    """A metric over its loop iterations, one line per run: in the terminal, or to a file."""
    from florgit.cli import plotting

    chosen = None
    if where:  # runs selected by their run-level values, as `git flor log` shows them
        from florgit.cli.listing import run_table

        chosen = set(run_table(where).frame.get_column("run_id").to_list())
    lines, x_label = plotting.series(list(names), run or None, run_ids=chosen)
    if output:
        plotting.write(lines, x_label, output)
        print(f"wrote {visible(output)}: {len(lines)} line(s)")
        return
    console = Console()
    sys.stdout.write(plotting.terminal(lines, x_label, min(console.width, 160), height, console.is_terminal))


@app.command("report")
def report_cmd(
    output: str = typer.Option("report.html", "-o", "--output", help="The HTML file to write."),
    metric: list[str] = typer.Option(None, "--metric", "-m", help="Plot this name (repeatable; default: the first numeric metrics)."),
    where: str = typer.Option(None, "--where", help="Only runs this SQL predicate over `git flor log`'s columns selects."),
    title: str = typer.Option("florgit runs", "--title", help="The page's title."),
) -> None:
    """One self-contained HTML file (opens offline, no server) with the sortable run
    table and plots of the metrics."""
    from florgit.cli import report

    with _progress("report:") as step:
        page, runs, plots = report.build(list(metric or []) or None, where, title, on_step=step)
    with open(output, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"wrote {visible(output)}: {runs} runs, {plots} plot(s)")


@app.command("dataframe")
def dataframe_cmd(
    names: list[str] = typer.Argument(None, help="Logged names to pivot into columns."),
    fmt: Format = typer.Option(
        None, "--format",
        help=(
            "table, csv, json or parquet (default: from -o's extension, else table). json is JSON "
            'lines, one object per row, as `log --json`; NaN and infinities are written as "NaN", "Infinity", "-Infinity".'
        ),
    ),
    output: str = typer.Option(None, "-o", "--output", help="Write to FILE (.csv, .json, .parquet, .txt) instead of the terminal."),
    where: str = typer.Option(None, "--where", help="Keep the rows this SQL predicate over the columns selects."),
    rank: str = typer.Option(
        None, "--rank", help="Multi-process (torchrun) runs: the ranks to show, e.g. 1, 0,1 or all (default: rank 0, no rank column)."
    ),
) -> None:
    """Print (or write) flor.dataframe(NAME...) for this repository."""
    import polars as pl

    from florgit.frames import dataframe

    fmt = fmt or _format_of(output)
    frame = dataframe(*(names or []), where=where, rank=_ranks_option(rank))
    if fmt is Format.parquet:
        if not output:
            raise typer.BadParameter("parquet is binary: give a file with -o FILE")
        frame.write_parquet(output)
        return
    if fmt is Format.table:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=40):
            text = str(visible_frame(frame)) + "\n"
    else:
        text = frame.write_csv() if fmt is Format.csv else (frame_rows_json(frame) + "\n" if frame.height else "")
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        _write_data(text)


def _ranks_option(text: str | None) -> int | list[int] | str | None:
    """``--rank``: all, one rank or a comma-separated list of ranks."""
    if text is None or text.strip() == "all":
        return None if text is None else "all"
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and len(p) <= 5 for p in parts):
        raise typer.BadParameter(f"{text!r} is not a rank, a list of ranks (0,1) or all", param_hint="--rank")
    return [int(p) for p in parts]


_EXTENSIONS = {".csv": Format.csv, ".json": Format.json, ".parquet": Format.parquet, ".txt": Format.table}


def _format_of(output: str | None) -> Format:
    """The format a file name asks for; no file: the terminal table."""
    if not output:
        return Format.table
    ext = os.path.splitext(output)[1].lower()
    if ext not in _EXTENSIONS:
        raise typer.BadParameter(f"cannot tell the format of {output!r}: name it .csv, .json, .parquet or .txt, or pass --format")
    return _EXTENSIONS[ext]


@app.command("checkpoints")
def checkpoints_cmd(
    run: str = typer.Argument(None, help="Run: id, unique prefix or suffix, latest or latest~N (default: latest)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line (strict JSON)."),
) -> None:
    """List a run's checkpoints: iteration, size, and bytes new to the repository."""
    from florgit.git import open_repo
    from florgit.store import checkpoints as store
    from florgit.store.runs import find_run, list_runs

    repo = open_repo(require_workdir=False)
    if run is None:
        stored = list_runs(repo)
        if not stored:
            raise typer.BadParameter("there are no runs yet")
        run_id = stored[-1].run_id
    else:
        run_id = find_run(repo, run).run_id
    seen: set[str] = set()
    for other in list_runs(repo):  # chunks of earlier runs are not new to this one
        if other.run_id >= run_id:
            break
        for info in store.list_checkpoints(repo, other.run_id):
            seen.update(info.chunks)
    rows = []
    for info in store.list_checkpoints(repo, run_id):
        new = {c for c in info.chunks if c not in seen}
        new_bytes = sum(repo.object_size(c) for c in new)
        seen.update(new)
        rows.append((info, new_bytes))
    if as_json:
        for info, new_bytes in rows:
            print(json_line({"run_id": run_id, "loop": info.loop, "iteration": info.iteration,
                             "boundary": info.boundary, "nbytes": info.nbytes, "stored": info.stored,
                             "new_bytes": new_bytes, "manifest": info.path}))
        return
    table = Table(title=cell(f"checkpoints of {run_id}"))
    for title in ("loop", "iteration", "size", "stored", "new (dedup)"):
        table.add_column(title, justify="right" if title != "loop" else "left", no_wrap=True)
    for info, new_bytes in rows:
        table.add_row(cell(info.loop), cell(info.iteration), _mb(info.nbytes), _mb(info.stored), _mb(new_bytes))
    _out().print(table)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


@app.command("replay")
def replay_cmd(
    names: str = typer.Argument(..., help="Name(s) to compute, comma-separated: the NAME of flor.log(NAME, ...)."),
    where: str = typer.Option(None, "--where", help="SQL predicate selecting runs by their run-level values."),
    run: list[str] = typer.Option(None, "--run", help="Replay this run (id, prefix, suffix, latest, latest~N); repeatable."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Processes to run at once."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before replaying (foreign runs need --trust)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and the patched code; run nothing."),
    partition: str = typer.Option(
        None, "--partition",
        help="K/N: run only the K-th of N shares of the work (default: a Slurm array task's own share; all: everything).",
    ),
    trust: bool = typer.Option(
        False, "--trust", help="Also run foreign runs (recorded in another clone): their code is shown first, then run."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Refuse a plan in which a run's loop-carried variables could not be checkpointed."
    ),
    gpus: str = typer.Option(None, "--gpus", help="GPUs to use, e.g. 0,1: each running task gets one of its own."),
    fetch: bool = typer.Option(
        True, "--fetch/--no-fetch", help="Fetch missing checkpoints of pulled runs from their remote (only those runs')."
    ),
    executor: str = typer.Option("local", "--executor", help="local, or ray: run the tasks on a Ray cluster."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address (default: a running one, else a local one)."),
    ray_clone: str = typer.Option(
        None, "--ray-clone", help="REMOTE: each Ray task clones it and pushes its results (no shared filesystem)."
    ),
    link: list[str] = typer.Option(
        None, "--link", help="A working-tree path git does not track (e.g. data) that replayed code reaches; repeatable."
    ),
) -> None:
    """Hindsight logging: compute new flor.log statements for past runs, from checkpoints.

    Replaying runs a run's own recorded code. Runs pulled from another clone are foreign:
    their code is shown (or its diff against your latest run of the same script) and run
    only with --trust or when you confirm; --yes alone skips them."""
    from rich.progress import Progress

    from florgit.git import open_repo
    from florgit.hindsight.execute import check_links, execute, tasks
    from florgit.hindsight.fetching import fetch_missing, waiting
    from florgit.hindsight.plan import hold_foreign, make_plan

    share = _partition(partition)
    devices = _gpu_list(gpus)
    repo = open_repo()
    links = check_links(repo, link or [])
    plan = make_plan(repo, [n.strip() for n in names.split(",") if n.strip()], where, run or None)
    if waiting(plan):
        got = fetch_missing(repo, plan, fetch=fetch and not dry_run, say=lambda m: _err.print(cell(m)), progress=sys.stderr.isatty())
        if got.runs:
            _err.print(cell(f"fetched the checkpoints of {len(got.runs)} run(s): {got.chunks} chunks, {got.bytes / 1e6:.1f} MB"))
    _out().print(_plan_table(plan, jobs, devices))
    foreign = [r for r in plan.todo if r.foreign]
    if dry_run:
        shown = set()
        for item in plan.todo:
            if item.replay_id not in shown:
                shown.add(item.replay_id)
                print(_visible(f"\n# code of run {item.run_id} with the new statement(s):\n{item.diff}"))
        _show_foreign(repo, foreign)
        return
    if strict and plan.inexact:
        from florgit.errors import UsageError

        raise UsageError(
            f"{len(plan.inexact)} run(s) would replay inexactly (see INEXACT above): their checkpoints lack "
            "loop-carried variables florgit cannot store; drop --strict to replay them anyway"
        )
    if foreign and not _accept_foreign(repo, foreign, trust, yes):
        hold_foreign(plan)
    work = tasks(plan, jobs, share)
    if not work:
        print("nothing to replay")
        _exit_if_skipped(plan)
        return
    if not yes and not typer.confirm(f"Replay {len(work)} task(s)?", default=False):
        raise typer.Exit(1)
    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task("replaying", total=len(work))
        # Foreign runs still in the plan were shown and accepted above.
        results = execute(
            repo, plan, jobs=jobs, partition=share, progress=lambda _r: bar.advance(task), trust_foreign=True, gpus=devices,
            waiting=lambda t: bar.update(task, description=f"replaying {t.run.run_id} [{t.part}]"), executor=executor,
            ray_address=ray_address, ray_clone=ray_clone, links=links,
        )  # fmt: skip
    failed = [r for r in results if not r.ok]
    for result in results:
        state = "ok" if result.ok else "FAILED"
        print(f"{result.run_id} [{result.part}]: {state} in {result.seconds:.1f} s")
    if plan.warm:
        print(_visible(f"started as {plan.warm}"))
    for result in failed:
        print(_visible(f"{result.run_id} [{result.part}] failed:\n{result.output.strip()[-1500:]}"), file=sys.stderr)
    if failed:
        names = ", ".join(dict.fromkeys(r.run_id for r in failed))
        print(f"error: {len(failed)} task(s) failed: {names}", file=sys.stderr)
        raise typer.Exit(1)
    _exit_if_skipped(plan)


def _exit_if_skipped(plan) -> None:
    """A run the plan skipped (other than one already replayed with this code) fails
    the command, naming it, so scripts and schedulers notice."""
    from florgit.hindsight.plan import ALREADY_DONE

    skipped = [r for r in plan.runs if r.skip and r.skip != ALREADY_DONE]
    for item in skipped:
        print(_visible(f"skipped {item.run_id}: {item.skip}"), file=sys.stderr)
    if skipped:
        print(f"error: {len(skipped)} run(s) were not replayed", file=sys.stderr)
        raise typer.Exit(1)


def _accept_foreign(repo, foreign: list, trust: bool, yes: bool) -> bool:
    """Whether to run the code of these foreign runs: with --trust after showing it;
    never with --yes alone; else after showing it, if the user confirms by their ids."""
    ids = ", ".join(r.run_id for r in foreign)
    if yes and not trust:
        for item in foreign:
            print(f"skipping foreign run {item.run_id}: it was recorded in another clone and replaying runs its code; "
                  "review it with --dry-run, then pass --trust to run it")  # fmt: skip
        return False
    _show_foreign(repo, foreign)
    if trust:
        return True
    question = f"Run the code of {len(foreign)} foreign run(s) recorded in another clone ({ids})?"
    return typer.confirm(question, default=False)


def _show_foreign(repo, foreign: list) -> None:
    """Each foreign code version once: its script, or its diff against your own latest
    run of that script (store.trust.review), with control characters made visible."""
    from florgit.store.trust import review

    by_version: dict[tuple, list[str]] = {}
    for item in foreign:
        by_version.setdefault((item.code_tree, item.script), []).append(item.run_id)
    for (tree, script), ids in by_version.items():
        print(f"\n# FOREIGN code, run(s) {', '.join(ids)}: this is what replaying them executes")
        try:
            print(_visible(review(repo, ids[0], script, tree)))
        except FlorgitError as exc:
            print(_visible(f"# cannot show it: {exc}"))


def _visible(text: str) -> str:
    # An ESC or CR in a pulled script must not hide lines on the terminal.
    return visible(text, keep_newlines=True)


def _partition(text: str | None) -> tuple[int, int] | None:
    """--partition K/N; none given: a Slurm array task's share; ``all``: every share."""
    from florgit.hindsight.slurm import share_of

    if text is None or text.strip().lower() == "all":
        share = share_of(None if text is None else "all", os.environ)
        if share is not None:
            _err.print(cell(f"share {share[0]} of {share[1]}, from the Slurm array (--partition all runs everything)"))
        return share
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise typer.BadParameter("--partition takes K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise typer.BadParameter("--partition K/N needs 1 <= K <= N")
    return k, n


def _gpu_list(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        devices = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"--gpus takes device numbers separated by commas, e.g. 0,1; not {text!r}") from None
    if any(d < 0 for d in devices) or len(set(devices)) != len(devices):
        raise typer.BadParameter(f"--gpus takes distinct device numbers, e.g. 0,1; not {text!r}")
    return devices


def _plan_table(plan, jobs: int, gpus: list[int] | None = None) -> Table:
    table = Table(title=cell(f"replay {', '.join(plan.names)}"))
    for title in ("run", "from", "version", "strategy", "iterations", "estimate", "note"):
        table.add_column(title, no_wrap=title != "note")
    total = 0.0
    for item in plan.runs:
        executed = "-" if item.skip else ("all" if item.execute is None else ",".join(map(str, item.execute)))
        estimate = "-" if item.skip else f"{item.estimate_s:.1f} s"
        total += 0 if item.skip else item.estimate_s
        note = item.skip or f"original {item.original_s:.1f} s"
        if item.foreign and not item.skip:
            note += "; foreign: its code runs only with --trust"
        if item.left_out:
            note += "; left out: " + ", ".join(item.left_out)
        if item.note and not item.skip:
            note += f"; {item.note}"
        if item.inexact and not item.skip and item.strategy != "full":
            note += "; INEXACT: " + ", ".join(f"{k} ({t}) is not in its checkpoints" for k, t in item.inexact.items())
        strategy, iterations = ("skip", "-") if item.skip else (item.strategy, f"{executed} of {item.iterations}")
        table.add_row(cell(item.run_id), "FOREIGN" if item.foreign else "here", (item.code_tree or "")[:7],
                      strategy, iterations, estimate, cell(note))  # fmt: skip
    if gpus:
        running = min(jobs, len(gpus))
        where = f"GPUs {','.join(map(str, gpus))}, one per running task ({running} at once)"
    else:
        running = jobs
        where = "no GPUs: tasks see this shell's devices (--gpus gives each its own)"
    table.caption = f"estimated {total / max(1, running):.1f} s with {running} job(s), plus process start-up; {where}"
    return table


@app.command("push")
def push_cmd(
    remote: str = typer.Argument("origin", help="Remote to share with."),
    checkpoints: bool = typer.Option(False, "--checkpoints", help="Also push checkpoint bytes."),
) -> None:
    """Share runs (shadow branch and notes) with REMOTE; merges, never forces."""
    from florgit.git import open_repo
    from florgit.store import sharing

    _report(sharing.push(open_repo(require_workdir=False), remote, checkpoints, sys.stderr.isatty()), "no runs to push yet")


@app.command("pull")
def pull_cmd(
    remote: str = typer.Argument("origin", help="Remote to fetch runs from."),
    checkpoints: bool = typer.Option(False, "--checkpoints", help="Also fetch checkpoint bytes."),
) -> None:
    """Fetch teammates' runs from REMOTE and merge them into yours."""
    from florgit.git import open_repo
    from florgit.store import sharing

    _report(sharing.pull(open_repo(require_workdir=False), remote, checkpoints, sys.stderr.isatty()), f"{remote} has no runs yet")


def _report(result: dict[str, str], nothing: str) -> None:
    for ref, state in result.items():
        print(visible(f"{ref}: {state}"))
    if not result:
        print(nothing)


@app.command("install")
def install_cmd() -> None:
    """Install florgit's git hooks (yours keep running) and the flor git config."""
    from florgit.git import open_repo
    from florgit.git import hooks as git_hooks
    from florgit.git.command import run_git
    from florgit.store import sharing

    repo = open_repo()
    for line in git_hooks.install(repo.workdir):
        print(visible(line))
    remotes = run_git(repo.workdir, "remote").stdout.split() or [None]
    for remote in remotes:
        for setting in sharing.configure(repo, remote):
            print(visible(f"config: {setting}"))


@app.command("uninstall")
def uninstall_cmd() -> None:
    """Remove florgit's git hooks (restoring the ones that were there) and the git config
    that `install` added. Runs and their refs stay."""
    from florgit.git import hooks as git_hooks
    from florgit.git import open_repo
    from florgit.store import sharing

    repo = open_repo()
    for line in git_hooks.uninstall(repo.workdir):
        print(visible(line))
    for setting in sharing.unconfigure(repo):
        print(f"config removed: {visible(setting)}")


@app.command("hook", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def hook_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="Hook name.")) -> None:
    """Run florgit's part of a git hook (the installed hooks call this)."""
    from florgit.cli.hook import main as hook_main

    raise typer.Exit(hook_main([name, *ctx.args]))


@app.command("verify")
def verify_cmd(quick: bool = typer.Option(False, "--quick", help="Check objects only; skip decoding tables and arrays.")) -> None:
    """Check that every object a run, note or checkpoint refers to is present and intact."""
    from florgit.git import open_repo
    from florgit.store.maintenance import verify

    with _progress("verifying") as step:
        report = verify(open_repo(require_workdir=False), deep=not quick, on_run=step)
    for problem in report.problems:
        _err.print(f"[red]problem:[/] {markup(problem)}", highlight=False, soft_wrap=True)
    summary = f"{report.runs} runs, {report.notes} notes, {report.checkpoints} checkpoints, {report.objects} objects"
    if report.problems:
        _err.print(f"{len(report.problems)} problems in {summary}; fetch the missing data again (`git flor pull --checkpoints`)")
        raise typer.Exit(1)
    print(f"ok: {summary} verified")


@contextmanager
def _progress(what: str):
    """A transient progress bar on a terminal's stderr, naming the run in hand; ``step(i,
    n, run_id)`` moves it. Nothing at all when stderr is not a terminal."""
    from rich.progress import Progress

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _i, _n, _run: None
        return
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda i, n, run: bar.update(task, completed=i, total=n, description=f"{what} {run}")


@app.command("tag")
def tag_cmd(
    run: str = typer.Argument(..., help="A run: id, unique prefix or suffix, latest or latest~N."),
    tags: list[str] = typer.Argument(..., help="Tags to add (or remove with --remove)."),
    remove: bool = typer.Option(False, "--remove", "-d", help="Remove these tags."),
) -> None:
    """Tag a run (shared by push and pull); `git flor log --tag TAG` lists the runs with it."""
    _curate(run, "untag" if remove else "tag", tags)


@app.command("note")
def note_cmd(
    run: str = typer.Argument(..., help="A run: id, unique prefix or suffix, latest or latest~N."),
    text: str = typer.Argument(..., help='A note on the run ("" removes it).'),
) -> None:
    """Write a free-text note on a run (shared by push and pull; shown by `log` and `show`)."""
    _curate(run, "note", [text])


def _curate(run: str, op: str, values: list[str]) -> None:
    from florgit.git import open_repo
    from florgit.store import curation
    from florgit.store.runs import find_run

    repo = open_repo(require_workdir=False)
    run_id = find_run(repo, run).run_id
    curation.add(repo, [run_id], op, values, repo.author())
    marks = curation.state(repo).get(run_id, curation.Curation())
    print(f"{visible(run_id)}: tags {visible(', '.join(marks.tags) or '-')}" + (f"; note {visible(marks.note)}" if marks.note else ""))


@app.command("rm")
def rm_cmd(
    runs: list[str] = typer.Argument(None, help="Runs: ids, unique prefixes or suffixes, latest or latest~N."),
    where: str = typer.Option(None, "--where", help="Also every run this SQL predicate over `git flor log`'s columns selects."),
    undo: bool = typer.Option(False, "--undo", help="Bring runs set aside back."),
    reason: str = typer.Option("", "--reason", help="Why; shared with the removal."),
) -> None:
    """Set runs aside: queries, replay and `log` skip them here and, after push and pull,
    in teammates' clones too. Their data stays in git (`--undo` brings them back); `git
    flor gc` drops checkpoint data only removed runs used, but never for runs recorded in
    this clone that someone else removed. Works on runs that fail validation too."""
    from florgit.git import open_repo
    from florgit.store import tombstones
    from florgit.store.runs import find_run

    repo = open_repo(require_workdir=False)
    ids = [find_run(repo, r, removed=True).run_id for r in runs or []]
    if where:
        from florgit.cli.listing import run_table

        ids += [r for r in run_table(where).frame.get_column("run_id").to_list() if r not in ids]
    if not ids:
        raise typer.BadParameter("name runs, or select them with --where")
    if undo:
        tombstones.restore(repo, ids)
    else:
        tombstones.remove(repo, ids, reason)
    for run_id in ids:
        print(f"{'restored' if undo else 'removed'} run {visible(run_id)}")


@app.command("gc")
def gc_cmd() -> None:
    """Recover killed runs, drop leftovers, and pack objects (tuned for incompressible blobs)."""
    from florgit.git import open_repo
    from florgit.store.maintenance import gc

    for line in gc(open_repo(require_workdir=False), progress=sys.stderr.isatty()):
        print(visible(line))


@app.command("recover")
def recover_cmd(quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing.")) -> None:
    """Commit runs left behind by killed processes (status 'killed')."""
    from florgit.git import open_repo
    from florgit.store.recovery import recover_abandoned

    recovered = recover_abandoned(open_repo(require_workdir=False))
    if quiet:
        return
    for run_id in recovered:
        print(f"recovered run {visible(run_id)} (killed)")
    if not recovered:
        print("nothing to recover")


def main(argv: list[str] | None = None) -> int:
    """Run ``git flor``; returns the exit code. No error prints a traceback unless
    ``FLORGIT_DEBUG=1``: florgit's own errors print their message, anything else one
    ``error: <type>: <message>`` line and a hint."""
    from florgit.frames import allocator

    allocator.for_this_process()  # polars, when a command needs it, with huge pages if asked for
    with warnings.catch_warnings():  # restores the caller's warning display afterwards
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        app(args=argv, prog_name="git flor")
    except FlorgitError as exc:
        _error_line(markup(exc, keep_newlines=True))
        return 1
    except SystemExit as exc:  # typer/click exit codes (2 for bad usage, 130 on Ctrl-C)
        if exc.code == 130 and _interrupted(exc):
            return _interrupt()
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        _error_line(markup(exc.code))  # sys.exit("message")
        return 1
    except KeyboardInterrupt:
        return _interrupt()
    except Exception as exc:  # a bug, or a library failing on data: one line, not a traceback
        if _debug():
            import traceback

            traceback.print_exc()
        message = str(exc).strip()
        first = message.splitlines()[0] if message else ""
        _error_line(markup(f"{type(exc).__name__}: {first}" if first else type(exc).__name__))
        if not _debug():
            _err.print("hint: set FLORGIT_DEBUG=1 for details", highlight=False)
        return 1
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """florgit's warnings (a run left out, a checkpoint skipped) as one escaped line each,
    without the file and line of florgit's source that raised them; others as Python shows them."""
    if not issubclass(category, FlorgitWarning):
        _python_showwarning(message, category, filename, lineno, file, line)
        return
    text = str(message).removeprefix("florgit: ")
    _err.print(f"[yellow]warning:[/] {markup(text)}", highlight=False, soft_wrap=True)


_python_showwarning = warnings.showwarning


def _error_line(escaped: str) -> None:
    _err.print(f"[bold red]error:[/] {escaped}", highlight=False, soft_wrap=True)


def _debug() -> bool:
    return envflags.enabled("FLORGIT_DEBUG", False)


def _interrupted(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # typer turns Ctrl-C into Exit(130) raised from the KeyboardInterrupt
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _interrupt() -> int:
    try:
        _err.print("interrupted", highlight=False)
    except Exception:
        pass
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
