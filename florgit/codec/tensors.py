"""Tensors and arrays as raw bytes, and the zstd chunks that hold them in git.

Every chunk is compressed with the same settings (level, single-threaded, no checksum,
no dictionary), so the same bytes always give the same git object id; tensors above
``CHUNK_BYTES`` are split so every blob stays well under GitHub's 100 MB limit.
"""

from __future__ import annotations

import hashlib
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


def from_raw(meta: ArrayMeta, data: bytes | bytearray) -> Any:
    if meta.kind == "torch":
        import torch

        dtype = getattr(torch, meta.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"unknown torch dtype {meta.dtype!r} in a checkpoint")
        if not data:
            return torch.empty(meta.shape, dtype=dtype)
        flat = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return flat.view(dtype).reshape(meta.shape)
    import numpy as np

    return np.frombuffer(bytes(data), dtype=np.dtype(meta.dtype)).reshape(meta.shape).copy()


def digest(data: memoryview | bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def chunks(data: memoryview) -> list[memoryview]:
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [data]


def compress(data: memoryview | bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=False, write_content_size=True).compress(data)


def decompress(data: bytes) -> bytes:
    import zstandard

    try:
        return zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as exc:
        raise CheckpointError(f"a checkpoint chunk is not valid zstd data ({exc})") from None
