"""Tags and notes on runs: queryable, and shared by push and pull in both directions."""

from __future__ import annotations


import florgit as flor
from tests.conftest import Repo
from tests.test_sharing import TRAIN, remote_and_clones  # noqa: F401 (fixture)


def test_tags_and_notes_travel_both_ways_and_are_queryable(remote_and_clones, monkeypatch):
    _bare, (alice, bob) = remote_and_clones
    alice.run("train.py")
    alice.run("train.py", "--kwargs", "who=alice2")
    assert alice.flor("tag", "latest", "best", "baseline").returncode == 0
    assert alice.flor("note", "latest~1", "first try [/] \x1b[2J").returncode == 0
    assert alice.flor("push").returncode == 0
    assert bob.flor("pull").returncode == 0
    monkeypatch.chdir(bob.path)
    runs = flor.runs().sort("run_id")
    assert runs["tags"].to_list() == [[], ["baseline", "best"]]
    assert runs["note"].to_list()[0] == "first try [/] \x1b[2J"
    # bob removes a tag while alice adds one: both changes survive the merges
    assert bob.flor("tag", "--remove", "latest", "baseline").returncode == 0
    assert alice.flor("tag", "latest", "shared").returncode == 0
    assert bob.flor("push").returncode == 0
    assert alice.flor("push").returncode == 0
    for repo in (alice, bob):
        assert repo.flor("pull").returncode == 0
        out = repo.flor("log", "--tag", "best", "--json")
        assert out.returncode == 0 and out.stdout.count("\n") == 1
        assert '"tags": "best,shared"' in out.stdout
        where = repo.flor("log", "--where", "tags LIKE '%shared%'", "--csv")
        assert where.stdout.count("\n") == 2  # header and one run
    show = bob.flor("show", "latest~1")
    assert "first try [/] \\x1b[2J" in show.stdout  # shown, never run as markup or escapes


def test_a_bad_tag_is_one_clear_line(repo):
    repo.write("train.py", TRAIN)
    repo.run("train.py")
    out = repo.flor("tag", "latest", "has,comma")
    assert out.returncode == 1 and "not a tag" in out.stderr and "Traceback" not in out.stderr


def test_rm_travels_both_ways_and_a_pulled_removal_only_hides(remote_and_clones, monkeypatch):
    _bare, (alice, bob) = remote_and_clones
    alice.run("train.py")
    alice.run("train.py", "--kwargs", "who=alice2")
    assert alice.flor("push").returncode == 0
    assert bob.flor("pull").returncode == 0
    monkeypatch.chdir(bob.path)
    first, second = flor.runs().sort("run_id")["run_id"].to_list()
    bob_run = _bob_records(bob)
    # bob removes one of alice's runs and one of his own; alice removes her other run
    assert bob.flor("rm", first, bob_run, "--reason", "bad seed").returncode == 0
    assert bob.flor("push").returncode == 0
    pulled = alice.flor("pull")
    assert pulled.returncode == 0
    assert f"removed run {first}: by" in pulled.stdout and "recorded here" in pulled.stdout
    assert f"removed run {bob_run}: by" in pulled.stdout
    assert alice.flor("rm", second).returncode == 0
    assert alice.flor("push").returncode == 0
    assert bob.flor("pull").returncode == 0
    for repo in (alice, bob):
        monkeypatch.chdir(repo.path)
        assert flor.runs()["run_id"].to_list() == []
        assert first not in repo.flor("log").stdout
    # the pull that brought bob's removal hides alice's run, but her gc keeps its checkpoints
    gc = alice.flor("gc")
    assert gc.returncode == 0 and "kept the checkpoints of 1 run(s) recorded here" in gc.stdout, gc.stdout
    # an undo travels too
    assert alice.flor("rm", "--undo", first).returncode == 0
    assert alice.flor("push").returncode == 0
    pulled = bob.flor("pull")
    assert f"restored run {first}" in pulled.stdout
    monkeypatch.chdir(bob.path)
    assert flor.runs()["run_id"].to_list() == [first]


def _bob_records(bob: Repo) -> str:
    bob.run("train.py", "--kwargs", "who=bob")
    return sorted(flor.runs()["run_id"].to_list())[-1]
