"""Installing florgit's git hooks without ever losing the user's own.

Each installed hook is one line of shell that runs florgit with the Python it is
installed in (by absolute path, so a hook works from any shell or GUI client). A hook
the user already had is moved aside to ``<name>.florgit-saved`` and florgit runs it
first, with the same arguments and input; ``uninstall`` puts it back.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys

from florgit.git.command import hooks_dir

HOOKS = ("pre-push", "post-commit", "post-rewrite", "post-merge")
MARKER = "# florgit hook:"
SAVED_SUFFIX = ".florgit-saved"


def script(name: str, python: str | None = None) -> str:
    """The hook file; without ``python`` it calls ``git flor`` from PATH (as in hooks/)."""
    if python is None:
        command = f'exec git flor hook {name} "$@"'
    else:
        command = f'exec {shlex.quote(python)} -m florgit.cli.hook {name} "$@"'
    return f"#!/bin/sh\n{MARKER} `git flor install` put it here; `git flor uninstall` restores what was here\n{command}\n"


def is_ours(path: str) -> bool:
    try:
        with open(path) as f:
            return MARKER in f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


def install(cwd: str, python: str | None = None) -> list[str]:
    """Install every hook; returns a line per hook saying what was done."""
    folder = hooks_dir(cwd)
    os.makedirs(folder, exist_ok=True)
    done = []
    for name in HOOKS:
        path = os.path.join(folder, name)
        if os.path.exists(path) and not is_ours(path):
            os.replace(path, path + SAVED_SUFFIX)
            done.append(f"{name}: installed; your hook now runs first from {name}{SAVED_SUFFIX}")
        else:
            done.append(f"{name}: installed")
        with open(path, "w") as f:
            f.write(script(name, python or sys.executable))
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return done


def uninstall(cwd: str) -> list[str]:
    folder = hooks_dir(cwd)
    done = []
    for name in HOOKS:
        path = os.path.join(folder, name)
        saved = path + SAVED_SUFFIX
        if is_ours(path):
            os.remove(path)
            done.append(f"{name}: removed")
        if os.path.exists(saved):
            os.replace(saved, path)
            done.append(f"{name}: your hook restored")
    return done


def saved_hook(cwd: str, name: str) -> str | None:
    path = os.path.join(hooks_dir(cwd), name + SAVED_SUFFIX)
    return path if os.access(path, os.X_OK) else None
