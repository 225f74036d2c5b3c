"""Running a replay plan: every code version in its own temporary directory, exported
from the shadow branch (the user's working tree, index, HEAD and branches are never
touched), each run under ``sys.executable`` with a replay spec, ``--jobs`` at a time.

A code tree may come from someone else's push, so the export is confined: every entry
name is checked (store.trust.code_entries), every file is created fresh (never through
an existing file or link) in a folder whose resolved path is inside the export, symlinks
are made last and kept only when they resolve inside it, and submodules are left out.
The process always runs the exported ``meta.script``, never the recorded ``argv[0]``.
Foreign runs (recorded in another clone) are skipped unless ``trust_foreign``.

A plan can also be split into partitions (``part k of n``) that separate processes or
machines execute; their results land in the same repository as separate replay parts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from florgit import envflags
from florgit.errors import FlorgitError, InvalidDataError, UsageError
from florgit.git import GitRepo
from florgit.hindsight.plan import Plan, RunPlan, hold_foreign
from florgit.hindsight.spec import ENV, ReplaySpec
from florgit.hindsight.warm import Zygote, imported_modules
from florgit.store import trust


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


def execute(
    repo: GitRepo, plan: Plan, jobs: int = 1, partition=None, progress=None, trust_foreign: bool = False, waiting=None,
    warm: bool = True, gpus: list[int] | None = None, executor: str = "local", ray_address: str | None = None,
    ray_clone: str | None = None, links: list[str] | None = None,
) -> list[Result]:
    """Run the plan's work; foreign runs only with ``trust_foreign`` (the caller has shown
    their code and the user accepted it), else they are marked skipped. With ``warm``,
    tasks fork from one process that already imported the scripts' modules
    (florgit.hindsight.warm); where forking is unsafe they start as plain processes.
    With ``gpus``, each task runs with one of them as its only visible CUDA device, never
    one that another running task holds (so at most ``len(gpus)`` tasks run at once).
    ``executor="ray"`` runs the tasks on a Ray cluster instead (hindsight.ray_executor).
    ``links``: working-tree paths git does not track (a ``data/`` folder) that each export
    reaches through a symlink (see :func:`check_links`)."""
    if not trust_foreign:
        hold_foreign(plan)
    work = tasks(plan, jobs, partition)
    if executor == "ray":
        from florgit.hindsight import ray_executor

        plan.results = ray_executor.run_tasks(repo, work, address=ray_address, clone=ray_clone, progress=progress)
        plan.warm = "Ray tasks, one plain process each"
        return plan.results
    if executor != "local":
        raise UsageError(f"unknown executor {executor!r}: local or ray")
    root = tempfile.mkdtemp(prefix="florgit-replay-")
    try:
        dirs: dict[tuple, str | Exception] = {}
        for task in work:
            key = (task.run.code_tree, task.run.replay_id)
            if key not in dirs:
                dirs[key] = _try_export(repo, task.run, os.path.join(root, f"v{len(dirs)}"), links or [])
        zygote = _start_zygote(work, dirs, root) if warm and work else None
        if zygote is not None:
            plan.warm = (
                f"warm workers: {', '.join(zygote.imported) or 'no modules'} imported once" if zygote.warm
                else f"plain processes ({zygote.why})"
            )  # fmt: skip
        try:
            devices = _Devices(gpus)
            with ThreadPoolExecutor(max_workers=devices.workers(jobs)) as pool:
                futures = [
                    pool.submit(devices.holding, _run_or_fail, repo, t, dirs[(t.run.code_tree, t.run.replay_id)], root, i, zygote)
                    for i, t in enumerate(work)
                ]
                results = []
                for task, future in zip(work, futures):
                    if waiting is not None:
                        waiting(task)  # the run whose result comes next, for a progress line
                    results.append(future.result())
                    if progress is not None:
                        progress(results[-1])
        finally:
            if zygote is not None and zygote.warm:
                zygote.close()
        plan.results = results
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start_zygote(work: list[Task], dirs: dict, root: str) -> Zygote | None:
    """One process that imports what the scripts import, for every task to fork from;
    None where the user turned it off (``FLORGIT_REPLAY_WARM=0``)."""
    if not envflags.enabled("FLORGIT_REPLAY_WARM", True):
        return None
    sources, local = {}, set()
    for task in work:
        code_dir = dirs[(task.run.code_tree, task.run.replay_id)]
        if isinstance(code_dir, Exception):
            continue
        sources[task.run.replay_id] = task.run.patched or ""
        local.add(os.path.dirname(os.path.join(code_dir, *task.run.script.split("/"))))
        local.add(os.path.join(code_dir, *task.run.cwd.split("/")))
        local.add(os.path.join(code_dir, *task.run.module_root.split("/")))
    modules = imported_modules(sources.values(), local)
    return Zygote(modules, _child_env(), root)


def _try_export(repo: GitRepo, run: RunPlan, target: str, links: list[str] = ()) -> str | Exception:
    try:
        code_dir = _export(repo, run, target)
        for path in links:
            _link_in(code_dir, repo.workdir or "", path)
        return code_dir
    except (FlorgitError, OSError) as exc:  # this version fails; the others still run
        return exc


def check_links(repo: GitRepo, links: list[str]) -> list[str]:
    """The ``--link`` paths, each a relative path to something in the working tree."""
    from florgit import validation

    for path in links:
        why = validation.path_problem(path) if path else "empty"
        if why or not repo.workdir:
            raise UsageError(f"--link {path!r} must be a path inside the working tree ({why or 'there is none'})")
        if not os.path.lexists(os.path.join(repo.workdir, *path.split("/"))):
            raise UsageError(f"--link {path!r}: there is no such file or folder in {repo.workdir}")
    return [os.path.normpath(p).replace(os.sep, "/") for p in links]


def _link_in(code_dir: str, workdir: str, path: str) -> None:
    """The working tree's ``path`` reachable in the export through a symlink; what the
    code snapshot has there wins. The script reads (and writes) the original through it."""
    full = _inside(code_dir, path)
    if os.path.lexists(full):
        return
    os.makedirs(os.path.dirname(full), exist_ok=True)
    os.symlink(os.path.join(workdir, *path.split("/")), full)


_NO_SUCH_FILE = re.compile(r"No such file or directory: '([^'\n]{1,4096})'")


def _missing_file_hint(output: str, workdir: str | None, cwd: str) -> str:
    """When a replay failed on a relative path that exists in the working tree but not in
    the code snapshot (git ignores it), say how to reach it."""
    found = _NO_SUCH_FILE.search(output)
    if not found or not workdir or os.path.isabs(found[1]):
        return ""
    rel = os.path.normpath(os.path.join(cwd, found[1]))
    if rel.startswith("..") or not os.path.lexists(os.path.join(workdir, rel)):
        return ""
    top = rel.split(os.sep)[0]
    return (f"\nflorgit: {found[1]!r} is in your working tree but not in the run's code snapshot (git does not track "
            f"it); replay with --link {top} (links={top!r}) to reach it")


class _Devices:
    """Hands each running task a GPU of its own (``CUDA_VISIBLE_DEVICES``)."""

    def __init__(self, gpus: list[int] | None) -> None:
        import queue

        self.gpus = list(gpus or [])
        self._free: queue.Queue = queue.Queue()
        for gpu in self.gpus:
            self._free.put(gpu)

    def workers(self, jobs: int) -> int:
        return max(1, min(jobs, len(self.gpus)) if self.gpus else jobs)

    def holding(self, run, *args):
        if not self.gpus:
            return run(*args, extra_env={})
        gpu = self._free.get()
        try:
            return run(*args, extra_env={"CUDA_VISIBLE_DEVICES": str(gpu)})
        finally:
            self._free.put(gpu)


def run_alone(repo: GitRepo, task: Task, root: str, index: int) -> Result:
    """One task by itself (on a cluster node): its code exported under ``root``, run as a
    plain process."""
    code_dir = _try_export(repo, task.run, os.path.join(root, f"v{index}"))
    return _run_or_fail(repo, task, code_dir, root, index, None, {})


def _run_or_fail(
    repo: GitRepo, task: Task, code_dir: str | Exception, root: str, index: int, zygote, extra_env: dict[str, str]
) -> Result:
    if isinstance(code_dir, Exception):
        return Result(task.run.run_id, task.part, False, 0.0, f"could not export its code: {code_dir}")
    try:
        return _run(repo, task, code_dir, root, index, zygote, extra_env)
    except (FlorgitError, OSError) as exc:  # e.g. a working folder leading out of the export
        return Result(task.run.run_id, task.part, False, 0.0, f"could not start it: {exc}")


def _export(repo: GitRepo, run: RunPlan, target: str) -> str:
    """Write the run's code tree into the new folder ``target``, its script patched."""
    os.mkdir(target)
    code = trust.code_entries(repo, run.code_tree)
    if code.find(run.script) is None:
        raise InvalidDataError(f"run {run.run_id}", f"its code has no {run.script}", run.run_id)
    links = []
    for entry in code.entries:
        if entry.mode == trust.TREE:
            os.makedirs(_inside(target, entry.path), exist_ok=True)
        elif entry.mode == trust.LINK:
            links.append(entry)  # made last, so no file is ever written through one
        else:
            data = (run.patched or "").encode() if entry.path == run.script else repo.read_blob(entry.oid)
            _write_new(_inside(target, entry.path), data, executable=entry.mode == trust.EXEC)
    for entry in links:
        _link(repo, target, entry)
    _drop_escaping_links(target, [e.path for e in links])
    return target


def _inside(root: str, path: str) -> str:
    """``root/path``, refusing a path whose folder does not resolve inside ``root``."""
    full = os.path.join(root, *path.split("/"))
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.dirname(full))
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise InvalidDataError("a code snapshot", f"{path!r} would be written outside the replay folder")
    return full


def _write_new(full: str, data: bytes, executable: bool) -> None:
    os.makedirs(os.path.dirname(full), exist_ok=True)
    # O_EXCL | O_NOFOLLOW: a file is only ever created, never reached through a link.
    fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if executable else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _link(repo: GitRepo, target: str, entry: trust.Entry) -> None:
    link_to = repo.read_blob(entry.oid).decode("utf-8", "replace")
    if trust.link_problem(entry.path, link_to) is None:
        full = _inside(target, entry.path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        os.symlink(link_to, full)


def _drop_escaping_links(target: str, paths: list[str]) -> None:
    """Links judged on their text can still combine to leave the folder (``a -> .``
    makes ``b -> a/../x`` point outside): once all exist, resolve each and remove those
    that lead out, until none does."""
    real_root = os.path.realpath(target)
    changed = True
    while changed:
        changed = False
        for path in paths:
            full = os.path.join(target, *path.split("/"))
            if not os.path.islink(full):
                continue
            real = os.path.realpath(full)
            if real != real_root and not real.startswith(real_root + os.sep):
                os.unlink(full)
                changed = True


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a replay process: florgit importable, no echo."""
    import florgit

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(florgit.__file__)))
    return {
        **os.environ,
        "FLORGIT_ECHO": "0",
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p),
        **(extra or {}),
    }


def _run(
    repo: GitRepo, task: Task, code_dir: str, root: str, index: int, zygote: Zygote | None = None,
    extra_env: dict[str, str] | None = None,
) -> Result:
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
        code=run.patched or "",
        after_loop=run.after_loop,
    )
    spec_path = os.path.join(root, f"spec-{index}.json")  # outside the exported code
    spec.dump(spec_path)
    env = _child_env({ENV: spec_path, **(extra_env or {})})
    cwd = _inside(code_dir, f"{run.cwd}/.")
    os.makedirs(cwd, exist_ok=True)  # a recorded working folder may hold only ignored files
    start = time.perf_counter()
    if run.module is not None:  # as `python -m`: found from the working folder, or its own root
        module_root = _inside(code_dir, f"{run.module_root}/.")
        path = [cwd] if module_root == cwd else [cwd, module_root]
        env["PYTHONPATH"] = os.pathsep.join([*path[1:], env["PYTHONPATH"]])
        command, target = ["-m", run.module], run.module
    else:
        # Always the exported script (the run's own code), whatever argv[0] was: an absolute
        # argv[0] would run today's file, or any file at all.
        script = os.path.relpath(os.path.join(code_dir, *run.script.split("/")), cwd)
        script = script if not script.startswith("-") else f".{os.sep}{script}"  # a path, never an option
        path = [os.path.dirname(os.path.join(cwd, script))]
        command, target = [script], script
    if zygote is not None and zygote.warm:
        out_path = os.path.join(root, f"out-{index}.txt")
        returncode = zygote.run(target, run.argv[1:], cwd, env, out_path, module=run.module is not None, path=path).returncode
        output = _tail(out_path)
    else:
        proc = subprocess.run([sys.executable, *command, *run.argv[1:]], cwd=cwd, env=env, capture_output=True, text=True)
        returncode, output = proc.returncode, (proc.stdout + proc.stderr)[-4000:]
    if returncode != 0:
        output += _missing_file_hint(output, repo.workdir, run.cwd)
    return Result(run.run_id, task.part, returncode == 0, time.perf_counter() - start, output)


def _tail(path: str, size: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
