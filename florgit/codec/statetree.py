"""State trees (``state_dict()``s, RNG states) as JSON plus a list of arrays.

Checkpoints never use pickle: someone else's pushed refs are untrusted input. A state
tree is encoded as JSON in which every tensor or numpy array is replaced by a reference
into a separate list of arrays (stored as raw bytes). Only these shapes are accepted:
dicts, lists, tuples, bool/int/float/str/None, torch tensors, numpy arrays and scalars,
and ``torch.dtype``; anything else is refused with a clear error rather than pickled.
"""

from __future__ import annotations

import json
from typing import Any

from florgit.errors import CheckpointError

_TENSOR, _ARRAY, _TUPLE, _DICT, _DTYPE = "__tensor__", "__ndarray__", "__tuple__", "__dict__", "__dtype__"
_TAGS = (_TENSOR, _ARRAY, _TUPLE, _DICT, _DTYPE)


def encode(tree: Any, arrays: list) -> Any:
    """JSON-able form of ``tree``; tensors and arrays are appended to ``arrays``."""
    kind = type(tree)
    if tree is None or kind in (bool, int, float, str):
        return tree
    if kind is dict:
        if all(type(k) is str and k not in _TAGS for k in tree):
            return {k: encode(v, arrays) for k, v in tree.items()}
        return {_DICT: [[encode(k, arrays), encode(v, arrays)] for k, v in tree.items()]}
    if kind is list:
        return [encode(v, arrays) for v in tree]
    if kind is tuple:
        return {_TUPLE: [encode(v, arrays) for v in tree]}
    module = kind.__module__.split(".")[0]
    if module == "torch":
        import torch

        if isinstance(tree, torch.Tensor):
            arrays.append(tree)
            return {_TENSOR: len(arrays) - 1}
        if isinstance(tree, torch.dtype):
            return {_DTYPE: str(tree).removeprefix("torch.")}
    if module == "numpy":
        import numpy as np

        if isinstance(tree, np.ndarray):
            arrays.append(tree)
            return {_ARRAY: len(arrays) - 1}
        if isinstance(tree, np.generic):
            return tree.item()
    if isinstance(tree, dict):  # OrderedDict and friends
        return encode(dict(tree), arrays)
    raise CheckpointError(
        f"cannot checkpoint a {kind.__module__}.{kind.__name__} inside a state_dict; florgit stores "
        "tensors, arrays and plain Python values (never pickle). Leave it out of flor.checkpointing "
        "or convert it in state_dict()"
    )


def decode(data: Any, arrays: list) -> Any:
    """Inverse of :func:`encode`, with ``arrays`` holding the decoded tensors/arrays."""
    if isinstance(data, list):
        return [decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1:
        (tag, value), = data.items()
        if tag in (_TENSOR, _ARRAY):
            return arrays[_index(value, arrays)]
        if tag == _TUPLE:
            return tuple(decode(v, arrays) for v in value)
        if tag == _DICT:  # store.manifest checks these are [key, value] pairs
            return {_hashable(decode(k, arrays)): decode(v, arrays) for k, v in value}
        if tag == _DTYPE:
            return _dtype(value)
    return {k: decode(v, arrays) for k, v in data.items()}


def dumps(tree: Any) -> bytes:
    return json.dumps(tree, allow_nan=True, separators=(",", ":")).encode()


def _index(value: Any, arrays: list) -> int:
    if type(value) is not int or not 0 <= value < len(arrays):
        raise CheckpointError(f"checkpoint manifest refers to array {value!r}, which it does not have")
    return value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _dtype(name: Any):
    import torch

    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"checkpoint manifest names an unknown torch dtype {name!r}")
    return dtype
