"""Sharing runs through a bare remote with the real git binary, and florgit's hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import florgit as flor
from florgit.store import layout
from tests.conftest import Repo, clone_of, git, make_repo, seeded_remote

TRAIN = """
import sys
import florgit as flor
flor.set_echo(False)
who = flor.arg("who", "nobody")
for epoch in flor.loop("epoch", range(2)):
    flor.log("loss", 1.0 / (epoch + 1))
"""


@pytest.fixture
def remote_and_clones(tmp_path, monkeypatch):
    bare = seeded_remote(tmp_path, {"train.py": TRAIN})
    return bare, [clone_of(bare, tmp_path / name) for name in ("alice", "bob")]


def _runs_in(repo: Repo, monkeypatch) -> list[str]:
    monkeypatch.chdir(repo.path)
    return sorted(flor.runs()["run_id"].to_list())


def test_two_clones_push_at_once_and_both_end_with_every_run(remote_and_clones, monkeypatch):
    bare, (alice, bob) = remote_and_clones
    for repo, who in ((alice, "alice"), (bob, "bob")):
        for _ in range(3):
            repo.run("train.py", "--kwargs", f"who={who}")
    results = {}

    def push(repo):
        results[repo.path.name] = repo.flor("push")

    threads = [threading.Thread(target=push, args=(r,)) for r in (alice, bob)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results.values()), {k: v.stderr for k, v in results.items()}
    for repo in (alice, bob):
        assert repo.flor("pull").returncode == 0
    assert _runs_in(alice, monkeypatch) == _runs_in(bob, monkeypatch)
    assert len(_runs_in(alice, monkeypatch)) == 6
    df = flor.dataframe("who", "loss")
    assert sorted(set(df["who"].to_list())) == ["alice", "bob"] and df.height == 12
    # notes: every run is on the commit it started from, in both clones and the remote
    head = alice.git("rev-parse", "HEAD").strip()
    for where in (alice.path, bob.path, bare):
        note = git(where, "notes", "--ref", layout.NOTES_REF, "show", head)
        assert len({json.loads(ln)["run"] for ln in note.splitlines()}) == 6
    # never a forced update: the remote's shadow history contains both clones' histories
    git(bare, "fsck", "--strict", "--no-dangling")
    assert git(bare, "rev-list", "--count", layout.SHADOW_REF).strip() != "0"


def test_push_retries_when_the_remote_moved(remote_and_clones, monkeypatch):
    _bare, (alice, bob) = remote_and_clones
    alice.run("train.py")
    assert alice.flor("push").returncode == 0
    bob.run("train.py")  # bob has not pulled: his shadow branch diverged from the remote's
    out = bob.flor("push")
    assert out.returncode == 0, out.stderr
    assert alice.flor("pull").returncode == 0
    assert len(_runs_in(alice, monkeypatch)) == 2


def test_checkpoints_travel_only_when_asked(remote_and_clones, monkeypatch):
    bare, (alice, bob) = remote_and_clones
    alice.write("ckpt.py", "import torch, florgit as flor\nm = torch.nn.Linear(2, 2)\nwith flor.checkpointing(m=m):\n    for _ in flor.loop('e', range(1)):\n        pass\n")
    alice.run("ckpt.py")
    assert alice.flor("push").returncode == 0
    assert layout.CHECKPOINTS_REF not in git(bare, "for-each-ref", "--format=%(refname)")
    assert alice.flor("push", "--checkpoints").returncode == 0
    assert layout.CHECKPOINTS_REF in git(bare, "for-each-ref", "--format=%(refname)")
    assert bob.flor("pull", "--checkpoints").returncode == 0
    monkeypatch.chdir(bob.path)
    run = flor.runs()["run_id"].to_list()[0]
    import torch

    flor.load_checkpoint(run, m=torch.nn.Linear(2, 2))


def _hooks_dir(repo: Repo) -> Path:
    return Path(repo.path, git(repo.path, "rev-parse", "--git-path", "hooks").strip())


def test_plain_git_push_shares_runs_once_hooks_are_installed(remote_and_clones, monkeypatch):
    bare, (alice, bob) = remote_and_clones
    assert alice.flor("install").returncode == 0
    alice.run("train.py")
    alice.write("notes.md", "x\n")
    alice.commit("more")
    push = subprocess.run(["git", "push", "-q", "origin", "HEAD"], cwd=alice.path, capture_output=True, text=True)
    assert push.returncode == 0, push.stderr
    assert layout.SHADOW_REF in git(bare, "for-each-ref", "--format=%(refname)")
    # bob: install, then a plain `git pull` brings the runs in (fetch refspec + post-merge)
    assert bob.flor("install").returncode == 0
    pull = subprocess.run(["git", "pull", "-q", "--no-rebase"], cwd=bob.path, capture_output=True, text=True)
    assert pull.returncode == 0, pull.stderr
    assert len(_runs_in(bob, monkeypatch)) == 1
    assert "refs/notes/flor" in git(bob.path, "config", "--get-all", "notes.rewriteRef")


def test_users_hook_keeps_running_and_is_restored(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "p")
    hooks = _hooks_dir(repo)
    mine = hooks / "post-commit"
    mine.write_text("#!/bin/sh\necho mine >> \"$(git rev-parse --git-dir)/mine.log\"\n")
    mine.chmod(0o755)
    assert repo.flor("install").returncode == 0
    assert "florgit hook" in mine.read_text()
    repo.write("a.txt", "1\n")
    repo.commit("one")
    assert (repo.path / ".git" / "mine.log").read_text() == "mine\n"
    assert repo.flor("uninstall").returncode == 0
    assert mine.read_text().startswith("#!/bin/sh\necho mine")
    assert not Path(str(mine) + ".florgit-saved").exists()


def test_core_hooks_path_is_honoured(tmp_path):
    repo = make_repo(tmp_path / "p")
    repo.git("config", "core.hooksPath", ".githooks")
    assert repo.flor("install").returncode == 0
    assert (repo.path / ".githooks" / "pre-push").exists()
    assert not (repo.path / ".git" / "hooks" / "pre-push").exists()


def test_users_failing_pre_push_still_blocks_the_push(remote_and_clones):
    _bare, (alice, _bob) = remote_and_clones
    hook = _hooks_dir(alice) / "pre-push"
    hook.write_text("#!/bin/sh\necho no >&2\nexit 1\n")
    hook.chmod(0o755)
    assert alice.flor("install").returncode == 0
    alice.write("b.txt", "2\n")
    alice.commit("two")
    push = subprocess.run(["git", "push", "-q", "origin", "HEAD"], cwd=alice.path, capture_output=True, text=True)
    assert push.returncode != 0 and "no" in push.stderr


def test_amend_carries_run_notes(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "p")
    repo.write("train.py", TRAIN)
    repo.commit("train")
    assert repo.flor("install").returncode == 0
    repo.run("train.py")
    repo.git("commit", "-q", "--amend", "-m", "train (amended)")
    note = repo.git("notes", "--ref", layout.NOTES_REF, "show", "HEAD")
    assert len(note.splitlines()) == 1 and json.loads(note)["status"] == "ok"


def test_hook_is_fast_and_light(tmp_path):
    repo = make_repo(tmp_path / "p")
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "florgit.cli.hook", "post-commit"],
        cwd=repo.path, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0
    imported = out.stderr
    assert " torch" not in imported and " polars" not in imported and " typer" not in imported
    assert time.perf_counter() - start < 30  # sanity only; the 0.3 s figure is in the benchmark


def test_hooks_folder_matches_what_install_writes():
    from florgit.git.hooks import HOOKS, script

    root = Path(__file__).resolve().parents[1] / "hooks"
    assert sorted(p.name for p in root.iterdir()) == sorted(HOOKS)
    for name in HOOKS:
        assert (root / name).read_text() == script(name)
        assert os.access(root / name, os.X_OK)


def test_plain_fetch_and_pull_keep_working_when_the_remote_has_no_flor_refs(remote_and_clones, monkeypatch):
    bare, (alice, bob) = remote_and_clones
    for repo in (alice, bob):
        assert repo.flor("install").returncode == 0
        assert repo.flor("pull").returncode == 0  # configures too; the remote has nothing yet
    for command in (["fetch"], ["pull", "--no-rebase"]):
        out = subprocess.run(["git", *command], cwd=bob.path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    # an exact refspec left by an older florgit is replaced by the glob
    old = f"+{layout.SHADOW_REF}:refs/flor/remotes/origin/shadow"
    git(bob.path, "config", "--add", "remote.origin.fetch", old)
    assert bob.flor("install").returncode == 0
    assert old not in git(bob.path, "config", "--get-all", "remote.origin.fetch")
    # once runs are there, a plain fetch brings them to the tracking refs
    alice.run("train.py")
    assert alice.flor("push").returncode == 0
    assert subprocess.run(["git", "fetch", "-q"], cwd=bob.path).returncode == 0
    assert "refs/flor/remotes/origin/shadow" in git(bob.path, "for-each-ref", "--format=%(refname)")


def test_uninstall_removes_the_config_install_added(remote_and_clones):
    _bare, (alice, _bob) = remote_and_clones
    before = git(alice.path, "config", "--list", "--local")
    assert alice.flor("install").returncode == 0
    assert "notes.rewriteref" in git(alice.path, "config", "--list", "--local")
    out = alice.flor("uninstall")
    assert out.returncode == 0 and "config removed" in out.stdout
    assert git(alice.path, "config", "--list", "--local") == before


@pytest.mark.parametrize("where", ["tracked", "shared"])
def test_tracked_or_shared_hooks_folders_are_left_alone(tmp_path, where):
    repo = make_repo(tmp_path / "p")
    if where == "tracked":
        repo.write(".githooks/pre-commit", "#!/bin/sh\nexit 0\n")
        repo.commit("team hooks")
        folder = repo.path / ".githooks"
        repo.git("config", "core.hooksPath", ".githooks")
    else:
        folder = tmp_path / "shared-hooks"
        folder.mkdir()
        (folder / "pre-push").write_text("#!/bin/sh\nexit 0\n")
        repo.git("config", "core.hooksPath", str(folder))
    before = {p.name: p.read_text() for p in folder.iterdir()}
    for command in ("install", "uninstall"):
        out = repo.flor(command)
        assert out.returncode == 0 and "leaves it alone" in out.stdout, out.stdout + out.stderr
        assert {p.name: p.read_text() for p in folder.iterdir()} == before


def test_a_plain_pull_with_nothing_else_to_merge_brings_the_runs(remote_and_clones, monkeypatch):
    _bare, (alice, bob) = remote_and_clones
    assert bob.flor("install").returncode == 0
    mine = _hooks_dir(bob) / "reference-transaction.florgit-saved"
    mine.write_text('#!/bin/sh\necho "$1 $(cat | wc -l)" >> "$(git rev-parse --git-dir)/mine.log"\n')
    mine.chmod(0o755)
    alice.run("train.py")
    assert alice.flor("push").returncode == 0
    pull = subprocess.run(["git", "pull", "--no-rebase"], cwd=bob.path, capture_output=True, text=True)
    assert pull.returncode == 0 and "Already up to date" in pull.stdout, pull.stdout + pull.stderr
    assert len(_runs_in(bob, monkeypatch)) == 1  # merged by the reference-transaction hook
    log = (bob.path / ".git" / "mine.log").read_text()
    assert "prepared" in log and "committed" in log  # the user's own hook ran for every state


def test_a_fresh_clone_says_how_to_get_the_runs(remote_and_clones, tmp_path):
    bare, (alice, _bob) = remote_and_clones
    alice.run("train.py")
    assert alice.flor("push").returncode == 0
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "carol"))
    out = Repo(tmp_path / "carol").flor("log")
    assert out.returncode == 0 and "git flor pull origin" in out.stderr


def test_push_and_verify_show_progress_on_a_terminal(remote_and_clones):
    from tests.conftest import run_in_terminal

    _bare, (alice, _bob) = remote_and_clones
    alice.write("ckpt.py", "import torch, florgit as flor\nm = torch.nn.Linear(256, 256)\nwith flor.checkpointing(m=m):\n    for _ in flor.loop('e', range(1)):\n        pass\n")
    alice.run("ckpt.py")
    code, shown = run_in_terminal([sys.executable, "-m", "florgit.cli.main", "push", "--checkpoints"], alice.path)
    assert code == 0 and "Writing objects" in shown and "KiB" in shown, shown  # git's byte counts
    code, shown = run_in_terminal([sys.executable, "-m", "florgit.cli.main", "verify"], alice.path)
    assert code == 0 and "ok:" in shown, shown
