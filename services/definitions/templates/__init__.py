"""Process templates shipped as data: ``<name>.json`` graphs in this package."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def list_templates() -> list[str]:
    """Names of the shipped templates, sorted (``remanufacturing``, ...)."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def load_template(name: str) -> dict[str, Any]:
    """The graph JSON of template ``name``; KeyError when there is no such template."""
    if name not in list_templates():
        raise KeyError(f"no process template {name!r}; have {', '.join(list_templates())}")
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
