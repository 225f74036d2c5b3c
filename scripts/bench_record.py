#!/usr/bin/env python
"""Benchmark florgit's record path, and FlorDB 4.0.1's where it makes sense.

What it measures (each figure in a fresh subprocess, cwd = a throw-away git repository):

  1. ``flor.log()`` inside ``flor.loop()``: ns per call over 100k calls, timed 100 calls at
     a time with ``time.perf_counter_ns``; median and p99 of the batch means. Echo is on
     and the subprocess's stdout goes to /dev/null.
  2. ``flor.commit()`` after 1,000,000 records (1000 epochs x 1000 steps), and the cost of
     one loop step with one log end to end while the run goes (background spooling and
     echo included, as the training thread sees it). The run is started first (its first
     call, ``flor.arg``, snapshots the repository) and that start is its own figure.
     FlorDB: 100,000 records, as 1M takes it far too long; the ratio is per record.
     The step is measured again for one flat loop of as many steps (``flor.loop("step",
     range(N))`` with nothing around it, as many LLM training scripts are written).
     Peak memory (RSS) at the end of logging, and again for 10M records (florgit only):
     records are spooled as they go, so ten times the records should not take more.
  3. ``import florgit`` time (median of 5 processes), and which heavy modules it loaded.
  4. ``flor.dataframe("loss")`` over 1M records in 100 runs (10 epochs x 1000 steps each,
     written by one process that calls ``flor.commit()`` between runs); median of 3 fresh
     processes, so it includes loading and polars' import, and of a second call in the same
     process. Each process asks a new question: florgit's kept query results are deleted
     first, so the query cache answers; the same question asked again (its kept result
     answers) is a note under the table. FlorDB: 100k records in 10 runs.

FlorDB 4.0.1 lives in its own virtualenv, /tmp/florgit-bench-flordb-venv, created (with the
caller's pip configuration) when missing; if that fails its column reads n/a.
Repositories, HOME and results live in a temp dir that is deleted at the end.

Run:   python scripts/bench_record.py            # full, several minutes
       python scripts/bench_record.py --quick    # everything 10x smaller, a smoke test
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from benchenv import FLORDB_VERSION, VENV, compile_modules, flordb_python

TIMEOUT_S = 600  # per subprocess, so a hung run cannot hang the benchmark
HEAVY = ("torch", "polars", "pandas", "pyarrow", "numpy")

# The script every subprocess runs, as `bench_worker.py` in its repository. Its job comes
# from the BENCH_SPEC environment variable, not argv: FlorDB parses argv when imported.
WORKER = textwrap.dedent(
    """
    import json, os, resource, statistics, sys, time
    spec = json.loads(os.environ["BENCH_SPEC"])
    mode, p, res = spec["mode"], spec["params"], {}

    def done(exit_now):
        with open(spec["out"], "w") as f:
            json.dump(res, f)
        if exit_now:  # skip the atexit commit of a run nobody measures
            sys.stdout.flush()
            os._exit(0)

    t0 = time.perf_counter()
    flor = __import__(spec["module"])
    res["import_s"] = time.perf_counter() - t0
    res["heavy"] = [m for m in spec["heavy"] if m in sys.modules]
    if mode == "import":
        done(True)
    if spec["module"] == "florgit":
        flor.set_echo(p.get("echo", True))

    if mode == "log":
        batch, clock, log = p["batch"], time.perf_counter_ns, flor.log
        def nop(name, value):
            return value
        means, nops = [], []
        for epoch in flor.loop("epoch", range(p["epochs"])):
            for step in flor.loop("step", range(p["steps"])):
                t0 = clock()
                for _ in range(batch):
                    log("loss", 0.25)
                t1 = clock()
                for _ in range(batch):
                    nop("loss", 0.25)
                t2 = clock()
                means.append((t1 - t0) / batch)
                nops.append((t2 - t1) / batch)
        res.update(means=means, nop_ns=statistics.median(nops))
        done(True)

    def log_runs(runs, epochs, steps, flat=False):
        for run in range(runs):
            if flat:  # one loop of every step, outermost (as many LLM scripts are)
                for step in flor.loop("step", range(epochs * steps)):
                    flor.log("loss", 1.0 / (1 + run + step))
            else:
                for epoch in flor.loop("epoch", range(epochs)):
                    for step in flor.loop("step", range(steps)):
                        flor.log("loss", 1.0 / (1 + run + epoch + step))
            if run < runs - 1:
                flor.commit()

    if mode == "commit":
        t0 = time.perf_counter()
        flor.arg("bench_start", 1)  # starts the run (a snapshot of the repository): timed apart from the steps
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        log_runs(1, p["epochs"], p["steps"], p.get("flat", False))
        t1 = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        flor.commit()
        res.update(start_s=start_s, log_s=t1 - t0, commit_s=time.perf_counter() - t1, peak_bytes=peak)
        done(False)
    if mode == "build":
        t0 = time.perf_counter()
        log_runs(p["runs"], p["epochs"], p["steps"])
        flor.commit()
        res.update(build_s=time.perf_counter() - t0)
        done(False)
    if mode == "query":
        t1 = time.perf_counter()
        df = flor.dataframe("loss")
        t2 = time.perf_counter()
        flor.dataframe("loss")
        res.update(cold_s=t2 - t1, warm_s=time.perf_counter() - t2, rows=len(df))
        done(True)
    """
)


class BenchError(Exception):
    pass


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        home = root / "home"
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FLORGIT_", "FLOR_"))}
        self.env.update(
            HOME=str(home),
            GIT_AUTHOR_NAME="Bench",
            GIT_AUTHOR_EMAIL="bench@example.com",
            GIT_COMMITTER_NAME="Bench",
            GIT_COMMITTER_EMAIL="bench@example.com",
            GIT_CONFIG_NOSYSTEM="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        self.count = 0

    def new_repo(self, label: str) -> Path:
        self.count += 1
        repo = self.root / f"{self.count:02d}-{label}"
        repo.mkdir()
        (repo / "README.md").write_text("throw-away benchmark repository\n")
        (repo / "bench_worker.py").write_text(WORKER)
        for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
            subprocess.run(["git", *cmd], cwd=repo, env=self.env, check=True, timeout=60)
        return repo

    def worker(self, python: str, module: str, mode: str, params: dict, repo: Path | None = None) -> dict:
        """Run one job of bench_worker.py; stdout goes to /dev/null, the result comes back as JSON."""
        repo = repo or self.new_repo(f"{module}-{mode}")
        self.count += 1
        out, err = self.root / f"result-{self.count}.json", self.root / f"stderr-{self.count}.txt"
        spec = dict(mode=mode, module=module, params=params, out=str(out), heavy=HEAVY)
        env = {**self.env, "BENCH_SPEC": json.dumps(spec)}
        with open(os.devnull, "w") as devnull, open(err, "w") as errf:
            try:
                proc = subprocess.run(
                    [python, "bench_worker.py"], cwd=repo, env=env, stdout=devnull, stderr=errf, timeout=TIMEOUT_S
                )
            except subprocess.TimeoutExpired:
                raise BenchError(f"{module} {mode}: timed out after {TIMEOUT_S} s") from None
        if proc.returncode != 0 or not out.exists():
            tail = err.read_text(errors="replace").strip().splitlines()[-3:]
            raise BenchError(f"{module} {mode}: exit {proc.returncode}: {' | '.join(tail)}")
        return json.loads(out.read_text())


def measure(bench: Bench, python: str, module: str, sizes: dict, notes: list[str]) -> dict:
    """All four figures for one library; a failing figure is noted and left out."""
    fig: dict = {}
    tag = "florgit" if module == "florgit" else f"FlorDB {FLORDB_VERSION}"

    def attempt(label, fn):
        print(f"  {tag}: {label} ...", flush=True)
        try:
            fn()
        except BenchError as exc:
            notes.append(f"{tag} {label} unavailable: {exc}")

    def log():
        calls, batch = sizes["log_calls"], 100
        r = bench.worker(python, module, "log", dict(epochs=10, steps=calls // batch // 10, batch=batch, echo=True))
        fig["log_med"] = statistics.median(r["means"])
        fig["log_p99"] = statistics.quantiles(r["means"], n=100)[98]
        fig["nop_ns"] = r["nop_ns"]
        notes.append(f"{tag}: {len(r['means']) * batch:,} log calls; an empty Python call costs {r['nop_ns']:.0f} ns here")

    def commit():
        n = sizes[f"commit_{module}"]
        r = bench.worker(python, module, "commit", dict(epochs=n // 1000, steps=1000, echo=True))
        fig["commit"], fig["commit_n"] = r["commit_s"], n
        fig["step"], fig["step_n"] = r["log_s"] / n, n
        fig["start"] = r["start_s"]
        fig["peak"], fig["peak_n"] = r["peak_bytes"], n
        notes.append(f"{tag}: logging the {n:,} records took {r['log_s']:.2f} s before commit(), after a run start of "
                     f"{r['start_s']:.3f} s (counted in, a step would cost {(r['log_s'] + r['start_s']) / n * 1e9:,.0f} ns)")

    def flat():
        n = sizes[f"commit_{module}"]
        r = bench.worker(python, module, "commit", dict(epochs=n // 1000, steps=1000, echo=True, flat=True))
        fig["flat"] = r["log_s"] / n
        notes.append(f"{tag}: one flat loop of {n:,} steps (echo on, as above) took {r['log_s']:.2f} s")

    def memory():
        """Recording spools as it goes: ten times the records should not take more memory."""
        n = sizes["memory_florgit"]
        r = bench.worker(python, module, "commit", dict(epochs=n // 1000, steps=1000, echo=True))
        fig["peak_big"], fig["peak_big_n"] = r["peak_bytes"], n
        notes.append(f"{tag}: logging {n:,} records took {r['log_s']:.2f} s; commit() then took {r['commit_s']:.2f} s")

    def imports():
        runs = [bench.worker(python, module, "import", {}) for _ in range(5)]
        fig["import"] = statistics.median(r["import_s"] for r in runs)
        heavy = sorted({m for r in runs for m in r["heavy"]})
        notes.append(f"{tag}: modules loaded by the import: {', '.join(heavy) or 'none of ' + '/'.join(HEAVY)}")
        if module == "florgit" and {"torch", "polars"} & set(heavy):
            notes.append("florgit: PROBLEM: `import florgit` loads torch or polars")

    def frame():
        runs, steps = sizes[f"df_runs_{module}"], sizes["df_steps"]
        repo = bench.new_repo(f"{module}-dataframe")
        built = bench.worker(python, module, "build", dict(runs=runs, epochs=10, steps=steps, echo=False), repo)
        queries = []
        for _ in range(3):  # each a new question: florgit's kept results (frames.results) are deleted first
            for kept in (Path(repo) / ".git" / "flor" / "cache").glob("result-*"):
                kept.unlink()
            queries.append(bench.worker(python, module, "query", {}, repo))
        n = runs * 10 * steps
        fig["df"], fig["df_n"] = statistics.median(q["cold_s"] for q in queries), n
        warm = statistics.median(q["warm_s"] for q in queries)
        fig["df_warm"], fig["df_warm_n"] = warm, n
        rows = {q["rows"] for q in queries}
        notes.append(
            f"{tag}: dataframe over {n:,} records in {runs} runs (written in {built['build_s']:.1f} s): "
            f"{'/'.join(map(str, rows))} rows; a second call in the same process takes {warm:.3f} s"
        )
        if module == "florgit":  # the same question once more, in a fresh process: its kept result answers
            again = statistics.median(bench.worker(python, module, "query", {}, repo)["cold_s"] for _ in range(3))
            notes.append(f"{tag}: the same dataframe asked again in a fresh process (its kept result): {again:.3f} s; "
                         "the second call in a process is answered the same way")  # fmt: skip
        if rows != {n}:
            notes.append(f"{tag}: PROBLEM: dataframe returned {rows} rows, expected {n:,}")

    attempt("log", log)
    attempt("commit", commit)
    attempt("flat loop", flat)
    if module == "florgit":  # FlorDB would take ~20 min for 10M records
        attempt("memory", memory)
    attempt("import", imports)
    attempt("dataframe", frame)
    return fig


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e9:,.0f} ns"
    return f"{seconds * 1e3:,.0f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def fmt_bytes(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:,.0f} MB"


def short(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def table(ours: dict, theirs: dict, sizes: dict) -> str:
    ns = 1e-9
    rows = [  # label, key, scale to seconds, target (s), record-count key
        ("flor.log() in flor.loop(), median", "log_med", ns, 1e-6, None),
        ("flor.log() in flor.loop(), p99", "log_p99", ns, None, None),
        ("loop step + log, end to end", "step", 1, 1e-6, None),
        ("the same, one flat loop of N steps", "flat", 1, 1e-6, None),
        ("run start (the first call)", "start", 1, None, None),
        ("flor.commit() after N records", "commit", 1, 1.0, "commit_n"),
        ("import (median of 5)", "import", 1, 0.3, None),
        ('flor.dataframe("loss"), fresh process', "df", 1, None, "df_n"),
        ('flor.dataframe("loss"), second call', "df_warm", 1, 0.5, "df_warm_n"),
        ("peak memory while recording N records", "peak", None, None, "peak_n"),
        ("the same, 10x the records", "peak_big", None, None, "peak_big_n"),
    ]
    out = [("metric", "florgit", f"FlorDB {FLORDB_VERSION}", "target", "FlorDB/florgit")]
    for label, key, scale, target, n_key in rows:
        a, b = ours.get(key), theirs.get(key)
        fmt = fmt_bytes if scale is None else fmt_time
        scale = scale or 1
        a_s, b_s = (a * scale if a is not None else None), (b * scale if b is not None else None)
        a_txt, b_txt = fmt(a_s), fmt(b_s)
        ratio = "n/a"
        if a_s and b_s:
            if n_key and ours[n_key] != theirs[n_key]:  # different sizes: compare per record
                a_txt, b_txt = f"{a_txt} ({short(ours[n_key])})", f"{b_txt} ({short(theirs[n_key])})"
                ratio = f"{(b_s / theirs[n_key]) / (a_s / ours[n_key]):,.1f}x per record"
            else:
                ratio = f"{b_s / a_s:,.1f}x"
        elif a_s and n_key:
            a_txt = f"{a_txt} ({short(ours[n_key])})"
        goal = "-" if target is None else f"<= {fmt_time(target)}"
        if target is not None and sizes["quick"]:
            goal += " (at full size)"
        elif target is not None and a_s is not None:
            goal += "  ok" if a_s <= target else "  MISSED"
        out.append((label, a_txt, b_txt, goal, ratio))
    widths = [max(len(r[i]) for r in out) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in out]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="scale everything down 10x (smoke test)")
    quick = parser.parse_args().quick
    k = 10 if quick else 1
    import florgit  # the one the workers import (installed, or editable from a checkout)

    compile_modules(Path(florgit.__file__).parent.parent)
    sizes = dict(
        quick=quick,
        log_calls=100_000 // k,
        commit_florgit=1_000_000 // k,
        commit_flordb=100_000 // k,
        memory_florgit=10_000_000 // k,
        df_runs_florgit=100,
        df_runs_flordb=10,
        df_steps=1000 // k,
    )
    print(f"bench_record: florgit record path{' (--quick: 10x smaller)' if quick else ''}; python {sys.version.split()[0]}")
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="florgit-bench-") as tmp:
        bench = Bench(Path(tmp))
        ours = measure(bench, sys.executable, "florgit", sizes, notes)
        flordb_py, how = flordb_python()
        if flordb_py is None:
            print(f"FlorDB {FLORDB_VERSION} figures are unavailable: {how}")
            notes.append(f"FlorDB {FLORDB_VERSION} unavailable: {how}")
            theirs: dict = {}
        else:
            notes.append(f"FlorDB {FLORDB_VERSION}: {VENV} ({how}); commit at 1/10 of florgit's size")
            theirs = measure(bench, flordb_py, "flordb", sizes, notes)
    print()
    print(table(ours, theirs, sizes))
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
