"""`git flor log` for people: fits 80 and 120 columns with key values in full."""

from __future__ import annotations

import sys

import pytest

from florgit.cli import runtable
from florgit.cli.listing import run_table
from florgit.cli.main import main
from tests.conftest import run_in_terminal

TRAIN = """
import florgit as flor
flor.set_echo(False)
lr = flor.arg("learning_rate", 0.001)
momentum = flor.arg("momentum", 0.9)
batch = flor.arg("batch_size", 64)
opt = flor.arg("optimizer", "adamw")
for epoch in flor.loop("epoch", range(2)):
    flor.log("train_loss", 0.123456789 * (epoch + 1) / lr / 1000)
flor.log("val_accuracy", 0.987654321)
flor.log("grad_norm", 12345.678)
"""


@pytest.fixture
def runs(repo):
    repo.write("train.py", TRAIN)
    repo.commit("train")
    for lr in ("0.001", "0.002"):
        repo.run("train.py", "--kwargs", f"learning_rate={lr}")
    return repo


def _render(width: int) -> str:
    table = run_table()
    values = runtable.ordered_values(table.frame, table.args, table.metrics)
    return runtable.render(runtable.terminal(runtable.listing_of(table.frame, values), width))


@pytest.mark.parametrize("width", [80, 120])
def test_key_values_are_visible_in_full_and_lines_fit(runs, width):
    text = _render(width)
    assert all(len(line) <= width for line in text.splitlines()), text
    for value in ("0.246914", "0.987654", "12345.7"):  # the metrics, never cut
        assert value in text, text
    assert "ok" in text and "ago" in text or "now" in text
    if width == 120:
        assert "learning_rate" in text and "0.002" in text  # args fit too
    else:
        assert "more:" in text  # what did not fit is named, not squeezed


def test_a_real_80_column_terminal(runs):
    code, text = run_in_terminal([sys.executable, "-m", "florgit.cli.main", "log"], runs.path, 80)
    assert code == 0, text
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "0.987654" in text and "12345.7" in text and "age" in text


def test_columns_sort_only_changed_and_wide(runs, capsys):
    assert main(["log", "--columns", "learning_rate,train_loss", "--sort", "learning_rate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "learning_rate" in out[0] and "momentum" not in out[0]
    assert out[2].split()[-2] == "0.001"  # sorted ascending
    assert main(["log", "--only-changed", "--wide"]) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "momentum" not in out and "optimizer" not in out
    assert main(["log", "--columns", "learning_rat"]) == 1
    assert "did you mean 'learning_rate'" in capsys.readouterr().err
