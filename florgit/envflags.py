"""Reading florgit's on/off environment settings (``FLORGIT_ECHO=0``, ...) one way."""

from __future__ import annotations

import os

_OFF = ("0", "false", "no", "off")


def enabled(name: str, default: bool) -> bool:
    """Whether setting ``name`` is on: unset or empty gives ``default``; 0/false/no/off
    (any case) turn it off, anything else on."""
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value not in _OFF


QUERY_CACHE = "FLORGIT_QUERY_CACHE"  # =0: queries read every run from git and write no cache
C_HOT_PATH = "FLORGIT_C_HOT_PATH"  # =0: log() and range loops run their Python code, not florgit.api._hotpath
