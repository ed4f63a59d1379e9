"""Validation findings: what is wrong with a graph, how badly, and where. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from schemas.graph import Edge

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem in a graph; ``step`` and ``edge`` say where (either may be None)."""

    severity: Severity
    code: str
    message: str
    step: str | None = None
    edge: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def edge_id(edge: Edge) -> str:
    """How findings name an edge: ``"from->to"``."""
    return f"{edge.from_}->{edge.to}"


def error(code: str, message: str, step: str | None = None, edge: str | None = None) -> Finding:
    return Finding("error", code, message, step, edge)


def warning(code: str, message: str, step: str | None = None, edge: str | None = None) -> Finding:
    return Finding("warning", code, message, step, edge)


def has_errors(findings: list[Finding]) -> bool:
    """True when any finding blocks approval."""
    return any(f.severity == "error" for f in findings)
