"""Any legal name, florgit's own internal column names and unicode included, round-trips
through log/arg/loop -> dataframe, scan, query and `git flor log`."""

from __future__ import annotations

import json
import secrets

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import florgit as flor
from florgit.cli.listing import LISTING_COLUMNS
from florgit.cli.main import main as cli_main
from florgit.codec.values import RESERVED_NAMES
from florgit.validation import name_problem
from tests.conftest import make_repo

INTERNAL = ["i", "f", "s", "name", "kind", "ctx", "seq", "run", "sidx", "dims", "own_loop", "own_iteration",
            "loop_row", "lrow", "parent_lrow", "own_kind", "p_kind", "replayed", "value_int", "value_str", "parent", "t", "epoch_value", "log:x", "loop:x", "a/b"]  # fmt: skip
SCAN_COLUMNS = {"run_id", "start_time", "script", "seq", "name", "replayed", "kind", "value_bool", "value_int",
                "value_float", "value_str"}  # fmt: skip
LISTING = set(LISTING_COLUMNS)

names = st.one_of(
    st.sampled_from(INTERNAL),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=24),
).filter(lambda n: name_problem(n) is None and n not in RESERVED_NAMES)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(loop=names, metric=names, arg=names, text_value=st.text(max_size=20))
def test_any_legal_name_round_trips(tmp_path, monkeypatch, capsys, loop, metric, arg, text_value):
    assume(len({loop, metric, arg}) == 3 and f"{loop}_value" not in (metric, arg))
    monkeypatch.chdir(make_repo(tmp_path / secrets.token_hex(4)).path)  # one run per repository
    flor.set_echo(False)
    assert flor.arg(arg, 7) == 7
    for it in flor.loop(loop, range(2)):
        flor.log(metric, it * 1.5)
    flor.log(metric + "_text" if metric + "_text" not in (loop, arg) else metric, text_value)
    run_id = flor.current_run_id()
    flor.commit()

    df = flor.dataframe(metric, arg).filter(run_id=run_id)
    assert df.columns == ["run_id", "start_time", "script", loop, metric, arg]
    assert df[loop].to_list() == [0, 1] and df[metric].to_list() == [0.0, 1.5] and df[arg].to_list() == [7, 7]

    long = flor.scan().filter(run_id=run_id, name=metric).collect()
    shown = f"loop:{loop}" if loop in SCAN_COLUMNS else loop  # the documented rule
    assert long[shown].to_list() == [0, 1] and long["value_float"].to_list() == [0.0, 1.5]
    rows = flor.query("SELECT run_id, name, value_int FROM records").filter(run_id=run_id, name=arg)
    assert rows["value_int"].to_list() == [7]

    capsys.readouterr()
    assert cli_main(["log", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = next(row for row in listed if row["run_id"] == run_id)
    assert mine[f"log:{arg}" if arg in LISTING else arg] == 7
