"""Request bodies read as JSON is written (RFC 8259): no `NaN`, no `Infinity`.

Starlette reads a JSON body with Python's `json`, which takes `NaN`, `Infinity` and
`-Infinity` as numbers. Let in, one travelled on into Kafka records and the databases until an
HTTP response had to carry it and failed with a 500 (`jsonio` says how). Every route of every
Flowline service reads its body through `FiniteJsonRoute` instead, which refuses them as a
body that is not JSON: FastAPI's 422 `json_invalid`, in Flowline's error body.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from services.common import jsonio


class FiniteJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = jsonio.loads_finite(await self.body())
        return self._json


class FiniteJsonRoute(APIRoute):
    """A route whose handler reads its JSON body with `jsonio.loads_finite`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def finite_json_handler(request: Request) -> Response:
            return await handler(FiniteJsonRequest(request.scope, request.receive))

        return finite_json_handler
