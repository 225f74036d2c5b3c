#!/usr/bin/env python
"""Team scale: many runs in one repository, and what daily queries cost at that size.

Records ``--runs`` runs (default 10,000) of 100 records each in ONE process (a sweep),
printing the cost per run of each thousand (it must not grow with the runs already
stored), then measures in fresh processes, at 1,000 runs and at the full count:
the first query (it fills the query cache), then ``flor.dataframe("lr", "acc")``,
``flor.runs()`` and ``git flor log`` (median of 3, with each process's peak memory), and how many bytes one more run adds to a bare remote that
already has the others. Then ``flor.dataframe("loss")`` over 10 runs x 10k records and
100 runs x 100k records (10M; ``--big`` adds 100 x 1M = 100M). Timings are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchenv import isolated_env  # noqa: E402

SWEEP = """\
import sys, time
import florgit as flor

total, report = int(sys.argv[1]), int(sys.argv[2])
start = time.perf_counter()
for r in range(total):
    lr = flor.arg("lr", 0.001 * (1 + r % 10))
    for epoch in flor.loop("epoch", range(100)):
        flor.log("acc", epoch / 100 + lr)
    flor.commit()
    if (r + 1) % report == 0:
        now = time.perf_counter()
        print(f"@ {r + 1} {(now - start) / report * 1e3:.2f}", flush=True)
        start = now
"""

LONG = """\
import sys
import florgit as flor

runs, records = int(sys.argv[1]), int(sys.argv[2])
for r in range(runs):
    for step in flor.loop("step", range(records)):
        flor.log("loss", 1.0 / (step + 1 + r))
    flor.commit()
"""

MEASURE = """\
import json, resource, sys, time
start = time.perf_counter()
import florgit as flor
what = sys.argv[1]
if what == "runs":
    out = flor.runs()
else:
    out = flor.dataframe(*what.split(","))
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"s": took, "rows": out.height, "peak": peak, "size": out.estimated_size()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--big", action="store_true", help="also 100 runs x 1M records (100M)")
    parser.add_argument("--skip-long", action="store_true", help="skip the long-run dataframe cases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="florgit-bench-scale-") as tmp:
        env = isolated_env(tmp, ROOT)
        sweep(Path(tmp), env, args.runs)
        if not args.skip_long:
            long_runs(Path(tmp), env, [(10, 10_000), (100, 100_000)] + ([(100, 1_000_000)] if args.big else []))


def _repo(path: Path, env: dict) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=env)
    (path / "train.py").write_text("# the sweep's script\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)
    return path


def sweep(tmp: Path, env: dict, total: int) -> None:
    repo = _repo(tmp / "sweep", env)
    bare = tmp / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=env)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=repo, check=True, env=env)
    (repo / "sweep.py").write_text(SWEEP)
    print(f"recording {total:,} runs x 100 records in one process (ms per run, each thousand):", flush=True)
    first = min(1000, total)
    _record(repo, env, first)
    _queries(repo, env, first)
    if total > first:
        _record(repo, env, total - first)
        _queries(repo, env, total)
    _push_cost(repo, env, total)


def _record(repo: Path, env: dict, count: int) -> None:
    proc = subprocess.Popen([sys.executable, "sweep.py", str(count), str(min(1000, count))], cwd=repo, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    for line in proc.stdout:
        if not line.startswith("@ "):
            continue
        done, ms = line.split()[1:]
        print(f"  +{int(done):>6,} runs: {float(ms):6.2f} ms per run", flush=True)
    if proc.wait() != 0:
        raise SystemExit("recording failed")


def _queries(repo: Path, env: dict, runs: int) -> None:
    first = _measure(repo, env, "lr,acc")  # reads the new runs from git and adds them to the query cache
    print(f"{'first query after recording':32} {runs:>6,} runs: {first['s']:6.2f} s fresh process (fills the query cache)")
    for label, what in (('flor.dataframe("lr", "acc")', "lr,acc"), ("flor.runs()", "runs")):
        results = [_measure(repo, env, what) for _ in range(3)]
        took = statistics.median(r["s"] for r in results)
        print(f"{label:32} {runs:>6,} runs: {took:6.2f} s fresh process, {results[0]['rows']:,} rows, "
              f"peak {max(r['peak'] for r in results) / 1e6:,.0f} MB")  # fmt: skip
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "florgit.cli.main", "log"], cwd=repo, env={**env, "COLUMNS": "120"},
                       check=True, capture_output=True)  # fmt: skip
        times.append(time.perf_counter() - start)
    print(f"{'git flor log':32} {runs:>6,} runs: {statistics.median(times):6.2f} s", flush=True)


def _measure(repo: Path, env: dict, what: str) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, what], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pack_bytes(bare: Path, env: dict) -> int:
    out = subprocess.run(["git", "count-objects", "-v"], cwd=bare, env=env, check=True, capture_output=True, text=True).stdout
    fields = dict(line.split(": ") for line in out.splitlines())
    return (int(fields["size"]) + int(fields["size-pack"])) * 1024


def _push_cost(repo: Path, env: dict, runs: int) -> None:
    flor = [sys.executable, "-m", "florgit.cli.main"]
    subprocess.run([*flor, "push"], cwd=repo, env=env, check=True, capture_output=True)
    bare = repo.parent / "remote.git"
    before = _pack_bytes(bare, env)
    subprocess.run([sys.executable, "sweep.py", "1", "1"], cwd=repo, env=env, check=True, capture_output=True)
    subprocess.run([*flor, "push"], cwd=repo, env=env, check=True, capture_output=True)
    added = _pack_bytes(bare, env) - before
    print(f"one more run pushed on top of {runs:,}: {added / 1e6:.3f} MB added to the remote (target < 1 MB)", flush=True)


def long_runs(tmp: Path, env: dict, cases: list[tuple[int, int]]) -> None:
    for runs, records in cases:
        repo = _repo(tmp / f"long-{runs}x{records}", env)
        (repo / "long.py").write_text(LONG)
        start = time.perf_counter()
        subprocess.run([sys.executable, "long.py", str(runs), str(records)], cwd=repo, env=env, check=True)
        recorded = time.perf_counter() - start
        results = [_measure(repo, env, "loss") for _ in range(3)]
        took = statistics.median(r["s"] for r in results)
        result_mb = results[0]["size"] / 1e6
        peak_mb = max(r["peak"] for r in results) / 1e6
        print(f'flor.dataframe("loss") {runs} runs x {records:,} records: {took:.2f} s fresh process; result '
              f"{result_mb:,.0f} MB, peak {peak_mb:,.0f} MB ({peak_mb / max(result_mb, 1e-9):.1f}x); recorded in {recorded:.1f} s",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
