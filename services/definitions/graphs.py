"""Graph algorithms the validator needs, over plain adjacency maps. Pure: standard library only.

Iterative on purpose: designers draw graphs of a few hundred steps at most, but a recursive
Tarjan would still hit Python's recursion limit on a long linear chain.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence

Adjacency = Mapping[str, Sequence[str]]


def reachable(adjacency: Adjacency, sources: Iterable[str]) -> set[str]:
    """Every node reachable from ``sources`` (including them), breadth first."""
    seen = set(sources)
    queue = deque(seen)
    while queue:
        node = queue.popleft()
        for nxt in adjacency.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def reverse(adjacency: Adjacency) -> dict[str, list[str]]:
    """The same graph with every edge turned around."""
    out: dict[str, list[str]] = {node: [] for node in adjacency}
    for node, targets in adjacency.items():
        for target in targets:
            out.setdefault(target, []).append(node)
    return out


def strongly_connected(nodes: Sequence[str], adjacency: Adjacency) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively; nodes outside ``nodes`` are ignored.

    Components come out in reverse topological order; each lists its nodes in ``nodes`` order
    so findings are stable from run to run.
    """
    allowed = set(nodes)
    order = {node: i for i, node in enumerate(nodes)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        # Each frame: (node, iterator over its successors) -- the recursion made explicit.
        work = [(root, iter([n for n in adjacency.get(root, ()) if n in allowed]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter([n for n in adjacency.get(nxt, ()) if n in allowed])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component, key=order.__getitem__))
    return components
