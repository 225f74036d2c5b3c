"""What recording does to the user's repository (nothing) and to .git (runs that last)."""

from __future__ import annotations

import json

import pytest

import florgit as flor
from florgit.git import open_repo
from florgit.store import layout, runs
from tests.conftest import make_repo

TRAIN = """
import florgit as flor
lr = flor.arg("lr", 0.01)
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(4)):
        flor.log("loss", 1.0 / (1 + step + epoch))
    flor.log("acc", 0.5 + epoch / 10)
"""


def _code_files(run_index: int = -1) -> dict[str, str]:
    repo = open_repo()
    stored = runs.list_runs(repo)[run_index]
    meta = runs.read_meta(repo, stored)
    files = {}

    def walk(tree, prefix=""):
        for name, kind, oid in repo.list_tree(tree):
            if kind == "tree":
                walk(oid, prefix + name + "/")
            else:
                files[prefix + name] = repo.read_blob(oid).decode()

    walk(meta.code_tree)
    return files


def test_recording_leaves_worktree_index_head_branches_gitignore_alone(repo):
    repo.write("train.py", TRAIN)
    repo.commit("add train")
    repo.write("train.py", TRAIN + "\n# dirty edit\n")  # unstaged change
    repo.write("notes.txt", "untracked\n")
    repo.write("staged.py", "x = 1\n")
    repo.git("add", "staged.py")
    repo.write("model.ckpt", "ignored\n")
    before = repo.state()
    gitignore = (repo.path / ".gitignore").read_bytes()
    repo.run("train.py")
    repo.run("train.py", "--kwargs", "lr=0.1")
    assert repo.state() == before
    assert (repo.path / ".gitignore").read_bytes() == gitignore
    code = _code_files()
    assert "# dirty edit" in code["train.py"]  # the dirty edit is what ran
    assert code["notes.txt"] == "untracked\n" and "staged.py" in code
    assert "model.ckpt" not in code  # ignored files stay out
    meta = runs.read_meta(open_repo(), runs.list_runs(open_repo())[-1])
    assert meta.dirty and meta.branch == "main" and meta.status == "ok"
    assert meta.argv[-2:] == ["--kwargs", "lr=0.1"] and meta.args == {"lr": 0.1}


def test_large_untracked_files_are_left_out_of_the_snapshot(repo, monkeypatch):
    from florgit.api import recorder

    monkeypatch.setattr(recorder, "MAX_UNTRACKED_BYTES", 1000)
    repo.write("big.bin", "x" * 5000)
    flor.log("x", 1)
    flor.commit()
    meta = runs.read_meta(open_repo(), runs.list_runs(open_repo())[0])
    assert meta.skipped_files == ["big.bin"]
    assert "big.bin" not in _code_files()


def test_notes_show_runs_next_to_their_commit(repo):
    repo.write("train.py", TRAIN)
    head = repo.commit("add train")
    repo.run("train.py")
    repo.run("train.py")
    out = repo.git("log", "--notes=flor", "-1", "--format=%H%n%N")
    lines = out.strip().splitlines()
    assert lines[0] == head
    notes = [json.loads(ln) for ln in lines[1:]]
    assert len(notes) == 2 and all(n["status"] == "ok" for n in notes)
    assert {n["run"] for n in notes} == set(flor.runs()["run_id"].to_list())
    # florgit writes notes trees with 2/38 fan-out
    assert repo.git("ls-tree", "--name-only", layout.NOTES_REF).strip() == head[:2]


def test_detached_head_works(repo):
    repo.write("train.py", TRAIN)
    head = repo.commit("add train")
    repo.git("checkout", "-q", "--detach")
    before = repo.state()
    repo.run("train.py")
    assert repo.state() == before
    meta = runs.read_meta(open_repo(), runs.list_runs(open_repo())[0])
    assert meta.detached and meta.branch is None and meta.user_commit == head


def test_repository_without_commits_works(tmp_path, monkeypatch):
    r = make_repo(tmp_path / "fresh", commit=False)
    monkeypatch.chdir(r.path)
    r.write("train.py", TRAIN)
    before = r.state()
    r.run("train.py")
    assert r.state() == before
    assert r.git("rev-parse", "--verify", "-q", "HEAD", check=False) == ""
    assert flor.dataframe("acc").height == 3
    assert "train.py" in _code_files()


def test_fsck_clean_and_gc_prune_keeps_every_run(repo):
    repo.write("train.py", TRAIN)
    repo.commit("add train")
    for lr in ("0.1", "0.2", "0.3"):
        repo.run("train.py", "--kwargs", f"lr={lr}")
    repo.git("fsck", "--strict", "--no-dangling")
    repo.git("gc", "--prune=now", "--quiet")
    repo.git("fsck", "--strict")
    df = flor.dataframe("lr", "loss")
    assert sorted(set(df["lr"].to_list())) == [0.1, 0.2, 0.3] and df.height == 36
    assert len(_code_files()) >= 2
    assert repo.git("for-each-ref", layout.PENDING_PREFIX) == ""  # no pending refs left


def test_recording_leaves_no_unreachable_objects(repo):
    """A sweep of thousands of runs must not leave garbage behind: each would be a loose
    object `git gc --auto` cannot prune for two weeks, and past 6,700 of them it warns
    (too many unreachable loose objects) after every commit of the user's. While a run
    goes, its pending ref names its code snapshot's tree, not a commit of it."""
    repo.write("train.py", TRAIN)
    repo.commit("add train")
    repo.write("sweep.py", (
        "import subprocess, florgit as flor\n"
        "for lr in (0.1, 0.2, 0.3):\n"
        "    flor.arg('lr', lr)\n"
        "    for e in flor.loop('epoch', range(3)):\n"
        "        flor.log('loss', e * lr)\n"
        "    pending = subprocess.run(['git', 'for-each-ref', '--format=%(objecttype)', 'refs/flor/pending/'],\n"
        "                             capture_output=True, text=True, check=True).stdout.split()\n"
        "    print('pending:', pending)\n"
        "    flor.commit()\n"
    ))  # fmt: skip
    out = repo.run("sweep.py").stdout
    assert out.count("pending: ['tree']") == 3  # one per run, naming its snapshot tree
    repo.git("log", "--all", "--oneline")
    assert repo.git("fsck", "--unreachable", "--no-reflogs", "--no-progress").strip() == ""
    assert repo.git("for-each-ref", layout.PENDING_PREFIX) == ""
    assert flor.dataframe("lr", "loss").height == 9


def test_failed_script_keeps_logs_with_status_failed(repo):
    repo.write("crash.py", "import florgit as flor\nflor.log('x', 1)\nraise ValueError('boom')\n")
    out = repo.run("crash.py", check=False)
    assert out.returncode == 1 and "ValueError: boom" in out.stderr
    assert flor.dataframe("x")["x"].to_list() == [1]
    meta = runs.read_meta(open_repo(), runs.list_runs(open_repo())[0])
    assert meta.status == "failed" and meta.error == "ValueError: boom"


def test_echo_prints_args_and_loop_context_and_can_be_silenced(repo):
    repo.write("train.py", TRAIN)
    out = repo.run("train.py").stdout
    assert "lr: 0.01" in out
    assert "epoch: 0, acc: 0.5" in out
    assert "florgit: committed run" in out
    quiet = repo.run("train.py", env={"FLORGIT_ECHO": "0"}).stdout
    assert quiet == ""


ECHO_TRAIN = """
import time
import florgit as flor
lr = flor.arg("lr", 0.001)
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(3)):
        flor.log("loss", 0.25)
        time.sleep(0.15)
    flor.log("acc", 0.5)
"""


def test_echo_prints_exactly_the_lines_the_readme_documents(repo):
    """README: each arg as it is read (`lr: 0.001`), one line per finished outer iteration
    with the last values logged in it (`epoch: 2, acc: 0.5`), while an iteration runs at
    most two lines a second with its newest values (`epoch: 2, step: 100, loss: 0.31`),
    and `florgit: committed run RUN_ID (ok, N records) to flor.shadow` at the end."""
    import re
    import time

    repo.write("train.py", ECHO_TRAIN)
    started = time.monotonic()
    lines = repo.run("train.py").stdout.splitlines()
    took = time.monotonic() - started
    progress = re.compile(r"epoch: [0-2], step: [0-2], loss: 0\.25")  # the index, as in dataframe()
    assert lines[0] == "lr: 0.001"
    assert re.fullmatch(r"florgit: committed run \S+ \(ok, 13 records\) to flor\.shadow", lines[-1]), lines[-1]
    middle = lines[1:-1]
    assert [ln for ln in middle if ln.startswith("epoch: ") and ", acc: " in ln] == [
        "epoch: 0, acc: 0.5", "epoch: 1, acc: 0.5", "epoch: 2, acc: 0.5"
    ]
    others = [ln for ln in middle if ", acc: " not in ln]
    assert all(progress.fullmatch(ln) for ln in others), others
    assert others and len(others) <= 2 * took + 1  # at most two progress lines a second


@pytest.mark.parametrize("bare", [True])
def test_bare_repository_and_no_repository_are_clear_errors(tmp_path, monkeypatch, bare):
    from florgit.errors import BareRepositoryError, NotARepositoryError

    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    with pytest.raises(NotARepositoryError, match="git init"):
        flor.log("x", 1)
    bare_dir = tmp_path / "bare.git"
    make_repo(bare_dir, commit=False).git("config", "core.bare", "true")
    monkeypatch.chdir(bare_dir)
    with pytest.raises(BareRepositoryError, match="clone"):
        flor.log("x", 1)
