"""polars is imported with huge pages for its allocator (frames.allocator) when
FLORGIT_HUGE_PAGES=1 asks for them and florgit imports it first, never by default nor
against the user's own settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import florgit as flor
from florgit.frames.allocator import CONF, CONF_VAR, POLARS_THP

# Records POLARS_THP and _RJEM_MALLOC_CONF when polars is first looked for, and after.
SPY = """
import importlib.abc, json, os, sys
VARS = (%(thp)r, %(conf)r)
seen = []
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "polars":
            seen.append([os.environ.get(v) for v in VARS])
        return None
sys.meta_path.insert(0, Spy())
%(before)s
import florgit as flor
%(call)s
print(json.dumps({"seen": seen, "after": [os.environ.get(v) for v in VARS]}))
"""
ON = {"FLORGIT_HUGE_PAGES": "1"}
POLARS_DEFAULTS = "dirty_decay_ms:500,muzzy_decay_ms:1000"  # what a parent that imported polars passes down


def _spy(repo, call: str, *, before: str = "", env: dict | None = None) -> dict:
    code = SPY % {"thp": POLARS_THP, "conf": CONF_VAR, "before": before, "call": call}
    base = {k: v for k, v in os.environ.items() if k not in (POLARS_THP, CONF_VAR)}  # pytest imported polars
    out = subprocess.run([sys.executable, "-c", code], cwd=repo.path, capture_output=True, text=True,
                         env={**base, **(env or {})})  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture
def recorded(repo):
    flor.log("x", 1)
    flor.commit()
    return repo


@pytest.mark.parametrize("call", ["flor.runs()", "flor.dataframe('x')", "flor.scan()", "flor.query('select 1')"])
def test_the_query_functions_import_polars_with_huge_pages_for_the_import_only(recorded, call):
    assert _spy(recorded, call, env=ON) == {"seen": [["1", CONF]], "after": [None, None]}
    off = _spy(recorded, call)  # off unless asked for
    assert off["seen"] == [[None, None]] and off["after"][0] is None and "thp" not in (off["after"][1] or "")


def test_settings_a_parent_passed_down_and_the_users_own(recorded):
    inherited = _spy(recorded, "flor.runs()", env={**ON, CONF_VAR: POLARS_DEFAULTS})
    assert inherited["seen"] == [["1", POLARS_DEFAULTS]]  # polars' switch adds huge pages to them
    assert inherited["after"][0] is None
    mine = _spy(recorded, "flor.runs()", env={**ON, CONF_VAR: "narenas:2"})
    assert mine["seen"] == [["1", "narenas:2"]] and "narenas:2" in mine["after"][1]  # after florgit's: it wins
    assert _spy(recorded, "flor.runs()", env={**ON, POLARS_THP: "0"})["seen"] == [["0", None]]
    off = _spy(recorded, "flor.runs()", env={"FLORGIT_HUGE_PAGES": "0"})
    assert off["seen"] == [[None, None]] and "thp" not in (off["after"][1] or "")  # polars may set its defaults
    # polars imported before florgit: set up already, florgit leaves it alone
    assert _spy(recorded, "flor.runs()", env=ON, before="import polars")["seen"] == [[None, None]]


def test_git_flor_sets_huge_pages_for_its_process(recorded):
    call = "from florgit.cli.main import main\nmain(['log', '--json'])"
    got = _spy(recorded, call, env=ON)
    assert got["seen"] == [["1", CONF]] and got["after"][0] == "1"
    assert _spy(recorded, call)["seen"] == [[None, None]]
    assert _spy(recorded, call, env={"FLORGIT_HUGE_PAGES": "off"})["seen"] == [[None, None]]
