#!/usr/bin/env python
"""How long the daily commands take on many runs: `git flor log`, `diff`, `plot`, `report`.

Records ``--runs`` runs (4 args, 10 epochs of 2 metrics, a final accuracy) in one
throw-away repository, then times each command in a fresh process, median of ``--repeat``.
Timings are printed, never asserted.

Run:   python scripts/bench_daily.py [--runs 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchenv import isolated_env

ROOT = Path(__file__).resolve().parents[1]

WRITE = """
import florgit as flor
flor.set_echo(False)
for r in range({runs}):
    lr = flor.arg("lr", 0.001 * (1 + r % 10))
    flor.arg("momentum", 0.9)
    flor.arg("batch_size", 32 * (1 + r % 4))
    flor.arg("optimizer", "adamw" if r % 2 else "sgd")
    for epoch in flor.loop("epoch", range(10)):
        flor.log("loss", lr * (10 - epoch))
        flor.log("val_loss", lr * (11 - epoch))
    flor.log("acc", 1 - lr)
    flor.commit()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="florgit-bench-daily-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        env = isolated_env(tmp, ROOT)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=repo, env=env, check=True)
        (repo / "write.py").write_text(WRITE.format(runs=args.runs))
        start = time.perf_counter()
        subprocess.run([sys.executable, "write.py"], cwd=repo, env=env, check=True)
        print(f"recorded {args.runs} runs in {time.perf_counter() - start:.1f} s")
        commands = {
            "git flor log": ["log"],
            "git flor log --json": ["log", "--json"],
            "git flor diff latest~1 latest": ["diff", "latest~1", "latest"],
            "git flor plot loss (terminal)": ["plot", "loss"],
            "git flor plot loss -o loss.png": ["plot", "loss", "-o", "loss.png"],
            "git flor report -o report.html": ["report", "-o", "report.html"],
        }
        print(f"{'command':34s} {'median':>9s}   ({args.repeat} fresh processes, {args.runs} runs)")
        for label, argv in commands.items():
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "florgit.cli.main", *argv], cwd=repo, env=env, check=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
                times.append(time.perf_counter() - start)
            print(f"{label:34s} {statistics.median(times):>7.2f} s")


if __name__ == "__main__":
    main()
