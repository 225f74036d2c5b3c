"""Logged values: which Python values florgit keeps, and their type tags.

florgit stores every value with a small integer *kind* so that a value comes back with
the type it was logged with (FlorDB returned strings). The hot path only checks
``type(value) in SCALAR_TYPES``; everything else goes through :func:`to_scalar`.
"""

from __future__ import annotations

import math

from florgit.errors import InvalidNameError, UnsupportedValueError
from florgit.validation import name_problem

NULL, BOOL, INT, FLOAT, STR = 0, 1, 2, 3, 4
KIND_NAMES = {NULL: "null", BOOL: "bool", INT: "int", FLOAT: "float", STR: "str"}
KIND_OF_TYPE: dict[type, int] = {type(None): NULL, bool: BOOL, int: INT, float: FLOAT, str: STR}
SCALAR_TYPES = frozenset(KIND_OF_TYPE)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Columns florgit itself puts in every dataframe; a logged name must not shadow them.
RESERVED_NAMES = frozenset({"run_id", "start_time", "script"})


def to_scalar(value: object, name: str) -> object:
    """Convert numpy scalars and 0-d torch tensors to Python scalars, or raise."""
    if type(value) in SCALAR_TYPES:
        return value
    item = getattr(value, "item", None)
    if item is not None and _is_zero_dim(value):
        converted = item()
        if type(converted) in SCALAR_TYPES:
            return converted
    if isinstance(value, (bool, int, float, str)):  # subclasses such as IntEnum
        for base in (bool, int, float, str):
            if isinstance(value, base):
                return base(value)
    raise UnsupportedValueError(name, value)


def split(value: object) -> tuple[int, int | None, float | None, str | None]:
    """A stored scalar as its columns: the kind tag, then ``i``, ``f``, ``s`` with the
    value in the one column of its kind (bools in ``i``)."""
    kind = KIND_OF_TYPE[type(value)]
    return (
        kind,
        int(value) if kind in (INT, BOOL) else None,  # type: ignore[call-overload]
        value if kind == FLOAT else None,  # type: ignore[return-value]
        value if kind == STR else None,  # type: ignore[return-value]
    )


def _is_zero_dim(value: object) -> bool:
    ndim = getattr(value, "ndim", None)
    if ndim is None:
        dim = getattr(value, "dim", None)
        ndim = dim() if callable(dim) else None
    return ndim == 0


def check_name(name: object) -> str:
    """Validate a logged name once; the hot path caches names it has seen."""
    why = name_problem(name)
    if why is not None:
        raise InvalidNameError(name, why)
    if name in RESERVED_NAMES:
        raise InvalidNameError(name, f"{name!r} is a column florgit adds to every dataframe")
    return name  # type: ignore[return-value]


def fits_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def same_value(a: object, b: object) -> bool:
    """Equality that treats NaN as equal to NaN and keeps 1 and True apart."""
    if type(a) is not type(b):
        return False
    if type(a) is float and math.isnan(a) and math.isnan(b):  # type: ignore[arg-type]
        return True
    return a == b
