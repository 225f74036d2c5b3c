"""Recording from notebooks: real Jupyter kernels started in the test repository, and
the kernel's hints about which notebook it runs, faked in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import florgit as flor
from florgit.git import open_repo
from florgit.store import runs
from florgit.store.meta import RunMeta
from tests.conftest import Repo
from tests.forge import rewrite_meta

STARTUP_S = 60  # seconds a kernel may take to start
CELL_S = 60  # seconds one cell may take
TRAIN_CELL = """
    lr = flor.arg("lr", 0.1)
    for epoch in flor.loop("epoch", range(2)):
        flor.log("loss", {loss} / (epoch + 1))
    flor.commit()
"""


class Kernel:
    """A started kernel that runs cells and hands back what they print."""

    def __init__(self, client) -> None:
        self.client = client

    def run(self, code: str) -> str:
        """Run one cell; its printed output, or AssertionError with its traceback."""
        out: list[str] = []

        def collect(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(textwrap.dedent(code), timeout=CELL_S, output_hook=collect)
        if reply["content"]["status"] != "ok":
            raise AssertionError(f"cell failed:\n{code}\n{''.join(out)}")
        return "".join(out)

    def value(self, expression: str) -> object:
        """The kernel's value of ``expression``, through JSON."""
        printed = self.run(f"import json as _json\nprint(_json.dumps({expression}))")
        return json.loads(printed.splitlines()[-1])


@contextmanager
def kernel(repo: Repo) -> Iterator[Kernel]:
    """A Python kernel started in the repository with this test's environment."""
    manager = pytest.importorskip("jupyter_client.manager")
    pytest.importorskip("ipykernel")
    km, kc = manager.start_new_kernel(cwd=str(repo.path), env=dict(os.environ), startup_timeout=STARTUP_S)
    try:
        yield Kernel(kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel()  # as Jupyter does: the kernel exits, running its exit handlers


def write_notebook(repo: Repo, name: str, cells: list[str]) -> Path:
    """A real nbformat-4 notebook holding these code cells."""
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "execution_count": None, "outputs": [],
             "source": textwrap.dedent(cell).strip()}
            for i, cell in enumerate(cells)
        ],  # fmt: skip
    }
    return repo.write(name, json.dumps(notebook, indent=1) + "\n")


def stored_runs(repo: Repo) -> list[tuple[runs.StoredRun, RunMeta]]:
    git = open_repo(str(repo.path))
    return [(stored, runs.read_meta(git, stored)) for stored in runs.list_runs(git)]


# -- real kernels --------------------------------------------------------------------------


def test_each_commit_in_a_cell_ends_a_run_and_the_kernel_argv_is_never_parsed(repo, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)  # the kernel names no notebook
    cells = ["import florgit as flor", TRAIN_CELL.format(loss=1.0), TRAIN_CELL.format(loss=4.0)]
    write_notebook(repo, "analysis.ipynb", cells)
    with kernel(repo) as k:
        # A --kwargs section in the kernel's own argv must not be read as the user's.
        k.run('import sys\nsys.argv += ["--kwargs", "lr=5"]\nkernel_argv = list(sys.argv)')
        for cell in cells:
            k.run(cell)
        assert k.value("sys.argv == kernel_argv and '-f' in sys.argv") is True
        assert k.value("flor.current_run_id()") is None  # commit() ended the second run too
        k.run('flor.log("left_open", 1)')  # committed when the kernel shuts down

    frame = flor.runs()
    assert frame.height == 3 and frame["run_id"].n_unique() == 3
    assert frame["lr"].to_list() == [0.1, 0.1, None]  # the default, not the kernel argv's 5
    assert frame["loss"].to_list() == [0.5, 2.0, None]
    assert frame["left_open"].to_list() == [None, None, 1] and frame["status"].to_list() == ["ok"] * 3
    assert frame["script"].to_list() == ["<notebook>"] * 3
    assert all("-f" in meta.argv and meta.kwargs == {} for _, meta in stored_runs(repo))


def test_the_session_name_names_the_notebook_and_the_snapshot_holds_it(repo, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "analysis.ipynb")  # jupyter_server: relative to its root
    cells = ["import florgit as flor", TRAIN_CELL.format(loss=1.0)]
    notebook = write_notebook(repo, "analysis.ipynb", cells)  # untracked, as a fresh notebook is
    with kernel(repo) as k:
        for cell in cells:
            k.run(cell)

    [(stored, meta)] = stored_runs(repo)
    assert meta.script == "analysis.ipynb" and meta.module is None
    assert flor.runs()["script"].to_list() == ["analysis.ipynb"]
    snapshot = repo.git("show", f"{stored.tree}:code/analysis.ipynb")
    assert snapshot == notebook.read_text()
    assert "analysis.ipynb" in repo.git("status", "--porcelain")  # still untracked: nothing touched


def test_replay_skips_a_notebook_run_and_says_how_to_replay_it(repo, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "analysis.ipynb")
    script = 'import florgit as flor\nfor epoch in flor.loop("epoch", range(2)):\n    flor.log("loss", 1.0)\n'
    repo.write("train.py", script)
    repo.commit("train")
    repo.run("train.py")
    cells = ["import florgit as flor", TRAIN_CELL.format(loss=1.0)]
    write_notebook(repo, "analysis.ipynb", cells)
    with kernel(repo) as k:
        for cell in cells:
            k.run(cell)
    repo.write("train.py", script + '    flor.log("newname", epoch)\n')

    plan = flor.replay("newname", dry_run=True)
    by_script = {item.script or "": item for item in plan.runs}
    assert by_script["train.py"].skip is None  # the script run is planned as usual
    skipped = next(item for item in plan.runs if item.script != "train.py")
    assert skipped.skip is not None and skipped.skip.startswith("recorded in a notebook (analysis.ipynb): ")
    assert "`jupyter nbconvert --to script analysis.ipynb`" in skipped.skip
    assert "record runs from the script" in skipped.skip


# -- without a kernel ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("<notebook>", "recorded in a notebook: replay runs scripts; export it with `jupyter nbconvert"),
        ("<interactive>", "recorded at an interactive prompt: replay runs scripts"),
        ("nb/my analysis.ipynb", "`jupyter nbconvert --to script 'nb/my analysis.ipynb'`"),
    ],
)
def test_replay_names_what_it_cannot_run(repo, script, says):
    flor.log("loss", 1.0)
    run_id = flor.current_run_id()
    flor.commit()
    rewrite_meta(repo.path, run_id, script=script)
    [item] = flor.replay("newname", dry_run=True).runs
    assert says in (item.skip or "")


@pytest.fixture
def fake_shell(monkeypatch) -> types.SimpleNamespace:
    """An IPython shell as a kernel presents it: ``__main__`` is no file, and the user's
    namespace may name the notebook."""
    shell = types.SimpleNamespace(user_ns={})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    return shell


def _recorded_script() -> str:
    flor.log("loss", 1.0)
    flor.commit()
    return flor.runs()["script"].to_list()[-1]


def test_vscode_then_the_session_env_then_the_session_variable_name_the_notebook(repo, fake_shell, monkeypatch):
    for name in ("vsc.ipynb", "env.ipynb", "var.ipynb"):
        repo.write(name, "{}\n")
    fake_shell.user_ns.update(__vsc_ipynb_file__=str(repo.path / "vsc.ipynb"), __session__="var.ipynb")
    monkeypatch.setenv("JPY_SESSION_NAME", str(repo.path / "env.ipynb"))
    assert _recorded_script() == "vsc.ipynb"
    del fake_shell.user_ns["__vsc_ipynb_file__"]
    assert _recorded_script() == "env.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", str(repo.path / "gone.ipynb"))  # no such file: not believed
    assert _recorded_script() == "var.ipynb"
    fake_shell.user_ns["__session__"] = "console-1"  # a console's session is no notebook
    assert _recorded_script() == "<notebook>"


def test_a_session_name_relative_to_the_server_root_is_found_from_the_notebook_folder(repo, fake_shell, monkeypatch):
    repo.write("notebooks/analysis.ipynb", "{}\n")
    monkeypatch.chdir(repo.path / "notebooks")  # jupyter_server starts the kernel in the notebook's folder
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/analysis.ipynb")
    assert _recorded_script() == "notebooks/analysis.ipynb"


def test_a_file_run_inside_ipython_stays_a_script(repo, fake_shell, monkeypatch):
    main = types.ModuleType("__main__")
    main.__file__ = str(repo.path / "train.py")  # what `%run train.py` and `ipython train.py` set
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setenv("JPY_SESSION_NAME", "analysis.ipynb")
    assert _recorded_script() == "train.py"


def test_import_florgit_leaves_ipython_unimported(repo):
    code = "import sys, florgit; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
