"""Every route of every Flowline HTTP service reads its JSON body as JSON is written.

`services.common.http.FiniteJsonRoute` refuses `NaN` and infinities (tested over real HTTP in
`tests/integration/test_gateway.py`); a router made without it would quietly take them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.common.http import FiniteJsonRoute
from services.common.settings import Settings
from services.definitions.api import create_app as create_definitions
from services.gateway.api import create_app as create_gateway
from services.tasks.api import create_app as create_tasks


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """The API routes, those of included routers too (FastAPI keeps those as references)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


@pytest.mark.parametrize("create", [create_gateway, create_tasks, create_definitions])
def test_every_route_refuses_nan(create: object, tmp_path: Path) -> None:
    app = create(Settings(data_dir=tmp_path))  # type: ignore[operator]
    assert isinstance(app, FastAPI)
    routes = list(_api_routes(app.routes))
    assert len(routes) > 5
    plain = [f"{sorted(r.methods)} {r.path}" for r in routes if not isinstance(r, FiniteJsonRoute)]
    assert plain == []
