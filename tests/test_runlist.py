"""flor.runs() and `git flor log` list every run with its args and the last value of each
logged name, read from the runs' metadata, and the same from the tables where a run's
metadata has no summary."""

from __future__ import annotations

import json
import warnings

import florgit as flor
from florgit.git import open_repo
from florgit.store import layout
from tests import forge

TRAIN = """
import florgit as flor
flor.set_echo(False)
lr = flor.arg("lr", 0.1)
opt = flor.arg("opt", "adam")
for epoch in flor.loop("epoch", range(3)):
    flor.log("loss", 1.0 / (epoch + 1) * lr)
    flor.log("steps", epoch * 10)
    flor.log("status", "fine" if epoch < 2 else "done")
    flor.log("better", epoch % 2 == 0)
"""


def _run_files(repo_path, run_id: str) -> dict[str, str]:
    git_repo = open_repo(str(repo_path), require_workdir=False)
    tree = git_repo.tree_at(layout.SHADOW_REF, layout.run_path(run_id))
    return {name: oid for name, _kind, oid in git_repo.list_tree(tree)}


def _rewrite_meta(repo_path, run_id: str, edit) -> None:
    """Replace the run's meta.json with ``edit(meta dict)``, keeping every other entry."""
    git_repo = open_repo(str(repo_path), require_workdir=False)

    def rewrite(_path: str, old: bytes | None) -> bytes:
        return json.dumps(edit(json.loads(old or b"{}"))).encode()

    path = f"{layout.run_path(run_id)}/{layout.META_FILE}"
    assert git_repo.edit_blobs_in_ref(layout.SHADOW_REF, [path], rewrite, "edit meta", 1 << 20)


def test_runs_has_arg_values_and_last_values_of_every_type(repo):
    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py")
    repo.run("train.py", "--kwargs", "lr=0.2", "opt=sgd")
    runs = flor.runs()
    assert runs["run_id"].to_list() == sorted(runs["run_id"].to_list())  # oldest first, like dataframe()
    assert runs["lr"].to_list() == [0.1, 0.2] and runs["opt"].to_list() == ["adam", "sgd"]
    assert runs["loss"].to_list() == [1 / 3 * 0.1, 1 / 3 * 0.2]
    assert runs["steps"].to_list() == [20, 20] and runs["better"].to_list() == [True, True]
    assert runs["status"].to_list() == ["ok", "ok"] and runs["log:status"].to_list() == ["done", "done"]
    assert {"tags", "note", "duration_s", "author", "dirty", "user_commit"} <= set(runs.columns)


def test_runs_reads_no_tables_and_a_run_without_a_summary_reads_its_own(repo):
    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py")
    repo.run("train.py", "--kwargs", "lr=0.3")
    expected = flor.runs()
    old, new = expected["run_id"].to_list()
    # a run from before the summary existed: the same values, from its tables
    _rewrite_meta(repo.path, old, lambda m: {k: v for k, v in m.items() if k != "last"})
    assert flor.runs().drop("duration_s").equals(expected.drop("duration_s"))
    # the summarised run's records table is gone: the listing never needed it
    forge.delete_object(repo.path, _run_files(repo.path, new)[layout.RECORDS])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert flor.runs().equals(expected)
        assert flor.dataframe("loss")["run_id"].unique().to_list() == [old]  # the query does need it
    assert any(new in str(w.message) for w in caught)


def test_log_shows_the_same_last_values(repo):
    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py", "--kwargs", "lr=0.5")
    from florgit.cli.listing import run_table

    table = run_table()
    row = table.frame.row(0, named=True)
    assert table.args == ["lr", "opt"] and row["lr"] == 0.5 and row["log:status"] == "done" and row["steps"] == 20


def test_to_pandas_works_and_says_how_to_get_pandas_when_it_is_missing(repo, monkeypatch):
    import sys

    import pytest

    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py")
    for frame in (flor.runs(), flor.dataframe("loss"), flor.query("SELECT run_id FROM runs")):
        assert frame.to_pandas().shape == frame.shape
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'florgit\[pandas\]'"):
        flor.dataframe("loss").to_pandas()
