"""Running a replay's tasks on a Ray cluster (``--executor ray``, extra ``florgit[ray]``).

Each task is one Ray task (one CPU) that exports the run's code and runs it exactly as a
local replay task does. Results reach the repository one of two ways:

- shared filesystem (default): the node opens the driver's repository by its path and the
  replay process stores its results with the same compare-and-swap ref update local
  tasks use;
- a clone per task (``clone=REMOTE``): the node clones the remote's URL, pulls the runs
  with their checkpoints, replays, and shares the results with ``git flor push``; the
  driver pulls them at the end.

Ray is found with ``ray.init(address="auto")`` (or the given address), and when no cluster
is running a local one is started for this replay and stopped after it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

from florgit.errors import UsageError
from florgit.git import GitRepo
from florgit.git.command import run_git
from florgit.hindsight import execute as local
from florgit.store import sharing


def run_tasks(
    repo: GitRepo, work: list[local.Task], *, address: str | None = None, clone: str | None = None,
    progress: Callable[[local.Result], None] | None = None,
) -> list[local.Result]:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'florgit[ray]'") from None
    url = _clone_url(repo, clone) if clone else None
    started_here = False
    if not ray.is_initialized():
        started_here = True
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            try:
                ray.init(address="auto", log_to_driver=False)  # a running cluster
            except (ConnectionError, RuntimeError, ValueError):
                ray.init(include_dashboard=False, log_to_driver=False)  # none: a local one
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_task_on_node)
        pending = [remote.remote(repo.git_dir, url, task, i) for i, task in enumerate(work)]
        results = []
        for ref in pending:
            results.append(ray.get(ref))
            if progress is not None:
                progress(results[-1])
    finally:
        if started_here:
            ray.shutdown()
    if url is not None and clone is not None and any(r.ok for r in results):
        sharing.pull(repo, clone)  # the results the nodes pushed
    return results


def _clone_url(repo: GitRepo, remote: str) -> str:
    """The remote's URL, a local path made absolute (nodes start elsewhere)."""
    sharing.check_remote(remote)
    cwd = repo.workdir or repo.git_dir
    url = run_git(cwd, "remote", "get-url", "--", remote, check=False).stdout.strip()
    if not url:
        raise UsageError(f"--ray-clone {remote!r} is not a remote of this repository; list them with `git remote -v`")
    if "://" not in url and ":" not in url.split("/", 1)[0]:
        url = os.path.abspath(os.path.join(cwd, url))  # a path (an scp-like host:path has a colon first)
    return url


def _task_on_node(git_dir: str, url: str | None, task: local.Task, index: int) -> local.Result:
    """One task on a Ray worker: the shared repository, or a fresh clone that pushes."""
    from florgit.git import open_repo

    root = tempfile.mkdtemp(prefix="florgit-ray-")
    try:
        if url is None:
            repo = open_repo(git_dir, require_workdir=False)
        else:
            dest = os.path.join(root, "clone")
            run_git(root, "clone", "--quiet", "--no-checkout", "--", url, dest)
            repo = open_repo(dest, require_workdir=False)
            sharing.pull(repo, "origin", checkpoints=True)
        result = local.run_alone(repo, task, root, index)
        if url is not None and result.ok:
            sharing.push(repo, "origin")
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)
