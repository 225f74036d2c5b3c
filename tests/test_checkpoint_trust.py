"""Checkpoints read from git are untrusted: a teammate's push can hold any manifest and any
chunk. Hostile ones are refused with a CheckpointError naming the run and the tensor,
memory is bounded before anything is allocated, and the good checkpoints keep loading."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import florgit as flor
from florgit.codec import statetree, tensors
from florgit.errors import CheckpointError
from florgit.git import open_repo
from florgit.store import checkpoints as store
from florgit.store import layout
from florgit.store.manifest import Manifest, ManifestError

GIB = 1 << 30
BAD_BOUNDARY = 9  # hostile manifests are planted next to the real ones, at iteration 8


def _record(epochs: int = 2) -> tuple[str, torch.nn.Linear]:
    """A real run checkpointing a Linear(8, 4) at boundaries 0..epochs."""
    model = torch.nn.Linear(8, 4)
    flor.set_checkpoint_period(1)
    with flor.checkpointing(model=model):
        for _ in flor.loop("epoch", range(epochs)):
            with torch.no_grad():
                model.weight.add_(1.0)
    run = flor.current_run_id()
    flor.commit()
    return run, model


@pytest.fixture
def recorded(repo):
    run, model = _record()
    git = open_repo()
    info = flor.checkpoints(run)[-1]
    return run, model, git, json.loads(git.blob_at(layout.CHECKPOINTS_REF, info.path))


def _plant(git, run: str, manifest: dict | bytes, *, boundary: int = BAD_BOUNDARY, blobs: tuple[bytes, ...] = ()) -> int:
    """Write ``manifest`` (and chunk blobs) onto the checkpoints ref as a push would; returns
    the iteration it claims to be."""
    if isinstance(manifest, dict):
        manifest = json.dumps({**manifest, "boundary": boundary} if "boundary" in manifest else manifest).encode()
    loop_id = store.scan_checkpoints(git, run)[0][0].loop_id
    entries = {store.manifest_path(run, "epoch", loop_id, boundary): git.write_blob(manifest)}
    for blob in blobs:
        oid = git.write_blob(blob)
        entries[store.blob_path(oid)] = oid
    git.put_blobs_in_ref(layout.CHECKPOINTS_REF, entries, "a teammate's pushed checkpoint")
    return boundary - 1


def _weight(manifest: dict) -> dict:
    """The array entry of model.weight (the tree says which index it has)."""
    return manifest["arrays"][manifest["objects"]["model"]["weight"]["__tensor__"]]


def _assert_good_ones_still_load(run: str, model: torch.nn.Linear, *, listed_bad: bool = True) -> None:
    """The run's real checkpoints list and load; a manifest that failed to parse is left
    out of the list with a warning (one that parses but fails to load stays listed)."""
    if listed_bad:
        with pytest.warns(UserWarning, match="left out a checkpoint"):
            listed = flor.checkpoints(run)
        assert [c.iteration for c in listed] == [-1, 0, 1]
    else:
        assert [c.iteration for c in flor.checkpoints(run)] == [-1, 0, 1, BAD_BOUNDARY - 1]
    fresh = torch.nn.Linear(8, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flor.load_checkpoint(run, 1, model=fresh)
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)


# -- malformed manifests -------------------------------------------------------------------
def _set(path: str, value):
    """A mutation setting one field, addressed like 'arrays.0.shape' or 'weight.chunks'."""

    def mutate(m: dict) -> None:
        keys = path.split(".")
        node = _weight(m) if keys[0] == "weight" else m
        for key in keys[1 if keys[0] == "weight" else 0 : -1]:
            node = node[int(key) if isinstance(node, list) else key]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value

    return mutate


_DELETE = object()

HOSTILE = {
    "missing chunks": (_set("weight.chunks", _DELETE), r"array \d+ \(model\.weight\).*'chunks' is missing"),
    "missing arrays": (_set("arrays", _DELETE), "'arrays' is missing"),
    "arrays not a list": (_set("arrays", {"0": 1}), "'arrays' must be a list"),
    "nbytes as text": (_set("weight.nbytes", "128"), "'nbytes' must be an integer"),
    "negative size": (_set("weight.shape", [-4, 8]), "'shape' must hold non-negative integers"),
    "shape and nbytes disagree": (_set("weight.shape", [8, 8]), r"'nbytes' is 128, but shape \[8, 8\]"),
    "shape as text": (_set("weight.shape", "4x8"), "'shape' must be a list"),
    "numpy object dtype": (lambda m: _weight(m).update(kind="numpy", dtype="|O"), "'dtype' '\\|O' is not a numpy dtype"),
    "unknown torch dtype": (_set("weight.dtype", "qint8"), "'qint8' is not a torch dtype"),
    "kind": (_set("weight.kind", "pickle"), "'kind' must be one of torch, numpy"),
    "chunk id": (_set("weight.chunks.0.id", "../../etc/passwd"), "chunk 0.*'id' must be 40"),
    "chunk size negative": (_set("weight.chunks.0.size", -1), "chunk 0.*'size' must be between"),
    "chunk size too big": (_set("weight.chunks.0.size", 10**9), "chunk 0.*'size' must be between"),
    "chunk listed twice": (lambda m: _weight(m)["chunks"].append(_weight(m)["chunks"][0]), "lists 2 chunks, but 128 bytes take 1"),
    "no chunks": (_set("weight.chunks", []), "lists 0 chunks"),
    "sha1": (_set("weight.sha1", "x" * 40), "'sha1' must be 40"),
    "dangling reference": (_set("objects.model.weight", {"__tensor__": 99}), "model.weight refers to array 99"),
    "reference of the wrong kind": (_set("objects.model.weight", {"__ndarray__": 0}), "as numpy, but it is torch"),
    "grad that is no tensor": (_set("grads", {"model": {"weight": 3}}), r"grads\.model\.weight must be a tensor"),
    "dict of bad pairs": (_set("objects.model", {"__dict__": [[1]]}), r"list of \[key, value\] pairs"),
    "deep nesting": (_set("objects.model", functools.reduce(lambda a, _: [a], range(500), 0)), "nests deeper"),
    "objects not an object": (_set("objects", [1, 2]), "'objects' must be a JSON object"),
    "format": (_set("format", 2), "format 2"),
    "format true": (_set("format", True), "format True"),
    "phase": (_set("phase", "sideways"), "'phase' must be 'start'"),
    "someone else's run": (_set("run", "20200101-000000.000-deadbeef"), "describes run 20200101"),
    "loop name": (_set("loop", 7), "'loop' is not a valid name"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_manifest_is_refused_and_the_others_still_load(recorded, case):
    run, model, git, good = recorded
    mutate, why = HOSTILE[case]
    bad = copy.deepcopy(good)
    mutate(bad)
    iteration = _plant(git, run, bad)
    with pytest.raises(CheckpointError, match=why) as caught:
        flor.load_checkpoint(run, iteration, model=torch.nn.Linear(8, 4))
    assert f"run {run} epoch iteration {iteration}" in str(caught.value)
    assert "iterations that load: -1, 0, 1" in str(caught.value)
    assert len(store.checkpoint_problems(git, run)) == 1
    _assert_good_ones_still_load(run, model)


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\x00\xff not json", "not JSON"),
        (b"[1, 2, 3]", "expected a JSON object"),
        (pickle.dumps({"format": 1, "arrays": []}), "not JSON"),
        (b"{" * 100_000, "not JSON"),
        (b'{"format": 1}', "'arrays' is missing"),
    ],
    ids=["bytes", "list", "pickle", "deep", "no arrays"],
)
def test_manifest_that_is_not_a_manifest_is_refused(recorded, data, why):
    run, model, git, _good = recorded
    iteration = _plant(git, run, data)
    with pytest.raises(CheckpointError, match=why):
        flor.load_checkpoint(run, iteration, model=torch.nn.Linear(8, 4))
    _assert_good_ones_still_load(run, model)


def test_latest_is_never_quietly_an_older_one(recorded):
    run, _model, git, good = recorded
    _plant(git, run, {**good, "arrays": "nope"})
    with pytest.raises(CheckpointError, match=r"iteration 8.*refusing.*iterations that load: -1, 0, 1"):
        flor.load_checkpoint(run, model=torch.nn.Linear(8, 4))


def test_other_runs_are_untouched_by_a_bad_one(recorded):
    run, _model, git, good = recorded
    other, other_model = _record(3)
    _plant(git, run, {**good, "objects": "x"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # listing the other run warns about nothing
        assert [c.iteration for c in flor.checkpoints(other)] == [-1, 0, 1, 2]
        fresh = torch.nn.Linear(8, 4)
        flor.load_checkpoint(other, model=fresh)
    assert torch.equal(fresh.weight, other_model.weight)
    assert store.checkpoint_problems(git, other) == []


def test_names_that_are_not_florgits_are_ignored(recorded):
    run, _model, git, good = recorded
    junk = git.write_blob(b"junk")
    base = layout.run_path(run)
    entries = {f"{base}/{name}": junk for name in ("epoch-0/notes.txt", "epoch-0/0001.json", "epoch-0/00000003.json.bak",
                                                   "epoch-x/00000001.json", "weird/00000001.json", "README", "epoch-0/\u0663\u0663\u0663\u0663\u0663\u0663\u0663\u0663.json")}
    git.put_blobs_in_ref(layout.CHECKPOINTS_REF, entries, "junk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [c.iteration for c in flor.checkpoints(run)] == [-1, 0, 1]
    assert store.checkpoint_problems(git, run) == []


# -- hostile chunks --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _bomb(with_size: bool) -> bytes:
    """1 GiB of zeros in a few KB, with or without the size in the frame header."""
    zeros = bytes(16 << 20)
    c = zstandard.ZstdCompressor(level=1, write_content_size=with_size).compressobj(size=GIB if with_size else -1)
    out = b"".join(c.compress(zeros) for _ in range(GIB // len(zeros))) + c.flush()
    assert zstandard.frame_content_size(out) == (GIB if with_size else -1) and len(out) < 1 << 20
    return out


def _with_chunk(good: dict, blob: bytes, *, times: int = 1, shape: list[int] | None = None) -> dict:
    bad = copy.deepcopy(good)
    entry = _weight(bad)
    oid = _blob_id(blob)
    entry["chunks"] = [{"id": oid, "size": len(blob)}] * times
    if shape is not None:
        entry["shape"], entry["nbytes"] = shape, 4 * int(np.prod(shape, dtype=object))
    return bad


def _blob_id(blob: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()


LOAD_CAPPED = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    import torch
    import florgit as flor
    from florgit.errors import CheckpointError
    try:
        flor.load_checkpoint(sys.argv[1], int(sys.argv[2]), model=torch.nn.Linear(8, 4))
    except CheckpointError as exc:
        print(exc)
        sys.exit(3)
    print("loaded")
    """
)


def _load_under_2gib(repo, run: str, iteration: int) -> str:
    """Load in a process limited to 2 GiB of address space; the refusal must be clean."""
    script = repo.path / ".git" / "load_capped.py"
    script.write_text(LOAD_CAPPED)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("FLORGIT_MAX_CHECKPOINT_BYTES", None)
    proc = subprocess.run([sys.executable, str(script), run, str(iteration)], cwd=repo.path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    "case, why",
    [
        ("bomb that says its size", r"chunk [0-9a-f]{40} claims 1,073,741,824 bytes where 1,048,576 belong"),
        ("bomb that hides its size", r"chunk [0-9a-f]{40} expands beyond the 1,048,576 bytes"),
        ("one chunk listed 64 times", r"array \d+ \(model\.weight\) needs 3,221,225,472 bytes, more than the [0-9,]+ available"),
        ("200000 x 200000 float32", r"array \d+ \(model\.weight\) needs 160,000,000,000 bytes"),
        ("bomb behind an honest 1 GiB shape", r"expands beyond the 50,331,648 bytes"),
    ],
)
def test_bombs_are_refused_before_allocating(repo, recorded, case, why):
    run, model, git, good = recorded
    # a 1 MiB array: its chunk may take as many compressed bytes as the bomb has
    if case == "bomb that says its size":
        bad = _with_chunk(good, _bomb(True), shape=[1 << 18])
    elif case == "bomb that hides its size":
        bad = _with_chunk(good, _bomb(False), shape=[1 << 18])
    elif case == "one chunk listed 64 times":
        bad = _with_chunk(good, _bomb(False), times=64, shape=[64 * tensors.CHUNK_BYTES // 4])
    elif case == "200000 x 200000 float32":
        bad = _with_chunk(good, _bomb(False), times=-(-160_000_000_000 // tensors.CHUNK_BYTES), shape=[200_000, 200_000])
    else:  # 64 MiB fits the limit: it is allocated, then the first chunk overflows its share
        bad = _with_chunk(good, _bomb(False), times=2, shape=[(64 << 20) // 4])
    blob = _bomb(True) if case == "bomb that says its size" else _bomb(False)
    iteration = _plant(git, run, bad, blobs=(blob,))
    out = _load_under_2gib(repo, run, iteration)
    assert re.search(why, out), out
    assert f"run {run} epoch iteration {iteration}" in out
    _assert_good_ones_still_load(run, model, listed_bad=False)


def test_memory_override_refuses_a_repeated_chunk_in_process(recorded, monkeypatch):
    run, _model, git, good = recorded
    bad = _with_chunk(good, _bomb(False), times=16, shape=[16 * tensors.CHUNK_BYTES // 4])
    iteration = _plant(git, run, bad, blobs=(_bomb(False),))
    monkeypatch.setenv("FLORGIT_MAX_CHECKPOINT_BYTES", str(100 << 20))
    with pytest.raises(CheckpointError, match=r"needs 805,306,368 bytes, more than the 104,857,600 available"):
        flor.load_checkpoint(run, iteration, model=torch.nn.Linear(8, 4))


def test_chunk_that_is_not_zstd_or_lies_about_its_size(recorded):
    run, _model, git, good = recorded
    garbage = b"not zstd at all"
    iteration = _plant(git, run, _with_chunk(good, garbage), blobs=(garbage,))
    with pytest.raises(CheckpointError, match=r"\(model\.weight\): chunk [0-9a-f]{40} is not valid zstd data"):
        flor.load_checkpoint(run, iteration, model=torch.nn.Linear(8, 4))
    lying = _with_chunk(good, garbage)
    _weight(lying)["chunks"][0]["size"] = 3
    iteration = _plant(git, run, lying, boundary=BAD_BOUNDARY + 1)
    with pytest.raises(CheckpointError, match=r"is 15 bytes, the manifest says 3"):
        flor.load_checkpoint(run, iteration, model=torch.nn.Linear(8, 4))


def test_short_chunk_and_wrong_hash(recorded):
    run, _model, git, good = recorded
    short = tensors.compress(bytes(64))
    iteration = _plant(git, run, _with_chunk(good, short), blobs=(short,))
    with pytest.raises(CheckpointError, match="claims 64 bytes where 128 belong"):
        flor.load_checkpoint(run, iteration, model=torch.nn.Linear(8, 4))
    other = tensors.compress(bytes(128))  # the right size, other bytes
    iteration = _plant(git, run, _with_chunk(good, other), boundary=BAD_BOUNDARY + 1, blobs=(other,))
    with pytest.raises(CheckpointError, match=r"\(model\.weight\) does not match its recorded hash"):
        flor.load_checkpoint(run, iteration, model=torch.nn.Linear(8, 4))


def test_state_that_does_not_fit_the_object_is_a_checkpoint_error(recorded):
    run, _model, git, good = recorded
    bad = copy.deepcopy(good)
    bad["rng"] = {"python": {"__tuple__": [3, "x", None]}}
    iteration = _plant(git, run, bad)
    with pytest.raises(CheckpointError, match="random states cannot take the stored state"):
        flor.load_checkpoint(run, iteration, model=torch.nn.Linear(8, 4))
    with pytest.raises(CheckpointError, match="model cannot take the stored state"):
        flor.load_checkpoint(run, 1, model=torch.nn.Linear(3, 3))


# -- properties ------------------------------------------------------------------------------
TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8,
                torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64]  # fmt: skip
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@st.composite
def torch_tensors(draw):
    dtype, shape = draw(st.sampled_from(TORCH_DTYPES)), draw(shapes)
    n = int(np.prod(shape)) * dtype.itemsize
    raw = bytearray(draw(st.binary(min_size=n, max_size=n)))
    if dtype == torch.bool:
        raw = bytearray(b & 1 for b in raw)
    return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape) if n else torch.empty(shape, dtype=dtype)


numpy_arrays = hnp.arrays(
    dtype=st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(max_len=4), hnp.unicode_string_dtypes(max_len=3)),
    shape=shapes,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=st.lists(st.one_of(torch_tensors(), numpy_arrays), min_size=1, max_size=4))
def test_random_arrays_round_trip_through_store_parse_and_load(repo, monkeypatch, values):
    monkeypatch.setattr(tensors, "CHUNK_BYTES", 64)  # small arrays still span several chunks
    git = open_repo()
    run = layout.new_run_id()
    arrays: list = []
    objects = statetree.encode({"holder": {f"a{i}": v for i, v in enumerate(values)}}, arrays)
    store.commit_checkpoint(git, run, _manifest_like_the_writer(git, run, objects, arrays))
    (info,) = store.list_checkpoints(git, run)
    manifest = Manifest.parse(git.blob_at(layout.CHECKPOINTS_REF, info.path), "test", run)
    assert [a.path for a in manifest.arrays] == [f"holder.a{i}" for i in range(len(values))]
    loaded = statetree.decode(manifest.objects, store.load_arrays(git, manifest, "test"))["holder"]
    for i, want in enumerate(values):
        got = loaded[f"a{i}"]
        assert type(got) is type(want) and got.dtype == want.dtype and tuple(got.shape) == tuple(want.shape)
        assert bytes(tensors.raw_bytes(got)) == bytes(tensors.raw_bytes(want))


def _manifest_like_the_writer(git, run: str, objects, arrays: list) -> dict:
    """What api.checkpointer writes for these arrays (its dict format)."""
    index = store.ChunkIndex(git)
    entries = []
    for value in arrays:
        meta, data = tensors.describe(value), tensors.raw_bytes(value)
        raw_sha, chunks, _new = store.store_array(git, index, data)
        entries.append({"kind": meta.kind, "dtype": meta.dtype, "shape": meta.shape, "device": meta.device,
                        "nbytes": len(data), "sha1": raw_sha, "chunks": [{"id": o, "size": s} for o, s in chunks]})  # fmt: skip
    return {"format": store.FORMAT_VERSION, "run": run, "loop": "epoch", "loop_id": 0, "boundary": 1, "phase": "start",
            "time": 0.0, "types": {}, "objects": objects, "grads": {}, "rng": {}, "arrays": entries}  # fmt: skip


VALID = {
    "format": 1, "run": "20260101-000000.000-0000abcd", "loop": "epoch", "loop_id": 0, "boundary": 1,
    "phase": "after:step", "time": 1.5, "types": {"model": "torch.nn.Linear"},
    "objects": {"model": {"weight": {"__tensor__": 0}, "extra": {"__dict__": [[1, {"__tuple__": [2, None]}]]},
                          "dt": {"__dtype__": "float16"}}},
    "grads": {"model": {"weight": {"__tensor__": 1}}},
    "rng": {"numpy": {"__tuple__": ["MT19937", {"__ndarray__": 2}, 0, 0, 0.0]}},
    "arrays": [
        {"kind": "torch", "dtype": "float32", "shape": [2, 2], "device": "cpu", "nbytes": 16, "sha1": "0" * 40,
         "chunks": [{"id": "a" * 40, "size": 20}]},
        {"kind": "torch", "dtype": "float32", "shape": [2, 2], "device": "cuda:0", "nbytes": 16, "sha1": "1" * 40,
         "chunks": [{"id": "b" * 40, "size": 20}]},
        {"kind": "numpy", "dtype": "<u4", "shape": [3], "device": "cpu", "nbytes": 12, "sha1": "2" * 40,
         "chunks": [{"id": "c" * 40, "size": 20}]},
    ],
}  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _slots(node, out):
    """Every (container, key) in a JSON document, to mutate one."""
    items = enumerate(node) if isinstance(node, list) else node.items() if isinstance(node, dict) else ()
    for key, value in items:
        out.append((node, key))
        _slots(value, out)
    return out


def test_the_valid_example_parses():
    manifest = Manifest.parse(json.dumps(VALID).encode(), "test")
    assert [a.path for a in manifest.arrays] == ["model.weight", "grads.model.weight", "rng.numpy.1"]
    assert manifest.nbytes == 44 and manifest.stored == 60 and manifest.phase == "after:step"


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_mutation_parses_or_is_a_manifest_error(data):
    doc = copy.deepcopy(VALID)
    slots = _slots(doc, [])
    node, key = slots[data.draw(st.integers(0, len(slots) - 1))]
    if data.draw(st.booleans()) and isinstance(node, dict):
        del node[key]
    else:
        node[key] = data.draw(json_values)
    try:
        manifest = Manifest.parse(json.dumps(doc).encode(), "test")
    except ManifestError as exc:
        assert str(exc).startswith("test: the checkpoint manifest is not valid")
        return
    for a in manifest.arrays:  # what parse lets through is consistent
        assert a.kind in ("torch", "numpy") and a.nbytes >= 0 and len(a.chunks) >= 1
        assert sum(c.raw for c in a.chunks) == a.nbytes
