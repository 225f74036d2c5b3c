"""What every benchmark runs under: a throw-away HOME and git identity, florgit from a
given checkout, echo off; nothing of the developer's git or florgit settings leaks in.
And FlorDB 4.0.1, for the benchmarks that compare with it, in its own virtualenv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLORDB_VERSION = "4.0.1"
VENV = Path("/tmp/florgit-bench-flordb-venv")


def isolated_env(home: Path | str, code_root: Path | str) -> dict[str, str]:
    """The environment for florgit from ``code_root``, whose modules are compiled first."""
    compile_modules(code_root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FLORGIT_"))}
    env.update(
        HOME=str(home), GIT_CONFIG_NOSYSTEM="1", PYTHONPATH=str(code_root), FLORGIT_ECHO="0",
        GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x",
    )  # fmt: skip
    return env


def compile_modules(code_root: Path | str) -> None:
    """Writes florgit's bytecode (``__pycache__``, ignored by git) as ``pip install`` does
    for an installed package, and as FlorDB's virtualenv has it. An editable checkout run
    with PYTHONDONTWRITEBYTECODE=1 (this machine sets it) would otherwise compile every
    module it imports in every fresh process: ~25 ms of a query's figure, not florgit's."""
    import compileall

    compileall.compile_dir(str(Path(code_root) / "florgit"), quiet=1)


def flordb_python(venv: Path = VENV) -> tuple[str | None, str]:
    """The FlorDB venv's python (creating the venv if needed), or None and the reason."""
    py = venv / "bin" / "python"
    check = [str(py), "-c", f"import importlib.metadata as m; assert m.version('flordb') == '{FLORDB_VERSION}'"]
    try:
        if py.exists() and subprocess.run(check, capture_output=True, timeout=60, check=False).returncode == 0:
            return str(py), "existing venv"
        print(f"Installing flordb=={FLORDB_VERSION} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        pip = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", f"flordb=={FLORDB_VERSION}"],
            capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        if pip.returncode != 0:
            return None, "pip install failed: " + " | ".join(pip.stderr.strip().splitlines()[-3:])
        if subprocess.run(check, capture_output=True, timeout=60, check=False).returncode != 0:
            return None, f"flordb {FLORDB_VERSION} not importable from {venv}"
        return str(py), "fresh venv"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"venv set-up failed: {exc}"
