"""`python -m florgit.demo`: two recorded runs in a throw-away repository, a dataframe,
then hindsight logging: a statement added today, computed for both past runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = Path(__file__).with_name("train.py")
IDENTITY = {
    "GIT_AUTHOR_NAME": "florgit demo",
    "GIT_AUTHOR_EMAIL": "demo@florgit.invalid",
    "GIT_COMMITTER_NAME": "florgit demo",
    "GIT_COMMITTER_EMAIL": "demo@florgit.invalid",
}


def _run(cmd: list[str], cwd: Path, env: dict[str, str], shown: str | None = None) -> None:
    print(f"\n$ {shown or ' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


HINDSIGHT = (
    '        flor.log("grad_norm", torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=float("inf")).item())\n'
)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="florgit-demo-"))
    env = {**os.environ, **IDENTITY, "FLORGIT_CHECKPOINT_PERIOD": "1"}
    try:
        repo = workdir / "project"
        repo.mkdir()
        shutil.copy(SCRIPT, repo / "train.py")
        _run(["git", "init", "-q", "-b", "main"], repo, env)
        _run(["git", "add", "train.py"], repo, env)
        _run(["git", "commit", "-q", "-m", "Add training script"], repo, env)
        _run([sys.executable, "train.py"], repo, env)
        _run([sys.executable, "train.py", "--kwargs", "epochs=3", "lr=5e-3"], repo, env)
        _run(["git", "status", "--short", "--branch"], repo, env)
        _run(["git", "log", "--notes=flor", "--format=%h %s%n%N"], repo, env)
        print("\n>>> flor.dataframe('lr', 'epochs', 'val_acc')", flush=True)
        code = (
            "import polars as pl, florgit as flor\n"
            "with pl.Config(tbl_rows=20, fmt_str_lengths=22, tbl_width_chars=140):\n"
            "    print(flor.dataframe('lr', 'epochs', 'val_acc'))\n"
            "    print(flor.dataframe('lr', 'loss').group_by('run_id', 'epoch', maintain_order=True)"
            ".agg(pl.col('lr').first(), pl.col('loss').mean().alias('mean_loss')))\n"
        )
        _run([sys.executable, "-c", code], repo, env)
        print("\n>>> Hindsight: add a statement to today's train.py (at the top of the epoch loop) ...", flush=True)
        script = (repo / "train.py").read_text()
        marker = '        for step in flor.loop("step", range(12)):\n'
        (repo / "train.py").write_text(script.replace(marker, HINDSIGHT + marker))
        _run(["git", "diff"], repo, env)
        cli = [sys.executable, "-m", "florgit.cli.main"]
        _run([*cli, "replay", "grad_norm", "--yes"], repo, env, shown="git flor replay grad_norm --yes")
        print("\n>>> flor.dataframe('lr', 'val_acc', 'grad_norm')", flush=True)
        show = (
            "import polars as pl, florgit as flor\n"
            "with pl.Config(tbl_rows=20, fmt_str_lengths=22, tbl_width_chars=140):\n"
            "    print(flor.dataframe('lr', 'val_acc', 'grad_norm'))\n"
        )
        _run([sys.executable, "-c", show], repo, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
