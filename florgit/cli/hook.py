"""What florgit's git hooks do; run as ``python -m florgit.cli.hook NAME ARGS...``.

Kept free of typer, rich, torch and polars so a hook adds little to a ``git commit``.
A hook never fails the user's git command because of florgit: problems are printed and
the exit status is the user's own hook's (if they had one), else 0.

- pre-push: push the flor refs to the same remote (not from inside florgit's own push).
- post-commit: commit runs left behind by killed processes.
- post-rewrite: carry run notes from rewritten commits to their new versions.
- post-merge: merge flor refs fetched by ``git pull`` into the local ones.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m florgit.cli.hook NAME [ARGS...]", file=sys.stderr)
        return 2
    name, args = argv[0], argv[1:]
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    code = _run_saved(name, args, stdin)
    if code != 0 or os.environ.get("FLORGIT_IN_HOOK"):
        return code  # the user's hook said no, or this is florgit's own git call
    try:
        ACTIONS[name](args, stdin)
    except KeyError:
        print(f"florgit: no such hook {name!r}", file=sys.stderr)
    except Exception as exc:  # never break the user's git command
        print(f"florgit: {name} hook: {exc}", file=sys.stderr)
    return 0


def _run_saved(name: str, args: list[str], stdin: str) -> int:
    from florgit.git.hooks import saved_hook

    path = saved_hook(os.getcwd(), name)
    if path is None:
        return 0
    return subprocess.run([path, *args], input=stdin, text=True).returncode


def _repo():
    from florgit.git import open_repo

    return open_repo(require_workdir=False)


def pre_push(args: list[str], _stdin: str) -> None:
    from florgit.store import sharing

    remote = args[0] if args else "origin"
    result = sharing.push(_repo(), remote, checkpoints=_config_true("flor.pushCheckpoints"))
    if result:
        print(f"florgit: shared runs with {remote}: " + ", ".join(f"{r} {s}" for r, s in result.items()), file=sys.stderr)


def post_commit(_args: list[str], _stdin: str) -> None:
    from florgit.store.recovery import recover_abandoned

    for run_id in recover_abandoned(_repo()):
        print(f"florgit: recovered run {run_id} (killed)", file=sys.stderr)


def post_rewrite(_args: list[str], stdin: str) -> None:
    from florgit.store.runs import copy_notes

    pairs = [tuple(line.split()[:2]) for line in stdin.splitlines() if len(line.split()) >= 2]
    copy_notes(_repo(), pairs)


def post_merge(_args: list[str], _stdin: str) -> None:
    from florgit.git.command import run_git
    from florgit.store import sharing

    repo = _repo()
    for remote in run_git(repo.workdir or repo.git_dir, "remote").stdout.split():
        sharing.merge_tracking(repo, remote, sharing.shared_refs(checkpoints=True))


def _config_true(key: str) -> bool:
    from florgit.git.command import config_values

    values = config_values(os.getcwd(), key)
    return bool(values) and values[-1].strip().lower() in ("1", "true", "yes", "on")


ACTIONS = {"pre-push": pre_push, "post-commit": post_commit, "post-rewrite": post_rewrite, "post-merge": post_merge}

if __name__ == "__main__":
    raise SystemExit(main())
