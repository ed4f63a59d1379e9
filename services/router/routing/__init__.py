"""The pure routing core: `decide(graph, state, message, event_id, now) -> Decision`.

Imports no Kafka, HTTP or SQL (import-linter checks it). Read `decide.py` first.
"""

from services.router.routing.decide import Decision, Rejection, decide, resolve_version
from services.router.routing.graph import Graph
from services.router.routing.state import InstanceState

__all__ = ["Decision", "Graph", "InstanceState", "Rejection", "decide", "resolve_version"]
