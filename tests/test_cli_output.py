"""What `git flor` prints of data that may come from a hostile push: no markup, no raw
control characters, strict JSON, one-line errors, `--where` as one expression only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from florgit.cli import display
from florgit.cli.main import main
from florgit.errors import QueryError

HOSTILE = r"""
import florgit as flor
flor.arg("lr", 0.01)
flor.arg("note", "acc[/] \x1b[31mred\x1b]0;pwned\x07 \r\x9b[2J [bold]b[/bold]")
flor.log("acc[/]", 1.0)
flor.log("loss[train]", float("nan"))
flor.log("msg", "[link=file:///etc/passwd]x[/link] \x1b[2J\u202egnp.exe")
for epoch in flor.loop("epoch", range(2)):
    flor.log("val", float("inf"))
    flor.log("low", float("-inf"))
"""
RAW = ("\x1b", "\x07", "\r", "\x9b", "\u202e")


def _strict(line: str):
    def refuse(token: str):
        raise ValueError(f"invalid JSON constant {token}")

    return json.loads(line, parse_constant=refuse)


def _assert_no_raw_controls(text: str) -> None:
    for ch in RAW:
        assert ch not in text, f"{ch!r} reached the output"


@pytest.fixture
def hostile(repo):
    repo.write("train.py", HOSTILE)
    repo.commit("train")
    repo.run("train.py", env={"FLORGIT_ECHO": "0"})
    return repo


def test_log_table_escapes_markup_and_controls(hostile, capsys):
    assert main(["log"]) == 0
    out = capsys.readouterr().out
    assert "acc[/]" in out and "loss[train]" in out and "[bold]b[/bold]" in out and "[link=file:///etc/passwd]" in out
    assert "\\x1b[31mred" in out and "\\x07" in out and "\\r" in out and "\\x9b" in out and "\\u202e" in out
    _assert_no_raw_controls(out)


def test_show_escapes_markup_and_controls(hostile, capsys):
    assert main(["log", "--json"]) == 0
    run_id = _strict(capsys.readouterr().out.splitlines()[0])["run_id"]
    assert main(["show", run_id]) == 0
    out = capsys.readouterr().out
    assert f"run      {run_id}" in out
    assert "acc[/]" in out and "loss[train]" in out and "[link=file:///etc/passwd]x[/link]" in out
    assert "note=acc[/] \\x1b[31mred" in out
    _assert_no_raw_controls(out)


def test_log_json_is_strict_with_nan_and_infinity_as_strings(hostile, capsys):
    assert main(["log", "--json"]) == 0
    rows = [_strict(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["loss[train]"] == "NaN" and row["val"] == "Infinity" and row["low"] == "-Infinity"
    assert row["log:note"].startswith("acc[/] \x1b[31mred")  # a logged `note` beside the run-note column: log:note
    assert row["acc[/]"] == 1.0


def test_dataframe_json_is_strict_and_table_has_no_raw_controls(hostile, capsys):
    assert main(["dataframe", "val", "low", "msg", "--format", "json"]) == 0
    rows = [_strict(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["val"] for r in rows] == ["Infinity", "Infinity"] and rows[0]["low"] == "-Infinity"
    assert rows[0]["msg"].startswith("[link=")
    assert main(["dataframe", "val", "note"]) == 0
    table = capsys.readouterr().out
    assert "acc[/] \\x1b[31mred" in table
    _assert_no_raw_controls(table)


def test_csv_is_exact_into_a_pipe_and_visible_on_a_terminal(hostile, capsys, monkeypatch):
    assert main(["log", "--csv"]) == 0
    assert "\x1b[31mred" in capsys.readouterr().out  # data for programs stays exact
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["log", "--csv"]) == 0
    out = capsys.readouterr().out
    assert "\\x1b[31mred" in out
    _assert_no_raw_controls(out)


def test_real_git_flor_log_and_show_through_a_pipe(hostile, git_flor_on_path):
    for args in (("log",), ("log", "--json")):
        out = subprocess.run(["git", "flor", *args], cwd=hostile.path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        assert "acc[/]" in out.stdout
        _assert_no_raw_controls(out.stdout)


def test_error_messages_with_markup_and_controls_print_as_text(hostile, capsys):
    assert main(["log", "--where", "\"acc[/]\" > 'x[/]\x1b'"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "acc[/]" in err and "\\x1b" in err
    _assert_no_raw_controls(err)
    assert main(["log", "--where", "[/] > 1"]) == 1
    assert "[/]" in capsys.readouterr().err


def test_verify_problem_lines_are_escaped(repo, capsys, monkeypatch):
    from florgit.store import maintenance

    report = SimpleNamespace(problems=["run acc[/] \x1b[2J is [bold]bad[/]"], runs=1, notes=0, checkpoints=0, objects=3)
    monkeypatch.setattr(maintenance, "verify", lambda repo, deep=True, on_run=None: report)
    assert main(["verify"]) == 1
    err = capsys.readouterr().err
    assert "problem: run acc[/] \\x1b[2J is [bold]bad[/]" in err
    _assert_no_raw_controls(err)


# --- errors never print a traceback -------------------------------------------------------


def _boom(exc: BaseException):
    def run_table(where=None):
        raise exc

    return run_table


def test_unexpected_error_is_one_line_with_a_hint(repo, capsys, monkeypatch):
    from florgit.cli import listing

    monkeypatch.setattr(listing, "run_table", _boom(RuntimeError("boom [/] \x1b[2J\nsecond line")))
    assert main(["log"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[0] == "error: RuntimeError: boom [/] \\x1b[2J"
    assert lines[1] == "hint: set FLORGIT_DEBUG=1 for details" and len(lines) == 2


def test_debug_prints_the_traceback(repo, capsys, monkeypatch):
    from florgit.cli import listing

    monkeypatch.setenv("FLORGIT_DEBUG", "1")
    monkeypatch.setattr(listing, "run_table", _boom(ValueError("bad")))
    assert main(["log"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: ValueError: bad" in err


def test_ctrl_c_exits_130_with_a_short_line(repo, capsys, monkeypatch):
    from florgit.cli import listing

    monkeypatch.setattr(listing, "run_table", _boom(KeyboardInterrupt()))
    assert main(["log"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err and len(err.splitlines()) <= 2


def test_florgit_errors_keep_their_message_and_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "git init" in err and "Traceback" not in err


# --- --where: one expression, never a query ---------------------------------------------------


INJECTIONS = [
    "1=1 UNION SELECT * FROM read_csv('{secret}')",
    "lr IN (SELECT line FROM read_csv('{secret}'))",
    "lr = (SELECT line FROM read_csv('{secret}') LIMIT 1)",
    "EXISTS (SELECT * FROM read_csv('{secret}'))",
    "read_csv('{secret}') IS NOT NULL",
    "lr > 0; SELECT * FROM read_csv('{secret}')",
    "lr > 0) OR (1=1",
    "status IN (VALUES ('ok'))",
    "lr > 0 /* */ UNION ALL SELECT * FROM self",
]


@pytest.mark.parametrize("template", INJECTIONS)
def test_where_injection_fails_cleanly(hostile, capsys, tmp_path, template):
    secret = tmp_path / "secret.csv"
    secret.write_text("line\nTOP-SECRET-CONTENT\n")
    assert main(["log", "--where", template.format(secret=secret)]) == 1
    captured = capsys.readouterr()
    assert "TOP-SECRET-CONTENT" not in captured.out + captured.err
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --where") and "Columns: 'run_id'" in lines[0]
    assert "Traceback" not in captured.err


def test_where_injection_through_real_git_flor(hostile, git_flor_on_path):
    out = subprocess.run(["git", "flor", "log", "--where", "1=1 UNION SELECT * FROM read_csv('/etc/passwd')"],
                         cwd=hostile.path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and out.stdout == ""
    assert "root:" not in out.stderr and "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1


def test_where_unknown_column_says_did_you_mean(hostile, capsys):
    assert main(["log", "--where", "lrr > 0.1"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "unknown column 'lrr'" in err and "did you mean 'lr'" in err and "'status'" in err
    assert "valid columns" not in err and "Resolved plan" not in err  # no polars dump


def test_where_still_selects(hostile, capsys):
    assert main(["log", "--json", "--where", "lr < 0.1 AND status = 'ok' AND \"acc[/]\" = 1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["log", "--json", "--where", "lr > 0.1"]) == 0
    assert capsys.readouterr().out == ""


def test_apply_where_errors_are_one_line():
    import polars as pl

    from florgit.frames.where import apply_where

    frame = pl.DataFrame({"run_id": ["a", "b"], "lr": [0.1, 0.5], "status": ["ok", "x"]})
    assert apply_where(frame, "lr > 0.2")["run_id"].to_list() == ["b"]
    assert apply_where(frame, "upper(status) = 'OK'")["run_id"].to_list() == ["a"]
    assert apply_where(frame, "status = 'select'").height == 0  # keywords inside strings are data
    for bad in ("lr", "lr > 'abc'", "CAST(status AS INT) = 1", "", "lr >", "status IN (SELECT 1)"):
        with pytest.raises(QueryError) as info:
            apply_where(frame, bad)
        assert "\n" not in str(info.value) and "'run_id', 'lr', 'status'" in str(info.value)


def test_replay_where_uses_the_same_parser(hostile):
    from florgit.git import open_repo
    from florgit.hindsight.plan import _matching

    repo = open_repo()
    assert len(_matching(repo, "lr < 0.1")) == 1
    for bad in ("1=1 UNION SELECT * FROM read_csv('/etc/passwd')", "lrr > 1"):
        with pytest.raises(QueryError) as info:
            _matching(repo, bad)
        assert "\n" not in str(info.value) and "root:" not in str(info.value)
    with pytest.raises(QueryError, match="did you mean 'lr'"):
        _matching(repo, "lrr > 1")


# --- git flor show: ids from meta.json never become git options ---------------------------------


def _rewrite_meta(repo_path: Path, run_id: str, **changes) -> None:
    """Rewrite a run's meta.json on the shadow branch, as a hostile push could."""
    import pygit2

    from florgit.store import layout

    repo = pygit2.Repository(str(repo_path))
    ref = repo.references[layout.SHADOW_REF]
    parent = repo[ref.target]
    parts = layout.run_path(run_id).split("/") + [layout.META_FILE]

    def rebuilt(tree, names):
        builder = repo.TreeBuilder(tree)
        entry = tree[names[0]]
        if len(names) == 1:
            meta = json.loads(repo[entry.id].data)
            meta.update(changes)
            builder.insert(names[0], repo.create_blob(json.dumps(meta).encode()), pygit2.GIT_FILEMODE_BLOB)
        else:
            builder.insert(names[0], rebuilt(repo[entry.id], names[1:]), pygit2.GIT_FILEMODE_TREE)
        return builder.write()

    tree = rebuilt(parent.tree, parts)
    sig = pygit2.Signature("Mallory", "m@example.com")
    commit = repo.create_commit(None, sig, sig, "hostile", tree, [parent.id])
    ref.set_target(commit)


def test_show_never_passes_a_hostile_commit_to_git_as_an_option(hostile, capsys, tmp_path):
    assert main(["log", "--json"]) == 0
    run_id = _strict(capsys.readouterr().out.splitlines()[0])["run_id"]
    target = tmp_path / "PWNED"
    _rewrite_meta(hostile.path, run_id, user_commit=f"--output={target}")
    code = main(["show", run_id])  # strict meta validation may refuse the run: fine either way
    err = capsys.readouterr().err
    assert code in (0, 1) and "Traceback" not in err
    assert not target.exists()


def test_show_diff_guards_even_without_meta_validation(hostile, capsys, tmp_path, monkeypatch):
    """With the meta check bypassed, the id check and --end-of-options still hold."""
    from florgit.store import runs

    assert main(["log", "--json"]) == 0
    run_id = _strict(capsys.readouterr().out.splitlines()[0])["run_id"]
    real = runs.read_meta
    target = tmp_path / "PWNED"

    def hostile_meta(repo, stored):
        meta = real(repo, stored)
        meta.user_commit = f"--output={target}"
        return meta

    monkeypatch.setattr(runs, "read_meta", hostile_meta)
    assert main(["show", run_id]) == 0
    assert "code diff: not shown" in capsys.readouterr().out
    assert not target.exists()


def test_code_diff_puts_end_of_options_before_the_ids(monkeypatch, tmp_path):
    from florgit.cli import listing
    from florgit.git import command

    seen = []
    monkeypatch.setattr(command, "run_git", lambda cwd, *args, **kw: seen.append(args) or SimpleNamespace(stdout=""))
    a, b = "a" * 40, "b" * 40
    assert listing.code_diff(str(tmp_path), a, b) == ""
    args = seen[0]
    assert args[args.index("--end-of-options") + 1 :] == (a, b, "--")
    assert listing.code_diff(str(tmp_path), f"--output={tmp_path}/x", b) is None
    assert listing.code_diff(str(tmp_path), a, "-" + "b" * 39) is None and len(seen) == 1
    # and git itself reads what follows --end-of-options as a revision, never an option
    subprocess.run(["git", "init", "-q", str(tmp_path / "g")], check=True)
    out = subprocess.run(["git", "diff", "--end-of-options", f"--output={tmp_path}/y", "--"], cwd=tmp_path / "g",
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode != 0 and not (tmp_path / "y").exists()


# --- the display module ---------------------------------------------------------------------


def test_visible_shows_every_control_character():
    assert display.visible("a\x1b[2Jb\r\n\t\x00\x7f\x85\x9b\u202e\u2028\ufeffz") == (
        "a\\x1b[2Jb\\r\\n\\t\\x00\\x7f\\x85\\x9b\\u202e\\u2028\\ufeffz"
    )
    assert display.visible("line 1\nline\t2\x1b", keep_newlines=True) == "line 1\nline\t2\\x1b"
    assert display.visible("héllo wörld ✓ [x]") == "héllo wörld ✓ [x]"
    assert display.visible(3) == "3"


def test_markup_and_cells_render_as_written():
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(f"[bold]{display.markup('acc[/] loss[train] [red]x')}[/]")
    console.print(display.cell("acc[/]\x1b"))
    text = console.export_text()
    assert "acc[/] loss[train] [red]x" in text and "acc[/]\\x1b" in text


def test_json_line_is_strict():
    line = display.json_line({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": "\x1b", "d": None})
    assert _strict(line) == {"a": "NaN", "b": ["Infinity", "-Infinity", 1.5], "c": "\x1b", "d": None}
    assert "\x1b" not in line


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=20),
        st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), max_size=20),
        st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=20),
        st.lists(st.one_of(st.none(), st.booleans()), max_size=20),
    )
)
def test_a_column_shows_as_its_values_do_one_by_one(values):
    """Run tables format whole columns at once; every cell is what show_value gives."""
    import polars as pl

    from florgit.cli.display import show_column, show_value

    series = pl.Series(values, strict=False)
    assert show_column(series) == [show_value(v) for v in series.to_list()]
