"""`--kwargs` parsing: unit rules, and a script whose own argparse keeps working."""

from __future__ import annotations

import json

import pytest

from florgit.api import kwargs
from florgit.errors import KwargsError


def test_extract_removes_section_and_keeps_other_flags():
    argv = ["train.py", "--tag", "a", "--kwargs", "lr=5e-4", "epochs=3", "--data", "d.csv"]
    assert kwargs.extract(argv) == {"lr": "5e-4", "epochs": "3"}
    assert argv == ["train.py", "--tag", "a", "--data", "d.csv"]


def test_extract_value_with_equals_and_negative_numbers():
    argv = ["t.py", "--kwargs", "expr=a=b", "lr=-1", "pos"]
    assert kwargs.extract(argv) == {"expr": "a=b", "lr": "-1"}
    assert argv == ["t.py", "pos"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["t.py", "--kwargs"], "NAME=VALUE"),
        (["t.py", "--kwargs", "--lr", "1"], "NAME=VALUE"),
        (["t.py", "--kwargs", "=3"], "not a valid name"),
        (["t.py", "--kwargs", "a b=3"], "not a valid name"),
        (["t.py", "--kwargs", "lr=1", "lr=2"], "twice"),
    ],
)
def test_extract_rejects_malformed(argv, match):
    with pytest.raises(KwargsError, match=match):
        kwargs.extract(argv)


@pytest.mark.parametrize(
    "text, default, expected",
    [
        ("true", False, True),
        ("No", True, False),
        ("1", False, True),
        ("0", True, False),
        ("12", 3, 12),
        ("-4", 3, -4),
        ("5e-4", 0.1, 5e-4),
        ("3", 0.1, 3.0),
        ("x=y", "s", "x=y"),
        ("[1, 2]", None, [1, 2]),
        ("adam", None, "adam"),
        ("0.5", None, 0.5),
        ("[8, 16]", [1], [8, 16]),
        ("(1, 2)", (0,), (1, 2)),
    ],
)
def test_parse_by_default_type(text, default, expected):
    value = kwargs.parse("k", text, default)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "text, default",
    [("maybe", True), ("1.5", 3), ("abc", 0.1), ("[1", [1]), ("{1: 2}", [1]), ("x", object())],
)
def test_parse_rejects_bad_values_with_a_fix(text, default):
    with pytest.raises(KwargsError, match=r"k=|default"):
        kwargs.parse("k", text, default)


SCRIPT = """
import argparse, json, sys
import florgit as flor
parser = argparse.ArgumentParser()
parser.add_argument("--tag", default="none")
opts = parser.parse_args()
lr = flor.arg("lr", 0.001)
epochs = flor.arg("epochs", 2)
layers = flor.arg("layers", [64])
name = flor.arg("name", "run")
amp = flor.arg("amp", False)
print("RESULT", json.dumps({"lr": lr, "epochs": epochs, "layers": layers, "name": name, "amp": amp, "tag": opts.tag}))
"""


def _result(stdout: str) -> dict:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_script_gets_kwargs_and_keeps_its_argparse(repo):
    repo.write("train.py", SCRIPT)
    out = repo.run("train.py", "--tag", "t1", "--kwargs", "lr=5e-4", "epochs=3", "layers=[8,16]", "name=a=b", "amp=yes")
    assert _result(out.stdout) == {"lr": 5e-4, "epochs": 3, "layers": [8, 16], "name": "a=b", "amp": True, "tag": "t1"}
    assert "lr: 0.0005" in out.stdout


def test_unused_kwarg_is_reported_and_recorded(repo):
    import florgit as flor

    repo.write("train.py", SCRIPT)
    out = repo.run("train.py", "--kwargs", "lrr=0.1")
    assert "lrr=0.1" in out.stderr and "did you mean 'lr'" in out.stderr
    assert _result(out.stdout)["lr"] == 0.001
    assert flor.runs()["status"].to_list() == ["ok"]


def test_bad_kwargs_value_fails_fast_with_a_fix(repo):
    repo.write("train.py", SCRIPT)
    out = repo.run("train.py", "--kwargs", "epochs=three", check=False)
    assert out.returncode != 0
    assert "epochs=three" in out.stderr and "expects an int" in out.stderr


LOOPING = """
import florgit as flor
flor.set_echo(False)
optimizer = flor.arg("optimizer", "sgd")
epochs = flor.arg("epochs", 2)
for epoch in flor.loop("epoch", range(epochs)):
    flor.log("loss", 1.0)
print("trained with", optimizer)
"""


def test_a_misspelled_kwarg_stops_the_script_before_training(repo):
    import florgit as flor

    repo.write("train.py", LOOPING)
    out = repo.run("train.py", "--kwargs", "optimiser=adam", check=False)
    assert out.returncode == 1 and "trained with" not in out.stdout
    assert "did you mean 'optimizer'" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert flor.runs().height == 0  # nothing was trained, nothing is recorded
    assert not list((repo.path / ".git" / "flor" / "spool").iterdir())
    assert "refs/flor/pending" not in repo.git("for-each-ref")
    lenient = repo.run("train.py", "--kwargs", "optimiser=adam", env={"FLORGIT_KWARGS": "lenient"})
    assert "trained with sgd" in lenient.stdout and "did you mean 'optimizer'" in lenient.stderr
    assert flor.runs().height == 1


def test_a_bad_kwarg_value_is_one_line_and_records_no_run(repo):
    import florgit as flor

    repo.write("train.py", LOOPING)
    out = repo.run("train.py", "--kwargs", "epochs=three", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "epochs=three" in out.stderr
    assert flor.runs().height == 0


def test_disabled_mode_records_nothing_and_changes_nothing(repo):
    repo.write("train.py", LOOPING + "print('run id', flor.current_run_id())\n")
    repo.commit("train")
    before = repo.git("for-each-ref")
    out = repo.run("train.py", "--kwargs", "optimizer=adam", env={"FLORGIT_MODE": "disabled"})
    assert "trained with adam" in out.stdout and "run id None" in out.stdout
    assert repo.git("for-each-ref") == before
    assert not (repo.path / ".git" / "flor").exists()
