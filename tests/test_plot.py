"""`git flor plot`: a metric over its iterations, in the terminal or to PNG/SVG/HTML."""

from __future__ import annotations

import re

import pytest

from florgit.cli.main import main

TRAIN = """
import florgit as flor
flor.set_echo(False)
lr = flor.arg("lr", 0.1)
for epoch in flor.loop("epoch", range(5)):
    flor.log("loss", lr * (5 - epoch))
    flor.log("phase", "train")
"""


@pytest.fixture
def runs(repo):
    repo.write("train.py", TRAIN)
    for lr in ("0.1", "0.3"):
        repo.run("train.py", "--kwargs", f"lr={lr}")
    return repo


def test_terminal_chart_names_each_run_and_has_no_escape_codes_when_piped(runs, capsys):
    assert main(["plot", "loss"]) == 0
    out = capsys.readouterr().out
    assert out.count(" loss") >= 2 and "epoch" in out and "\x1b" not in out


@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("html", b"<!doctype html>")])
def test_files(runs, tmp_path, capsys, ext, magic):
    target = tmp_path / f"loss.{ext}"
    assert main(["plot", "loss", "--where", "lr > 0.2", "-o", str(target)]) == 0
    assert "1 line(s)" in capsys.readouterr().out
    data = target.read_bytes()
    assert data.startswith(magic)
    if ext == "html":  # opens offline: nothing fetched, no script
        text = data.decode()
        assert "<svg" in text and not re.search(r"<script|src=|href=\"http", text)


def test_plot_errors_are_one_line(runs, capsys):
    assert main(["plot", "phase"]) == 1
    assert "plot takes numbers" in capsys.readouterr().err
    assert main(["plot", "loss", "-o", "x.gif"]) == 1
    assert main(["plot", "nothing"]) == 1
    assert "no run logged 'nothing'" in capsys.readouterr().err
