#!/usr/bin/env python
"""Check checkpoints of CUDA tensors on a GPU machine (run it where `torch.cuda` works).

Trains a small CUDA model with dropout and AdamW under ``flor.checkpointing`` in a
throw-away repository, restores the checkpoint at the end of each epoch into a fresh
CUDA model and optimizer, and checks that training continues bit-exactly (parameters,
optimizer state, ``.grad`` and the CUDA RNG all come back), that the manifest records
``cuda:0`` devices, and how long a ~50 MB capture takes. Then a warm replay worker
(the zygote) imports torch without initialising CUDA and forks a task that uses the GPU.
Needs no git binary and no polars. Exit status 0 means every check passed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import pygit2  # noqa: E402
import torch  # noqa: E402


def build(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.Dropout(0.3), torch.nn.ReLU(), torch.nn.Linear(512, 1)
    ).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, opt


def epochs(model, opt, x, y, n):
    losses = []
    for _ in range(n):
        for step in range(5):
            idx = torch.randint(0, x.shape[0], (64,), device="cuda")
            opt.zero_grad()
            loss = ((model(x[idx]) - y[idx]) ** 2).mean()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    return losses


def main() -> int:
    torch.use_deterministic_algorithms(True)
    repo_dir = tempfile.mkdtemp(prefix="florgit-gpu-")
    pygit2.init_repository(repo_dir)
    os.chdir(repo_dir)
    os.environ.update(GIT_AUTHOR_NAME="gpu", GIT_AUTHOR_EMAIL="gpu@example.com")
    import florgit as flor
    from florgit.git import open_repo
    from florgit.store import checkpoints as store

    flor.set_echo(False)
    flor.set_checkpoint_period(1)
    torch.manual_seed(0)
    x, y = torch.randn(4096, 256, device="cuda"), torch.randn(4096, 1, device="cuda")
    model, opt = build(0)
    recorded = []
    with flor.checkpointing(model=model, optimizer=opt):
        for _ in flor.loop("epoch", range(4)):
            recorded += epochs(model, opt, x, y, 1)
            flor.log("loss", recorded[-1])
    run = flor.current_run_id()
    flor.commit()
    failures = []
    infos = flor.checkpoints(run)
    print(f"run {run}: checkpoints at iterations {[c.iteration for c in infos]}")
    manifest = store.read_manifest(open_repo(), infos[-1])
    devices = sorted({a.device for a in manifest.arrays})
    print(f"devices recorded in the last manifest: {devices}; rng parts: {sorted(manifest.rng)}")
    if "cuda:0" not in devices or "torch_cuda" not in manifest.rng:
        failures.append("manifest lacks cuda:0 arrays or the CUDA RNG state")
    for k in range(-1, 3):
        fresh, fresh_opt = build(123)
        flor.load_checkpoint(run, k, model=fresh, optimizer=fresh_opt)
        if k >= 0 and not all(p.grad is not None and p.grad.is_cuda for p in fresh.parameters()):
            failures.append(f"iteration {k}: .grad did not come back on the GPU")
        again = epochs(fresh, fresh_opt, x, y, 3 - k)
        same = again == recorded[k + 1 :]
        print(f"restore at end of iteration {k:2d}: continued losses {'==' if same else '!='} recorded")
        if not same:
            failures.append(f"iteration {k}: {again} != {recorded[k + 1:]}")
    big = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(12)]).cuda()  # ~50 MB
    from florgit.api.checkpointer import Checkpointer

    ckpt = Checkpointer(open_repo().git_dir, "20260101-000000.000-gpucheck", period=1)
    ckpt.objs = {"model": big}
    for boundary in range(3):
        start = time.perf_counter()
        ckpt.capture("epoch", 1, boundary)
        print(f"capture of a {sum(p.numel() * 4 for p in big.parameters()) / 1e6:.0f} MB CUDA model: "
              f"{(time.perf_counter() - start) * 1e3:.1f} ms on the training thread")
    start = time.perf_counter()
    ckpt.close()
    print(f"background writes finished {time.perf_counter() - start:.2f} s after the last capture; failures: {ckpt.failed}")
    failures += ckpt.failed
    failures += zygote_check(repo_dir)
    print("GPU CHECK", "PASSED" if not failures else f"FAILED: {failures}")
    return 1 if failures else 0


def zygote_check(workdir: str) -> list[str]:
    """A warm replay worker imports torch without touching CUDA; its forked task then uses the GPU."""
    from florgit.hindsight.warm import Zygote

    script = os.path.join(workdir, "cuda_task.py")
    result = os.path.join(workdir, "cuda_task.out")
    with open(script, "w") as f:
        f.write(
            "import os, sys, torch\n"
            "x = torch.arange(4.0, device='cuda') * 2\n"
            "open(sys.argv[1], 'w').write(f\"{os.environ.get('CUDA_VISIBLE_DEVICES')} {x.sum().item()}\")\n"
        )
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "PYTHONPATH": root}
    start = time.perf_counter()
    zygote = Zygote(["torch"], env, workdir)
    print(f"zygote warm={zygote.warm} ({zygote.why or 'fork is safe'}) after {time.perf_counter() - start:.1f} s")
    if not zygote.warm:
        return [f"the zygote refused to fork: {zygote.why}"]
    start = time.perf_counter()
    outcome = zygote.run(script, [result], workdir, env, os.path.join(workdir, "cuda_task.log"))
    zygote.close()
    seen = open(result).read() if os.path.exists(result) else "nothing"
    print(f"forked CUDA task: rc={outcome.returncode} in {time.perf_counter() - start:.2f} s, saw {seen!r}")
    return [] if outcome.returncode == 0 and seen == "0 12.0" else [f"forked CUDA task: rc {outcome.returncode}, {seen}"]


if __name__ == "__main__":
    raise SystemExit(main())
