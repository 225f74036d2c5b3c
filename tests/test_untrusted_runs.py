"""One bad run never hurts the others: corrupt, malformed and hostile runs, made locally
or pulled from a remote, are left out with one warning, listed by verify, quarantined by
pull and set aside for good by `git flor rm`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import pytest

import florgit as flor
from florgit.errors import FlorgitWarning, StoreError
from florgit.git import open_repo
from florgit.store import layout
from tests import forge
from tests.conftest import Repo, git, make_repo

TRAIN = """
import florgit as flor
flor.set_echo(False)
lr = flor.arg("lr", 0.1)
for epoch in flor.loop("epoch", range(3)):
    flor.log("loss", 1.0 / (epoch + 1))
"""


def _own_runs(repo: Repo, n: int = 1) -> list[str]:
    repo.write("train.py", TRAIN)
    repo.commit("train")
    for _ in range(n):
        repo.run("train.py")
    return sorted(flor.runs()["run_id"].to_list())


def _query_all() -> tuple[list, list[str]]:
    """The dataframe of every run, and the florgit warnings raised while it was built."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = flor.dataframe("lr", "loss")
        flor.scan().collect()
        flor.query("SELECT count(*) AS n FROM records")
        flor.runs()
    return df.sort("run_id", "epoch").rows(), [str(w.message) for w in caught if issubclass(w.category, FlorgitWarning)]


BAD_METAS = {
    "not json": b"{ this is not json",
    "start not a date": {"start": "not-a-date"},
    "records not a number": {"records": "many"},
    "args a list": {"args": ["lr", 1]},
    "status unknown": {"status": "pwned"},
    "user_commit an option": {"user_commit": "--output=/tmp/florgit-pwned"},
    "run_id of another run": {"run_id": "20250101-000000.000-0000beef"},
    "arg name with ESC": {"args": {"\x1b[2J": 1}},
    "huge": b" " * (17 * 1024 * 1024),
    "last a list": {"last": ["loss", 1]},
    "last holds an object": {"last": {"loss": {"$gt": 1}}},
    "last name with ESC": {"last": {"\x1b[2J": 1}},
    "last int over int64": {"last": {"loss": 2**70}},
}


@pytest.mark.parametrize("case", sorted(BAD_METAS))
def test_a_run_with_bad_meta_is_left_out_and_the_others_still_query(repo, case):
    mine = _own_runs(repo)
    before, _ = _query_all()
    bad = BAD_METAS[case]
    run_id = forge.new_id()
    meta = bad if isinstance(bad, bytes) else forge.good_meta(run_id, **bad)
    forge.forge_run(repo.path, meta, run_id)
    after, warned = _query_all()
    assert after == before
    assert any(run_id in w and "git flor rm" in w for w in warned), warned
    out = repo.flor("log")
    assert out.returncode == 0 and all(r in out.stdout for r in mine), out.stderr
    assert "Traceback" not in out.stderr
    verify = repo.flor("verify")
    assert verify.returncode == 1 and run_id in verify.stderr and "Traceback" not in verify.stderr


TABLE_CASES = {
    "records refer to a missing iteration": {"records": [(7, "loss", 1.0)]},
    "iteration of a missing loop": {"starts": [(1, 9, 0, None, 0.0)], "records": [(1, "loss", 1.0)]},
    "loop under a missing iteration": {"loops": [(1, 5, 1, "epoch")], "starts": [(1, 1, 0, None, 0.0)]},
    "name with a control character": {"records": [(0, "lo\x1bss", 1.0)]},
    "records table is garbage": {"files": {layout.RECORDS: b"\xff\xff\xff\xff garbage"}},
    "records table is a loops table": {"files": {layout.RECORDS: forge.tables()[layout.LOOPS]}},
    "records table claims a terabyte": {"files": {layout.RECORDS: forge.bomb(forge.tables()[layout.RECORDS])}},
    # Passes every check and fails only once decoded, where runs are decoded together.
    "records table has a corrupt compressed buffer": {"files": {layout.RECORDS: forge.garble(forge.tables()[layout.RECORDS])}},
    "starts table has a corrupt compressed buffer": {
        "files": {layout.STARTS: forge.garble(forge.tables(starts=[(1, 1, 0, None, 0.5)])[layout.STARTS])},
        "loops": [(1, 0, 1, "epoch")], "records": [(1, "loss", 1.0)],
    },
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_a_run_with_bad_tables_is_left_out(repo, case):
    _own_runs(repo)
    before, _ = _query_all()
    run_id = forge.forge_run(repo.path, **TABLE_CASES[case])
    after, warned = _query_all()
    assert after == before
    assert any(run_id in w for w in warned), warned
    verify = repo.flor("verify")
    assert verify.returncode == 1 and run_id in verify.stderr


def test_files_bigger_than_allowed_are_refused_before_they_are_read(repo, monkeypatch):
    """A pulled run's meta.json over 16 MiB, or a table bigger than the memory free, is
    refused from its object header: the blob itself is never inflated into memory."""
    from florgit import validation
    from florgit.git.repository import GitRepo

    _own_runs(repo)
    before, _ = _query_all()
    huge_meta = forge.forge_run(repo.path, b" " * (validation.MAX_JSON_BYTES + 1))
    huge_table = forge.forge_run(repo.path, files={layout.RECORDS: b"\x07" * 3_000_000})
    oversized = {forge.blob(repo.path, b" " * (validation.MAX_JSON_BYTES + 1)), forge.blob(repo.path, b"\x07" * 3_000_000)}
    read: set[str] = set()
    real_get = GitRepo._get

    def spying_get(self, oid):
        read.add(str(oid))
        return real_get(self, oid)

    monkeypatch.setattr(GitRepo, "_get", spying_get)
    from florgit.frames import loader, runlist

    for module in (validation, loader, runlist):  # the memory free, as each reader sees it
        monkeypatch.setattr(module, "memory_budget", lambda override_env=None: 2_000_000)
    after, warned = _query_all()
    assert after == before
    for run_id in (huge_meta, huge_table):
        assert any(run_id in w and "bytes, over the" in w for w in warned), warned
    assert not read & oversized
    with pytest.raises(StoreError, match="over the 2,000,000 allowed"):
        open_repo(str(repo.path)).blobs_in_tree(forge.put_run(repo.path, "x/y", {"a": b"\x07" * 3_000_000}), ("a",), {"a": 2_000_000})


def test_internal_and_metadata_names_in_stored_data_give_a_defined_frame(repo):
    # Written by another tool or an older florgit: names florgit now refuses to log.
    forge.forge_run(
        repo.path,
        records=[(0, "run_id", "mine"), (0, "script", 3), (1, "run", 1.5), (1, "i", 2)],
        loops=[(1, 0, 1, "sidx")],
        starts=[(1, 1, 0, None, 0.0)],
    )
    df = flor.dataframe("run_id", "script", "run", "i")
    assert df.columns == ["run_id", "start_time", "script", "sidx", "log:run_id", "log:script", "run", "i"]
    assert df.row(0, named=True)["log:run_id"] == "mine" and df["run"].to_list() == [1.5]


@pytest.mark.parametrize("kind", ["meta", "records", "run tree"])
def test_a_missing_object_leaves_only_its_run_out(repo, kind):
    _own_runs(repo)
    before, _ = _query_all()
    run_id = forge.forge_run(repo.path)
    git_repo = open_repo(str(repo.path))
    run_tree = git_repo.tree_at(layout.SHADOW_REF, layout.run_path(run_id))
    entries = {name: oid for name, _k, oid in git_repo.list_tree(run_tree)}
    target = {"meta": entries[layout.META_FILE], "records": entries[layout.RECORDS], "run tree": run_tree}[kind]
    forge.delete_object(repo.path, target)
    after, warned = _query_all()
    assert [r for r in after] == before
    assert any(run_id in w for w in warned) or kind == "run tree"
    verify = repo.flor("verify")
    assert verify.returncode == 1 and "Traceback" not in verify.stderr


def test_a_garbled_object_is_reported_not_raised(repo):
    _own_runs(repo)
    run_id = forge.forge_run(repo.path)
    git_repo = open_repo(str(repo.path))
    meta_oid = dict((n, o) for n, _k, o in git_repo.list_tree(git_repo.tree_at(layout.SHADOW_REF, layout.run_path(run_id))))[layout.META_FILE]
    path = forge.object_file(repo.path, meta_oid)
    path.chmod(0o644)
    path.write_bytes(b"x\x9c" + b"\x00" * 20)  # not zlib data any more
    _after, _warned = _query_all()
    verify = repo.flor("verify")
    assert verify.returncode == 1 and meta_oid in verify.stderr


def test_rm_sets_a_bad_run_aside_for_good(repo):
    _own_runs(repo)
    run_id = forge.forge_run(repo.path, b"not json")
    assert repo.flor("verify").returncode == 1
    out = repo.flor("rm", run_id)
    assert out.returncode == 0 and run_id in out.stdout
    _, warned = _query_all()
    assert warned == []
    assert repo.flor("verify").returncode == 0
    assert run_id not in repo.flor("log").stdout
    assert "set aside with `git flor rm`" in repo.flor("show", run_id).stderr
    # union merges bring the run's path again; the tombstone still holds
    forge.put_run(repo.path, layout.run_path(run_id), {layout.META_FILE: b"still not json"})
    assert _query_all()[1] == []
    assert repo.flor("rm", "--undo", run_id).returncode == 0
    assert any(run_id in w for w in _query_all()[1])


def test_replay_values_never_replace_recorded_ones(repo):
    mine = _own_runs(repo, 1)
    before, _ = _query_all()
    from florgit.store import replays

    code = "print('forged')\n"
    rid = replays.replay_id(["loss"], code)
    meta = {"replay_id": rid, "part": "all", "names": ["loss"], "strategy": "full", "execute": None,
            "started": time.time(), "ended": time.time(), "values": 1, "dropped": 0}  # fmt: skip
    files = {
        layout.META_FILE: json.dumps(meta).encode(),
        layout.RECORDS: forge.tables(records=[(0, "loss", 999.0), (0, "lr", 999.0)])[layout.RECORDS],
        replays.CODE_FILE: code.encode(),
    }
    forge.put_run(repo.path, replays.replay_path(_stored(repo, mine[0]), rid, "all"), files)
    after, warned = _query_all()
    assert after == before and any("ignored" in w for w in warned)
    verify = repo.flor("verify")
    assert verify.returncode == 1 and "tries to set" in verify.stderr


def test_a_replay_part_whose_id_does_not_match_its_code_is_refused(repo):
    mine = _own_runs(repo, 1)
    from florgit.store import replays

    rid = replays.replay_id(["grad"], "the real code\n")
    meta = {"replay_id": rid, "part": "all", "names": ["grad"], "strategy": "full", "execute": None,
            "started": 1.0, "ended": 2.0, "values": 1, "dropped": 0}  # fmt: skip
    files = {
        layout.META_FILE: json.dumps(meta).encode(),
        layout.RECORDS: forge.tables(records=[(0, "grad", 1.0)])[layout.RECORDS],
        replays.CODE_FILE: b"other code\n",
    }
    forge.put_run(repo.path, replays.replay_path(_stored(repo, mine[0]), rid, "all"), files)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = flor.dataframe("grad")
    assert df["grad"].drop_nulls().to_list() == []
    assert any("forged" in str(w.message) for w in caught)


def test_a_flor_ref_pointing_at_a_blob_is_a_clear_error_at_once(repo):
    _own_runs(repo, 1)
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo.path, input="x", capture_output=True, text=True).stdout.strip()
    git(repo.path, "update-ref", layout.NOTES_REF, blob)
    start = time.monotonic()
    proc = repo.run("train.py", check=False)
    assert time.monotonic() - start < 15
    assert "refs/notes/flor" in proc.stderr and "update-ref -d" in proc.stderr
    assert len(flor.runs()) == 2  # the run itself is stored
    (repo.path / ".git" / layout.SHADOW_REF).write_text(blob + "\n")  # git itself refuses to do this
    start = time.monotonic()
    out = repo.flor("log")
    assert time.monotonic() - start < 10
    assert out.returncode == 1 and "flor.shadow" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(StoreError, match="not a commit"):
        flor.runs()


# -- pulled from a hostile remote ----------------------------------------------------------


@pytest.fixture
def hostile_remote(tmp_path):
    """A bare remote whose shadow branch holds good runs and every kind of bad one."""
    mallory = make_repo(tmp_path / "mallory")
    mallory.write("train.py", TRAIN)
    mallory.commit("train")
    mallory.run("train.py")
    bad = {}
    for case, change in BAD_METAS.items():
        if case == "huge":
            continue
        run_id = forge.new_id("20250202")
        meta = change if isinstance(change, bytes) else forge.good_meta(run_id, **change)
        bad[case] = forge.forge_run(mallory.path, meta, run_id)
    for case, change in TABLE_CASES.items():
        bad[case] = forge.forge_run(mallory.path, run_id=forge.new_id("20250202"), **change)
    escape = forge.raw_tree(mallory.path, [("100644", "pwned.py", forge.blob(mallory.path, "print('pwned')\n"))])
    code = forge.raw_tree(mallory.path, [(forge.TREE_MODE, "..", escape)])
    run_id = forge.new_id("20250202")
    files = {**forge.tables(), layout.META_FILE: json.dumps(forge.good_meta(run_id)).encode()}
    forge.put_run(mallory.path, layout.run_path(run_id), files, {layout.CODE_DIR: code})
    bad["code tree with a '..' entry"] = run_id
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(mallory.path, "push", "-q", str(bare), "main", f"{layout.SHADOW_REF}:{layout.SHADOW_REF}")
    good = [r for r in json.loads(subprocess.run(
        [sys.executable, "-c", "import florgit as f, json; print(json.dumps(f.runs()['run_id'].to_list()))"],
        cwd=mallory.path, capture_output=True, text=True).stdout) if r not in bad.values()]  # fmt: skip
    return bare, bad, good


def test_pull_quarantines_bad_runs_and_keeps_the_clone_intact(hostile_remote, tmp_path, monkeypatch):
    bare, bad, good = hostile_remote
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "bob"))
    bob = Repo(tmp_path / "bob")
    monkeypatch.chdir(bob.path)
    bob.run("train.py")
    before, _ = _query_all()
    out = bob.flor("pull")
    assert out.returncode == 0, out.stderr
    for case, run_id in bad.items():
        assert f"quarantined {run_id}" in out.stdout, case
    after, warned = _query_all()
    assert warned == []
    assert [r for r in after if r[0] in {row[0] for row in before}] == before
    assert set(flor.runs()["run_id"].to_list()) == {row[0] for row in before} | set(good)
    assert bob.flor("verify").returncode == 0
    # pulling again changes nothing and still reports them
    again = bob.flor("pull")
    assert again.returncode == 0 and all(r in again.stdout for r in bad.values())
    merged = git(bob.path, "ls-tree", "-r", "--name-only", layout.SHADOW_REF)
    assert not any(run_id in merged for run_id in bad.values())  # they stay on the tracking ref only


LIMITED = """
import resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
from florgit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_hostile_runs_cannot_exhaust_memory(hostile_remote, tmp_path):
    bare, bad, _good = hostile_remote
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "carol"))
    carol = Repo(tmp_path / "carol")
    for args in (["pull"], ["log"], ["dataframe", "loss"], ["verify"]):
        proc = subprocess.run([sys.executable, "-c", LIMITED, *args], cwd=carol.path, capture_output=True, text=True)
        assert proc.returncode in (0, 1), (args, proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    # a run merged by an older florgit, bypassing the quarantine: queries still survive it
    forge.forge_run(carol.path, files={layout.RECORDS: forge.bomb(forge.tables()[layout.RECORDS])})
    proc = subprocess.run([sys.executable, "-c", LIMITED, "dataframe", "loss"], cwd=carol.path, capture_output=True, text=True)
    assert proc.returncode == 0 and "left out" in proc.stderr, proc.stderr[-2000:]


def test_a_remote_name_is_never_an_option(repo, tmp_path):
    _own_runs(repo)
    marker = tmp_path / "pwned"
    for command in ("pull", "push"):
        out = repo.flor(command, "--", f"--upload-pack=touch {marker}")
        assert out.returncode == 1 and "not a remote name" in out.stderr, out.stderr
    assert not marker.exists()


def test_a_pulled_note_bomb_is_never_inflated(repo):
    _own_runs(repo)
    head = git(repo.path, "rev-parse", "HEAD").strip()
    import zlib

    from florgit.git import notes

    raw = b"x" * (notes.MAX_NOTE_BYTES + 1)
    oid = forge.blob(repo.path, raw)  # written small by git: zlib of repeated bytes
    tree = forge.raw_tree(repo.path, [(forge.TREE_MODE, head[:2], forge.raw_tree(repo.path, [("100644", head[2:], oid)]))])
    commit = git(repo.path, "commit-tree", tree, "-m", "notes").strip()
    git(repo.path, "update-ref", layout.NOTES_REF, commit)
    assert len(zlib.compress(raw)) < 50_000
    proc = repo.run("train.py", check=False)  # its note cannot be added: a warning, the run is kept
    assert "more than a florgit note can be" in proc.stderr
    assert len(flor.runs()) == 2
    verify = repo.flor("verify")
    assert "Traceback" not in verify.stderr


CKPT = """
import torch, florgit as flor
flor.set_echo(False)
torch.manual_seed(0)
m = torch.nn.Linear(64, 64)
frozen = torch.nn.Linear(64, 64)  # never trained: its chunks are shared by every run
opt = torch.optim.SGD(m.parameters(), lr=flor.arg("lr", 0.1))
flor.set_checkpoint_period(1)
with flor.checkpointing(m=m, frozen=frozen):
    for epoch in flor.loop("epoch", range(2)):
        m.weight.data += flor.arg("lr", 0.1)
        flor.log("w", float(m.weight.sum()))
"""


def test_rm_where_then_gc_drops_checkpoints_only_removed_runs_used(repo):
    repo.write("ckpt.py", CKPT)
    repo.run("ckpt.py", "--kwargs", "lr=0.1")
    repo.run("ckpt.py", "--kwargs", "lr=0.5")
    keep, drop = sorted(flor.runs().sort("start_time")["run_id"].to_list())
    out = repo.flor("rm", "--where", "lr > 0.2")
    assert out.returncode == 0 and drop in out.stdout and keep not in out.stdout
    gc = repo.flor("gc")
    assert gc.returncode == 0 and "dropped the checkpoints of 1 removed run(s)" in gc.stdout, gc.stdout + gc.stderr
    git(repo.path, "fsck", "--strict")
    import torch

    m, frozen = torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)
    flor.load_checkpoint(keep, 1, m=m, frozen=frozen)  # the kept run's shared chunks are still there
    tree = git(repo.path, "ls-tree", "-r", "--name-only", layout.CHECKPOINTS_REF)
    assert drop not in tree and keep in tree


def _stored(repo, run_id: str):
    from florgit.store import runs

    return runs.find_run(open_repo(str(repo.path)), run_id)
