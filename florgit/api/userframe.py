"""Reading and writing the variables of the user's frame that runs a checkpointed loop.

The recorder reads the loop-carried variables (florgit.hindsight.carried) from that
frame at each checkpoint; replay writes them back after restoring a checkpoint. A
module-level loop's variables are the module's globals; a function's locals are written
through ``frame.f_locals`` (Python 3.13+ writes through; before that
``PyFrame_LocalsToFast`` copies the dict back into the frame).
"""

from __future__ import annotations

import os
import sys
from types import FrameType

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def caller_frame() -> FrameType | None:
    """The nearest frame outside florgit: the user code that called into it."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    return frame


def read_variables(frame: FrameType, names: list[str]) -> dict[str, object]:
    scope = frame.f_globals if frame.f_code.co_name == "<module>" else frame.f_locals
    return {name: scope[name] for name in names if name in scope}


def write_variables(frame: FrameType, values: dict[str, object]) -> None:
    if not values:
        return
    if frame.f_code.co_name == "<module>":
        frame.f_globals.update(values)
        return
    local = frame.f_locals
    for name, value in values.items():
        local[name] = value
    if sys.version_info < (3, 13):
        import ctypes

        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
