"""`git flor` through the real git binary and through typer's runner."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import florgit as flor
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
    assert [r["lr"] for r in rows] == [0.5, 0.01]  # newest first
    assert all(r["status"] == "ok" and r["loss"] == 0.5 for r in rows)
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


def test_log_where_csv_and_show(repo, capsys):
    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py")
    repo.run("train.py", "--kwargs", "lr=0.5")
    assert main(["log", "--where", "lr > 0.1", "--json"]) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["lr"] == 0.5 and rows[0]["loss"] == 0.5  # last value
    assert main(["log", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run_id,date,commit,branch,script,status,tags,note,duration_s,author,user_commit,dirty,lr,loss") and len(lines) == 3
    assert main(["log", "--where", "no_such_column = 1"]) == 1
    run = rows[0]["run_id"]
    assert main(["show", run[:20]]) == 0
    report = capsys.readouterr().out
    assert f"run      {run}" in report and "args     lr=0.5" in report and "loss" in report


def test_dataframe_formats_and_output_file(repo, tmp_path, capsys):
    import polars as pl

    repo.write("train.py", TRAIN)
    repo.run("train.py")
    out = tmp_path / "df.parquet"
    assert main(["dataframe", "lr", "loss", "--format", "parquet", "-o", str(out)]) == 0
    assert pl.read_parquet(out)["loss"].to_list() == [1.0, 0.5]
    assert main(["dataframe", "loss", "--format", "json"]) == 0
    assert [json.loads(line)["loss"] for line in capsys.readouterr().out.splitlines()] == [1.0, 0.5]  # JSON lines


def test_verify_detects_a_deleted_object_and_gc_keeps_every_run(repo, capsys):
    import florgit as flor
    from florgit.git import open_repo
    from florgit.store import layout, runs

    repo.write("train.py", TRAIN)
    repo.commit("train")
    for lr in ("0.1", "0.2"):
        repo.run("train.py", "--kwargs", f"lr={lr}")
    assert main(["gc"]) == 0
    assert main(["verify"]) == 0
    assert "ok: 2 runs, 2 notes" in capsys.readouterr().out
    assert sorted(flor.dataframe("lr")["lr"].to_list()) == [0.1, 0.2]
    # unpack so single objects can be removed, then delete one run's records table
    git_dir = repo.path / ".git"
    for pack in (git_dir / "objects" / "pack").glob("*.pack"):
        moved = pack.with_suffix(".old")
        pack.rename(moved)
        pack.with_suffix(".idx").unlink()
        subprocess.run(["git", "unpack-objects", "-q"], cwd=repo.path, stdin=open(moved, "rb"), check=True)
        moved.unlink()
    stored = runs.list_runs(open_repo())[0]
    oid = dict((n, o) for n, _k, o in open_repo().list_tree(stored.tree))[layout.RECORDS]
    (git_dir / "objects" / oid[:2] / oid[2:]).unlink()
    assert main(["verify"]) == 1
    assert oid in capsys.readouterr().err


def test_dataframe_output_format_follows_the_file_name_and_unknown_names_get_a_hint(repo, tmp_path, capsys):
    import polars as pl

    from florgit.cli.main import main

    for epoch in flor.loop("epoch", range(2)):
        flor.log("loss", 0.5)
    flor.commit()
    target = tmp_path / "x.parquet"
    assert main(["dataframe", "loss", "-o", str(target)]) == 0
    assert pl.read_parquet(target)["loss"].to_list() == [0.5, 0.5]
    assert main(["dataframe", "loss", "-o", str(tmp_path / "x.csv")]) == 0
    assert (tmp_path / "x.csv").read_text().startswith("run_id,")
    assert main(["dataframe", "loss", "-o", str(tmp_path / "x.weird")]) == 2
    capsys.readouterr()
    assert main(["dataframe", "los"]) == 0
    assert "did you mean 'loss'" in capsys.readouterr().err
    assert main(["dataframe", "epoch"]) == 0
    assert "'epoch' is a loop" in capsys.readouterr().err


def test_dataframe_where_in_the_api_and_the_cli(repo, capsys):
    for lr in (0.1, 0.2):
        flor.arg("lr", lr)
        for epoch in flor.loop("epoch", range(2)):
            flor.log("loss", lr * epoch)
        flor.commit()
    assert flor.dataframe("lr", "loss", where="lr > 0.15 AND epoch = 1")["loss"].to_list() == [0.2]
    capsys.readouterr()  # the runs' echo
    assert main(["dataframe", "lr", "loss", "--where", "lr < 0.15", "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 3  # header and the two epochs of lr 0.1


def test_runs_and_log_share_the_run_columns(repo, capsys):
    flor.arg("lr", 0.1)
    flor.commit()
    runs = flor.runs()
    assert {"author", "duration_s", "user_commit", "dirty", "tags", "note"} <= set(runs.columns)
    assert runs["author"].to_list() == ["Flor Tester <tester@example.com>"]
    capsys.readouterr()
    assert main(["log", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert row["author"] == "Flor Tester <tester@example.com>" and len(row["user_commit"]) == 40
    assert row["duration_s"] >= 0 and row["dirty"] is False
