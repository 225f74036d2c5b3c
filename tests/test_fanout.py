"""The shadow branch's fan-out: a run is stored at ``runs/<day>/<xx>/<run>``, so storing
one rewrites a few small trees however many runs a day already has; runs stored before
the fan-out (``runs/<day>/<run>``) stay readable, replayable and removable where they are."""

from __future__ import annotations

import subprocess
import sys

import polars as pl

import florgit as flor
from florgit.git import open_repo
from florgit.store import layout, runs
from tests import forge
from tests.conftest import MODEL, git

TRAIN = "import florgit as flor\n\n\n" + MODEL + """\
model = Model()
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(3)):
        model.w = model.w * 0.5 + epoch
        flor.log("w", model.w)
"""


def _to_legacy(repo_path, ref: str, run_id: str) -> None:
    """Rewrite ``ref`` so the run sits where florgit stored runs before the fan-out."""
    tree = git(repo_path, "rev-parse", f"{ref}:{layout.run_path(run_id)}").strip()
    day = git(repo_path, "mktree", input_text=f"040000 tree {tree}\t{run_id}\n").strip()
    top = git(repo_path, "mktree", input_text=f"040000 tree {day}\t{run_id[:8]}\n").strip()
    root = git(repo_path, "mktree", input_text=f"040000 tree {top}\t{layout.RUNS_DIR}\n").strip()
    commit = git(repo_path, "commit-tree", root, "-p", ref, "-m", "as an older florgit stored it").strip()
    git(repo_path, "update-ref", ref, commit)


def test_legacy_runs_stay_readable_replayable_and_new_runs_fan_out(repo, monkeypatch):
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py")
    old = flor.runs()["run_id"][0]
    for ref in (layout.SHADOW_REF, layout.CHECKPOINTS_REF):
        _to_legacy(repo.path, ref, old)
    assert runs.find_run(open_repo(str(repo.path)), old).path == layout.legacy_run_path(old)

    repo.run("train.py")  # a new run lands in the fanned-out layout next to the old one
    new = (set(flor.runs()["run_id"]) - {old}).pop()
    assert runs.find_run(open_repo(str(repo.path)), new).path == layout.run_path(new)
    assert flor.dataframe("w").height == 6

    repo.write("train.py", TRAIN.replace('        flor.log("w", model.w)\n', '        flor.log("w", model.w)\n        flor.log("w2", model.w * 2)\n'))
    plan = flor.replay("w2")
    assert [r.strategy for r in plan.runs] == ["outer", "outer"] and all(r.ok for r in plan.results)
    got = flor.dataframe("w", "w2")
    assert got.height == 6 and got["w2"].to_list() == [2 * w for w in got["w"].to_list()]
    # the old run's replay went into its own folder, so it is one run with its results
    listed = git(repo.path, "ls-tree", "-r", "-d", "--name-only", layout.SHADOW_REF).split()
    assert f"{layout.legacy_run_path(old)}/replays" in listed and f"{layout.run_path(new)}/replays" in listed
    assert not any(p.startswith(f"{layout.run_path(old)}") for p in listed)

    done = subprocess.run([sys.executable, "-m", "florgit.cli.main", "rm", old[-8:]], cwd=repo.path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert flor.runs()["run_id"].to_list() == [new]
    verify = subprocess.run([sys.executable, "-m", "florgit.cli.main", "verify"], cwd=repo.path, capture_output=True, text=True)
    assert "not a florgit run path" not in verify.stdout + verify.stderr


def _tree_bytes(repo_path, old: str, new: str) -> tuple[int, int]:
    """Trees the commit ``new`` added over ``old``: how many, and their bytes."""
    changed = git(repo_path, "diff-tree", "-r", "-t", "--no-commit-id", old, new).splitlines()
    oids = [line.split()[3] for line in changed if line.split()[1] == "040000"]
    sizes = [int(git(repo_path, "cat-file", "-s", oid)) for oid in oids]
    return len(oids) + 1, sum(sizes) + int(git(repo_path, "cat-file", "-s", f"{new}^{{tree}}"))


def test_storing_a_run_rewrites_a_bounded_number_of_small_trees(repo):
    day, costs, stored = "20250101", [], 0
    for total in (100, 800):
        for _ in range(total - stored):
            forge.forge_run(repo.path, run_id=forge.new_id(day))
        stored = total + 1
        before = git(repo.path, "rev-parse", layout.SHADOW_REF).strip()
        forge.forge_run(repo.path, run_id=forge.new_id(day))
        after = git(repo.path, "rev-parse", layout.SHADOW_REF).strip()
        costs.append(_tree_bytes(repo.path, before, after))
    (trees_100, bytes_100), (trees_800, bytes_800) = costs
    assert trees_100 == trees_800 == 5  # root, runs/, the day, its bucket, the run
    # A day's folder has at most 256 entries (~7.7 KB), where the legacy layout's held
    # every run of the day (800 runs: ~45 KB, rewritten by each new run).
    assert bytes_100 < bytes_800 < 12_000
    assert len(runs.list_runs(open_repo(str(repo.path)))) == 801


def test_entries_that_are_not_runs_are_reported_and_skipped(repo):
    good = forge.forge_run(repo.path)
    wrong_bucket = forge.new_id()
    forge.put_run(repo.path, f"{layout.RUNS_DIR}/{wrong_bucket[:8]}/zz/{wrong_bucket}", forge.tables())
    forge.put_run(repo.path, f"{layout.RUNS_DIR}/{good[:8]}/{good[-8:-6]}/not-a-run", forge.tables())
    listed = [r.run_id for r in runs.list_runs(open_repo(str(repo.path)))]
    assert listed == [good]
    problems = runs.layout_problems(open_repo(str(repo.path)))
    assert any("/zz" in p and "not a florgit run path" in p for p in problems)
    assert any("not-a-run" in p for p in problems)
    assert isinstance(flor.runs(), pl.DataFrame) and flor.runs()["run_id"].to_list() == [good]


def test_a_sweep_from_one_commit_keeps_its_note_small(repo):
    """A commit's note lists its first MAX_NOTE_LINES runs; the sweep's later runs are
    stored and listed all the same, so no run rewrites an ever larger note."""
    repo.write("sweep.py", "import florgit as flor\nfor r in range(105):\n    flor.log('r', r)\n    flor.commit()\n")
    head = repo.commit("sweep")
    repo.run("sweep.py")
    note = git(repo.path, "notes", "--ref", layout.NOTES_REF, "show", head)
    assert len(note.splitlines()) == runs.MAX_NOTE_LINES
    assert flor.runs().height == 105
