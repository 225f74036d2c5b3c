#!/usr/bin/env python
"""Benchmark hindsight replay (figures printed, never asserted).

Records one CPU training run (an MLP, --epochs epochs of --steps steps, a checkpoint at
every epoch, torch on one thread so parallel replays can use both cores), then adds
statements to today's script and replays them:

  1. an epoch-level statement (top of the epoch loop): replay time against the original
     run's time (target <= 0.15x; FlorDB 4.0.1 measured 0.81x per DESIGN.md);
  2. a step-level statement: `--jobs 1` against `--jobs 2` (target >= 1.8x faster).

Times are wall clock of `florgit.replay(...)`, process start-up included.
Run:  python scripts/bench_replay.py [--epochs 10] [--steps 300] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = textwrap.dedent(
    """\
    import torch
    import florgit as flor

    torch.set_num_threads(1)
    epochs = flor.arg("epochs", 10)
    steps = flor.arg("steps", 60)
    torch.manual_seed(0)
    x, y = torch.randn(2048, 256), torch.randn(2048, 1)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with flor.checkpointing(model=model, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for step in flor.loop("step", range(steps)):
                idx = torch.randint(0, 2048, (256,))
                opt.zero_grad()
                loss = ((model(x[idx]) - y[idx]) ** 2).mean()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            with torch.no_grad():
                val = ((model(x) - y) ** 2).mean().item()
            flor.log("val", val)
    """
)
EPOCH_STATEMENT = '        flor.log("wnorm", sum(p.norm().item() for p in model.parameters()))\n'
STEP_STATEMENT = '            flor.log("gnorm", sum(p.grad.norm().item() for p in model.parameters()))\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="4 epochs of 10 steps")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.steps = 4, 10
    with tempfile.TemporaryDirectory(prefix="florgit-bench-replay-") as tmp:
        repo = Path(tmp) / "project"
        repo.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FLORGIT_"))}
        env.update(HOME=tmp, GIT_CONFIG_NOSYSTEM="1", PYTHONPATH=str(ROOT), FLORGIT_ECHO="0", FLORGIT_CHECKPOINT_PERIOD="1",
                   GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")  # fmt: skip
        os.environ.update(env)
        for cmd in (["git", "init", "-q"],):
            subprocess.run(cmd, cwd=repo, check=True)
        (repo / "train.py").write_text(TRAIN)
        subprocess.run(["git", "add", "."], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-qm", "train"], cwd=repo, check=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "train.py", "--kwargs", f"epochs={args.epochs}", f"steps={args.steps}"],
                       cwd=repo, check=True, env=env)  # fmt: skip
        original = time.perf_counter() - start
        sys.path.insert(0, str(ROOT))
        os.chdir(repo)
        import florgit as flor

        marker = '        for step in flor.loop("step", range(steps)):\n'
        code = TRAIN.replace(marker, EPOCH_STATEMENT + marker)
        marker = '            flor.log("loss", loss.item())\n'
        code = code.replace(marker, marker + STEP_STATEMENT)
        assert EPOCH_STATEMENT in code and STEP_STATEMENT in code
        (repo / "train.py").write_text(code)
        epoch_s = _timed(lambda: flor.replay("wnorm"))
        print(f"original run: {original:.2f} s ({args.epochs} epochs x {args.steps} steps, process start included)")
        print(f"epoch-level replay: {epoch_s:.2f} s = {epoch_s / original:.2f}x the original (target <= 0.15x; FlorDB 4.0.1: 0.81x)")
        one = _timed(lambda: flor.replay("gnorm", jobs=1))
        (repo / "train.py").write_text(code.replace('"gnorm"', '"gnorm2"'))
        two = _timed(lambda: flor.replay("gnorm2", jobs=2))
        equal = flor.dataframe("gnorm")["gnorm"].to_list() == flor.dataframe("gnorm2")["gnorm2"].to_list()
        print(f"step-level replay: --jobs 1 {one:.2f} s, --jobs 2 {two:.2f} s -> {one / two:.2f}x faster (target >= 1.8x); "
              f"same values: {equal}")  # fmt: skip


def _timed(fn) -> float:
    start = time.perf_counter()
    plan = fn()
    seconds = time.perf_counter() - start
    bad = [r.output[-300:] for r in plan.results if not r.ok] + [r.skip for r in plan.runs if r.skip]
    if bad:
        print(f"  problems: {bad}")
    return seconds


if __name__ == "__main__":
    main()
