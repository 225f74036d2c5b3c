"""`git flor report`: one offline HTML file, checked in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from florgit.cli.main import main

TRAIN = """
import florgit as flor
flor.set_echo(False)
lr = flor.arg("lr", 0.1)
for epoch in flor.loop("epoch", range(4)):
    flor.log("loss", lr * (4 - epoch))
flor.log("acc", 1 - lr)
"""
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")


@pytest.fixture
def report(repo, tmp_path):
    repo.write("train.py", TRAIN)
    for lr in ("0.1", "0.3", "0.2"):
        repo.run("train.py", "--kwargs", f"lr={lr}")
    repo.run("train.py", "--kwargs", "lr=0.5")
    import florgit as flor
    from florgit.cli.main import main as cli

    runs = flor.runs()["run_id"].to_list()
    assert cli(["tag", runs[0], "<b>best</b>"]) == 0
    assert cli(["note", runs[0], "<script>alert(1)</script>"]) == 0
    path = tmp_path / "report.html"
    assert main(["report", "-o", str(path), "--metric", "loss", "--metric", "acc"]) == 0
    return path


def test_the_report_is_self_contained_and_escapes_data(report, capsys):
    text = report.read_text()
    assert "4 runs" in text and text.count("<svg") == 2
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>best</b>" not in text and "&lt;b&gt;best&lt;/b&gt;" in text
    assert not re.search(r"src=|href=\"http|@import|url\(http", text)  # nothing to fetch: opens offline


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium: scripts/test.sh installs chromium-headless-shell")
def test_the_report_in_a_headless_browser(report, tmp_path):
    shot = tmp_path / "report.png"
    common = [BROWSER, "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--window-size=1280,1400"]
    run = subprocess.run([*common, f"--screenshot={shot}", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert ":CONSOLE" not in run.stderr, [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
    dom = subprocess.run([*common, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-sortable="ready"' in dom.stdout  # the inline script ran without an error
    assert ":CONSOLE" not in dom.stderr
    assert dom.stdout.count("<svg") == 2 and "<tbody>" in dom.stdout
