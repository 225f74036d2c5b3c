"""Installing florgit's git hooks without ever losing the user's own.

Each installed hook is a few lines of shell that run florgit with the Python it is
installed in (by absolute path, so a hook works from any shell or GUI client). A hook
the user already had is moved aside to ``<name>.florgit-saved`` and florgit runs it
first, with the same arguments and input; ``uninstall`` puts it back.

Hooks fail open: a ``git push`` must never break because florgit cannot start. If that
Python is gone, or it runs but cannot import florgit, the hook warns on stderr and
runs the saved hook itself (same arguments, the untouched stdin) and returns its status
(0 when there is none). The check costs nothing when florgit starts: the shell tests the
interpreter with ``[ -x ]``, and the import is tried by the same Python process that
then runs the hook, so stdin is never read by a probe.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys

from florgit.git.command import hooks_dir, run_git

HOOKS = ("pre-push", "post-commit", "post-rewrite", "post-merge", "reference-transaction")
# reference-transaction (git >= 2.28) runs for every ref update of every git command, so
# its shell starts florgit only for committed updates of florgit's tracking refs (a plain
# `git fetch` or `git pull` that brought flor refs, even with nothing else to merge).
FILTERED = {"reference-transaction": ('"$1" = committed', " refs/flor/remotes/")}
MARKER = "# florgit hook:"
SAVED_SUFFIX = ".florgit-saved"


# Run by `python -c` with argv: HOOK_PATH NAME ARGS... ; single quotes are not allowed.
_BOOT = """import sys
try:
    from florgit.cli.hook import main
except Exception as exc:
    from os import access, execv, X_OK
    why = "%s: %s" % (type(exc).__name__, str(exc).encode("unicode_escape").decode("ascii"))
    sys.stderr.write("florgit: cannot start (%s); running only your own hook. " % why)
    sys.stderr.write("Reinstall with `git flor install`\\n")
    sys.stderr.flush()
    saved = sys.argv[1] + ".florgit-saved"
    access(saved, X_OK) and execv(saved, [saved] + sys.argv[3:])
    sys.exit(0)
sys.exit(main(sys.argv[2:], hook_path=sys.argv[1]))"""

# When florgit is not there at all: the saved hook, with the same arguments and stdin.
_FALLBACK = (
    "printf >&2 'florgit: %s; running only your own hook. Reinstall with `git flor install`\\n' \"{what}\"\n"
    '[ -x "$0{suffix}" ] && exec "$0{suffix}" "$@"\n'
    "exit 0\n"
)


def script(name: str, python: str | None = None) -> str:
    """The hook file; without ``python`` it calls ``git flor`` from PATH (as in hooks/).

    Either way it fails open: when florgit cannot start, the user's saved hook still
    runs with the same arguments and stdin and its status is the hook's."""
    head = f"#!/bin/sh\n{MARKER} `git flor install` put it here; `git flor uninstall` restores what was here\n"
    if name in FILTERED:
        return head + _filtered(name, python)
    if python is None:
        body = f'command -v git-flor >/dev/null 2>&1 && exec git flor hook {name} "$@"\n'
        return head + body + _FALLBACK.format(what="git-flor is not on PATH", suffix=SAVED_SUFFIX)
    assert "'" not in _BOOT
    body = f"py={shlex.quote(python)}\n" f"[ -x \"$py\" ] && exec \"$py\" -c '{_BOOT}' \"$0\" {name} \"$@\"\n"
    return head + body + _FALLBACK.format(what="$py cannot be run", suffix=SAVED_SUFFIX)


def _filtered(name: str, python: str | None) -> str:
    """A hook that starts florgit only when its arguments and input concern florgit; the
    user's saved hook always runs, with the same arguments and input."""
    state, needle = FILTERED[name]
    if python is None:
        start = f'command -v git-flor >/dev/null 2>&1 && exec git flor hook {name} "$@" <<FLORGIT_INPUT\n$input\nFLORGIT_INPUT\n'
    else:
        start = (
            f"py={shlex.quote(python)}\n"
            f"[ -x \"$py\" ] && exec \"$py\" -c '{_BOOT}' \"$0\" {name} \"$@\" <<FLORGIT_INPUT\n$input\nFLORGIT_INPUT\n"
        )
    return (
        "input=$(cat)\n"
        f'if [ {state} ]; then case "$input" in *"{needle}"*)\n{start};; esac; fi\n'
        f'[ -x "$0{SAVED_SUFFIX}" ] && exec "$0{SAVED_SUFFIX}" "$@" <<FLORGIT_INPUT\n$input\nFLORGIT_INPUT\n'
        "exit 0\n"
    )


def is_ours(path: str) -> bool:
    try:
        with open(path) as f:
            return MARKER in f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


def not_ours_to_change(cwd: str, folder: str) -> str | None:
    """Why florgit must leave the hooks ``folder`` alone, or None. A folder that ``git``
    tracks is the team's (writing this machine's Python path into it would be committed),
    and one outside this repository is shared with others (uninstalling here would
    remove their hooks)."""
    top = run_git(cwd, "rev-parse", "--show-toplevel", check=False).stdout.strip()
    common = os.path.normpath(os.path.join(cwd, run_git(cwd, "rev-parse", "--git-common-dir").stdout.strip()))
    real = os.path.realpath(folder)
    inside = [p for p in (top, common) if p and (real + os.sep).startswith(os.path.realpath(p) + os.sep)]
    if not inside:
        return f"core.hooksPath points at {folder}, outside this repository (other repositories may share it)"
    if top and inside[0] == top and run_git(top, "ls-files", "--", folder).stdout.strip():
        return f"core.hooksPath points at {folder}, which git tracks (the team's hooks)"
    return None


def _leave_alone(why: str) -> list[str]:
    return [
        f"{why}: florgit leaves it alone. Add a line `git flor hook NAME \"$@\"` to the hooks "
        f"there ({', '.join(HOOKS)}) to share runs with pushes and pulls; `git flor push`/`pull` work without hooks."
    ]


def install(cwd: str, python: str | None = None) -> list[str]:
    """Install every hook; returns a line per hook saying what was done."""
    folder = hooks_dir(cwd)
    why = not_ours_to_change(cwd, folder)
    if why:
        return _leave_alone(why)
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
    why = not_ours_to_change(cwd, folder)
    if why:
        return _leave_alone(why)
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
