"""The public surface is declared once, in florgit.__all__, and import stays light."""

from __future__ import annotations

import subprocess
import sys

import florgit


def test_all_is_honest():
    import types

    public = {name for name in dir(florgit) if not name.startswith("_")}
    modules = {name for name in public if isinstance(getattr(florgit, name), types.ModuleType)}
    assert set(florgit.__all__) - {"__version__"} == public - modules
    assert "replay" not in modules  # a subpackage must never shadow a public function
    for name in florgit.__all__:
        assert getattr(florgit, name).__doc__ or name == "__version__"


def test_import_loads_neither_torch_nor_polars_nor_pyarrow():
    code = "import sys, florgit; print(sorted(m for m in ('torch','polars','pyarrow','pygit2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_error_says_how_to_fix_it():
    from florgit import errors

    samples = [
        errors.NotARepositoryError("/x"),
        errors.BareRepositoryError("/x.git"),
        errors.InvalidNameError(3, "names are str"),
        errors.UnsupportedValueError("w", object()),
        errors.RefUpdateConflict("refs/heads/flor.shadow", 3),
        errors.RunNotFoundError("abc"),
    ]
    for exc in samples:
        assert isinstance(exc, errors.FlorgitError)
        text = str(exc).lower()
        assert any(word in text for word in ("run ", "use ", "pass", "log ", "list")), text
