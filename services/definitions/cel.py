"""Syntax check for CEL expressions on condition edges: parse only, never evaluate.

Uses cel-python's parser when it is installed; without it expressions go unchecked (the
router does not evaluate them yet either, it holds the instance). Parsing builds a syntax tree
and runs nothing, so a designer's expression cannot execute code here.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

# Parsing is linear but not free (~0.1 ms per character): bound what one validation may cost.
MAX_LENGTH = 4000


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("celpy.celparser")
    except ImportError:  # optional dependency: see the module docstring
        return None


_CEL = _load()


def available() -> bool:
    """True when expressions are syntax-checked."""
    return _CEL is not None


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    # Building the grammar takes ~0.15 s; do it once, on first use rather than at import.
    assert _CEL is not None
    return _CEL.CELParser()


def syntax_error(expression: str) -> str | None:
    """Why ``expression`` is not valid CEL, or None (also when cel-python is not installed)."""
    if len(expression) > MAX_LENGTH:
        return f"is {len(expression)} characters long; at most {MAX_LENGTH} are allowed"
    if _CEL is None:
        return None
    try:
        _parser().parse(expression)
    except _CEL.CELParseError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f" at line {line}, column {column}" if line is not None else ""
        return f"does not parse as CEL{where}"
    except RecursionError:
        return "is nested too deeply to parse"
    return None
