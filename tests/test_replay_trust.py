"""Replay reads code that may come from someone else's push: exporting a run's code tree
stays inside the replay folder whatever the tree holds, the recorded script and working
folder are confined, the run's own exported script runs (never argv[0] as typed), and a
foreign run's code (recorded in another clone) runs only with --trust or a confirmation.

Hostile runs are forged with plumbing: a copy of a recorded run under a new run id (so
it is not in this clone's registry, as if pulled), with raw tree objects that git's own
tree builders refuse to write (``git hash-object -t tree --literally``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import florgit as flor
from florgit.cli.main import app, main
from florgit.git import open_repo
from florgit.hindsight.execute import _export
from florgit.hindsight.plan import make_plan
from florgit.store import layout, runs, trust
from tests import forge

TRAIN = """import florgit as flor

total = 0
for epoch in flor.loop("epoch", range(2)):
    total += epoch
    flor.log("loss", total)
flor.log("final", total)
"""
TODAY = TRAIN + 'flor.log("extra", total * 10)\n'
TREE, FILE, EXEC, LINK, COMMIT = "40000", "100644", "100755", "120000", "160000"


@pytest.fixture
def recorded(repo):
    """One run recorded in this clone, today's script with a new statement."""
    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py")
    repo.write("train.py", TODAY)
    return repo


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The replay's temp folder goes under ``tmp/``, next to a sentinel folder that a
    tree escaping with '..' would reach."""
    tmp = tmp_path / "tmp"
    (tmp / "sentinel").mkdir(parents=True)
    (tmp / "sentinel" / "keep.txt").write_text("keep")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- forging runs with plumbing --------------------------------------------------------
def _blob(repo, data: bytes | str) -> str:
    return forge.blob(repo.path, data)


def _raw_tree(repo, entries: list[tuple[str, str, str]]) -> str:
    return forge.raw_tree(repo.path, entries)


def _own_run(repo) -> runs.StoredRun:
    return runs.list_runs(open_repo(str(repo.path)))[0]


def _forge(repo, *, code: list[tuple[str, str, str]] | None = None, train_py: str | None = None, **meta_changes) -> str:
    """A copy of the recorded run under a new id, as if pulled from a teammate: its code
    tree is the recorded one plus ``code`` entries (train.py replaced by ``train_py``), its
    meta.json fields changed by ``meta_changes``."""
    git = open_repo(str(repo.path))
    source = _own_run(repo)
    files = {name: oid for name, kind, oid in git.list_tree(source.tree) if kind == "blob"}
    own_code = git.subtree(source.tree, layout.CODE_DIR)
    entries = {name: (FILE, oid) for name, kind, oid in git.list_tree(own_code) if kind == "blob"}
    if train_py is not None:
        entries["train.py"] = (FILE, _blob(repo, train_py))
    code_tree = _raw_tree(repo, [(m, n, o) for n, (m, o) in entries.items()] + (code or []))
    run_id = layout.new_run_id()
    meta = json.loads(git.read_blob(files[layout.META_FILE]))
    meta.update(run_id=run_id, code_tree=code_tree, **meta_changes)
    files[layout.META_FILE] = _blob(repo, json.dumps(meta))
    run_tree = _raw_tree(repo, [(FILE, n, o) for n, o in files.items()] + [(TREE, layout.CODE_DIR, code_tree)])
    git.put_tree_in_ref(layout.SHADOW_REF, layout.run_path(run_id), run_tree, f"pulled run {run_id}")
    return run_id


def _evil(marker: Path) -> str:
    """The training script, plus a line showing whether it was executed."""
    return TRAIN.replace("total = 0\n", f"total = 0\nopen({str(marker)!r}, 'w').write('ran')\n")


def _plan_of(repo, run_id: str):
    return next(r for r in make_plan(open_repo(str(repo.path)), ["extra"]).runs if r.run_id == run_id)


def _replayed(run_id: str) -> list:
    frame = flor.dataframe("extra")
    if "extra" not in frame.columns:
        return []
    return frame.filter(pl.col("run_id") == run_id).get_column("extra").drop_nulls().to_list()


# -- the registry of own runs ---------------------------------------------------------
def test_runs_recorded_here_are_own_and_pulled_ones_foreign(recorded):
    own = _own_run(recorded).run_id
    assert (recorded.path / ".git" / "flor" / "own-runs").read_text() == f"{own}\n"
    pulled = _forge(recorded)
    plan = make_plan(open_repo(), ["extra"])
    assert {r.run_id: r.foreign for r in plan.runs} == {own: False, pulled: True}
    assert recorded.git("status", "--porcelain") == " M train.py\n"  # the registry lives in .git only


def test_mark_own_appends_and_ignores_what_is_not_a_run_id(recorded):
    git = open_repo()
    own = _own_run(recorded).run_id
    trust.mark_own(git, own)
    trust.mark_own(git, "x\nevil")
    assert trust.own_runs(git) == {own}
    assert (recorded.path / ".git" / "flor" / "own-runs").read_text() == f"{own}\n{own}\n"


# -- the run's own code, whatever argv[0] was ----------------------------------------------
def test_absolute_argv0_replays_the_recorded_version(repo):
    repo.write("train.py", 'import florgit as flor\n\nbase = 1\nflor.log("val", base)\n')
    repo.commit("v1")
    repo.run(str(repo.path / "train.py"))  # python /abs/path/train.py
    meta = runs.read_meta(open_repo(), _own_run(repo))
    assert os.path.isabs(meta.argv[0]) and meta.script == "train.py"
    repo.write("train.py", 'import florgit as flor\n\nbase = 2\nflor.log("val", base)\nflor.log("hind", base * 100)\n')
    assert main(["replay", "hind", "--yes"]) == 0
    assert flor.dataframe("hind")["hind"].to_list() == [100]  # the recorded base = 1, not today's 2


def test_foreign_argv0_is_never_executed(recorded, tmp_path):
    marker = tmp_path / "argv0-ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    pulled = _forge(recorded, argv=[str(evil)])
    assert main(["replay", "extra", "--yes", "--trust"]) == 0
    assert not marker.exists()
    assert _replayed(pulled) == [10]


# -- foreign code runs only when trusted ----------------------------------------------------
def test_yes_alone_skips_foreign_runs(recorded, tmp_path, capsys):
    marker = tmp_path / "foreign-ran"
    pulled = _forge(recorded, train_py=_evil(marker))
    assert main(["replay", "extra", "--yes"]) == 1  # a skipped run fails the command, by name
    captured = capsys.readouterr()
    out = captured.out
    assert f"skipped {pulled}" in captured.err and "1 run(s) were not replayed" in captured.err
    assert f"skipping foreign run {pulled}" in out and "--trust" in out
    assert "FOREIGN" in out  # the plan table marks it
    assert not marker.exists() and _replayed(pulled) == []
    assert _replayed(_own_run(recorded).run_id) == [10]  # the own run replays as before


def test_trust_shows_the_diff_against_the_own_version_and_runs_it(recorded, tmp_path, capsys):
    marker = tmp_path / "foreign-ran"
    pulled = _forge(recorded, train_py=_evil(marker))
    assert main(["replay", "extra", "--yes", "--trust"]) == 0
    out = capsys.readouterr().out
    own = _own_run(recorded).run_id
    assert f"compared with your run {own}" in out
    assert f"+open({str(marker)!r}, 'w').write('ran')" in out
    assert marker.exists() and _replayed(pulled) == [10]


def test_dry_run_shows_the_whole_script_of_a_foreign_version_never_recorded_here(recorded, tmp_path, capsys):
    marker = tmp_path / "foreign-ran"
    other = [(FILE, "other.py", _blob(recorded, _evil(marker)))]
    pulled = _forge(recorded, code=other, script="other.py", argv=["other.py"])
    recorded.write("other.py", TODAY)
    assert main(["replay", "extra", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"run {pulled} was recorded in another clone, and no run of other.py from this clone" in out
    assert f"open({str(marker)!r}, 'w').write('ran')" in out  # the whole script, not a diff
    assert "train.py (" in out  # the other files it could import are listed
    assert not marker.exists()


def test_control_characters_of_foreign_code_are_shown_escaped(recorded, capsys):
    _forge(recorded, train_py=TRAIN.replace("total = 0\n", "total = 0  # \x1b[2K\rharmless\n"))
    assert main(["replay", "extra", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "total = 0  # \\x1b[2K\\r" in out  # shown as text (the diff splits the line at \r)


def test_prompt_names_the_foreign_runs_and_no_skips_them(recorded, tmp_path):
    marker = tmp_path / "foreign-ran"
    pulled = _forge(recorded, train_py=_evil(marker))
    result = CliRunner().invoke(app, ["replay", "extra"], input="n\ny\n")
    assert f"foreign run(s) recorded in another clone ({pulled})?" in result.output
    assert not marker.exists() and _replayed(pulled) == []
    assert _replayed(_own_run(recorded).run_id) == [10]
    result = CliRunner().invoke(app, ["replay", "extra"], input="y\ny\n")
    assert result.exit_code == 0, result.output
    assert marker.exists() and _replayed(pulled) == [10]


def test_python_api_skips_foreign_runs(recorded, tmp_path):
    marker = tmp_path / "foreign-ran"
    pulled = _forge(recorded, train_py=_evil(marker))
    plan = flor.replay("extra")
    assert next(r for r in plan.runs if r.run_id == pulled).skip.startswith("recorded in another clone")
    assert not marker.exists()


# -- hostile code trees ------------------------------------------------------------------------
def _escaping(repo, tail: str) -> list[tuple[str, str, str]]:
    """``../../sentinel/<tail>``: from the replay's ``<tmp>/florgit-replay-*/v0`` into the sentinel."""
    pwned = _raw_tree(repo, [(FILE, tail, _blob(repo, "pwned"))])
    sentinel = _raw_tree(repo, [(TREE, "sentinel", pwned)])
    return [(TREE, "..", _raw_tree(repo, [(TREE, "..", sentinel)]))]


HOSTILE = {
    "dotdot trees": lambda repo: _escaping(repo, "pwned.py"),
    "name with slashes": lambda repo: [(FILE, "../../sentinel/pwned.py", _blob(repo, "pwned"))],
    "dot git": lambda repo: [(TREE, ".git", _raw_tree(repo, [(FILE, "config", _blob(repo, "[core]\nx = y\n"))]))],
    "dot git, other case": lambda repo: [(TREE, ".GIT", _raw_tree(repo, [(FILE, "config", _blob(repo, "x"))]))],
    "empty name": lambda repo: [(FILE, "", _blob(repo, "pwned"))],
    "dot": lambda repo: [(TREE, ".", _raw_tree(repo, [(FILE, "pwned.py", _blob(repo, "pwned"))]))],
    "absolute name": lambda repo: [(FILE, "/tmp/pwned.py", _blob(repo, "pwned"))],
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_code_trees_are_refused_even_with_trust(recorded, sandbox, tmp_path, capsys, kind):
    pulled = _forge(recorded, code=HOSTILE[kind](recorded))
    assert "its code snapshot is refused" in _plan_of(recorded, pulled).skip
    assert main(["replay", "extra", "--yes", "--trust"]) == 1  # the refused run is skipped, by name
    assert _replayed(pulled) == [] and _replayed(_own_run(recorded).run_id) == [10]
    assert _files_under(sandbox) == {"sentinel", "sentinel/keep.txt"}  # nothing escaped, temp removed
    assert not any(p.name.startswith("pwned") for p in tmp_path.rglob("*"))


def test_export_keeps_inner_links_and_exec_bits_and_drops_the_rest(recorded, tmp_path):
    repo = recorded
    code = [
        (EXEC, "run.sh", _blob(repo, "#!/bin/sh\necho hi\n")),
        (LINK, "passwd", _blob(repo, "/etc/passwd")),
        (LINK, "up", _blob(repo, "../../x")),
        (LINK, "ok", _blob(repo, "train.py")),
        (LINK, "here", _blob(repo, ".")),
        (LINK, "sneaky", _blob(repo, "here/../x")),  # text stays inside; resolved, it leaves
        (TREE, "sub", _raw_tree(repo, [(FILE, "in.py", _blob(repo, "x")), (LINK, "back", _blob(repo, "../train.py"))])),
        (COMMIT, "vendored", "1" * 40),
    ]
    pulled = _forge(repo, code=code)
    plan = _plan_of(repo, pulled)
    assert plan.skip is None
    assert {why.split(" (")[0] for why in plan.left_out} == {"symlink passwd", "symlink up", "submodule vendored"}
    target = tmp_path / "export" / "v0"
    target.parent.mkdir()
    _export(open_repo(), plan, str(target))
    assert sorted(os.listdir(target)) == [".gitignore", "README.md", "here", "ok", "run.sh", "sub", "train.py"]
    assert os.access(target / "run.sh", os.X_OK) and not os.access(target / "train.py", os.X_OK)
    assert os.readlink(target / "ok") == "train.py" and os.readlink(target / "sub" / "back") == "../train.py"
    assert 'flor.log("extra"' in (target / "train.py").read_text()  # the patched script
    assert os.listdir(tmp_path / "export") == ["v0"]


# -- recorded script and working folder ----------------------------------------------------
@pytest.mark.parametrize(
    "changes, why",
    [
        ({"cwd": "../.."}, "working directory '../..'"),
        ({"cwd": "/tmp"}, "working directory '/tmp'"),
        ({"script": "../../evil.py"}, "script '../../evil.py'"),
        ({"script": "/tmp/evil.py"}, "script '/tmp/evil.py'"),
        ({"script": ".git/hooks/evil.py"}, "script '.git/hooks/evil.py'"),
    ],
)
def test_recorded_paths_leaving_the_snapshot_skip_the_run(recorded, sandbox, tmp_path, capsys, changes, why):
    marker = tmp_path / "foreign-ran"
    pulled = _forge(recorded, train_py=_evil(marker), **changes)
    skip = _plan_of(recorded, pulled).skip
    assert why in skip and "not a path inside its code snapshot" in skip
    assert main(["replay", "extra", "--yes", "--trust"]) == 1  # the run is skipped, by name
    assert not marker.exists() and _replayed(pulled) == []
    assert _files_under(sandbox) == {"sentinel", "sentinel/keep.txt"}


def test_unreadable_meta_skips_only_that_run(recorded):
    git = open_repo()
    run_id = layout.new_run_id()
    tree = _raw_tree(recorded, [(FILE, layout.META_FILE, _blob(recorded, "{not json"))])
    git.put_tree_in_ref(layout.SHADOW_REF, layout.run_path(run_id), tree, "broken")
    plan = make_plan(git, ["extra"])
    broken = next(r for r in plan.runs if r.run_id == run_id)
    assert broken.skip.startswith("cannot be replayed") and broken.foreign
    assert main(["replay", "extra", "--yes"]) == 1  # the broken run is skipped, by name
    assert _replayed(_own_run(recorded).run_id) == [10]
