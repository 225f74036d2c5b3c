"""The query cache (.git/flor/cache) serves exactly what git holds: never a stale run (a
replay, a pull, an rm, a gc), never a damaged or foreign file, and two processes can
fill it at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import polars as pl
import pytest

import florgit as flor
from florgit.codec.values import INT
from florgit.errors import FlorgitWarning
from florgit.frames import cache as cache_mod
from florgit.frames.cache import CACHE_DIR, DISABLE_ENV
from tests.conftest import Repo, clone_of, git, make_repo, seeded_remote

SWEEP = """\
import sys
import florgit as flor

for r in range(int(sys.argv[1])):
    lr = flor.arg("lr", 0.1 * (r + 1))
    for epoch in flor.loop("epoch", range(4)):
        flor.log("acc", epoch * lr)
        flor.log("note", f"e{epoch}")
    flor.commit()
"""


def _cache_dir(repo: Repo) -> str:
    return os.path.join(repo.path, ".git", CACHE_DIR)


def _segments(repo: Repo) -> list[str]:
    d = _cache_dir(repo)
    return sorted(n for n in os.listdir(d) if n.startswith("seg-")) if os.path.isdir(d) else []


def _uncached(monkeypatch, *names: str) -> pl.DataFrame:
    with monkeypatch.context() as m:
        m.setenv(DISABLE_ENV, "0")
        return flor.dataframe(*names)


@pytest.fixture(autouse=True)
def no_kept_results(monkeypatch):
    """These tests are about the segments: every query reaches them, none is answered by a
    kept result (frames.results; tests/test_query_results.py)."""
    from florgit.frames import results

    monkeypatch.setattr(results, "through", lambda compute, *_question: compute())


@pytest.fixture
def swept(repo, monkeypatch):
    repo.write("sweep.py", SWEEP)
    repo.commit("sweep")
    repo.run("sweep.py", "3")
    return repo


def test_second_query_is_served_from_the_cache_and_equals_git(swept, monkeypatch):
    first = flor.dataframe("lr", "acc")
    assert len(_segments(swept)) == 1
    again = flor.dataframe("lr", "acc")
    assert again.equals(first) and again.equals(_uncached(monkeypatch, "lr", "acc"))
    assert len(_segments(swept)) == 1  # nothing new to add
    assert flor.dataframe("note").equals(_uncached(monkeypatch, "note"))  # other names, same segment
    assert flor.dataframe().equals(_uncached(monkeypatch))


def test_new_runs_replays_and_rm_are_never_served_stale(swept, monkeypatch):
    flor.dataframe("acc")
    swept.run("sweep.py", "1")  # a new run: read from git, added as a second segment
    assert flor.dataframe("acc").height == 16 and len(_segments(swept)) == 2
    swept.write("sweep.py", SWEEP.replace('        flor.log("note", f"e{epoch}")\n',
                                          '        flor.log("note", f"e{epoch}")\n        flor.log("acc2", 2 * epoch * lr)\n'))  # fmt: skip
    plan = flor.replay("acc2")
    assert all(r.ok for r in plan.results), [r.output for r in plan.results]
    got = flor.dataframe("acc", "acc2")
    assert got["acc2"].to_list() == [2 * a for a in got["acc"].to_list()]  # replayed runs have new trees
    assert got.equals(_uncached(monkeypatch, "acc", "acc2"))
    victim = got["run_id"][0]
    assert subprocess.run([sys.executable, "-m", "florgit.cli.main", "rm", victim], cwd=swept.path).returncode == 0
    after = flor.dataframe("acc")
    assert victim not in after["run_id"].to_list() and after.equals(_uncached(monkeypatch, "acc"))
    git(swept.path, "gc", "-q", "--prune=now")  # objects repacked: ids, and so the cache, unchanged
    assert flor.dataframe("acc").equals(after)


def test_a_pull_that_replaces_nothing_and_adds_runs_is_exact(tmp_path, monkeypatch):
    bare = seeded_remote(tmp_path, {"sweep.py": SWEEP})
    alice, bob = (clone_of(bare, tmp_path / n) for n in ("alice", "bob"))
    alice.run("sweep.py", "2")
    bob.run("sweep.py", "1")
    monkeypatch.chdir(bob.path)
    assert flor.dataframe("acc").height == 4
    flor_cli = [sys.executable, "-m", "florgit.cli.main"]
    assert subprocess.run([*flor_cli, "push"], cwd=alice.path).returncode == 0
    assert subprocess.run([*flor_cli, "pull"], cwd=bob.path).returncode == 0
    got = flor.dataframe("acc")
    assert got.height == 12 and got.equals(_uncached(monkeypatch, "acc"))


def test_damaged_or_foreign_cache_files_are_never_served(swept, monkeypatch, tmp_path):
    truth = flor.dataframe("acc")
    [segment] = _segments(swept)
    records = os.path.join(_cache_dir(swept), segment, "records.arrow")
    data = bytearray(open(records, "rb").read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the values
    open(records, "wb").write(bytes(data))
    assert flor.dataframe("acc").equals(truth)  # the segment fails its digest: read from git again
    assert segment not in _segments(swept)
    # A segment from another repository (other runs): its trees match none of these runs.
    other = make_repo(tmp_path / "other")
    other.write("sweep.py", SWEEP.replace("0.1 *", "0.7 *"))
    other.commit("other")
    other.run("sweep.py", "2")
    subprocess.run([sys.executable, "-c", "import florgit as flor; flor.dataframe('acc')"], cwd=other.path, check=True)
    for name in _segments(other):
        shutil.copytree(os.path.join(_cache_dir(other), name), os.path.join(_cache_dir(swept), name))
    assert flor.dataframe("acc").equals(truth)


def test_two_processes_fill_the_cache_at_once(swept):
    code = "import florgit as flor; print(flor.dataframe('lr', 'acc').write_json())"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=swept.path, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs[0] == outs[1]
    assert 1 <= len(_segments(swept)) <= 2  # each published a whole segment, or one found the other's
    assert flor.dataframe("lr", "acc").write_json() == outs[0].strip()


def _cached_run_ids(repo: Repo, segment: str) -> list[str]:
    return pl.read_ipc(os.path.join(_cache_dir(repo), segment, "runs.arrow"))["run_id"].to_list()


def test_many_segments_are_compacted_to_the_live_runs(swept, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_SEGMENTS", 3)
    flor.dataframe("acc")
    victims = flor.runs()["run_id"].to_list()[:2]  # most of the first segment
    for victim in victims:
        assert subprocess.run([sys.executable, "-m", "florgit.cli.main", "rm", victim], cwd=swept.path).returncode == 0
    for _ in range(3):
        swept.run("sweep.py", "1")
        flor.dataframe("acc")
    [segment] = _segments(swept)  # the small ones and the mostly removed one, merged into one
    cached = _cached_run_ids(swept, segment)
    assert not set(victims) & set(cached) and len(cached) == 1 + 3
    assert flor.dataframe("acc").equals(_uncached(monkeypatch, "acc"))


def test_compaction_leaves_a_big_live_segment_alone(swept, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_SEGMENTS", 3)
    flor.dataframe("acc")
    [big] = _segments(swept)  # three runs, all live
    for _ in range(3):
        swept.run("sweep.py", "1")
        flor.dataframe("acc")
    assert big in _segments(swept) and len(_segments(swept)) == 2  # the three one-run segments merged
    merged = [s for s in _segments(swept) if s != big]
    assert len(_cached_run_ids(swept, merged[0])) == 3 and not set(_cached_run_ids(swept, merged[0])) & set(_cached_run_ids(swept, big))
    assert flor.dataframe("acc").equals(_uncached(monkeypatch, "acc"))


def test_run_listings_from_the_cache_equal_those_from_metas(swept, monkeypatch):
    def listing() -> pl.DataFrame:
        return flor.runs().drop("start_time", "end_time", "duration_s")

    def uncached_listing() -> pl.DataFrame:
        with monkeypatch.context() as m:
            m.setenv(DISABLE_ENV, "0")
            return listing()

    before = uncached_listing()
    flor.dataframe("acc")  # fills the cache: listings now read those runs from it
    assert _segments(swept) and listing().equals(before)
    swept.run("sweep.py", "1")  # one run only in git, the others cached
    mixed = listing()
    assert mixed.height == 4 and mixed.equals(uncached_listing())
    assert subprocess.run([sys.executable, "-m", "florgit.cli.main", "tag", mixed["run_id"][0], "best"],
                          cwd=swept.path).returncode == 0  # fmt: skip
    assert listing()["tags"].to_list()[0] == ["best"]  # curation is never cached


def test_loop_item_values_mix_with_cached_runs_that_have_none(swept, monkeypatch):
    """Cached iterations keep item-value columns only where some loop item has a value;
    runs with and without them, cached or fresh, give what git gives."""
    flor.dataframe("acc")  # the swept runs' segment: their items are indexes, no values
    swept.write("items.py", "import florgit as flor\nfor lr in flor.loop('lr', [0.5, 0.25]):\n    flor.log('acc', lr * 2)\n    flor.log('n', 3)\n")
    swept.commit("items")
    swept.run("items.py")
    fresh = flor.dataframe("acc")  # cached runs without item values, the new one with them
    assert fresh.equals(_uncached(monkeypatch, "acc"))
    assert fresh.filter(pl.col("lr_value").is_not_null())["lr_value"].to_list() == [0.5, 0.25]
    assert len(_segments(swept)) == 2
    assert flor.dataframe("acc").equals(fresh)  # both segments from the cache
    # the first segment holds no int values (its int column is not read back), the second does
    both = flor.dataframe("acc", "n", "note")
    assert both.equals(_uncached(monkeypatch, "acc", "n", "note")) and both["n"].drop_nulls().to_list() == [3, 3]


def _listing_segments(repo: Repo) -> list[str]:
    d = _cache_dir(repo)
    return sorted(n for n in os.listdir(d) if n.startswith(cache_mod.LISTING)) if os.path.isdir(d) else []


def test_listings_keep_what_they_read_for_the_next_listing_only(swept, monkeypatch):
    from florgit.store import runs as store_runs

    def listing() -> pl.DataFrame:
        return flor.runs().drop("start_time", "end_time", "duration_s")

    with monkeypatch.context() as m:
        m.setenv(DISABLE_ENV, "0")
        expected = listing()
    first = listing()  # reads the metas, keeps them as a listing segment
    assert first.equals(expected) and len(_listing_segments(swept)) == 1 and not _segments(swept)
    read: list[str] = []
    real = store_runs.read_meta
    monkeypatch.setattr(store_runs, "read_meta", lambda repo, run: read.append(run.run_id) or real(repo, run))
    assert listing().equals(expected) and read == []  # no meta read again
    out = subprocess.run([sys.executable, "-m", "florgit.cli.main", "log"], cwd=swept.path, capture_output=True, text=True)
    assert out.returncode == 0 and all(r in out.stdout for r in expected["run_id"].to_list())
    # A records query never takes runs from a listing segment: it reads their tables from git.
    assert flor.dataframe("lr", "acc").equals(_uncached(monkeypatch, "lr", "acc"))
    assert len(_segments(swept)) == 1
    swept.run("sweep.py", "1")
    assert listing().height == 4 and read == [flor.runs()["run_id"][-1]]  # only the new run's meta


def test_listing_segments_are_compacted_without_runs_full_segments_hold(swept, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_SEGMENTS", 2)
    flor.runs()  # a listing segment of the 3 swept runs
    flor.dataframe("acc")  # a full segment of the same runs
    for _ in range(2):
        swept.run("sweep.py", "1")
        flor.runs()
    [segment] = _listing_segments(swept)  # three listing segments merged into one
    cached = pl.read_ipc(os.path.join(_cache_dir(swept), segment, "runs.arrow"))
    assert cached.height == 2  # the two newer runs; the swept ones are in the full segment
    with monkeypatch.context() as m:
        m.setenv(DISABLE_ENV, "0")
        expected = flor.runs().drop("start_time", "end_time", "duration_s")
    assert flor.runs().drop("start_time", "end_time", "duration_s").equals(expected)


def test_caches_of_earlier_formats_are_deleted_when_this_one_starts(swept):
    cache_root = os.path.dirname(_cache_dir(swept))
    for old in ("v1", "v2"):
        os.makedirs(os.path.join(cache_root, old, "seg-0123"))
    keep = os.path.join(cache_root, "listing")  # the run listing memos are not cache formats
    flor.dataframe("acc")
    assert sorted(os.listdir(cache_root)) == sorted(["listing", "listed", os.path.basename(CACHE_DIR)]) and os.path.exists(keep)


def test_a_first_query_over_many_runs_fills_the_cache_in_batches(swept, monkeypatch):
    from florgit.frames import loader
    from tests import forge

    swept.run("sweep.py", "2")
    bad = forge.forge_run(swept.path, records=[(7, "acc", 1.0)])  # refers to an iteration it does not have
    expected = _uncached(monkeypatch, "lr", "acc")
    monkeypatch.setattr(loader, "FILL_BATCH_RECORDS", 9)  # a run has 9 records: one run per batch
    with pytest.warns(FlorgitWarning, match=bad):
        got = flor.dataframe("lr", "acc")
    assert got.equals(expected) and got["run_id"].n_unique() == 5
    assert len(_segments(swept)) == 5  # each batch published as it was checked
    assert flor.dataframe("lr", "acc").equals(expected)
    with pytest.warns(FlorgitWarning, match="no run logged 'acc2'; did you mean 'acc'"):
        flor.dataframe("acc2")


def test_big_segments_are_not_rewritten_to_keep_their_number_down(swept, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_SEGMENTS", 2)
    monkeypatch.setattr(cache_mod, "BIG_SEGMENT_RECORDS", 9)  # a swept run has 9 records: every segment is big
    for _ in range(3):
        swept.run("sweep.py", "1")
        flor.dataframe("acc")
    assert len(_segments(swept)) == 3  # over MAX_SEGMENTS, none rewritten
    assert flor.dataframe("acc").equals(_uncached(monkeypatch, "acc"))


INTS = """\
import florgit as flor

for r in range(2):
    for epoch in flor.loop("epoch", range(3)):
        flor.log("acc", epoch)  # ints, where the sweep logged floats
        flor.log("count", epoch * 10)
    flor.commit()
"""


def test_runs_of_several_segments_are_read_together_and_equal_git(swept, monkeypatch):
    from florgit.frames.loader import load

    flor.dataframe("acc")  # the sweep's runs: one segment
    swept.write("ints.py", INTS)
    swept.commit("ints")
    swept.run("ints.py")
    flor.dataframe("acc")  # the new runs: a second segment, with other value columns filled
    assert len(_segments(swept)) == 2

    def check() -> None:
        for names in (("acc",), ("count",), ("note",), ("acc", "note"), ("lr", "acc", "count"), ()):
            assert flor.dataframe(*names).equals(_uncached(monkeypatch, *names)), names
        for names in (["acc"], ["acc", "note"], None):  # stacked, and one chunk per column
            assert set(load(None, names).records.n_chunks("all")) == {1}

    check()
    first = flor.runs()["run_id"].to_list()[0]
    assert swept.flor("rm", first).returncode == 0  # only some of a segment's runs are wanted
    check()

    def forge(which: int, edit) -> str:
        """Rewrite a segment's records file with ``edit`` and fix up its digest to match."""
        segment = os.path.join(_cache_dir(swept), _segments(swept)[which])
        records = os.path.join(segment, "records.arrow")
        edit(pl.read_ipc(records)).write_ipc(records, compression="lz4")
        sums = json.loads(open(os.path.join(segment, "sums")).read())
        sums["records"] = cache_mod._digest(records)
        open(os.path.join(segment, "sums"), "w").write(json.dumps(sums))
        return os.path.basename(segment)

    # A segment whose records file matches its digest but lacks a column: dropped, read from git.
    segment = forge(-1, lambda records: records.drop("seq"))
    assert flor.dataframe("acc", "count").equals(_uncached(monkeypatch, "acc", "count"))
    assert segment not in _segments(swept)
    # A column of another type than florgit writes: that segment is dropped.
    assert len(_segments(swept)) == 2
    forge(0, lambda records: records.with_columns(pl.col("kind").cast(pl.String)))
    assert flor.dataframe("acc", "count").equals(_uncached(monkeypatch, "acc", "count"))
    assert len(_segments(swept)) == 2
    # An extra column whose types in two segments cannot be stacked: no one segment is to
    # blame, so every segment the query needed goes, and the runs come from git.
    forge(0, lambda records: records.with_columns(pl.lit(1, dtype=pl.Int8).alias("extra")))
    forge(1, lambda records: records.with_columns(pl.lit([1], dtype=pl.List(pl.Int8)).alias("extra")))
    before = set(_segments(swept))
    assert flor.dataframe("acc", "count").equals(_uncached(monkeypatch, "acc", "count"))
    assert not before & set(_segments(swept))


def test_ids_stored_narrow_are_stacked_narrow_and_mix_with_segments_that_store_them_wide(swept, monkeypatch):
    from florgit.frames.loader import load

    flor.dataframe("acc")
    swept.write("ints.py", INTS)
    swept.commit("ints")
    swept.run("ints.py")
    flor.dataframe("acc")
    segments = [os.path.join(_cache_dir(swept), s) for s in _segments(swept)]
    assert len(segments) == 2 and all("seq" in json.load(open(os.path.join(s, "sums")))["narrow"] for s in segments)
    stacked = []
    real_column = cache_mod._Plan.column
    monkeypatch.setattr(cache_mod._Plan, "column", lambda plan, name, dtype: stacked.append((name, dtype)) or real_column(plan, name, dtype))

    def check() -> None:
        for names in (("acc",), ("acc", "count"), ()):
            assert flor.dataframe(*names).equals(_uncached(monkeypatch, *names)), names
        records = load(None, ["acc", "count"]).records
        assert records.schema["seq"] == records.schema["own_iteration"] == pl.Int64
        assert set(records.n_chunks("all")) == {1}

    check()
    assert ("seq", pl.Int32) in stacked  # both segments narrow: stacked as stored, widened once
    stacked.clear()
    # One segment stores seq wide (its values did not fit Int32): stacked wide with the other.
    records_file = os.path.join(segments[0], "records.arrow")
    pl.read_ipc(records_file).with_columns(pl.col("seq").cast(pl.Int64)).write_ipc(records_file, compression="lz4")
    sums = json.load(open(os.path.join(segments[0], "sums")))
    sums["narrow"].remove("seq")
    sums["records"] = cache_mod._digest(records_file)
    open(os.path.join(segments[0], "sums"), "w").write(json.dumps(sums))
    check()
    assert ("seq", pl.Int64) in stacked and ("seq", pl.Int32) not in stacked
    assert _segments(swept) == sorted(os.path.basename(s) for s in segments)  # read, not dropped


def test_columns_of_one_value_in_a_segment_are_not_read_and_mix_with_segments_of_several(swept, monkeypatch):
    """A segment lists the record columns that hold one value in it (rank 0, one value
    type, nothing replayed); queries take them as that value instead of reading them, and
    stack them with segments where they vary."""
    flor.dataframe("acc")  # the sweep: float and text values, so kind varies; rank and replayed do not
    [first] = _segments(swept)
    sums = json.loads(open(os.path.join(_cache_dir(swept), first, "sums")).read())
    assert sums["constant_records"] == {"rank": 0, "replayed": False}
    swept.write("ints.py", INTS)
    swept.commit("ints")
    swept.run("ints.py")
    flor.dataframe("acc")
    [second] = [s for s in _segments(swept) if s != first]
    sums = json.loads(open(os.path.join(_cache_dir(swept), second, "sums")).read())
    assert sums["constant_records"] == {"rank": 0, "kind": INT, "replayed": False}  # ints only
    read: list[str] = []
    real = cache_mod._Plan.column

    def spy(self, name, dtype):
        if name in self.schema and name not in self.constants:
            read.append(name)
        return real(self, name, dtype)

    monkeypatch.setattr(cache_mod._Plan, "column", spy)
    for names in (("acc",), ("lr", "acc", "count"), ()):
        read.clear()
        assert flor.dataframe(*names).equals(_uncached(monkeypatch, *names)), names
        assert "rank" not in read and "replayed" not in read
    assert flor.scan().collect().equals(_uncached_scan(monkeypatch))
    # Listed values of the wrong type are ignored: the column is read.
    for forged in ({"rank": "0", "kind": True, "replayed": 0}, ["rank"], {"rank": 2**20}):
        for segment in (first, second):
            path = os.path.join(_cache_dir(swept), segment, "sums")
            sums = json.loads(open(path).read())
            open(path, "w").write(json.dumps({**sums, "constant_records": forged}))
        read.clear()
        assert flor.dataframe("acc").equals(_uncached(monkeypatch, "acc"))
        assert {"rank", "replayed"} <= set(read)


def _uncached_scan(monkeypatch) -> pl.DataFrame:
    with monkeypatch.context() as m:
        m.setenv(DISABLE_ENV, "0")
        return flor.scan().collect()
