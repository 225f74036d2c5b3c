"""Running a replay plan: every code version in its own temporary directory, exported
from the shadow branch (the user's working tree, index, HEAD and branches are never
touched), each run under ``sys.executable`` with a replay spec, ``--jobs`` at a time.

A plan can also be split into partitions (``part k of n``) that separate processes or
machines execute; their results land in the same repository as separate replay parts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from florgit.git import GitRepo
from florgit.hindsight.plan import Plan, RunPlan
from florgit.hindsight.spec import ENV, ReplaySpec


@dataclass
class Task:
    run: RunPlan
    execute: list[int] | None
    part: str
    names: list[str]


@dataclass
class Result:
    run_id: str
    part: str
    ok: bool
    seconds: float
    output: str


def tasks(plan: Plan, jobs: int = 1, partition: tuple[int, int] | None = None) -> list[Task]:
    """The plan as units of work: "inner" runs split into ranges of iterations that each
    start at a checkpoint, so ``jobs`` processes share them."""
    out: list[Task] = []
    for run in plan.todo:
        if run.strategy == "inner" and jobs > 1 and run.iterations > 1:
            out += _ranges(run, jobs, plan.names)
        else:
            out.append(Task(run, run.execute, "all", plan.names))
    if partition is not None:  # by a stable key, so shares agree whatever is already done
        k, n = partition
        out = [t for t in out if zlib.crc32(f"{t.run.run_id}/{t.part}".encode()) % n == k - 1]
    return out


def _ranges(run: RunPlan, jobs: int, names: list[str]) -> list[Task]:
    starts = [b for b in run.starts if b < run.iterations]
    size = max(1, run.iterations // jobs)
    cuts = sorted({min(starts, key=lambda b: abs(b - i * size)) for i in range(jobs)})
    bounds = [*cuts, run.iterations]
    return [Task(run, list(range(a, b)), f"{a}-{b - 1}", names) for a, b in zip(bounds, bounds[1:]) if b > a]


def execute(repo: GitRepo, plan: Plan, jobs: int = 1, partition=None, progress=None) -> list[Result]:
    work = tasks(plan, jobs, partition)
    root = tempfile.mkdtemp(prefix="florgit-replay-")
    try:
        dirs = {}
        for task in work:
            key = (task.run.code_tree, task.run.replay_id)
            if key not in dirs:
                dirs[key] = _export(repo, task.run, os.path.join(root, f"v{len(dirs)}"))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(_run, repo, t, dirs[(t.run.code_tree, t.run.replay_id)], i) for i, t in enumerate(work)]
            results = []
            for future in futures:
                results.append(future.result())
                if progress is not None:
                    progress(results[-1])
        plan.results = results
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _export(repo: GitRepo, run: RunPlan, target: str) -> str:
    for path, kind, oid in repo.walk(run.code_tree):
        full = os.path.join(target, path)
        if kind == "tree":
            os.makedirs(full, exist_ok=True)
        elif kind == "blob":
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(repo.read_blob(oid))
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, run.script), "w") as f:
        f.write(run.patched or "")
    return target


def _run(repo: GitRepo, task: Task, code_dir: str, index: int) -> Result:
    run = task.run
    spec = ReplaySpec(
        git_dir=repo.git_dir,
        run_id=run.run_id,
        names=task.names,
        strategy=run.strategy,
        loop=run.loop,
        execute=task.execute,
        replay_id=run.replay_id,
        part=task.part,
    )
    spec_path = os.path.join(code_dir, f".florgit-replay-{index}.json")
    spec.dump(spec_path)
    import florgit

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(florgit.__file__)))
    env = {
        **os.environ,
        ENV: spec_path,
        "FLORGIT_ECHO": "0",
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p),
    }
    cwd = os.path.normpath(os.path.join(code_dir, run.cwd)) if not os.path.isabs(run.cwd) else code_dir
    script = run.argv[0] if run.argv else run.script
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, script, *run.argv[1:]], cwd=cwd, env=env, capture_output=True, text=True)
    output = (proc.stdout + proc.stderr)[-4000:]
    return Result(run.run_id, task.part, proc.returncode == 0, time.perf_counter() - start, output)

