#!/usr/bin/env python
"""What florgit's hooks add to `git commit` (figures printed, never asserted; target
<= 0.3 s): median wall time of 10 commits in a repository with a few recorded runs,
without hooks and with `git flor install`. Also prints what the post-commit hook imports.

Run:  python scripts/bench_hooks.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchenv import isolated_env

ROOT = Path(__file__).resolve().parents[1]


def commits(repo: Path, env: dict, n: int = 10) -> float:
    times = []
    for i in range(n):
        (repo / "notes.txt").write_text(f"{time.time()} {i}\n")
        subprocess.run(["git", "add", "notes.txt"], cwd=repo, env=env, check=True)
        start = time.perf_counter()
        subprocess.run(["git", "commit", "-q", "-m", f"c{i}"], cwd=repo, env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="florgit-bench-hooks-") as tmp:
        repo = Path(tmp) / "project"
        repo.mkdir()
        env = isolated_env(tmp, ROOT)
        subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
        (repo / "train.py").write_text("import florgit as flor\nfor e in flor.loop('e', range(3)):\n    flor.log('x', e)\n")
        subprocess.run(["git", "add", "."], cwd=repo, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, env=env, check=True)
        for _ in range(3):
            subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, check=True)
        plain = commits(repo, env)
        subprocess.run([sys.executable, "-m", "florgit.cli.main", "install"], cwd=repo, env=env, check=True, capture_output=True)
        hooked = commits(repo, env)
        imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "florgit.cli.hook", "post-commit"],
                                 cwd=repo, env=env, capture_output=True, text=True).stderr  # fmt: skip
        heavy = [m for m in ("torch", "polars", "pyarrow", "typer", "rich") if f" {m}\n" in imports or imports.endswith(f" {m}")]
        print(f"git commit: {plain * 1e3:.0f} ms without hooks, {hooked * 1e3:.0f} ms with florgit's hooks "
              f"-> +{(hooked - plain) * 1e3:.0f} ms (target <= 300 ms); heavy modules the hook imports: {heavy or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
