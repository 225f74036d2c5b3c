"""Hindsight replay across three recorded versions of a script and a fourth with the new
statements: placement, strategies, exactness against full re-execution, failures,
idempotence, and the user's repository left as it was."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

import florgit as flor
from florgit.hindsight.propagate import Unplaceable, find_statements, place
from tests.conftest import make_repo

V1 = '''import random
import florgit as flor


class Model:
    def __init__(self):
        self.w = [0.0, 0.0]

    def state_dict(self):
        return {"w": list(self.w)}

    def load_state_dict(self, state):
        self.w = list(state["w"])


lr = flor.arg("lr", 0.1)
epochs = flor.arg("epochs", 3)
random.seed(1)
model = Model()
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(epochs)):
        for step in flor.loop("step", range(4)):
            g = random.random() - 0.5
            model.w[0] -= lr * g
            model.w[1] += lr * g * g
            flor.log("loss", model.w[0] ** 2)
        flor.log("acc", model.w[1])
flor.log("final", model.w[0] + model.w[1])
'''

# v2: inserted lines, a changed default, an extra attribute
V2 = V1.replace('lr = flor.arg("lr", 0.1)', 'lr = flor.arg("lr", 0.2)  # faster').replace(
    '        self.w = [0.0, 0.0]\n', '        self.w = [0.0, 0.0]\n        self.scale = 2.0\n'
).replace("random.seed(1)\n", "random.seed(1)\nnoise = 0.01  # new\n").replace(
    "            model.w[1] += lr * g * g\n", "            model.w[1] += lr * g * g + noise\n"
)
# v3: a deleted line and a renamed variable (model -> net)
V3 = V1.replace("model", "net").replace('        flor.log("acc", net.w[1])\n', "").replace(
    "class Model", "class Model"
)
# v4 (today, not committed): the new statements at three depths, plus one that fails in v1/v3
V4 = V1.replace(
    "        for step in flor.loop(\"step\", range(4)):\n",
    "        flor.log(\"w0_start\", model.w[0])\n        for step in flor.loop(\"step\", range(4)):\n",
).replace(
    "            g = random.random() - 0.5\n",
    "            g = random.random() - 0.5\n            flor.log(\"g_seen\", g)\n",
).replace(
    'flor.log("final", model.w[0] + model.w[1])\n',
    'flor.log("final", model.w[0] + model.w[1])\nflor.log("w_sum", sum(model.w))\n'
    'flor.log("scaled", model.w[0] * model.scale)\n',
)


@pytest.fixture
def history(repo, monkeypatch):
    """Three versions committed and run (with different args), today's code uncommitted."""
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    repo.write("train.py", V1)
    repo.commit("v1")
    repo.run("train.py")
    repo.write("train.py", V2)
    repo.commit("v2")
    repo.run("train.py", "--kwargs", "epochs=4")
    repo.write("train.py", V3)
    repo.commit("v3")
    repo.run("train.py", "--kwargs", "lr=0.05")
    repo.write("train.py", V4)
    return repo


def _full_rerun(tmp_path, code: str, argv: list[str], names: list[str]) -> pl.DataFrame:
    """Ground truth: the patched version executed from scratch, as a normal run."""
    scratch = make_repo(tmp_path / f"scratch-{len(list(tmp_path.iterdir()))}")
    scratch.write("train.py", code)
    scratch.run("train.py", *argv[1:])
    frame = subprocess.run(
        [sys.executable, "-c", f"import florgit as flor; print(flor.dataframe(*{names!r}).write_json())"],
        cwd=scratch.path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return pl.read_json(frame.encode())


@pytest.mark.parametrize(
    "name, strategy, loop_cols",
    [("w_sum", "run", []), ("w0_start", "outer", ["epoch"]), ("g_seen", "inner", ["epoch", "step"])],
)
def test_replayed_values_equal_full_reexecution(history, tmp_path, name, strategy, loop_cols):
    before = history.state()
    plan = flor.replay(name)
    assert [r.strategy for r in plan.runs] == [strategy] * 3
    assert all(r.ok for r in plan.results), [r.output for r in plan.results]
    assert history.state() == before  # the user's tree, index, HEAD and branches untouched
    got = flor.dataframe(name)
    for item in plan.runs:
        truth = _full_rerun(tmp_path, item.patched, item.argv, [name])
        mine = got.filter(pl.col("run_id") == item.run_id).select(*loop_cols, name)
        assert mine.height == truth.height > 0
        assert mine.to_dicts() == truth.select(*loop_cols, name).to_dicts()  # exactly equal


def test_loop_and_after_loop_statements_replay_together(history, tmp_path):
    """An epoch-level and a run-level statement in one replay: the outer strategy goes on
    past the loop, and both equal a full re-execution's values."""
    plan = flor.replay(["w0_start", "w_sum"])
    assert [r.strategy for r in plan.runs] == ["outer"] * 3 and all(r.after_loop for r in plan.runs)
    assert all(r.ok for r in plan.results), [r.output for r in plan.results]
    got = flor.dataframe("w0_start", "w_sum")
    for item in plan.runs:
        truth = _full_rerun(tmp_path, item.patched, item.argv, ["w0_start", "w_sum"])
        mine = got.filter(pl.col("run_id") == item.run_id)
        assert mine.select("epoch", "w0_start", "w_sum").to_dicts() == truth.select("epoch", "w0_start", "w_sum").to_dicts()


def test_statement_lands_in_each_version_keeping_its_formatting(history):
    plan = flor.replay("w0_start", dry_run=True)
    assert len(plan.runs) == 3 and not plan.results
    v2 = next(r for r in plan.runs if "noise" in r.patched)
    assert 'lr = flor.arg("lr", 0.2)  # faster' in v2.patched  # comments and defaults kept
    v3 = next(r for r in plan.runs if "net = Model()" in r.patched)
    assert 'flor.log("w0_start", net.w[0])' in v3.patched  # renamed variable followed
    for item in plan.runs:
        lines = item.patched.splitlines()
        at = lines.index('        flor.log("w0_start", ' + ("net" if item is v3 else "model") + ".w[0])")
        assert lines[at + 1].strip().startswith('for step in flor.loop("step"')


def test_outer_replay_is_joined_with_the_original_rows(history):
    flor.replay("w0_start")
    df = flor.dataframe("lr", "acc", "w0_start")
    assert df.filter(pl.col("acc").is_not_null()).height == 3 + 4  # v3 does not log acc
    assert df.filter(pl.col("w0_start").is_null()).height == 0
    assert df.height == 3 + 4 + 3  # one row per epoch, no duplicates
    long = flor.scan().filter(pl.col("name") == "w0_start").collect()
    assert long["replayed"].all()


def test_crashing_version_keeps_the_others_results(history):
    plan = flor.replay("scaled")
    ok = {r.run_id: r.ok for r in plan.results}
    assert sorted(ok.values()) == [False, False, True]
    failed = [r for r in plan.results if not r.ok]
    assert all("AttributeError" in r.output for r in failed)
    df = flor.dataframe("scaled")
    assert df.height == 1 and df["scaled"].to_list()[0] is not None


def test_replaying_twice_adds_nothing(history):
    flor.replay("g_seen")
    first = flor.scan().filter(pl.col("name") == "g_seen").collect().height
    again = flor.replay("g_seen")
    assert all(r.skip == "already replayed with this code" for r in again.runs)
    assert flor.scan().filter(pl.col("name") == "g_seen").collect().height == first
    from florgit.cli.listing import show_run

    assert "g_seen: " in show_run(again.runs[0].run_id)  # show lists the run's replays


def test_parallel_jobs_and_partitions_give_the_same_values(history, repo):
    plan = flor.replay(["g_seen", "w_sum"], jobs=2)
    assert all(r.ok for r in plan.results) and len(plan.results) > 3  # runs split into ranges
    parallel = flor.dataframe("g_seen").sort("run_id", "epoch", "step")
    # the run-level statement after the loop: once per run, by the range holding the last epoch
    sums = flor.dataframe("w_sum")
    assert sums.height == 3 and sums["w_sum"].null_count() == 0
    # the same work split into partitions, run one by one (as a scheduler would)
    repo.write("train.py", V4.replace("flor.log(\"g_seen\", g)", "flor.log(\"g_seen2\", g)"))
    for k in (1, 2):
        flor.replay("g_seen2", partition=(k, 2))
    split = flor.dataframe("g_seen2").sort("run_id", "epoch", "step")
    assert split["g_seen2"].to_list() == parallel["g_seen"].to_list()


def test_unplaceable_statement_is_reported_and_skipped(history):
    code = V4.replace('flor.loop("step"', 'flor.loop("batch"')
    statement = find_statements(code, "g_seen")[0]
    with pytest.raises(Unplaceable, match="batch"):
        place(statement, V1)
    history.write("train.py", code)
    plan = flor.replay("g_seen")
    assert all(r.skip and "cannot place" in r.skip for r in plan.runs)
    assert plan.results == []


def test_missing_statement_says_what_to_add(history):
    plan = flor.replay("never_logged")
    assert all("add a flor.log('never_logged'" in r.skip for r in plan.runs)


def test_cli_replay_with_yes_and_dry_run(history, capsys):
    from florgit.cli.main import main

    assert main(["replay", "w_sum", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+flor.log(\"w_sum\", sum(model.w))" in out and "run" in out
    assert main(["replay", "w_sum", "--yes"]) == 0
    assert flor.dataframe("w_sum").height == 3


def test_runs_lists_the_last_value_of_a_replayed_name(history):
    flor.replay("w_sum")
    replayed = flor.dataframe("w_sum").sort("run_id")
    runs = flor.runs().sort("run_id")
    assert runs["w_sum"].to_list() == replayed["w_sum"].to_list()
    assert all(v is not None for v in runs["w_sum"].to_list())
