"""Validate JSON against the generated schemas: `jsonschema` when installed, else a tiny validator.

The fallback implements only the draft 2020-12 keywords pydantic emits for our models, and
refuses any keyword it does not know, so a new constraint can never be skipped silently.
"""

from __future__ import annotations

import re
from typing import Any

ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples"}
)
_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}
KNOWN = ANNOTATIONS | {
    "$ref", "type", "enum", "const", "anyOf", "allOf", "properties", "required",
    "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "minLength",
    "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
}


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Every way `instance` fails `schema` (empty when it is valid)."""
    try:
        import jsonschema
    except ImportError:
        return _check(schema, instance, schema, "$")
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(instance)]


def keywords(schema: Any) -> set[str]:
    """Every keyword used in schema positions (property names are not keywords)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        found |= set(schema)
        for key, value in schema.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    found |= keywords(sub)
            elif key in ("anyOf", "allOf", "prefixItems"):
                for sub in value:
                    found |= keywords(sub)
            elif key in ("items", "additionalProperties"):
                found |= keywords(value)
    return found


def _is(value: Any, type_name: str) -> bool:
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[type_name])


def _check(schema: dict[str, Any], value: Any, root: dict[str, Any], path: str) -> list[str]:
    unknown = set(schema) - KNOWN
    if unknown:
        raise NotImplementedError(f"minischema does not implement {sorted(unknown)}")
    out: list[str] = []
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        out += _check(target, value, root, path)
    if "type" in schema and not _is(value, schema["type"]):
        return out + [f"{path}: {value!r} is not of type {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "anyOf" in schema and all(_check(s, value, root, path) for s in schema["anyOf"]):
        out.append(f"{path}: {value!r} matches none of anyOf")
    for sub in schema.get("allOf", ()):
        out += _check(sub, value, root, path)
    if isinstance(value, dict):
        out += _object(schema, value, root, path)
    if isinstance(value, list):
        out += _array(schema, value, root, path)
    if isinstance(value, str):
        out += _string(schema, value, path)
    if _is(value, "number"):
        out += _number(schema, value, path)
    return out


def _object(schema: dict[str, Any], value: dict[str, Any], root: dict[str, Any],
            path: str) -> list[str]:
    props = schema.get("properties", {})
    out = [f"{path}: {name!r} is required" for name in schema.get("required", ())
           if name not in value]
    for name, item in value.items():
        extra = schema.get("additionalProperties", True)
        sub = props.get(name, extra)
        if sub is False:
            out.append(f"{path}: additional property {name!r} is not allowed")
        elif isinstance(sub, dict):
            out += _check(sub, item, root, f"{path}.{name}")
    return out


def _array(schema: dict[str, Any], value: list[Any], root: dict[str, Any],
           path: str) -> list[str]:
    out = []
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
        out.append(f"{path}: {len(value)} items is outside minItems/maxItems")
    prefix = schema.get("prefixItems", [])
    for i, item in enumerate(value):
        sub = prefix[i] if i < len(prefix) else schema.get("items")
        if isinstance(sub, dict):
            out += _check(sub, item, root, f"{path}[{i}]")
    return out


def _string(schema: dict[str, Any], value: str, path: str) -> list[str]:
    out = []
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
        out.append(f"{path}: {value!r} has a length outside minLength/maxLength")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        out.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
    return out


def _number(schema: dict[str, Any], value: float, path: str) -> list[str]:
    bounds = [("minimum", value < schema.get("minimum", value)),
              ("maximum", value > schema.get("maximum", value)),
              ("exclusiveMinimum", "exclusiveMinimum" in schema
               and value <= schema["exclusiveMinimum"]),
              ("exclusiveMaximum", "exclusiveMaximum" in schema
               and value >= schema["exclusiveMaximum"])]
    return [f"{path}: {value!r} breaks {name}" for name, broken in bounds if broken]
