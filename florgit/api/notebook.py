"""Are we running cells in IPython (a Jupyter kernel, VS Code, a console), and which notebook?

IPython is never imported here: if it is not already loaded, this is no notebook, and
``import florgit`` stays fast.
"""

from __future__ import annotations

import os
import sys

UNKNOWN = "<notebook>"  # the recorded script when the kernel does not say which notebook
SESSION_ENV = "JPY_SESSION_NAME"  # jupyter_server >= 2: the notebook's path


def shell() -> object | None:
    """The running IPython shell, or None (also when IPython is merely imported)."""
    get = getattr(sys.modules.get("IPython"), "get_ipython", None)
    try:
        return get() if callable(get) else None
    except Exception:  # a half-initialised or foreign IPython is not a notebook
        return None


def running_cells() -> bool:
    """True in a notebook or console: an IPython shell whose ``__main__`` is no file.
    ``%run train.py`` and ``ipython train.py`` run a file and stay scripts."""
    return shell() is not None and not getattr(sys.modules.get("__main__"), "__file__", None)


def notebook_path() -> str | None:
    """The notebook's absolute path where the kernel tells it, else None."""
    user_ns = getattr(shell(), "user_ns", None)
    names: dict = user_ns if isinstance(user_ns, dict) else {}
    # VS Code's own variable first: its session names may not be the file's path.
    for told in (names.get("__vsc_ipynb_file__"), os.environ.get(SESSION_ENV), names.get("__session__")):
        found = _existing_notebook(told)
        if found:
            return found
    return None


def _existing_notebook(told: object) -> str | None:
    """``told`` as the path of a notebook that exists. A relative session name is
    relative to the server's root, and the kernel starts in the notebook's folder: so
    it is tried against the working folder, then by its file name alone."""
    if not isinstance(told, str) or not told.endswith(".ipynb"):
        return None
    tries = (told,) if os.path.isabs(told) else (told, os.path.basename(told))
    for candidate in tries:
        path = os.path.abspath(candidate)
        if os.path.isfile(path):
            return path
    return None
