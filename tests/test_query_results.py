"""Finished ``flor.dataframe`` frames kept as memos (frames.results): the same question
about the same runs is answered from one file, exactly as a fresh query answers it, and
never after the runs changed, when the query warned, or from a damaged file."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
import zlib

import polars as pl
import pytest

import florgit as flor
from florgit.frames import public, results
from florgit.git import open_repo, peek
from florgit.store import memo
from tests.conftest import clone_of, seeded_remote

SWEEP = """\
import sys
import florgit as flor
flor.set_echo(False)
for r in range(int(sys.argv[1])):
    lr = flor.arg("lr", 0.1 * (r + 1))
    for epoch in flor.loop("epoch", range(3)):
        flor.log("acc", epoch * lr)
        flor.log("msg", f"e{epoch}")
    flor.commit()
"""


def _memos() -> list[str]:
    folder = os.path.dirname(memo.path_of(open_repo(require_workdir=False).common_dir, results.PREFIX))
    return sorted(n for n in os.listdir(folder) if n.startswith(results.PREFIX)) if os.path.isdir(folder) else []


def _fresh(monkeypatch, *names: str, **kw) -> pl.DataFrame:
    with monkeypatch.context() as m:
        m.setenv("FLORGIT_QUERY_CACHE", "0")
        return flor.dataframe(*names, **kw)


def _from_memo(monkeypatch, *names: str, **kw) -> pl.DataFrame:
    with monkeypatch.context() as m:
        m.setattr(public, "_dataframe", lambda *a, **k: pytest.fail("the memo was not used"))
        return flor.dataframe(*names, **kw)


@pytest.fixture
def swept(repo):
    repo.write("sweep.py", SWEEP)
    repo.commit("sweep")
    repo.run("sweep.py", "3")
    return repo


def test_the_same_question_is_answered_from_its_memo_and_equals_a_fresh_query(swept, monkeypatch):
    questions = [(("lr", "acc"), {}), (("acc", "lr"), {}), (("msg",), {}), ((), {}), (("acc",), {"where": "acc > 0.15"}),
                 (("acc",), {"rank": "all"}), (("acc", "acc"), {})]  # fmt: skip
    for names, kw in questions:
        first = flor.dataframe(*names, **kw)
        assert first.equals(_fresh(monkeypatch, *names, **kw))
        again = _from_memo(monkeypatch, *names, **kw)
        assert again.equals(first) and again.schema == first.schema
    assert _from_memo(monkeypatch, "acc", where="acc > 0.35").height == 2  # where applies to the kept frame
    assert len(_memos()) == 6  # ("acc", "acc") is ("acc",); where is not part of the question


def test_new_runs_replays_rm_and_pulls_make_it_miss(tmp_path, monkeypatch):
    bare = seeded_remote(tmp_path, {"sweep.py": SWEEP})
    alice, bob = (clone_of(bare, tmp_path / n) for n in ("alice", "bob"))
    alice.run("sweep.py", "1")
    bob.run("sweep.py", "1")
    monkeypatch.chdir(bob.path)

    def check(height: int) -> pl.DataFrame:
        got = flor.dataframe("lr", "acc")
        assert got.height == height and got.equals(_fresh(monkeypatch, "lr", "acc"))
        assert _from_memo(monkeypatch, "lr", "acc").equals(got)
        return got

    check(3)
    bob.run("sweep.py", "1")
    check(6)
    assert alice.flor("push").returncode == 0 and bob.flor("pull").returncode == 0
    got = check(9)
    assert bob.flor("rm", got["run_id"][0]).returncode == 0
    check(6)
    assert bob.flor("rm", "--undo", got["run_id"][0]).returncode == 0
    check(9)
    bob.write("sweep.py", SWEEP.replace('flor.log("msg", f"e{epoch}")', 'flor.log("msg", f"e{epoch}")\n        flor.log("acc2", 2 * epoch)'))
    plan = flor.replay("acc2")  # bob's own two runs: alice's are replayed only with trust
    assert all(r.ok for r in plan.results), [r.output for r in plan.results]
    replayed = flor.dataframe("acc2")
    assert replayed["acc2"].to_list() == [0, 2, 4] * 2 and replayed.equals(_fresh(monkeypatch, "acc2"))
    subprocess.run(["git", "gc", "-q", "--prune=now"], cwd=bob.path, check=True)
    assert _from_memo(monkeypatch, "acc2").equals(replayed)  # a repack changes no id


def test_a_query_that_warned_is_not_kept_and_warns_every_time(swept, monkeypatch):
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            flor.dataframe("acc", "acx")  # never logged: a hint names "acc"
        assert any("acx" in str(w.message) for w in caught)
    assert _memos() == []


def test_a_frame_built_while_a_run_was_recorded_is_not_kept(swept, monkeypatch):
    real = public._dataframe

    def racing(*args, **kw):
        frame = real(*args, **kw)
        flor.log("late", 1)  # another writer's run lands while this frame is built
        flor.commit()
        return frame

    monkeypatch.setattr(public, "_dataframe", racing)
    assert flor.dataframe("acc").height == 9
    assert _memos() == []


def test_a_new_question_reads_the_refs_once_then_once_more_to_keep_its_answer(swept, monkeypatch):
    flor.dataframe("lr")  # fills the query cache and keeps the listing
    looks = []
    real = peek.tree_ids
    monkeypatch.setattr(peek, "tree_ids", lambda *a: looks.append(a) or real(*a))
    assert flor.dataframe("acc").height == 9
    assert len(looks) == 2  # the result's key and the listing share one; the check before keeping it is apart
    assert len(_memos()) == 2


def test_a_run_recorded_after_the_question_is_not_in_its_answer_nor_kept(swept, monkeypatch):
    flor.dataframe("lr")
    real = public._dataframe

    def late(*args, **kw):
        flor.log("acc", 9.0)  # another writer's run lands after the question was keyed, before it is read
        flor.commit()
        return real(*args, **kw)

    monkeypatch.setattr(public, "_dataframe", late)
    assert flor.dataframe("acc").height == 9  # the runs as they were when asked, all of one listing
    assert len(_memos()) == 1
    monkeypatch.setattr(public, "_dataframe", real)
    assert flor.dataframe("acc").height == 10


def test_a_damaged_or_forged_memo_is_ignored(swept, monkeypatch):
    truth = flor.dataframe("lr", "acc")
    [name] = _memos()
    path = memo.path_of(open_repo(require_workdir=False).common_dir, name)
    good = open(path, "rb").read()
    key = good.split(b" ")[2]

    def forged(body: bytes) -> bytes:
        return b"florgit-memo 1 %s %08x %d\n" % (key, zlib.crc32(body), len(body)) + body

    payload = good.partition(b"\n")[2]
    for bad in (good[:-5] + bytes([good[-5] ^ 1]) + good[-4:], good[: len(good) // 2], forged(b"not arrow"),
                forged(payload[: len(payload) // 2])):  # fmt: skip
        open(path, "wb").write(bad)
        assert flor.dataframe("lr", "acc").equals(truth)
        assert open(path, "rb").read() == good  # rewritten whole


def _name(*names: str) -> str:
    return results.memo_name("dataframe", names, None)


def test_the_least_recently_used_memos_go_beyond_the_budget_and_big_frames_are_not_kept(swept, monkeypatch):
    monkeypatch.setattr(results, "MAX_FILES", 2)
    common = open_repo(require_workdir=False).common_dir
    for age, names in enumerate((("acc",), ("lr",), ("msg",))):
        flor.dataframe(*names)
        os.utime(memo.path_of(common, _name(*names)), (1000 + age, 1000 + age))  # file times are coarse
    assert _memos() == sorted([_name("lr"), _name("msg")])  # the oldest went
    _from_memo(monkeypatch, "lr")  # used again: now the most recent
    monkeypatch.setattr(results, "MAX_FRAME_BYTES", 10)
    flor.dataframe("lr", "acc")  # too big to keep
    assert _memos() == sorted([_name("lr"), _name("msg")])
    monkeypatch.setattr(results, "MAX_FRAME_BYTES", 1 << 30)
    flor.dataframe("lr", "acc")
    assert _memos() == sorted([_name("lr"), _name("lr", "acc")])  # msg was the least recently used
    monkeypatch.setattr(results, "MAX_TOTAL_BYTES", 1)
    flor.dataframe("acc")
    assert _memos() == [_name("acc")]  # the newest stays, however big


@pytest.mark.parametrize("limit", [0, 1, 100, 799, 800, 801, 2000, 10_000])
def test_a_frame_is_too_big_to_keep_exactly_when_its_size_is_over_the_limit(monkeypatch, limit):
    frames = [
        pl.DataFrame({"step": range(100), "loss": [0.5] * 100}),  # 1,600 bytes, all fixed width
        pl.DataFrame({"run_id": ["20261129-024223.844-9f11fe25"] * 100, "n": pl.Series(range(100), dtype=pl.Int8)}),
        pl.DataFrame({"when": pl.datetime_range(pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 2), "1h", eager=True),
                      "ok": [True] * 25, "note": ["x"] * 25}),  # fmt: skip
        pl.DataFrame(),
    ]
    monkeypatch.setattr(results, "MAX_FRAME_BYTES", limit)
    for frame in frames:
        assert results._too_big(frame) == (frame.estimated_size() > limit)


def test_a_memo_hit_in_a_fresh_process_loads_no_pygit2(swept):
    probe = "import sys, florgit as flor\nflor.dataframe('lr', 'acc')\nprint('pygit2' in sys.modules)\n"
    outs = [subprocess.run([sys.executable, "-c", probe], cwd=swept.path, capture_output=True, text=True, check=True)
            for _ in range(2)]  # fmt: skip
    assert [o.stdout.split()[-1] for o in outs] == ["True", "False"]


def test_memos_are_off_with_the_query_cache(swept, monkeypatch):
    monkeypatch.setenv("FLORGIT_QUERY_CACHE", "0")
    flor.dataframe("acc")
    flor.dataframe("acc")
    assert _memos() == []
