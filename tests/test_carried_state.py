"""Loop-carried state: variables a checkpointed loop carries across iterations (a best
score, a history list, an early-stopping counter, a hand-decayed learning rate, a global
step, the last loss of an inner loop) come back exactly on replay, at module level and
inside a function."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import polars as pl
import pytest

import florgit as flor
from florgit.hindsight.carried import loop_state
from tests.conftest import MODEL, make_repo

BODY = """\
model = Model()
random.seed(0)
best_acc, history, patience, lr, global_step = 0.0, [], 0, 0.1, 0
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(6)):
        for step in flor.loop("step", range(3)):
            loss = random.random() * model.w
            model.w -= lr * loss
            global_step += 1
        acc = 1.0 - loss + 0.01 * epoch
        history.append(acc)
        if acc > best_acc:
            best_acc, patience = acc, 0
        else:
            patience += 1
        lr = lr * 0.9
        flor.log("acc", acc)
flor.log("best", best_acc)
flor.log("n_hist", len(history))
"""
HEAD = "import random\nimport florgit as flor\n\n\n" + MODEL
EPOCH_STATEMENT = '        flor.log("carried", f"{global_step},{patience},{lr:.9f},{len(history)},{loss:.9f},{best_acc:.9f}")\n'
AFTER_STATEMENT = 'flor.log("final_state", f"{best_acc:.9f},{sum(history):.9f},{global_step},{patience}")\n'


def _script(in_function: bool, statements: bool) -> str:
    body = BODY
    if statements:
        body = body.replace('        flor.log("acc", acc)\n', '        flor.log("acc", acc)\n' + EPOCH_STATEMENT)
        body += AFTER_STATEMENT
    if in_function:
        return HEAD + "def main():\n" + textwrap.indent(body, "    ") + "\n\nmain()\n"
    return HEAD + body


def test_the_analysis_finds_each_kind_of_carried_variable():
    source = _script(False, False)
    line = source.splitlines().index('    for epoch in flor.loop("epoch", range(6)):') + 1
    state = loop_state(source, line)
    assert state is not None
    assert set(state.carried) == {"loss", "global_step", "history", "best_acc", "patience", "lr"}
    assert {"loss", "global_step", "step"} <= state.changed_in_inner
    # data read but never changed in the loop is not carried
    assert "model" not in state.carried and "epoch" not in state.carried


@pytest.mark.parametrize("in_function", [False, True], ids=["module", "function"])
def test_replay_restores_loop_carried_variables_exactly(repo, tmp_path, monkeypatch, in_function):
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    repo.write("train.py", _script(in_function, False))
    repo.commit("train")
    repo.run("train.py")
    repo.write("train.py", _script(in_function, True))
    for name, strategy in (("carried", "outer"), ("final_state", "run")):
        plan = flor.replay(name)
        assert [r.strategy for r in plan.runs] == [strategy]
        assert all(r.ok for r in plan.results), [r.output for r in plan.results]
        truth = _full_rerun(tmp_path, _script(in_function, True), name)
        got = flor.dataframe(name).select(*(["epoch"] if strategy == "outer" else []), name)
        assert got.height == truth.height > 0
        assert got.to_dicts() == truth.select(got.columns).to_dicts()


def _full_rerun(tmp_path, code: str, name: str) -> pl.DataFrame:
    scratch = make_repo(tmp_path / f"scratch-{len(list(tmp_path.iterdir()))}")
    scratch.write("train.py", code)
    scratch.run("train.py")
    out = subprocess.run(
        [sys.executable, "-c", f"import florgit as flor; print(flor.dataframe({name!r}).write_json())"],
        cwd=scratch.path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return pl.read_json(out.encode())


TRACKED = "import florgit as flor\n\n\n" + MODEL + """\
class Tracker:
    def __init__(self):
        self.seen = []

    def add(self, value):
        self.seen.append(value)


model, tracker = Model(), Tracker()
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(3)):
        model.w *= 0.5
        tracker.add(model.w)
        flor.log("w", model.w)
flor.log("n", len(tracker.seen))
"""


def test_state_that_cannot_be_stored_makes_the_plan_inexact_and_strict_refuses(repo, monkeypatch, capsys):
    from florgit.cli.main import main
    from florgit.errors import UsageError

    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    repo.write("train.py", TRACKED)
    repo.commit("train")
    repo.run("train.py")
    repo.write("train.py", TRACKED + 'flor.log("seen", sum(tracker.seen))\n')
    plan = flor.replay("seen", dry_run=True)
    assert [r.inexact for r in plan.runs] == [{"tracker": "__main__.Tracker"}]
    with pytest.raises(UsageError, match="tracker"):
        flor.replay("seen", strict=True)
    assert main(["replay", "seen", "--yes", "--strict"]) == 1
    captured = capsys.readouterr()
    assert "INEXACT: tracker (__main__.Tracker)" in captured.out and "--strict" in captured.err


ADJACENT = """\
import florgit as flor

total = 0
for epoch in flor.loop("epoch", range(3)):
    total += epoch
    flor.log("total", total)
"""


def test_new_statements_added_together_are_placed_together(repo, capsys):
    from florgit.cli.main import main

    repo.write("train.py", ADJACENT)
    repo.commit("train")
    repo.run("train.py")
    both = '    flor.log("double", total * 2)\n    flor.log("triple", total * 3)\n'
    repo.write("train.py", ADJACENT.replace('    flor.log("total", total)\n', '    flor.log("total", total)\n' + both))
    for name, factor in (("triple", 3), ("double", 2)):  # the second one's neighbour is the first, also new
        assert main(["replay", name, "--yes"]) == 0, capsys.readouterr()
        assert flor.dataframe(name)[name].to_list() == [0 * factor, 1 * factor, 3 * factor]
    # a statement no version can take fails the command and names the run
    repo.write("train.py", ADJACENT.replace("for epoch", "for other in flor.loop('other', range(1)):\n    flor.log('lost', 1)\nfor epoch"))
    assert main(["replay", "lost", "--yes"]) == 1
    assert "skipped " in capsys.readouterr().err


def test_a_manifest_never_chooses_which_variables_replay_overwrites(repo, tmp_path, monkeypatch):
    """Stored variables are written back only when the loop's own analysis carries them:
    a forged manifest naming `flor` or `Model` changes nothing."""
    import json

    from florgit.git import open_repo
    from florgit.store import checkpoints, layout

    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    repo.write("train.py", _script(False, False))
    repo.commit("train")
    repo.run("train.py")
    git = open_repo()
    run_id = flor.runs()["run_id"].to_list()[0]
    forged = {}
    for info in checkpoints.list_checkpoints(git, run_id):
        manifest = json.loads(git.blob_at(layout.CHECKPOINTS_REF, info.path))
        manifest["variables"] = {**manifest.get("variables", {}), "flor": 1, "Model": "pwned"}
        forged[info.path] = git.write_blob(json.dumps(manifest).encode())
    git.put_blobs_in_ref(layout.CHECKPOINTS_REF, forged, "forged variables")
    repo.write("train.py", _script(False, True))
    plan = flor.replay("carried")
    assert all(r.ok for r in plan.results), [r.output for r in plan.results]
    truth = _full_rerun(tmp_path, _script(False, True), "carried")
    assert flor.dataframe("carried")["carried"].to_list() == truth["carried"].to_list()
