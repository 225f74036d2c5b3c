"""`git flor` through the real git binary and through typer's runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from florgit.cli.main import main

TRAIN = """
import florgit as flor
flor.arg("lr", 0.01)
for epoch in flor.loop("epoch", range(2)):
    flor.log("loss", 1.0 / (epoch + 1))
"""


def _git_flor(repo_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "flor", *args], cwd=repo_path, capture_output=True, text=True, timeout=60)


def test_git_flor_h_lists_commands(repo, git_flor_on_path):
    out = _git_flor(repo.path, "-h")
    assert out.returncode == 0
    for command in ("log", "dataframe", "recover"):
        assert command in out.stdout


def test_log_json_and_dataframe_csv(repo, git_flor_on_path):
    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py")
    repo.run("train.py", "--kwargs", "lr=0.5")
    out = _git_flor(repo.path, "log", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert [r["args"]["lr"] for r in rows] == [0.5, 0.01]  # newest first
    assert all(r["status"] == "ok" and r["records"] == 3 for r in rows)
    assert len(json.loads(_git_flor(repo.path, "log", "--json", "-n", "1").stdout.splitlines()[0])) > 0
    csv = _git_flor(repo.path, "dataframe", "lr", "loss", "--format", "csv").stdout.splitlines()
    assert csv[0] == "run_id,start_time,script,epoch,lr,loss" and len(csv) == 5
    table = _git_flor(repo.path, "log")
    assert table.returncode == 0 and "train.py" in table.stdout


def test_errors_exit_1_with_a_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["log"]) == 1
    assert "git init" in capsys.readouterr().err


def test_bad_usage_exits_2(repo):
    assert main(["no-such-command"]) == 2


def test_recover_command(repo, capsys):
    assert main(["recover"]) == 0
    assert "nothing to recover" in capsys.readouterr().out


def test_installed_console_script_if_present(repo):
    exe = shutil.which("git-flor")
    if exe is None:
        pytest.skip("florgit is not installed in this environment")
    out = subprocess.run(["git", "flor", "-h"], cwd=repo.path, capture_output=True, text=True)
    assert out.returncode == 0 and "dataframe" in out.stdout
