"""Hermetic fixtures: a temp HOME and git identity, and real repositories built per test."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {
    "GIT_AUTHOR_NAME": "Flor Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.com",
    "GIT_COMMITTER_NAME": "Flor Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.com",
}


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No developer config leaks in: temp HOME, no system config, fixed identity."""
    home = tmp_path_factory.mktemp("home")
    # The hundreds of Python processes the tests start reuse florgit's compiled modules
    # (a machine with PYTHONDONTWRITEBYTECODE=1 recompiles them in every process).
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    for key in list(os.environ):
        if key.startswith(("GIT_", "FLORGIT_", "SLURM_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("FLORGIT_ECHO", "1")
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    _reset_api_state()
    yield home
    _reset_api_state()


def _reset_api_state() -> None:
    from florgit.api import functions

    if functions._rec is not None:
        functions._end("ok")
    functions._failure = None


def git(cwd: Path | str, *args: str, check: bool = True, input_text: str | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input_text)
    if check and out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {out.stderr}")
    return out.stdout


# A checkpointable model for test scripts: one float, state_dict()/load_state_dict().
MODEL = """\
class Model:
    def __init__(self):
        self.w = 1.0

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, state):
        self.w = state["w"]


"""


@dataclass
class Repo:
    path: Path

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
        return target

    def commit(self, message: str = "change") -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD").strip()

    def git(self, *args: str, check: bool = True) -> str:
        return git(self.path, *args, check=check)

    def run(self, script: str, *args: str, check: bool = True, env: dict | None = None, timeout: float = 120):
        """Run ``python script args`` in the repository, as a user would."""
        proc = subprocess.run(
            [sys.executable, script, *args],
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def flor(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run ``git flor ARGS`` in the repository (as ``python -m florgit.cli.main``)."""
        return subprocess.run(
            [sys.executable, "-m", "florgit.cli.main", *args], cwd=self.path, capture_output=True, text=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip

    def state(self) -> dict[str, str]:
        """Fingerprint of everything recording must leave alone."""
        files = {}
        for p in sorted(self.path.rglob("*")):
            rel = p.relative_to(self.path)
            if rel.parts[0] == ".git" or not p.is_file():
                continue
            files[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
        index = self.path / ".git" / "index"
        branches = self.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/")
        user_branches = "\n".join(ln for ln in branches.splitlines() if not ln.startswith("refs/heads/flor.shadow"))
        return {
            "files": repr(files),
            "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else "",
            "HEAD": (self.path / ".git" / "HEAD").read_text(),
            "branches": user_branches,
            "status": self.git("--no-optional-locks", "status", "--porcelain=v1", "--untracked-files=all", "--ignored"),
        }


def bare_recorder(checkpointer=None):
    """A Recorder with only what logging and loops touch (no repository, no flusher);
    ``drained`` counts the hand-offs ``log`` asks of it."""
    import itertools

    from florgit.api import recorder
    from florgit.api.flusher import Buffers

    rec = object.__new__(recorder.Recorder)
    rec._use_buffers(Buffers())
    rec.ctx, rec.depth = 0, 0
    rec._next_ctx, rec._next_loop = itertools.count(1).__next__, itertools.count(1).__next__
    rec.checkpointer, rec._kwargs_checked = checkpointer, True
    rec.drained = 0
    rec.drain = lambda: setattr(rec, "drained", rec.drained + 1)
    return rec


def make_repo(path: Path, *, commit: bool = True) -> Repo:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    repo = Repo(path)
    if commit:
        repo.write("README.md", "# project\n")
        repo.write(".gitignore", "*.ckpt\ndata/\n")
        repo.commit("initial")
    return repo


def seeded_remote(tmp_path: Path, files: dict[str, str]) -> Path:
    """A bare remote (``tmp_path/remote.git``) whose one commit holds ``files``."""
    seed = make_repo(tmp_path / "seed")
    for name, text in files.items():
        seed.write(name, text)
    seed.commit("seed")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed.path), str(bare))
    return bare


def clone_of(bare: Path, where: Path) -> Repo:
    git(where.parent, "clone", "-q", str(bare), str(where))
    return Repo(where)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Repo:
    """A real repository with one commit; the current directory for in-process API calls."""
    r = make_repo(tmp_path / "project")
    monkeypatch.chdir(r.path)
    return r


@pytest.fixture
def git_flor_on_path(tmp_path, monkeypatch):
    """Make `git flor` resolve to this checkout, installed or not."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "git-flor"
    exe.write_text(f"#!{sys.executable}\nimport sys\nfrom florgit.cli.main import main\nsys.exit(main())\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return exe


def run_in_terminal(args: list[str], cwd: Path | str, columns: int = 80, timeout: float = 120) -> tuple[int, str]:
    """Run ``args`` with a pseudo-terminal of ``columns`` columns as stdin, stdout and
    stderr, as a person at a terminal would; returns (exit code, everything shown)."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm"}
    proc = subprocess.Popen(args, cwd=cwd, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=timeout)
    os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r", "\n")
