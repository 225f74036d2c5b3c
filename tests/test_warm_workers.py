"""Warm replay workers: tasks fork from one process that imported the scripts' modules,
and each still starts from a fresh state (module globals, argv, random seeds); where
forking is unsafe the zygote says why and replay starts plain processes."""

from __future__ import annotations

import json
import os
import sys

from florgit.hindsight.warm import Zygote, imported_modules

SCRIPT = """\
import random
import sys
import fakelib

fakelib.counter += 1
print(json.dumps({"counter": fakelib.counter, "argv": sys.argv[1:], "r": random.random(),
                  "loaded_before": fakelib.loaded_at != None}))
"""


def _env(lib_dir) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(lib_dir), os.environ.get("PYTHONPATH", "")])}


def test_each_task_starts_fresh_after_the_shared_imports(tmp_path):
    lib = tmp_path / "lib"
    (lib / "fakelib").mkdir(parents=True)
    (lib / "fakelib" / "__init__.py").write_text("import time\ncounter = 0\nloaded_at = time.time()\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text("import json\n" + SCRIPT)
    modules = imported_modules([(work / "train.py").read_text()], [str(work)])
    assert modules == ["json", "random", "sys", "fakelib"]
    zygote = Zygote(modules, _env(lib), str(tmp_path))
    assert zygote.warm and "fakelib" in zygote.imported
    seen = []
    try:
        for i in range(3):
            out = tmp_path / f"out{i}"
            result = zygote.run("train.py", [f"task{i}"], str(work), _env(lib), str(out))
            assert result.returncode == 0, out.read_text()
            seen.append(json.loads(out.read_text()))
        failing = tmp_path / "fail.out"
        (work / "bad.py").write_text("raise SystemExit(3)\n")
        assert zygote.run("bad.py", [], str(work), _env(lib), str(failing)).returncode == 3
    finally:
        zygote.close()
    assert [s["counter"] for s in seen] == [1, 1, 1]  # module globals as after import, every time
    assert [s["argv"] for s in seen] == [["task0"], ["task1"], ["task2"]]
    assert len({s["r"] for s in seen}) == 3  # unseeded random differs, as in fresh interpreters


def test_a_module_that_starts_threads_makes_the_zygote_say_why(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "threaded.py").write_text("import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n")
    zygote = Zygote(["threaded"], _env(lib), str(tmp_path))
    assert not zygote.warm and "threads" in zygote.why


def test_local_modules_and_florgit_are_never_preimported(tmp_path):
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "pkg").mkdir()
    source = "import helpers\nimport pkg.sub\nimport florgit as flor\nfrom . import x\nimport numpy\ndef f():\n    import torch\n"
    assert imported_modules([source], [str(tmp_path)]) == ["numpy"]
    assert sys.executable  # the zygote runs under this interpreter


GPU_SCRIPT = """\
import os
import florgit as flor

for epoch in flor.loop("epoch", range(2)):
    flor.log("x", epoch)
"""


def test_each_running_task_gets_a_gpu_of_its_own(repo, capsys):
    import florgit as flor
    from florgit.cli.main import main

    repo.write("train.py", GPU_SCRIPT)
    repo.commit("train")
    for _ in range(3):
        repo.run("train.py")
    repo.write("train.py", GPU_SCRIPT.replace('    flor.log("x", epoch)\n', '    flor.log("x", epoch)\n    flor.log("dev", os.environ.get("CUDA_VISIBLE_DEVICES"))\n'))
    assert main(["replay", "dev", "--yes", "--jobs", "2", "--gpus", "3,5"]) == 0
    out = capsys.readouterr().out
    assert "GPUs 3,5, one per running task (2 at once)" in out
    devices = flor.dataframe("dev")["dev"].to_list()
    assert len(devices) == 6 and set(devices) <= {"3", "5"}
    assert main(["replay", "dev", "--dry-run"]) == 0
    assert "no GPUs" in capsys.readouterr().out
    assert main(["replay", "dev", "--gpus", "a,b", "--yes"]) != 0
