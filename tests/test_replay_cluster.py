"""Replay on clusters with existing engines: Slurm array tasks pick their own share, two
partitions run in two clones merge to exactly a one-process replay, and the Ray executor
runs the tasks on a local Ray instance (shared filesystem, or a clone per task that
pushes)."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

import florgit as flor
from florgit.errors import UsageError
from florgit.hindsight.slurm import slurm_partition
from tests.conftest import Repo, clone_of, git, seeded_remote

TRAIN = """\
import florgit as flor


class Model:
    def __init__(self, w):
        self.w = [w, -w]

    def state_dict(self):
        return {"w": list(self.w)}

    def load_state_dict(self, state):
        self.w = list(state["w"])


model = Model(flor.arg("w", 1.0))
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(3)):
            model.w = [x * 0.5 + step + epoch for x in model.w]
        flor.log("w0", model.w[0])
"""
INNER = TRAIN.replace(
    "            model.w = [x * 0.5 + step + epoch for x in model.w]\n",
    "            model.w = [x * 0.5 + step + epoch for x in model.w]\n            flor.log(\"w1\", model.w[1])\n",
)
OUTER = TRAIN.replace('        flor.log("w0", model.w[0])\n', '        flor.log("w0", model.w[0])\n        flor.log("w_sum", sum(model.w))\n')


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _values(repo: Repo, name: str) -> list[dict]:
    code = f"import florgit as flor; print(flor.dataframe({name!r}).sort('run_id', 'epoch', 'step').write_json())"
    out = subprocess.run([sys.executable, "-c", code], cwd=repo.path, capture_output=True, text=True, check=True).stdout
    return pl.read_json(out.encode()).select("run_id", "epoch", "step", name).to_dicts()


@pytest.fixture
def team(tmp_path, monkeypatch):
    """Alice records three runs and pushes them with checkpoints; returns a maker of clones
    that pulled everything."""
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    bare = seeded_remote(tmp_path, {"train.py": TRAIN})
    alice = clone_of(bare, tmp_path / "alice")
    for w in ("1.0", "2.0", "3.0"):
        alice.run("train.py", "--kwargs", f"w={w}")
    _ok(alice.flor("push", "--checkpoints"))

    def clone(name: str, code: str) -> Repo:
        other = clone_of(bare, tmp_path / name)
        _ok(other.flor("pull", "--checkpoints"))
        other.write("train.py", code)
        return other

    return alice, clone


@pytest.mark.parametrize(
    "env, share",
    [
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, (3, 4)),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "0"}, (1, 2)),
        ({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0",
          "SLURM_ARRAY_TASK_STEP": "2"}, (8, 8)),
        ({}, None),
    ],
)
def test_slurm_array_task_is_its_share(env, share):
    assert slurm_partition(env) == share


@pytest.mark.parametrize("env", [{"SLURM_ARRAY_TASK_ID": "2"}, {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"},
                                 {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "2"}])
def test_broken_slurm_environment_says_what_to_pass(env):
    with pytest.raises(UsageError, match="--partition"):
        slurm_partition(env)


def test_two_partitions_in_two_clones_merge_to_one_replay(team):
    """Bob runs share 1 of 2 as a Slurm array task, Carol share 2 with --partition; both
    push; what Alice pulls equals Dave's replay of everything in one process."""
    alice, clone = team
    bob, carol, dave = clone("bob", INNER), clone("carol", INNER), clone("dave", INNER)
    slurm = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1"}
    first = _ok(bob.flor("replay", "w1", "--jobs", "2", "--yes", "--trust", env=slurm))
    assert "share 1 of 2, from the Slurm array" in first.stderr
    _ok(carol.flor("replay", "w1", "--jobs", "2", "--partition", "2/2", "--yes", "--trust"))
    for who in (bob, carol):
        _ok(who.flor("push"))
    _ok(alice.flor("pull"))
    _ok(dave.flor("replay", "w1", "--jobs", "1", "--yes", "--trust"))
    merged, single = _values(alice, "w1"), _values(dave, "w1")
    assert len(merged) == 3 * 4 * 3 and merged == single  # every run, epoch and step, exactly


def test_ray_executor_with_a_clone_per_task(team):
    """From the shell: no cluster running, so a local Ray instance is started; each task
    clones the remote, replays and pushes; the driver pulls the results."""
    _alice, clone = team
    erin = clone("erin", OUTER)
    done = _ok(erin.flor("replay", "w_sum", "--executor", "ray", "--ray-clone", "origin", "--yes", "--trust"))
    assert done.stdout.count(": ok in") == 3
    frame = pl.DataFrame(_values_outer(erin))
    assert frame.height == 12 and frame["w_sum"].null_count() == 0
    grace = clone("grace", OUTER)
    _ok(grace.flor("replay", "w_sum", "--yes", "--trust"))  # the same work, local
    assert _values_outer(erin) == _values_outer(grace)
    assert "/replays/" in git(erin.path, "ls-tree", "-r", "--name-only", "refs/flor/remotes/origin/shadow")  # came through the remote


def _values_outer(repo: Repo) -> list[dict]:
    code = "import florgit as flor; print(flor.dataframe('w0', 'w_sum').sort('run_id', 'epoch').write_json())"
    out = subprocess.run([sys.executable, "-c", code], cwd=repo.path, capture_output=True, text=True, check=True).stdout
    return pl.read_json(out.encode()).to_dicts()


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_executor_on_a_shared_filesystem(team, ray_instance, monkeypatch):
    """From Python, on a running Ray instance: the tasks open this repository by its path
    and store results with the same compare-and-swap merge as local tasks."""
    _alice, clone = team
    frank = clone("frank", OUTER)
    monkeypatch.chdir(frank.path)
    plan = flor.replay("w_sum", executor="ray", trust=True)
    assert len(plan.results) == 3 and all(r.ok for r in plan.results), [r.output for r in plan.results]
    assert ray_instance.is_initialized()  # a running instance is used, not stopped
    grace = clone("grace", OUTER)
    _ok(grace.flor("replay", "w_sum", "--yes", "--trust"))  # the same work, local and in one process
    assert _values_outer(frank) == _values_outer(grace)
