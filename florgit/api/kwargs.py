"""``--kwargs name=value ...`` on a training script's command line.

The section is cut out of ``sys.argv`` when florgit is imported, so the script's own
argparse never sees it. Values stay text until ``flor.arg`` parses them by the type of
its default.
"""

from __future__ import annotations

import ast
import difflib
import os

from florgit.errors import KwargsError

FLAG = "--kwargs"
_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}
_LITERAL_TYPES = (list, tuple, dict, set)


def extract(argv: list[str]) -> dict[str, str]:
    """Remove every ``--kwargs k=v ...`` section from ``argv`` (in place) and return the pairs."""
    pairs: dict[str, str] = {}
    i = 0
    while i < len(argv):
        if argv[i] != FLAG:
            i += 1
            continue
        j = i + 1
        while j < len(argv) and "=" in argv[j] and not argv[j].startswith("-"):
            key, _, text = argv[j].partition("=")
            _check_key(key, argv[j], pairs)
            pairs[key] = text
            j += 1
        if j == i + 1:
            raise KwargsError(
                f"{FLAG} must be followed by NAME=VALUE pairs, e.g. `{FLAG} lr=5e-4 epochs=3`"
                + (f"; got {argv[j]!r}" if j < len(argv) else "")
            )
        del argv[i:j]
    return pairs


def _check_key(key: str, token: str, seen: dict[str, str]) -> None:
    if not key or not key.replace("_", "a").replace(".", "a").replace("-", "a").isalnum():
        raise KwargsError(f"{FLAG} {token!r}: {key!r} is not a valid name; write NAME=VALUE, e.g. lr=0.01")
    if key in seen:
        raise KwargsError(f"{FLAG} sets {key!r} twice ({key}={seen[key]} and {token}); keep one")


def parse(name: str, text: str, default: object) -> object:
    """Parse ``text`` by the type of ``default`` (a None default reads a Python literal)."""
    kind = type(default)
    try:
        if default is None:
            return _literal_or_text(text)
        if kind is bool:
            return _parse_bool(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if kind in _LITERAL_TYPES:
            value = ast.literal_eval(text)
            if type(value) is not kind:
                raise ValueError
            return value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise KwargsError(
            f"{FLAG} {name}={text}: flor.arg({name!r}) expects {_describe(default)} "
            f"(its default is {default!r}); pass e.g. {name}={_example(default)}"
        ) from None
    raise KwargsError(
        f"flor.arg({name!r}) has a default of type {kind.__name__}, which {FLAG} cannot parse; "
        "use a bool, int, float, str, list, tuple, dict or None default"
    )


def _literal_or_text(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


def _describe(default: object) -> str:
    if isinstance(default, bool):
        return "a bool (true/false, yes/no, 1/0)"
    return f"a{'n' if type(default).__name__[0] in 'aeiou' else ''} {type(default).__name__}"


def _example(default: object) -> str:
    if isinstance(default, str):
        return "some-text"
    return repr(default).replace(" ", "")


def unused_message(unused: list[str], pairs: dict[str, str], known: list[str], why: str | None = None) -> str:
    parts = []
    for key in unused:
        hint = difflib.get_close_matches(key, known, n=1)
        parts.append(f"{key}={pairs[key]}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    why = why or "was not used by any flor.arg in this run; check the spelling against the script's flor.arg names"
    return f"florgit: {FLAG} " + ", ".join(parts) + " " + why


LENIENT_ENV = "FLORGIT_KWARGS"  # =lenient: unknown --kwargs only warn at the end (FlorDB's way)


def lenient() -> bool:
    return os.environ.get(LENIENT_ENV, "").strip().lower() == "lenient"


def unknown_before_training(unused: list[str], pairs: dict[str, str], known: list[str]) -> str:
    return unused_message(
        unused, pairs, known,
        f"matches no flor.arg asked for before the first flor.loop, so training would ignore it; "
        f"fix it, or set {LENIENT_ENV}=lenient to train anyway (nothing was recorded)",
    )  # fmt: skip
