#!/usr/bin/env python
"""Team scale: many runs in one repository, and what daily queries cost at that size.

Records ``--runs`` runs (default 10,000) of 100 records each in ONE process (a sweep),
printing the cost per run of each thousand (it must not grow with the runs already
stored), then measures in fresh processes, at 1,000 runs and at the full count:
the first query (it fills the query cache), then ``flor.dataframe("lr", "acc")``,
``flor.runs()`` and ``git flor log`` (median of 3, with each process's peak memory), and how
many bytes one more run adds to a bare remote that already has the others. Then
``flor.dataframe("loss")`` over 10 runs x 10k records (target <= 0.1 s in a fresh process)
and 100 runs x 100k records (10M; ``--big`` adds 100 x 1M = 100M); ``--skip-long`` skips these.
Each long case prints the median of 3 fresh processes and their peak memory, and apart
from them the first query after recording (it fills the query cache).

florgit keeps the finished frame of a query (frames.results). Query figures are for a new
question (kept results deleted before each process: the query cache answers), and
"asked again" for the same question once more (its kept result answers).

FlorDB 4.0.1 does the same work in the same session, its figures printed on an indented
line under florgit's, with the ratio FlorDB/florgit wherever both did the same work:
  - recording: the same sweep (``flor.arg``, ``flor.loop``, ``flor.log``, ``flor.commit()``
    between runs, one process), capped at ``--flordb-runs`` runs (default 500) as FlorDB
    commits every run to SQLite and git; cost per run of each hundred, and over all with the
    ratio to florgit's over the same run numbers. florgit's queries are also measured at
    FlorDB's run count, so the query ratios compare repositories of the same runs;
  - the first query (one process) and ``flor.dataframe("lr", "acc")`` (median of 3) over
    FlorDB's repository, fresh processes, with peak memory;
  - the bytes one more run adds to a bare remote: FlorDB commits each run's JSONL to git,
    so a plain ``git push`` of its branch is its equivalent of ``git flor push``;
  - ``flor.dataframe("loss")`` for long runs up to ``--flordb-long-records`` records in all
    (default 100k: the 10 runs x 10k case); larger cases read n/a.
``flor.runs()`` and ``git flor log`` have no FlorDB equivalent and read n/a. FlorDB's figures
read n/a if its virtualenv (``--flordb-venv``, created with pip when missing) is unusable;
florgit's figures print regardless. FlorDB prints every ``flor.log`` and draws progress bars:
its stdout goes to /dev/null and its stderr to a file (shown if it fails).

Timings are printed, never asserted. Keep ``--runs`` small on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchenv import FLORDB_VERSION, VENV, flordb_python, isolated_env

FLORDB = f"FlorDB {FLORDB_VERSION}"
# Fresh-process targets for flor.dataframe("loss"): (runs, records) -> (florgit's target, FlorDB as the issue measured it), s
LONG_TARGETS = {(10, 10_000): (0.1, 0.78)}
TIMEOUT_S = 3600  # per FlorDB subprocess, so a hung FlorDB cannot hang the benchmark

# Both libraries run these, `flor = __import__(argv[1])`. FlorDB parses argv on import, but only
# acts on its own commands and flags, which these arguments never are.
SWEEP = """\
import os, sys, time
progress = os.fdopen(os.dup(1), "w")  # the "@" lines for the parent; stdout itself goes to
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # /dev/null, as FlorDB prints every flor.log
flor = __import__(sys.argv[1])

total, report = int(sys.argv[2]), int(sys.argv[3])
start, last = time.perf_counter(), 0
for r in range(total):
    lr = flor.arg("lr", 0.001 * (1 + r % 10))
    for epoch in flor.loop("epoch", range(100)):
        flor.log("acc", epoch / 100 + lr)
    flor.commit()
    if (r + 1) % report == 0 or r + 1 == total:
        now = time.perf_counter()
        print(f"@ {r + 1} {(now - start) / (r + 1 - last) * 1e3:.2f}", file=progress, flush=True)
        start, last = now, r + 1
"""

LONG = """\
import sys
flor = __import__(sys.argv[1])

runs, records = int(sys.argv[2]), int(sys.argv[3])
for r in range(runs):
    for step in flor.loop("step", range(records)):
        flor.log("loss", 1.0 / (step + 1 + r))
    flor.commit()
"""

MEASURE = """\
import json, resource, sys, time
start = time.perf_counter()
flor = __import__(sys.argv[1])
what = sys.argv[2]
imported = time.perf_counter()
if sys.argv[1] == "florgit":  # what florgit's query would import first: timed apart, as a floor
    from florgit.frames.allocator import import_polars

    import_polars()
lib = time.perf_counter() - imported
if what == "runs":
    out = flor.runs()
else:
    out = flor.dataframe(*what.split(","))
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if hasattr(out, "estimated_size"):  # polars (florgit)
    rows, size = out.height, out.estimated_size()
else:  # pandas (FlorDB)
    rows, size = len(out), int(out.memory_usage(deep=True).sum())
print(json.dumps({"s": took, "polars": lib, "rows": rows, "peak": peak, "size": size}))
"""


class BenchError(Exception):
    pass


@dataclass
class Side:
    """One library's side: its python, module and environment; ``python`` None when unavailable."""

    name: str
    module: str
    python: str | None
    env: dict
    why: str = ""  # why python is None, in a few words
    tmp: Path | None = None  # where a failing process's stderr goes

    def na(self, text: str | None = None) -> None:
        print(f"    {self.name}: n/a ({text or self.why})", flush=True)

    def say(self, text: str) -> None:
        print(f"    {self.name}: {text}", flush=True)

    def failed(self, exc: Exception) -> None:
        """A FlorDB step failed: say so, and leave FlorDB out from here on."""
        self.python, self.why = None, "failed above"
        self.na(f"failed: {exc}")


def ratio(theirs: float, ours: float) -> str:
    return f"FlorDB/florgit {theirs / ours:,.1f}x" if ours > 0 else "FlorDB/florgit n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="Example (small): python scripts/bench_scale.py --runs 200 --skip-long"
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=10_000, help="runs florgit records (default 10,000)")
    parser.add_argument("--big", action="store_true", help="also 100 runs x 1M records (100M)")
    parser.add_argument("--skip-long", action="store_true", help="skip the long-run dataframe cases")
    parser.add_argument("--flordb-runs", type=int, default=500, metavar="N",
                        help="runs FlorDB records, at most --runs (default 500; 0 leaves FlorDB out)")  # fmt: skip
    parser.add_argument("--flordb-long-records", type=int, default=100_000, metavar="N",
                        help="the long cases FlorDB does: up to N records in all (default 100,000: 10 runs x 10k)")  # fmt: skip
    parser.add_argument("--flordb-venv", type=Path, default=VENV, metavar="DIR",
                        help=f"FlorDB {FLORDB_VERSION}'s virtualenv, created with pip when missing (default {VENV})")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="florgit-bench-scale-") as tmp:
        env = isolated_env(tmp, ROOT)
        ours = Side("florgit", "florgit", sys.executable, env)
        theirs = _flordb(args, env, Path(tmp))
        cap = min(args.runs, args.flordb_runs) if theirs.python else 0
        sweep(Path(tmp), ours, theirs, args.runs, cap)
        if not args.skip_long:
            cases = [(10, 10_000), (100, 100_000)] + ([(100, 1_000_000)] if args.big else [])
            long_runs(Path(tmp), ours, theirs, cases, args.flordb_long_records)


def _flordb(args: argparse.Namespace, env: dict, tmp: Path) -> Side:
    # FlorDB reads FLOR_* settings; florgit's PYTHONPATH has no business in its venv.
    fenv = {k: v for k, v in env.items() if not k.startswith("FLOR_") and k != "PYTHONPATH"}
    side = Side(FLORDB, "flordb", None, fenv, tmp=tmp)
    if args.flordb_runs <= 0:
        side.why = "left out: --flordb-runs 0"
        print(f"{FLORDB}: {side.why}", flush=True)
        return side
    side.python, how = flordb_python(args.flordb_venv)
    if side.python is None:
        side.why = "unavailable, see the top"
        print(f"{FLORDB}'s figures read n/a, it is unavailable: {how}", flush=True)
    else:
        print(f"{FLORDB}: {args.flordb_venv} ({how})", flush=True)
    return side


def _repo(path: Path, env: dict) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=env)
    (path / "train.py").write_text("# the sweep's script\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)
    return path


def _sweep_repo(path: Path, env: dict) -> Path:
    repo = _repo(path, env)
    bare = path.parent / f"{path.name}-remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=env)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=repo, check=True, env=env)
    (repo / "sweep.py").write_text(SWEEP)
    return repo


def sweep(tmp: Path, ours: Side, theirs: Side, total: int, cap: int) -> None:
    repo = _sweep_repo(tmp / "sweep", ours.env)
    fdb_repo = _sweep_repo(tmp / "sweep-flordb", theirs.env) if cap else None
    first = min(1000, total)
    stops = sorted({first, total} | ({cap} if cap else set()))
    also = f"; {FLORDB} records {cap:,} of them the same way, ms per run of each hundred" if cap else ""
    print(f"recording {total:,} runs x 100 records in one process (ms per run of each thousand{also}):", flush=True)
    done = fdb_done = 0
    for stop in stops:
        ms = _record(repo, ours, done, stop, min(1000, stop - done))
        if fdb_repo and theirs.python and stop <= cap:
            try:
                report = min(100, stop - fdb_done)
                fdb_ms = _record(fdb_repo, theirs, fdb_done, stop, report, show=stop - fdb_done > report)
                theirs.say(f"runs {_span(fdb_done, stop)}: {fdb_ms:6.2f} ms per run"
                           f"{' over them all' if stop - fdb_done > report else ''} ({ratio(fdb_ms, ms)})")  # fmt: skip
                fdb_done = stop
            except BenchError as exc:
                theirs.failed(exc)  # says so; the lines after read n/a
        else:
            theirs.na(theirs.why or f"it records {cap:,} runs: --flordb-runs")
        here = fdb_repo if fdb_done == stop and theirs.python else None
        _queries(repo, ours, theirs, stop, here, theirs.why or f"it records {cap:,} runs: --flordb-runs")
        done = stop
    _push_cost(repo, ours, theirs, total, fdb_repo if fdb_done and theirs.python else None, fdb_done)


def _record(repo: Path, side: Side, start: int, stop: int, report: int, show: bool = True) -> float:
    """Record runs start+1..stop in one process, printing (if `show`) the cost per run of each
    `report`; returns the mean ms per run over them all."""
    count, total_ms = stop - start, 0.0
    indent = "  " if side.module == "florgit" else f"    {side.name}: "
    err = _stderr_file(side)
    proc = subprocess.Popen([side.python, "sweep.py", side.module, str(count), str(report)], cwd=repo, env=side.env,
                            stdout=subprocess.PIPE, stderr=err, text=True)  # fmt: skip
    done = 0
    for line in proc.stdout:
        if not line.startswith("@ "):
            continue
        now, ms = int(line.split()[1]), float(line.split()[2])
        total_ms += ms * (now - done)
        if show:
            print(f"{indent}runs {_span(start + done, start + now)}: {ms:6.2f} ms per run", flush=True)
        done = now
    if proc.wait() != 0 or done != count:
        raise (SystemExit if side.module == "florgit" else BenchError)(f"recording failed: {_tail(err)}")
    return total_ms / count


def _span(after: int, upto: int) -> str:
    return f"{f'{after + 1:,}-{upto:,}':>13}"


def _stderr_file(side: Side):
    """florgit's stderr is the terminal's; FlorDB's (progress bars) goes to a file, read on failure."""
    if side.tmp is None:
        return None
    return open(side.tmp / f"flordb-stderr-{time.monotonic_ns()}.txt", "w+")


def _tail(err) -> str:
    if err is None:
        return "see stderr above"
    err.seek(0)
    lines = [line.strip() for line in err.read().replace("\r", "\n").splitlines() if line.strip()]
    return " | ".join(lines[-3:]) or "no stderr"


def _queries(repo: Path, ours: Side, theirs: Side, runs: int, fdb_repo: Path | None, absent: str) -> None:
    """florgit's queries at `runs` runs; under each, FlorDB's over `fdb_repo` (None: n/a, `absent` says why)."""
    first = _measure(repo, ours, "lr,acc")  # reads the new runs from git and adds them to the query cache
    print(f"{'first query after recording':32} {runs:>6,} runs: {first['s']:6.2f} s fresh process (fills the query cache)")  # fmt: skip
    if fdb_repo is None or not theirs.python:
        theirs.na(theirs.why or absent)
    else:
        try:
            f = _measure(fdb_repo, theirs, "lr,acc")
            theirs.say(f"{f['s']:.2f} s fresh process ({ratio(f['s'], first['s'])}; it writes its SQLite at commit)")
        except BenchError as exc:
            theirs.failed(exc)
    for label, what in (('flor.dataframe("lr", "acc")', "lr,acc"), ("flor.runs()", "runs")):
        took, rows, peak, lib = _median_of_3(repo, ours, what, new_question=what != "runs")
        print(f"{label:32} {runs:>6,} runs: {took:6.2f} s fresh process{_of_it(lib)}, {rows:,} rows, "
              f"peak {peak / 1e6:,.0f} MB", flush=True)  # fmt: skip
        if what != "runs":
            again, _rows, again_peak, again_lib = _median_of_3(repo, ours, what)
            print(f"{'  the same, asked again':32} {runs:>6,} runs: {again:6.2f} s fresh process{_of_it(again_lib)} "
                  f"(its kept result), peak {again_peak / 1e6:,.0f} MB", flush=True)  # fmt: skip
        if what == "runs":
            theirs.na("no equivalent: FlorDB has flor.dataframe() and SQL over its logs, no run listing")
        elif fdb_repo is None or not theirs.python:
            theirs.na(theirs.why or absent)
        else:
            try:
                f_took, f_rows, f_peak, _lib = _median_of_3(fdb_repo, theirs, what)
                theirs.say(f"{f_took:.2f} s fresh process, {f_rows:,} rows, peak {f_peak / 1e6:,.0f} MB "
                           f"({ratio(f_took, took)}; peak memory {f_peak / peak:,.1f}x)")  # fmt: skip
            except BenchError as exc:
                theirs.failed(exc)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "florgit.cli.main", "log"], cwd=repo, env={**ours.env, "COLUMNS": "120"},
                       check=True, capture_output=True)  # fmt: skip
        times.append(time.perf_counter() - start)
    print(f"{'git flor log':32} {runs:>6,} runs: {statistics.median(times):6.2f} s", flush=True)
    theirs.na("no equivalent: no log command; its runs are git auto-commits that plain `git log` lists")


def _median_of_3(repo: Path, side: Side, what: str, *, new_question: bool = False) -> tuple[float, int, int, float]:
    """Median time, rows, peak memory, and median time of florgit's ``import polars`` in it."""
    results = [_measure(repo, side, what, new_question=new_question) for _ in range(3)]
    median = statistics.median
    return median(r["s"] for r in results), results[0]["rows"], max(r["peak"] for r in results), median(r["polars"] for r in results)


def _of_it(polars_s: float) -> str:
    """The share of a florgit figure that is ``import polars`` (every query returns a polars
    frame, so a fresh process cannot answer faster than that import)."""
    return f" ({polars_s:.2f} s of it `import polars`)"


def _forget_results(repo: Path) -> None:
    """Delete florgit's kept query results (frames.results), so the next query is a new
    question: answered from the query cache, as the first time it is asked."""
    for kept in (repo / ".git" / "flor" / "cache").glob("result-*"):
        kept.unlink()


def _measure(repo: Path, side: Side, what: str, *, new_question: bool = False) -> dict:
    if new_question and side.module == "florgit":
        _forget_results(repo)
    try:
        out = subprocess.run([side.python, "-c", MEASURE, side.module, what], cwd=repo, env=side.env,
                             capture_output=True, text=True, timeout=TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BenchError(f"query timed out after {TIMEOUT_S} s") from None
    if out.returncode != 0:
        if side.module == "florgit":
            raise SystemExit(f"query {what} failed: {out.stderr.strip()[-2000:]}")
        raise BenchError(f"query {what}: exit {out.returncode}: {' | '.join(out.stderr.strip().splitlines()[-3:])}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pack_bytes(bare: Path, env: dict) -> int:
    out = subprocess.run(
        ["git", "count-objects", "-v"], cwd=bare, env=env, check=True, capture_output=True, text=True
    ).stdout
    fields = dict(line.split(": ") for line in out.splitlines())
    return (int(fields["size"]) + int(fields["size-pack"])) * 1024


def _push_cost(repo: Path, ours: Side, theirs: Side, runs: int, fdb_repo: Path | None, fdb_runs: int) -> None:
    flor = [sys.executable, "-m", "florgit.cli.main"]
    added = _one_more_run(repo, ours, [*flor, "push"])
    print(f"one more run pushed on top of {runs:,}: {added / 1e6:.3f} MB added to the remote (target < 1 MB)", flush=True)  # fmt: skip
    if fdb_repo is None or not theirs.python:
        theirs.na(theirs.why or "it recorded no runs")
        return
    try:  # FlorDB commits each run's JSONL to git on its own branch: a plain `git push` carries them
        f_added = _one_more_run(fdb_repo, theirs, ["git", "push", "-q", "origin", "HEAD"])
        same = f"({ratio(f_added, added)})" if fdb_runs == runs else "(not the same count: no ratio)"
        theirs.say(f"{f_added / 1e6:.3f} MB added by `git push` of its branch, on top of {fdb_runs:,} runs {same}")
    except (BenchError, subprocess.SubprocessError) as exc:
        theirs.failed(BenchError(str(exc)))


def _one_more_run(repo: Path, side: Side, push: list[str]) -> int:
    """Bytes one more run adds to the repository's bare remote, which gets everything first."""
    florgit = side.module == "florgit"
    subprocess.run(push, cwd=repo, env=side.env, check=True, capture_output=True, timeout=TIMEOUT_S)
    bare = repo.parent / f"{repo.name}-remote.git"
    before = _pack_bytes(bare, side.env)
    err = _stderr_file(side)
    one = subprocess.run([side.python, "sweep.py", side.module, "1", "1"], cwd=repo, env=side.env,
                         stdout=subprocess.DEVNULL, stderr=err, timeout=TIMEOUT_S, check=False)  # fmt: skip
    if one.returncode != 0:
        raise (SystemExit if florgit else BenchError)(f"one more run failed: {_tail(err)}")
    subprocess.run(push, cwd=repo, env=side.env, check=True, capture_output=True, timeout=TIMEOUT_S)
    return _pack_bytes(bare, side.env) - before


def long_runs(tmp: Path, ours: Side, theirs: Side, cases: list[tuple[int, int]], fdb_max: int) -> None:
    for runs, records in cases:
        took, recorded, line = _long_case(tmp, ours, runs, records)
        target, issue = LONG_TARGETS.get((runs, records), (None, None))
        goal = (
            f"; target <= {target} s: {'ok' if took <= target else 'MISSED'} (FlorDB {issue} s in the issue)"
            if target
            else ""
        )
        print(f'flor.dataframe("loss") {runs} runs x {records:,} records: {line}{goal}', flush=True)
        if not theirs.python:
            theirs.na()
            continue
        if runs * records > fdb_max:
            theirs.na(f"{runs * records:,} records is above --flordb-long-records {fdb_max:,}")
            continue
        try:
            f_took, f_recorded, f_line = _long_case(tmp, theirs, runs, records)
            theirs.say(f"{f_line} ({ratio(f_took, took)}; recording {ratio(f_recorded, recorded)})")
        except BenchError as exc:
            theirs.failed(exc)


def _long_case(tmp: Path, side: Side, runs: int, records: int) -> tuple[float, float, str]:
    """Record `runs` runs of `records` losses in one process, then time flor.dataframe("loss")."""
    repo = _repo(tmp / f"long-{side.module}-{runs}x{records}", side.env)
    (repo / "long.py").write_text(LONG)
    err = _stderr_file(side)
    start = time.perf_counter()
    try:
        proc = subprocess.run([side.python, "long.py", side.module, str(runs), str(records)], cwd=repo, env=side.env,
                              stdout=subprocess.DEVNULL, stderr=err, timeout=TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BenchError(f"recording timed out after {TIMEOUT_S} s") from None
    recorded = time.perf_counter() - start
    if proc.returncode != 0:
        raise (SystemExit if side.module == "florgit" else BenchError)(f"recording failed: {_tail(err)}")
    first = _measure(repo, side, "loss")  # florgit's fills its query cache; timed apart from the others
    results = [_measure(repo, side, "loss", new_question=True) for _ in range(3)]
    took, lib = statistics.median(r["s"] for r in results), statistics.median(r["polars"] for r in results)
    florgit = side.module == "florgit"
    agains = [_measure(repo, side, "loss") for _ in range(3)] if florgit else []
    result_mb = results[0]["size"] / 1e6
    peak_mb = max(r["peak"] for r in results) / 1e6
    rows = {r["rows"] for r in [first, *results]}
    line = (f"{took:.2f} s fresh process{_of_it(lib) if florgit else ''}, {'/'.join(f'{n:,}' for n in rows)} rows; result {result_mb:,.0f} MB, "
            f"peak {peak_mb:,.0f} MB ({peak_mb / max(result_mb, 1e-9):.1f}x); first query after recording "
            f"{first['s']:.2f} s, peak {first['peak'] / 1e6:,.0f} MB; recorded in {recorded:.1f} s")  # fmt: skip
    if florgit:
        again, again_lib = (statistics.median(r[k] for r in agains) for k in ("s", "polars"))
        line += f"; asked again {again:.2f} s{_of_it(again_lib)} (its kept result, where one was kept)"
    return took, recorded, line


if __name__ == "__main__":
    main()
