"""The polars DataFrame florgit's queries return, with a ``to_pandas()`` that says how to
get pandas when it is missing (polars itself only says the module is not found)."""

from __future__ import annotations

from typing import Any

import polars as pl

PANDAS_HINT = "to_pandas() needs pandas: pip install 'florgit[pandas]' (or pip install pandas)"


class FlorFrame(pl.DataFrame):
    """A ``polars.DataFrame``; every polars method works, and returns plain polars frames."""

    def to_pandas(self, *args: Any, **kwargs: Any) -> Any:
        try:
            import pandas  # noqa: F401
        except ModuleNotFoundError:
            raise ModuleNotFoundError(PANDAS_HINT, name="pandas") from None
        return super().to_pandas(*args, **kwargs)


def wrap(frame: pl.DataFrame) -> FlorFrame:
    return FlorFrame._from_pydf(frame._df)
