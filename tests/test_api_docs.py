"""The Python API documents itself: quick start first, honest signatures, py.typed."""

from __future__ import annotations

import inspect
import pydoc
from pathlib import Path

import florgit as flor
from florgit.cli.main import main


def test_help_starts_with_a_quick_start():
    text = pydoc.render_doc(flor, renderer=pydoc.plaintext)
    head = "\n".join(text.splitlines()[:30])
    assert "Quick start" in head and "flor.loop(" in head and "flor.dataframe(" in head


def test_signatures_say_what_they_take_and_return():
    assert str(inspect.signature(flor.arg)) == "(name: 'str', default: 'Any' = <required>) -> 'Any'"
    assert inspect.signature(flor.log).return_annotation == "T"
    assert "repo" in inspect.signature(flor.load_checkpoint).parameters


def test_the_package_ships_type_information():
    assert (Path(flor.__file__).parent / "py.typed").exists()
    assert "py.typed" in (Path(flor.__file__).parents[1] / "pyproject.toml").read_text()


def test_git_flor_help(capsys):
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    assert "replay" in out and "Usage: git flor" in out
    assert main(["help", "show"]) == 0
    assert "latest~N" in capsys.readouterr().out
    assert main(["help", "nope"]) == 2
