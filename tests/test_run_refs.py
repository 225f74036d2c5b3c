"""Run references: a full id, a unique prefix or suffix, `latest`, `latest~N`."""

from __future__ import annotations

import pytest

import florgit as flor
from florgit.errors import AmbiguousRunError, RunNotFoundError
from florgit.git import open_repo
from florgit.store.runs import find_run
from tests import forge


@pytest.fixture
def three_runs(repo):
    ids = ["20260101-000000.000-aaaa1111", "20260101-000001.000-bbbb2222", "20260102-000000.000-cccc1111"]
    for run_id in ids:
        forge.forge_run(repo.path, run_id=run_id)
    return open_repo(str(repo.path)), ids


def test_latest_and_latest_n(three_runs):
    git, ids = three_runs
    assert find_run(git, "latest").run_id == ids[2]
    assert find_run(git, "latest~0").run_id == ids[2]
    assert find_run(git, "latest~2").run_id == ids[0]
    with pytest.raises(RunNotFoundError):
        find_run(git, "latest~3")


def test_prefix_and_suffix(three_runs):
    git, ids = three_runs
    assert find_run(git, "20260102").run_id == ids[2]
    assert find_run(git, "bbbb2222").run_id == ids[1]
    assert find_run(git, "2222").run_id == ids[1]


def test_an_ambiguous_reference_lists_the_candidates(three_runs):
    git, ids = three_runs
    with pytest.raises(AmbiguousRunError) as caught:
        find_run(git, "1111")
    assert ids[0] in str(caught.value) and ids[2] in str(caught.value)
    with pytest.raises(AmbiguousRunError):
        find_run(git, "2026")


def test_references_work_in_the_cli_and_api(three_runs, capsys):
    _git, ids = three_runs
    from florgit.cli.main import main

    assert main(["show", "latest~1"]) == 0
    assert ids[1] in capsys.readouterr().out
    assert main(["show", "2026"]) == 1
    assert "matches 3 runs" in capsys.readouterr().err
    assert flor.checkpoints("latest") == []
