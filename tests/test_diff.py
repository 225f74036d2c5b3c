"""`git flor diff`: two runs side by side, with their code diff."""

from __future__ import annotations

import pytest

from florgit.cli.main import main

TRAIN = """
import florgit as flor
flor.set_echo(False)
lr = flor.arg("lr", 0.1)
seed = flor.arg("seed", 7)
for epoch in flor.loop("epoch", range(3)):
    flor.log("loss", lr * (3 - epoch))
flor.log("acc", 0.5)
"""


@pytest.fixture
def two_runs(repo):
    repo.write("train.py", TRAIN)
    repo.commit("train")
    repo.run("train.py")
    repo.write("train.py", TRAIN.replace('flor.log("acc", 0.5)', 'flor.log("acc", 0.75)  # better'))
    repo.run("train.py", "--kwargs", "lr=0.2")
    return repo


def test_diff_shows_what_differs_and_the_code(two_runs, capsys):
    assert main(["diff", "latest~1", "latest"]) == 0
    out = capsys.readouterr().out
    assert "arg lr" in out and "0.1" in out and "0.2" in out
    assert "loss last" in out and "loss max" in out and "0.6" in out  # 0.2 * 3
    assert "acc last" in out and "0.75" in out
    assert "arg seed" not in out  # the same in both: only with --all
    assert '+flor.log("acc", 0.75)  # better' in out and '-flor.log("acc", 0.5)' in out
    assert main(["diff", "latest~1", "--all", "--no-code"]) == 0
    out = capsys.readouterr().out
    assert "arg seed" in out and "+flor.log" not in out


def test_diff_names_a_bad_reference(two_runs, capsys):
    assert main(["diff", "nope", "latest"]) == 1
    assert "no recorded run matches 'nope'" in capsys.readouterr().err
