"""Checkpoints: exact restore, content addressing, dedup, integrity, and never pickle."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

import florgit as flor
from florgit.codec import tensors
from florgit.errors import CheckpointError
from florgit.git import open_repo
from florgit.store import checkpoints as store
from florgit.store import layout

TRAIN = """
import random, sys
import numpy as np
import torch
import florgit as flor

flor.set_checkpoint_period(1)
torch.manual_seed(0); random.seed(0); np.random.seed(0)
x, y = torch.randn(64, 6), torch.randn(64, 1)
model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(12, 1))
opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
with flor.checkpointing(model=model, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(int(sys.argv[1]) if len(sys.argv) > 1 else 5)):
        idx = torch.randperm(64)[:32]
        opt.zero_grad()
        loss = ((model(x[idx]) - y[idx]) ** 2).mean() + 0.001 * random.random() + 0.001 * float(np.random.rand())
        loss.backward()
        opt.step()
        sched.step()
        flor.log("loss", loss.item())
"""


def _model():
    torch.manual_seed(123)  # different init: everything must come from the checkpoint
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(12, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, opt, torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)


def _continue(model, opt, sched, epochs):
    import random

    import numpy as np

    x, y = _data()
    losses = []
    for _ in range(epochs):
        idx = torch.randperm(64)[:32]
        opt.zero_grad()
        loss = ((model(x[idx]) - y[idx]) ** 2).mean() + 0.001 * random.random() + 0.001 * float(np.random.rand())
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def _data():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    torch.set_rng_state(state)
    return x, y


def _checkpoint_once(model) -> str:
    """One run that checkpoints ``model`` around a one-iteration loop; returns its id."""
    flor.set_checkpoint_period(1)
    with flor.checkpointing(model=model):
        for _ in flor.loop("epoch", range(1)):
            pass
    run = flor.current_run_id()
    flor.commit()
    return run


def _only_run():
    return flor.runs()["run_id"].to_list()[-1]


def test_restored_run_continues_exactly_like_the_uninterrupted_one(repo):
    repo.write("train.py", TRAIN)
    repo.run("train.py")
    recorded = flor.dataframe("loss")["loss"].to_list()
    run = _only_run()
    assert [c.iteration for c in flor.checkpoints(run)] == [-1, 0, 1, 2, 3, 4]
    for k in (-1, 1, 3):
        model, opt, sched = _model()
        info = flor.load_checkpoint(run, k, model=model, optimizer=opt, sched=sched)
        assert info.iteration == k
        if k >= 0:
            assert all(p.grad is not None for p in model.parameters())  # .grad came back
        assert _continue(model, opt, sched, 4 - k) == recorded[k + 1 :]  # bit-exact


def test_grad_and_optimizer_state_are_bit_exact(repo):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    flor.set_checkpoint_period(1)
    with flor.checkpointing(model=model, optimizer=opt):
        for _ in flor.loop("epoch", range(2)):
            opt.zero_grad()
            model(torch.randn(5, 4)).pow(2).sum().backward()
            opt.step()
    run = flor.current_run_id()
    flor.commit()
    fresh = torch.nn.Linear(4, 3)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    flor.load_checkpoint(run, model=fresh, optimizer=fresh_opt)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b) and torch.equal(a.grad, b.grad)
    mom = [s["momentum_buffer"] for s in opt.state_dict()["state"].values()]
    fresh_mom = [s["momentum_buffer"] for s in fresh_opt.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(mom, fresh_mom))


def test_same_bytes_give_the_same_object_ids(repo, tmp_path):
    from tests.conftest import make_repo

    data = tensors.raw_bytes(torch.arange(10_000, dtype=torch.float32))
    ids = []
    for path in (repo.path, tmp_path / "other"):
        if path != repo.path:
            make_repo(path)
        git = open_repo(str(path))
        ids.append(store.store_array(git, store.ChunkIndex(git), data)[1])
    assert ids[0] == ids[1]


def test_large_tensor_is_chunked_and_restores(repo, monkeypatch):
    monkeypatch.setattr(tensors, "CHUNK_BYTES", 4096)
    big = torch.nn.Linear(64, 64)  # 16 KiB of weights -> 4 chunks
    flor.set_checkpoint_period(1)
    with flor.checkpointing(model=big):
        for _ in flor.loop("epoch", range(1)):
            pass
    run = flor.current_run_id()
    flor.commit()
    manifest = store.read_manifest(open_repo(), flor.checkpoints(run)[-1])
    weight = next(a for a in manifest.arrays if a.shape == (64, 64))
    assert weight.path == "model.weight"
    assert len(weight.chunks) == 4
    assert all(c.size < 4096 + 64 and c.raw == 4096 for c in weight.chunks)
    fresh = torch.nn.Linear(64, 64)
    flor.load_checkpoint(run, model=fresh)
    assert torch.equal(fresh.weight, big.weight)


def _unique_chunks(run, part="objects"):
    """Chunk ids of the arrays under one part of each manifest ("objects" or "grads")."""
    git = open_repo()
    chunks: set[str] = set()
    for info in flor.checkpoints(run):
        manifest = store.read_manifest(git, info)
        refs = _tensor_refs(getattr(manifest, part))
        chunks |= {c.id for i in refs for c in manifest.arrays[i].chunks}
    return chunks


def _tensor_refs(tree):
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return [tree["__tensor__"]]
        return [r for v in tree.values() for r in _tensor_refs(v)]
    if isinstance(tree, list):
        return [r for v in tree for r in _tensor_refs(v)]
    return []


def test_frozen_layers_and_identical_runs_are_stored_once(repo):
    flor.set_checkpoint_period(1)

    def train():
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(8)])
        for layer in list(model)[:4]:
            layer.requires_grad_(False)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        with flor.checkpointing(model=model):
            for _ in flor.loop("epoch", range(4)):  # 5 checkpoints: before, then after each epoch
                opt.zero_grad()
                model(torch.randn(8, 64)).sum().backward()
                opt.step()
        run = flor.current_run_id()
        flor.commit()
        return run, sum(p.numel() * 4 for p in model.parameters())

    first, one_copy = train()
    git = open_repo()
    assert len(flor.checkpoints(first)) == 5
    params = _unique_chunks(first, "objects")
    assert sum(git.object_size(c) for c in params) <= 0.6 * 5 * one_copy  # the frozen half is stored once
    frozen = [set(c.chunks) for c in flor.checkpoints(first)]
    assert len(set.intersection(*frozen)) >= 8  # 4 frozen weights + 4 biases in every checkpoint
    second, _ = train()  # a second identical run adds no new checkpoint bytes
    before = _unique_chunks(first, "objects") | _unique_chunks(first, "grads")
    after = _unique_chunks(second, "objects") | _unique_chunks(second, "grads")
    assert after <= before


def test_corrupted_or_missing_chunk_is_a_clear_error(repo):
    model = torch.nn.Linear(32, 32)
    run = _checkpoint_once(model)
    info = flor.checkpoints(run)[-1]
    manifest = store.read_manifest(open_repo(), info)
    chunk = next(a for a in manifest.arrays if a.shape == (32, 32)).chunks[0].id
    path = repo.path / ".git" / "objects" / chunk[:2] / chunk[2:]
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"run {run} epoch iteration 0"):
        flor.load_checkpoint(run, model=torch.nn.Linear(32, 32))
    path.unlink()
    with pytest.raises(CheckpointError, match="missing or corrupted"):
        flor.load_checkpoint(run, model=torch.nn.Linear(32, 32))


def test_checkpoints_survive_gc_and_fsck_is_clean(repo):
    repo.write("train.py", TRAIN)
    repo.run("train.py", "3")
    run = _only_run()
    repo.git("gc", "--prune=now", "--quiet")
    repo.git("fsck", "--strict", "--no-dangling")
    model, opt, sched = _model()
    flor.load_checkpoint(run, 2, model=model, optimizer=opt, sched=sched)
    # sharing logs does not need checkpoint bytes: they live on their own ref
    assert layout.CHECKPOINTS_REF in repo.git("for-each-ref", "--format=%(refname)")
    shadow_objects = repo.git("rev-list", "--objects", layout.SHADOW_REF)
    chunk = flor.checkpoints(run)[-1].chunks[0]
    assert chunk not in shadow_objects


def test_loading_never_unpickles(repo, monkeypatch):
    model = torch.nn.Linear(3, 3)
    run = _checkpoint_once(model)

    def refuse(*_a, **_k):
        raise AssertionError("pickle must never be used to load checkpoints")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    flor.load_checkpoint(run, model=torch.nn.Linear(3, 3))


class _Evil:
    def __reduce__(self):
        return (open, ("PWNED", "w"))


def test_crafted_malicious_manifest_is_refused(repo):
    model = torch.nn.Linear(3, 3)
    run = _checkpoint_once(model)
    info = flor.checkpoints(run)[-1]
    git = open_repo()
    payload = git.write_blob(pickle.dumps({"format": 1, "arrays": [], "objects": _Evil()}))
    git.put_blobs_in_ref(layout.CHECKPOINTS_REF, {info.path: payload}, "a teammate's pushed checkpoint")
    with pytest.raises(CheckpointError, match="refusing"):
        flor.load_checkpoint(run, model=torch.nn.Linear(3, 3))
    assert not (repo.path / "PWNED").exists()


def test_concurrent_runs_checkpoint_at_once(repo):
    repo.write("train.py", TRAIN)
    repo.commit("train")
    procs = [subprocess.Popen([sys.executable, "train.py", "4"], cwd=repo.path, stdout=subprocess.DEVNULL) for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    runs = flor.runs()["run_id"].to_list()
    assert len(runs) == 3
    assert all(len(flor.checkpoints(r)) == 5 for r in runs)
    assert flor.runs()["run_id"].n_unique() == 3
    repo.git("fsck", "--strict", "--no-dangling")


def test_adaptive_rule_skips_checkpoints_of_short_iterations(repo):
    model = torch.nn.Linear(256, 256)
    flor.set_checkpoint_period(None)
    with flor.checkpointing(model=model):
        for _ in flor.loop("epoch", range(50)):
            pass  # iterations far cheaper than a checkpoint
    run = flor.current_run_id()
    flor.commit()
    taken = flor.checkpoints(run)
    assert 1 <= len(taken) < 10  # the state before the loop, then only what 1/15 allows
    assert flor.runs()["records"].to_list() == [0]


def test_period_forces_every_nth(repo):
    model = torch.nn.Linear(2, 2)
    flor.set_checkpoint_period(3)
    with flor.checkpointing(model=model):
        for _ in flor.loop("epoch", range(7)):
            pass
    run = flor.current_run_id()
    flor.commit()
    flor.set_checkpoint_period(None)
    assert [c.boundary for c in flor.checkpoints(run)] == [0, 3, 6, 7]  # and always the end state


def test_cli_lists_checkpoints(repo, capsys):
    from florgit.cli.main import main

    repo.write("train.py", TRAIN)
    repo.run("train.py", "2")
    assert main(["checkpoints", "--json"]) == 0
    import json

    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [r["iteration"] for r in rows] == [-1, 0, 1]
    assert all(r["stored"] > 0 and r["new_bytes"] <= r["stored"] for r in rows)
