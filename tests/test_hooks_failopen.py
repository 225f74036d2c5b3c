"""florgit's git hooks fail open: when florgit cannot start (its Python is gone, or cannot
import florgit), `git push` and `git commit` still work, the user's own hook still runs
with the same arguments and stdin, and its status is the hook's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from florgit.git import hooks as git_hooks
from tests.conftest import Repo, git, make_repo

USER_HOOK = """#!/bin/sh
# writes what it got, exits with $USER_HOOK_STATUS (default 0)
{{ echo "args: $*"; echo "stdin:"; cat; }} >> "{marker}"
exit "${{USER_HOOK_STATUS:-0}}"
"""


def _hooks_dir(repo: Repo) -> Path:
    return Path(repo.path, git(repo.path, "rev-parse", "--git-path", "hooks").strip())


def _no_python(tmp_path: Path) -> str:
    return str(tmp_path / "gone" / "venv" / "bin" / "python")  # a deleted virtualenv


def _python_without_florgit(tmp_path: Path) -> str:
    """A real Python that cannot import florgit: isolated (-I ignores PYTHONPATH) and
    without site-packages (-S), where florgit is installed."""
    wrapper = tmp_path / "isolated-python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    wrapper.chmod(0o755)
    check = subprocess.run([str(wrapper), "-c", "import florgit"], capture_output=True)
    assert check.returncode != 0, "the wrapper must not be able to import florgit"
    return str(wrapper)


BROKEN = {"missing-python": _no_python, "python-without-florgit": _python_without_florgit}


@pytest.fixture
def project(tmp_path):
    """A clone of a bare remote, with the user's own hooks, then florgit's on top."""
    seed = make_repo(tmp_path / "seed")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed.path), str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "clone"))
    repo = Repo(tmp_path / "clone")
    hooks = _hooks_dir(repo)
    hooks.mkdir(parents=True, exist_ok=True)
    for name in ("pre-push", "post-commit", "post-rewrite"):
        hook = hooks / name
        hook.write_text(USER_HOOK.format(marker=tmp_path / f"{name}.marker"))
        hook.chmod(0o755)
    return repo, bare, tmp_path


def _install(repo: Repo, python: str) -> None:
    git_hooks.install(str(repo.path), python=python)
    for name in ("pre-push", "post-commit", "post-rewrite"):
        assert Path(str(_hooks_dir(repo) / name) + git_hooks.SAVED_SUFFIX).exists()


def _git(repo: Repo, *args: str, status: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "USER_HOOK_STATUS": str(status)}
    return subprocess.run(["git", *args], cwd=repo.path, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_commit_and_push_work_and_the_users_hooks_run(project, broken):
    repo, bare, tmp = project
    _install(repo, BROKEN[broken](tmp))
    repo.write("a.txt", "1\n")
    git(repo.path, "add", "a.txt")
    commit = _git(repo, "commit", "-q", "-m", "one")
    assert commit.returncode == 0, commit.stderr
    assert "florgit:" in commit.stderr and "running only your own hook" in commit.stderr
    assert "Traceback" not in commit.stderr
    assert (tmp / "post-commit.marker").read_text() == "args: \nstdin:\n"
    push = _git(repo, "push", "-q", "origin", "HEAD")
    assert push.returncode == 0, push.stderr
    head = git(repo.path, "rev-parse", "HEAD").strip()
    assert git(bare, "rev-parse", "main").strip() == head
    pushed = (tmp / "pre-push.marker").read_text()
    assert pushed.startswith(f"args: origin {bare}\nstdin:\n")  # same args, and git's stdin, unread
    assert f"HEAD {head} refs/heads/main " in pushed


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_the_users_failing_status_is_returned(project, broken):
    repo, bare, tmp = project
    _install(repo, BROKEN[broken](tmp))
    before = git(bare, "rev-parse", "main").strip()
    repo.write("b.txt", "2\n")
    git(repo.path, "add", "b.txt")
    assert _git(repo, "commit", "-q", "-m", "two").returncode == 0
    push = _git(repo, "push", "-q", "origin", "HEAD", status=3)
    assert push.returncode != 0 and "failed to push" in push.stderr
    assert git(bare, "rev-parse", "main").strip() == before
    assert "args: origin" in (tmp / "pre-push.marker").read_text()
    # run directly: the hook's exit status is exactly the user's hook's
    hook = _hooks_dir(repo) / "post-commit"
    direct = subprocess.run([str(hook)], cwd=repo.path, capture_output=True, text=True,
                            env={**os.environ, "USER_HOOK_STATUS": "5"})  # fmt: skip
    assert direct.returncode == 5


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_post_rewrite_stdin_reaches_the_users_hook(project, broken):
    repo, _bare, tmp = project
    _install(repo, BROKEN[broken](tmp))
    old = git(repo.path, "rev-parse", "HEAD").strip()
    amend = _git(repo, "commit", "-q", "--amend", "-m", "amended")
    assert amend.returncode == 0, amend.stderr
    new = git(repo.path, "rev-parse", "HEAD").strip()
    assert (tmp / "post-rewrite.marker").read_text() == f"args: amend\nstdin:\n{old} {new}\n"


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_without_a_users_hook_the_hook_succeeds(tmp_path, broken):
    repo = make_repo(tmp_path / "p")
    git_hooks.install(str(repo.path), python=BROKEN[broken](tmp_path))
    hook = _hooks_dir(repo) / "pre-push"
    out = subprocess.run([str(hook), "origin", "x"], cwd=repo.path, input="", capture_output=True, text=True)
    assert out.returncode == 0 and "florgit:" in out.stderr and "Traceback" not in out.stderr


def test_a_working_florgit_still_runs_the_users_hook_with_stdin_and_status(project):
    repo, _bare, tmp = project
    _install(repo, sys.executable)
    hook = _hooks_dir(repo) / "pre-push"
    env = {**os.environ, "USER_HOOK_STATUS": "4"}
    out = subprocess.run([str(hook), "origin", "url"], cwd=repo.path, input="refs/heads/x 1 refs/heads/x 2\n",
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert out.returncode == 4 and "running only your own hook" not in out.stderr
    assert (tmp / "pre-push.marker").read_text() == "args: origin url\nstdin:\nrefs/heads/x 1 refs/heads/x 2\n"


def test_the_hooks_folder_copies_fail_open_without_git_flor(tmp_path):
    """hooks/ holds script(name) without a Python: it calls `git flor` from PATH, and runs
    only the user's hook when there is no git-flor."""
    repo = make_repo(tmp_path / "p")
    hooks = _hooks_dir(repo)
    saved = hooks / ("pre-push" + git_hooks.SAVED_SUFFIX)
    saved.write_text(USER_HOOK.format(marker=tmp_path / "marker"))
    saved.chmod(0o755)
    hook = hooks / "pre-push"
    hook.write_text((Path(__file__).resolve().parents[1] / "hooks" / "pre-push").read_text())
    hook.chmod(0o755)
    bindir = tmp_path / "bin"  # git and the shell tools, but no git-flor
    bindir.mkdir()
    for tool in ("git", "cat", "sh"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        os.symlink(found, bindir / tool)
    env = {**os.environ, "PATH": str(bindir), "USER_HOOK_STATUS": "6"}
    out = subprocess.run([str(hook), "origin", "u"], cwd=repo.path, input="line\n", capture_output=True, text=True, env=env)
    assert out.returncode == 6 and "git-flor is not on PATH" in out.stderr
    assert (tmp_path / "marker").read_text() == "args: origin u\nstdin:\nline\n"


def test_hook_scripts_are_valid_shell():
    for python in (None, "/opt/my env/bin/python3", "/tmp/it's/python"):
        for name in git_hooks.HOOKS:
            text = git_hooks.script(name, python)
            assert git_hooks.MARKER in text
            check = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
            assert check.returncode == 0, check.stderr
