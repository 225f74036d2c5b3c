"""Memo keys read without pygit2 (store.memo_keys.peek_listing_key, git.peek) agree with
the keys an open repository gives, in every state of the refs, and step aside whenever
they cannot be sure: a broken ref, or a killed run waiting to be recovered."""

from __future__ import annotations

import os
import subprocess
import sys

import florgit as flor
from florgit.git import open_repo
from florgit.store import layout, memo_keys
from tests.conftest import git, make_repo


def _record(value: float) -> None:
    flor.arg("lr", value)
    for epoch in flor.loop("epoch", range(2)):
        flor.log("acc", value * epoch)
    flor.commit()


def _agree(start: str | None = None) -> memo_keys.Peeked:
    peeked = memo_keys.peek_listing_key(start, "v", 1)
    assert peeked is not None
    repo = open_repo(start, require_workdir=False)
    assert peeked == memo_keys.Peeked(repo.common_dir, memo_keys.listing_key(repo, "v", 1))
    return peeked


def test_peeked_keys_equal_the_repositorys_through_runs_tags_removals_and_packing(repo):
    keys = [_agree()]  # no flor refs at all
    _record(0.1)
    keys.append(_agree())
    _record(0.2)
    keys.append(_agree())
    run_id = flor.runs()["run_id"].to_list()[0]
    assert repo.flor("tag", run_id, "best").returncode == 0
    keys.append(_agree())
    assert repo.flor("rm", run_id).returncode == 0
    keys.append(_agree())
    assert len(set(k.key for k in keys)) == len(keys)  # each change is a new key
    repo.git("pack-refs", "--all")
    assert not os.path.exists(repo.path / ".git" / "refs" / "heads" / "flor.shadow")
    assert _agree() == keys[-1]
    repo.git("gc", "--prune=now", "-q")
    assert _agree() == keys[-1]
    assert _agree(str(repo.path / ".git")) == keys[-1]  # from inside .git, as hooks run


def test_a_linked_worktree_and_a_bare_clone_peek_their_common_folder(repo, tmp_path):
    _record(0.1)
    here = _agree()
    repo.git("worktree", "add", "-q", str(tmp_path / "wt"))
    there = _agree(str(tmp_path / "wt"))
    assert there == here and there.common_dir == str(repo.path / ".git")
    git(tmp_path, "clone", "-q", "--bare", str(repo.path), str(tmp_path / "bare.git"))
    git(tmp_path / "bare.git", "fetch", "-q", str(repo.path), "refs/heads/flor.shadow:refs/heads/flor.shadow")
    bare = _agree(str(tmp_path / "bare.git"))
    assert bare.common_dir == str(tmp_path / "bare.git")


def test_the_peek_steps_aside_for_refs_it_cannot_read(repo):
    _record(0.1)
    shadow = repo.git("rev-parse", layout.SHADOW_REF).strip()
    blob = git(repo.path, "hash-object", "-w", "--stdin", input_text="not a commit").strip()
    missing = "1" * 40
    for ref in (layout.SHADOW_REF, layout.CURATION_REF):
        for target in (blob, missing):
            path = repo.path / ".git" / ref
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(target + "\n")  # a loose ref git itself would refuse to write
            assert memo_keys.peek_listing_key(None) is None, (ref, target)
            path.unlink()
    repo.git("update-ref", layout.SHADOW_REF, shadow)
    # A packed ref to a missing object is told from an absent one too.
    with open(repo.path / ".git" / "packed-refs", "a") as f:
        f.write(f"{missing} {layout.REMOVED_REF}\n")
    assert memo_keys.peek_listing_key(None) is None
    os.remove(repo.path / ".git" / "packed-refs")
    assert memo_keys.peek_listing_key(None) is not None
    assert memo_keys.peek_listing_key("/nonexistent/place") is None
    assert memo_keys.peek_listing_key(str(make_repo(repo.path.parent / "plain").path)) is not None


def test_the_peek_steps_aside_for_a_shadow_without_runs(repo):
    empty_tree = git(repo.path, "hash-object", "-t", "tree", "-w", "--stdin", input_text="").strip()
    commit = repo.git("commit-tree", empty_tree, "-m", "no runs").strip()
    repo.git("update-ref", layout.SHADOW_REF, commit)
    assert memo_keys.peek_listing_key(None) is None  # absent or missing: only pygit2 tells


KILLED = """
import os, time
import florgit as flor
flor.arg("lr", 0.3)
for epoch in flor.loop("epoch", range(3)):
    flor.log("acc", float(epoch))
time.sleep(1.5)  # the flusher spools at least once a second
os._exit(9)  # no run end: the spool is left behind
"""


def test_a_killed_runs_spool_makes_memo_readers_recover_it_first(repo):
    _record(0.1)
    assert flor.runs().height == 1  # the runs memo is written
    assert repo.flor("log").returncode == 0  # and the log's
    repo.write("killed.py", KILLED)
    repo.run("killed.py", check=False)
    assert memo_keys.peek_listing_key(None) is None  # recovery is due
    frame = flor.runs()
    assert sorted(frame["status"].to_list()) == ["killed", "ok"]
    assert memo_keys.peek_listing_key(None) is not None
    assert sum("killed" in line for line in repo.flor("log").stdout.splitlines()) == 1


def test_memo_hits_load_no_pygit2(repo):
    _record(0.1)
    assert flor.runs().height == 1
    assert repo.flor("log").returncode == 0
    probe = (
        "import sys\nimport florgit as flor\nassert flor.runs().height == 1\n"
        "from florgit.cli.main import main\nsys.argv = ['git-flor', 'log']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint('pygit2' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=repo.path, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False"


def test_the_peek_finds_the_repository_pygit2_finds_whatever_git_variables_say(repo, tmp_path, monkeypatch):
    """pygit2's discovery reads no GIT_DIR and the like; git would. A hook, or a user's
    GIT_DIR, must not make a memo key come from another repository than the query reads."""
    _record(0.1)
    other = make_repo(tmp_path / "other")
    sub = repo.path / "deep" / "er"
    sub.mkdir(parents=True)
    here = _agree(str(sub))
    for name, value in (("GIT_DIR", str(other.path / ".git")), ("GIT_WORK_TREE", str(other.path)),
                        ("GIT_CEILING_DIRECTORIES", str(repo.path))):  # fmt: skip
        monkeypatch.setenv(name, value)
        assert _agree(str(sub)) == here, name
