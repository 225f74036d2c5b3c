"""Tensors and arrays as raw bytes, and the zstd chunks that hold them in git.

Every chunk is compressed with the same settings (level, single-threaded, no checksum,
no dictionary), so the same bytes always give the same git object id; tensors above
``CHUNK_BYTES`` are split so every blob stays well under GitHub's 100 MB limit.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from florgit.errors import CheckpointError

CHUNK_BYTES = 48 * 1024 * 1024
ZSTD_LEVEL = -1  # fast: float weights barely compress at any level, savings come from
# content addressing; zeros, masks and index tensors still shrink 2-30000x at this level


@dataclass
class ArrayMeta:
    kind: str  # "torch" or "numpy"
    dtype: str  # "float32" (torch) or numpy's dtype.str ("<u4")
    shape: list[int]
    device: str  # where it lived when captured ("cpu", "cuda:0")


def snapshot(value: Any) -> Any:
    """A CPU copy the training thread can keep mutating the original after."""
    kind = type(value).__module__.split(".")[0]
    if kind == "torch":
        return value.detach().to("cpu", copy=True)
    return value.copy()


def describe(value: Any, device: str | None = None) -> ArrayMeta:
    if type(value).__module__.split(".")[0] == "torch":
        return ArrayMeta("torch", str(value.dtype).removeprefix("torch."), list(value.shape), device or str(value.device))
    return ArrayMeta("numpy", value.dtype.str, list(value.shape), "cpu")


def raw_bytes(value: Any) -> memoryview:
    """The array's bytes in C order, without a copy where possible."""
    if type(value).__module__.split(".")[0] == "torch":
        flat = value.detach().reshape(-1).contiguous()
        if flat.numel() == 0:
            return memoryview(b"")
        import torch

        return memoryview(flat.view(torch.uint8).numpy()).cast("B")
    import numpy as np

    return memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8)).cast("B")


def from_raw(meta: Any, data: bytearray) -> Any:
    """The array ``meta`` (kind, dtype, shape) describes, sharing ``data``'s memory: the
    loader decompresses into a buffer of exactly the right size, so no copy is made."""
    if meta.kind == "torch":
        import torch

        dtype = getattr(torch, meta.dtype, None)
        if not isinstance(dtype, torch.dtype) or dtype.itemsize * math.prod(meta.shape) != len(data):
            raise CheckpointError(f"this torch has no dtype {meta.dtype!r} of the size the checkpoint holds")
        if not data:
            return torch.empty(meta.shape, dtype=dtype)
        return torch.frombuffer(data, dtype=torch.uint8).view(dtype).reshape(meta.shape)
    import numpy as np

    dtype = np.dtype(meta.dtype)
    if dtype.hasobject or dtype.itemsize * math.prod(meta.shape) != len(data):  # parse refuses these already
        raise CheckpointError(f"numpy dtype {meta.dtype!r} cannot be read from raw bytes")
    return np.frombuffer(data, dtype=dtype).reshape(meta.shape)


def digest(data: memoryview | bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def chunks(data: memoryview) -> list[memoryview]:
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [data]


def compress(data: memoryview | bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=False, write_content_size=True).compress(data)


def decompressor() -> Any:
    """One per load: it keeps its context (and window buffer) across chunks. libzstd's
    default window limit (128 MiB) refuses frames that ask for more memory than that."""
    import zstandard

    return zstandard.ZstdDecompressor()


def decompress_into(dctx: Any, frame: bytes, out: memoryview) -> None:
    """Decompress one chunk into exactly ``out``, never writing or allocating more.

    A frame that carries its size would make ``decompress()`` allocate whatever it
    claims, so the claim is checked first; a frame without one is streamed and stopped
    at ``len(out)``."""
    import zstandard

    try:
        claimed = zstandard.frame_content_size(frame)
        if claimed not in (-1, len(out)):
            raise CheckpointError(f"claims {claimed:,} bytes where {len(out):,} belong")
        reader = dctx.stream_reader(frame, read_across_frames=False)
        filled = 0
        while filled < len(out):
            got = reader.readinto(out[filled:])
            if got == 0:
                raise CheckpointError(f"holds {filled:,} bytes where {len(out):,} belong")
            filled += got
        if reader.read(1):
            raise CheckpointError(f"expands beyond the {len(out):,} bytes that belong")
    except zstandard.ZstdError as exc:
        raise CheckpointError(f"is not valid zstd data ({exc})") from None


def available_memory() -> int:
    """Bytes a checkpoint may take: validation.memory_budget, with
    ``FLORGIT_MAX_CHECKPOINT_BYTES`` in place of MemAvailable when set (e.g. with swap)."""
    from florgit.validation import memory_budget

    return memory_budget(override_env="FLORGIT_MAX_CHECKPOINT_BYTES")
