"""polars is imported with huge pages for its allocator (frames.allocator) when florgit
imports it first, and never against the user's own settings or FLORGIT_HUGE_PAGES=0."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import florgit as flor
from florgit.frames.allocator import CONF, CONF_VAR

# Records what _RJEM_MALLOC_CONF holds when polars is first looked for, and after.
SPY = """
import importlib.abc, json, os, sys
seen = []
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "polars":
            seen.append(os.environ.get(%(var)r))
        return None
sys.meta_path.insert(0, Spy())
%(before)s
import florgit as flor
%(call)s
print(json.dumps({"seen": seen, "after": os.environ.get(%(var)r)}))
"""


def _spy(repo, call: str, *, before: str = "", env: dict | None = None) -> dict:
    code = SPY % {"var": CONF_VAR, "before": before, "call": call}
    out = subprocess.run([sys.executable, "-c", code], cwd=repo.path, capture_output=True, text=True,
                         env={**__import__("os").environ, **(env or {})})  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture
def recorded(repo):
    flor.log("x", 1)
    flor.commit()
    return repo


@pytest.mark.parametrize("call", ["flor.runs()", "flor.dataframe('x')", "flor.scan()", "flor.query('select 1')"])
def test_the_query_functions_import_polars_with_huge_pages_for_the_import_only(recorded, call):
    assert _spy(recorded, call) == {"seen": [CONF], "after": None}


def test_the_users_settings_and_the_off_switch_are_respected(recorded):
    mine = _spy(recorded, "flor.runs()", env={CONF_VAR: "narenas:2"})
    assert mine["seen"] == ["narenas:2"] and "narenas:2" in mine["after"]
    off = _spy(recorded, "flor.runs()", env={"FLORGIT_HUGE_PAGES": "0"})
    assert off["seen"] == [None] and "thp" not in (off["after"] or "")  # polars may set its own defaults
    # polars imported before florgit: already set up, florgit leaves it alone
    assert _spy(recorded, "flor.runs()", before="import polars")["seen"] == [None]


def test_git_flor_sets_huge_pages_for_its_process(recorded):
    call = "from florgit.cli.main import main\nmain(['log', '--json'])"
    got = _spy(recorded, call)
    assert got["seen"] == [CONF] and CONF in got["after"]
    assert _spy(recorded, call, env={"FLORGIT_HUGE_PAGES": "off"})["seen"] == [None]
