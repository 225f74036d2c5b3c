"""A clone that pulled runs without their checkpoints: replay fetches just the checkpoints
of the runs it replays from the remote they came from, or stops naming the exact command;
it never quietly re-executes them in full."""

from __future__ import annotations


import pytest

import florgit as flor
from florgit.git import open_repo
from florgit.store import layout, runs
from tests.conftest import Repo, clone_of, git, seeded_remote
from tests.forge import rewrite_meta

TRAIN = """\
import florgit as flor


class Model:
    def __init__(self, w):
        self.w = [w] * 64  # big enough that every run has chunks of its own

    def state_dict(self):
        return {"w": list(self.w)}

    def load_state_dict(self, state):
        self.w = list(state["w"])


model = Model(flor.arg("w", 1.0))
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(3)):
        model.w = [x * 0.5 + epoch for x in model.w]
        flor.log("w0", model.w[0])
"""
HINDSIGHT = TRAIN.replace('        flor.log("w0", model.w[0])\n', '        flor.log("w0", model.w[0])\n        flor.log("w_sum", sum(model.w))\n')


@pytest.fixture
def pulled(tmp_path, monkeypatch):
    """Alice records three runs and pushes them with their checkpoints; Bob pulls the runs only."""
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    bare = seeded_remote(tmp_path, {"train.py": TRAIN})
    alice, bob = (clone_of(bare, tmp_path / n) for n in ("alice", "bob"))
    for w in ("1.0", "2.0", "3.0"):
        alice.run("train.py", "--kwargs", f"w={w}")
    assert alice.flor("push", "--checkpoints").returncode == 0
    assert bob.flor("pull").returncode == 0
    bob.write("train.py", HINDSIGHT)
    monkeypatch.chdir(bob.path)
    ids = sorted(flor.runs()["run_id"].to_list())
    return alice, bob, ids


def _checkpointed_runs(repo: Repo) -> list[str]:
    tree = open_repo(str(repo.path)).tree_at(layout.CHECKPOINTS_REF, "runs")
    return [] if tree is None else git(repo.path, "ls-tree", "-r", "-d", "--name-only", layout.CHECKPOINTS_REF, "--", "runs").split()


def test_replay_fetches_just_the_checkpoints_it_needs(pulled):
    _alice, bob, ids = pulled
    assert _checkpointed_runs(bob) == []
    done = bob.flor("replay", "w_sum", "--run", ids[0], "--run", ids[1], "--yes", "--trust")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fetching the checkpoints of 2 run(s) from origin" in done.stderr
    assert "fetched the checkpoints of 2 run(s)" in done.stderr
    assert "outer" in done.stdout and "full" not in done.stdout  # from checkpoints, not re-executed
    got = flor.dataframe("w0", "w_sum").sort("run_id", "epoch").drop_nulls("w_sum")
    assert got.height == 6 and got["w_sum"].to_list() == [64 * w for w in got["w0"].to_list()]
    assert set(got["run_id"]) == set(ids[:2])
    here = " ".join(_checkpointed_runs(bob))
    assert ids[0] in here and ids[1] in here and ids[2] not in here  # only what was replayed
    git(bob.path, "fsck", "--strict", "--no-dangling")  # every fetched object is whole and reachable


def test_no_fetch_stops_with_the_exact_command(pulled):
    _alice, bob, ids = pulled
    done = bob.flor("replay", "w_sum", "--yes", "--trust", "--no-fetch")
    assert done.returncode == 1
    assert "`git flor pull --checkpoints origin` fetches them" in done.stderr
    assert all(i in done.stderr for i in ids) and "3 run(s) were not replayed" in done.stderr
    assert flor.dataframe("w_sum")["w_sum"].drop_nulls().len() == 0  # nothing re-executed in full
    plan = flor.replay("w_sum", fetch=False, trust=True)
    assert all("git flor pull --checkpoints origin" in (r.skip or "") for r in plan.runs) and not plan.results


def test_remote_without_the_checkpoints_is_named(tmp_path, pulled):
    alice, bob, ids = pulled
    alice.run("train.py", "--kwargs", "w=9.0")  # pushed without its checkpoints
    assert alice.flor("push").returncode == 0
    assert bob.flor("pull").returncode == 0
    new = sorted(set(flor.runs()["run_id"].to_list()) - set(ids))
    done = bob.flor("replay", "w_sum", "--run", new[0], "--yes", "--trust")
    assert done.returncode == 1
    assert "origin does not have them either" in done.stderr and "git flor push --checkpoints" in done.stderr


def test_forged_checkpoint_tree_is_refused(pulled):
    _alice, bob, ids = pulled
    other = runs.read_meta(open_repo(str(bob.path)), runs.find_run(open_repo(str(bob.path)), ids[1]))
    rewrite_meta(bob.path, ids[0], checkpoint_tree=other.checkpoint_tree)  # another run's checkpoints
    plan = flor.replay("w_sum", runs=[ids[0]], trust=True)
    assert "origin sent unusable checkpoints" in (plan.runs[0].skip or "") and not plan.results
    assert ids[0] not in " ".join(_checkpointed_runs(bob))
