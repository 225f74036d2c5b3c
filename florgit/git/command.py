"""Running the real ``git`` binary, for what must go through the user's own set-up:
remotes (their SSH keys and credential helpers), config, and hook paths."""

from __future__ import annotations

import os
import subprocess

from florgit.errors import StoreError


class GitCommandError(StoreError):
    def __init__(self, args: list[str], code: int, stderr: str) -> None:
        self.args_ = args
        self.code = code
        self.stderr = stderr
        super().__init__(f"`git {' '.join(args)}` failed ({code}): {stderr.strip() or 'no message'}")


def run_git(
    cwd: str, *args: str, check: bool = True, input: str | None = None, show_stderr: bool = False
) -> subprocess.CompletedProcess:
    """``git ARGS`` in ``cwd``; with ``show_stderr`` git's progress and messages go to the
    user's terminal instead of being captured."""
    env = {**os.environ, "FLORGIT_IN_HOOK": "1", "GIT_TERMINAL_PROMPT": os.environ.get("GIT_TERMINAL_PROMPT", "0")}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=None if show_stderr else subprocess.PIPE,
        text=True, input=input, env=env,
    )  # fmt: skip
    if proc.stderr is None:
        proc.stderr = ""
    if check and proc.returncode != 0:
        raise GitCommandError(list(args), proc.returncode, proc.stderr)
    return proc


def config_values(cwd: str, key: str) -> list[str]:
    return run_git(cwd, "config", "--get-all", key, check=False).stdout.split("\n")[:-1]


def ensure_config(cwd: str, key: str, value: str, *, multi: bool = False) -> bool:
    """Set ``key`` (or add ``value`` to a multi-valued key) unless present; True if changed."""
    current = config_values(cwd, key)
    if value in current or (current and not multi):
        return False
    run_git(cwd, "config", "--add" if multi else "--replace-all", key, value)
    return True


def remove_config(cwd: str, key: str, value: str) -> bool:
    """Remove ``value`` from a (multi-valued) ``key``, compared literally; True if it was there."""
    if value not in config_values(cwd, key):
        return False
    run_git(cwd, "config", "--unset-all", "--fixed-value", key, value)
    return True


def hooks_dir(cwd: str) -> str:
    """The hooks directory git really uses (``core.hooksPath`` honoured)."""
    path = run_git(cwd, "rev-parse", "--git-path", "hooks").stdout.strip()
    return os.path.normpath(os.path.join(cwd, path))
