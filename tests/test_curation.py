"""Tags and notes on runs: queryable, and shared by push and pull in both directions."""

from __future__ import annotations

import subprocess
import sys

import florgit as flor
from tests.conftest import Repo
from tests.test_sharing import TRAIN, remote_and_clones  # noqa: F401 (fixture)


def _flor(repo: Repo, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "florgit.cli.main", *args], cwd=repo.path, capture_output=True, text=True)


def test_tags_and_notes_travel_both_ways_and_are_queryable(remote_and_clones, monkeypatch):
    _bare, (alice, bob) = remote_and_clones
    alice.run("train.py")
    alice.run("train.py", "--kwargs", "who=alice2")
    assert _flor(alice, "tag", "latest", "best", "baseline").returncode == 0
    assert _flor(alice, "note", "latest~1", "first try [/] \x1b[2J").returncode == 0
    assert _flor(alice, "push").returncode == 0
    assert _flor(bob, "pull").returncode == 0
    monkeypatch.chdir(bob.path)
    runs = flor.runs().sort("run_id")
    assert runs["tags"].to_list() == [[], ["baseline", "best"]]
    assert runs["note"].to_list()[0] == "first try [/] \x1b[2J"
    # bob removes a tag while alice adds one: both changes survive the merges
    assert _flor(bob, "tag", "--remove", "latest", "baseline").returncode == 0
    assert _flor(alice, "tag", "latest", "shared").returncode == 0
    assert _flor(bob, "push").returncode == 0
    assert _flor(alice, "push").returncode == 0
    for repo in (alice, bob):
        assert _flor(repo, "pull").returncode == 0
        out = _flor(repo, "log", "--tag", "best", "--json")
        assert out.returncode == 0 and out.stdout.count("\n") == 1
        assert '"tags": "best,shared"' in out.stdout
        where = _flor(repo, "log", "--where", "tags LIKE '%shared%'", "--csv")
        assert where.stdout.count("\n") == 2  # header and one run
    show = _flor(bob, "show", "latest~1")
    assert "first try [/] \\x1b[2J" in show.stdout  # shown, never run as markup or escapes


def test_a_bad_tag_is_one_clear_line(repo):
    repo.write("train.py", TRAIN)
    repo.run("train.py")
    out = _flor(repo, "tag", "latest", "has,comma")
    assert out.returncode == 1 and "not a tag" in out.stderr and "Traceback" not in out.stderr


def test_rm_travels_both_ways_and_a_pulled_removal_only_hides(remote_and_clones, monkeypatch):
    _bare, (alice, bob) = remote_and_clones
    alice.run("train.py")
    alice.run("train.py", "--kwargs", "who=alice2")
    assert _flor(alice, "push").returncode == 0
    assert _flor(bob, "pull").returncode == 0
    monkeypatch.chdir(bob.path)
    first, second = flor.runs().sort("run_id")["run_id"].to_list()
    bob_run = _bob_records(bob)
    # bob removes one of alice's runs and one of his own; alice removes her other run
    assert _flor(bob, "rm", first, bob_run, "--reason", "bad seed").returncode == 0
    assert _flor(bob, "push").returncode == 0
    pulled = _flor(alice, "pull")
    assert pulled.returncode == 0
    assert f"removed run {first}: by" in pulled.stdout and "recorded here" in pulled.stdout
    assert f"removed run {bob_run}: by" in pulled.stdout
    assert _flor(alice, "rm", second).returncode == 0
    assert _flor(alice, "push").returncode == 0
    assert _flor(bob, "pull").returncode == 0
    for repo in (alice, bob):
        monkeypatch.chdir(repo.path)
        assert flor.runs()["run_id"].to_list() == []
        assert first not in _flor(repo, "log").stdout
    # the pull that brought bob's removal hides alice's run, but her gc keeps its checkpoints
    gc = _flor(alice, "gc")
    assert gc.returncode == 0 and "kept the checkpoints of 1 run(s) recorded here" in gc.stdout, gc.stdout
    # an undo travels too
    assert _flor(alice, "rm", "--undo", first).returncode == 0
    assert _flor(alice, "push").returncode == 0
    pulled = _flor(bob, "pull")
    assert f"restored run {first}" in pulled.stdout
    monkeypatch.chdir(bob.path)
    assert flor.runs()["run_id"].to_list() == [first]


def _bob_records(bob: Repo) -> str:
    bob.run("train.py", "--kwargs", "who=bob")
    return sorted(flor.runs()["run_id"].to_list())[-1]
