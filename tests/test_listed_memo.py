"""The memo of what a query listed (frames.listed): a new question about runs the query
cache holds is answered without opening the repository, and only while the runs, tags,
notes and removals are the ones it was built from; a damaged memo is never trusted."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import polars as pl
import pytest

import florgit as flor
from florgit.frames import listed, loader
from florgit.git import open_repo
from florgit.store import memo
from florgit.store import runs as store_runs
from tests.test_runlist import _rewrite_meta

NO_CACHE = {"FLORGIT_QUERY_CACHE": "0"}
RUNS_SQL = "SELECT run_id, status, tags, note FROM runs"


def _record(lr: float) -> str:
    flor.arg("lr", lr)
    for epoch in flor.loop("epoch", range(3)):
        flor.log("acc", 0.5 + epoch * lr)
    flor.log("msg", f"lr {lr}")
    flor.commit()
    return flor.runs()["run_id"].to_list()[-1]


def _memo_file() -> str:
    return memo.path_of(open_repo(require_workdir=False).common_dir, listed.MEMO)


def _answers() -> list[pl.DataFrame]:
    """New questions each time (frames.results keeps none of them for later): the records
    and the runs frame, as the loader gives them."""
    return [flor.query("SELECT run_id, epoch, name, value_float, value_str FROM records"), flor.query(RUNS_SQL)]


def _fresh(monkeypatch) -> list[pl.DataFrame]:
    with monkeypatch.context() as m:
        m.setenv("FLORGIT_QUERY_CACHE", "0")
        return _answers()


def _same(got: list[pl.DataFrame], expected: list[pl.DataFrame]) -> None:
    for a, b in zip(got, expected, strict=True):
        assert a.equals(b, null_equal=True), (a, b)


def _no_repository(m) -> None:
    m.setattr(store_runs, "list_runs", lambda *a, **k: pytest.fail("the repository was listed"))
    m.setattr(loader, "open_recovered", lambda *a, **k: pytest.fail("the repository was opened"))


def test_a_new_question_about_cached_runs_does_not_open_the_repository(repo, monkeypatch):
    first = _record(0.1)
    _record(0.2)
    assert repo.flor("tag", first, "best").returncode == 0
    assert repo.flor("note", first, "the [bold]good[/bold] one").returncode == 0
    expected = _fresh(monkeypatch)
    flor.dataframe("acc")  # lists through the repository, fills the cache, keeps the listing
    assert os.path.exists(_memo_file())
    with monkeypatch.context() as m:
        _no_repository(m)
        _same(_answers(), expected)
        assert flor.dataframe("lr", "msg").height == 2
    assert expected[1].filter(pl.col("run_id") == first)["tags"].to_list() == [["best"]]
    probe = "import sys, florgit as flor\nflor.dataframe('epoch', 'acc')\nprint('pygit2' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=repo.path, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False"


def test_the_memo_misses_after_a_run_tag_note_removal_or_pull(repo, monkeypatch):
    first = _record(0.1)
    _record(0.2)
    _answers()
    changes = [
        lambda: repo.flor("tag", first, "best"),
        lambda: repo.flor("note", first, "a note"),
        lambda: repo.flor("rm", first),
        lambda: repo.flor("rm", "--undo", first),
        lambda: _record(0.3),
        lambda: _rewrite_meta(repo.path, first, lambda m: {**m, "status": "failed"}),  # as a pull that replaced it
    ]
    for change in changes:
        done = change()
        assert getattr(done, "returncode", 0) == 0, done.stderr
        expected = _fresh(monkeypatch)
        _same(_answers(), expected)
        with monkeypatch.context() as m:  # kept again: the next new question opens nothing
            _no_repository(m)
            _same(_answers(), expected)
    runs = flor.query(RUNS_SQL)
    assert runs.height == 3 and runs["status"].to_list()[0] == "failed"
    assert runs["tags"].to_list()[0] == ["best"] and runs["note"].to_list()[0] == "a note"


def test_a_run_the_cache_lacks_sends_the_query_to_the_repository(repo, monkeypatch):
    _record(0.1)
    _record(0.2)
    expected = _fresh(monkeypatch)
    _answers()
    common = open_repo(require_workdir=False).common_dir
    cache_dir = os.path.join(common, "flor", "cache", "v3")
    for segment in os.listdir(cache_dir):  # the cache is derived: anyone may delete it
        if segment.startswith("seg-"):
            for name in os.listdir(os.path.join(cache_dir, segment)):
                os.remove(os.path.join(cache_dir, segment, name))
            os.rmdir(os.path.join(cache_dir, segment))
    _same(_answers(), expected)
    with monkeypatch.context() as m:  # cached again, and listed again
        _no_repository(m)
        _same(_answers(), expected)


def test_a_damaged_or_malformed_memo_is_ignored(repo, monkeypatch):
    first = _record(0.1)
    _record(0.2)
    assert repo.flor("tag", first, "best").returncode == 0
    expected = _fresh(monkeypatch)
    _answers()
    path = _memo_file()
    with open(path, "rb") as f:
        good = f.read()
    header, _, payload = good.partition(b"\n")
    marks, _, trees = payload.partition(b"\n")
    key = header.split(b" ")[2]

    def forged(body: bytes) -> bytes:  # a valid header over a payload florgit did not write
        return b"florgit-memo 1 %s %08x %d\n" % (key, zlib.crc32(body), len(body)) + body

    damaged = [
        good[:-5] + bytes([good[-5] ^ 0x01]) + good[-4:],  # a flipped bit
        good[: len(good) // 2],  # cut short
        forged(b"not json\n" + trees),
        forged(b'{"marks": 1}\n' + trees),
        forged(b'[["20250101-000000.000-0d4b920e", "best", null]]\n' + trees),  # tags not a list
        forged(b'[["../../x", [], null]]\n' + trees),  # not a run id
        forged(b'[["20250101-000000.000-0d4b920e", [], 5]]\n' + trees),  # a note not text
        forged(marks + b"\n" + trees[:-1]),  # a tree id without its newline
        forged(marks + b"\n" + trees.upper()),
        forged(marks + b"\n--all\n"),
    ]
    for bad in damaged:
        with open(path, "wb") as f:
            f.write(bad)
        assert listed.peek(None) is None
        _same(_answers(), expected)
    with open(path, "rb") as f:  # rewritten whole by the query that ignored it
        assert f.read() == good


def test_a_listing_read_while_a_writer_changed_the_runs_is_not_kept(repo):
    _record(0.1)
    git = open_repo(require_workdir=False)
    trees = [r.tree for r in store_runs.list_runs(git)]
    listed.keep(git, "0" * 40, trees, {})  # the key read before listing is not the key now
    assert not os.path.exists(_memo_file())
    listed.keep(git, listed.key(git), trees, {})
    assert listed.peek(None) is not None and listed.peek(None).trees == trees


def test_the_memo_is_off_with_the_query_cache(repo, monkeypatch):
    _record(0.1)
    monkeypatch.setenv("FLORGIT_QUERY_CACHE", "0")
    _answers()
    assert not os.path.exists(_memo_file())
