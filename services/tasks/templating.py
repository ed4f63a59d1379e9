"""Safe templating of automated-step actions from what a step command knows.

`${subject.id}`, `${context.lot}`, `${visit}`: `string.Template` placeholders with dotted names,
looked up in a flat mapping built from the command. No expressions, no attribute access, no
eval: a template can only name values, and a name that is not there is an error (a typo must
not call a URL with a hole in it).
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote


class TemplateError(ValueError):
    """A template names a value the step does not have, or is not a valid template."""


class _Template(string.Template):
    # Dotted names; Template's default flags make this case-insensitive.
    idpattern = r"(?a:[_a-z][_a-z0-9]*(?:\.[_a-z0-9]+)*)"


def variables(job_input: Mapping[str, Any]) -> dict[str, Any]:
    """The names a template may use: the step's own fields and its subject, process and
    context, flattened to dotted names (`context.lot`, `context.limits.max`)."""
    names: dict[str, Any] = {}
    for key in ("instance_id", "tenant", "step", "step_name", "visit", "command_id",
                "work_order"):
        if job_input.get(key) is not None:
            names[key] = job_input[key]
    for key in ("subject", "process", "context", "params"):
        _flatten(key, job_input.get(key) or {}, names)
    return names


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    into[prefix] = value
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, into)


def render(value: Any, names: Mapping[str, Any]) -> Any:
    """`value` with every string in it rendered; a string that is exactly one placeholder
    takes the value itself (so `"${context.limits}"` in a JSON body stays an object)."""
    if isinstance(value, str):
        return _render_str(value, names)
    if isinstance(value, dict):
        return {k: render(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, names) for v in value]
    return value


def render_url(url: str, names: Mapping[str, Any]) -> str:
    """A URL template: substituted values are percent-encoded, so a value cannot add a path
    segment or a query parameter of its own."""
    return str(_render_str(url, names, lambda text: quote(text, safe=""), whole=False))


def _render_str(text: str, names: Mapping[str, Any],
                quote_value: Callable[[str], str] | None = None, whole: bool = True) -> Any:
    template = _Template(text)
    if not template.is_valid():
        raise TemplateError(f"{text!r} is not a valid template (write $$ for a literal $)")
    identifiers = template.get_identifiers()
    missing = [name for name in identifiers if name not in names]
    if missing:
        raise TemplateError(f"{text!r} names {', '.join('$' + m for m in missing)}, which "
                            f"the step does not have (it has: {', '.join(sorted(names))})")
    if whole and quote_value is None and len(identifiers) == 1 and \
            text.strip() in (f"${identifiers[0]}", f"${{{identifiers[0]}}}"):
        return names[identifiers[0]]
    as_text = {name: _text(names[name]) for name in identifiers}
    if quote_value is not None:
        as_text = {name: quote_value(v) for name, v in as_text.items()}
    return template.substitute(as_text)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)
