"""Runs launched as `python -m pkg.train` (relative imports, a src layout) or as a script in a
subdirectory launched from the repository root replay with the same module and working
folder semantics, warm (forked from a zygote) and cold (a fresh interpreter per task)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import florgit as flor
from florgit.errors import InvalidDataError
from florgit.git import open_repo
from florgit.store import runs
from florgit.store.meta import RunMeta
from florgit.validation import module_name
from tests.conftest import MODEL
from tests.forge import rewrite_meta

TRAIN = """\
import random
import florgit as flor
from {model_import} import Model

scale = float(open({data!r}).read())  # relative to the working folder it was launched from
model = Model()
random.seed(3)
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(flor.arg("epochs", 3))):
        model.w -= scale * (random.random() - 0.5)
        flor.log("w", model.w)
flor.log("where", __name__ + " " + (__package__ or "-"))
"""
HINDSIGHT = (
    ('        flor.log("w", model.w)\n', '        flor.log("w", model.w)\n        flor.log("w_again", model.w)\n'),
    ('flor.log("where"', 'flor.log("scale_seen", scale)\nflor.log("where"'),
)

# layout name -> files, the command line after `python`, extra environment
LAYOUTS = {
    "module": (
        {"pkg/__init__.py": "", "pkg/model.py": MODEL, "pkg/train.py": TRAIN.format(model_import=".model", data="conf/scale.txt")},
        ["-m", "pkg.train", "--kwargs", "epochs=3"],
        {},
    ),
    "src-module": (
        {"src/pkg/__init__.py": "", "src/pkg/model.py": MODEL,
         "src/pkg/train.py": TRAIN.format(model_import="pkg.model", data="conf/scale.txt")},
        ["-m", "pkg.train"],
        {"PYTHONPATH": "src"},
    ),
    "subdirectory": (
        {"experiments/model.py": MODEL, "experiments/train.py": TRAIN.format(model_import="model", data="conf/scale.txt")},
        ["experiments/train.py", "--kwargs", "epochs=3"],
        {},
    ),
}


def _launch(repo, argv: list[str], env: dict[str, str]) -> None:
    extra = {k: os.pathsep.join([value, os.environ.get(k, "")]) for k, value in env.items()}
    proc = subprocess.run([sys.executable, *argv], cwd=repo.path, capture_output=True, text=True, env={**os.environ, **extra})
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("warm", ["1", "0"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_replay_keeps_module_and_working_folder(repo, monkeypatch, layout, warm):
    files, argv, env = LAYOUTS[layout]
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    monkeypatch.setenv("FLORGIT_REPLAY_WARM", warm)
    for name, text in files.items():
        repo.write(name, text)
    repo.write("conf/scale.txt", "0.5\n")  # read relative to the working folder
    repo.commit(layout)
    _launch(repo, argv, env)
    meta = flor.runs().row(0, named=True)
    script = next(n for n in files if n.endswith("train.py"))
    stored = _stored_meta(repo, meta["run_id"])
    assert stored.script == script and stored.cwd == "."
    assert stored.module == (None if layout == "subdirectory" else "pkg.train")

    text = (repo.path / script).read_text()
    for old, new in HINDSIGHT:
        text = text.replace(old, new)
    (repo.path / script).write_text(text)
    plan = flor.replay(["w_again", "scale_seen"])
    assert [r.ok for r in plan.results] and all(r.ok for r in plan.results), [r.output for r in plan.results]

    frame = flor.dataframe("w", "w_again").sort("epoch")
    assert frame.height == 3 and frame["w_again"].to_list() == frame["w"].to_list()
    after = flor.dataframe("scale_seen", "where").row(0, named=True)
    assert after["scale_seen"] == 0.5
    assert after["where"] == ("__main__ pkg" if layout != "subdirectory" else "__main__ -")  # relative imports work


def _stored_meta(repo, run_id: str) -> RunMeta:
    git = open_repo(str(repo.path))
    return runs.read_meta(git, next(r for r in runs.list_runs(git) if r.run_id == run_id))


@pytest.mark.parametrize("bad", ["-c", "os;id", "pkg..train", "", ".pkg", "pkg.", "a" * 300, 7, ["pkg"]])
def test_stored_module_names_are_checked(bad):
    with pytest.raises(ValueError):
        module_name(bad)
    meta = json.loads(RunMeta("20260101-000000.000-0000abcd", "pkg/train.py", ["x"], "2026-01-01T00:00:00Z").to_json())
    meta["module"] = bad
    with pytest.raises(InvalidDataError):
        RunMeta.parse(json.dumps(meta).encode(), meta["run_id"])


def test_module_that_is_not_the_script_is_refused(repo, monkeypatch):
    files, argv, env = LAYOUTS["module"]
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    for name, text in files.items():
        repo.write(name, text)
    repo.write("conf/scale.txt", "0.5\n")
    repo.commit("module")
    _launch(repo, argv, env)
    run_id = flor.runs()["run_id"][0]
    rewrite_meta(repo.path, run_id, module="os")  # a pushed run naming a module outside its code
    script = repo.path / "pkg/train.py"
    script.write_text(script.read_text().replace(*HINDSIGHT[1]))
    plan = flor.replay("scale_seen")
    assert "module 'os' is not its script 'pkg/train.py'" in (plan.runs[0].skip or "")
    assert flor.dataframe("scale_seen")["scale_seen"].drop_nulls().len() == 0  # nothing ran


def test_ignored_data_is_reached_with_link(repo, monkeypatch):
    """Data git ignores is not in the code snapshot: the failure says which --link reaches
    it, and with it the replay reads the working tree's copy (and leaves the tree as it was)."""
    files, argv, env = LAYOUTS["subdirectory"]
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    for name, text in files.items():
        repo.write(name, text.replace("conf/scale.txt", "data/scale.txt"))
    repo.write("data/scale.txt", "0.25\n")  # data/ is in .gitignore
    repo.commit("subdirectory")
    _launch(repo, argv, env)
    script = repo.path / "experiments/train.py"
    script.write_text(script.read_text().replace(*HINDSIGHT[1]))
    before = repo.state()
    failed = flor.replay("scale_seen")
    assert not failed.results[0].ok
    assert "replay with --link data" in failed.results[0].output
    plan = flor.replay("scale_seen", links=["data"])
    assert plan.results[0].ok, plan.results[0].output
    assert flor.dataframe("scale_seen")["scale_seen"].to_list() == [0.25]
    assert repo.state() == before


@pytest.mark.parametrize("bad", ["../elsewhere", "/etc", "nothing-here", ".git"])
def test_link_must_name_something_in_the_working_tree(repo, bad):
    from florgit.errors import UsageError
    from florgit.hindsight.execute import check_links

    with pytest.raises(UsageError, match="--link"):
        check_links(open_repo(str(repo.path)), [bad])
