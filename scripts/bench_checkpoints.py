#!/usr/bin/env python
"""Benchmark florgit's checkpoints (figures printed, never asserted).

  1. Record overhead: a CPU training script (~50 MB MLP, --epochs epochs of ~3 s) run
     without florgit, with `flor.checkpointing` under the default adaptive rule, and with
     a checkpoint forced at every epoch (FLORGIT_CHECKPOINT_PERIOD=1), after an untimed
     warm-up run, --repeat times in a rotating order, each in a fresh process; medians of
     wall time are compared (CPU time is printed too, but torch's OpenMP threads spin while
     they wait, so it measures contention as much as work).
  2. Object write throughput: 256 MB of incompressible float32 tensors through the
     chunk writer (hash, zstd, loose objects), MB/s.
  3. Dedup: 8 equal 512x512 layers, 4 frozen, 5 checkpoints: unique stored bytes against
     5 full copies (parameters only, and with .grad), and what a second identical run adds.

Run:  python scripts/bench_checkpoints.py [--epochs 10] [--repeat 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    USE = sys.argv[1] == "florgit"
    epochs, steps = int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(12)])  # ~50 MB
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x, y = torch.randn(256, 1024), torch.randn(256, 1024)
    def epoch_body():
        for _ in range(steps):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
        return loss.item()
    start = time.perf_counter()
    if USE:
        import florgit as flor
        flor.set_echo(False)
        with flor.checkpointing(model=model, optimizer=opt):
            for epoch in flor.loop("epoch", range(epochs)):
                flor.log("loss", epoch_body())
        flor.commit()
    else:
        for epoch in range(epochs):
            epoch_body()
    print(time.perf_counter() - start)
    """
)


def env_for(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FLORGIT_"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", PYTHONPATH=str(ROOT),
               GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")  # fmt: skip
    return env


def overhead(tmp: Path, epochs: int, steps: int, repeat: int) -> None:
    repo = tmp / "overhead"
    repo.mkdir()
    env = env_for(tmp)
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    (repo / "train.py").write_text(SCRIPT)
    variants = {"plain": ("plain", {}), "adaptive": ("florgit", {}), "every epoch": ("florgit", {"FLORGIT_CHECKPOINT_PERIOD": "1"})}
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    # An untimed warm-up (page cache, CPU clocks), then the variants in a rotating order so
    # no variant always runs first.
    subprocess.run([sys.executable, "train.py", "plain", str(epochs), str(steps)], cwd=repo, env=env, capture_output=True, check=True)
    names = list(variants)
    for r in range(repeat):
        for variant in names[r % len(names):] + names[: r % len(names)]:
            mode, extra = variants[variant]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run([sys.executable, "train.py", mode, str(epochs), str(steps)], cwd=repo,
                                 env={**env, **extra}, capture_output=True, text=True, check=True)  # fmt: skip
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            times[variant].append(float(out.stdout.strip().splitlines()[-1]))
            cpu[variant].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    sys.path.insert(0, str(ROOT))
    os.chdir(repo)
    import florgit as flor

    taken = [len(flor.checkpoints(r)) for r in flor.runs()["run_id"].to_list()]
    plain = statistics.median(times["plain"])
    print(f"record overhead, {epochs} epochs of ~{plain / epochs:.1f} s, ~50 MB model (+50 MB of .grad), "
          f"median of {repeat}: plain {plain:.2f} s {_runs(times['plain'])}")  # fmt: skip
    plain_cpu = statistics.median(cpu["plain"])
    for variant in ("adaptive", "every epoch"):
        ours, ours_cpu = statistics.median(times[variant]), statistics.median(cpu[variant])
        print(f"  {variant:11s}: {ours:.2f} s -> {100 * (ours - plain) / plain:+.2f}% {_runs(times[variant])}; "
              f"CPU {ours_cpu:.1f} s vs {plain_cpu:.1f} s -> {100 * (ours_cpu - plain_cpu) / plain_cpu:+.1f}% of work added")  # fmt: skip
    print(f"  checkpoints per florgit run, in run order (adaptive and every-epoch runs alternate): {taken}")


def _runs(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


def throughput(tmp: Path, total_mb: int) -> None:
    import torch

    from florgit.codec import tensors
    from florgit.git import open_repo
    from florgit.store import checkpoints as store

    repo = tmp / "throughput"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git = open_repo(str(repo))
    index = store.ChunkIndex(git)
    arrays = [torch.rand(16 * 1024 * 1024 // 4) for _ in range(total_mb // 16)]  # 16 MB each
    start = time.perf_counter()
    for a in arrays:
        store.store_array(git, index, tensors.raw_bytes(a))
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    for a in arrays:
        store.store_array(git, index, tensors.raw_bytes(a))
    again = time.perf_counter() - start
    print(f"object writes: {total_mb} MB of float32 in {seconds:.2f} s = {total_mb / seconds:.0f} MB/s "
          f"(target >= 150 MB/s); the same tensors again (dedup: hash only): {total_mb / again:.0f} MB/s")  # fmt: skip


def dedup(tmp: Path) -> None:
    import torch

    import florgit as flor
    from florgit.git import open_repo
    from florgit.store import checkpoints as store

    repo = tmp / "dedup"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    os.chdir(repo)
    flor.set_echo(False)
    flor.set_checkpoint_period(1)

    def train():
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(8)])
        for layer in list(model)[:4]:
            layer.requires_grad_(False)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        with flor.checkpointing(model=model):
            for _ in flor.loop("epoch", range(4)):
                opt.zero_grad()
                model(torch.randn(32, 512)).sum().backward()
                opt.step()
        run = flor.current_run_id()
        flor.commit()
        return run, sum(p.numel() * 4 for p in model.parameters())

    git = open_repo()

    def parts(run):
        params, grads = set(), set()
        for info in flor.checkpoints(run):
            m = store.read_manifest(git, info)
            ids = [[c["id"] for c in a["chunks"]] for a in m["arrays"]]
            grad_refs = _refs(m["grads"])
            for i, chunk_ids in enumerate(ids):
                (grads if i in grad_refs else params).update(chunk_ids)
        return params, grads

    first, one_copy = train()
    params, grads = parts(first)
    p_bytes = sum(git.object_size(c) for c in params)
    g_bytes = sum(git.object_size(c) for c in grads)
    grad_copy = one_copy // 2
    print(f"dedup, 8 layers (4 frozen), 5 checkpoints: parameters stored {p_bytes / 1e6:.2f} MB = "
          f"{100 * p_bytes / (5 * one_copy):.0f}% of 5 full copies (target <= 60%); with .grad "
          f"{(p_bytes + g_bytes) / 1e6:.2f} MB = {100 * (p_bytes + g_bytes) / (5 * one_copy + 4 * grad_copy):.0f}% "
          f"of 5 full copies including grads")  # fmt: skip
    second, _ = train()
    p2, g2 = parts(second)
    new = (p2 | g2) - (params | grads)
    print(f"second identical run: {len(new)} new chunks, {sum(git.object_size(c) for c in new)} new bytes")


def _refs(tree) -> set[int]:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return {tree["__tensor__"]}
        return set().union(*(_refs(v) for v in tree.values())) if tree else set()
    if isinstance(tree, list):
        return set().union(*(_refs(v) for v in tree)) if tree else set()
    return set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch (~0.15 s each here)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 repeat, 64 MB")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeat = 2, 1
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="florgit-bench-ckpt-") as tmp:
        os.environ.update(env_for(Path(tmp)))
        throughput(Path(tmp), 64 if args.quick else 256)
        dedup(Path(tmp))
        overhead(Path(tmp), args.epochs, args.steps, args.repeat)


if __name__ == "__main__":
    main()
