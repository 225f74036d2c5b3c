"""What every benchmark runs under: a throw-away HOME and git identity, florgit from a
given checkout, echo off; nothing of the developer's git or florgit settings leaks in."""

from __future__ import annotations

import os
from pathlib import Path


def isolated_env(home: Path | str, code_root: Path | str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FLORGIT_"))}
    env.update(
        HOME=str(home), GIT_CONFIG_NOSYSTEM="1", PYTHONPATH=str(code_root), FLORGIT_ECHO="0",
        GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x",
    )  # fmt: skip
    return env
