"""Pass requests through to a peer service: method, path, query, body, status and JSON answer.

A peer that cannot be reached, or that fails on its side, answers 503 `unavailable`: the one
5xx the gateway gives, meaning "try again later", never "your input was wrong".
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import Request, Response

from services.common.errors import FlowlineError
from services.gateway import metrics

log = logging.getLogger(__name__)

# Request headers worth carrying to a peer; hop-by-hop and host headers stay behind.
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "x-flowline-tenant", "x-request-id")
# httpx has already decoded and de-chunked the body, so these would now be wrong.
DROPPED_RESPONSE_HEADERS = {"content-length", "content-encoding", "transfer-encoding",
                            "connection", "keep-alive", "date", "server"}


class Unavailable(FlowlineError):
    """A peer service or the broker did not answer; retrying later is safe."""

    status = 503
    code = "unavailable"


class Peer:
    """One upstream service reached over HTTP."""

    def __init__(self, name: str, base_url: str, client: httpx.AsyncClient) -> None:
        self.name, self.base_url, self.client = name, base_url.rstrip("/"), client

    async def forward(self, request: Request) -> Response:
        """Send `request` on to the peer, unchanged, and hand its answer back."""
        # The raw path keeps percent-escapes (task ids are full of slashes and may hold more).
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else request.url.path
        url = self.base_url + path + (f"?{request.url.query}" if request.url.query else "")
        headers = {h: request.headers[h] for h in FORWARDED_REQUEST_HEADERS if h in request.headers}
        try:
            answer = await self.client.request(request.method, url, headers=headers,
                                               content=await request.body())
        except httpx.HTTPError as exc:
            metrics.PROXIED.labels(self.name, "unreachable").inc()
            raise Unavailable(f"the {self.name} service is unavailable: {type(exc).__name__}",
                              details={"peer": self.name}) from exc
        metrics.PROXIED.labels(self.name, str(answer.status_code)).inc()
        if answer.status_code >= 500:
            log.warning("%s answered %d to %s %s", self.name, answer.status_code,
                        request.method, path)
            raise Unavailable(f"the {self.name} service failed ({answer.status_code})",
                              details={"peer": self.name, "status": answer.status_code})
        response_headers = {k: v for k, v in answer.headers.items()
                            if k.lower() not in DROPPED_RESPONSE_HEADERS}
        return Response(answer.content, answer.status_code, headers=response_headers)

    async def get_json(self, path: str, tenant: str = "default",
                       params: dict[str, Any] | None = None) -> Any:
        """GET a JSON answer from the peer; None for a 404."""
        try:
            answer = await self.client.get(self.base_url + path, params=params,
                                           headers={"X-Flowline-Tenant": tenant})
        except httpx.HTTPError as exc:
            metrics.PROXIED.labels(self.name, "unreachable").inc()
            raise Unavailable(f"the {self.name} service is unavailable: {type(exc).__name__}",
                              details={"peer": self.name}) from exc
        metrics.PROXIED.labels(self.name, str(answer.status_code)).inc()
        if answer.status_code == 404:
            return None
        if answer.status_code >= 400:
            raise Unavailable(f"the {self.name} service answered {answer.status_code} to "
                              f"GET {path}", details={"peer": self.name,
                                                      "status": answer.status_code})
        return answer.json()

    async def health(self) -> str:
        """The status the peer's /healthz reports ("ok", "degraded"), or "down"."""
        try:
            answer = await self.client.get(f"{self.base_url}/healthz", timeout=2.0)
        except httpx.HTTPError:
            return "down"
        if answer.status_code != 200:
            return "down"
        try:
            return str(answer.json().get("status", "ok"))  # a peer may say "degraded"
        except ValueError:
            return "ok"
