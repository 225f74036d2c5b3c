"""Concurrent writers never lose runs; a SIGKILLed run is recovered with its records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

import florgit as flor
from florgit.git import open_repo
from florgit.store import layout, runs

MANY = """
import sys
import florgit as flor
flor.set_echo(False)
worker = int(sys.argv[1])
for r in range(25):
    flor.log("worker", worker)
    flor.log("r", r)
    for step in flor.loop("step", range(20)):
        flor.log("loss", step * 0.5)
    flor.commit()
"""


def test_four_processes_times_25_runs_lose_nothing(repo):
    repo.write("many.py", MANY)
    head = repo.commit("add many")
    procs = [
        subprocess.Popen([sys.executable, "many.py", str(w)], cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for w in range(4)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    df = flor.dataframe("worker", "r")
    assert df.height == 100 and df["run_id"].n_unique() == 100
    assert df.group_by("worker").len().sort("worker")["len"].to_list() == [25] * 4
    assert sorted(df.filter(pl.col("worker") == 3)["r"].to_list()) == list(range(25))
    assert flor.dataframe("loss").height == 100 * 20
    note = repo.git("notes", "--ref", layout.NOTES_REF, "show", head)
    assert len({json.loads(ln)["run"] for ln in note.splitlines()}) == 100
    repo.git("fsck", "--strict", "--no-dangling")


KILLED = """
import time
import florgit as flor
flor.arg("lr", 0.5)
for epoch in flor.loop("epoch", range(1000)):
    flor.log("loss", float(epoch))
    if epoch == 49:
        time.sleep(2.0)  # the flusher spools at least once a second
        print("READY", flush=True)
        time.sleep(600)
"""


def test_sigkilled_run_is_recovered_as_killed_with_its_records(repo):
    repo.write("killed.py", KILLED)
    repo.commit("add killed")
    proc = subprocess.Popen([sys.executable, "killed.py"], cwd=repo.path, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    spool_root = layout.spool_root(open_repo().git_dir)
    assert len(os.listdir(spool_root)) == 1
    assert runs.list_runs(open_repo()) == []
    # The next florgit run in this repository recovers it.
    flor.log("next", 1)
    flor.commit()
    frame = flor.runs()
    assert sorted(frame["status"].to_list()) == ["killed", "ok"]
    df = flor.dataframe("lr", "loss")
    assert df["loss"].to_list() == [float(e) for e in range(50)]
    assert set(df["lr"].to_list()) == {0.5}
    assert os.listdir(spool_root) == []
    assert repo.git("for-each-ref", layout.PENDING_PREFIX) == ""
    # Recovering again changes nothing.
    from florgit.store.recovery import recover_abandoned

    assert recover_abandoned(open_repo()) == []


def test_live_run_is_not_recovered_by_another_process(repo):
    repo.write("killed.py", KILLED)
    proc = subprocess.Popen([sys.executable, "killed.py"], cwd=repo.path, stdout=subprocess.PIPE, text=True)
    try:
        while not proc.stdout.readline().startswith("READY"):
            pass
        from florgit.store.recovery import recover_abandoned

        assert recover_abandoned(open_repo()) == []
    finally:
        proc.kill()
        proc.wait()


RACE = """
import sys, time
from florgit.git import open_repo
repo = open_repo()
start = float(sys.argv[2])
while time.time() < start:
    pass
oid = repo.write_blob(sys.argv[1].encode())
repo.put_blobs_in_ref("refs/flor/race", {f"w/{sys.argv[1]}": oid}, "race")
"""


def test_concurrent_first_commits_on_a_new_ref_are_all_kept(repo):
    # libgit2 writes a ref's first commit unconditionally; florgit must not lose either.
    repo.write("race.py", RACE)
    for round_ in range(6):
        at = str(time.time() + 1.0)
        procs = [
            subprocess.Popen([sys.executable, "race.py", f"{round_}-{w}", at], cwd=repo.path)
            for w in range(4)
        ]
        assert [p.wait(timeout=60) for p in procs] == [0] * 4
        names = repo.git("ls-tree", "--name-only", "refs/flor/race:w").split()
        assert {f"{round_}-{w}" for w in range(4)} <= set(names)
        repo.git("update-ref", "-d", "refs/flor/race")


def test_recording_never_imports_pandas_and_a_run_flushed_at_exit_is_kept(repo):
    """pyarrow.array imports pandas when it is installed: in the flusher thread that is
    slow, and at interpreter exit the import fails and the run was lost."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("pandas") is None:
        pytest.skip("needs pandas installed (the test extra installs it)")
    repo.write("short.py", """
        import sys
        import florgit as flor
        flor.set_echo(False)
        flor.arg("lr", 0.1)
        for epoch in flor.loop("epoch", range(2)):
            flor.log("loss", 0.5)
            flor.log("note", "text")
        flor.commit()
        assert "pandas" not in sys.modules, "recording imported pandas"
        flor.log("after", 1)  # a second run, flushed only as the interpreter exits
    """)
    out = repo.run("short.py")
    assert "Traceback" not in out.stderr, out.stderr
    import florgit as flor

    runs = flor.runs()
    assert runs["status"].to_list() == ["ok", "ok"]
    assert runs["records"].to_list() == [5, 1] and runs["after"].to_list() == [None, 1]


def test_records_spooled_before_the_disk_failed_and_kept_after_are_all_stored(repo):
    """Spooled batches are not kept in memory; when spooling fails (disk full) partway
    through a flush, what the spool has and what is kept from then on make the run."""
    from florgit.api import functions

    for i in flor.loop("step", range(5)):
        flor.log("x", i)
    rec = functions._rec
    rec.flusher.flush()
    assert not any(rec.flusher.batches)  # spooled, not held

    def disk_full(batches):
        raise OSError(28, "No space left on device")

    rec.flusher._streams[3].append_all = disk_full  # records fail after loops, starts and ends are spooled
    for i in flor.loop("more", range(3)):
        flor.log("y", i)
    with pytest.warns(UserWarning, match="cannot spool records"):
        rec.flusher.flush()
    for i in flor.loop("last", range(2)):
        flor.log("z", i)
    flor.commit()
    frame = flor.scan().collect()
    assert frame["name"].to_list() == ["x"] * 5 + ["y"] * 3 + ["z"] * 2
    assert flor.dataframe("y")["more"].to_list() == [0, 1, 2]  # their iterations stored once
    assert flor.dataframe("z")["last"].to_list() == [0, 1]


def test_a_flusher_that_falls_behind_leaves_the_run_end_a_bounded_backlog(repo, monkeypatch):
    """With the flusher thread stalled (a tight loop can starve it of the GIL), log()
    converts inline once the bound is reached: the buffer never holds more, and every
    record is stored once, in order."""
    from florgit.api import functions

    from florgit.codec.packed import RECORD_SIZE

    monkeypatch.setattr(functions, "BUFFER_LIMIT", 100 * RECORD_SIZE)  # 100 records
    flor.log("first", 0)
    rec = functions._rec
    rec.flusher._stop.set()
    rec.flusher._thread.join()  # stalled: only log() itself flushes from here on
    most = 0
    for epoch in flor.loop("epoch", range(7)):
        for step in flor.loop("step", range(50)):
            flor.log("loss", epoch * 100 + step)
            most = max(most, len(rec.records))
    assert most <= functions.BUFFER_LIMIT
    assert rec.flusher.count >= 300  # converted and spooled by log() itself
    flor.commit()
    frame = flor.dataframe("loss")
    assert frame["loss"].to_list() == [e * 100 + s for e in range(7) for s in range(50)]
    assert frame["step"].to_list() == list(range(50)) * 7
