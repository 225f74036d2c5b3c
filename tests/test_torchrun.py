"""Multi-process training: all ranks of one torchrun launch record one run.

Real ``torchrun --nproc_per_node 2`` launches on CPU (gloo backend) of a DDP script: one
run with a ``rank`` column, rank 0's args, code and checkpoints, and a rank that dies
leaves the other's records intact. Rank coordination without torchrun (RANK/WORLD_SIZE set
by hand) and hostile rank folders are tested too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import polars as pl
import pytest

import florgit as flor
from florgit.errors import FlorgitWarning
from florgit.git import open_repo
from florgit.store import layout
from tests.conftest import git

DDP = """\
import os, time
import torch
import torch.distributed as dist
import florgit as flor

dist.init_process_group("gloo")
rank = dist.get_rank()
lr = flor.arg("lr", 0.05)
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.SGD(ddp.parameters(), lr=lr)
data = torch.Generator().manual_seed(rank)  # each rank its own shard
with flor.checkpointing(model=model, optimizer=opt):
    for epoch in flor.loop("epoch", range(2)):
        for step in flor.loop("step", range(3)):
            x = torch.randn(8, 4, generator=data)
            loss = ((ddp(x) - x.sum(1, keepdim=True)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("shard", rank)
        if epoch == 0 and os.environ.get("DIE_RANK") == str(rank):
            time.sleep(1.5)  # the flusher spools this rank's epoch, then the process dies
            os._exit(3)
flor.log("weight", float(model.weight.sum()))
dist.destroy_process_group()
"""


def _torchrun(repo, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*torchrun, "--nproc_per_node", "2", *extra, "train.py"]
    return subprocess.run(cmd, cwd=repo.path, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _shadow_files(repo) -> list[str]:
    return [p for p in repo.git("ls-tree", "-r", "--name-only", "flor.shadow").split() if "/code/" not in p]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_torchrun_ranks_record_one_run(repo):
    repo.write("train.py", DDP)
    repo.commit("ddp")
    proc = _torchrun(repo, "--standalone")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = flor.runs()
    assert runs.height == 1 and runs["status"][0] == "ok" and runs["world_size"][0] == 2
    run_id = runs["run_id"][0]
    assert runs["lr"][0] == 0.05
    files = _shadow_files(repo)
    rank1 = [f for f in files if "/ranks/1/" in f]
    assert sorted(f.rsplit("/", 1)[1] for f in rank1) == ["ends.arrows", "loops.arrows", "meta.json", "records.arrows", "starts.arrows"]
    assert not any("/ranks/1/code" in f for f in repo.git("ls-tree", "-r", "-d", "--name-only", "flor.shadow").split())

    # dataframe: rank 0 unless asked; rank= or where= show the others, with a rank column
    mine = flor.dataframe("loss")
    assert mine.height == 6 and "rank" not in mine.columns
    both = flor.dataframe("loss", "shard", rank="all")
    assert both.height == 12 and both["rank"].to_list() == [0] * 6 + [1] * 6
    assert both.filter(pl.col("rank") == 1)["shard"].to_list() == [1] * 6
    assert both.filter(pl.col("rank") == 0)["loss"].to_list() == mine["loss"].to_list()
    assert both.filter(pl.col("rank") == 1)["loss"].to_list() != mine["loss"].to_list()  # its own shard
    assert flor.dataframe("shard", where="rank = 1")["shard"].to_list() == [1, 1]
    assert flor.dataframe("loss", rank=1).height == 6
    run_level = flor.dataframe(rank="all")
    assert run_level["rank"].to_list() == [0, 1] and run_level["lr"].to_list() == [0.05, 0.05]  # rank 0's args
    # DDP keeps the replicas equal: both ranks end with the same weights
    assert run_level["weight"][0] == pytest.approx(run_level["weight"][1])
    long = flor.scan().filter(pl.col("name") == "loss").collect()
    assert sorted(long["rank"].unique().to_list()) == [0, 1]

    # checkpoints: rank 0's only; the code snapshot is rank 0's
    assert len(flor.checkpoints(run_id)) >= 2
    meta1 = repo.git("show", f"flor.shadow:{next(f for f in rank1 if f.endswith('meta.json'))}")
    assert '"rank": 1' in meta1 and '"checkpoints": 0' in meta1 and '"code_tree": null' in meta1
    assert "error" not in repo.git("fsck", "--strict")  # dangling objects of lost compare-and-swap tries are fine
    replay = repo.flor("replay", "loss")
    assert replay.returncode == 1 and "recorded by 2 processes" in replay.stdout + replay.stderr


def test_a_dying_rank_leaves_the_others_records(repo):
    repo.write("train.py", DDP)
    repo.commit("ddp")
    proc = _torchrun(repo, "--standalone", env={"DIE_RANK": "1", "FLORGIT_RANK_WAIT": "30"})
    assert proc.returncode != 0  # torchrun reports the dead rank and stops the other
    runs = flor.runs()  # both spools are recovered here
    # rank 0 fails (gloo loses its peer) or is stopped by torchrun: either way it is stored
    assert runs.height == 1 and runs["status"][0] in ("failed", "killed")
    rank1 = layout.run_path(runs["run_id"][0]) + "/ranks/1/meta.json"
    assert '"status": "killed"' in repo.git("show", f"flor.shadow:{rank1}")  # recovered from its spool
    frame = flor.dataframe("loss", "shard", rank="all")
    epoch0 = frame.filter(pl.col("epoch") == 0)
    assert epoch0.filter(pl.col("rank") == 0).height == 3 and epoch0.filter(pl.col("rank") == 1).height == 3
    assert epoch0.filter(pl.col("rank") == 1)["shard"].to_list() == [1, 1, 1]
    assert frame.filter(pl.col("rank") == 1)["epoch"].max() == 0  # nothing after its death
    assert "error" not in repo.git("fsck", "--strict")  # dangling objects of lost compare-and-swap tries are fine


SOLO = """\
import os, sys
import florgit as flor
flor.arg("lr", 0.1)
rank = int(os.environ["RANK"])
for e in flor.loop("epoch", range(2)):
    flor.log("loss", rank * 10 + e)
if len(sys.argv) > 1:
    flor.commit()
    for e in flor.loop("epoch", range(1)):
        flor.log("loss", rank * 100 + e)
"""


def _ranks(repo, n: int, *args: str, env: dict | None = None, ranks=None) -> list[subprocess.CompletedProcess]:
    """Start ranks of one launch by hand, as a launcher would (one parent: this process)."""
    base = {**os.environ, "WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999", **(env or {})}
    procs = [
        subprocess.Popen([sys.executable, "train.py", *args], cwd=repo.path, env={**base, "RANK": str(r)}, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        for r in (ranks if ranks is not None else range(n))
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def test_ranks_started_by_any_launcher_join_rank_0s_runs(repo):
    repo.write("train.py", SOLO)
    repo.commit("solo")
    procs = _ranks(repo, 3, "twice")
    assert all(p.returncode == 0 for p in procs)
    runs = flor.runs()
    assert runs.height == 2 and runs["world_size"].to_list() == [3, 3]  # two runs of the launch, each with its 3 ranks
    frame = flor.dataframe("loss", rank="all")
    first = frame.filter(pl.col("run_id") == runs["run_id"][0])
    assert first["rank"].to_list() == [0, 0, 1, 1, 2, 2] and first["loss"].to_list() == [0, 1, 10, 11, 20, 21]
    cli = repo.flor("dataframe", "loss", "--rank", "1,2", "--format", "csv")
    assert cli.returncode == 0, cli.stderr
    assert [ln.split(",")[3:] for ln in cli.stdout.splitlines()[1:3]] == [["1", "0", "10"], ["1", "1", "11"]]
    bad = repo.flor("dataframe", "loss", "--rank", "one")
    assert bad.returncode != 0 and "--rank" in bad.stderr
    second = frame.filter(pl.col("run_id") == runs["run_id"][1])
    assert second["loss"].to_list() == [0, 100, 200]


def test_a_rank_without_rank_0_records_its_own_run(repo):
    repo.write("train.py", SOLO)
    repo.commit("solo")
    procs = _ranks(repo, 2, env={"FLORGIT_RANK_WAIT": "0.3"}, ranks=[1])
    assert procs[0].returncode == 0 and "found no run of rank 0" in procs[0].stderr
    assert flor.runs()["world_size"].to_list() == [2]  # recorded as a run of its own, still saying its launch's size
    assert flor.dataframe("loss")["loss"].to_list() == [10, 11]


def test_other_ranks_stored_before_rank_0_are_not_shown_until_it_is(repo, tmp_path):
    """Rank 1 ends first: its folder is on the shadow branch without the run's meta.json;
    listings skip the run quietly, and rank 0's commit fills the folder in."""
    go = tmp_path / "go"
    wait = "import os, time\nwhile rank == 0 and not os.path.exists(os.environ['GO']):\n    time.sleep(0.02)\n"
    repo.write("train.py", SOLO + wait)
    repo.commit("solo")
    base = {**os.environ, "WORLD_SIZE": "2", "MASTER_PORT": "1", "GO": str(go)}
    rank0 = subprocess.Popen([sys.executable, "train.py"], cwd=repo.path, env={**base, "RANK": "0"})
    try:
        rank1 = subprocess.run([sys.executable, "train.py"], cwd=repo.path, env={**base, "RANK": "1"}, capture_output=True, text=True)
        assert rank1.returncode == 0, rank1.stderr
        assert any("/ranks/1/" in f for f in _shadow_files(repo))
        probe = subprocess.run([sys.executable, "-W", "error", "-c", "import florgit as flor; print(flor.runs().height)"],
                               cwd=repo.path, capture_output=True, text=True)  # fmt: skip
        assert probe.returncode == 0 and probe.stdout.strip() == "0", probe.stderr  # not listed yet, no warning
        verify = repo.flor("verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        go.write_text("")
    assert rank0.wait(timeout=120) == 0
    assert flor.dataframe("loss", rank="all")["loss"].to_list() == [0, 1, 10, 11]


def _put(repo, path: str, text: str) -> None:
    shadow = open_repo(str(repo.path), require_workdir=False)
    shadow.put_blobs_in_ref(layout.SHADOW_REF, {path: shadow.write_blob(text.encode())}, f"forged {path}")


def test_hostile_rank_folders_are_left_out_and_the_run_kept(repo):
    repo.write("train.py", SOLO)
    repo.commit("solo")
    _ranks(repo, 2)
    run_id = flor.runs()["run_id"][0]
    path = layout.run_path(run_id)
    rank1 = f"{path}/ranks/1"
    meta1 = repo.git("show", f"flor.shadow:{rank1}/meta.json")
    shadow = open_repo(str(repo.path), require_workdir=False)
    # a rank beyond the world size, a stray file, a rank's meta claiming another rank
    shadow.put_tree_in_ref(layout.SHADOW_REF, f"{path}/ranks/7", shadow.tree_at(layout.SHADOW_REF, rank1), "forged rank 7")
    _put(repo, f"{path}/ranks/notes.txt", "hello")
    _put(repo, f"{rank1}/meta.json", meta1.replace('"rank": 1', '"rank": 0'))
    with pytest.warns(FlorgitWarning) as caught:
        frame = flor.dataframe("loss", rank="all")
    text = " ".join(str(w.message) for w in caught)
    assert "ranks/1 of run" in text and "ranks/7 of run" in text and "ranks/notes.txt of run" in text
    assert frame["rank"].to_list() == [0, 0] and frame["loss"].to_list() == [0, 1]  # rank 0 kept
    verify = repo.flor("verify")
    out = verify.stdout + verify.stderr
    assert verify.returncode != 0 and "ranks/7 of run" in out and "ranks/1 of run" in out, out
    # a run's own meta.json claiming to be a rank is refused like any bad meta
    top = repo.git("show", f"flor.shadow:{path}/meta.json")
    _put(repo, f"{path}/meta.json", top.replace('"rank": 0', '"rank": 1'))
    with pytest.warns(FlorgitWarning, match=f"run {run_id} is left out"):
        assert flor.runs().height == 0
    git(repo.path, "fsck", "--strict")
