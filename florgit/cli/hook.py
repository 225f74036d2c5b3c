"""What florgit's git hooks do; run as ``python -m florgit.cli.hook NAME ARGS...``.

Kept free of typer, rich, torch and polars so a hook adds little to a ``git commit``.
A hook never fails the user's git command because of florgit: problems are printed and
the exit status is the user's own hook's (if they had one), else 0. (When florgit cannot
even start, the shell hook written by ``florgit.git.hooks.script`` runs the user's hook.)

- pre-push: push the flor refs to the same remote (not from inside florgit's own push).
- post-commit: commit runs left behind by killed processes.
- post-rewrite: carry run notes from rewritten commits to their new versions.
- post-merge: merge flor refs fetched by ``git pull`` into the local ones.
- reference-transaction (git >= 2.28): merge flor refs a plain ``git fetch``/``git pull``
  brought, even when there was nothing else to merge.
"""

from __future__ import annotations

import os
import subprocess
import sys

SAVED_SUFFIX = ".florgit-saved"  # florgit.git.hooks.SAVED_SUFFIX, without importing the git layer


def main(argv: list[str] | None = None, hook_path: str | None = None) -> int:
    """Run hook ``argv[0]`` with git's arguments ``argv[1:]``. ``hook_path`` is the hook
    file git ran (the installed hooks pass it): the user's saved hook sits next to it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m florgit.cli.hook NAME [ARGS...]", file=sys.stderr)
        return 2
    name, args = argv[0], argv[1:]
    stdin = _read_stdin()
    try:
        code = _run_saved(name, args, stdin, hook_path)
    except OSError as exc:  # the saved hook exists but cannot be executed
        _warn(f"your {name} hook could not be run: {exc}")
        return 1
    if code != 0 or os.environ.get("FLORGIT_IN_HOOK"):
        return code  # the user's hook said no, or this is florgit's own git call
    try:
        action = ACTIONS.get(name)
        if action is None:
            _warn(f"no such hook {name!r}")
        else:
            action(args, stdin.decode("utf-8", "surrogateescape"))
    except Exception as exc:  # never break the user's git command
        _warn(f"{name} hook: {type(exc).__name__}: {exc}")
    return 0


def _read_stdin() -> bytes:
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return b""
        return sys.stdin.buffer.read()
    except (OSError, ValueError, AttributeError):
        return b""


def _warn(message: str) -> None:
    from florgit.cli.display import visible

    print(f"florgit: {visible(message)}", file=sys.stderr)


def _run_saved(name: str, args: list[str], stdin: bytes, hook_path: str | None = None) -> int:
    if hook_path is not None:
        path = hook_path + SAVED_SUFFIX
        path = path if os.access(path, os.X_OK) else None
    else:
        from florgit.git.hooks import saved_hook

        path = saved_hook(os.getcwd(), name)
    if path is None:
        return 0
    return subprocess.run([path, *args], input=stdin).returncode


def _repo():
    from florgit.git import open_repo

    return open_repo(require_workdir=False)


def pre_push(args: list[str], _stdin: str) -> None:
    from florgit.store import sharing

    remote = args[0] if args else "origin"
    result = sharing.push(_repo(), remote, checkpoints=_config_true("flor.pushCheckpoints"))
    if result:
        _warn(f"shared runs with {remote}: " + ", ".join(f"{r} {s}" for r, s in result.items()))


def post_commit(_args: list[str], _stdin: str) -> None:
    from florgit.store.recovery import recover_abandoned

    for run_id in recover_abandoned(_repo()):
        _warn(f"recovered run {run_id} (killed)")


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


def reference_transaction(args: list[str], stdin: str) -> None:
    """A plain `git fetch`/`git pull` updated florgit's tracking refs: merge them now (git
    runs no post-merge when a pull finds nothing else to merge)."""
    from florgit.store import sharing

    if not args or args[0] != "committed":
        return
    prefix = "refs/flor/remotes/"
    refs = [line.split()[-1] for line in stdin.splitlines() if line.split() and line.split()[-1].startswith(prefix)]
    remotes = {ref[len(prefix) :].rpartition("/")[0] for ref in refs} - {""}
    repo = _repo()
    for remote in sorted(remotes):
        sharing.merge_tracking(repo, remote, sharing.shared_refs(checkpoints=True))


ACTIONS = {
    "pre-push": pre_push,
    "post-commit": post_commit,
    "post-rewrite": post_rewrite,
    "post-merge": post_merge,
    "reference-transaction": reference_transaction,
}

if __name__ == "__main__":
    raise SystemExit(main())
