"""The run listing memo (.git/flor/cache/listing): the same runs as walking the shadow
branch, after new runs, rm, and a damaged or stale file."""

from __future__ import annotations

import os
import zlib

import florgit as flor
from florgit.git import open_repo
from florgit.store import layout, listing, runs
from florgit.store import memo as memo_file


def _walk(repo) -> list[tuple[str, str, str]]:
    runs_tree = repo.tree_at(layout.SHADOW_REF, layout.RUNS_DIR)
    return sorted(runs.walk_run_trees(repo, runs_tree), key=lambda x: x[1])


def _record(n: int) -> None:
    for i in range(n):
        flor.log("x", i)
        flor.commit()


def test_listing_memo_matches_the_walk_and_never_goes_stale(repo):
    _record(3)
    git = open_repo(str(repo.path))
    first = runs.list_runs(git)
    memo = memo_file.path_of(git.common_dir, listing.NAME)
    assert os.path.exists(memo)
    assert [(r.path, r.run_id, r.tree) for r in first] == _walk(git)
    _record(2)  # a new runs/ tree: the memo of the old one is not used
    assert [(r.path, r.run_id, r.tree) for r in runs.list_runs(git)] == _walk(git)
    assert len(runs.list_runs(git)) == 5
    # damage: a flipped byte, a truncated file, another tree's listing, garbage
    with open(memo, "rb") as f:
        good = f.read()
    head, _, body = good.partition(b"\n")
    damaged = [
        good[:-5] + bytes([good[-5] ^ 1]) + good[-4:],
        good[: len(good) // 2],
        head.replace(head.split(b" ")[2], b"0" * 40) + b"\n" + body,
        b"florgit-memo 1 " + head.split(b" ")[2] + b" %08x 14\n../../etc x l\n" % zlib.crc32(b"../../etc x l\n"),  # right sum, bad body
    ]
    for bad in damaged:
        with open(memo, "wb") as f:
            f.write(bad)
        assert [(r.path, r.run_id, r.tree) for r in runs.list_runs(git)] == _walk(git)
    # removed runs are left out after the memo is read, never baked into it
    flor_rm = repo.flor("rm", first[0].run_id)
    assert flor_rm.returncode == 0, flor_rm.stderr
    assert first[0].run_id not in {r.run_id for r in runs.list_runs(git)}
    assert first[0].run_id in {r.run_id for r in runs.list_runs(git, removed=True)}


def test_listing_memo_off_with_the_query_cache(repo, monkeypatch):
    monkeypatch.setenv("FLORGIT_QUERY_CACHE", "0")
    _record(1)
    git = open_repo(str(repo.path))
    assert len(runs.list_runs(git)) == 1
    assert not os.path.exists(memo_file.path_of(git.common_dir, listing.NAME))


def _listed(git) -> list[tuple[str, str, str]]:
    return [(r.path, r.run_id, r.tree) for r in runs.list_runs(git)]


def _walked(git) -> list[tuple[str, str, str]]:
    """What list_runs gives from a full walk (the first copy of a run stored twice)."""
    runs_tree = git.tree_at(layout.SHADOW_REF, layout.RUNS_DIR)
    first: dict[str, tuple[str, str, str]] = {}
    for path, run_id, tree in runs.walk_run_trees(git, runs_tree):
        first.setdefault(run_id, (path, run_id, tree))
    return [first[r] for r in sorted(first)]


def test_a_new_run_walks_only_its_day_and_bucket_again(repo, monkeypatch):
    _record(20)
    git = open_repo(str(repo.path))
    runs.list_runs(git)
    buckets = {r.path.split("/")[2] for r in runs.list_runs(git)}
    assert len(buckets) > 5
    _record(1)
    walked: list[str] = []
    real = type(git).list_tree
    monkeypatch.setattr(type(git), "list_tree", lambda self, tree: walked.append(tree) or real(self, tree))
    listed = _listed(git)
    assert len(walked) == 3  # runs/, the day and the new run's bucket; the other buckets are known
    walked.clear()
    assert _listed(git) == listed and walked == []  # the same runs/ tree: read back whole
    assert listed == _walked(git) and len(listed) == 21


def test_walking_again_from_a_memo_of_other_trees_equals_a_full_walk(repo):
    from tests import forge

    _record(6)
    git = open_repo(str(repo.path))
    first = _listed(git)
    assert first == _walked(git)
    legacy = forge.new_id("20240101")
    forge.forge_run(repo.path, run_id=legacy)  # a day of its own
    tree = git.tree_at(layout.SHADOW_REF, layout.run_path(legacy))
    git.put_tree_in_ref(layout.SHADOW_REF, layout.legacy_run_path(legacy), tree, "the same run at the old path too")
    other = forge.new_id("20240101")
    git.put_tree_in_ref(layout.SHADOW_REF, layout.legacy_run_path(other), tree, "a run stored before the fan-out")
    git.put_blobs_in_ref(layout.SHADOW_REF, {"runs/20240101/zz/junk": forge.blob(repo.path, "x")}, "junk")
    assert _listed(git) == _walked(git)
    gone = first[2]
    git.put_blobs_in_ref(layout.SHADOW_REF, {f"{gone[0]}/{layout.META_FILE}": None, f"{gone[0]}/{layout.RECORDS}": None,
                                              f"{gone[0]}/{layout.LOOPS}": None, f"{gone[0]}/{layout.STARTS}": None,
                                              f"{gone[0]}/{layout.ENDS}": None}, "a run's files taken away")  # fmt: skip
    _record(2)
    listed = _listed(git)
    assert listed == _walked(git)
    assert legacy in {r for _p, r, _t in listed} and other in {r for _p, r, _t in listed}
