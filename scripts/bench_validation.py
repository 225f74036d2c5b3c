#!/usr/bin/env python
"""What validating data read from git costs queries: this checkout against a base commit.

Builds one repository (100 runs x 10 epochs x 1000 steps = 1M records, written with this
checkout), then times ``flor.dataframe("loss")`` and ``flor.runs()`` in fresh processes
with florgit imported from this checkout and from ``--base`` (a ``git worktree`` of it in
a temp dir), alternating which goes first; medians of ``--repeat`` processes, plus a
second call in the same process. Timings are printed, never asserted.

Run:   python scripts/bench_validation.py [--base 4531d7b] [--runs 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchenv import isolated_env

ROOT = Path(__file__).resolve().parents[1]

WRITE = """
import florgit as flor
flor.set_echo(False)
for r in range({runs}):
    flor.arg("lr", 0.001 * (r + 1))
    for epoch in flor.loop("epoch", range(10)):
        for step in flor.loop("step", range(1000)):
            flor.log("loss", 1.0 / (step + 1))
    flor.commit()
"""

TIME = """
import json, time
t0 = time.perf_counter()
import florgit as flor
df = flor.dataframe("loss")
t1 = time.perf_counter()
df = flor.dataframe("loss")
t2 = time.perf_counter()
runs = flor.runs()
t3 = time.perf_counter()
print(json.dumps({"fresh": t1 - t0, "second": t2 - t1, "runs": t3 - t2, "rows": df.height}))
"""


def _time(repo: Path, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", TIME], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="4531d7b", help="commit to compare with (default: before validation)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="florgit-bench-validation-") as tmp:
        tmp_path = Path(tmp)
        base = tmp_path / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=ROOT, check=True)
        try:
            repo = tmp_path / "repo"
            repo.mkdir()
            env_new, env_old = isolated_env(tmp_path, ROOT), isolated_env(tmp_path, base)
            subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
            subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=repo, env=env_new, check=True)
            (repo / "write.py").write_text(WRITE.format(runs=args.runs))
            subprocess.run([sys.executable, "write.py"], cwd=repo, env=env_new, check=True, capture_output=True)
            results: dict[str, list[dict]] = {"validated (this checkout)": [], f"unvalidated ({args.base})": []}
            for i in range(args.repeat):
                order = [("validated (this checkout)", env_new), (f"unvalidated ({args.base})", env_old)]
                for label, env in order if i % 2 == 0 else reversed(order):
                    results[label].append(_time(repo, env))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    rows = {label: {k: statistics.median(r[k] for r in rs) for k in ("fresh", "second", "runs")} for label, rs in results.items()}
    new, old = rows.values()
    print(f"flor.dataframe('loss') over {args.runs} runs, {args.runs * 10_000:,} records; median of {args.repeat} processes")
    print(f"{'':32s} {'fresh process':>14s} {'second call':>12s} {'flor.runs()':>12s}")
    for label, row in rows.items():
        print(f"{label:32s} {row['fresh']:>12.3f} s {row['second']:>10.3f} s {row['runs']:>10.3f} s")
    print(f"{'validated / unvalidated':32s} {new['fresh'] / old['fresh']:>13.2f}x {new['second'] / old['second']:>11.2f}x "
          f"{new['runs'] / old['runs']:>11.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
