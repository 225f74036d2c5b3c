"""The memos of run listings (store.memo): ``flor.runs()``'s frame and a plain ``git flor
log``'s table are read back only while the runs, tags, notes and removals they were built
from are unchanged, equal what a fresh listing shows, and are never trusted when damaged."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
import zlib

import polars as pl
import pytest

import florgit as flor
from florgit.cli import log_memo
from florgit.frames import runlist
from florgit.git import open_repo
from florgit.store import memo, memo_keys
from florgit.store import runs as store_runs
from tests.test_runlist import _rewrite_meta

NO_CACHE = {"FLORGIT_QUERY_CACHE": "0"}


def _record(lr: float, value: object = "fine") -> str:
    flor.arg("lr", lr)
    for epoch in flor.loop("epoch", range(2)):
        flor.log("acc[/b]", 0.5 + epoch * lr)  # rich markup in a name
    flor.log("msg", value)
    flor.commit()
    return flor.runs()["run_id"].to_list()[-1]


def _fresh(monkeypatch):
    with monkeypatch.context() as m:
        m.setenv("FLORGIT_QUERY_CACHE", "0")
        return flor.runs()


def _memo_path(name: str) -> str:
    return memo.path_of(open_repo(require_workdir=False).common_dir, name)


def _same(a, b) -> None:
    assert a.columns == b.columns
    assert a.drop("duration_s").equals(b.drop("duration_s"), null_equal=True)


def test_runs_comes_from_its_memo_until_a_run_tag_note_or_removal_changes(repo, monkeypatch):
    first = _record(0.1)
    _record(0.2, "\x1b[2J esc")
    listed = flor.runs()
    assert os.path.exists(_memo_path(runlist.MEMO))
    _same(listed, _fresh(monkeypatch))
    with monkeypatch.context() as m:  # read back from the memo: the runs are not even listed
        m.setattr(store_runs, "list_runs", lambda *a, **k: pytest.fail("the memo was not used"))
        _same(flor.runs(), listed)
    for change in (("tag", first, "best"), ("note", first, "a note"), ("rm", first), ("rm", "--undo", first)):
        done = repo.flor(*change)
        assert done.returncode == 0, done.stderr
        _same(flor.runs(), _fresh(monkeypatch))
    assert flor.runs().filter(pl.col("run_id") == first)["tags"].to_list() == [["best"]]
    _record(0.3)
    assert flor.runs().height == 3
    _rewrite_meta(repo.path, first, lambda m: {**m, "status": "failed"})  # as a pull that replaced the run
    _same(flor.runs(), _fresh(monkeypatch))
    assert flor.runs()["status"].to_list()[0] == "failed"


def _payload(frame_bytes: bytes, head: dict) -> bytes:
    return json.dumps(head).encode() + b"\n" + frame_bytes


def test_a_damaged_or_foreign_runs_memo_is_ignored(repo, monkeypatch):
    _record(0.1)
    _record(0.2)
    expected = flor.runs()
    path = _memo_path(runlist.MEMO)
    with open(path, "rb") as f:
        good = f.read()
    header, _, payload = good.partition(b"\n")
    key = header.split(b" ")[2].decode()

    def forged(body: bytes) -> bytes:  # a valid header over a payload florgit did not write
        return b"florgit-memo 1 %s %08x %d\n" % (key.encode(), zlib.crc32(body), len(body)) + body

    other = io.BytesIO()
    pl.DataFrame({"run": [0], "x": [1]}).write_ipc(other)
    head, _, frame = payload.partition(b"\n")
    damaged = [
        good[:-9] + bytes([good[-9] ^ 0x40]) + good[-8:],  # a flipped bit
        good[: len(good) // 2],  # cut short
        forged(b"not json\n" + frame),
        forged(_payload(frame, {"args": ["lr"], "names": ["lr", "acc[/b]", "extra"]})),  # names the frame lacks
        forged(_payload(frame, {"args": "lr", "names": 5})),
        forged(_payload(frame, {"args": 5, "names": ["lr", "acc[/b]", "msg"]})),
        forged(_payload(other.getvalue(), {"args": [], "names": []})),  # another frame
        forged(head + b"\n" + frame[:-100]),  # a cut Arrow file
    ]
    for bad in damaged:
        with open(path, "wb") as f:
            f.write(bad)
        _same(flor.runs(), expected)
    with open(path, "rb") as f:  # rewritten whole by the listing that ignored it
        assert f.read() == good


def test_a_listing_that_left_a_run_out_is_not_kept_and_warns_every_time(repo, monkeypatch):
    bad = _record(0.1)
    _record(0.2)
    _rewrite_meta(repo.path, bad, lambda m: {**m, "status": 5})
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert flor.runs().height == 1
        assert any(bad in str(w.message) for w in caught)
        git = open_repo(require_workdir=False)
        key = memo_keys.listing_key(git, runlist.MEMO_VERSION, flor.__version__)
        assert memo.read(git.common_dir, runlist.MEMO, key) is None
        out = repo.flor("log")
        assert out.returncode == 0 and bad in out.stderr
        assert log_memo.load(git.common_dir, log_memo.key(git)) is None


def test_memos_are_off_with_the_query_cache(repo, monkeypatch):
    _record(0.1)
    for name in (runlist.MEMO, log_memo.NAME):
        if os.path.exists(_memo_path(name)):
            os.remove(_memo_path(name))
    monkeypatch.setenv("FLORGIT_QUERY_CACHE", "0")
    flor.runs()
    assert repo.flor("log").returncode == 0
    assert not os.path.exists(_memo_path(runlist.MEMO)) and not os.path.exists(_memo_path(log_memo.NAME))


@pytest.mark.parametrize("options", [[], ["--wide"], ["-n", "1"], ["-r"], ["-n", "2", "-r"]])
def test_git_flor_log_from_its_memo_shows_what_a_fresh_listing_shows(repo, options):
    first = _record(0.1, "\x1b[2J esc")
    _record(0.2)

    def both() -> tuple[str, str]:
        fresh = repo.flor("log", *options, env=NO_CACHE)
        remembered = [repo.flor("log", *options) for _ in range(2)]  # writes the memo, then reads it
        assert fresh.returncode == 0 and all(r.returncode == 0 for r in remembered), fresh.stderr
        assert remembered[0].stdout == remembered[1].stdout
        return fresh.stdout, remembered[1].stdout

    fresh, remembered = both()
    assert fresh == remembered and "acc[/b]" in fresh
    assert options[:1] == ["-n"] or "\\x1b[2J esc" in fresh  # shown, never sent raw
    assert os.path.exists(_memo_path(log_memo.NAME))
    assert repo.flor("tag", first, "best").returncode == 0
    fresh, remembered = both()
    assert fresh == remembered and "tags" in fresh  # a column once any run has a tag
    assert repo.flor("rm", first).returncode == 0
    fresh, remembered = both()
    assert fresh == remembered and first not in fresh


def test_a_plain_git_flor_log_reads_its_memo_without_polars(repo):
    _record(0.1)
    assert repo.flor("log").returncode == 0  # writes the memo
    probe = (
        "import sys\nfrom florgit.cli.main import main\nsys.argv = ['git-flor', 'log']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nprint('polars' in sys.modules, 'pyarrow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=repo.path, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False False"


def test_a_damaged_or_forged_log_memo_is_ignored(repo):
    _record(0.1)
    _record(0.2)
    expected = repo.flor("log", env=NO_CACHE).stdout
    repo.flor("log")
    path = _memo_path(log_memo.NAME)
    with open(path, "rb") as f:
        good = f.read()
    key = good.split(b" ")[2]
    data = json.loads(good.partition(b"\n")[2])

    def forged(value) -> bytes:
        body = json.dumps(value).encode()
        return b"florgit-memo 1 %s %08x %d\n" % (key, zlib.crc32(body), len(body)) + body

    damaged = [
        good[:-3] + bytes([good[-3] ^ 1]) + good[-2:],
        forged({**data, "run_id": data["run_id"][:1]}),  # columns of different lengths
        forged({**data, "values": [["x", "yes", data["date"]]]}),  # not a flag
        forged({**data, "status": [1] * len(data["status"])}),  # not text
        forged([1, 2]),
    ]
    for bad in damaged:
        with open(path, "wb") as f:
            f.write(bad)
        assert repo.flor("log").stdout == expected
